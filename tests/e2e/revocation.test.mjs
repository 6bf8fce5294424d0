// Revocation reaches pokes: a member removed from a shared todo list while connected hears no
// poke after the commit that removed them, and their poke WebSocket is closed; a member whose
// access did not change keeps hearing pokes. Through the todo app's dev server (`todo-dev`:
// its Rust space policy) on the in-memory store and on DynamoDB Local, and through the push,
// pull and poke functions' real binaries running the todo app's JavaScript policy
// (APP_BUNDLE) behind the API Gateway stand-in, on DynamoDB Local.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import path from 'node:path';
import WebSocket from 'ws';
import { TIMEOUT_MS } from './clients.mjs';
import { startFunction } from './lambda-runtime.mjs';
import { startApiGateway } from './apigw-standin.mjs';
import { createTable, functionEnv, root, startDynamoDbLocal, startServer } from './support.mjs';

const BUNDLE = path.join(root, 'apps/todo/client/mutators.js');

/** A raw request of `op` as `user`: its status. */
async function request(api, op, space, user, body) {
  const response = await fetch(`${api}/api/replicache/${op}?spaceID=${encodeURIComponent(space)}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: user },
    body: JSON.stringify(body),
  });
  await response.arrayBuffer();
  return response.status;
}

/** A pusher of `user`'s mutations to `space`, one client of its own. */
function pusher(api, space, user) {
  const clientGroupID = randomUUID();
  const clientID = randomUUID();
  let id = 0;
  return async (name, args) => {
    id += 1;
    const status = await request(api, 'push', space, user, {
      pushVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID,
      mutations: [{ clientID, id, name, args, timestamp: id }],
    });
    assert.equal(status, 200, `${user}'s ${name}`);
  };
}

/** Rejects after TIMEOUT_MS: a safety net, not a synchronization. */
const within = (promise, what) => Promise.race([
  promise,
  new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), TIMEOUT_MS).unref()),
]);

/**
 * A poke WebSocket of `user` to `space` (a ticket, then the socket), as the client package
 * opens it: every message it hears, `next()` (the next one) and `closed` (resolves on close).
 */
async function listen({ api, ws }, space, user) {
  const response = await fetch(`${api}/api/replicache/poke-ticket?spaceID=${encodeURIComponent(space)}`, {
    method: 'POST', headers: { authorization: user },
  });
  assert.equal(response.status, 200, `${user}'s ticket`);
  const { ticket } = await response.json();
  const socket = new WebSocket(`${ws}?spaceID=${encodeURIComponent(space)}&ticket=${encodeURIComponent(ticket)}`);
  const heard = [];
  let waiter = null;
  socket.on('message', (data) => {
    heard.push(String(data));
    waiter?.();
    waiter = null;
  });
  const closed = new Promise((resolve) => socket.on('close', resolve));
  await within(new Promise((resolve, reject) => {
    socket.on('open', resolve);
    socket.on('error', reject);
  }), `${user}'s socket to open`);
  return {
    heard,
    closed,
    /** Resolves with the next message heard. */
    next: () => within(new Promise((resolve) => { waiter = () => resolve(heard.at(-1)); }), `a poke for ${user}`),
    close: () => socket.close(),
  };
}

/** The scenario, against a server whose HTTP API is `api` and poke WebSocket `ws`. */
async function revocation(base) {
  const space = `list-${randomUUID()}`;
  const [alice, bob, carol] = ['alice', 'bob', 'carol'].map((u) => `${u}-${randomUUID()}`);
  const push = pusher(base.api, space, alice);
  await push('createList', { name: 'team' });
  await push('share', { user: bob });
  await push('share', { user: carol });
  const b = await listen(base, space, bob);
  const c = await listen(base, space, carol);
  try {
    // Both members hear a change.
    let heard = [b.next(), c.next()];
    await push('createTodo', { id: '1', text: 'apples' });
    assert.deepEqual(await Promise.all(heard), ['poke', 'poke']);

    // Alice removes bob: carol hears it; bob hears nothing more, and his socket is closed.
    const before = b.heard.length;
    heard = c.next();
    await push('unshare', { user: bob });
    assert.equal(await heard, 'poke');
    await within(b.closed, "bob's socket to close");
    assert.equal(b.heard.length, before, 'bob heard no poke after his removal');

    // The next commit: carol, whose access did not change, hears it.
    heard = c.next();
    await push('createTodo', { id: '2', text: 'pears' });
    assert.equal(await heard, 'poke');
    assert.equal(b.heard.length, before);

    // And bob cannot listen again.
    const refused = await fetch(`${base.api}/api/replicache/poke-ticket?spaceID=${encodeURIComponent(space)}`, {
      method: 'POST', headers: { authorization: bob },
    });
    assert.equal(refused.status, 403);
  } finally {
    b.close();
    c.close();
  }
}

let dynamodb;

before(async () => {
  dynamodb = await startDynamoDbLocal();
});

after(async () => {
  await dynamodb?.stop();
});

for (const store of ['memory', 'dynamodb']) {
  describe(`the todo dev server (${store})`, () => {
    let server;
    before(async () => {
      server = await startServer({ bin: 'todo-dev', dynamodbEndpoint: store === 'dynamodb' ? dynamodb.endpoint : undefined });
    });
    after(async () => {
      await server?.stop();
    });

    test('a member removed while connected hears no poke after the next commit', async () => {
      const api = server.url.replace(/\/$/, '');
      await revocation({ api, ws: `${api.replace(/^http/, 'ws')}/api/replicache/poke` });
    });
  });
}

describe('the functions behind the API Gateway stand-in (DynamoDB Local)', () => {
  let gateway;
  const functions = {};
  before(async () => {
    const table = `revocation-${randomUUID()}`;
    await createTable(dynamodb.endpoint, table);
    gateway = await startApiGateway(functions);
    const env = { ...functionEnv(dynamodb.endpoint, table), APP_BUNDLE: BUNDLE };
    const [push, pull, poke] = await Promise.all([
      startFunction('push', { ...env, POKE_ENDPOINT: gateway.managementEndpoint }, { quiet: true }),
      startFunction('pull', env, { quiet: true }),
      startFunction('poke', { ...env, POKE_TICKET_KEY: randomBytes(32).toString('hex') }, { quiet: true }),
    ]);
    Object.assign(functions, { push, pull, poke });
  });
  after(async () => {
    await gateway?.stop();
    await Promise.all(Object.values(functions).map((f) => f.stop()));
  });

  test('a member removed while connected hears no poke after the next commit', async () => {
    const deletes = gateway.deletes;
    await revocation({ api: gateway.api, ws: gateway.ws });
    assert.equal(gateway.deletes - deletes, 1, 'the push function closed one connection');
  });
});
