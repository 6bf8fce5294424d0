// The queued path in the deployed shape, locally: the push function with PUSH_PATH=queued
// sends every push to an SQS FIFO queue (LocalStack), the stand-in for Lambda's event source
// mapping feeds two committer instances (the `commit` binary under the Lambda Runtime API
// emulator), and the pull and poke functions serve the real replicache client behind the API
// Gateway stand-in, on DynamoDB Local. The committers reach DynamoDB through a proxy that can
// refuse a write or kill the committer that made it.
//
// Proven here: real clients converge through the queue, with a mutation the app rejects and
// client groups the server forgot (the gap seen by the push function, and seen only by the
// commit); a committer killed after its commit and before its answer (the batch comes back,
// every mutation applied once); a poison message (DynamoDB refuses its commit every time) goes
// to the dead-letter queue with the pushes that shared its batches, and the space flows on.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import { gunzipSync } from 'node:zlib';
import { TIMEOUT_MS, client, messages } from './clients.mjs';
import { startFunction } from './lambda-runtime.mjs';
import { startApiGateway } from './apigw-standin.mjs';
import { startEventSourceMapping } from './sqs-esm.mjs';
import { startSqs } from './sqs.mjs';
import { createTable, dynamodb, functionEnv, startDynamoDbLocal } from './support.mjs';

/** The queue's visibility timeout, seconds: short, so that a failed batch is back soon. */
const VISIBILITY = 2;
/** Deliveries of a message before it goes to the dead-letter queue. */
const MAX_RECEIVE = 2;

let dynamo;
let localstack;
let queue;
let gateway;
let proxy;
let table;
const functions = {};
/** The committer instances (promises: one is replaced when killed), and every one started. */
const committers = [];
const started = [];
let committerEnv;
/** Which committer instance holds a batch now, if one does. */
let holder = null;
/** Every batch a committer was handed: its records' message ids and pushes. */
const batches = [];
/** Per message id: how many times a committer was handed it, and failed it. */
const fates = new Map();
/** Every push and pull answered: request, status and body; and who waits for one. */
const answers = [];
const waiters = new Set();
const opened = [];
const mappings = [];
/** QUEUED_DEBUG=1 prints the requests, batches and the mappings' logs. */
const debug = process.env.QUEUED_DEBUG ? (...args) => console.log(new Date().toISOString(), ...args) : () => {};

/** Rejects after TIMEOUT_MS: a safety net, not a synchronization. */
const within = (promise, what) => {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), TIMEOUT_MS);
    }),
  ]).finally(() => clearTimeout(timer));
};

