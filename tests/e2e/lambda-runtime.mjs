// A Lambda Runtime API emulator: runs a function's real binary (built with lambda_runtime)
// and hands it events one at a time, as the Lambda service, `cargo lambda watch` and
// `sam local` do. Implements the runtime's side of the API: /runtime/invocation/next, the
// response and error posts, and the init error.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { root } from './support.mjs';

const API = '/2018-06-01/runtime';

/**
 * Starts function `bin` (target/debug/<bin>, or `binary`) with `env` over `environment`
 * (this process's, by default); `quiet` drops its stdout (its metrics). Returns `invoke(event)`
 * (resolves with the function's JSON response), the time the function took to ask for its
 * first event (`ready`, its init), and `stop()`.
 */
export async function startFunction(bin, env = {}, { binary = path.join(root, 'target/debug', bin), environment = process.env, quiet = false } = {}) {
  // A missing binary would never ask for an event: say so instead of waiting forever.
  if (!existsSync(binary)) throw new Error(`${binary} is missing: cargo build -p ${bin}`);
  const queue = []; // events waiting for the function
  const waiting = []; // the function's /next requests waiting for an event
  const pending = new Map(); // request id -> {resolve, reject}
  let initError = null;
  let readyAt;
  let firstNext;
  const firstAsk = new Promise((resolve) => { firstNext = resolve; });

  const deliver = () => {
    while (queue.length && waiting.length) {
      const { id, event } = queue.shift();
      const res = waiting.shift();
      res.writeHead(200, {
        'content-type': 'application/json',
        'lambda-runtime-aws-request-id': id,
        'lambda-runtime-deadline-ms': String(Date.now() + 30_000),
        'lambda-runtime-invoked-function-arn': `arn:aws:lambda:us-east-1:123456789012:function:${bin}`,
        'lambda-runtime-trace-id': `Root=1-${Date.now().toString(16)}-${randomUUID().replaceAll('-', '').slice(0, 24)}`,
      });
      res.end(JSON.stringify(event));
    }
  };

  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const url = req.url;
      if (req.method === 'GET' && url === `${API}/invocation/next`) {
        if (readyAt === undefined) {
          readyAt = performance.now();
          firstNext();
        }
        waiting.push(res);
        deliver();
        return;
      }
      const m = url.match(/^\/2018-06-01\/runtime\/invocation\/([^/]+)\/(response|error)$/);
      if (req.method === 'POST' && m) {
        const p = pending.get(m[1]);
        pending.delete(m[1]);
        res.writeHead(202).end();
        if (!p) return;
        if (m[2] === 'response') p.resolve(JSON.parse(body));
        else p.reject(new Error(`${bin} failed: ${body}`));
        return;
      }
      if (req.method === 'POST' && url === `${API}/init/error`) {
        initError = body;
        res.writeHead(202).end();
        return;
      }
      res.writeHead(404).end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  const started = performance.now();
  const child = spawn(binary, [], {
    env: {
      ...environment,
      RUST_LOG: process.env.RUST_LOG || 'warn',
      AWS_LAMBDA_RUNTIME_API: `127.0.0.1:${port}`,
      AWS_LAMBDA_FUNCTION_NAME: bin,
      AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '256',
      AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${bin}`,
      AWS_LAMBDA_LOG_STREAM_NAME: 'local',
      ...env,
    },
    stdio: ['ignore', quiet ? 'ignore' : 'inherit', 'inherit'],
  });
  let exitCode = null;
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => {
    exitCode = signal ?? code;
    // As Lambda answers an invocation whose runtime died (Runtime.ExitError): at once, as
    // failed, and so is every event it had not taken yet.
    const why = new Error(`${bin} exited (${exitCode}) before answering`);
    for (const p of pending.values()) p.reject(why);
    pending.clear();
    queue.length = 0;
    resolve(code);
  }));
  // Ready when it first asks for an event; an init failure ends the process instead.
  await Promise.race([
    firstAsk,
    exited.then((code) => { throw new Error(`${bin} exited (${code}) during init: ${initError ?? ''}`); }),
  ]);

  return {
    /** Milliseconds from the process start to its first request for an event. */
    initMs: readyAt - started,
    pid: child.pid,
    invoke(event) {
      const id = randomUUID();
      if (exitCode !== null) return Promise.reject(new Error(`${bin} exited (${exitCode})`));
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        queue.push({ id, event });
        deliver();
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      for (const res of waiting.splice(0)) res.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
