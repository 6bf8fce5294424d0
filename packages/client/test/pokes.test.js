// listenForPokes and endpoints, with a fake WebSocket and fetch and Node's fake timers: no
// test waits for real time to pass.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { endpoints, listenForPokes, KEEP_ALIVE_MS, RECONNECT_AFTER_MS } from 'replicache-dynamodb-client';
import { fakeFetch, fakeWebSocket, settle } from './support/fakes.js';

const target = {
  spaceID: 'team/1',
  ticketURL: 'https://api.example/api/replicache/poke-ticket?spaceID=team%2F1',
  pokeURL: 'wss://poke.example/prod',
};

/** Counts of the handlers' calls, and the states reported. */
function recorder() {
  const calls = { pokes: 0, reconnects: 0, states: [] };
  return {
    calls,
    handlers: {
      onPoke: () => { calls.pokes += 1; },
      onReconnect: () => { calls.reconnects += 1; },
      onState: (open) => calls.states.push(open),
    },
  };
}

function fakeTimers(t) {
  t.mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  return t.mock.timers;
}

test('each connection fetches a fresh ticket with the Authorization header and connects with it', async (t) => {
  const timers = fakeTimers(t);
  const { WebSocket, sockets } = fakeWebSocket();
  const { fetch, requests } = fakeFetch();
  const { calls, handlers } = recorder();
  let token = 0;
  const stop = listenForPokes({ ...target, auth: async () => `jwt-${++token}` }, { ...handlers, WebSocket, fetch });
  await settle();

  assert.deepEqual(requests, [{ url: target.ticketURL, method: 'POST', authorization: 'jwt-1' }]);
  assert.equal(sockets.length, 1);
  assert.equal(sockets[0].url, 'wss://poke.example/prod?spaceID=team%2F1&ticket=t1');

  // Opening pulls (something may have changed since the app's first pull).
  sockets[0].open();
  assert.deepEqual(calls, { pokes: 1, reconnects: 0, states: [true] });

  // Dropped: a new connection after 500 ms, with a new ticket fetched with the current auth.
  sockets[0].drop();
  assert.deepEqual(calls.states, [true, false]);
  timers.tick(499);
  await settle();
  assert.equal(requests.length, 1);
  timers.tick(1);
  await settle();
  assert.equal(requests.length, 2);
  assert.equal(requests[1].authorization, 'jwt-2');
  assert.equal(sockets[1].url, 'wss://poke.example/prod?spaceID=team%2F1&ticket=t2');

  // Reopened: pokes may have been missed meanwhile, so onReconnect, not onPoke.
  sockets[1].open();
  assert.deepEqual(calls, { pokes: 1, reconnects: 1, states: [true, false, true] });
  stop();
});

test('a string auth is sent as is; no auth sends no header; a poke URL with a query gets &', async () => {
  const { WebSocket, sockets } = fakeWebSocket();
  const { fetch, requests } = fakeFetch();
  const stopA = listenForPokes({ ...target, auth: 'alice' }, { onPoke() {}, WebSocket, fetch });
  const stopB = listenForPokes({ ...target, pokeURL: 'ws://127.0.0.1:9/poke?stage=x' }, { onPoke() {}, WebSocket, fetch });
  await settle();
  assert.deepEqual(requests.map((r) => r.authorization), ['alice', undefined]);
  assert.equal(sockets[1].url, 'ws://127.0.0.1:9/poke?stage=x&spaceID=team%2F1&ticket=t2');
  stopA();
  stopB();
});

test('every poke message calls onPoke, text or binary; other messages do not', async () => {
  const { WebSocket, sockets } = fakeWebSocket();
  const { fetch } = fakeFetch();
  const { calls, handlers } = recorder();
  const stop = listenForPokes(target, { ...handlers, WebSocket, fetch });
  await settle();
  sockets[0].open();
  sockets[0].message('poke');
  sockets[0].message(Buffer.from('poke')); // the `ws` package may hand over a Buffer
  sockets[0].message('hello');
  sockets[0].message('{"action":"ping"}');
  assert.equal(calls.pokes, 3);
  assert.equal(calls.reconnects, 0);
  stop();
});

