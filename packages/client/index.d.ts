// Types of replicache-dynamodb-client (hand-written; the code is src/*.js).
//
// The Replicache instance is typed structurally (only what the helpers call), so that the
// package does not depend on a particular replicache release; a Replicache 15 instance fits.

/** The `Authorization` header: a string, or a function asked for it when it is needed. */
export type Auth =
  | string
  | null
  | (() => string | null | undefined | Promise<string | null | undefined>);

/** Where a page runs (`window.location` fits). */
export interface PageLocation {
  readonly protocol: string;
  readonly host: string;
}

/** The server and space an app syncs with. */
export interface Server {
  /** The space to sync (the server's `spaceID` query parameter). */
  spaceID: string;
  /**
   * The `Authorization` header: the user's JWT (with the dev server or `AuthMode=header`,
   * the user id). `replicacheOptions` passes a string on as Replicache's `auth`; `connect`
   * fetches poke tickets with a function given here, else with `rep.auth`.
   */
  auth?: Auth;
  /**
   * The HTTP API's base URL: a deployed stack's `ApiUrl` output, or the dev server's URL.
   * Empty or absent: the page's own server.
   */
  api?: string;
  /**
   * The poke WebSocket's URL: a deployed stack's `PokeURL` output. Absent: the dev server's
   * WebSocket, at `api` or at the page's own server.
   */
  ws?: string;
  /** The page's location, used when neither `api` nor `ws` is given (default `location`). */
  base?: PageLocation | null;
}

/** The four URLs of a space. */
export interface Endpoints {
  /** Replicache's `pushURL`. */
  pushURL: string;
  /** Replicache's `pullURL`. */
  pullURL: string;
  /** Where a client gets a one-minute ticket for the poke WebSocket (POST). */
  ticketURL: string;
  /** The poke WebSocket, without its `spaceID` and `ticket` parameters. */
  pokeURL: string;
}

/** What `connect` needs of a Replicache instance (a Replicache 15 instance fits). */
export interface ConnectableReplicache extends SyncingReplicache {
  push(options?: { now?: boolean }): Promise<void>;
  /** Replicache's current `auth`: poke tickets are fetched with it. */
  readonly auth: string;
}

/** What the paged-sync helpers need of a Replicache instance. */
export interface SyncingReplicache {
  subscribe<R>(
    body: (tx: { get(key: string): Promise<unknown> }) => Promise<R>,
    onData: (result: R) => void,
  ): () => void;
  pull(options?: { now?: boolean }): Promise<void>;
}

/** A WebSocket as the browser's, the `ws` package's or Node 22's global one. */
export interface WebSocketLike {
  addEventListener(type: 'open' | 'close' | 'error', listener: () => void): void;
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
  send(data: string): void;
  close(): void;
}

/** A WebSocket constructor (`globalThis.WebSocket`, or the `ws` package's default export). */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** A fetch as the global one: POSTs for a ticket, reads the status and the JSON body. */
export type FetchLike = (
  url: string,
  init: { method: 'POST'; headers: Record<string, string> },
) => Promise<{ status: number; json(): Promise<unknown> }>;

/** Replacements of the globals, where they are missing (Node < 22) or for tests. */
export interface Transport {
  WebSocket?: WebSocketConstructor;
  fetch?: FetchLike;
}

export interface ConnectOptions extends Transport {
  /** Called with `true` when the poke socket opens and `false` when it closes. */
  onState?: (open: boolean) => void;
}

/**
 * The options of `new Replicache()` that point it at the server: `pushURL`, `pullURL` and,
 * when `server.auth` is a string, `auth`. Spread them:
 * `new Replicache({name, mutators, ...replicacheOptions(server)})`.
 */
export function replicacheOptions(server: Server): { pushURL: string; pullURL: string; auth?: string };

/**
 * Keeps `rep` up to date: pulls on every poke (and when the poke socket first opens), pushes
 * and pulls at once when the socket reopens after a close, and pulls again while a paged sync
 * is incomplete. Poke tickets are fetched with `server.auth` when it is a function, else with
 * `rep.auth`. Returns a function that stops it all (it does not close `rep`).
 */
export function connect(rep: ConnectableReplicache, server: Server, options?: ConnectOptions): () => void;

/**
 * The endpoints of `spaceID`, on a deployed stack (`api` = `ApiUrl`, `ws` = `PokeURL`), on a
 * dev server at `api`, or on the page's own server (neither).
 */
export function endpoints(
  spaceID: string,
  options?: { api?: string; ws?: string; base?: PageLocation | null },
): Endpoints;

export interface PokeTarget {
  spaceID: string;
  /** `Endpoints.ticketURL`. */
  ticketURL: string;
  /** `Endpoints.pokeURL`. */
  pokeURL: string;
  /** The `Authorization` header of each ticket request. */
  auth?: Auth;
}

export interface PokeHandlers extends Transport {
  /** On every `poke`, and when the socket first opens. */
  onPoke: () => void;
  /** When the socket opens again after a close (pokes were missed); default `onPoke`. */
  onReconnect?: () => void;
  /** Called with `true` when the socket opens and `false` when it closes. */
  onState?: (open: boolean) => void;
}

/**
 * Keeps a poke WebSocket of the space open, each connection with a fresh ticket; reconnects
 * with a backoff of 500 ms doubling to 10 s, at once when the browser comes back online, and
 * by itself before API Gateway's 2-hour limit; sends a keep-alive every 5 minutes. Returns a
 * function that closes the socket and cancels any reconnect. `connect` uses it.
 */
export function listenForPokes(target: PokeTarget, handlers: PokeHandlers): () => void;

/** How often an open poke socket sends a keep-alive (5 minutes). */
export const KEEP_ALIVE_MS: number;
/** After how long an open poke socket is replaced by a new one (110 minutes). */
export const RECONNECT_AFTER_MS: number;

/** The key the server marks an incomplete (paged) sync with. */
export const SYNC_KEY: 'replicache-dynamodb/sync';

/** Pulls again as long as the server says the sync is incomplete; returns its stop function. `connect` uses it. */
export function completeSyncs(rep: SyncingReplicache): () => void;

/** Resolves once no paged sync is under way (it does not pull: `connect` or `completeSyncs` must run). */
export function syncComplete(rep: SyncingReplicache): Promise<void>;
