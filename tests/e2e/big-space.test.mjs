// A space too big for one pull response, synced from scratch by a real replicache client:
// through the dev server (in-memory store) and through the push and pull functions (under
// the Lambda Runtime API emulator, behind the API Gateway stand-in) on DynamoDB Local. Every
// response stays under the pull budget, the client pulls page after page (completeSyncs, of
// the client package), and its final view equals what was written. Prints pages, time and
// response sizes.
//
// The default run is small (BIG_SPACE_MESSAGES=2000 messages of 2 KB, PULL_BUDGET_BYTES=1 MiB);
// the full size: BIG_SPACE_MESSAGES=30000 PULL_BUDGET_BYTES=4194304 node --test tests/e2e/big-space.test.mjs

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import { Replicache } from 'replicache';
import { mutators } from './clients.mjs';
import { startFunction } from './lambda-runtime.mjs';
import { startApiGateway } from './apigw-standin.mjs';
import { createTable, startDynamoDbLocal, startServer } from './support.mjs';
import { completeSyncs, syncComplete, SYNC_KEY } from 'replicache-dynamodb-client';

const MESSAGES = Number(process.env.BIG_SPACE_MESSAGES || 2000);
const BUDGET = Number(process.env.PULL_BUDGET_BYTES || 1024 * 1024);
const BATCH = 1000; // mutations per push: about 2 MB of body, under MAX_BODY_BYTES
// Text of about 2,000 characters that compresses like prose, not like a repeated letter.
const WORDS = 'the a sync space client server pull push poke commit version cookie key value page budget lambda table index message order from content replicache dynamodb'.split(' ');
const text = (n) => {
  let out = '';
  while (out.length < n) out += `${WORDS[Math.floor(Math.random() * WORDS.length)]} `;
  return out.slice(0, n);
};

// Pull responses the client received, by size (decompressed).
const pulls = [];
const realFetch = globalThis.fetch;
globalThis.fetch = async (request, init) => {
  const response = await realFetch(request, init);
  const url = typeof request === 'string' ? request : request.url;
  if (url.includes('/pull')) {
    const text = await response.clone().text();
    pulls.push(text.length);
  }
  return response;
};

/** Writes MESSAGES messages into `space` through raw pushes; returns their ids. */
async function fill(api, space) {
  const ids = [];
  const clientID = randomUUID();
  const clientGroupID = randomUUID();
  for (let start = 0; start < MESSAGES; start += BATCH) {
    const mutations = [];
    for (let i = start; i < Math.min(start + BATCH, MESSAGES); i += 1) {
      const id = `m${String(i).padStart(6, '0')}`;
      ids.push(id);
      mutations.push({ clientID, id: i + 1, name: 'createMessage', args: { id, from: 'filler', content: text(2000), order: i }, timestamp: i });
    }
    const response = await realFetch(`${api}/api/replicache/push?spaceID=${space}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'filler' },
      body: JSON.stringify({ pushVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID, mutations }),
    });
    assert.equal(response.status, 200, await response.text());
  }
  return ids;
}

/** The first page of a sync from scratch, raw and gzipped: byte counts on the wire. */
function rawPull(api, space, gzip) {
  const body = JSON.stringify({ pullVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID: randomUUID(), cookie: null });
  return new Promise((resolve, reject) => {
    const req = http.request(`${api}/api/replicache/pull?spaceID=${space}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'reader', ...(gzip && { 'accept-encoding': 'gzip' }) },
    }, (res) => {
      let bytes = 0;
      res.on('data', (c) => { bytes += c.length; });
      res.on('end', () => resolve({ bytes, encoding: res.headers['content-encoding'] ?? 'identity' }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function syncFromScratch(api, space, ids, label) {
  const rawPage = await rawPull(api, space, false);
  const zippedPage = await rawPull(api, space, true);
  assert.equal(zippedPage.encoding, 'gzip');
  pulls.length = 0;
  const rep = new Replicache({
    name: `big-${randomUUID()}`,
    kvStore: 'mem',
    pullInterval: null,
    logLevel: 'error',
    auth: 'reader',
    pushURL: `${api}/api/replicache/push?spaceID=${space}`,
    pullURL: `${api}/api/replicache/pull?spaceID=${space}`,
    mutators,
  });
  const started = performance.now();
  const stop = completeSyncs(rep);
  try {
    await rep.pull();
    // The first page arrives, then each page triggers the next until the sync is complete.
    await new Promise((resolve) => {
      const unsubscribe = rep.subscribe((tx) => tx.get(SYNC_KEY), (sync) => {
        if (sync?.complete === true || (pulls.length > 0 && !sync)) {
          unsubscribe();
          resolve();
        }
      });
    });
    await syncComplete(rep);
    const seconds = (performance.now() - started) / 1000;
    const keys = await rep.query((tx) => tx.scan({ prefix: 'message/' }).keys().toArray());
    assert.deepEqual(keys, ids.map((id) => `message/${id}`), 'the final view is what was written');
    const sample = await rep.query((tx) => tx.get(`message/${ids[ids.length - 1]}`));
    assert.equal(sample.content.length, 2000);
    const largest = Math.max(...pulls);
    console.log(`${label}: ${MESSAGES} messages (${(MESSAGES * 2000 / 1e6).toFixed(1)} MB of values) synced from scratch in ${pulls.length} pulls, ${seconds.toFixed(1)} s; largest response ${largest} bytes (budget ${BUDGET}); first page ${rawPage.bytes} bytes raw, ${zippedPage.bytes} gzipped`);
    assert.ok(pulls.length >= 2, 'the sync came in pages');
    for (const size of pulls) assert.ok(size <= BUDGET * 1.1 + 4096, `a response of ${size} bytes over the budget of ${BUDGET}`);
  } finally {
    stop();
    await rep.close();
  }
}

describe('a space bigger than one pull response', () => {
  let server;
  let dynamodb;
  let gateway;
  const functions = {};

  before(async () => {
    server = await startServer({ env: { PULL_BUDGET_BYTES: String(BUDGET) } });
    dynamodb = await startDynamoDbLocal();
    const table = `big-${randomUUID()}`;
    await createTable(dynamodb.endpoint, table);
    gateway = await startApiGateway(functions);
    const env = {
      TABLE_NAME: table,
      AUTH_MODE: 'header',
      PULL_BUDGET_BYTES: String(BUDGET),
      AWS_ENDPOINT_URL_DYNAMODB: dynamodb.endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
    };
    const [push, pull, poke] = await Promise.all([
      startFunction('push', env),
      startFunction('pull', env),
      startFunction('poke', { ...env, POKE_TICKET_KEY: randomBytes(32).toString('hex') }),
    ]);
    Object.assign(functions, { push, pull, poke });
  });

  after(async () => {
    await server?.stop();
    await gateway?.stop();
    await Promise.all(Object.values(functions).map((f) => f.stop()));
    await dynamodb?.stop();
  });

  test('through the dev server', async () => {
    const api = server.url.replace(/\/$/, '');
    const space = `big-${randomUUID()}`;
    const ids = await fill(api, space);
    await syncFromScratch(api, space, ids, 'dev server, in-memory store');
  });

  test('through the functions on DynamoDB Local', async () => {
    const space = `big-${randomUUID()}`;
    const ids = await fill(gateway.api, space);
    await syncFromScratch(gateway.api, space, ids, 'push and pull functions, DynamoDB Local');
  });
});
