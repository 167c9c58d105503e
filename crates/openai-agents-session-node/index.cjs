'use strict';
/**
 * openai-agents-session: durable sessions for the OpenAI Agents SDK for JavaScript, on a Rust core.
 *
 *   const { SQLiteSession } = require('openai-agents-session');
 *   const session = new SQLiteSession('user-123', { path: 'conversations.db' });
 *   const result = await run(agent, 'Hello', { session });
 *
 * Every method returns a Promise whose work runs in Rust, off the JavaScript thread: the event
 * loop never blocks. Sessions created from the same URL and options share one store (one
 * connection pool); constructors do no I/O.
 */
const native = require('./native.cjs');
const { resolve: resolvePath } = require('node:path');

const { NativeStore } = native;
const MARKER = 'OAS_NATIVE:';
const DEFAULT_KEY_PREFIX = 'openai_agents_session';

// ---------------------------------------------------------------------------------- errors ---
//
// One table for every surface (the Rust core's ErrorKind::name() is the `kind`; the Python
// package uses the same class names and kinds):
//
//   kind                 class                           also `instanceof`
//   invalid_input        InvalidInputError               SessionError
//   invalid_session_id   InvalidSessionIdError           InvalidInputError
//   too_large            SessionTooLargeError            InvalidInputError
//   config               ConfigError                     InvalidInputError
//   encryption_key_missing EncryptionKeyMissingError     ConfigError
//   not_found            SessionNotFoundError            SessionError
//   connection           SessionConnectionError          SessionError
//   timeout              SessionTimeoutError             SessionError
//   outcome_unknown      OutcomeUnknownTimeoutError      OutcomeUnknownError, SessionTimeoutError
//     (cause timeout)
//   outcome_unknown      OutcomeUnknownConnectionError   OutcomeUnknownError, SessionConnectionError
//     (cause connection)
//   outcome_unknown      OutcomeUnknownError             SessionError
//   unreadable           UnreadableRecordError           SessionError
//   unsupported_format   UnsupportedFormatError          SessionError
//   legacy_data          LegacyDataError                 SessionError
//   conflict             HistoryConflictError (.reason)  SessionError
//   lease_held           LeaseHeldError (.lease, .owner, .expiresAt)  SessionError
//   fenced               FencedError (.lease)            SessionError
//   backend (and kinds   SessionError                    Error
//     added later)

class SessionError extends Error {
  /**
   * @param {string} message
   * @param {{kind?: string, operation?: string|null, sessionId?: string|null}} [details]
   */
  constructor(message = '', details = {}) {
    super(message);
    Object.defineProperty(this, 'name', { value: new.target.name, enumerable: false, configurable: true, writable: true });
    this.kind = details.kind ?? new.target.kind ?? 'backend';
    this.operation = details.operation ?? null;
    this.sessionId = details.sessionId ?? null;
  }
}
SessionError.kind = 'backend';

function defineKind(cls, kind) {
  cls.kind = kind;
  return cls;
}

class InvalidInputError extends SessionError {}
defineKind(InvalidInputError, 'invalid_input');
class InvalidSessionIdError extends InvalidInputError {}
defineKind(InvalidSessionIdError, 'invalid_session_id');
class SessionTooLargeError extends InvalidInputError {}
defineKind(SessionTooLargeError, 'too_large');
class ConfigError extends InvalidInputError {}
defineKind(ConfigError, 'config');
/** The session holds encrypted records and the store URL gives no key; nothing was changed. */
class EncryptionKeyMissingError extends ConfigError {}
defineKind(EncryptionKeyMissingError, 'encryption_key_missing');
class SessionNotFoundError extends SessionError {}
defineKind(SessionNotFoundError, 'not_found');
class SessionConnectionError extends SessionError {
  static [Symbol.hasInstance](value) {
    return (
      Function.prototype[Symbol.hasInstance].call(this, value) ||
      (this === SessionConnectionError && Function.prototype[Symbol.hasInstance].call(OutcomeUnknownConnectionError, value))
    );
  }
}
defineKind(SessionConnectionError, 'connection');
class SessionTimeoutError extends SessionError {
  static [Symbol.hasInstance](value) {
    return (
      Function.prototype[Symbol.hasInstance].call(this, value) ||
      (this === SessionTimeoutError && Function.prototype[Symbol.hasInstance].call(OutcomeUnknownTimeoutError, value))
    );
  }
}
defineKind(SessionTimeoutError, 'timeout');
/** A write was sent but its answer was lost: it may or may not have been applied. */
class OutcomeUnknownError extends SessionError {}
defineKind(OutcomeUnknownError, 'outcome_unknown');
/** A write got no answer in time; also `instanceof SessionTimeoutError`. */
class OutcomeUnknownTimeoutError extends OutcomeUnknownError {}
/** The connection failed while a write was in flight; also `instanceof SessionConnectionError`. */
class OutcomeUnknownConnectionError extends OutcomeUnknownError {}
class UnreadableRecordError extends SessionError {}
defineKind(UnreadableRecordError, 'unreadable');
class UnsupportedFormatError extends SessionError {}
defineKind(UnsupportedFormatError, 'unsupported_format');
class LegacyDataError extends SessionError {}
defineKind(LegacyDataError, 'legacy_data');

