// The two calls an app makes: the Replicache options that name the server, and `connect`,
// which keeps a Replicache instance up to date (pokes, reconnects, paged syncs).

import { endpoints, listenForPokes } from './pokes.js';
import { completeSyncs } from './sync.js';

/**
 * @typedef {object} Server
 * @property {string} spaceID the space to sync
 * @property {string | (() => (string | null | undefined | Promise<string | null | undefined>))} [auth]
 *   the `Authorization` header: the user's JWT (the user id with the dev server or
 *   `AuthMode=header`); a function is asked for each poke ticket
 * @property {string} [api] the HTTP API's base URL: a deployed stack's `ApiUrl`, or the dev
 *   server's URL; empty or absent: the page's own server
 * @property {string} [ws] the poke WebSocket's URL: a deployed stack's `PokeURL`; absent: the
 *   dev server's, at `api` or at the page's own server
 * @property {{protocol: string, host: string} | null} [base] the page's location (default
 *   `globalThis.location`), used when neither `api` nor `ws` is given
 */

/**
 * The options of `new Replicache()` that point it at the server: `pushURL`, `pullURL` and,
 * when `server.auth` is a string, `auth`. Spread them into the options:
 * `new Replicache({name, mutators, ...replicacheOptions(server)})`.
 *
 * @param {Server} server
 * @returns {{pushURL: string, pullURL: string, auth?: string}}
 */
export function replicacheOptions({ spaceID, auth, api, ws, base }) {
  const { pushURL, pullURL } = endpoints(spaceID, { api, ws, base });
  return typeof auth === 'string' ? { pushURL, pullURL, auth } : { pushURL, pullURL };
}

const ignore = () => {}; // Replicache retries failed requests itself and reports via `online`

/**
 * Keeps `rep` up to date: pulls on every poke of `server.spaceID` (and when the socket first
 * opens), pushes and pulls at once when it reopens after a close (the server is reachable
 * again: no waiting for Replicache's backoff), and pulls again while a paged sync is
 * incomplete. Poke tickets are fetched with `server.auth` when it is a function, else with
 * `rep.auth` as it is at each connection (so a token the app refreshes is used).
 * `options.onState(open)` reports the poke socket; `WebSocket` and `fetch` replace the
 * globals (in Node < 22, pass the `ws` package's `WebSocket`). Returns a function that stops
 * it all (it does not close `rep`).
 *
 * @param {import('../index.js').ConnectableReplicache} rep a Replicache instance
 * @param {Server} server
 * @param {{onState?: (open: boolean) => void, WebSocket?: any, fetch?: any}} [options]
 * @returns {() => void}
 */
export function connect(rep, server, { onState, WebSocket, fetch } = {}) {
  const { spaceID, auth, api, ws, base } = server;
  const { ticketURL, pokeURL } = endpoints(spaceID, { api, ws, base });
  const stopSyncs = completeSyncs(rep);
  const stopPokes = listenForPokes(
    { spaceID, ticketURL, pokeURL, auth: typeof auth === 'function' ? auth : () => rep.auth },
    {
      onPoke: () => rep.pull().catch(ignore),
      onReconnect: () => {
        rep.push({ now: true }).catch(ignore);
        rep.pull({ now: true }).catch(ignore);
      },
      onState,
      WebSocket,
      fetch,
    },
  );
  return () => {
    stopPokes();
    stopSyncs();
  };
}
