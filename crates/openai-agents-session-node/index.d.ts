// Type declarations of openai-agents-session (ESM and CommonJS entry points alike).
import type {
  AgentInputItem,
  SessionHistoryTransactionArgs,
  SessionHistoryTransactionAwareSession,
} from '@openai/agents-core';

/** Options every session takes. */
export interface SessionSettings {
  /** The default `limit` of `getItems()` (undefined: every item). */
  limit?: number;
}

/**
 * An encryption key (AES-256-GCM at rest, docs/encryption.md): 32 raw bytes as a Buffer /
 * Uint8Array or a base64 string (`generateEncryptionKey()`, `agent-session keygen`), or a list
 * of them, newest first: new records are sealed with the first, older keys still read. Keys
 * given here replace the URL's `encryption_key_env` / `encryption_key_file`; the URL's
 * `require_encryption` stays. A malformed key throws ConfigError naming which key (never its
 * bytes). Reading a record sealed with an unknown key: `getItems` skips it, `popItem` rejects
 * with UnreadableRecordError (kind `unreadable`) and removes nothing. A session holding
 * encrypted records opened without a key: EncryptionKeyMissingError.
 */
export type EncryptionKey = Uint8Array | string | Array<Uint8Array | string>;

export interface CommonOptions {
  /** Seconds after the last write before the session expires (whole, positive). */
  ttl?: number;
  sessionSettings?: SessionSettings;
  encryptionKey?: EncryptionKey;
}

export interface SQLiteOptions extends CommonOptions {
  /** A database file, or ':memory:' (the default: private to this session). */
  path?: string;
}

export interface RedisOptions extends CommonOptions {
  /** redis://, rediss:// (TLS) or redis+cluster:// URL, with the library's query options. */
  url: string;
  /** Key prefix (default "openai_agents_session", as the Python package's). */
  keyPrefix?: string;
}

export interface DynamoDBOptions extends CommonOptions {
  tableName: string;
  region?: string;
  /** An endpoint such as DynamoDB Local's http://127.0.0.1:8000. */
  endpoint?: string;
}

export interface PostgresOptions extends CommonOptions {
  url: string;
}

export interface OpenSessionOptions extends CommonOptions {}

/** A session lease: `expiresAt` moves with each renewal. */
export interface LeaseInfo {
  owner: string;
  token: number;
  expiresAt: Date;
}

export interface LeaseOptions {
  /** Seconds the lease lasts unless renewed (default 30); renewed every ttl/3 while held. */
  ttl?: number;
  /** Seconds to wait for another owner's lease to end (default: fail at once with LeaseHeldError). */
  wait?: number;
}

export interface GetItemsOptions {
  limit?: number;
  /** Each item's exact stored JSON text instead of a parsed object. */
  raw?: boolean;
}

