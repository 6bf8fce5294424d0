// The real replicache client as the demo uses it, for the end-to-end tests and scripts: its
// own client group, in memory, pulling when the server pokes.

import { randomUUID } from 'node:crypto';
import { Replicache } from 'replicache';
import WebSocket from 'ws';

/** Longest wait for a client to see something (a safety net, not a synchronization). */
export const TIMEOUT_MS = 15_000;

/** The chat mutators, as the demo has them. */
export const mutators = {
  async createMessage(tx, { id, from, content, order }) {
    await tx.set(`message/${id}`, { from, content, order });
  },
  async deleteMessage(tx, { id }) {
    await tx.del(`message/${id}`);
  },
};

/** A client like the demo's: its own client group, pulling when poked. */
export function client(base, space, user, extra = {}) {
  const rep = new Replicache({
    name: `test-${randomUUID()}`,
    kvStore: 'mem',
    pullInterval: null,
    pushDelay: 0,
    logLevel: 'error',
    auth: user,
    pushURL: `${base}api/replicache/push?spaceID=${space}`,
    pullURL: `${base}api/replicache/pull?spaceID=${space}`,
    mutators,
    ...extra,
  });
  const sockets = [];
  let closed = false;
  const connect = () =>
    new Promise((resolve) => {
      const ws = new WebSocket(`${base.replace('http', 'ws')}api/replicache/poke?spaceID=${space}`);
      sockets.push(ws);
      ws.on('open', resolve);
      ws.on('message', (data) => {
        if (data.toString() === 'poke') rep.pull().catch(() => {});
      });
      ws.on('error', () => {});
      // Reconnect after the server was away, and pull what the pokes missed.
      ws.on('close', () => {
        if (!closed) setTimeout(() => connect().then(() => rep.pull()).catch(() => {}), 100);
      });
    });
  return {
    rep,
    connected: connect(),
    async close() {
      closed = true;
      for (const ws of sockets) ws.terminate();
      await rep.close();
    },
  };
}

/** The client's messages, as {id: value}. */
export async function messages(rep) {
  return rep.query(async (tx) => Object.fromEntries(
    (await tx.scan({ prefix: 'message/' }).entries().toArray()).map(([k, v]) => [k.slice(8), v]),
  ));
}

/** Resolves when the client's messages satisfy `predicate`. */
export function until(rep, predicate, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`timed out waiting for ${what}`));
    }, TIMEOUT_MS);
    const unsubscribe = rep.subscribe(
      async (tx) => Object.fromEntries(
        (await tx.scan({ prefix: 'message/' }).entries().toArray()).map(([k, v]) => [k.slice(8), v]),
      ),
      (data) => {
        if (predicate(data)) {
          clearTimeout(timer);
          unsubscribe();
          resolve(data);
        }
      },
    );
  });
}

