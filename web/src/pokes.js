// Pokes: the server tells us, over a WebSocket, that something changed in our space, and we
// pull. The dev server and the deployed API Gateway WebSocket API both send the text `poke`;
// only the URL differs, so a deployment swaps `pokeURL` and nothing else.

/** The poke WebSocket of `spaceID` on the server that served this page. */
export function pokeURL(spaceID, base = window.location) {
  const scheme = base.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${base.host}/api/replicache/poke?spaceID=${encodeURIComponent(spaceID)}`;
}

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 10_000;

/**
 * Keeps a WebSocket to `url` open and calls `onPoke()` on every `poke` message and when it
 * first opens (something may have changed since the app's first pull). When it opens again
 * after a close, calls `onReconnect()` instead (default `onPoke`): the server is back and
 * pokes sent meanwhile are lost. Reconnects with a backoff of 500 ms doubling to 10 s, and
 * at once when the browser comes back online. `onState(open)` reports the connection.
 * Returns a function that stops it all.
 */
export function listenForPokes(url, { onPoke, onReconnect = onPoke, onState = () => {} }) {
  let socket = null;
  let retryMs = FIRST_RETRY_MS;
  let timer = null;
  let stopped = false;
  let opened = false;

  const connect = () => {
    timer = null;
    if (stopped) return;
    socket = new WebSocket(url);
    socket.addEventListener('open', () => {
      retryMs = FIRST_RETRY_MS;
      onState(true);
      if (opened) onReconnect();
      else onPoke();
      opened = true;
    });
    socket.addEventListener('message', (event) => {
      if (event.data === 'poke') onPoke();
    });
    socket.addEventListener('close', () => {
      socket = null;
      onState(false);
      if (stopped) return;
      timer = setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
    });
    // An error is always followed by a close, which schedules the retry.
  };

  const reconnectNow = () => {
    if (timer === null) return; // connected or connecting
    clearTimeout(timer);
    retryMs = FIRST_RETRY_MS;
    connect();
  };
  window.addEventListener('online', reconnectNow);

  connect();

  return () => {
    stopped = true;
    window.removeEventListener('online', reconnectNow);
    if (timer !== null) clearTimeout(timer);
    socket?.close();
  };
}
