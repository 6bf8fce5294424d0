// Pokes: the server tells us, over a WebSocket, that something changed in our space, and we
// pull. The same code serves the dev server and a deployed stack (API Gateway's WebSocket
// API): both take a short-lived ticket (from `ticketURL`, for the user `auth` names) in the
// connection URL, and both send the text `poke`.

/**
 * The endpoints of `spaceID`. `api` is the HTTP API's base URL: a deployed stack's `ApiUrl`
 * output, or the dev server's URL (empty: the page's own server). `ws` is the poke
 * WebSocket's URL: a deployed stack's `PokeURL` output; when empty, the dev server's
 * WebSocket at `api`, or at the page's own server (`base`, default `location`).
 *
 * @param {string} spaceID
 * @param {{api?: string, ws?: string, base?: {protocol: string, host: string} | null}} [options]
 * @returns {{pushURL: string, pullURL: string, ticketURL: string, pokeURL: string}}
 */
export function endpoints(spaceID, { api = '', ws = '', base = globalThis.location } = {}) {
  const query = `spaceID=${encodeURIComponent(spaceID)}`;
  const root = (api ?? '').replace(/\/+$/, '');
  return {
    pushURL: `${root}/api/replicache/push?${query}`,
    pullURL: `${root}/api/replicache/pull?${query}`,
    ticketURL: `${root}/api/replicache/poke-ticket?${query}`,
    pokeURL: ws || `${devServerOrigin(root, base)}/api/replicache/poke`,
  };
}

/** The dev server's WebSocket origin: `api`'s (http → ws, https → wss), else the page's. */
function devServerOrigin(api, base) {
  if (api) return api.replace(/^http/, 'ws');
  if (!base?.host) {
    throw new Error('endpoints: outside a page, give `api` (and `ws` for a deployed stack)');
  }
  return `${base.protocol === 'https:' ? 'wss:' : 'ws:'}//${base.host}`;
}

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 10_000;
/** API Gateway closes a WebSocket idle for 10 minutes: say something every 5. */
export const KEEP_ALIVE_MS = 5 * 60_000;
/** API Gateway closes every WebSocket after 2 hours: reconnect on our own terms before. */
export const RECONNECT_AFTER_MS = 110 * 60_000;

/**
 * Keeps a poke WebSocket of `spaceID` open and calls `onPoke()` on every `poke` message and
 * when it first opens (something may have changed since the app's first pull). When it opens
 * again after a close, calls `onReconnect()` instead (default `onPoke`): pokes sent meanwhile
 * are lost. Each connection takes a fresh ticket, fetched from `ticketURL` with the
 * `Authorization` header `auth` (a string, or a function returning one). Reconnects with a
 * backoff of 500 ms doubling to 10 s, at once when the browser comes back online, and by
 * itself before API Gateway's 2-hour limit; sends a keep-alive every 5 minutes.
 * `onState(open)` reports the connection. Returns a function that stops it all.
 * `WebSocket` and `fetch` default to the globals (in Node < 22, pass the `ws` package's).
 *
 * @param {{spaceID: string, ticketURL: string, pokeURL: string, auth?: string | null | (() => (string | null | undefined | Promise<string | null | undefined>))}} target
 * @param {{onPoke: () => void, onReconnect?: () => void, onState?: (open: boolean) => void, WebSocket?: any, fetch?: any}} handlers
 * @returns {() => void} stops listening: closes the socket and cancels any reconnect
 */
export function listenForPokes(
  { spaceID, ticketURL, pokeURL, auth },
  { onPoke, onReconnect = onPoke, onState = () => {}, WebSocket = globalThis.WebSocket, fetch = globalThis.fetch } = {},
) {
  let socket = null;
  let retryMs = FIRST_RETRY_MS;
  let timer = null;
  let stopped = false;
  let opened = false;
  const win = typeof window === 'undefined' ? null : window;

  const retry = () => {
    if (stopped) return;
    timer = setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
  };

  async function ticket() {
    const authorization = typeof auth === 'function' ? await auth() : auth;
    const response = await fetch(ticketURL, {
      method: 'POST',
      headers: authorization ? { authorization } : {},
    });
    if (response.status !== 200) throw new Error(`poke ticket: ${response.status}`);
    return (await response.json()).ticket;
  }

  async function connect() {
    timer = null;
    if (stopped) return;
    let current;
    try {
      const t = await ticket();
      if (stopped) return;
      const sep = pokeURL.includes('?') ? '&' : '?';
      current = new WebSocket(`${pokeURL}${sep}spaceID=${encodeURIComponent(spaceID)}&ticket=${encodeURIComponent(t)}`);
    } catch {
      retry();
      return;
    }
    socket = current;
    let keepAlive = null;
    let renew = null;
    current.addEventListener('open', () => {
      retryMs = FIRST_RETRY_MS;
      onState(true);
      if (opened) onReconnect();
      else onPoke();
      opened = true;
      // A message API Gateway answers without invoking anything (the `ping` route).
      keepAlive = setInterval(() => current.send('{"action":"ping"}'), KEEP_ALIVE_MS);
      renew = setTimeout(() => current.close(), RECONNECT_AFTER_MS);
    });
    current.addEventListener('message', (event) => {
      if (event.data === 'poke' || event.data?.toString?.() === 'poke') onPoke();
    });
    current.addEventListener('close', () => {
      clearInterval(keepAlive);
      clearTimeout(renew);
      if (socket === current) socket = null;
      onState(false);
      retry();
    });
    // An error is always followed by a close, which schedules the retry.
    current.addEventListener('error', () => {});
  }

  const reconnectNow = () => {
    if (timer === null) return; // connected or connecting
    clearTimeout(timer);
    retryMs = FIRST_RETRY_MS;
    connect();
  };
  win?.addEventListener('online', reconnectNow);

  connect();

  return () => {
    stopped = true;
    win?.removeEventListener('online', reconnectNow);
    if (timer !== null) clearTimeout(timer);
    socket?.close();
  };
}
