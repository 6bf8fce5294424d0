// The todo example application (apps/todo) with the real replicache 15.3.0 client in Node,
// through its own dev server (`todo-dev`, its Rust mutators) and through the dev server
// running the client's own mutators file as its JavaScript app (APP_BUNDLE), on the in-memory
// store and on DynamoDB Local:
// private lists stay private (403), shared lists admit their members, rejected mutations
// vanish without blocking later ones. Clients pull on pokes only.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { TIMEOUT_MS, client } from './clients.mjs';
import path from 'node:path';
import { root, startDynamoDbLocal, startServer } from './support.mjs';
import { mutators } from '../../apps/todo/client/mutators.js';

// Every HTTP status the clients in this process were answered with, by URL, so that a test
// can wait for the server's refusal of a real client's request.
const answered = [];
const waiting = new Set();
const realFetch = globalThis.fetch;
globalThis.fetch = async (url, init) => {
  const response = await realFetch(url, init);
  // Replicache calls fetch with a Request.
  answered.push({ url: typeof url === 'string' ? url : url.url, status: response.status });
  for (const check of waiting) check();
  return response;
};

/** Resolves when a request to a URL containing `part` was answered with `status`. */
function answeredWith(part, status) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (answered.some((a) => a.url.includes(part) && a.status === status)) {
        waiting.delete(check);
        clearTimeout(timer);
        resolve();
      }
    };
    const timer = setTimeout(() => {
      waiting.delete(check);
      reject(new Error(`no ${status} answer to ${part}`));
    }, TIMEOUT_MS);
    waiting.add(check);
    check();
  });
}

/** A todo client of `user` in `space`: the demo's client with the todo mutators. */
const todoClient = (base, space, user) => client(base, space, user, { mutators: mutators(user) });

/** The client's todos, by id. */
const todosOf = async (tx) =>
  Object.fromEntries((await tx.scan({ prefix: 'todo/' }).values().toArray()).map((t) => [t.id, t]));

/** Resolves with the client's todos (or what `query` reads) once they satisfy `predicate`. */
function until(rep, predicate, what, query = todosOf) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`timed out waiting for ${what}`));
    }, TIMEOUT_MS);
    const unsubscribe = rep.subscribe(query, (todos) => {
      if (predicate(todos)) {
        clearTimeout(timer);
        unsubscribe();
        resolve(todos);
      }
    });
  });
}

