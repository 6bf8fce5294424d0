// The real replicache client as the demo uses it, for the end-to-end tests and scripts: its
// own client group, in memory, pulling when the server pokes.

import { randomUUID } from 'node:crypto';
import { Replicache } from 'replicache';
import WebSocket from 'ws';
import { connect, replicacheOptions } from 'replicache-dynamodb-client';

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
 * A client like the demo's: its own client group, kept up to date by the client package's
 * `connect` (pokes, reconnects, paged syncs), as the demo is. `base` is the dev server's URL,
 * or `{api, ws}`: the HTTP API's base URL and the poke WebSocket's URL of a deployed shape.
 */
export function client(base, space, user, extra = {}) {
  const server = typeof base === 'string'
    ? { spaceID: space, auth: user, api: base }
    : { spaceID: space, auth: user, api: base.api, ws: base.ws };
  const rep = new Replicache({
    name: `test-${randomUUID()}`,
    kvStore: 'mem',
    pullInterval: null,
    pushDelay: 0,
    logLevel: 'error',
    ...replicacheOptions(server),
    mutators,
    ...extra,
  });
  let opened;
  const connected = new Promise((resolve) => { opened = resolve; });
  const stop = connect(rep, server, { onState: (open) => open && opened(true), WebSocket });
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

