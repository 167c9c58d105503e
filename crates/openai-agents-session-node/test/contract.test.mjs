// The session contract on every backend: order, limits, pop, clear, isolation, TTL, bad input,
// concurrent writers, exact round trips (raw), plain objects from JSON.parse.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidInputError, SessionError, openSession } from '../index.mjs';
import { backends, sleep, uniqueId } from './helpers.mjs';

const msg = (n) => ({ role: 'user', content: `m${n}` });

for (const backend of backends()) {
  describe(backend.name, { skip: backend.skip }, () => {
    const open = (id, o) => backend.make(id ?? uniqueId(), o);

    test('order, limits, getSessionId', async () => {
      const s = await open();
      assert.equal(await s.getSessionId(), s.sessionId);
      assert.deepEqual(await s.getItems(), []);
      await s.addItems([msg(1), msg(2)]);
      await s.addItems([msg(3)]);
      assert.deepEqual(await s.getItems(), [msg(1), msg(2), msg(3)]);
      assert.deepEqual(await s.getItems(2), [msg(2), msg(3)]);
      assert.deepEqual(await s.getItems(10), [msg(1), msg(2), msg(3)]);
      assert.deepEqual(await s.getItems(0), []);
      assert.deepEqual(await s.getItems(-1), []);
      await s.addItems([]); // nothing to write
      assert.equal((await s.getItems()).length, 3);
    });

    test('sessionSettings.limit is the default limit', async () => {
      const s = await open(undefined, { sessionSettings: { limit: 2 } });
      await s.addItems([msg(1), msg(2), msg(3)]);
      assert.deepEqual(await s.getItems(), [msg(2), msg(3)]);
      assert.deepEqual(await s.getItems(1), [msg(3)]);
    });

    test('popItem and clearSession', async () => {
      const s = await open();
      assert.equal(await s.popItem(), undefined);
      await s.addItems([msg(1), msg(2)]);
      assert.deepEqual(await s.popItem(), msg(2));
      assert.deepEqual(await s.getItems(), [msg(1)]);
      await s.clearSession();
      assert.deepEqual(await s.getItems(), []);
      assert.equal(await s.popItem(), undefined);
      await s.clearSession(); // clearing nothing succeeds
      await s.addItems([msg(9)]);
      assert.deepEqual(await s.getItems(), [msg(9)]);
    });

    test('sessions are isolated, ids of any text', async () => {
      const ids = [uniqueId('a'), `${uniqueId('b')} with spaces/and:colons`, `${uniqueId('c')}-ünïcødé-🙂`];
      const sessions = await Promise.all(ids.map((id) => open(id)));
      await Promise.all(sessions.map((s, i) => s.addItems([msg(i)])));
      for (const [i, s] of sessions.entries()) assert.deepEqual(await s.getItems(), [msg(i)]);
      await sessions[0].clearSession();
      assert.deepEqual(await sessions[1].getItems(), [msg(1)]);
    });

    test('another session object on the same id sees the same history', async () => {
      const id = uniqueId();
      const a = await open(id);
      const b = await open(id);
      await a.addItems([msg(1)]);
      assert.deepEqual(await b.getItems(), [msg(1)]);
      assert.deepEqual(await b.popItem(), msg(1));
      assert.deepEqual(await a.getItems(), []);
    });

    test('exact round trips: key order, unicode, numbers, raw text', async () => {
      const s = await open();
      const item = { type: 'message', z: 1, a: [1.5, -0, 1e21, 'é\u2028🙂'], nested: { b: null, a: true }, content: '\u0000' };
      await s.addItems([item]);
      const [back] = await s.getItems();
      assert.equal(JSON.stringify(back), JSON.stringify(item));
      const [raw] = await s.getItems({ raw: true });
      assert.equal(typeof raw, 'string');
      assert.deepEqual(JSON.parse(raw), JSON.parse(JSON.stringify(item)));
      assert.deepEqual(await s.getItems(1, { raw: true }), [raw]);
    });

    test('items are plain objects from JSON.parse: __proto__ stays a key', async () => {
      const s = await open();
      const item = JSON.parse('{"role":"user","__proto__":{"polluted":true},"content":"x"}');
      await s.addItems([item]);
      const [back] = await s.getItems();
      assert.equal(Object.getPrototypeOf(back), Object.prototype);
      assert.equal(back.polluted, undefined);
      assert.ok(Object.prototype.hasOwnProperty.call(back, '__proto__'));
      assert.equal(JSON.stringify(back), JSON.stringify(item));
      assert.equal({}.polluted, undefined);
    });

    test('bad input is rejected before anything is written', async () => {
      const s = await open();
      await s.addItems([msg(1)]);
      for (const bad of [[msg(2), 'text'], [msg(2), null], [msg(2), [1, 2]], [msg(2), 42], [{ n: 10n }]]) {
        await assert.rejects(s.addItems(bad), (err) => {
          assert.ok(err instanceof InvalidInputError, String(err));
          assert.equal(err.kind, 'invalid_input');
          assert.equal(err.operation, 'add_items');
          assert.equal(err.sessionId, s.sessionId);
          assert.match(err.message, /nothing was written/);
          return true;
        });
      }
      const cyclic = { role: 'user' };
      cyclic.self = cyclic;
      await assert.rejects(s.addItems([cyclic]), InvalidInputError);
      await assert.rejects(s.addItems('not a list'), InvalidInputError);
      await assert.rejects(s.getItems(1.5), InvalidInputError);
      assert.deepEqual(await s.getItems(), [msg(1)]);
      assert.throws(() => openSession('memory://', ''), (err) => err instanceof SessionError && err.kind === 'invalid_session_id');
    });

    test('concurrent writers from many Promises lose nothing; concurrent pops return each item once', async () => {
      const s = await open();
      const writers = 24;
      const per = 4;
      await Promise.all(
        Array.from({ length: writers }, (_, w) =>
          s.addItems(Array.from({ length: per }, (_, i) => ({ role: 'user', w, i }))),
        ),
      );
      const items = await s.getItems();
      assert.equal(items.length, writers * per);
      // each batch is contiguous and in order
      for (let k = 0; k < items.length; k += per) {
        const w = items[k].w;
        for (let i = 0; i < per; i++) assert.deepEqual(items[k + i], { role: 'user', w, i });
      }
      const popped = await Promise.all(Array.from({ length: 30 }, () => s.popItem()));
      const got = popped.filter((x) => x !== undefined).map((x) => `${x.w}/${x.i}`);
      assert.equal(got.length, 30);
      assert.equal(new Set(got).size, 30);
      assert.equal((await s.getItems()).length, writers * per - 30);
    });

    test('ttl: an expired session is invisible', async () => {
      const s = await open(undefined, { ttl: 1 });
      await s.addItems([msg(1)]);
      assert.deepEqual(await s.getItems(), [msg(1)]);
      await sleep(2100);
      assert.deepEqual(await s.getItems(), []);
      assert.equal(await s.popItem(), undefined);
    });
  });
}