/** A session of a shared store: the Agents SDK's Session and SessionHistoryTransactionAwareSession. */
export declare class NativeSession implements SessionHistoryTransactionAwareSession {
  readonly sessionId: string;
  readonly sessionSettings: SessionSettings;
  /** The fencing token of a fenced session (what `lease()` resolves to), else null. */
  readonly fencingToken: number | null;
  /** The lease a fenced session holds, else null. */
  readonly heldLease: LeaseInfo | null;
  getSessionId(): Promise<string>;
  getItems(limit?: number): Promise<AgentInputItem[]>;
  getItems(limit: number | undefined, options: GetItemsOptions & { raw: true }): Promise<string[]>;
  getItems(options: GetItemsOptions & { raw: true }): Promise<string[]>;
  getItems(limit: number | undefined, options: GetItemsOptions): Promise<AgentInputItem[] | string[]>;
  getItems(options: GetItemsOptions): Promise<AgentInputItem[] | string[]>;
  addItems(items: AgentInputItem[]): Promise<void>;
  popItem(): Promise<AgentInputItem | undefined>;
  clearSession(): Promise<void>;
  /** Atomic and idempotent; an already-applied operation resolves without applying again. */
  applyHistoryTransaction(args: SessionHistoryTransactionArgs): Promise<void>;
  /** The session's live lease, or null. */
  leaseInfo(): Promise<LeaseInfo | null>;
  /** Acquires the lease and resolves to a fenced session of the same class, renewing itself until `release()`. */
  lease(owner: string, options?: LeaseOptions): Promise<this>;
  /** Stops renewing and releases a fenced session's lease (idempotent). */
  release(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
  toString(): string;
}

export declare class SQLiteSession extends NativeSession {
  constructor(sessionId: string, options?: SQLiteOptions);
}
export declare class RedisSession extends NativeSession {
  constructor(sessionId: string, options: RedisOptions);
}
export declare class DynamoDBSession extends NativeSession {
  constructor(sessionId: string, options: DynamoDBOptions);
}
/** PostgreSQL: `url` a postgres:// or postgresql:// URL (the library's query options). */
export declare class PostgresSession extends NativeSession {
  constructor(sessionId: string, options: PostgresOptions);
}

/** A session of the store at any URL the library opens (sqlite://, memory://, redis://, rediss://, redis+cluster://, dynamodb://, postgres://). */
export declare function openSession(url: string, sessionId: string, options?: OpenSessionOptions): NativeSession;

export interface CreateTableOptions {
  tableName: string;
  region?: string;
  endpoint?: string;
  /** True (the default): DynamoDB's TTL is turned on the attribute `ttl`; false leaves the table's TTL setting as it is. */
  enableTtl?: boolean;
}
export declare function createTableIfNotExists(options: CreateTableOptions): Promise<void>;

/** A new encryption key: 32 random bytes as standard base64 (what `agent-session keygen` prints). */
export declare function generateEncryptionKey(): string;

export interface ErrorDetails {
  kind?: string;
  operation?: string | null;
  sessionId?: string | null;
}

/** Any failure of a session operation; the message names the operation and the session. */
export declare class SessionError extends Error {
  constructor(message?: string, details?: ErrorDetails);
  /** The stable name of the failure (the error table). */
  readonly kind: string;
  /** The call that failed: get_items, add_items, pop_item, clear_session, apply_history_transaction, open, ... */
  readonly operation: string | null;
  readonly sessionId: string | null;
  static readonly kind: string;
}
export declare class InvalidInputError extends SessionError {}
export declare class InvalidSessionIdError extends InvalidInputError {}
export declare class SessionTooLargeError extends InvalidInputError {}
export declare class ConfigError extends InvalidInputError {}
/** The session holds encrypted records and neither `encryptionKey` nor the store URL gives a key (kind `encryption_key_missing`). */
export declare class EncryptionKeyMissingError extends ConfigError {}
export declare class SessionNotFoundError extends SessionError {}
export declare class SessionConnectionError extends SessionError {}
export declare class SessionTimeoutError extends SessionError {}
export declare class OutcomeUnknownError extends SessionError {}
/** Also `instanceof SessionTimeoutError`. */
export declare class OutcomeUnknownTimeoutError extends OutcomeUnknownError {}
/** Also `instanceof SessionConnectionError`. */
export declare class OutcomeUnknownConnectionError extends OutcomeUnknownError {}
export declare class UnreadableRecordError extends SessionError {}
export declare class UnsupportedFormatError extends SessionError {}
export declare class LegacyDataError extends SessionError {}
export declare class HistoryConflictError extends SessionError {
  constructor(message?: string, details?: ErrorDetails & { reason?: string | null });
  /** "operation_reused" or "suffix_mismatch". */
  readonly reason: 'operation_reused' | 'suffix_mismatch' | null;
}
export declare class LeaseHeldError extends SessionError {
  constructor(message?: string, details?: ErrorDetails & { lease?: LeaseInfo | null });
  readonly lease: LeaseInfo | null;
  readonly owner: string | null;
  readonly expiresAt: Date | null;
}
export declare class FencedError extends SessionError {
  constructor(message?: string, details?: ErrorDetails & { lease?: LeaseInfo | null });
  readonly lease: LeaseInfo | null;
}
