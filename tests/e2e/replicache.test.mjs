// The real replicache 15.3.0 client, in Node, against the running dev server: with the
// in-memory store and with DynamoDB Local. Pulls happen only when a poke arrives (as in the
// demo), never by an explicit rep.pull() in a test.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { TIMEOUT_MS, client, messages, until } from './clients.mjs';
import { startDynamoDbLocal, startProxy, startServer } from './support.mjs';

/** A raw pull, as `user`, for `group`. */
async function rawPull(base, space, user, clientGroupID) {
  const response = await fetch(`${base}api/replicache/pull?spaceID=${space}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: user },
    body: JSON.stringify({ pullVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID, cookie: null }),
  });
  return { status: response.status, body: response.status === 200 ? await response.json() : null };
}

const message = (from, content, order) => ({ id: randomUUID(), from, content, order });

for (const store of ['memory', 'dynamodb']) {
  describe(`real replicache client, ${store} store`, () => {
    let dynamodb;
    let server;
    const opened = [];
    const cleanups = [];
    const open = (...args) => {
      const c = client(...args);
      opened.push(c);
      return c;
    };

    before(async () => {
      if (store === 'dynamodb') dynamodb = await startDynamoDbLocal();
      server = await startServer({ dynamodbEndpoint: dynamodb?.endpoint });
    });

    after(async () => {
      await Promise.all(opened.map((c) => c.close()));
      for (const cleanup of cleanups) await cleanup();
      await server?.stop();
      await dynamodb?.stop();
    });

    test('clients in different groups converge, on pokes alone', async () => {
      const space = `s-${randomUUID()}`;
      const a = open(server.url, space, 'alice');
      const b = open(server.url, space, 'bob');
      await Promise.all([a.connected, b.connected]);
      const m1 = message('alice', 'hello from a', 1);
      await a.rep.mutate.createMessage(m1);
      await until(b.rep, (d) => d[m1.id]?.content === 'hello from a', 'b to see a message');
      const m2 = message('bob', 'hello from b', 2);
      await b.rep.mutate.createMessage(m2);
      await until(a.rep, (d) => d[m2.id], 'a to see b message');
      assert.deepEqual(await messages(a.rep), await messages(b.rep));
    });

    test('deletes propagate', async () => {
      const space = `s-${randomUUID()}`;
      const a = open(server.url, space, 'alice');
      const b = open(server.url, space, 'bob');
      await Promise.all([a.connected, b.connected]);
      const m = message('alice', 'short-lived', 1);
      await a.rep.mutate.createMessage(m);
      await until(b.rep, (d) => d[m.id], 'b to see the message');
      await b.rep.mutate.deleteMessage({ id: m.id });
      await until(a.rep, (d) => !d[m.id], 'a to see the delete');
    });

    test('a mutation the server rejects is dropped everywhere and blocks nothing', async () => {
      const space = `s-${randomUUID()}`;
      const a = open(server.url, space, 'alice');
      const b = open(server.url, space, 'bob');
      await Promise.all([a.connected, b.connected]);
      const bad = message('alice', 'negative order', -1);
      await a.rep.mutate.createMessage(bad);
      assert.ok((await messages(a.rep))[bad.id], 'applied optimistically on the client');
      const good = message('alice', 'after the bad one', 2);
      await a.rep.mutate.createMessage(good);
      await until(b.rep, (d) => d[good.id], 'b to see the later mutation');
      await until(a.rep, (d) => d[good.id] && !d[bad.id], 'a to drop the rejected mutation');
      assert.equal((await messages(b.rep))[bad.id], undefined);
    });

    test('pushes made while the server is down arrive once it is back, exactly once', async () => {
      const space = `s-${randomUUID()}`;
      // With the in-memory store a restart would lose the state, so the server is cut off
      // behind a proxy; with DynamoDB the server process really stops and starts again.
      // Pokes do not cross server processes, so with a restart the watcher is on the server
      // that restarts too (its poke socket reconnects and pulls).
      const proxy = store === 'memory' ? await startProxy(server.port) : null;
      let behind = server;
      if (store === 'dynamodb') {
        behind = await startServer({ dynamodbEndpoint: dynamodb.endpoint, table: server.table });
      }
      cleanups.push(() => proxy?.stop(), () => behind !== server && behind.stop());
      const offline = open(proxy ? proxy.url : behind.url, space, 'carol');
      const watcher = open(proxy ? server.url : behind.url, space, 'dave');
      await Promise.all([offline.connected, watcher.connected]);
      await until(offline.rep, () => true, 'the first pull');

      if (proxy) await proxy.down();
      else await behind.stop();
      const sent = [1, 2, 3].map((i) => message('carol', `offline ${i}`, i));
      for (const m of sent) await offline.rep.mutate.createMessage(m);
      if (proxy) await proxy.up();
      else behind = await startServer({ dynamodbEndpoint: dynamodb.endpoint, table: server.table, port: behind.port });

      await until(watcher.rep, (d) => sent.every((m) => d[m.id]), 'the offline messages to arrive');
      const clientGroupID = await offline.rep.clientGroupID;
      const { status, body } = await rawPull(server.url, space, 'carol', clientGroupID);
      assert.equal(status, 200);
      assert.equal(body.lastMutationIDChanges[offline.rep.clientID], 3, 'each mutation processed once');
      assert.equal(body.patch.filter((op) => op.op === 'put').length, 3);
    });

    test("a client group used with another user's Authorization is refused with 401", async () => {
      const space = `s-${randomUUID()}`;
      const owner = open(server.url, space, 'erin');
      const watcher = open(server.url, space, 'frank');
      await Promise.all([owner.connected, watcher.connected]);
      const m = message('erin', 'mine', 1);
      await owner.rep.mutate.createMessage(m);
      const clientGroupID = await owner.rep.clientGroupID;
      // Once another client sees the message, the push has landed and bound the group to erin.
      await until(watcher.rep, (d) => d[m.id], 'the push to land');
      assert.equal((await rawPull(server.url, space, 'erin', clientGroupID)).status, 200);
      assert.equal((await rawPull(server.url, space, 'mallory', clientGroupID)).status, 401);
      // Through the real client: another instance of the same name shares the group; its
      // requests as mallory are refused, which makes the client ask getAuth for a new token.
      const asked = new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('getAuth was never called')), TIMEOUT_MS);
        const intruder = open(server.url, space, 'mallory', { name: owner.rep.name });
        intruder.rep.getAuth = () => {
          clearTimeout(timer);
          resolve();
          return 'mallory';
        };
        // Rejects once the test closes the client; the refusal is what is asserted.
        intruder.rep.pull().catch(() => {});
      });
      await asked;
    });
  });
}
