// Data written by the Node package, the Python package, the CLI and the Rust library is the same
// data: written in Node, read in Python and with the CLI, and back, on SQLite and Redis. The
// items compare as JSON.stringify gives them (key order, unicode, numbers as written).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { openSession } from '../index.mjs';
import { tempDir, uniqueId } from './helpers.mjs';

const execFileAsync = promisify(execFile);
/** Runs a program; a failure names its stderr. */
async function run(file, args) {
  try {
    return await execFileAsync(file, args, { env: process.env });
  } catch (err) {
    throw new Error(`${file} ${args.slice(-3).join(' ')} failed (exit ${err.code}, signal ${err.signal}): ${err.stderr || err.message}`);
  }
}
const CI = process.env.CI === 'true';
const python = process.env.OAS_TEST_PYTHON;
const cli = process.env.OAS_TEST_CLI_BIN;

function need(path, what) {
  if (path && existsSync(path)) return undefined;
  const why = `${what} not found (${path || 'unset'}): scripts/node-tests.sh sets it after the Rust and Python stages`;
  if (CI) throw new Error(why);
  return why;
}

const PY = `
import asyncio, json, sys
from openai_agents_session import open_session
url, sid, mode = sys.argv[1], sys.argv[2], sys.argv[3]
async def main():
    s = open_session(url, sid)
    if mode == "read":
        print(json.dumps(await s.get_items(), ensure_ascii=False, separators=(",", ":")))
    else:
        await s.add_items(json.loads(sys.argv[4]))
asyncio.run(main())
`;

const ITEMS = [
  { role: 'user', content: 'héllo 🙂', z: 1, a: 2 },
  { type: 'function_call', callId: 'c1', name: 'lookup', arguments: '{"q":"x"}', n: [1.5, 100, -3, 1e-7], nested: { b: null, a: [true, false] } },
  { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'line\nbreak "quoted" \u2028' }] },
];
const text = (items) => items.map((i) => JSON.stringify(i));

function stores() {
  const dir = tempDir();
  const list = [{ name: 'sqlite', url: `sqlite://${join(dir, 'x.db')}` }];
  const redis = process.env.OAS_TEST_REDIS_URL;
  if (redis) list.push({ name: 'redis', url: `${redis}${redis.includes('?') ? '&' : '?'}prefix=${uniqueId('xl')}` });
  else if (CI) throw new Error('OAS_TEST_REDIS_URL is not set');
  return list;
}

for (const store of stores()) {
  describe(store.name, () => {
    test('Node writes, Python reads; Python writes, Node reads', { skip: need(python, 'the Python venv') }, async () => {
      const sid = uniqueId('py');
      await openSession(store.url, sid).addItems(ITEMS);
      const { stdout } = await run(python, ['-c', PY, store.url, sid, 'read']);
      assert.deepEqual(text(JSON.parse(stdout)), text(ITEMS));
      const back = uniqueId('py-back');
      await run(python, ['-c', PY, store.url, back, 'write', JSON.stringify(ITEMS)]);
      assert.deepEqual(text(await openSession(store.url, back).getItems()), text(ITEMS));
    });

    test('Node writes, the CLI reads; the CLI writes, Node reads', { skip: need(cli, 'the agent-session binary') }, async () => {
      const sid = uniqueId('cli');
      await openSession(store.url, sid).addItems(ITEMS);
      const { stdout } = await run(cli, ['--url', store.url, 'get', sid]);
      const lines = stdout.trim().split('\n');
      assert.deepEqual(lines.map((l) => JSON.stringify(JSON.parse(l))), text(ITEMS));
      // the CLI prints the stored text itself: what Node wrote, byte for byte
      assert.deepEqual(lines, await openSession(store.url, sid).getItems({ raw: true }));
      // What JavaScript cannot hold: integers beyond 2^53 and integer-like keys (ordered
      // first); { raw: true } gives the exact stored text.
      const limits = uniqueId('cli-limits');
      const stored = '{"b":1,"2":0,"big":9007199254740993}';
      await run(cli, ['--url', store.url, 'add', limits, stored]);
      assert.deepEqual(await openSession(store.url, limits).getItems({ raw: true }), [stored]);
      const [parsed] = await openSession(store.url, limits).getItems();
      assert.equal(JSON.stringify(parsed), '{"2":0,"b":1,"big":9007199254740992}');
      const back = uniqueId('cli-back');
      await run(cli, ['--url', store.url, 'add', back, ...text(ITEMS)]);
      assert.deepEqual(text(await openSession(store.url, back).getItems()), text(ITEMS));
    });
  });
}
