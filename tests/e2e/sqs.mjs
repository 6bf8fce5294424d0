// LocalStack's SQS for the end-to-end tests: started on the host (no Docker) from the venv that
// tests/sqs/install.sh makes, alone on a free loopback port, and spoken to over SQS's JSON
// protocol with `fetch` (no SDK). Where LocalStack departs from SQS: docs/testing.md.
//
// Run as a program (`node tests/e2e/sqs.mjs`), for a program in another language such as the
// benchmark: prints `AWS_ENDPOINT_URL_SQS=<endpoint>` once LocalStack answers, and stops it on
// SIGTERM or SIGINT.

import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, root } from './support.mjs';

const REGION = 'us-east-1';
const cacheRoot = path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'replicache-dynamodb');
/** The venv tests/sqs/install.sh fills (same variable, same default). */
const venv = process.env.LOCALSTACK_VENV || path.join(cacheRoot, 'localstack-venv');
/**
 * LocalStack's cache files (the service catalog, the TLS certificate it makes), kept across
 * runs: without them a start takes ~12 s and ~500 MB instead of ~5 s and ~130 MB.
 */
const sharedCache = path.join(cacheRoot, 'localstack-cache');
/** Where LocalStack keeps its cache under FILESYSTEM_ROOT. */
const CACHE_IN_STATE = 'fs/var/lib/localstack/cache';

/**
 * The environment a Rust function needs to reach the SQS at `endpoint` (the AWS SDK reads
 * AWS_ENDPOINT_URL_SQS; region and credentials are dummies LocalStack only reads the shape of).
 */
export function sqsFunctionEnv(endpoint) {
  return {
    AWS_ENDPOINT_URL_SQS: endpoint,
    AWS_REGION: REGION,
    AWS_ACCESS_KEY_ID: 'local',
    AWS_SECRET_ACCESS_KEY: 'local',
  };
}

/**
 * One SQS API call over the JSON protocol at `endpoint`, unsigned (LocalStack reads region and
 * account from the Authorization header's shape, not its signature). Rejects with the error's
 * `code` (e.g. `QueueDoesNotExist`) on an error answer, and after `timeoutMs` (default: the
 * long poll's WaitTimeSeconds plus 10 s) or when `signal` aborts.
 */
