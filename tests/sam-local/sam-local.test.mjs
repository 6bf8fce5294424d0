// The deployed shape under `sam local`: the release binaries `sam build` made, behind
// `sam local start-api` (and called by `sam local invoke`), on DynamoDB Local, driven by the
// real replicache 15.3.0 client. Run through tests/sam-local/run.sh, which brings up podman,
// the Lambda base image and the build, and passes SAM_LOCAL_WORK and SAM_LOCAL_TEMPLATE.
//
// sam local has no WebSocket API, so there are no pokes: the clients pull explicitly. Nor
// has it SQS: the committer of queued pushes is invoked with an SQS event file.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Replicache } from 'replicache';
import { messages, mutators, until } from '../e2e/clients.mjs';
import { createTable, freePort, root, startDynamoDbLocal } from '../e2e/support.mjs';

const work = process.env.SAM_LOCAL_WORK;
const template = process.env.SAM_LOCAL_TEMPLATE;
if (!work || !template) {
  throw new Error('run this through tests/sam-local/run.sh (SAM_LOCAL_WORK and SAM_LOCAL_TEMPLATE are unset)');
}
// SAM's layer cache, which would be ~/.aws-sam/layers-pkg.
const layers = process.env.SAM_LOCAL_LAYERS || path.join(work, 'layers');
const table = 'sam-local-sync';
const parameters = (authMode) => `AuthMode=${authMode} Architecture=x86_64`;
// Fake credentials and a fixed region for SAM CLI, which hands them to the functions: the
// machine's own AWS settings never reach the containers.
const samEnv = {
  ...process.env,
  AWS_REGION: 'us-east-1',
  AWS_DEFAULT_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: 'local',
  AWS_SECRET_ACCESS_KEY: 'local',
  AWS_CONFIG_FILE: '/dev/null',
  AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
};
delete samEnv.AWS_PROFILE;
delete samEnv.AWS_SESSION_TOKEN;

/** An --env-vars file for every function of the template. */
function envFile(name, dynamodbPort, authMode, extra = {}) {
  const file = path.join(work, name);
  writeFileSync(file, JSON.stringify({
    Parameters: {
      TABLE_NAME: table,
      AUTH_MODE: authMode,
      // podman's name for the host; Docker's is host.docker.internal (see local/env.json).
      AWS_ENDPOINT_URL_DYNAMODB: `http://host.containers.internal:${dynamodbPort}`,
      // sam local resolves no dynamic reference: the poke function's key comes from here,
      // and the push function pokes nothing (sam local has no WebSocket API).
      POKE_TICKET_KEY: 'sam-local-ticket-key-0123456789abcdef0123',
      POKE_ENDPOINT: '',
      // sam local has no SQS: pushes commit directly, and the committer is invoked with
      // event files (tests/events/sqs-commit.json).
      PUSH_PATH: 'direct',
      PUSH_QUEUE_URL: '',
      RUST_LOG: 'info',
      ...extra,
    },
  }, null, 2));
  return file;
}

// SAM_LOCAL_DEBUG=1: SAM CLI's --debug output in the logs.
const debug = process.env.SAM_LOCAL_DEBUG ? ['--debug'] : [];