/** Resolves when `check()` is truthy (asked again every 50 ms), with its value. */
async function eventually(check, what) {
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The answer the stand-in gave a function's response, decoded. */
function bodyOf(out) {
  let body = out.isBase64Encoded ? Buffer.from(out.body ?? '', 'base64') : Buffer.from(out.body ?? '');
  const encoding = Object.entries(out.headers ?? {}).find(([k]) => k.toLowerCase() === 'content-encoding')?.[1];
  if (encoding === 'gzip') body = gunzipSync(body);
  return body.toString();
}

/** `fn` with its answers recorded in `answers` as `op`. */
const recorded = (op, fn) => ({
  async invoke(event) {
    const out = await fn.invoke(event);
    answers.push({ op, request: JSON.parse(event.body || 'null'), status: out.statusCode ?? 200, body: bodyOf(out) });
    debug(op, event.body?.slice(0, 300), '->', out.statusCode, answers.at(-1).body.slice(0, 200));
    for (const waiter of waiters) waiter();
    return out;
  },
});

/** Resolves with the first recorded answer that satisfies `predicate`. */
function answer(predicate, what) {
  let waiter;
  return within(new Promise((resolve) => {
    waiter = () => {
      const found = answers.find(predicate);
      if (found) resolve(found);
    };
    waiters.add(waiter);
    waiter();
  }), what).finally(() => waiters.delete(waiter));
}

/**
 * A proxy in front of DynamoDB Local for the committers: `fault.refuse(target, body)` true
 * answers the request as DynamoDB answers an item over its size limit; `fault.after(target,
 * body, status)` runs once DynamoDB has answered, before the answer goes back.
 */
async function startDynamoProxy(target) {
  const fault = { refuse: () => false, after: () => {} };
  let refused = 0;
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks).toString();
      const op = String(req.headers['x-amz-target'] ?? '').split('.').pop();
      if (fault.refuse(op, body)) {
        refused += 1;
        res.writeHead(400, { 'content-type': 'application/x-amz-json-1.0', 'x-amzn-errortype': 'ValidationException' })
          .end(JSON.stringify({ __type: 'com.amazon.coral.validate#ValidationException', message: 'Item size has exceeded the maximum allowed size' }));
        return;
      }
      try {
        const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => !['host', 'connection', 'content-length'].includes(k)));
        const response = await fetch(target, { method: req.method, headers, body });
        const text = await response.text();
        await fault.after(op, body, response.status);
        res.writeHead(response.status, { 'content-type': response.headers.get('content-type') ?? 'application/x-amz-json-1.0' }).end(text);
      } catch (e) {
        res.destroy(e);
      }
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${server.address().port}`,
    fault,
    get refused() { return refused; },
    stop: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

const startCommitter = () => {
  const f = startFunction('commit', committerEnv, { quiet: true });
  started.push(f);
  return f;
};

/** Kills the committer instance holding a batch, as a crash would, and starts another. */
async function killHolder() {
  assert.notEqual(holder, null, 'a committer holds a batch');
  const dying = await committers[holder];
  process.kill(dying.pid, 'SIGKILL');
  committers[holder] = startCommitter();
}

/** Starts the event source mapping from the queue to the two committer instances. */
async function startMapping() {
  const invokers = committers.map((_, i) => async (event) => {
    batches.push(event.Records.map((r) => ({ id: r.messageId, push: JSON.parse(r.body) })));
    debug(`committer ${i}: batch`, batches.at(-1).map((r) => `${r.push.push.clientGroupID}:${r.push.push.mutations.map((m) => m.id)}`).join(' '));
    holder = i;
    let failed;
    try {
      const response = await (await committers[i]).invoke(event);
      failed = new Set((response?.batchItemFailures ?? []).map((f) => f.itemIdentifier));
      return response;
    } catch (error) {
      failed = new Set(event.Records.map((r) => r.messageId));
      throw error;
    } finally {
      holder = null;
      for (const r of event.Records) {
        const fate = fates.get(r.messageId) ?? { deliveries: 0, failures: 0 };
        fate.deliveries += 1;
        fate.failures += Number(failed.has(r.messageId));
        fates.set(r.messageId, fate);
      }
    }
  });
  const mapping = await startEventSourceMapping({
    sqs: localstack.sqs,
    queueUrl: queue.queueUrl,
    queueArn: queue.queueArn,
    invokers,
    retryAfterSeconds: 1,
    timeoutSeconds: VISIBILITY,
    log: debug,
  });
  mappings.push(mapping);
  return mapping;
}

before(async () => {
  // Both kept as they start, so that `after` stops whichever did if the other failed.
  const starts = await Promise.allSettled([
    startDynamoDbLocal().then((d) => { dynamo = d; }),
    startSqs({ name: 'queued.test' }).then((l) => { localstack = l; }),
  ]);
  for (const s of starts) if (s.status === 'rejected') throw s.reason;
  table = `queued-${randomUUID()}`;
  await createTable(dynamo.endpoint, table);
  queue = await localstack.createFifoQueue(`pushes-${randomUUID()}`, { visibilityTimeout: VISIBILITY, maxReceiveCount: MAX_RECEIVE });
  proxy = await startDynamoProxy(dynamo.endpoint);
  gateway = await startApiGateway(functions);
  const env = {
    ...functionEnv(dynamo.endpoint, table),
    ...localstack.env,
    PUSH_PATH: 'queued',
    PUSH_QUEUE_URL: queue.queueUrl,
    POKE_ENDPOINT: gateway.managementEndpoint,
  };
  committerEnv = { ...env, AWS_ENDPOINT_URL_DYNAMODB: proxy.endpoint };
  committers.push(startCommitter(), startCommitter());
  const [push, pull, poke] = await Promise.all([
    startFunction('push', env, { quiet: true }),
    startFunction('pull', functionEnv(dynamo.endpoint, table), { quiet: true }),
    startFunction('poke', { ...functionEnv(dynamo.endpoint, table), POKE_TICKET_KEY: randomBytes(32).toString('hex') }, { quiet: true }),
    ...committers,
  ]);
  Object.assign(functions, { push: recorded('push', push), pull: recorded('pull', pull), poke });
  started.push(push, pull, poke);
});

/** Ends test `t` (not its subtests) with its mappings stopped, its clients closed, no fault. */
function cleanUp(t) {
  t.after(async () => {
    await Promise.all(mappings.splice(0).map((m) => m.stop({ drain: true })));
    await Promise.all(opened.splice(0).map((c) => c.close()));
    proxy.fault.refuse = () => false;
    proxy.fault.after = () => {};
  });
}

after(async () => {
  await gateway?.stop();
  await Promise.all(started.map(async (f) => (await Promise.resolve(f).catch(() => null))?.stop()));
  await proxy?.stop();
  await Promise.all([dynamo?.stop(), localstack?.stop()]);
});

/** A real client of `user` in `space`, its own client group, listening for pokes. */
function open(space, user) {
  const c = client({ api: gateway.api, ws: gateway.ws }, space, user);
  c.notFound = new Promise((resolve) => { c.rep.onClientStateNotFound = resolve; });
  opened.push(c);
  return c;
}

/** A raw pull of `space` by `user` for client group `group`, from scratch: status and body. */
async function pull(space, user, group) {
  const response = await fetch(`${gateway.api}/api/replicache/pull?spaceID=${encodeURIComponent(space)}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: user },
    body: JSON.stringify({ pullVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID: group, cookie: null }),
  });
  return { status: response.status, body: await response.json() };
}

