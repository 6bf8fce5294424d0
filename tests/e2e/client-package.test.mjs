// The client package (packages/client) in Chromium, unbundled, with the real replicache
// client, against the dev server: the server serves a test page and both packages' modules
// (an import map stands in for a bundler), and the page keeps a Replicache up to date with
// `connect`: tickets, the poke socket, pulls on pokes, stop(), and a paged sync completed by
// itself.
//
// Needs target/debug/dev-server (cargo build -p dev-server), tests/node_modules (npm ci
// --prefix tests) and Chromium (CHROMIUM_PATH, default /usr/bin/chromium).
// Run: node --test tests/e2e/client-package.test.mjs

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { launchChromium, root, startServer } from './support.mjs';

/** Longest wait for something to show in a page (a safety net, not a synchronization). */
const TIMEOUT_MS = 10_000;
/** A small pull budget, so that a space of 100 messages of 2 KB syncs in several pages. */
const BUDGET = 64 * 1024;

// The modules the page loads, copied into the directory the dev server serves: from there,
// to here.
const files = {
  'replicache/out': 'tests/node_modules/replicache/out',
  '@rocicorp/logger/out': 'tests/node_modules/@rocicorp/logger/out',
  '@rocicorp/lock/out': 'tests/node_modules/@rocicorp/lock/out',
  '@rocicorp/resolver/out': 'tests/node_modules/@rocicorp/resolver/out',
  '@badrap/valita/dist/mjs': 'tests/node_modules/@badrap/valita/dist/mjs',
  'replicache-dynamodb-client/src': 'packages/client/src',
};
const imports = {
  replicache: '/modules/replicache/out/replicache.js',
  '@rocicorp/logger': '/modules/@rocicorp/logger/out/logger.js',
  '@rocicorp/lock': '/modules/@rocicorp/lock/out/lock.js',
  '@rocicorp/resolver': '/modules/@rocicorp/resolver/out/resolver.js',
  '@badrap/valita': '/modules/@badrap/valita/dist/mjs/index.mjs',
  'replicache-dynamodb-client': '/modules/replicache-dynamodb-client/src/index.js',
};

// The page: `start(spaceID, user)` makes a Replicache (in memory, no pull interval: only
// pokes and the package make it pull) and connects it; its state is on `window`.
const page = `<!doctype html>
<meta charset="utf-8">
<title>replicache-dynamodb-client</title>
<script type="importmap">${JSON.stringify({ imports })}</script>
<script>
  // What a bundler defines for replicache (it reads process.env.NODE_ENV).
  globalThis.process = { env: { NODE_ENV: 'production' } };
</script>
<script type="module">
import { Replicache } from 'replicache';
import * as client from 'replicache-dynamodb-client';

const mutators = {
  async createMessage(tx, { id, from, content, order }) {
    await tx.set('message/' + id, { from, content, order });
  },
};
window.client = client;
window.start = (spaceID, user) => {
  const server = { spaceID, auth: user };
  const rep = new Replicache({
    name: 'package-' + crypto.randomUUID(),
    kvStore: 'mem',
    pullInterval: null,
    pushDelay: 0,
    logLevel: 'error',
    mutators,
    ...client.replicacheOptions(server),
  });
  window.rep = rep;
  window.states = [];
  window.count = 0;
  rep.subscribe(
    async (tx) => (await tx.scan({ prefix: 'message/' }).keys().toArray()).length,
    (n) => { window.count = n; },
  );
  window.stop = client.connect(rep, server, { onState: (open) => window.states.push(open) });
};
window.ready = true;
</script>`;

let browser;
let webDir;
const servers = [];

before(async () => {
  webDir = await mkdtemp(path.join(os.tmpdir(), 'client-package-'));
  await writeFile(path.join(webDir, 'index.html'), page);
  for (const [to, from] of Object.entries(files)) {
    await cp(path.join(root, from), path.join(webDir, 'modules', to), { recursive: true });
  }
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  for (const server of servers) await server.stop();
  if (webDir) await rm(webDir, { recursive: true, force: true });
});

/** A dev server serving the test page. */
async function serve(env = {}) {
  const server = await startServer({ webDir, env });
  servers.push(server);
  return server;
}

/** A page of its own browser context, loaded from `server`; records its requests to it. */
async function openPage(server) {
  const context = await browser.newContext();
  const tab = await context.newPage();
  const errors = [];
  const requests = [];
  const sockets = [];
  tab.on('pageerror', (error) => errors.push(error));
  tab.on('request', (request) => {
    if (request.url().includes('/api/replicache/')) {
      requests.push({ url: request.url(), authorization: request.headers().authorization });
    }
  });
  tab.on('websocket', (socket) => sockets.push(socket.url()));
  await tab.goto(server.url);
  await tab.waitForFunction(() => window.ready, null, { timeout: TIMEOUT_MS }).catch((error) => {
    throw new Error(`the page did not load: ${errors.join('; ') || error.message}`);
  });
  const pulls = () => requests.filter((r) => r.url.includes('/pull?')).length;
  return { tab, errors, requests, sockets, pulls };
}

