// replicache-dynamodb-client: what a Replicache app needs to talk to a replicache-dynamodb
// server (the dev server or a deployed stack). Types: ../index.d.ts.

export { connect, replicacheOptions } from './connect.js';
export { endpoints, listenForPokes, KEEP_ALIVE_MS, RECONNECT_AFTER_MS } from './pokes.js';
export { completeSyncs, syncComplete, SYNC_KEY } from './sync.js';