export async function sqsCall(endpoint, operation, body = {}, { signal, timeoutMs } = {}) {
  const limit = timeoutMs ?? ((body.WaitTimeSeconds ?? 0) + 10) * 1000;
  const signals = [AbortSignal.timeout(limit), ...(signal ? [signal] : [])];
  const response = await fetch(endpoint, {
    method: 'POST',
    signal: AbortSignal.any(signals),
    headers: {
      'content-type': 'application/x-amz-json-1.0',
      'x-amz-target': `AmazonSQS.${operation}`,
      authorization: `AWS4-HMAC-SHA256 Credential=local/20260101/${REGION}/sqs/aws4_request, SignedHeaders=host, Signature=00`,
    },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  const answer = text ? JSON.parse(text) : {};
  if (!response.ok) {
    const error = new Error(`SQS ${operation}: ${response.status} ${text}`);
    error.code = String(answer.__type ?? '').split('#').pop();
    throw error;
  }
  return answer;
}

/** Copies the files of directory `from` that `to` lacks into `to`, each by an atomic rename. */
function copyMissing(from, to) {
  if (!existsSync(from)) return;
  mkdirSync(to, { recursive: true });
  for (const name of readdirSync(from)) {
    const target = path.join(to, name);
    if (existsSync(target)) continue;
    const partial = `${target}.${process.pid}.partial`;
    copyFileSync(path.join(from, name), partial);
    renameSync(partial, target);
  }
}

/** The last lines of file `file`, for an error message. */
function tail(file, lines = 20) {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Starts LocalStack with SQS alone on a free port of 127.0.0.1; its output goes to
 * tests/artifacts/<name>.log. Each start has a state directory of its own (seeded from the
 * shared cache, so that test files may run at once) that `stop()` deletes. Rejects with the
 * log's tail if it is not answering after `timeoutMs`.
 *
 * Returns `{ endpoint, env, sqs(operation, body, options), createFifoQueue(name, options), stop() }`;
 * `env` is `sqsFunctionEnv(endpoint)`.
 */
export async function startSqs({ name = 'localstack', timeoutMs = 60_000 } = {}) {
  const python = path.join(venv, 'bin/python');
  if (!existsSync(python)) throw new Error(`LocalStack is not installed in ${venv}: run tests/sqs/install.sh`);
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const state = mkdtempSync(path.join(os.tmpdir(), 'localstack-'));
  copyMissing(sharedCache, path.join(state, CACHE_IN_STATE));
  const logs = path.join(root, 'tests/artifacts');
  mkdirSync(logs, { recursive: true });
  const logFile = path.join(logs, `${name}.log`);
  const log = openSync(logFile, 'w');
  const child = spawn(python, ['-m', 'localstack.runtime.main'], {
    cwd: state,
    stdio: ['ignore', log, log],
    env: {
      ...process.env,
      // Loopback only, and queue URLs on this address (`path`: not *.localstack.cloud names,
      // which need public DNS).
      GATEWAY_LISTEN: `127.0.0.1:${port}`,
      LOCALSTACK_HOST: `127.0.0.1:${port}`,
      SQS_ENDPOINT_STRATEGY: 'path',
      SERVICES: 'sqs',
      EAGER_SERVICE_LOADING: '1',
      // This machine has /.dockerenv: without this LocalStack writes to /var/lib/localstack.
      OVERRIDE_IN_DOCKER: '0',
      // No DNS server of its own (it looks for an upstream resolver: 13 s, 550 MB), no analytics,
      // no certificate download.
      DNS_ADDRESS: '0',
      DISABLE_EVENTS: '1',
      SKIP_SSL_CERT_DOWNLOAD: '1',
      LOCALSTACK_VOLUME_DIR: path.join(state, 'volume'),
      FILESYSTEM_ROOT: path.join(state, 'fs'),
    },
  });
  // A test process that dies without stop() must not leave LocalStack running.
  const killOnExit = () => {
    child.kill('SIGKILL');
    rmSync(state, { recursive: true, force: true });
  };
  process.once('exit', killOnExit);
  let exited = null;
  const exit = new Promise((resolve) => child.once('exit', (code, signal) => {
    exited = signal ?? code;
    resolve();
  }));

  const stop = async () => {
    process.off('exit', killOnExit);
    if (exited === null) {
      child.kill('SIGTERM');
      const killed = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exit;
      clearTimeout(killed);
    }
    rmSync(state, { recursive: true, force: true });
  };

  const sqs = (operation, body, options) => sqsCall(endpoint, operation, body, options);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await sqs('ListQueues', {}, { timeoutMs: 2_000 });
      break;
    } catch {
      // Not listening yet, or not routing yet (early requests may log a parse error).
    }
    if (exited !== null || Date.now() > deadline) {
      await stop();
      const why = exited !== null ? `exited (${exited})` : `did not answer within ${timeoutMs / 1000} s`;
      throw new Error(`LocalStack ${why} on ${endpoint}; ${logFile} ends:\n${tail(logFile)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  copyMissing(path.join(state, CACHE_IN_STATE), sharedCache);

  /**
   * Creates FIFO queue `name` (".fifo" is added if missing) with `visibilityTimeout` seconds
   * and, given `maxReceiveCount`, a FIFO dead-letter queue `<name>-dlq.fifo` behind it.
   * `attributes` adds queue attributes (strings, as SQS takes them).
   */
  async function createFifoQueue(queueName, { visibilityTimeout = 30, maxReceiveCount, attributes = {} } = {}) {
    const base = queueName.replace(/\.fifo$/, '');
    const arnOf = async (url) => (await sqs('GetQueueAttributes', { QueueUrl: url, AttributeNames: ['QueueArn'] })).Attributes.QueueArn;
    let dlqUrl;
    let dlqArn;
    const queueAttributes = { FifoQueue: 'true', VisibilityTimeout: String(visibilityTimeout), ...attributes };
    if (maxReceiveCount !== undefined) {
      dlqUrl = (await sqs('CreateQueue', { QueueName: `${base}-dlq.fifo`, Attributes: { FifoQueue: 'true' } })).QueueUrl;
      dlqArn = await arnOf(dlqUrl);
      queueAttributes.RedrivePolicy = JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount });
    }
    const queueUrl = (await sqs('CreateQueue', { QueueName: `${base}.fifo`, Attributes: queueAttributes })).QueueUrl;
    return { queueUrl, queueArn: await arnOf(queueUrl), dlqUrl, dlqArn };
  }

  return { endpoint, env: sqsFunctionEnv(endpoint), logFile, sqs, createFifoQueue, stop };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const sqs = await startSqs({ name: 'localstack' });
  console.log(`AWS_ENDPOINT_URL_SQS=${sqs.endpoint}`);
  const stop = () => sqs.stop().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
