// Shared by the tests: the backends (from the test servers' environment), unique ids, temp dirs.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { DynamoDBSession, PostgresSession, RedisSession, SQLiteSession, createTableIfNotExists } from '../index.mjs';

export const TAG = `${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
let counter = 0;
/** A session id (or key prefix, table name) no other test or engineer uses. */
export function uniqueId(label = 's') {
  counter += 1;
  return `node-${label}-${TAG}-${counter}`;
}

/** A temporary directory removed when the test file ends. */
export function tempDir() {
  const dir = mkdtempSync(join(tmpdir(), 'oas-node-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const CI = process.env.CI === 'true';

/** Why a backend can't run here (undefined: it can); with CI=true a missing server is an error. */
function missing(variable) {
  if (process.env[variable]) return undefined;
  const why = `${variable} is not set: source target/test-servers.env (scripts/servers.sh start)`;
  if (CI) throw new Error(why);
  return why;
}

/**
 * Deletes a table of DynamoDB Local through its HTTP API (the package has no such call: tables
 * are the operator's). DynamoDB Local checks that a request is signed, not the signature.
 */
async function deleteLocalTable(endpoint, tableName) {
  await fetch(endpoint, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/x-amz-json-1.0',
      'X-Amz-Target': 'DynamoDB_20120810.DeleteTable',
      Authorization: 'AWS4-HMAC-SHA256 Credential=dummy/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00',
    },
    body: JSON.stringify({ TableName: tableName }),
  });
}

const tables = new Map();
after(async () => {
  for (const [endpoint, table] of tables) {
    const name = await table.catch(() => undefined);
    if (name) await deleteLocalTable(endpoint, name).catch(() => {});
  }
});
async function dynamoTable() {
  const endpoint = process.env.OAS_TEST_DYNAMODB_ENDPOINT;
  const region = process.env.AWS_REGION || 'us-east-1';
  if (!tables.has(endpoint)) {
    const tableName = `oas_node_${TAG.replace(/[^A-Za-z0-9]/g, '_')}`;
    tables.set(endpoint, createTableIfNotExists({ tableName, region, endpoint }).then(() => tableName));
  }
  return { tableName: await tables.get(endpoint), region, endpoint };
}

/**
 * The backends every contract test runs on: `make(sessionId, options)` opens a session;
 * sessions made by one backend's `make` share a store unless `options` differ.
 */
export function backends() {
  const dir = tempDir();
  const file = join(dir, 'sessions.db');
  return [
    { name: 'sqlite file', make: async (id, o = {}) => new SQLiteSession(id, { path: file, ...o }) },
    {
      name: 'sqlite memory',
      // ':memory:' is private to the session made with it; another session object of the same
      // id in a test shares the first one's store, as code holding that session would.
      first: new Map(),
      async make(id, o = {}) {
        const session = new SQLiteSession(id, o);
        const key = `${id}\u0000${JSON.stringify(o)}`;
        if (this.first.has(key)) session._store = this.first.get(key)._store;
        else this.first.set(key, session);
        return session;
      },
    },
    {
      name: 'redis',
      skip: missing('OAS_TEST_REDIS_URL'),
      prefix: uniqueId('prefix'),
      make(id, o = {}) {
        return new RedisSession(id, { url: process.env.OAS_TEST_REDIS_URL, keyPrefix: this.prefix, ...o });
      },
    },
    {
      name: 'redis cluster',
      skip: missing('OAS_TEST_REDIS_CLUSTER_URL'),
      prefix: uniqueId('prefix'),
      make(id, o = {}) {
        return new RedisSession(id, { url: process.env.OAS_TEST_REDIS_CLUSTER_URL, keyPrefix: this.prefix, ...o });
      },
    },
    {
      name: 'dynamodb',
      skip: missing('OAS_TEST_DYNAMODB_ENDPOINT'),
      async make(id, o = {}) {
        return new DynamoDBSession(id, { ...(await dynamoTable()), ...o });
      },
    },
    {
      // the default tables: unique session ids keep tests and engineers apart
      name: 'postgres',
      skip: missing('OAS_TEST_POSTGRES_URL'),
      make(id, o = {}) {
        return new PostgresSession(id, { url: process.env.OAS_TEST_POSTGRES_URL, ...o });
      },
    },
  ];
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