/** Resolves when the client shows exactly the messages `ids` and has no pending mutation. */
async function converged(c, ids, what) {
  const want = [...ids].sort();
  let last;
  await eventually(async () => {
    const got = Object.keys(await messages(c.rep)).sort();
    const pending = (await c.rep.experimentalPendingMutations()).length;
    last = `messages ${got}, ${pending} pending`;
    return pending === 0 && JSON.stringify(got) === JSON.stringify(want);
  }, `${what} to converge on ${want}`).catch((e) => {
    throw new Error(`${e.message}; last: ${last}`);
  });
}

/** Resolves when the push function has answered a push of `c` carrying mutation `id`. */
const pushed = async (c, id) => {
  const group = await c.rep.clientGroupID;
  return answer((a) => a.op === 'push' && a.request.clientGroupID === group
    && a.request.mutations.some((m) => m.clientID === c.rep.clientID && m.id === id), `the push of mutation ${id}`);
};

/** Expires client `c`'s group and client records in the table, as their TTL would. */
async function expire(space, c) {
  const past = { ':t': { N: String(Math.floor(Date.now() / 1000) - 60) } };
  const keys = [
    { pk: { S: `g/${await c.rep.clientGroupID}` }, sk: { S: 'group' } },
    { pk: { S: `s/${space}` }, sk: { S: `c/${c.rep.clientID}` } },
  ];
  for (const Key of keys) {
    await dynamodb(dynamo.endpoint, 'UpdateItem', {
      TableName: table, Key, UpdateExpression: 'SET expires_at = :t', ExpressionAttributeValues: past,
      ConditionExpression: 'attribute_exists(pk)',
    });
  }
}

/** The space's version and its messages' versions, as the table holds them. */
async function stored(space) {
  const { Items: items } = await dynamodb(dynamo.endpoint, 'Query', {
    TableName: table, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': { S: `s/${space}` } }, ConsistentRead: true,
  });
  const meta = items.find((i) => i.sk.S === 'meta');
  return {
    version: Number(meta?.version?.N ?? 0),
    entities: Object.fromEntries(items.filter((i) => i.sk.S.startsWith('e/message/')).map((i) => [i.sk.S.slice('e/message/'.length), Number(i.v.N)])),
  };
}

const message = (id, from, order = 0) => ({ id, from, content: `${from} says ${id}`, order });