/** `applyHistoryTransaction` was refused; nothing changed. `reason`: `operation_reused` or `suffix_mismatch`. */
class HistoryConflictError extends SessionError {
  constructor(message = '', details = {}) {
    super(message, details);
    this.reason = details.reason ?? null;
  }
}
defineKind(HistoryConflictError, 'conflict');

/** `session.lease()` found the lease held by another owner; `lease` is the holder's. */
class LeaseHeldError extends SessionError {
  constructor(message = '', details = {}) {
    super(message, details);
    this.lease = details.lease ?? null;
  }
  get owner() {
    return this.lease ? this.lease.owner : null;
  }
  get expiresAt() {
    return this.lease ? this.lease.expiresAt : null;
  }
}
defineKind(LeaseHeldError, 'lease_held');

/** A fenced session's write was refused: its token is no longer the live lease's. Nothing changed. */
class FencedError extends SessionError {
  constructor(message = '', details = {}) {
    super(message, details);
    this.lease = details.lease ?? null;
  }
}
defineKind(FencedError, 'fenced');

const KINDS = {
  invalid_input: InvalidInputError,
  invalid_session_id: InvalidSessionIdError,
  too_large: SessionTooLargeError,
  config: ConfigError,
  encryption_key_missing: EncryptionKeyMissingError,
  not_found: SessionNotFoundError,
  connection: SessionConnectionError,
  timeout: SessionTimeoutError,
  outcome_unknown: OutcomeUnknownError,
  unreadable: UnreadableRecordError,
  unsupported_format: UnsupportedFormatError,
  legacy_data: LegacyDataError,
  conflict: HistoryConflictError,
  lease_held: LeaseHeldError,
  fenced: FencedError,
  backend: SessionError,
};

function errorClass(kind, cause) {
  if (kind === 'outcome_unknown') {
    if (cause === 'timeout') return OutcomeUnknownTimeoutError;
    if (cause === 'connection') return OutcomeUnknownConnectionError;
    return OutcomeUnknownError;
  }
  return Object.prototype.hasOwnProperty.call(KINDS, kind) ? KINDS[kind] : SessionError;
}

function leaseOf(native) {
  if (native == null) return null;
  return { owner: native.owner, token: Number(native.token), expiresAt: new Date(Number(native.expiresAtMs)) };
}

/** The package's error for a native one (anything else is returned as it is). */
function convert(err, sessionId) {
  const message = err && typeof err.message === 'string' ? err.message : '';
  const at = message.indexOf(MARKER);
  if (at < 0) return err;
  let payload;
  try {
    payload = JSON.parse(message.slice(at + MARKER.length));
  } catch {
    return err;
  }
  const cls = errorClass(payload.kind, payload.cause);
  return new cls(payload.message, {
    kind: payload.kind,
    operation: payload.operation,
    sessionId: payload.sessionId ?? sessionId ?? null,
    reason: payload.reason,
    lease: leaseOf(payload.lease),
  });
}

async function call(make, sessionId) {
  try {
    return await make();
  } catch (err) {
    throw convert(err, sessionId);
  }
}