test('retries back off from 500 ms, doubling to 10 s, and start again at 500 ms after an open', async (t) => {
  const timers = fakeTimers(t);
  const { WebSocket, sockets } = fakeWebSocket();
  // The first 7 ticket requests fail (say, the server is down), then they succeed.
  const { fetch, requests } = fakeFetch((n) => (n < 7 ? 503 : 200));
  const { calls, handlers } = recorder();
  const stop = listenForPokes(target, { ...handlers, WebSocket, fetch });
  await settle();
  assert.equal(requests.length, 1);

  const waits = [500, 1000, 2000, 4000, 8000, 10_000, 10_000];
  for (const [i, wait] of waits.entries()) {
    timers.tick(wait - 1);
    await settle();
    assert.equal(requests.length, i + 1, `no retry before ${wait} ms`);
    timers.tick(1);
    await settle();
    assert.equal(requests.length, i + 2, `retry ${i + 1} after ${wait} ms`);
  }
  assert.equal(sockets.length, 1, 'no socket without a ticket');
  sockets[0].open();
  assert.equal(calls.pokes, 1);

  // A socket that closes before it opens is retried with backoff as well.
  sockets[0].drop();
  timers.tick(500);
  await settle();
  assert.equal(sockets.length, 2, 'the backoff starts again at 500 ms after an open');
  sockets[1].drop();
  timers.tick(999);
  await settle();
  assert.equal(sockets.length, 2);
  timers.tick(1);
  await settle();
  assert.equal(sockets.length, 3, 'then 1 s');
  assert.deepEqual(calls.states, [true, false, false]);
  stop();
});

test('a keep-alive every 5 minutes, and a fresh connection before API Gateway\'s 2 hours', async (t) => {
  const timers = fakeTimers(t);
  const { WebSocket, sockets } = fakeWebSocket();
  const { fetch, requests } = fakeFetch();
  const { calls, handlers } = recorder();
  const stop = listenForPokes(target, { ...handlers, WebSocket, fetch });
  await settle();
  const first = sockets[0];
  first.open();

  timers.tick(KEEP_ALIVE_MS - 1);
  assert.deepEqual(first.sent, []);
  timers.tick(1);
  assert.deepEqual(first.sent, ['{"action":"ping"}']);
  timers.tick(KEEP_ALIVE_MS);
  assert.equal(first.sent.length, 2);

  // At 110 minutes the client closes it itself and connects again at once... after 500 ms.
  timers.tick(RECONNECT_AFTER_MS - 2 * KEEP_ALIVE_MS);
  assert.equal(first.closed, true);
  assert.equal(first.sent.length, RECONNECT_AFTER_MS / KEEP_ALIVE_MS);
  await settle(); // the close event
  timers.tick(500);
  await settle();
  assert.equal(requests.length, 2);
  assert.equal(sockets.length, 2);
  sockets[1].open();
  assert.deepEqual(calls, { pokes: 1, reconnects: 1, states: [true, false, true] });

  // The old socket's keep-alive stopped with it.
  timers.tick(KEEP_ALIVE_MS);
  assert.equal(first.sent.length, RECONNECT_AFTER_MS / KEEP_ALIVE_MS);
  assert.deepEqual(sockets[1].sent, ['{"action":"ping"}']);
  stop();
});

test('stop() closes the socket, and nothing reconnects or pings afterwards', async (t) => {
  const timers = fakeTimers(t);
  const { WebSocket, sockets } = fakeWebSocket();
  const { fetch, requests } = fakeFetch();
  const { calls, handlers } = recorder();
  const stop = listenForPokes(target, { ...handlers, WebSocket, fetch });
  await settle();
  sockets[0].open();
  stop();
  assert.equal(sockets[0].closed, true);
  await settle();
  assert.deepEqual(calls.states, [true, false]);
  timers.tick(RECONNECT_AFTER_MS * 2);
  await settle();
  assert.equal(requests.length, 1);
  assert.equal(sockets.length, 1);
  assert.deepEqual(sockets[0].sent, []);
});

test('stop() while waiting to retry cancels the retry', async (t) => {
  const timers = fakeTimers(t);
  const { WebSocket, sockets } = fakeWebSocket();
  const { fetch, requests } = fakeFetch(() => 503);
  const stop = listenForPokes(target, { onPoke() {}, WebSocket, fetch });
  await settle();
  assert.equal(requests.length, 1);
  stop();
  timers.tick(60_000);
  await settle();
  assert.equal(requests.length, 1);
  assert.equal(sockets.length, 0);
});

