// The dev server's own behaviour: pokes only after commits, heartbeats, clean shutdown.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import WebSocket from 'ws';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { root, startServer } from './support.mjs';

/** A poke ticket for `user` in `space`: status and body. */
const ticketFor = async (url, space, user = 'alice') => {
  const response = await fetch(`${url}api/replicache/poke-ticket?spaceID=${space}`, {
    method: 'POST',
    headers: { authorization: user },
  });
  return { status: response.status, body: await response.json() };
};

const pokeSocket = async (url, space) => {
  const { body } = await ticketFor(url, space);
  const ws = new WebSocket(`${url.replace('http', 'ws')}api/replicache/poke?spaceID=${space}&ticket=${body.ticket}`);
  await once(ws, 'open');
  return ws;
};

/** The HTTP status a WebSocket handshake to `query` is refused with. */
const refusedWith = (url, query) =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace('http', 'ws')}api/replicache/poke?${query}`);
    ws.on('unexpected-response', (_, response) => resolve(response.statusCode));
    ws.on('open', () => reject(new Error(`opened with ${query}`)));
    ws.on('error', () => {});
  });

const push = (url, space, body) =>
  fetch(`${url}api/replicache/push?spaceID=${space}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'alice' },
    body: JSON.stringify({ pushVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID: 'g', ...body }),
  });

test('a push that commits pokes its space; one that commits nothing does not', async () => {
  const server = await startServer();
  try {
    const here = await pokeSocket(server.url, 'a');
    const elsewhere = await pokeSocket(server.url, 'b');
    const received = { here: [], elsewhere: [] };
    here.on('message', (m) => received.here.push(m.toString()));
    elsewhere.on('message', (m) => received.elsewhere.push(m.toString()));
    const poked = once(here, 'message');
    const mutation = { clientID: 'c', id: 1, name: 'createMessage', args: { id: 'm', from: 'a', content: 'hi', order: 1 }, timestamp: 1 };
    assert.equal((await push(server.url, 'a', { mutations: [mutation] })).status, 200);
    await poked;
    // The same mutation again commits nothing; a marker push to space b then proves that
    // any poke for the duplicate would have arrived before b's.
    assert.equal((await push(server.url, 'a', { mutations: [mutation] })).status, 200);
    const marker = once(elsewhere, 'message');
    await push(server.url, 'b', { clientGroupID: 'g2', mutations: [{ ...mutation, clientID: 'c2' }] });
    await marker;
    // A ping round trip on `here`: the server sends due pokes before answering it.
    const pong = once(here, 'pong');
    here.ping();
    await pong;
    assert.deepEqual(received, { here: ['poke'], elsewhere: ['poke'] });
    here.terminate();
    elsewhere.terminate();
  } finally {
    await server.stop();
  }
});

test('idle poke connections get heartbeats', async () => {
  const server = await startServer({ args: ['--heartbeat-secs', '1'] });
  try {
    const ws = await pokeSocket(server.url, 'idle');
    await once(ws, 'ping');
    ws.terminate();
  } finally {
    await server.stop();
  }
});

test('a body over MAX_BODY_BYTES is refused with the API\'s 413, and a smaller one is served', async () => {
  const server = await startServer({ env: { MAX_BODY_BYTES: '2048' } });
  try {
    const big = await push(server.url, 'limits', { mutations: [], padding: 'x'.repeat(1 << 20) });
    assert.equal(big.status, 413);
    assert.equal((await big.json()).error, 'PayloadTooLarge');
    assert.equal((await push(server.url, 'limits', { mutations: [] })).status, 200);
  } finally {
    await server.stop();
  }
});

test('Ctrl-C shuts the server down cleanly, closing poke connections', async () => {
  const server = await startServer();
  const ws = await pokeSocket(server.url, 'bye');
  const closed = once(ws, 'close');
  const exited = once(server.process, 'exit');
  server.process.kill('SIGINT');
  const [code] = await exited;
  await closed;
  assert.equal(code, 0);
});

test('CORS follows ALLOWED_ORIGINS, as API Gateway does for AllowedOrigins', async () => {
  const server = await startServer({ env: { ALLOWED_ORIGINS: 'https://app.example, http://localhost:3000' } });
  try {
    const preflight = (origin) =>
      fetch(`${server.url}api/replicache/pull`, {
        method: 'OPTIONS',
        headers: {
          origin,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization,content-type,x-replicache-requestid',
        },
      });
    const allowed = await preflight('https://app.example');
    assert.equal(allowed.headers.get('access-control-allow-origin'), 'https://app.example');
    const headers = allowed.headers.get('access-control-allow-headers').toLowerCase();
    for (const h of ['authorization', 'content-type', 'x-replicache-requestid']) assert.ok(headers.includes(h), headers);
    const refused = await preflight('https://evil.example');
    assert.equal(refused.headers.get('access-control-allow-origin'), null);
    const pushed = await push(server.url, 'cors', { mutations: [] });
    assert.equal(pushed.status, 200);
    const { status } = await fetch(`${server.url}api/replicache/pull`, {
      method: 'POST',
      headers: { origin: 'http://localhost:3000', 'content-type': 'application/json' },
      body: JSON.stringify({ pullVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID: 'g2', cookie: null }),
    }).then(async (r) => {
      assert.equal(r.headers.get('access-control-allow-origin'), 'http://localhost:3000');
      return r;
    });
    assert.equal(status, 200);
  } finally {
    await server.stop();
  }
});

test('an unparsable ALLOWED_ORIGINS stops the server with a message naming it', async () => {
  const child = spawn(path.join(root, 'target/debug/dev-server'), ['--port', '0'], {
    env: { ...process.env, ALLOWED_ORIGINS: 'https://bad\u0001origin' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const [code] = await once(child, 'close');
  assert.notEqual(code, 0);
  assert.match(stderr, /ALLOWED_ORIGINS/);
});

test('poke connections need a valid ticket for their space', async () => {
  const server = await startServer();
  try {
    const { status, body } = await ticketFor(server.url, 'room', 'alice');
    assert.equal(status, 200);
    assert.ok(body.expiresAt * 1000 > Date.now(), 'expires in the future');
    assert.equal(await refusedWith(server.url, 'spaceID=room'), 401, 'no ticket');
    assert.equal(await refusedWith(server.url, `spaceID=other&ticket=${body.ticket}`), 401, 'another space');
    const [payload, mac] = body.ticket.split('.');
    const forged = Buffer.from(JSON.stringify({ u: 'mallory', s: 'room', e: body.expiresAt })).toString('base64url');
    assert.equal(await refusedWith(server.url, `spaceID=room&ticket=${forged}.${mac}`), 401, 'forged');
    assert.equal(await refusedWith(server.url, `spaceID=room&ticket=${payload}.AAAA`), 401, 'bad signature');
    const ws = new WebSocket(`${server.url.replace('http', 'ws')}api/replicache/poke?spaceID=room&ticket=${body.ticket}`);
    await once(ws, 'open');
    assert.equal(await refusedWith(server.url, `spaceID=room&ticket=${body.ticket}`), 401, 'spent');
    ws.terminate();
  } finally {
    await server.stop();
  }
});

test('AUTH_MODE=jwt stops the server with a message naming it', async () => {
  const child = spawn(path.join(root, 'target/debug/dev-server'), ['--port', '0'], {
    env: { ...process.env, AUTH_MODE: 'jwt' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const [code] = await once(child, 'close');
  assert.notEqual(code, 0);
  assert.match(stderr, /AUTH_MODE/);
});