test('real clients converge through the queue, a mutation the app rejects among the pushes', async (t) => {
  cleanUp(t);
  const space = `q-${randomUUID()}`;
  const mapping = await startMapping();
  const users = ['alice', 'bob', 'carol'];
  const clients = users.map((u) => open(space, u));
  await within(Promise.all(clients.map((c) => c.connected)), 'the poke sockets');
  const ids = [];
  await Promise.all(clients.map(async (c, k) => {
    for (let i = 0; i < 4; i += 1) {
      const id = `${users[k]}-${i}`;
      ids.push(id);
      await c.rep.mutate.createMessage(message(id, users[k], i));
    }
  }));
  // The chat refuses a negative order on the server; this client's mutators do not, so the
  // mutation is pushed, processed as rejected (its lmid counted, no effect), and the
  // optimistic message disappears from alice's view when a pull shows her lmid past it.
  const [alice] = clients;
  await alice.rep.mutate.createMessage(message('refused', 'alice', -1));
  await alice.rep.mutate.createMessage(message('alice-after', 'alice', 5));
  ids.push('alice-after');
  await Promise.all(clients.map((c, k) => converged(c, ids, users[k])));

  const group = await alice.rep.clientGroupID;
  const { body } = await pull(space, 'alice', group);
  assert.equal(body.lastMutationIDChanges[alice.rep.clientID], 6, "alice's lmid counts her rejected mutation");
  assert.equal(body.patch.filter((p) => p.op === 'put').length, ids.length);
  assert.ok(!body.patch.some((p) => p.key === 'message/refused'));

  // Every push went through the queue: answered `{}` by the push function, committed by a committer.
  const queuedPushes = answers.filter((a) => a.op === 'push' && a.request.clientGroupID === group);
  assert.ok(queuedPushes.every((a) => a.status === 200 && a.body === '{}'), JSON.stringify(queuedPushes.map((a) => a.body)));
  const committed = batches.flat().filter((r) => r.push.space === space);
  assert.ok(committed.some((r) => r.push.push.mutations.some((m) => m.name === 'createMessage' && m.args.id === 'refused')));
  await mapping.idle();
  assert.equal(mapping.stats.failedRecords, 0);
  assert.deepEqual(mapping.violations, []);
});

test('a client group the server forgot: the push function answers ClientStateNotFound when it sees the gap', async (t) => {
  cleanUp(t);
  const space = `q-${randomUUID()}`;
  const mapping = await startMapping();
  const dave = open(space, 'dave');
  await within(dave.connected, "dave's poke socket");
  await dave.rep.mutate.createMessage(message('dave-1', 'dave'));
  await converged(dave, ['dave-1'], 'dave');

  await expire(space, dave);
  await dave.rep.mutate.createMessage(message('dave-2', 'dave'));
  const refused = await pushed(dave, 2);
  assert.equal(refused.status, 200);
  assert.deepEqual(JSON.parse(refused.body), { error: 'ClientStateNotFound' });
  await within(dave.notFound, 'Replicache to call onClientStateNotFound');
  // Answered at once: never queued.
  await mapping.idle();
  const group = await dave.rep.clientGroupID;
  assert.ok(!batches.flat().some((r) => r.push.push.clientGroupID === group && r.push.push.mutations.some((m) => m.id === 2)));
  assert.deepEqual(mapping.violations, []);
});

test('a client group the server forgot after its push was queued: the commit refuses it, its pulls answer ClientStateNotFound', async (t) => {
  cleanUp(t);
  const space = `q-${randomUUID()}`;
  let mapping = await startMapping();
  const erin = open(space, 'erin');
  const frank = open(space, 'frank');
  await within(Promise.all([erin.connected, frank.connected]), 'the poke sockets');
  await erin.rep.mutate.createMessage(message('erin-1', 'erin'));
  await converged(erin, ['erin-1'], 'erin');
  await converged(frank, ['erin-1'], 'frank');

  // The push is queued while no committer runs; the group expires before the commit.
  await mapping.stop({ drain: true });
  await erin.rep.mutate.createMessage(message('erin-2', 'erin'));
  await frank.rep.mutate.createMessage(message('frank-1', 'frank'));
  const queued = await pushed(erin, 2);
  assert.deepEqual([queued.status, queued.body], [200, '{}']);
  await pushed(frank, 1);
  await expire(space, erin);
  mapping = await startMapping();

  // The same batch commits frank's push and refuses erin's group; frank's commit pokes erin.
  await converged(frank, ['erin-1', 'frank-1'], 'frank');
  await within(erin.notFound, 'Replicache to call onClientStateNotFound');
  const { status, body } = await pull(space, 'erin', await erin.rep.clientGroupID);
  assert.equal(status, 200);
  assert.deepEqual(body, { error: 'ClientStateNotFound' });
  await mapping.idle();
  assert.equal(mapping.stats.failedRecords, 0, 'the refused push is answered through pulls, not delivered again');
  assert.deepEqual(mapping.violations, []);
  assert.ok(!Object.keys((await stored(space)).entities).includes('erin-2'));
});

