// ESM entry point: the same classes as the CommonJS one (index.cjs), so that `instanceof`
// holds across both.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const pkg = require('./index.cjs');

export const {
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
} = pkg;
export default pkg;