function callSync(make, sessionId) {
  try {
    return make();
  } catch (err) {
    throw convert(err, sessionId);
  }
}

function quoteId(sessionId) {
  return JSON.stringify(String(sessionId));
}

function invalidInput(operation, sessionId, problem) {
  return new InvalidInputError(`${operation} on session ${quoteId(sessionId)}: ${problem}; nothing was written`, {
    operation,
    sessionId,
  });
}

// ---------------------------------------------------------------------------------- stores ---

/** One native store per URL in the process: sessions share its connections. */
const stores = new Map();

/**
 * `encryptionKey`: a Buffer / Uint8Array of 32 raw bytes, a base64 string, or an array of them
 * (newest first); undefined when none. A key of another type is a ConfigError naming its place.
 */
function encryptionKeys(encryptionKey, sessionId) {
  if (encryptionKey === undefined || encryptionKey === null) return undefined;
  const list = Array.isArray(encryptionKey) ? encryptionKey : [encryptionKey];
  return list.map((key, i) => {
    if (typeof key === 'string' || Buffer.isBuffer(key)) return key;
    if (key instanceof Uint8Array) return Buffer.from(key.buffer, key.byteOffset, key.byteLength);
    throw new ConfigError(
      `encryptionKey (key ${i + 1} of ${list.length}) must be a Buffer / Uint8Array of 32 bytes or a base64 string, got ${key === null ? 'null' : typeof key}`,
      { operation: 'open', sessionId },
    );
  });
}

/** A native store for `url` with the keys of `encryptionKey`; throws ConfigError for a malformed key. */
function nativeStore(url, encryptionKey, sessionId) {
  const keys = encryptionKeys(encryptionKey, sessionId);
  return callSync(() => new NativeStore(url, keys), sessionId);
}

/**
 * The store of `url` shared in the process, one per URL and set of key ids (two different keys
 * never share a store).
 */
function sharedStore(url, encryptionKey, sessionId) {
  const fresh = nativeStore(url, encryptionKey, sessionId);
  const cacheKey = `${url}\n${fresh.encryptionKeyIds.join(',')}`;
  let store = stores.get(cacheKey);
  if (store === undefined) {
    store = fresh;
    stores.set(cacheKey, store);
  }
  return store;
}