test('a client group the server forgot, its push alone in its batch: the commit refuses the group and pokes it', async (t) => {
  cleanUp(t);
  const space = `q-${randomUUID()}`;
  let mapping = await startMapping();
  const erin = open(space, 'erin');
  await within(erin.connected, "erin's poke socket");
  await erin.rep.mutate.createMessage(message('erin-1', 'erin'));
  await converged(erin, ['erin-1'], 'erin');

  await mapping.stop({ drain: true });
  await erin.rep.mutate.createMessage(message('erin-2', 'erin'));
  await pushed(erin, 2);
  await expire(space, erin);
  const posts = gateway.posts;
  mapping = await startMapping();
  await mapping.idle();
  // Else the client keeps erin-2 pending, shown as if applied, until it pushes again.
  const { status, body } = await pull(space, 'erin', await erin.rep.clientGroupID);
  assert.deepEqual([status, body], [200, { error: 'ClientStateNotFound' }]);
  assert.equal(gateway.posts - posts, 1, 'erin is poked, to pull and hear it');
});

test('a committer killed after its commit, before its answer: the batch comes back and every mutation is applied once', async (t) => {
  cleanUp(t);
  const space = `q-${randomUUID()}`;
  const users = ['gina', 'hal', 'ivy'];
  const clients = users.map((u) => open(space, u));
  await within(Promise.all(clients.map((c) => c.connected)), 'the poke sockets');
  // Queued before any committer runs, so that they come in one batch.
  const ids = [];
  for (const [k, c] of clients.entries()) {
    for (let i = 1; i <= 2; i += 1) {
      const id = `${users[k]}-${i}`;
      ids.push(id);
      await c.rep.mutate.createMessage(message(id, users[k], i));
      await pushed(c, i);
    }
  }

  // The space's first commit reaches DynamoDB; its committer dies before it hears back, and
  // so before it answers the invocation and pokes.
  let killedAt = null;
  proxy.fault.after = async (op, body, status) => {
    if (killedAt !== null || op !== 'TransactWriteItems' || status !== 200) return;
    const meta = JSON.parse(body).TransactItems.map((i) => i.Put?.Item).find((i) => i?.pk.S === `s/${space}` && i.sk.S === 'meta');
    if (!meta) return;
    killedAt = Number(meta.version.N);
    await killHolder();
  };
  const posts = gateway.posts;
  const mapping = await startMapping();
  await mapping.idle();
  assert.notEqual(killedAt, null, 'a committer was killed after a commit');
  assert.equal(mapping.stats.functionErrors, 1, 'the killed invocation failed');
  const mine = batches.filter((b) => b.some((r) => r.push.space === space));
  assert.equal(mine.length, 2, 'the batch, and the batch again');
  assert.deepEqual(mine[1].map((r) => r.id), mine[0].map((r) => r.id), 'the same messages came back, in order');
  for (const r of mine[1]) assert.deepEqual(fates.get(r.id), { deliveries: 2, failures: 1 }, 'taken the second time');

  // Applied once: the redelivery found every mutation processed and committed nothing; every
  // message was written by the killed commit; every lmid is exact.
  const table = await stored(space);
  assert.equal(table.version, killedAt, 'no commit after the killed one');
  assert.deepEqual(Object.keys(table.entities).sort(), [...ids].sort());
  assert.ok(Object.values(table.entities).every((v) => v === killedAt));
  for (const [k, c] of clients.entries()) {
    const { body } = await pull(space, users[k], await c.rep.clientGroupID);
    assert.equal(body.lastMutationIDChanges[c.rep.clientID], 2, `${users[k]}'s lmid`);
    assert.deepEqual(body.patch.filter((p) => p.op === 'put').map((p) => p.key.slice('message/'.length)).sort(), [...ids].sort());
  }
  assert.deepEqual(mapping.violations, []);

  await t.test('the redelivery pokes the space: its commit may never have been poked', () => {
    assert.equal(gateway.posts - posts, clients.length, 'a poke for each listener');
  });

  // The poke has the clients pull: they converge without another commit.
  await Promise.all(clients.map((c, k) => converged(c, ids, users[k])));
  await clients[0].rep.mutate.createMessage(message('gina-3', 'gina', 3));
  ids.push('gina-3');
  await Promise.all(clients.map((c, k) => converged(c, ids, users[k])));
});

