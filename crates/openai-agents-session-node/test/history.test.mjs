// applyHistoryTransaction with the JS SDK's rules on every backend: appended and replaced
// atomically, an idempotent retry, a reused id with another transaction, a suffix mismatch
// (nothing changed), bad input (nothing written, the id not used up).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HistoryConflictError, InvalidInputError } from '../index.mjs';
import { backends, uniqueId } from './helpers.mjs';

const msg = (n) => ({ type: 'message', role: 'user', content: `m${n}` });

for (const backend of backends()) {
  describe(backend.name, { skip: backend.skip }, () => {
    const open = () => backend.make(uniqueId('tx'));

    test('append_items: applied once, a retry resolves without applying again', async () => {
      const s = await open();
      const args = { operationId: 'op-1', transaction: { type: 'append_items', items: [msg(1), msg(2)] } };
      assert.equal(await s.applyHistoryTransaction(args), undefined);
      assert.equal(await s.applyHistoryTransaction(structuredClone(args)), undefined);
      assert.deepEqual(await s.getItems(), [msg(1), msg(2)]);
      assert.equal(await s._applyHistoryTransaction(args), false);
      assert.equal(await s._applyHistoryTransaction({ operationId: 'op-2', transaction: { type: 'append_items', items: [] } }), true);
    });

    test('replace_suffix: replaces the newest items when they match', async () => {
      const s = await open();
      await s.addItems([msg(1), msg(2), msg(3)]);
      // key order is ignored when comparing the suffix
      const expected = [{ content: 'm2', role: 'user', type: 'message' }, msg(3)];
      await s.applyHistoryTransaction({ operationId: 'r', transaction: { type: 'replace_suffix', expectedSuffix: expected, replacement: [msg(9)] } });
      assert.deepEqual(await s.getItems(), [msg(1), msg(9)]);
      await s.applyHistoryTransaction({ operationId: 'r', transaction: { type: 'replace_suffix', expectedSuffix: expected, replacement: [msg(9)] } });
      assert.deepEqual(await s.getItems(), [msg(1), msg(9)]);
      await s.applyHistoryTransaction({ operationId: 'empty', transaction: { type: 'replace_suffix', expectedSuffix: [], replacement: [msg(10)] } });
      assert.deepEqual(await s.getItems(), [msg(1), msg(9), msg(10)]);
    });

    test('a reused id with another transaction: HistoryConflictError operation_reused, nothing changed', async () => {
      const s = await open();
      await s.applyHistoryTransaction({ operationId: 'op', transaction: { type: 'append_items', items: [msg(1)] } });
      await assert.rejects(
        s.applyHistoryTransaction({ operationId: 'op', transaction: { type: 'append_items', items: [msg(2)] } }),
        (err) => {
          assert.ok(err instanceof HistoryConflictError, String(err));
          assert.equal(err.kind, 'conflict');
          assert.equal(err.reason, 'operation_reused');
          assert.equal(err.operation, 'apply_history_transaction');
          assert.equal(err.sessionId, s.sessionId);
          return true;
        },
      );
      assert.deepEqual(await s.getItems(), [msg(1)]);
    });

    test('a suffix mismatch: HistoryConflictError suffix_mismatch, nothing changed, the id still free', async () => {
      const s = await open();
      await s.addItems([msg(1), msg(2)]);
      for (const expectedSuffix of [[msg(1)], [msg(0), msg(1), msg(2)]]) {
        await assert.rejects(
          s.applyHistoryTransaction({ operationId: 'x', transaction: { type: 'replace_suffix', expectedSuffix, replacement: [msg(7)] } }),
          (err) => err instanceof HistoryConflictError && err.reason === 'suffix_mismatch',
        );
      }
      assert.deepEqual(await s.getItems(), [msg(1), msg(2)]);
      // the failed transaction did not use up its id
      await s.applyHistoryTransaction({ operationId: 'x', transaction: { type: 'append_items', items: [msg(3)] } });
      assert.deepEqual(await s.getItems(), [msg(1), msg(2), msg(3)]);
    });

    test('bad transactions are rejected before anything is written', async () => {
      const s = await open();
      await s.addItems([msg(1)]);
      const bad = [
        null,
        { operationId: '', transaction: { type: 'append_items', items: [msg(2)] } },
        { operationId: 7, transaction: { type: 'append_items', items: [msg(2)] } },
        { operationId: 'b', transaction: { type: 'append_items', items: [msg(2), 'text'] } },
        { operationId: 'b', transaction: { type: 'append_items' } },
        { operationId: 'b', transaction: { type: 'rewrite', items: [] } },
        { operationId: 'b', transaction: { type: 'replace_suffix', expectedSuffix: [msg(1)] } },
        { operationId: 'b', transaction: 'append' },
      ];
      for (const args of bad) {
        await assert.rejects(s.applyHistoryTransaction(args), (err) => {
          assert.ok(err instanceof InvalidInputError, `${JSON.stringify(args)}: ${err}`);
          assert.equal(err.operation, 'apply_history_transaction');
          return true;
        });
      }
      assert.deepEqual(await s.getItems(), [msg(1)]);
      await s.applyHistoryTransaction({ operationId: 'b', transaction: { type: 'append_items', items: [msg(2)] } });
      assert.deepEqual(await s.getItems(), [msg(1), msg(2)]);
    });

    test('concurrent retries of one operation apply it once', async () => {
      const s = await open();
      const args = { operationId: 'race', transaction: { type: 'append_items', items: [msg(1), msg(2)] } };
      const applied = await Promise.all(Array.from({ length: 8 }, () => s._applyHistoryTransaction(args)));
      assert.equal(applied.filter(Boolean).length, 1);
      assert.deepEqual(await s.getItems(), [msg(1), msg(2)]);
    });
  });
}
