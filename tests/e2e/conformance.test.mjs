// Conformance of JavaScript mutators: the same module (the todo app's client mutators) runs on
// the real replicache client and, through APP_BUNDLE, on the server. For many seeded random
// sequences of mutations (one client, no concurrency), the client applies them optimistically
// without pushing; the test then pushes exactly the client's pending mutations and pulls
// the server's authoritative view, which must equal the client's optimistic one, checkpoint
// after checkpoint.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { Replicache } from 'replicache';
import { mutators } from '../../apps/todo/client/mutators.js';
import { root, startServer } from './support.mjs';

const SEQUENCES = 40;
const CHECKPOINTS = 4;
const MUTATIONS_PER_CHECKPOINT = 12;
const USERS = ['ann', 'ben', 'cat'];

/** A small seeded generator (mulberry32), so that a failing sequence can be replayed. */
function random(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = (items) => items[Math.floor(next() * items.length)];
  return { next, pick, int: (n) => Math.floor(next() * n) };
}

/** One random mutation of the todo app, invalid arguments included. */
function mutation(r) {
  const id = `t${r.int(5)}`;
  const text = r.pick(['milk', 'eggs', '', '  ', 'x'.repeat(1001), 'päivää 🍞']);
  return r.pick([
    () => ['createList', { name: r.pick(['home', 'work']) }],
    () => ['createTodo', { id, text }],
    () => ['createTodo', { id, text }],
    () => ['updateTodo', { id, completed: r.next() < 0.5 }],
    () => ['updateTodo', { id, text }],
    () => ['deleteTodo', { id }],
    () => ['clearCompleted', undefined],
    () => ['share', { user: r.pick(USERS) }],
    () => ['unshare', { user: r.pick(USERS) }],
  ])();
}

async function post(server, route, space, user, body) {
  const res = await fetch(`${server.url}api/replicache/${route}?spaceID=${space}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: user },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  assert.equal(res.status, 200, `${route}: ${text}`);
  return JSON.parse(text);
}

/** The space as the server has it: a pull from scratch by a client group of its own. */
async function serverView(server, space, user) {
  const pull = { pullVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID: randomUUID(), cookie: null };
  const { patch } = await post(server, 'pull', space, user, pull);
  const view = {};
  for (const op of patch) {
    if (op.op === 'put') view[op.key] = op.value;
    else assert.equal(op.op, 'clear');
  }
  return view;
}

describe('the same JavaScript mutators on the client and on the server', () => {
  let server;

  before(async () => {
    server = await startServer({ env: { APP_BUNDLE: path.join(root, 'apps/todo/client/mutators.js') } });
  });
  after(() => server?.stop());

  test(`${SEQUENCES} seeded sequences agree at every checkpoint`, async () => {
    for (let seed = 1; seed <= SEQUENCES; seed++) {
      const r = random(seed);
      const user = r.pick(USERS);
      const space = `list-conformance-${seed}-${randomUUID()}`;
      // No pushURL: the client never pushes by itself, so its view stays optimistic.
      const rep = new Replicache({ name: `c-${randomUUID()}`, kvStore: 'mem', logLevel: 'error', pullInterval: null, mutators: mutators(user) });
      const clientGroupID = await rep.clientGroupID;
      let pushed = 0;
      try {
        // The user's own list: the server's write rule (which the client does not run) then
        // admits every mutation, so both sides run the same code.
        await rep.mutate.createList({ name: 'mine' });
        for (let checkpoint = 1; checkpoint <= CHECKPOINTS; checkpoint++) {
          for (let i = 0; i < MUTATIONS_PER_CHECKPOINT; i++) {
            const [name, args] = mutation(r);
            await rep.mutate[name](args);
          }
          const optimistic = Object.fromEntries(await rep.query((tx) => tx.scan().entries().toArray()));
          const pending = (await rep.experimentalPendingMutations()).filter((m) => m.id > pushed);
          const mutations = pending.map((m) => ({ clientID: m.clientID, id: m.id, name: m.name, args: m.args ?? null, timestamp: m.id }));
          await post(server, 'push', space, user, { pushVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID, mutations });
          pushed = pending.at(-1)?.id ?? pushed;
          const authoritative = await serverView(server, space, user);
          assert.deepEqual(authoritative, optimistic, `seed ${seed}, checkpoint ${checkpoint}`);
        }
      } finally {
        await rep.close();
      }
    }
  });
});
