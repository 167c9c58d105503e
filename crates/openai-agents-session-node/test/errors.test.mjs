// The error table: every core kind has its class with the same name and `kind` string as the
// Python package's, through the production transport; no secret in any message.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRequire } from 'node:module';
import * as pkg from '../index.mjs';
import { uniqueId } from './helpers.mjs';

const require = createRequire(import.meta.url);
const cjs = require('../index.cjs');
const { _native: native, _convert: convert } = cjs;

const TABLE = {
  invalid_input: 'InvalidInputError',
  invalid_session_id: 'InvalidSessionIdError',
  too_large: 'SessionTooLargeError',
  config: 'ConfigError',
  encryption_key_missing: 'EncryptionKeyMissingError',
  not_found: 'SessionNotFoundError',
  connection: 'SessionConnectionError',
  timeout: 'SessionTimeoutError',
  outcome_unknown: 'OutcomeUnknownError',
  unreadable: 'UnreadableRecordError',
  unsupported_format: 'UnsupportedFormatError',
  legacy_data: 'LegacyDataError',
  conflict: 'HistoryConflictError',
  lease_held: 'LeaseHeldError',
  fenced: 'FencedError',
  backend: 'SessionError',
};

function raised(...args) {
  try {
    native.raiseForTest(...args);
  } catch (err) {
    return convert(err);
  }
  assert.fail('raiseForTest did not throw');
}

test('every core error kind maps to its class, with kind, operation and sessionId', () => {
  const kinds = native.errorKinds();
  assert.ok(kinds.length >= 15);
  for (const kind of kinds) {
    const err = raised(kind, null, 'pop_item', 'sess-1', kind === 'conflict' ? 'suffix_mismatch' : null, null);
    const name = TABLE[kind];
    assert.ok(name, `kind ${kind} is missing from the table`);
    assert.equal(err.constructor.name, name);
    assert.equal(err.name, name);
    assert.ok(err instanceof pkg[name]);
    assert.ok(err instanceof pkg.SessionError && err instanceof Error);
    assert.equal(err.kind, kind);
    assert.equal(err.operation, 'pop_item');
    assert.equal(err.sessionId, 'sess-1');
    // the same classes through both entry points
    assert.ok(err instanceof cjs[name]);
  }
  assert.equal(raised('conflict', null, 'apply_history_transaction', 's', 'operation_reused', null).reason, 'operation_reused');
  for (const sub of ['InvalidSessionIdError', 'SessionTooLargeError', 'ConfigError']) {
    assert.ok(raised(Object.keys(TABLE).find((k) => TABLE[k] === sub)) instanceof pkg.InvalidInputError);
  }
});

test('outcome_unknown by cause: also a timeout or connection error', () => {
  const t = raised('outcome_unknown', 'timeout', 'add_items', 's', null, null);
  assert.equal(t.constructor.name, 'OutcomeUnknownTimeoutError');
  assert.ok(t instanceof pkg.OutcomeUnknownError && t instanceof pkg.SessionTimeoutError && !(t instanceof pkg.SessionConnectionError));
  const c = raised('outcome_unknown', 'connection', 'add_items', 's', null, null);
  assert.equal(c.constructor.name, 'OutcomeUnknownConnectionError');
  assert.ok(c instanceof pkg.OutcomeUnknownError && c instanceof pkg.SessionConnectionError && !(c instanceof pkg.SessionTimeoutError));
  const plain = raised('outcome_unknown', null, 'add_items', 's', null, null);
  assert.ok(!(plain instanceof pkg.SessionTimeoutError) && !(plain instanceof pkg.SessionConnectionError));
  assert.ok(!(raised('timeout') instanceof pkg.OutcomeUnknownError));
});

test('lease errors carry the lease', () => {
  const lease = { owner: 'w1', token: 17, expiresAtMs: 1_800_000_000_000 };
  const held = raised('lease_held', null, 'acquire_lease', 's', null, lease);
  assert.ok(held instanceof pkg.LeaseHeldError);
  assert.equal(held.owner, 'w1');
  assert.equal(held.lease.token, 17);
  assert.equal(held.expiresAt.getTime(), 1_800_000_000_000);
  const fenced = raised('fenced', null, 'add_items', 's', null, lease);
  assert.ok(fenced instanceof pkg.FencedError);
  assert.equal(fenced.lease.owner, 'w1');
});

test('no secret in any message: a wrong Redis password', { skip: !process.env.OAS_TEST_REDIS_ACL_URL }, async () => {
  const url = process.env.OAS_TEST_REDIS_ACL_URL.replace('oas-secret-pw', 'wrong-hunter2-pw');
  const s = pkg.openSession(`${url}?connect_timeout=2`, uniqueId('secret'));
  assert.ok(!String(s).includes('hunter2'));
  await assert.rejects(s.getItems(), (err) => {
    assert.ok(err instanceof pkg.SessionError, String(err));
    assert.ok(!err.message.includes('hunter2'), err.message);
    assert.ok(!err.stack.includes('hunter2'));
    assert.ok(!JSON.stringify(err).includes('hunter2'));
    assert.equal(err.sessionId, s.sessionId);
    return true;
  });
});

test('options that are wrong or that this build cannot honour fail clearly', () => {
  // a 32-byte key is taken (no I/O yet); a malformed one names which key, never its bytes
  new pkg.SQLiteSession('x', { encryptionKey: Buffer.alloc(32, 7) });
  pkg.openSession('memory://', 'x', { encryptionKey: [pkg.generateEncryptionKey()] });
  assert.throws(() => new pkg.RedisSession('x', { url: 'redis://127.0.0.1/', encryptionKey: 'a2V5' }), (err) => err instanceof pkg.ConfigError && /key 1 of 1/.test(err.message) && !err.message.includes('a2V5'));
  assert.throws(() => pkg.openSession('memory://', 'x', { encryptionKey: [pkg.generateEncryptionKey(), {}] }), (err) => err instanceof pkg.ConfigError && /key 2 of 2/.test(err.message));
  assert.throws(() => new pkg.PostgresSession('x', {}), (err) => err instanceof pkg.ConfigError && /url/.test(err.message));
  assert.throws(() => new pkg.RedisSession('x', {}), pkg.ConfigError);
  assert.throws(() => new pkg.DynamoDBSession('x', {}), pkg.ConfigError);
  assert.throws(() => new pkg.SQLiteSession('x', { ttl: 1.5 }), pkg.ConfigError);
  assert.throws(() => new pkg.SQLiteSession('', {}), pkg.InvalidSessionIdError);
  return assert.rejects(pkg.createTableIfNotExists({ tableName: 't', enableTtl: 'no' }), (err) => err instanceof pkg.ConfigError && /enableTtl/.test(err.message));
});

test('an unknown scheme is a ConfigError at the first operation (constructors do no I/O)', async () => {
  const s = pkg.openSession('nosuch://x', uniqueId());
  await assert.rejects(s.getItems(), (err) => err instanceof pkg.ConfigError && err.operation === 'get_items' && err.sessionId === s.sessionId);
});

test('sessions of the same URL share a store', async () => {
  const a = pkg.openSession('memory://shared-test', 'one');
  const b = pkg.openSession('memory://shared-test', 'one');
  await a.addItems([{ role: 'user', content: 'x' }]);
  assert.deepEqual(await b.getItems(), [{ role: 'user', content: 'x' }]);
  const p = new pkg.SQLiteSession('one');
  const q = new pkg.SQLiteSession('one');
  await p.addItems([{ role: 'user', content: 'private' }]);
  assert.deepEqual(await q.getItems(), []); // ':memory:' is private to its session
});
