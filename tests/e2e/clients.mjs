// The real replicache client as the demo uses it, for the end-to-end tests and scripts: its
// own client group, in memory, pulling when the server pokes.

import { randomUUID } from 'node:crypto';
import { Replicache } from 'replicache';
import WebSocket from 'ws';
import { endpoints, listenForPokes } from '../../web/src/pokes.js';

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

/**
 * A client like the demo's: its own client group, pulling when poked, through the demo's own
 * poke code (web/src/pokes.js). `base` is the dev server's URL, or `{api, ws}`: the HTTP API's
 * base URL and the poke WebSocket's URL of a deployed shape.
 */
export function client(base, space, user, extra = {}) {
  const api = typeof base === 'string' ? base.replace(/\/$/, '') : base.api;
  const ws = typeof base === 'string' ? `${api.replace('http', 'ws')}/api/replicache/poke` : base.ws;
  const urls = endpoints(space, { api, ws });
  const rep = new Replicache({
    name: `test-${randomUUID()}`,
    kvStore: 'mem',
    pullInterval: null,
    pushDelay: 0,
    logLevel: 'error',
    auth: user,
    pushURL: urls.pushURL,
    pullURL: urls.pullURL,
    mutators,
    ...extra,
  });
  let opened;
  const connected = new Promise((resolve) => { opened = resolve; });
  const stop = listenForPokes({ spaceID: space, ...urls, auth: user }, {
    onPoke: () => rep.pull().catch(() => {}),
    onState: (open) => open && opened(true),
    WebSocket,
  });
  return {
    rep,
    connected,
    async close() {
      stop();
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

