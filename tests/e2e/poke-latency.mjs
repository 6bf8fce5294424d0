// Measures how long a message takes from one client's mutation to another client's updated
// view, through push, commit, poke and pull: `node tests/e2e/poke-latency.mjs [rounds]`.
// Needs the debug dev server built (`cargo build -p dev-server`).

import { randomUUID } from 'node:crypto';
import { client, until } from './clients.mjs';
import { startServer } from './support.mjs';

const rounds = Number(process.argv[2] || 50);
const server = await startServer();
const space = `latency-${randomUUID()}`;
const writer = client(server.url, space, 'writer');
const reader = client(server.url, space, 'reader');
await Promise.all([writer.connected, reader.connected]);

const times = [];
for (let i = 0; i < rounds; i++) {
  const id = randomUUID();
  const seen = until(reader.rep, (d) => d[id], `message ${i}`);
  const started = performance.now();
  await writer.rep.mutate.createMessage({ id, from: 'writer', content: `#${i}`, order: i });
  await seen;
  times.push(performance.now() - started);
}
await writer.close();
await reader.close();
await server.stop();

times.sort((a, b) => a - b);
const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))].toFixed(1);
console.log(
  `poke latency over ${rounds} rounds (mutation to the other client's view, in-memory store): ` +
    `median ${at(0.5)} ms, p90 ${at(0.9)} ms, min ${times[0].toFixed(1)} ms, max ${times.at(-1).toFixed(1)} ms`,
);
