// Cold start of the release functions, as Lambda starts them: each binary is run by the
// Lambda Runtime API emulator of the test tooling (tests/e2e/lambda-runtime.mjs), on
// DynamoDB Local, beside a hello-world lambda_http binary built by the same command.
// Prints a Markdown table: init (process start to its first request for an event), the
// first invocation, a warm invocation, peak RSS; and the bootstraps' sizes. The functions
// run against DynamoDB Local directly (plain HTTP) and through a TLS front, as AWS serves
// DynamoDB, with the connection warmed up during init and without (DYNAMODB_WARM_UP=false).
//
//   node bench/cold-start.mjs [--runs N] [--lambda-dir target/lambda] [--arm64-dir DIR]
//
// The binaries must be built first (`scripts/bench` does it): cargo lambda build --release
// --bin push --bin pull --bin hello [--lambda-dir DIR].

import { randomUUID } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startFunction } from '../tests/e2e/lambda-runtime.mjs';
import { httpEvent } from '../tests/e2e/apigw-standin.mjs';
import { createTable, functionEnv, root, startDynamoDbLocal, startTlsFront } from '../tests/e2e/support.mjs';

const { values: opts } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    'lambda-dir': { type: 'string', default: 'target/lambda' },
    'arm64-dir': { type: 'string' },
  },
});
const runs = Number(opts.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs ${opts.runs}: a whole number of runs, at least 1`);
const lambdaDir = path.resolve(root, opts['lambda-dir']);
const bootstrap = (dir, bin) => path.join(dir, bin, 'bootstrap');

const request = (route, body) =>
  httpEvent({
    method: 'POST',
    url: new URL(`http://bench/api/replicache/${route}?spaceID=bench-${randomUUID()}`),
    headers: { 'content-type': 'application/json', authorization: 'bench', host: 'bench' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

// One invocation per function that does its real work: a push of one mutation into a fresh
// space (two DynamoDB requests), a first pull of a fresh space (one).
const events = {
  hello: () => request('hello'),
  push: () => {
    const clientID = randomUUID();
    return request('push', {
      pushVersion: 1,
      schemaVersion: '',
      profileID: 'bench',
      clientGroupID: randomUUID(),
      mutations: [{ clientID, id: 1, name: 'createMessage', args: { id: randomUUID(), from: 'bench', content: 'hi', order: 1 }, timestamp: 1 }],
    });
  },
  pull: () => request('pull', { pullVersion: 1, schemaVersion: '', profileID: 'bench', clientGroupID: randomUUID(), cookie: null }),
};

/** Kilobytes of peak resident memory of a live process. */
const peakRssKb = (pid) => Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmHWM:\s+(\d+) kB/m)[1]);

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};

async function timed(f) {
  const start = performance.now();
  const out = await f();
  return [performance.now() - start, out];
}

const dynamodb = await startDynamoDbLocal();
const front = await startTlsFront(Number(new URL(dynamodb.endpoint).port));
try {
  const table = `bench-${randomUUID()}`;
  await createTable(dynamodb.endpoint, table);
  const env = {
    ...functionEnv(dynamodb.endpoint, table),
    RUST_LOG: 'warn',
    // The platform's roots from one bundle file, as on Lambda's Amazon Linux 2023
    // (/etc/pki/tls/certs/ca-bundle.crt), not from a directory of one file per certificate.
    SSL_CERT_FILE: '/etc/ssl/certs/ca-certificates.crt',
    SSL_CERT_DIR: front.env.SSL_CERT_DIR,
  };
  const tlsEnv = { ...env, ...front.env, AWS_ENDPOINT_URL_DYNAMODB: front.endpoint };
  const setups = [
    { bin: 'hello', how: '', env },
    ...['push', 'pull'].flatMap((bin) => [
      { bin, how: 'HTTP', env },
      { bin, how: 'TLS', env: tlsEnv },
      { bin, how: 'TLS, no warm-up', env: { ...tlsEnv, DYNAMODB_WARM_UP: 'false' } },
    ]),
  ];
  // Round by round, every setup once a round, after one round that is not counted: drift
  // (DynamoDB Local's JIT, the machine's other work) then weighs on every row alike.
  const samples = setups.map(() => ({ init: [], first: [], warm: [], rss: [] }));
  for (let round = 0; round <= runs; round++) {
    for (const [i, { bin, env }] of setups.entries()) {
      const f = await startFunction(bin, env, { binary: bootstrap(lambdaDir, bin), quiet: true });
      try {
        const [first, response] = await timed(() => f.invoke(events[bin]()));
        if (response.statusCode !== 200) throw new Error(`${bin} answered ${response.statusCode}: ${response.body}`);
        const [warm] = await timed(() => f.invoke(events[bin]()));
        if (round === 0) continue;
        samples[i].init.push(f.initMs);
        samples[i].first.push(first);
        samples[i].warm.push(warm);
        samples[i].rss.push(peakRssKb(f.pid) / 1024);
      } finally {
        await f.stop();
      }
    }
  }
  const rows = setups.map(({ bin, how }, i) => ({
    bin,
    how,
    ...Object.fromEntries(Object.entries(samples[i]).map(([k, v]) => [k, median(v)])),
  }));
  const hello = rows.find((r) => r.bin === 'hello');
  const mb = (bytes) => (bytes / 1e6).toFixed(2);
  const size = (dir, bin) => {
    try {
      return `${mb(statSync(bootstrap(dir, bin)).size)} MB`;
    } catch {
      return 'not built';
    }
  };
  console.log(`\n### Cold start (release bootstraps, Lambda Runtime API emulator, DynamoDB Local; median of ${runs})\n`);
  console.log('| function | DynamoDB over | init ms | init × hello | first invocation ms | init + first ms | warm invocation ms | peak RSS MB |');
  console.log('|---|---|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.bin} | ${r.how} | ${r.init.toFixed(1)} | ${(r.init / hello.init).toFixed(2)} | ${r.first.toFixed(1)} | ${(r.init + r.first).toFixed(1)} | ${r.warm.toFixed(1)} | ${r.rss.toFixed(1)} |`);
  }
  const arm64Dir = opts['arm64-dir'] && path.resolve(root, opts['arm64-dir']);
  console.log('\n| bootstrap | x86_64 | arm64 |');
  console.log('|---|---:|---:|');
  for (const bin of ['hello', 'push', 'pull', 'poke']) {
    console.log(`| ${bin} | ${size(lambdaDir, bin)} | ${arm64Dir ? size(arm64Dir, bin) : 'not built'} |`);
  }
} finally {
  await front.stop();
  await dynamodb.stop();
}