function withQuery(url, options) {
  const entries = Object.entries(options).filter(([, v]) => v !== undefined && v !== null);
  if (entries.length === 0) return url;
  const query = entries.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`).join('&');
  return url + (url.includes('?') ? '&' : '?') + query;
}

function ttlOption(ttl, operation, sessionId) {
  if (ttl === undefined || ttl === null) return undefined;
  if (typeof ttl !== 'number' || !Number.isSafeInteger(ttl) || ttl <= 0) {
    throw new ConfigError(`${operation}: ttl must be a positive whole number of seconds, got ${String(ttl)}`, {
      operation: 'open',
      sessionId,
    });
  }
  return ttl;
}

function settingsLimit(settings, sessionId) {
  if (settings === undefined || settings === null) return undefined;
  if (typeof settings !== 'object') {
    throw new ConfigError(`sessionSettings must be an object like { limit: 20 }, got ${typeof settings}`, {
      operation: 'open',
      sessionId,
    });
  }
  const { limit } = settings;
  if (limit === undefined || limit === null) return undefined;
  if (!Number.isSafeInteger(limit)) {
    throw new ConfigError(`sessionSettings.limit must be an integer, got ${String(limit)}`, { operation: 'open', sessionId });
  }
  return limit;
}

function checkLimit(limit, sessionId) {
  if (limit === undefined || limit === null) return undefined;
  if (typeof limit !== 'number' || !Number.isInteger(limit)) {
    throw new InvalidInputError(`get_items on session ${quoteId(sessionId)}: limit must be an integer, got ${String(limit)}`, {
      operation: 'get_items',
      sessionId,
    });
  }
  return limit;
}

/** The JSON text of one item: a plain object (not an array, not null), else InvalidInputError. */
function dumpItem(item, operation, sessionId, where) {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) {
    const got = item === null ? 'null' : Array.isArray(item) ? 'an array' : typeof item;
    throw invalidInput(operation, sessionId, `${where} must be an object, got ${got}`);
  }
  let text;
  try {
    text = JSON.stringify(item);
  } catch (err) {
    throw invalidInput(operation, sessionId, `${where} is not JSON (${err && err.message})`);
  }
  if (typeof text !== 'string' || text[0] !== '{') {
    throw invalidInput(operation, sessionId, `${where} is not a JSON object`);
  }
  return text;
}

function dumpTransaction(transaction, sessionId) {
  const operation = 'apply_history_transaction';
  if (transaction === null || typeof transaction !== 'object' || Array.isArray(transaction)) {
    throw invalidInput(operation, sessionId, 'the transaction must be an object');
  }
  for (const key of ['items', 'expectedSuffix', 'replacement']) {
    const list = transaction[key];
    if (Array.isArray(list)) list.forEach((item, i) => dumpItem(item, operation, sessionId, `${key}[${i}]`));
  }
  try {
    return JSON.stringify(transaction);
  } catch (err) {
    throw invalidInput(operation, sessionId, `the transaction is not JSON (${err && err.message})`);
  }
}

function leaseSeconds(value, name, sessionId, positive) {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (positive && value === 0)) {
    throw new InvalidInputError(
      `acquire_lease on session ${quoteId(sessionId)}: ${name} must be a finite number of seconds, ${positive ? 'more than 0' : 'at least 0'}, got ${String(value)}`,
      { operation: 'acquire_lease', sessionId },
    );
  }
  return value;
}

/**
 * A session of a shared native store, implementing the Agents SDK's `Session` and
 * `SessionHistoryTransactionAwareSession`.
 */
class NativeSession {
  constructor(sessionId, store, options = {}) {
    if (typeof sessionId !== 'string') {
      throw new InvalidSessionIdError(`a session id must be a string, got ${typeof sessionId}`, { operation: 'open' });
    }
    callSync(() => NativeStore.validateSessionId(sessionId), sessionId);
    Object.defineProperty(this, '_store', { value: store, enumerable: false, writable: true });
    Object.defineProperty(this, '_lease', { value: null, enumerable: false, writable: true });
    this.sessionId = sessionId;
    this.sessionSettings = { limit: settingsLimit(options.sessionSettings, sessionId) };
  }

  /** The session id. */
  async getSessionId() {
    return this.sessionId;
  }

  /** The fencing token of a fenced session (what `lease()` resolves to), else null. */
  get fencingToken() {
    return this._lease ? this._lease.token : null;
  }

  /**
   * The newest `limit` items (all without one, or `sessionSettings.limit`), oldest first; a
   * limit of 0 or less gives []. With `{ raw: true }`, each item's exact stored JSON text.
   * Also `getItems({ limit, raw })`.
   */
  async getItems(limit, options) {
    if (limit !== null && typeof limit === 'object') {
      options = limit;
      limit = limit.limit;
    }
    const raw = Boolean(options && options.raw);
    limit = checkLimit(limit, this.sessionId);
    if (limit === undefined) limit = this.sessionSettings.limit;
    if (limit !== undefined && limit <= 0) return [];
    const nativeLimit = limit === undefined ? undefined : Math.min(limit, 0xffffffff);
    if (raw) return call(() => this._store.getItemTexts(this.sessionId, nativeLimit), this.sessionId);
    const text = await call(() => this._store.getItems(this.sessionId, nativeLimit), this.sessionId);
    return JSON.parse(text);
  }

  /** Appends the items as one atomic batch; nothing is written if any item is not an object. */
  async addItems(items) {
    if (!Array.isArray(items)) {
      throw invalidInput('add_items', this.sessionId, `items must be an array, got ${items === null ? 'null' : typeof items}`);
    }
    const texts = items.map((item, i) => dumpItem(item, 'add_items', this.sessionId, `item ${i}`));
    const token = this._token('add_items');
    if (texts.length === 0) return;
    await this._write(() => this._store.addItems(this.sessionId, texts, token));
  }

  /** Removes and returns the newest item, or undefined. */
  async popItem() {
    const token = this._token('pop_item');
    const text = await this._write(() => this._store.popItem(this.sessionId, token));
    return text == null ? undefined : JSON.parse(text);
  }

  /** Deletes the session's items (succeeds when it does not exist). */
  async clearSession() {
    const token = this._token('clear_session');
    await this._write(() => this._store.clearSession(this.sessionId, token));
  }

  /**
   * Applies `{ type: 'append_items', items }` or `{ type: 'replace_suffix', expectedSuffix,
   * replacement }` under `operationId`, atomically and idempotently: a retry with the same id
   * and transaction resolves without applying it again; the same id with another transaction,
   * or a suffix that does not match, rejects with HistoryConflictError and changes nothing.
   */
  async applyHistoryTransaction(args) {
    await this._applyHistoryTransaction(args);
  }

  /** As `applyHistoryTransaction`, resolving to true when applied now, false for a retry. */
  async _applyHistoryTransaction(args) {
    const operation = 'apply_history_transaction';
    if (args === null || typeof args !== 'object') throw invalidInput(operation, this.sessionId, 'the arguments must be { operationId, transaction }');
    const { operationId, transaction } = args;
    if (typeof operationId !== 'string') {
      throw invalidInput(operation, this.sessionId, `the operation id must be a string, got ${typeof operationId}`);
    }
    const text = dumpTransaction(transaction, this.sessionId);
    const token = this._token(operation);
    return this._write(() => this._store.applyHistoryTransaction(this.sessionId, operationId, text, token));
  }

  /** The session's live lease `{ owner, token, expiresAt: Date }`, or null. */
  async leaseInfo() {
    return leaseOf(await call(() => this._store.leaseInfo(this.sessionId), this.sessionId));
  }

  /**
   * Acquires the session's lease for `owner` and resolves to a fenced session of the same
   * class: its writes check atomically that its token is still the live lease's (else
   * FencedError, nothing changed). The lease renews itself every ttl/3 seconds until
   * `release()`. While another owner holds the lease: LeaseHeldError at once, or after waiting
   * up to `wait` seconds.
   */
  async lease(owner, options = {}) {
    const sid = this.sessionId;
    if (typeof owner !== 'string') {
      throw new InvalidInputError(`acquire_lease on session ${quoteId(sid)}: the owner must be a string, got ${typeof owner}`, {
        operation: 'acquire_lease',
        sessionId: sid,
      });
    }
    const ttl = leaseSeconds(options.ttl ?? 30, 'ttl', sid, true);
    const wait = options.wait == null ? undefined : leaseSeconds(options.wait, 'wait', sid, false);
    const store = this._store;
    const acquired = leaseOf(await call(() => store.acquireLease(sid, owner, ttl, wait), sid));
    const fenced = Object.create(Object.getPrototypeOf(this), Object.getOwnPropertyDescriptors(this));
    const state = new LeaseState(store, sid, acquired, ttl);
    fenced._lease = state;
    state.start();
    return fenced;
  }

  /** The lease this fenced session holds ({ owner, token, expiresAt }), else null. */
  get heldLease() {
    return this._lease ? this._lease.info() : null;
  }

  /**
   * Stops renewing and releases the lease of a fenced session; its writes fail with
   * FencedError from then on. Idempotent; a lease already lost is not reported again.
   */
  async release() {
    const state = this._lease;
    if (!state) {
      throw new SessionError(`release: session ${quoteId(this.sessionId)} holds no lease (call lease() first)`, {
        kind: 'invalid_input',
        operation: 'release_lease',
        sessionId: this.sessionId,
      });
    }
    await state.release();
  }

  _token(operation) {
    const state = this._lease;
    if (!state) return undefined;
    state.check(operation);
    return state.token;
  }

  async _write(make) {
    try {
      return await call(make, this.sessionId);
    } catch (err) {
      if (err instanceof FencedError && this._lease && !this._lease.lost) this._lease.lost = err;
      throw err;
    }
  }

  toString() {
    const fence = this._lease ? `, fencingToken=${this._lease.token}` : '';
    return `${this.constructor.name}(sessionId=${quoteId(this.sessionId)}, store=${JSON.stringify(this._store.redactedUrl)}${fence})`;
  }

  [Symbol.for('nodejs.util.inspect.custom')]() {
    return this.toString();
  }
}

if (typeof Symbol.asyncDispose === 'symbol') {
  /** `await using fenced = await session.lease(...)`: released at the end of the block. */
  NativeSession.prototype[Symbol.asyncDispose] = async function asyncDispose() {
    if (this._lease) await this._lease.release();
  };
}

/** What a fenced session knows of its lease, and its renewal timer. */
class LeaseState {
  constructor(store, sessionId, lease, ttl) {
    this.store = store;
    this.sessionId = sessionId;
    this.owner = lease.owner;
    this.token = lease.token;
    this.expiresAt = lease.expiresAt;
    this.ttl = ttl;
    this.ended = false;
    this.lost = null;
    this.timer = null;
    this.renewing = null;
  }

  info() {
    return { owner: this.owner, token: this.token, expiresAt: this.expiresAt };
  }

  start() {
    this.schedule((this.ttl / 3) * 1000);
  }

  schedule(ms) {
    if (this.ended || this.lost) return;
    this.timer = setTimeout(() => {
      this.renewing = this.renew();
    }, ms);
    // A held lease does not keep the process alive: it simply expires after the process ends.
    if (typeof this.timer.unref === 'function') this.timer.unref();
  }

  async renew() {
    const interval = (this.ttl / 3) * 1000;
    try {
      const renewed = leaseOf(await call(() => this.store.renewLease(this.sessionId, this.token, this.ttl), this.sessionId));
      if (renewed) this.expiresAt = renewed.expiresAt;
      this.schedule(interval);
    } catch (err) {
      if (err instanceof FencedError) {
        if (!this.lost) this.lost = err;
        return;
      }
      // The store unreachable: retry sooner; the lease holds until its expiry, and a renewal
      // after that is refused with `fenced`.
      this.schedule(interval / 10);
    }
  }

  check(operation) {
    if (!this.ended && !this.lost) return;
    const why = this.lost ? `the lease was lost (${this.lost.message})` : 'the lease was released';
    throw new FencedError(
      `${operation} on session ${quoteId(this.sessionId)}: fenced: fencing token ${this.token} is no longer valid: ${why}; nothing was changed`,
      { operation, sessionId: this.sessionId },
    );
  }

  async release() {
    if (this.ended) return;
    this.ended = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.renewing) await this.renewing.catch(() => {});
    if (this.timer) clearTimeout(this.timer);
    if (this.lost) return;
    try {
      await call(() => this.store.releaseLease(this.sessionId, this.token), this.sessionId);
    } catch (err) {
      if (!(err instanceof FencedError)) throw err;
    }
  }
}

/** A session of the store at `url` (sqlite://, memory://, redis://, rediss://, redis+cluster://, dynamodb://). */
function openSession(url, sessionId, options = {}) {
  if (typeof url !== 'string') throw new ConfigError(`openSession: url must be a string, got ${typeof url}`, { operation: 'open', sessionId });
  const ttl = ttlOption(options.ttl, 'openSession', sessionId);
  return new NativeSession(sessionId, sharedStore(withQuery(url, { ttl }), options.encryptionKey, sessionId), options);
}

/** SQLite: `path` a database file (shared by the sessions opened on it), or ':memory:' (private to this session). */
class SQLiteSession extends NativeSession {
  constructor(sessionId, options = {}) {
    const ttl = ttlOption(options.ttl, 'SQLiteSession', sessionId);
    const path = options.path === undefined ? ':memory:' : String(options.path);
    let store;
    if (path === ':memory:') {
      store = nativeStore(withQuery('memory://', { ttl }), options.encryptionKey, sessionId);
    } else {
      const absolute = resolvePath(path).split('/').map(encodeURIComponent).join('/');
      store = sharedStore(withQuery(`sqlite://${absolute}`, { ttl }), options.encryptionKey, sessionId);
    }
    super(sessionId, store, options);
  }
}

