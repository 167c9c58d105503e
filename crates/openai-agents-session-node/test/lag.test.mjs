// The event loop never blocks: with a redis-server of this test SIGSTOPped, operations wait in
// Rust (until response_timeout) while a 10 ms setInterval keeps ticking; the worst lag is
// measured and printed (the figure of docs/testing.md). Also: a timeout error within its bound.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { OutcomeUnknownTimeoutError, SessionTimeoutError, openSession } from '../index.mjs';
import { sleep, tempDir, uniqueId } from './helpers.mjs';

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const bin = process.env.OAS_TEST_REDIS_SERVER_BIN || 'redis-server';

test('event-loop lag while Redis is stopped (SIGSTOP)', async (t) => {
  const port = await freePort();
  const dir = tempDir();
  const server = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir], { stdio: 'ignore' });
  const exited = new Promise((resolve) => server.once('exit', resolve));
  const spawnError = new Promise((resolve) => server.once('error', resolve));
  t.after(async () => {
    try {
      process.kill(server.pid, 'SIGCONT');
      process.kill(server.pid, 'SIGKILL');
    } catch {}
    await exited;
  });
  const url = `redis://127.0.0.1:${port}/0?response_timeout=1&connect_timeout=1`;
  const s = openSession(url, uniqueId('lag'));
  // wait for the server (a missing redis-server fails the test)
  const deadline = Date.now() + 15000;
  for (;;) {
    const failed = await Promise.race([spawnError, sleep(50).then(() => null)]);
    if (failed) assert.fail(`redis-server could not start (${failed.message}): run scripts/servers.sh start`);
    try {
      await s.addItems([{ role: 'user', content: 'before' }]);
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
  }
  process.kill(server.pid, 'SIGSTOP');
  const lags = [];
  let last = performance.now();
  const ticker = setInterval(() => {
    const now = performance.now();
    lags.push(now - last - 10);
    last = now;
  }, 10);
  const started = performance.now();
  const outcomes = await Promise.allSettled([
    s.addItems([{ role: 'user', content: 'during' }]),
    s.getItems(),
    ...Array.from({ length: 20 }, () => s.getItems(1)),
  ]);
  const elapsed = performance.now() - started;
  clearInterval(ticker);
  process.kill(server.pid, 'SIGCONT');
  const worst = Math.max(...lags);
  console.log(`event-loop lag while Redis was stopped: max ${worst.toFixed(1)} ms over ${lags.length} ticks of 10 ms (${elapsed.toFixed(0)} ms of hung operations)`);
  for (const outcome of outcomes) {
    assert.equal(outcome.status, 'rejected');
    assert.ok(outcome.reason instanceof SessionTimeoutError, String(outcome.reason));
  }
  assert.ok(outcomes[0].reason instanceof OutcomeUnknownTimeoutError, String(outcomes[0].reason));
  assert.ok(lags.length >= 50, `only ${lags.length} ticks in ${elapsed} ms`);
  assert.ok(worst < 50, `event loop lag ${worst.toFixed(1)} ms`);
  assert.ok(elapsed < 1000 * 3 + 750, `timeouts took ${elapsed} ms`);
  // the store works again once the server answers
  await s.addItems([{ role: 'user', content: 'after' }]);
  const items = await s.getItems();
  assert.deepEqual(items[0], { role: 'user', content: 'before' });
  assert.deepEqual(items[items.length - 1], { role: 'user', content: 'after' });
});