test('stop() while the ticket is being fetched opens no socket', async () => {
  const { WebSocket, sockets } = fakeWebSocket();
  const { fetch, requests } = fakeFetch();
  const stop = listenForPokes(target, { onPoke() {}, WebSocket, fetch });
  stop();
  await settle();
  assert.equal(requests.length, 1);
  assert.equal(sockets.length, 0);
});

test('a failing auth function is retried like a failed request', async (t) => {
  const timers = fakeTimers(t);
  const { WebSocket, sockets } = fakeWebSocket();
  const { fetch, requests } = fakeFetch();
  let calls = 0;
  const auth = () => {
    calls += 1;
    if (calls === 1) throw new Error('signed out');
    return 'jwt';
  };
  const stop = listenForPokes({ ...target, auth }, { onPoke() {}, WebSocket, fetch });
  await settle();
  assert.equal(requests.length, 0);
  timers.tick(500);
  await settle();
  assert.deepEqual(requests.map((r) => r.authorization), ['jwt']);
  assert.equal(sockets.length, 1);
  stop();
});

test('in a page, coming back online reconnects at once instead of waiting for the backoff', async (t) => {
  const timers = fakeTimers(t);
  const page = new EventTarget();
  globalThis.window = page;
  t.after(() => { delete globalThis.window; });
  const { WebSocket, sockets } = fakeWebSocket();
  const { fetch, requests } = fakeFetch((n) => (n < 4 ? 503 : 200));
  const { calls, handlers } = recorder();
  const stop = listenForPokes(target, { ...handlers, WebSocket, fetch });
  await settle();
  timers.tick(500);
  await settle();
  timers.tick(1000);
  await settle();
  assert.equal(requests.length, 3); // now waiting 2 s

  page.dispatchEvent(new Event('online'));
  await settle();
  assert.equal(requests.length, 4, 'at once');
  // That one failed too: the backoff started again at 500 ms.
  timers.tick(500);
  await settle();
  assert.equal(requests.length, 5);
  assert.equal(sockets.length, 1);

  // Connected (or connecting): online does nothing.
  page.dispatchEvent(new Event('online'));
  await settle();
  assert.equal(requests.length, 5);
  sockets[0].open();
  assert.equal(calls.pokes, 1);

  // Stopped: online does nothing either.
  stop();
  await settle();
  page.dispatchEvent(new Event('online'));
  timers.tick(60_000);
  await settle();
  assert.equal(requests.length, 5);
});

test('endpoints: on the page\'s own server, on a dev server elsewhere, on a deployed stack', () => {
  const query = 'spaceID=team%2F1%20%26x';
  const space = 'team/1 &x';
  assert.deepEqual(endpoints(space, { base: { protocol: 'http:', host: '127.0.0.1:8080' } }), {
    pushURL: `/api/replicache/push?${query}`,
    pullURL: `/api/replicache/pull?${query}`,
    ticketURL: `/api/replicache/poke-ticket?${query}`,
    pokeURL: 'ws://127.0.0.1:8080/api/replicache/poke',
  });
  assert.equal(endpoints(space, { base: { protocol: 'https:', host: 'chat.example' } }).pokeURL, 'wss://chat.example/api/replicache/poke');

  assert.deepEqual(endpoints(space, { api: 'http://127.0.0.1:3000/' }), {
    pushURL: `http://127.0.0.1:3000/api/replicache/push?${query}`,
    pullURL: `http://127.0.0.1:3000/api/replicache/pull?${query}`,
    ticketURL: `http://127.0.0.1:3000/api/replicache/poke-ticket?${query}`,
    pokeURL: 'ws://127.0.0.1:3000/api/replicache/poke',
  });
  assert.equal(endpoints(space, { api: 'https://dev.example' }).pokeURL, 'wss://dev.example/api/replicache/poke');

  const api = 'https://abc123.execute-api.eu-west-1.amazonaws.com';
  const ws = 'wss://def456.execute-api.eu-west-1.amazonaws.com/prod';
  assert.deepEqual(endpoints(space, { api, ws }), {
    pushURL: `${api}/api/replicache/push?${query}`,
    pullURL: `${api}/api/replicache/pull?${query}`,
    ticketURL: `${api}/api/replicache/poke-ticket?${query}`,
    pokeURL: ws,
  });

  assert.throws(() => endpoints(space), /outside a page, give `api`/);
});