/** Redis standalone, TLS (rediss://) or Cluster (redis+cluster://), keys under `keyPrefix`. */
class RedisSession extends NativeSession {
  constructor(sessionId, options = {}) {
    if (!options || typeof options.url !== 'string') {
      throw new ConfigError('RedisSession needs { url }, e.g. redis://localhost:6379/0', { operation: 'open', sessionId });
    }
    const ttl = ttlOption(options.ttl, 'RedisSession', sessionId);
    const hasPrefix = /[?&]prefix=/.test(options.url);
    const prefix = options.keyPrefix ?? (hasPrefix ? undefined : DEFAULT_KEY_PREFIX);
    super(sessionId, sharedStore(withQuery(options.url, { prefix, ttl }), options.encryptionKey, sessionId), options);
  }
}

function dynamodbUrl(tableName, region, endpoint, ttl) {
  return withQuery(`dynamodb://${encodeURIComponent(tableName)}`, { region, endpoint, ttl });
}

/** DynamoDB: credentials from the standard AWS chain (environment, profile, role). */
class DynamoDBSession extends NativeSession {
  constructor(sessionId, options = {}) {
    if (!options || typeof options.tableName !== 'string' || options.tableName === '') {
      throw new ConfigError('DynamoDBSession needs { tableName }', { operation: 'open', sessionId });
    }
    const ttl = ttlOption(options.ttl, 'DynamoDBSession', sessionId);
    const url = dynamodbUrl(options.tableName, options.region, options.endpoint, ttl);
    super(sessionId, sharedStore(url, options.encryptionKey, sessionId), options);
  }
}