/** A raw request as `user`: status and JSON body. */
async function raw(base, op, space, user, body) {
  const response = await realFetch(`${base}api/replicache/${op}?spaceID=${space}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: user },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

const pullBody = { pullVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID: randomUUID(), cookie: null };

// The server's mutators and policy: the Rust app, or the client's module run as JavaScript.
const servers = {
  rust: { bin: 'todo-dev' },
  javascript: { bin: 'dev-server', env: { APP_BUNDLE: path.join(root, 'apps/todo/client/mutators.js') } },
};

for (const [mode, store] of [['rust', 'memory'], ['rust', 'dynamodb'], ['javascript', 'memory'], ['javascript', 'dynamodb']]) {
  describe(`todo example, ${mode} mutators, real replicache client, ${store} store`, () => {
    let dynamodb;
    let server;
    const opened = [];
    const open = (...args) => {
      const c = todoClient(...args);
      opened.push(c);
      return c;
    };

    before(async () => {
      if (store === 'dynamodb') dynamodb = await startDynamoDbLocal();
      server = await startServer({ ...servers[mode], dynamodbEndpoint: dynamodb?.endpoint });
    });

    after(async () => {
      await Promise.all(opened.map((c) => c.close()));
      await server?.stop();
      await dynamodb?.stop();
    });

    test('a private list syncs between its owner\'s clients; rejected mutations vanish', async () => {
      const user = `alice-${randomUUID()}`;
      const space = `private-${user}`;
      const laptop = open(server.url, space, user);
      const phone = open(server.url, space, user);
      assert.deepEqual(await Promise.all([laptop.connected, phone.connected]), [true, true]);
      await laptop.rep.mutate.createTodo({ id: 'a', text: 'milk' });
      await laptop.rep.mutate.createTodo({ id: 'empty', text: '   ' }); // rejected on both sides
      await laptop.rep.mutate.createTodo({ id: 'b', text: 'eggs' });
      const seen = await until(phone.rep, (t) => t.a && t.b, 'the phone to see both todos');
      assert.deepEqual([seen.a.sort, seen.b.sort], [0, 1]);
      assert.equal(seen.empty, undefined);

      await phone.rep.mutate.updateTodo({ id: 'a', completed: true });
      await until(laptop.rep, (t) => t.a?.completed, 'the laptop to see the completion');
      await laptop.rep.mutate.clearCompleted();
      const left = await until(phone.rep, (t) => !t.a && t.b, 'the phone to see the clearing');
      assert.deepEqual(Object.keys(left), ['b']);
    });

    test("another user is refused (403) on a private list, by the real client and raw", async () => {
      const owner = `alice-${randomUUID()}`;
      const space = `private-${owner}`;
      const mine = open(server.url, space, owner);
      await mine.connected;
      await mine.rep.mutate.createTodo({ id: 'secret', text: 'do not tell' });
      await until(mine.rep, (t) => t.secret, 'the todo');

      const intruder = open(server.url, space, 'mallory');
      // No poke ticket for the intruder either.
      await answeredWith(`poke-ticket?spaceID=${space}`, 403);
      const refused = answeredWith(`pull?spaceID=${space}`, 403);
      intruder.rep.pull().catch(() => {});
      await refused;
      assert.deepEqual(await intruder.rep.query(todosOf), {});

      const pull = await raw(server.url, 'pull', space, 'mallory', pullBody);
      assert.equal(pull.status, 403);
      assert.equal(pull.body.error, 'Forbidden');
      const push = await raw(server.url, 'push', space, 'mallory', {
        pushVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID: randomUUID(),
        mutations: [{ clientID: randomUUID(), id: 1, name: 'deleteTodo', args: { id: 'secret' }, timestamp: 1 }],
      });
      assert.equal(push.status, 403);
      assert.ok((await until(mine.rep, (t) => t.secret, 'the todo to stay')).secret);
    });

    test('a shared list admits its members and refuses others', async () => {
      const space = `list-${randomUUID()}`;
      const [alice, bob, carol] = ['alice', 'bob', 'carol'].map((u) => `${u}-${randomUUID()}`);
      const a = open(server.url, space, alice);
      await a.connected;
      await a.rep.mutate.createList({ name: 'Groceries' });
      await a.rep.mutate.createTodo({ id: '1', text: 'apples' });
      await a.rep.mutate.share({ user: bob });
      // Another client of alice's sees the list once the server has it all.
      const members = (tx) => tx.get('members');
      const watcher = open(server.url, space, alice);
      await watcher.connected;
      await watcher.rep.pull();
      await until(watcher.rep, (m) => m?.members.includes(bob), 'the server to have the list', members);
      // Now a stranger is refused...
      assert.equal((await raw(server.url, 'pull', space, carol, pullBody)).status, 403);

      // ...and the member is admitted, sees the list and adds to it.
      const b = open(server.url, space, bob);
      assert.equal(await b.connected, true);
      await b.rep.pull();
      await until(b.rep, (t) => t['1']?.text === 'apples', 'bob to see the list');
      await b.rep.mutate.createTodo({ id: '2', text: 'pears' });
      const both = await until(a.rep, (t) => t['2'], 'alice to see bob\'s todo');
      assert.deepEqual([both['1'].sort, both['2'].sort], [0, 1]);

      // Only the owner shares: bob's attempt is rejected and carol stays out.
      await b.rep.mutate.share({ user: carol });
      await b.rep.mutate.updateTodo({ id: '2', completed: true });
      await until(a.rep, (t) => t['2']?.completed, 'bob\'s next mutation to arrive');
      assert.equal((await raw(server.url, 'pull', space, carol, pullBody)).status, 403);
    });
  });
}
