// Encryption at rest through the Node package (docs/encryption.md): `encryptionKey` on every
// class and on openSession, in every form; malformed keys (a ConfigError naming which key, never
// its bytes); a wrong key (getItems skips, popItem rejects with UnreadableRecordError and removes
// nothing); no key (EncryptionKeyMissingError); what Node encrypts Python reads, and back.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import {
  ConfigError,
  EncryptionKeyMissingError,
  RedisSession,
  SQLiteSession,
  SessionError,
  UnreadableRecordError,
  generateEncryptionKey,
  openSession,
} from '../index.mjs';
import { backends, tempDir, uniqueId } from './helpers.mjs';

const KEY = generateEncryptionKey();
const OTHER = Buffer.from(generateEncryptionKey(), 'base64'); // raw bytes work too
const MARKER = 'MARKER-node-4242';
const CI = process.env.CI === 'true';

/** Every byte SQLite holds for the database file `db` (the file and its -wal / -shm). */
function sqliteBytes(dir) {
  return Buffer.concat(readdirSync(dir).map((name) => readFileSync(join(dir, name))));
}

test('keys in every form round-trip on SQLite; the file holds no plaintext', async () => {
  assert.equal(Buffer.from(KEY, 'base64').length, 32);
  const dir = tempDir();
  const path = join(dir, 's.db');
  const sid = uniqueId('forms');
  const urlSafe = KEY.replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
  const forms = [KEY, Buffer.from(KEY, 'base64'), new Uint8Array(Buffer.from(KEY, 'base64')), urlSafe, [KEY, OTHER]];
  for (const [i, key] of forms.entries()) {
    const s = new SQLiteSession(sid, { path, encryptionKey: key });
    await s.addItems([{ role: 'user', content: `${MARKER} ${i}` }]);
    assert.deepEqual((await s.getItems()).at(-1), { role: 'user', content: `${MARKER} ${i}` });
  }
  assert.equal((await new SQLiteSession(sid, { path, encryptionKey: KEY }).getItems()).length, forms.length);
  assert.ok(!sqliteBytes(dir).includes(MARKER), 'the SQLite file holds the plaintext');
});

test('a malformed key is a ConfigError naming which key, never its bytes', () => {
  const path = join(tempDir(), 's.db');
  const cases = [
    ['not base64!', 'key 1 of 1'],
    [Buffer.from('short'), 'key 1 of 1'],
    [[KEY, 'QUFB'], 'key 2 of 2'],
    [[KEY, 42], 'key 2 of 2'],
    [[], 'empty'],
  ];
  for (const [bad, place] of cases) {
    for (const make of [
      () => new SQLiteSession(uniqueId('bad'), { path, encryptionKey: bad }),
      () => new SQLiteSession(uniqueId('bad'), { encryptionKey: bad }),
      () => openSession(`sqlite://${path}`, uniqueId('bad'), { encryptionKey: bad }),
      () => new RedisSession(uniqueId('bad'), { url: 'redis://127.0.0.1:1/0', encryptionKey: bad }),
    ]) {
      assert.throws(make, (err) => {
        assert.ok(err instanceof ConfigError, `${err}`);
        assert.equal(err.kind, 'config');
        assert.equal(err.operation, 'open');
        assert.ok(err.message.includes(place), err.message);
        assert.ok(!err.message.includes(KEY) && !err.message.includes('not base64!'), err.message);
        return true;
      });
    }
  }
});

test('two different keys on one URL do not share a store', async () => {
  const path = join(tempDir(), 's.db');
  const sid = uniqueId('cache');
  await new SQLiteSession(sid, { path, encryptionKey: KEY }).addItems([{ n: 1 }]);
  assert.deepEqual(await new SQLiteSession(sid, { path, encryptionKey: OTHER }).getItems(), []);
  assert.deepEqual(await new SQLiteSession(sid, { path, encryptionKey: KEY }).getItems(), [{ n: 1 }]);
});

