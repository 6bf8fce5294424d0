// Your own app, made the way the README says: `scripts/new-app` writes a crate outside this
// repository (in a temporary directory) that depends on the library by path; cargo builds its
// push, pull and poke functions and its dev server and runs the app's own test. Then the
// app's space policy (a private space per user, where the chat lets anyone in) must decide in
// all three functions, run behind the API Gateway stand-in on DynamoDB Local, and in the dev
// server. Also: the library's manifest resolves by git and from its package alone, and the
// README's Rust code is the starter's, verbatim (so it compiles as written).
//
// The app's build shares the workspace's build directory (CARGO_BUILD_BUILD_DIR), so that it
// compiles only the library (once, for the app's features) and the app; its binaries land in
// the app's own target directory, not beside the workspace's push, pull and poke.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { startApiGateway } from './apigw-standin.mjs';
import { startFunction } from './lambda-runtime.mjs';
import { createTable, functionEnv, root, startDynamoDbLocal, startServer } from './support.mjs';

const buildDir = process.env.CARGO_BUILD_BUILD_DIR || process.env.CARGO_TARGET_DIR || path.join(root, 'target');
const scratch = mkdtempSync(path.join(os.tmpdir(), 'own-app-'));
const app = path.join(scratch, 'notes');
const bin = (name) => path.join(app, 'target/debug', name);

