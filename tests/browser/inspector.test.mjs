// The session inspector in a real browser: Debian's chromium (headless, through the DevTools
// protocol, driven by playwright-core; no browser is downloaded) against `agent-session serve`
// on a temporary SQLite store. SCREENSHOT=path also saves the conversation page as a PNG.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BIN = process.env.AGENT_SESSION_BIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

function startServer(url) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, ['--url', url, 'serve', '--listen', '127.0.0.1:0', '--poll-ms', '200'],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => {
      err += d;
      const m = err.match(/http:\/\/([^/\s]+)\//);
      if (m) resolve({ child, base: `http://${m[1]}` });
    });
    child.on('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
  });
}

function add(url, id, ...items) {
  execFileSync(BIN, ['--url', url, 'add', id, ...items.map((i) => JSON.stringify(i))]);
}

test('the conversation page in chromium', async () => {
  assert.ok(BIN, 'AGENT_SESSION_BIN names the agent-session binary');
  const dir = mkdtempSync(join(tmpdir(), 'oas-browser-'));
  const url = `sqlite://${dir}/inspector.db`;
  const id = 'support/chat 42';
  add(url, id,
    { role: 'user', content: 'My order #1234 has not arrived. Where is it?' },
    { type: 'reasoning', id: 'rs_1', summary: [{ type: 'summary_text', text: 'Look the order up with the tracking tool.' }] },
    { type: 'function_call', call_id: 'call_7', name: 'track_order', arguments: '{"order_id":1234,"include_events":true}' },
    { type: 'function_call_output', call_id: 'call_7', output: '{"status":"in_transit","eta":"2026-12-03","carrier":"DHL"}' },
    { role: 'assistant', type: 'message', content: [{ type: 'output_text', text: 'Your order is in transit with DHL and should arrive on December 3.' }] },
    { role: 'user', content: 'Thanks! <script>window.pwned = 1</script>' },
    { role: 'assistant', type: 'message', content: [{ type: 'output_text', text: 'You are welcome. <img src=x onerror="window.pwned = 2">' }] },
    { type: 'function_call', call_id: 'call_8', name: 'transfer_to_billing_agent', arguments: '{}' },
    { type: 'function_call_output', call_id: 'call_8', output: '{"assistant":"Billing Agent"}' });
  const { child, base } = await startServer(url);
  const profile = mkdtempSync(join(tmpdir(), 'oas-chromium-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1100, height: 900 },
  });
  try {
    const page = context.pages()[0] || await context.newPage();
    const errors = [];
    const dialogs = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss(); });
    const requests = [];
    page.on('request', (r) => requests.push(r.url()));

    const response = await page.goto(`${base}/s/${encodeURIComponent(id)}`);
    assert.equal(response.status(), 200);
    assert.match(response.headers()['content-security-policy'], /script-src 'self'/);
    await page.waitForSelector('#conversation .item');

    // The messages in order.
    const texts = await page.$$eval('#conversation > .item', (els) => els.map((e) => e.innerText));
    const order = ['My order #1234', 'Look the order up', 'track_order', 'in transit with DHL',
      'Thanks!', 'You are welcome.', 'billing_agent'];
    let last = -1;
    for (const needle of order) {
      const at = texts.findIndex((t) => t.includes(needle));
      assert.ok(at > last, `${needle} after the previous message (${at} > ${last}): ${JSON.stringify(texts)}`);
      last = at;
    }
    // The call paired with its output, the arguments pretty-printed.
    const call = page.locator('.call[data-call-id="call_7"]');
    await assert.doesNotReject(call.waitFor());
    assert.match(await call.locator('.arguments').innerText(), /"order_id": 1234,\n\s+"include_events": true/);
    assert.match(await call.locator('.call-output').innerText(), /"status": "in_transit"/);
    assert.equal(await page.locator('#conversation > .call-output').count(), 0, 'no unpaired output');
    assert.match(await page.locator('.call.handoff').innerText(), /handoff → billing_agent/);
    // Reasoning collapsed to its summary.
    assert.equal(await page.locator('details.reasoning').getAttribute('open'), null);

    // The payloads are text, and nothing ran.
    assert.ok(texts.some((t) => t.includes('<script>window.pwned = 1</script>')));
    assert.ok(texts.some((t) => t.includes('<img src=x onerror="window.pwned = 2">')));
    assert.equal(await page.evaluate(() => window.pwned), undefined);
    assert.equal(await page.locator('#conversation img').count(), 0);
    assert.equal(await page.locator('#conversation script').count(), 0);
    assert.deepEqual(errors, []);
    assert.deepEqual(dialogs, []);

    // An item added while the page is open appears, after the others.
    await page.waitForFunction(() => document.getElementById('live').textContent.includes('live'));
    add(url, id, { role: 'user', content: 'One more question, arriving live.' });
    await page.waitForFunction(
      () => document.getElementById('conversation').innerText.includes('arriving live'),
      null, { timeout: 15000 });
    const after = await page.$$eval('#conversation > .item', (els) => els.map((e) => e.innerText));
    assert.match(after[after.length - 1], /arriving live/);
    assert.equal(await page.locator('#item-count').innerText(), '10');

    // Only this server was asked for anything.
    assert.ok(requests.every((r) => r.startsWith(base)), JSON.stringify(requests));

    if (process.env.SCREENSHOT) {
      await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
    }
  } finally {
    await context.close();
    child.kill();
    rmSync(profile, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});