/** Starts `user`'s client in `page` and waits until its poke socket is open. */
async function start(page, space, user) {
  await page.tab.evaluate(([s, u]) => window.start(s, u), [space, user]);
  await page.tab.waitForFunction(() => window.states.includes(true), null, { timeout: TIMEOUT_MS });
}

/** Waits until the page's client has `n` messages. */
function messages(page, n) {
  return page.tab.waitForFunction((want) => window.count === want, n, { timeout: TIMEOUT_MS });
}

/** Writes messages to `space` as `user` through raw pushes (not through a page). */
async function push(server, space, user, messages) {
  const clientID = randomUUID();
  const mutations = messages.map((m, i) => ({ clientID, id: i + 1, name: 'createMessage', args: m, timestamp: i }));
  const response = await fetch(`${server.url}api/replicache/push?spaceID=${space}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: user },
    body: JSON.stringify({ pushVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID: randomUUID(), mutations }),
  });
  assert.equal(response.status, 200, await response.text());
}

const message = (from, content, order) => ({ id: randomUUID(), from, content, order });

test('in Chromium, connect keeps a real Replicache up to date by pokes, until stop()', async () => {
  const server = await serve();
  const space = `package-${randomUUID()}`;
  const a = await openPage(server);
  const b = await openPage(server);

  // The endpoints come from the page's location: the dev server that served it.
  const urls = await a.tab.evaluate((s) => window.client.endpoints(s), space);
  assert.equal(urls.pokeURL, `${server.url.replace('http', 'ws')}api/replicache/poke`);
  assert.equal(urls.ticketURL, `/api/replicache/poke-ticket?spaceID=${space}`);

  await start(a, space, 'alice');
  await start(b, space, 'bob');
  // A ticket fetched with the user's Authorization, then the socket opened with it.
  const ticket = a.requests.find((r) => r.url.includes('/poke-ticket?'));
  assert.equal(ticket.authorization, 'alice');
  assert.equal(a.sockets.length, 1);
  assert.match(a.sockets[0], new RegExp(`/api/replicache/poke\\?spaceID=${space}&ticket=[^&]+$`));

  // Another client's write reaches both pages by pokes alone (no pull interval).
  await push(server, space, 'carol', [message('Carol', 'from outside', 0)]);
  await messages(a, 1);
  await messages(b, 1);

  // A page's own write reaches the other.
  await a.tab.evaluate(() => window.rep.mutate.createMessage({ id: crypto.randomUUID(), from: 'Alice', content: 'hi', order: 1 }));
  await messages(b, 2);
  await messages(a, 2);

  // Stopped: the socket closes and the page pulls no more, while the other still hears pokes.
  await a.tab.evaluate(() => window.stop());
  await a.tab.waitForFunction(() => window.states.at(-1) === false, null, { timeout: TIMEOUT_MS });
  const pullsWhenStopped = a.pulls();
  await push(server, space, 'carol', [message('Carol', 'after the stop', 2)]);
  await messages(b, 3);
  assert.equal(a.pulls(), pullsWhenStopped, 'no pull after stop()');
  assert.equal(await a.tab.evaluate(() => window.count), 2);
  assert.equal(a.sockets.length, 1, 'no reconnect after stop()');

  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
  await a.tab.context().close();
  await b.tab.context().close();
});

test('in Chromium, connect completes a paged sync by itself', async () => {
  const server = await serve({ PULL_BUDGET_BYTES: String(BUDGET) });
  const space = `package-paged-${randomUUID()}`;
  const count = 100;
  const content = 'x'.repeat(2000);
  // Ten pushes, so ten commits at least: a page is cut between commits.
  for (let start = 0; start < count; start += 10) {
    const batch = Array.from({ length: 10 }, (_, i) => message('Filler', `${start + i} ${content}`, start + i));
    await push(server, space, 'filler', batch);
  }

  const c = await openPage(server);
  await start(c, space, 'dave');
  await messages(c, count);
  const sync = await c.tab.evaluate(() => window.rep.query((tx) => tx.get(window.client.SYNC_KEY)));
  assert.deepEqual(sync, { complete: true });
  const pages = c.pulls();
  console.log(`client package: ${count} messages of 2 KB synced in ${pages} pulls (budget ${BUDGET} bytes)`);
  assert.ok(pages >= Math.ceil((count * 2000) / BUDGET), `${pages} pulls`);
  // The page resolves syncComplete at once now.
  await c.tab.evaluate(() => window.client.syncComplete(window.rep));
  assert.deepEqual(c.errors, []);
  await c.tab.context().close();
});