// SQLite file and Redis (and every other backend the servers give): the encrypted round trip,
// the wrong key, no key.
for (const backend of backends()) {
  describe(backend.name, { skip: backend.skip }, () => {
    test('encrypted round trip; a wrong key skips and refuses pop; no key: EncryptionKeyMissingError', async () => {
      const sid = uniqueId('enc');
      const right = await backend.make(sid, { encryptionKey: KEY });
      const items = [{ role: 'user', content: MARKER }, { n: 2, nested: { a: [1, 'é'] } }];
      await right.addItems(items);
      await right.applyHistoryTransaction({ operationId: 'op-1', transaction: { type: 'append_items', items: [{ n: 3 }] } });
      const all = [...items, { n: 3 }];
      assert.deepEqual(await right.getItems(), all);

      if (backend.name === 'sqlite memory') {
        // a memory store is private to its session (and key): no other key or session sees it
        await right.clearSession();
        return;
      }
      const wrong = await backend.make(sid, { encryptionKey: OTHER });
      assert.deepEqual(await wrong.getItems(), [], 'a wrong key: the records are skipped');
      await assert.rejects(wrong.popItem(), (err) => {
        assert.ok(err instanceof UnreadableRecordError && err instanceof SessionError, `${err}`);
        assert.equal(err.kind, 'unreadable');
        assert.equal(err.operation, 'pop_item');
        assert.equal(err.sessionId, sid);
        return true;
      });

      const none = await backend.make(sid);
      await assert.rejects(none.getItems(), (err) => {
        assert.ok(err instanceof EncryptionKeyMissingError && err instanceof ConfigError, `${err}`);
        assert.equal(err.kind, 'encryption_key_missing');
        assert.equal(err.sessionId, sid);
        return true;
      });
      await assert.rejects(none.popItem(), EncryptionKeyMissingError);

      // nothing was removed; an older key still reads
      assert.deepEqual(await (await backend.make(sid, { encryptionKey: [OTHER, KEY] })).getItems(), all);
      assert.deepEqual(await right.getItems(), all);
      assert.deepEqual(await right.popItem(), { n: 3 });
      await right.clearSession();
    });
  });
}

// Cross-language: Node encrypts, Python (encryption_key=) reads, and back.
const execFileAsync = promisify(execFile);
const python = process.env.OAS_TEST_PYTHON;
const pythonMissing = (() => {
  if (python && existsSync(python)) return undefined;
  const why = `the Python venv not found (${python || 'unset'}): scripts/node-tests.sh sets it after the Python stage`;
  if (CI) throw new Error(why);
  return why;
})();

const PY = `
import asyncio, json, sys
from openai_agents_session import open_session
url, sid, key, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
async def main():
    s = open_session(url, sid, encryption_key=key)
    if mode == "read":
        print(json.dumps(await s.get_items(), ensure_ascii=False, separators=(",", ":")))
    else:
        await s.add_items(json.loads(sys.argv[5]))
asyncio.run(main())
`;

async function py(args) {
  try {
    return await execFileAsync(python, ['-c', PY, ...args], { env: process.env });
  } catch (err) {
    throw new Error(`python ${args[3]} failed (exit ${err.code}, signal ${err.signal}): ${err.stderr || err.message}`);
  }
}

function crossStores() {
  const list = [{ name: 'sqlite', url: `sqlite://${join(tempDir(), 'x.db')}` }];
  const redis = process.env.OAS_TEST_REDIS_URL;
  if (redis) list.push({ name: 'redis', url: `${redis}${redis.includes('?') ? '&' : '?'}prefix=${uniqueId('xenc')}` });
  else if (CI) throw new Error('OAS_TEST_REDIS_URL is not set');
  return list;
}

for (const store of crossStores()) {
  test(`${store.name}: Node encrypts, Python reads with encryption_key=; Python encrypts, Node reads`, { skip: pythonMissing }, async () => {
    const items = [{ role: 'user', content: `héllo ${MARKER}` }, { n: [1.5, -3], z: 1, a: 2 }];
    const sid = uniqueId('xpy');
    await openSession(store.url, sid, { encryptionKey: KEY }).addItems(items);
    const { stdout } = await py([store.url, sid, KEY, 'read']);
    assert.deepEqual(JSON.parse(stdout), items);
    // and it is encrypted: Python with another key sees nothing
    assert.deepEqual(JSON.parse((await py([store.url, sid, OTHER.toString('base64'), 'read'])).stdout), []);

    const back = uniqueId('xpy-back');
    await py([store.url, back, KEY, 'write', JSON.stringify(items)]);
    assert.deepEqual(await openSession(store.url, back, { encryptionKey: Buffer.from(KEY, 'base64') }).getItems(), items);
    await assert.rejects(openSession(store.url, back).getItems(), EncryptionKeyMissingError);
  });
}

// The CLI reads what Node encrypted with the same key from the URL's encryption_key_env.
const cli = process.env.OAS_TEST_CLI_BIN;
const cliMissing = (() => {
  if (cli && existsSync(cli)) return undefined;
  const why = `the agent-session binary not found (${cli || 'unset'}): scripts/node-tests.sh sets it after the Rust stages`;
  if (CI) throw new Error(why);
  return why;
})();

test('sqlite: Node encrypts, the CLI reads with encryption_key_env', { skip: cliMissing }, async () => {
  const path = join(tempDir(), 'cli.db');
  const sid = uniqueId('xcli');
  const items = [{ role: 'user', content: MARKER }, { n: 2 }];
  await new SQLiteSession(sid, { path, encryptionKey: OTHER }).addItems(items);
  const url = `sqlite://${path}?encryption_key_env=OAS_NODE_TEST_KEY`;
  const env = { ...process.env, OAS_NODE_TEST_KEY: OTHER.toString('base64') };
  const { stdout } = await execFileAsync(cli, ['--url', url, 'get', sid], { env });
  assert.deepEqual(stdout.trim().split('\n').map((l) => JSON.parse(l)), items);
});