/** PostgreSQL (postgres:// or postgresql:// URL); a build without the backend throws ConfigError. */
class PostgresSession extends NativeSession {
  constructor(sessionId, options = {}) {
    const schemes = native.knownSchemes();
    if (!schemes.includes('postgres') && !schemes.includes('postgresql')) {
      throw new ConfigError(
        'PostgresSession: this build of openai-agents-session has no PostgreSQL backend (postgres:// is not a known scheme); ' +
          `known: ${schemes.join(', ')}`,
        { operation: 'open', sessionId },
      );
    }
    if (!options || typeof options.url !== 'string') {
      throw new ConfigError('PostgresSession needs { url }', { operation: 'open', sessionId });
    }
    const ttl = ttlOption(options.ttl, 'PostgresSession', sessionId);
    super(sessionId, sharedStore(withQuery(options.url, { ttl }), options.encryptionKey, sessionId), options);
  }
}

/** A new encryption key: 32 random bytes as standard base64 (what `agent-session keygen` prints). */
function generateEncryptionKey() {
  return callSync(() => NativeStore.generateKey());
}

/**
 * Creates the DynamoDB table when it does not exist (this library's layout, on-demand billing),
 * waits until it is active and turns DynamoDB's TTL on the attribute `ttl` on (with
 * `enableTtl: false` the table's TTL setting is left as it is; expired sessions are hidden at
 * read time either way).
 */