/** The dead-letter queue's messages (left there): their message ids and pushes. */
async function deadLetters() {
  const found = new Map();
  for (;;) {
    const { Messages: got = [] } = await localstack.sqs('ReceiveMessage', { QueueUrl: queue.dlqUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 30 });
    if (!got.length) return [...found.values()];
    for (const m of got) found.set(m.MessageId, { id: m.MessageId, push: JSON.parse(m.Body) });
  }
}

/** The message ids the mutations of `pushes` create. */
const created = (pushes) => [...new Set(pushes.flatMap((p) => p.push.mutations.map((m) => m.args.id)))].sort();

test('a poison message goes to the dead-letter queue with the pushes behind it in its batches, and the space flows on', async (t) => {
  cleanUp(t);
  const space = `q-${randomUUID()}`;
  const users = ['jan', 'kim', 'lee'];
  const [jan, kim, lee] = users.map((u) => open(space, u));
  await within(Promise.all([jan, kim, lee].map((c) => c.connected)), 'the poke sockets');

  // DynamoDB refuses every commit that writes jan's message (as it refuses an item over its
  // size limit): the committer fails on that push every time it comes. Kim's and lee's
  // pushes are queued behind it before any committer runs.
  const poison = `poison-${randomUUID()}`;
  proxy.fault.refuse = (op, body) => op === 'TransactWriteItems' && body.includes(`"e/message/${poison}"`);
  await jan.rep.mutate.createMessage(message(poison, 'jan'));
  await pushed(jan, 1);
  await kim.rep.mutate.createMessage(message('kim-1', 'kim'));
  await pushed(kim, 1);
  await lee.rep.mutate.createMessage(message('lee-1', 'lee'));
  await pushed(lee, 1);
  const mapping = await startMapping();
  await mapping.idle();

  // A message failed MAX_RECEIVE times went to the dead-letter queue: the poison, and each
  // push behind it in its batches, which the committer fails with it to keep the space's
  // order. Nothing of them was committed; every other push of the space was.
  const mine = new Map(batches.flat().filter((r) => r.push.space === space).map((r) => [r.id, r.push]));
  const failedOut = [...mine.keys()].filter((id) => fates.get(id).failures >= MAX_RECEIVE);
  const dead = await deadLetters();
  assert.deepEqual(dead.map((d) => d.id).sort(), failedOut.sort());
  const poisonId = [...mine].find(([, p]) => created([p]).includes(poison))[0];
  assert.ok(failedOut.includes(poisonId), 'the poison is in the dead-letter queue');
  assert.equal(fates.get(poisonId).deliveries, MAX_RECEIVE);
  assert.ok(proxy.refused >= MAX_RECEIVE, 'every delivery of the poison was refused');
  const committed = created([...mine].filter(([id]) => !failedOut.includes(id)).map(([, p]) => p));
  assert.deepEqual(Object.keys((await stored(space)).entities).sort(), committed.filter((id) => !created(dead.map((d) => d.push)).includes(id)));
  console.log(`poison: ${failedOut.length} of the space's ${mine.size} messages dead-lettered (${dead.map((d) => created([d.push])).join(' | ')})`);

  // The space is not blocked: later pushes commit. Replicache keeps the dead-lettered
  // mutations pending and pushes them again with its next one, so kim and lee converge.
  await kim.rep.mutate.createMessage(message('kim-2', 'kim'));
  await lee.rep.mutate.createMessage(message('lee-2', 'lee'));
  const healthy = ['kim-1', 'kim-2', 'lee-1', 'lee-2'];
  await converged(kim, healthy, 'kim');
  await converged(lee, healthy, 'lee');

  // Once DynamoDB takes jan's message again, jan's next push carries it too, and all converge.
  proxy.fault.refuse = () => false;
  await jan.rep.mutate.createMessage(message('jan-2', 'jan'));
  const all = [...healthy, poison, 'jan-2'];
  await Promise.all([jan, kim, lee].map((c, k) => converged(c, all, users[k])));
  await mapping.idle();
  assert.deepEqual(mapping.violations, []);
});