/** Runs cargo in `cwd` as a user would there (its own target directory), on the shared build directory. */
function cargo(cwd, ...args) {
  const env = { ...process.env, CARGO_BUILD_BUILD_DIR: buildDir };
  delete env.CARGO_TARGET_DIR;
  return execFileSync('cargo', args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

let dynamodb;
let gateway;
const functions = {};

before(async () => {
  const started = performance.now();
  execFileSync(path.join(root, 'scripts/new-app'), [app], { stdio: 'ignore' });
  cargo(app, 'build', '--quiet', '--bins', '--tests');
  console.log(`new app: written and built in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  dynamodb = await startDynamoDbLocal();
  const table = `own-app-${randomUUID()}`;
  await createTable(dynamodb.endpoint, table);
  gateway = await startApiGateway(functions);
  const env = { ...functionEnv(dynamodb.endpoint, table), POKE_TICKET_KEY: randomBytes(32).toString('hex') };
  const [push, pull, poke] = await Promise.all(['push', 'pull', 'poke'].map((f) => startFunction(f, env, { binary: bin(f), quiet: true })));
  Object.assign(functions, { push, pull, poke });
});

after(async () => {
  await gateway?.stop();
  await Promise.all(Object.values(functions).map((f) => f.stop()));
  await dynamodb?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

/** POSTs `body` to `route` of the API at `base` for `space`, as `user`: the response. */
const call = (base, route, space, user, body) =>
  fetch(`${base}/api/replicache/${route}?spaceID=${space}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: user },
    body: body && JSON.stringify(body),
  });

const pushOf = (clientGroupID, text) => ({
  pushVersion: 1,
  schemaVersion: '',
  profileID: 'p',
  clientGroupID,
  mutations: [{ clientID: `${clientGroupID}-c`, id: 1, name: 'createTodo', args: { id: '1', text }, timestamp: 1 }],
});
const pullOf = (clientGroupID) => ({ pullVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID, cookie: null });

/** The owner writes and reads her space; anyone else is refused by push, pull and ticket alike. */
async function assertTheAppsPolicy(base) {
  const group = randomUUID();
  assert.equal((await call(base, 'push', 'private-alice', 'alice', pushOf(group, 'milk'))).status, 200);
  const pulled = await call(base, 'pull', 'private-alice', 'alice', pullOf(group));
  assert.equal(pulled.status, 200);
  const { patch, lastMutationIDChanges } = await pulled.json();
  assert.deepEqual(patch, [{ op: 'clear' }, { op: 'put', key: 'todo/1', value: { id: '1', text: 'milk', completed: false, sort: 0 } }]);
  assert.deepEqual(lastMutationIDChanges, { [`${group}-c`]: 1 });
  assert.equal((await call(base, 'poke-ticket', 'private-alice', 'alice')).status, 200);

  // The chat's policy would let bob in: these 403s are the app's policy, in each function.
  const intruder = randomUUID();
  assert.equal((await call(base, 'push', 'private-alice', 'bob', pushOf(intruder, 'eggs'))).status, 403);
  assert.equal((await call(base, 'pull', 'private-alice', 'bob', pullOf(intruder))).status, 403);
  assert.equal((await call(base, 'poke-ticket', 'private-alice', 'bob')).status, 403);
}

test("the new app's own test passes", () => {
  const out = cargo(app, 'test', '--quiet', '--tests');
  assert.match(out, /test result: ok\. 2 passed; 0 failed/);
});

test("the push, pull and poke functions run the new app's policy", async () => {
  await assertTheAppsPolicy(gateway.api);
  // The owner's ticket opens the poke WebSocket ($connect runs the policy too).
  const { ticket } = await (await call(gateway.api, 'poke-ticket', 'private-alice', 'alice')).json();
  const ws = new WebSocket(`${gateway.ws}?spaceID=private-alice&ticket=${ticket}`);
  await new Promise((resolve, reject) => {
    ws.on('open', resolve);
    ws.on('unexpected-response', (_, response) => reject(new Error(`$connect answered ${response.statusCode}`)));
  });
  ws.close();
});

test("the new app's dev server runs its policy, and says when its web client is not built", async () => {
  const webDir = path.join(app, 'web/dist');
  const server = await startServer({ binary: bin('dev'), webDir });
  try {
    await assertTheAppsPolicy(server.url.replace(/\/$/, ''));
    const page = await fetch(server.url);
    assert.equal(page.status, 404);
    assert.equal(
      await page.text(),
      `The web client is not built: ${webDir} has no index.html.\n`
        + 'The chat demo: npm run --prefix web build (./scripts/dev builds it and starts this server).\n'
        + "Your own app: point --web-dir (or WEB_DIR) at your client's build.\n",
    );
    // Once built, a missing file is a plain 404.
    mkdirSync(webDir, { recursive: true });
    writeFileSync(path.join(webDir, 'index.html'), '<!doctype html><title>notes</title>');
    assert.equal(await (await fetch(server.url)).text(), '<!doctype html><title>notes</title>');
    const missing = await fetch(`${server.url}app.js`);
    assert.equal(missing.status, 404);
    assert.equal(await missing.text(), 'Not found\n');
  } finally {
    await server.stop();
  }
});

const tree = (dir) => cargo(dir, 'tree', '--depth', '1', '--edges', 'normal', '--prefix', 'none');

test('the library resolves by git: cargo finds the crate and its workspace fields in a checkout', (t) => {
  try {
    execFileSync('git', ['-C', root, 'rev-parse', '--git-dir'], { stdio: 'ignore' });
  } catch {
    t.skip('this copy of the repository is not a git checkout');
    return;
  }
  const byGit = path.join(scratch, 'by-git');
  execFileSync(path.join(root, 'scripts/new-app'), [byGit, '--git', `file://${root}`], { stdio: 'ignore' });
  const escaped = root.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  assert.match(tree(byGit), new RegExp(`^replicache-dynamodb v0\\.1\\.0 \\(file://${escaped}#[0-9a-f]{8,40}\\)$`, 'm'));
});

test('the library resolves from its package alone, with no workspace to inherit from', () => {
  // As crates.io would have it: the manifest written out in full, only shared/'s files.
  const packages = path.join(scratch, 'package');
  mkdirSync(packages);
  cargo(root, 'package', '-p', 'replicache-dynamodb', '--no-verify', '--allow-dirty', '--offline', '--quiet', '--target-dir', packages);
  const crate = readdirSync(path.join(packages, 'package')).find((f) => f.endsWith('.crate'));
  execFileSync('tar', ['xzf', path.join(packages, 'package', crate), '-C', packages]);
  const byPackage = path.join(scratch, 'by-package');
  execFileSync(path.join(root, 'scripts/new-app'), [byPackage, '--path', path.join(packages, crate.replace(/\.crate$/, ''))], { stdio: 'ignore' });
  assert.match(tree(byPackage), /^replicache-dynamodb v0\.1\.0 \(\/.*\/package\/replicache-dynamodb-0\.1\.0\)$/m);
  // And it holds every source file, so that it compiles as the path dependency above does.
  const listed = new Set(cargo(root, 'package', '-p', 'replicache-dynamodb', '--list', '--allow-dirty', '--offline').split('\n'));
  const sources = readdirSync(path.join(root, 'shared/src'), { recursive: true, withFileTypes: true })
    .filter((f) => f.isFile())
    .map((f) => path.relative(path.join(root, 'shared'), path.join(f.parentPath ?? f.path, f.name)));
  assert.deepEqual(sources.filter((f) => !listed.has(f)), []);
});

test("the README's Rust code is the starter's, verbatim", () => {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/^( *)```rust\n([\s\S]*?)^\1```$/gm)].map(([, indent, body]) =>
    body.split('\n').map((line) => line.slice(indent.length)).join('\n'));
  assert.notEqual(blocks.length, 0, 'the README shows Rust code');
  const starter = path.join(root, 'starter');
  const sources = ['src/lib.rs', 'tests/app.rs', ...readdirSync(path.join(starter, 'src/bin')).map((f) => `src/bin/${f}`)]
    .map((f) => readFileSync(path.join(starter, f), 'utf8'));
  for (const block of blocks) {
    assert.ok(sources.some((source) => source.includes(block)), `a Rust block of the README is not in starter/:\n${block}`);
  }
});
