// session.lease(owner, { ttl, wait }): a fenced session with release(), renewing itself while
// held; leaseInfo(); LeaseHeldError and FencedError; on every backend.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FencedError, InvalidInputError, LeaseHeldError, SQLiteSession } from '../index.mjs';
import { backends, sleep, uniqueId } from './helpers.mjs';

const msg = (n) => ({ role: 'user', content: `m${n}` });

for (const backend of backends()) {
  describe(backend.name, { skip: backend.skip }, () => {
    test('one holder; the fenced session writes; after release its writes are fenced', async () => {
      const id = uniqueId('lease');
      const s = await backend.make(id);
      assert.equal(await s.leaseInfo(), null);
      const fenced = await s.lease('worker-1', { ttl: 10 });
      assert.ok(fenced instanceof s.constructor);
      assert.equal(typeof fenced.fencingToken, 'number');
      assert.equal(s.fencingToken, null);
      const info = await s.leaseInfo();
      assert.equal(info.owner, 'worker-1');
      assert.equal(info.token, fenced.fencingToken);
      assert.ok(info.expiresAt instanceof Date && info.expiresAt.getTime() > Date.now() + 5000);
      await fenced.addItems([msg(1)]);
      await fenced.applyHistoryTransaction({ operationId: 'f1', transaction: { type: 'append_items', items: [msg(2)] } });
      assert.deepEqual(await fenced.popItem(), msg(2));
      const other = await backend.make(id);
      await assert.rejects(other.lease('worker-2', { ttl: 10 }), (err) => {
        assert.ok(err instanceof LeaseHeldError, String(err));
        assert.equal(err.kind, 'lease_held');
        assert.equal(err.owner, 'worker-1');
        assert.ok(err.expiresAt instanceof Date);
        assert.equal(err.sessionId, id);
        return true;
      });
      await fenced.release();
      await fenced.release(); // idempotent
      assert.equal(await s.leaseInfo(), null);
      await assert.rejects(fenced.addItems([msg(3)]), (err) => err instanceof FencedError && err.kind === 'fenced' && err.operation === 'add_items');
      await assert.rejects(fenced.clearSession(), FencedError);
      assert.deepEqual(await s.getItems(), [msg(1)]);
      // a waiting owner gets it once released
      const again = await other.lease('worker-2', { ttl: 10, wait: 5 });
      assert.ok(again.fencingToken > fenced.fencingToken);
      await again.release();
    });

    test('wait: the second owner gets the lease when the first releases it', async () => {
      const id = uniqueId('wait');
      const a = await (await backend.make(id)).lease('a', { ttl: 10 });
      const waiting = (await backend.make(id)).lease('b', { ttl: 10, wait: 10 });
      await sleep(300);
      await a.release();
      const b = await waiting;
      assert.equal((await b.leaseInfo()).owner, 'b');
      await b.release();
    });

    test('the lease renews itself while held; an expired lease taken over fences the old holder', async () => {
      const id = uniqueId('renew');
      const s = await backend.make(id);
      const held = await s.lease('holder', { ttl: 1.5 });
      await sleep(2500); // past the ttl: renewed every 0.5 s
      const info = await s.leaseInfo();
      assert.equal(info && info.owner, 'holder');
      await held.addItems([msg(1)]);
      // A lease that is not renewed (another process stalled) expires and is taken over.
      const stale = await (await backend.make(uniqueId('stale'))).lease('x', { ttl: 1 });
      stale._lease.ended = false;
      clearTimeout(stale._lease.timer);
      stale._lease.timer = null;
      stale._lease.schedule = () => {};
      await sleep(1300);
      const taker = await (await backend.make(stale.sessionId)).lease('y', { ttl: 10 });
      await assert.rejects(stale.addItems([msg(2)]), (err) => err instanceof FencedError && err.lease && err.lease.owner === 'y');
      await assert.rejects(stale.addItems([msg(3)]), FencedError); // lost: no I/O
      await taker.addItems([msg(4)]);
      await stale.release(); // a lost lease is not reported again
      await taker.release();
      await held.release();
    });
  });
}

test('lease options are checked', async () => {
  const s = new SQLiteSession(uniqueId());
  await assert.rejects(s.lease('o', { ttl: 0 }), InvalidInputError);
  await assert.rejects(s.lease('o', { ttl: -1 }), InvalidInputError);
  await assert.rejects(s.lease('o', { ttl: 5, wait: Number.NaN }), InvalidInputError);
  await assert.rejects(s.lease(42), InvalidInputError);
  await assert.rejects(s.release(), /holds no lease/);
});

test('await using releases the lease', { skip: typeof Symbol.asyncDispose !== 'symbol' }, async () => {
  const s = new SQLiteSession(uniqueId());
  const fenced = await s.lease('o', { ttl: 5 });
  await fenced[Symbol.asyncDispose]();
  assert.equal(await s.leaseInfo(), null);
});
