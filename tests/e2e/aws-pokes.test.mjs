// Pokes in the deployed shape, locally: the push, pull and poke functions' real binaries
// (run by a Lambda Runtime API emulator) on DynamoDB Local, behind a stand-in for API
// Gateway's HTTP API, WebSocket API and management API. Two real replicache clients with
// `pullInterval: null`: one mutates, the other's view updates from the poke alone, through
// the demo's own poke code (ticket, WebSocket, keep-alive). Prints the median time from a
// mutation to the other client's updated view.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { client, until } from './clients.mjs';
import { startFunction } from './lambda-runtime.mjs';
import { startApiGateway } from './apigw-standin.mjs';
import { createTable, functionEnv, startDynamoDbLocal } from './support.mjs';

const ROUNDS = Number(process.env.POKE_ROUNDS || 10);

let dynamodb;
let gateway;
const functions = {};
const opened = [];

before(async () => {
  dynamodb = await startDynamoDbLocal();
  const table = `pokes-${randomUUID()}`;
  await createTable(dynamodb.endpoint, table);
  // The functions are started after the stand-in, which calls them by name.
  gateway = await startApiGateway(functions);
  const env = functionEnv(dynamodb.endpoint, table);
  const [push, pull, poke] = await Promise.all([
    startFunction('push', { ...env, POKE_ENDPOINT: gateway.managementEndpoint }),
    startFunction('pull', env),
    startFunction('poke', { ...env, POKE_TICKET_KEY: randomBytes(32).toString('hex') }),
  ]);
  Object.assign(functions, { push, pull, poke });
});

after(async () => {
  await Promise.all(opened.map((c) => c.close()));
  await gateway?.stop();
  await Promise.all(Object.values(functions).map((f) => f.stop()));
  await dynamodb?.stop();
});

const open = (...args) => {
  const c = client(...args);
  opened.push(c);
  return c;
};

test('a change reaches another client by the poke alone, through the deployed shape', async () => {
  const space = `s-${randomUUID()}`;
  const base = { api: gateway.api, ws: gateway.ws };
  const a = open(base, space, 'alice');
  const b = open(base, space, 'bob');
  await Promise.all([a.connected, b.connected]);
  const latencies = [];
  for (let i = 0; i < ROUNDS; i += 1) {
    const id = randomUUID();
    const started = performance.now();
    await a.rep.mutate.createMessage({ id, from: 'alice', content: `hello ${i}`, order: i });
    await until(b.rep, (d) => d[id], `b to see message ${i}`);
    latencies.push(performance.now() - started);
  }
  latencies.sort((x, y) => x - y);
  const median = latencies[Math.floor(latencies.length / 2)];
  console.log(`deployed-shape poke-to-view latency over ${ROUNDS} rounds: median ${median.toFixed(1)} ms, min ${latencies[0].toFixed(1)}, max ${latencies.at(-1).toFixed(1)}`);
  // One commit a round (each mutation is seen before the next), each posted to both open
  // connections once, through the management API.
  assert.equal(gateway.posts, 2 * ROUNDS, 'the push function posted to each connection once a commit');

  // A closed connection is forgotten: the next pokes go only to the open one.
  await b.close();
  const id = randomUUID();
  const c = open(base, space, 'carol');
  await c.connected;
  await a.rep.mutate.createMessage({ id, from: 'alice', content: 'after bob left', order: ROUNDS });
  await until(c.rep, (d) => d[id], 'carol to see the message');
});

test('the poke WebSocket refuses a connection without a valid ticket for its space', async () => {
  const { default: WebSocket } = await import('ws');
  const refused = (query) => new Promise((resolve, reject) => {
    const ws = new WebSocket(`${gateway.ws}?${query}`);
    ws.on('unexpected-response', (_, response) => resolve(response.statusCode));
    ws.on('open', () => reject(new Error('opened')));
    ws.on('error', () => {});
  });
  assert.equal(await refused('spaceID=room'), 401);
  assert.equal(await refused('spaceID=room&ticket=forged.ticket'), 401);
  const response = await fetch(`${gateway.api}/api/replicache/poke-ticket?spaceID=room`, { method: 'POST', headers: { authorization: 'alice' } });
  const { ticket } = await response.json();
  assert.equal(await refused(`spaceID=another&ticket=${ticket}`), 401);
});
