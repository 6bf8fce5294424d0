// replicacheOptions and connect, with a fake Replicache, WebSocket and fetch.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, replicacheOptions, SYNC_KEY } from 'replicache-dynamodb-client';
import { fakeFetch, fakeReplicache, fakeWebSocket, settle } from './support/fakes.js';

const api = 'https://abc123.execute-api.eu-west-1.amazonaws.com';
const ws = 'wss://def456.execute-api.eu-west-1.amazonaws.com/prod';

test('replicacheOptions: the push and pull URLs of the space, and a string auth', () => {
  assert.deepEqual(replicacheOptions({ spaceID: 'team-1', auth: 'jwt', api, ws }), {
    pushURL: `${api}/api/replicache/push?spaceID=team-1`,
    pullURL: `${api}/api/replicache/pull?spaceID=team-1`,
    auth: 'jwt',
  });
  // A function is for tickets only: Replicache's own `auth` is a string.
  assert.deepEqual(replicacheOptions({ spaceID: 'a b', auth: () => 'jwt', base: { protocol: 'http:', host: 'localhost:8080' } }), {
    pushURL: '/api/replicache/push?spaceID=a%20b',
    pullURL: '/api/replicache/pull?spaceID=a%20b',
  });
});

test('connect pulls when the socket opens and on every poke, and pushes and pulls at once on a reconnect', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  const { WebSocket, sockets } = fakeWebSocket();
  const { fetch, requests } = fakeFetch();
  const rep = fakeReplicache({ auth: 'jwt-1' });
  const states = [];
  const stop = connect(rep, { spaceID: 'team-1', api, ws }, { WebSocket, fetch, onState: (open) => states.push(open) });
  await settle();
  assert.deepEqual(requests, [{ url: `${api}/api/replicache/poke-ticket?spaceID=team-1`, method: 'POST', authorization: 'jwt-1' }]);
  assert.equal(sockets[0].url, `${ws}?spaceID=team-1&ticket=t1`);

  sockets[0].open();
  assert.deepEqual(rep.pulls, [{}]);
  sockets[0].message('poke');
  assert.deepEqual(rep.pulls, [{}, {}]);
  assert.deepEqual(rep.pushes, []);

  // The app refreshed its token: the next ticket is fetched with it.
  rep.auth = 'jwt-2';
  sockets[0].drop();
  t.mock.timers.tick(500);
  await settle();
  assert.equal(requests[1].authorization, 'jwt-2');
  sockets[1].open();
  assert.deepEqual(rep.pushes, [{ now: true }]);
  assert.deepEqual(rep.pulls, [{}, {}, { now: true }]);
  assert.deepEqual(states, [true, false, true]);
  stop();
});

test('connect fetches tickets with server.auth when it is a function', async () => {
  const { WebSocket } = fakeWebSocket();
  const { fetch, requests } = fakeFetch();
  const rep = fakeReplicache({ auth: 'stale' });
  const stop = connect(rep, { spaceID: 's', api, ws, auth: async () => 'fresh' }, { WebSocket, fetch });
  await settle();
  assert.equal(requests[0].authorization, 'fresh');
  stop();
});

test('connect completes paged syncs', async () => {
  const { WebSocket } = fakeWebSocket();
  const { fetch } = fakeFetch();
  const rep = fakeReplicache();
  const stop = connect(rep, { spaceID: 's', api, ws }, { WebSocket, fetch });
  await settle();
  rep.set(SYNC_KEY, { complete: false, version: 1, target: 2 });
  await settle();
  assert.equal(rep.pulls.length, 1);
  rep.set(SYNC_KEY, { complete: true });
  await settle();
  assert.equal(rep.pulls.length, 1);
  stop();
});

test('connect\'s stop function closes the socket and ends the paged-sync subscription', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'setInterval'] });
  const { WebSocket, sockets } = fakeWebSocket();
  const { fetch, requests } = fakeFetch();
  const rep = fakeReplicache();
  const stop = connect(rep, { spaceID: 's', api, ws }, { WebSocket, fetch });
  await settle();
  sockets[0].open();
  assert.equal(rep.subscriptions, 1);
  stop();
  assert.equal(sockets[0].closed, true);
  assert.equal(rep.subscriptions, 0);
  await settle();
  t.mock.timers.tick(60_000);
  rep.set(SYNC_KEY, { complete: false, version: 1, target: 2 });
  await settle();
  assert.equal(requests.length, 1, 'no reconnect');
  assert.deepEqual(rep.pulls, [{}], 'only the pull of the first open');
});