async function createTableIfNotExists(options = {}) {
  if (!options || typeof options.tableName !== 'string' || options.tableName === '') {
    throw new ConfigError('createTableIfNotExists needs { tableName }', { operation: 'open' });
  }
  if (options.enableTtl !== undefined && typeof options.enableTtl !== 'boolean') {
    throw new ConfigError('createTableIfNotExists: enableTtl must be a boolean', { operation: 'open' });
  }
  let url = dynamodbUrl(options.tableName, options.region, options.endpoint, undefined);
  if (options.enableTtl === false) url = withQuery(url, { enable_ttl: 'false' });
  const store = sharedStore(url, undefined);
  await call(() => store.init());
}

module.exports = {
  ConfigError,
  EncryptionKeyMissingError,
  DynamoDBSession,
  FencedError,
  HistoryConflictError,
  InvalidInputError,
  InvalidSessionIdError,
  LeaseHeldError,
  LegacyDataError,
  NativeSession,
  OutcomeUnknownConnectionError,
  OutcomeUnknownError,
  OutcomeUnknownTimeoutError,
  PostgresSession,
  RedisSession,
  SQLiteSession,
  SessionConnectionError,
  SessionError,
  SessionNotFoundError,
  SessionTimeoutError,
  SessionTooLargeError,
  UnreadableRecordError,
  UnsupportedFormatError,
  createTableIfNotExists,
  generateEncryptionKey,
  openSession,
  /** @internal the error transport, for the package's tests. */
  _native: native,
  _convert: convert,
};