/** Runs `sam` with `args`; resolves with its exit code and output. */
function sam(args) {
  return new Promise((resolve, reject) => {
    const child = spawn('sam', [...args, ...debug], { cwd: root, env: samEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    // A safety net, not a synchronization: a hung sam would otherwise hang the stage.
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Starts `sam local start-api`; resolves once it serves, with its URL and a stop(). */
async function startApi(envVars, logName = 'start-api.log') {
  const port = await freePort();
  const logFile = path.join(work, logName);
  const log = createWriteStream(logFile);
  const child = spawn('sam', [
    'local', 'start-api',
    '--template', template,
    '--host', '127.0.0.1', '--port', String(port),
    '--warm-containers', 'EAGER',
    '--skip-pull-image',
    '--env-vars', envVars,
    '--parameter-overrides', parameters('header'),
    '--static-dir', path.join(root, 'apps/chat/web/dist'),
    '--layer-cache-basedir', layers,
    ...debug,
  ], { cwd: root, env: samEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const ready = new Promise((resolve, reject) => {
    const onData = (chunk) => {
      log.write(chunk);
      output += chunk;
      if (output.includes(`Running on http://127.0.0.1:${port}`)) resolve();
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`sam local start-api exited (${code}) before serving:\n${output}`)));
  });
  // A safety net, not a synchronization: it ends a start-api that never serves.
  const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
  try {
    await ready;
  } finally {
    clearTimeout(timer);
  }
  const stop = () => new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    // SAM stops its warm containers on SIGTERM (it ignores SIGINT when not on a terminal).
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('exit', () => {
      clearTimeout(timer);
      log.end(resolve);
    });
    child.kill('SIGTERM');
  });
  return { url: `http://127.0.0.1:${port}/`, stop, output: () => output, logFile };
}

/** A replicache client with its own client group; no pokes here, so it pulls when told. */
function client(base, space, user) {
  return new Replicache({
    name: `sam-local-${randomUUID()}`,
    kvStore: 'mem',
    pullInterval: null,
    pushDelay: 0,
    logLevel: 'error',
    auth: user,
    pushURL: `${base}api/replicache/push?spaceID=${space}`,
    pullURL: `${base}api/replicache/pull?spaceID=${space}`,
    mutators,
  });
}

/** Pulls `rep` until its messages satisfy `predicate` (until() gives up after 15 s). */
async function pullUntil(rep, predicate, what) {
  const seen = until(rep, predicate, what);
  let done = false;
  seen.then(() => { done = true; }, () => { done = true; });
  while (!done) {
    await rep.pull().catch(() => {});
    // Paces the pulls; `seen` decides when to stop.
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return seen;
}

/** A raw request to the API. */
async function post(base, route, space, user, body) {
  const response = await fetch(`${base}api/replicache/${route}?spaceID=${space}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: user },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, type: response.headers.get('content-type'), body: text ? JSON.parse(text) : null };
}

const message = (from, content, order) => ({ id: randomUUID(), from, content, order });

describe('sam local start-api, the release build on DynamoDB Local', () => {
  let dynamo;
  let api;
  let envVars;
  const reps = [];
  const open = (...args) => {
    const rep = client(...args);
    reps.push(rep);
    return rep;
  };

  before(async () => {
    dynamo = await startDynamoDbLocal();
    await createTable(dynamo.endpoint, table);
    const port = new URL(dynamo.endpoint).port;
    const started = Date.now();
    envVars = envFile('env-header.json', port, 'header');
    api = await startApi(envVars);
    console.log(`sam local start-api served after ${Date.now() - started} ms`);
  });

  after(async () => {
    await Promise.all(reps.map((rep) => rep.close()));
    await api?.stop();
    await dynamo?.stop();
  });

  test('two clients in different groups converge', async () => {
    const space = `s-${randomUUID()}`;
    const a = open(api.url, space, 'alice');
    const b = open(api.url, space, 'bob');
    assert.notEqual(await a.clientGroupID, await b.clientGroupID);
    const m1 = message('alice', 'hello from a', 1);
    await a.mutate.createMessage(m1);
    await pullUntil(b, (d) => d[m1.id]?.content === 'hello from a', 'b to see a message');
    const m2 = message('bob', 'hello from b', 2);
    await b.mutate.createMessage(m2);
    await pullUntil(a, (d) => d[m2.id], 'a to see b message');
    await pullUntil(b, (d) => d[m1.id] && d[m2.id], 'b to keep both');
    assert.deepEqual(await messages(a), await messages(b));
  });

  test('a delete propagates', async () => {
    const space = `s-${randomUUID()}`;
    const a = open(api.url, space, 'alice');
    const b = open(api.url, space, 'bob');
    const m = message('alice', 'short-lived', 1);
    await a.mutate.createMessage(m);
    await pullUntil(b, (d) => d[m.id], 'b to see the message');
    await b.mutate.deleteMessage({ id: m.id });
    await pullUntil(a, (d) => !d[m.id], 'a to see the delete');
  });

  test('a rejected mutation does not block later ones', async () => {
    const space = `s-${randomUUID()}`;
    const a = open(api.url, space, 'alice');
    const b = open(api.url, space, 'bob');
    const bad = message('alice', 'negative order', -1);
    await a.mutate.createMessage(bad);
    const good = message('alice', 'after the bad one', 2);
    await a.mutate.createMessage(good);
    await pullUntil(b, (d) => d[good.id], 'b to see the later mutation');
    await pullUntil(a, (d) => d[good.id] && !d[bad.id], 'a to drop the rejected mutation');
    assert.equal((await messages(b))[bad.id], undefined);
    assert.deepEqual(await a.experimentalPendingMutations(), [], 'both acknowledged');
  });

  test('a foreign client group gets 401', async () => {
    const space = `s-${randomUUID()}`;
    const owner = open(api.url, space, 'erin');
    const watcher = open(api.url, space, 'frank');
    const m = message('erin', 'mine', 1);
    await owner.mutate.createMessage(m);
    await pullUntil(watcher, (d) => d[m.id], 'the push to land');
    const pull = { pullVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID: await owner.clientGroupID, cookie: null };
    assert.equal((await post(api.url, 'pull', space, 'erin', pull)).status, 200);
    const refused = await post(api.url, 'pull', space, 'mallory', pull);
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error, 'Unauthorized');
    const push = {
      pushVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID: pull.clientGroupID,
      mutations: [{ clientID: randomUUID(), id: 1, name: 'createMessage', args: message('mallory', 'x', 1), timestamp: 1 }],
    };
    assert.equal((await post(api.url, 'push', space, 'mallory', push)).status, 401);
    assert.equal((await post(api.url, 'pull', `s-${randomUUID()}`, 'erin', pull)).status, 401, 'another space');
  });

  test('a bad body gets its 400 JSON error', async () => {
    const space = `s-${randomUUID()}`;
    const broken = await post(api.url, 'push', space, 'alice', '{"pushVersion": 1, ');
    assert.equal(broken.status, 400);
    assert.match(broken.type, /^application\/json/);
    assert.equal(broken.body.error, 'InvalidJSON');
    assert.equal(typeof broken.body.message, 'string');
    const incomplete = await post(api.url, 'pull', space, 'alice', { pullVersion: 1 });
    assert.equal(incomplete.status, 400);
    assert.equal(incomplete.body.error, 'InvalidRequest');
  });

  test('the poke function issues tickets on the HTTP API', async () => {
    const response = await fetch(`${api.url}api/replicache/poke-ticket?spaceID=room`, {
      method: 'POST',
      headers: { authorization: 'alice' },
    });
    assert.equal(response.status, 200);
    const { ticket, expiresAt } = await response.json();
    const [payload] = ticket.split('.');
    // n: the ticket's id, spent when a connection uses it (a ticket opens one connection).
    const { n, ...claims } = JSON.parse(Buffer.from(payload, 'base64url'));
    assert.deepEqual(claims, { u: 'alice', s: 'room', e: expiresAt });
    assert.match(n, /^[\w-]{16,}$/);
  });

  /** Runs `sam local invoke CommitFunction` with `event` on this DynamoDB Local; its answer. */
  async function commit(event) {
    const file = path.join(work, `event-${randomUUID()}.json`);
    writeFileSync(file, JSON.stringify(event));
    const started = Date.now();
    const run = await sam([
      'local', 'invoke', 'CommitFunction', '--template', template, '--event', file, '--env-vars', envVars,
      '--parameter-overrides', parameters('header'), '--skip-pull-image', '--layer-cache-basedir', layers,
    ]);
    console.log(`sam local invoke CommitFunction took ${Date.now() - started} ms`);
    writeFileSync(path.join(work, `invoke-CommitFunction-${path.basename(file, '.json')}.log`), `${run.stdout}\n${run.stderr}`);
    const last = run.stdout.trim().split('\n').pop() || '';
    let response;
    try {
      response = JSON.parse(last);
    } catch {
      assert.fail(`sam local invoke CommitFunction (exit ${run.code}) gave no JSON answer:\n${run.stdout}\n${run.stderr}`);
    }
    assert.equal(run.code, 0, run.stderr);
    return response;
  }

  // The committer as the queue's event source mapping runs it: two pushes of one space from
  // two client groups, as the push function queued them (tests/events/sqs-commit.json).
  test('the committer commits an SQS batch of queued pushes, once', async () => {
    const event = JSON.parse(readFileSync(path.join(root, 'tests/events/sqs-commit.json'), 'utf8'));
    const pushes = event.Records.map((r) => JSON.parse(r.body));
    const space = pushes[0].space;
    assert.ok(pushes.every((p) => p.space === space) && pushes[0].user !== pushes[1].user);
    const response = await commit(event);
    assert.deepEqual(response, { batchItemFailures: [] });

    const pull = (p, cookie = null) => post(api.url, 'pull', space, p.user, {
      pullVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID: p.push.clientGroupID, cookie,
    });
    const expected = pushes.flatMap((p) => p.push.mutations).map((m) => ({
      op: 'put', key: `message/${m.args.id}`, value: { from: m.args.from, content: m.args.content, order: m.args.order },
    })).sort((a, b) => a.key.localeCompare(b.key));
    const cookies = {};
    for (const p of pushes) {
      const pulled = await pull(p);
      assert.equal(pulled.status, 200, JSON.stringify(pulled.body));
      const puts = pulled.body.patch.filter((op) => op.op === 'put').sort((a, b) => a.key.localeCompare(b.key));
      assert.deepEqual(puts, expected, 'both pushes\' mutations');
      const last = p.push.mutations.at(-1);
      assert.deepEqual(pulled.body.lastMutationIDChanges, { [last.clientID]: last.id }, `${p.user}'s client`);
      cookies[p.user] = pulled.body.cookie;
    }

    // Delivered again (a redelivery after a lost delete), with a message no commit can
    // read: neither is reported failed, and nothing commits (the pull since the cookie
    // above shows no change).
    const again = structuredClone(event);
    again.Records[0].attributes.ApproximateReceiveCount = '2';
    again.Records[1].messageId = randomUUID();
    again.Records[1].body = '{"user": "alice", "space": ';
    const answer = await commit(again);
    assert.deepEqual(answer, { batchItemFailures: [] }, 'an unreadable message is dropped, not failed');
    const since = await pull(pushes[0], cookies[pushes[0].user]);
    assert.equal(since.status, 200);
    assert.deepEqual(since.body.patch, [], 'nothing committed twice');
    assert.deepEqual(since.body.lastMutationIDChanges, {});
  });

  test('the demo is served with --static-dir', async () => {
    const page = await fetch(`${api.url}index.html`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /app\.js/);
    assert.equal((await fetch(`${api.url}app.js`)).status, 200);
  });
});

describe('sam local invoke, API Gateway HTTP API events', () => {
  let dynamo;
  let envVars;

  before(async () => {
    dynamo = await startDynamoDbLocal();
    await createTable(dynamo.endpoint, table);
    // The event files carry a JWT authorizer's claims (sub user-alice): jwt mode reads them.
    envVars = envFile('env-jwt.json', new URL(dynamo.endpoint).port, 'jwt');
  });

  after(async () => {
    await dynamo?.stop();
  });

  /** Runs `sam local invoke fn` with tests/events/<name>.json, its body replaced by `body`. */
  async function invokeRaw(fn, name, body, env = envVars) {
    const event = JSON.parse(readFileSync(path.join(root, 'tests/events', `${name}.json`), 'utf8'));
    if (body !== undefined) {
      event.body = JSON.stringify(body);
      event.headers['content-length'] = String(Buffer.byteLength(event.body));
    }
    const file = path.join(work, `event-${randomUUID()}.json`);
    writeFileSync(file, JSON.stringify(event));
    const started = Date.now();
    const run = await sam([
      'local', 'invoke', fn, '--template', template, '--event', file, '--env-vars', env,
      '--parameter-overrides', parameters('jwt'), '--skip-pull-image', '--layer-cache-basedir', layers,
    ]);
    console.log(`sam local invoke ${fn} took ${Date.now() - started} ms`);
    writeFileSync(path.join(work, `invoke-${fn}-${path.basename(file, '.json')}.log`), `${run.stdout}\n${run.stderr}`);
    return run;
  }

  /** Invokes `fn` with tests/events/<name>.json and parses the function's HTTP answer. */
  async function invoke(fn, name, body) {
    const run = await invokeRaw(fn, name, body);
    const last = run.stdout.trim().split('\n').pop() || '';
    let response;
    try {
      response = JSON.parse(last);
    } catch {
      assert.fail(`sam local invoke ${fn} (exit ${run.code}) gave no JSON answer:\n${run.stdout}\n${run.stderr}`);
    }
    assert.equal(run.code, 0, run.stderr);
    return { status: response.statusCode, headers: response.headers, body: response.body ? JSON.parse(response.body) : null };
  }

  const group = `g-${randomUUID()}`;
  const clientID = randomUUID();

  test('push, then pull, as the JWT subject', async () => {
    const pushed = await invoke('PushFunction', 'http-api-push', {
      pushVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID: group,
      mutations: [{ clientID, id: 1, name: 'createMessage', args: { id: 'm1', from: 'alice', content: 'hi', order: 1 }, timestamp: 1 }],
    });
    assert.deepEqual([pushed.status, pushed.body], [200, {}]);
    assert.match(pushed.headers['content-type'], /^application\/json/);
    const pulled = await invoke('PullFunction', 'http-api-pull', {
      pullVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID: group, cookie: null,
    });
    assert.equal(pulled.status, 200);
    assert.equal(pulled.body.lastMutationIDChanges[clientID], 1);
    assert.deepEqual(pulled.body.patch.filter((op) => op.op === 'put'), [
      { op: 'put', key: 'message/m1', value: { from: 'alice', content: 'hi', order: 1 } },
    ]);
  });

  test('the event files as they are (no body) get a 400 JSON error', async () => {
    for (const [fn, name] of [['PushFunction', 'http-api-push'], ['PullFunction', 'http-api-pull']]) {
      const answer = await invoke(fn, name);
      assert.equal(answer.status, 400, `${fn}: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.error, 'InvalidJSON');
    }
  });
});

describe('a bad setting under sam local start-api', () => {
  let dynamo;
  let api;

  before(async () => {
    dynamo = await startDynamoDbLocal();
    const bad = envFile('env-bad.json', new URL(dynamo.endpoint).port, 'header', { AWS_ENDPOINT_URL_DYNAMODB: 'localhost:8000' });
    api = await startApi(bad, 'start-api-bad.log');
  });

  after(async () => {
    await api?.stop();
    await dynamo?.stop();
  });

  test('fails the init with a log line naming the variable, and no panic', async () => {
    const answer = await fetch(`${api.url}api/replicache/pull?spaceID=s`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'alice' },
      body: JSON.stringify({ pullVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID: 'g', cookie: null }),
    });
    assert.equal(answer.status, 502, 'no answer from a function that did not start');
    // SAM does not relay the output of a function that died in its init: read the
    // containers' own logs, which is what CloudWatch gets in AWS.
    const ids = [...api.output().matchAll(/SAM_CONTAINER_ID: ([0-9a-f]+)/g)].map((m) => m[1]);
    assert.ok(ids.length > 0, 'the containers SAM started');
    let logs = '';
    for (const id of ids) {
      const run = await new Promise((resolve, reject) => {
        const child = spawn('podman', ['logs', id], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.on('data', (d) => { out += d; });
        child.stderr.on('data', (d) => { out += d; });
        child.once('error', reject);
        child.once('exit', () => resolve(out));
      });
      logs += run;
    }
    writeFileSync(path.join(work, 'containers-bad.log'), logs);
    assert.match(logs, /"level":"ERROR".*configuration error: AWS_ENDPOINT_URL_DYNAMODB: \\"localhost:8000\\" is not an http\(s\) URL/);
    assert.doesNotMatch(logs, /panicked/);
  });
});
