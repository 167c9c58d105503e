// The type-level test (tsc --strict --noEmit, by scripts/node-tests.sh): our sessions are the
// SDK's Session and SessionHistoryTransactionAwareSession.
import type { AgentInputItem, Session, SessionHistoryTransactionAwareSession } from '@openai/agents-core';
import {
  DynamoDBSession,
  HistoryConflictError,
  LeaseHeldError,
  PostgresSession,
  RedisSession,
  SQLiteSession,
  SessionError,
  generateEncryptionKey,
  openSession,
  type LeaseInfo,
} from 'openai-agents-session';

const url = 'redis://localhost:6379/0';
const s: SessionHistoryTransactionAwareSession = new RedisSession('x', { url });
const plain: Session = new SQLiteSession('x', { path: 'a.db', ttl: 60, sessionSettings: { limit: 10 } });
const d: SessionHistoryTransactionAwareSession = new DynamoDBSession('x', { tableName: 't', region: 'us-east-1', endpoint: 'http://127.0.0.1:8000' });
const o: SessionHistoryTransactionAwareSession = openSession('sqlite://a.db', 'x');
const key: string = generateEncryptionKey();
const pg: SessionHistoryTransactionAwareSession = new PostgresSession('x', { url: 'postgres://h/db', ttl: 60, sessionSettings: { limit: 5 }, encryptionKey: key });
const enc: Session = new SQLiteSession('x', { path: 'a.db', encryptionKey: [Buffer.from(key, 'base64'), new Uint8Array(32), key] });
const encOpen: Session = openSession('redis://h/0', 'x', { encryptionKey: key });
// @ts-expect-error PostgresSession needs { url }
new PostgresSession('x', {});
// @ts-expect-error an encryption key is bytes or a base64 string
new SQLiteSession('x', { encryptionKey: 42 });

async function use(): Promise<void> {
  const items: AgentInputItem[] = await plain.getItems(5);
  const raw: string[] = await new SQLiteSession('y').getItems({ raw: true });
  await s.applyHistoryTransaction({ operationId: 'op', transaction: { type: 'append_items', items } });
  await d.applyHistoryTransaction({
    operationId: 'op2',
    transaction: { type: 'replace_suffix', expectedSuffix: items, replacement: [] },
  });
  const session = new RedisSession('z', { url, keyPrefix: 'app' });
  const fenced: RedisSession = await session.lease('worker', { ttl: 30, wait: 5 });
  const token: number | null = fenced.fencingToken;
  const info: LeaseInfo | null = await fenced.leaseInfo();
  await fenced.release();
  try {
    await o.addItems(items);
  } catch (err) {
    if (err instanceof HistoryConflictError) {
      const reason: 'operation_reused' | 'suffix_mismatch' | null = err.reason;
      void reason;
    } else if (err instanceof LeaseHeldError) {
      const when: Date | null = err.expiresAt;
      void when;
    } else if (err instanceof SessionError) {
      const kind: string = err.kind;
      const op: string | null = err.operation;
      void [kind, op];
    }
  }
  void [raw, token, info];
}
void use;

// What must not compile: each line below is an error under --strict (tsc fails on an unused
// expect-error directive, so these prove the declarations are tight).
// @ts-expect-error RedisSession needs { url }
new RedisSession('x', {});
// @ts-expect-error DynamoDBSession needs { tableName }
new DynamoDBSession('x', { region: 'us-east-1' });
// @ts-expect-error a transaction of an unknown type
void s.applyHistoryTransaction({ operationId: 'op', transaction: { type: 'rewrite', items: [] } });
// @ts-expect-error replace_suffix needs expectedSuffix
void s.applyHistoryTransaction({ operationId: 'op', transaction: { type: 'replace_suffix', replacement: [] } });
// @ts-expect-error raw items are strings, not objects
const notItems: AgentInputItem[] = await new SQLiteSession('y').getItems({ raw: true });
void notItems;
