// The functions reach DynamoDB over TLS, as on AWS: the SDK's HTTP client is the library's own
// (hyper with rustls on ring, the platform's root certificates). DynamoDB Local speaks plain
// HTTP, so a TLS front with a certificate of a test CA stands in for DynamoDB's endpoint.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startFunction } from './lambda-runtime.mjs';
import { httpEvent } from './apigw-standin.mjs';
import { createTable, functionEnv, startDynamoDbLocal, startTlsFront } from './support.mjs';

let dynamodb;
let front;
let env;

before(async () => {
  dynamodb = await startDynamoDbLocal();
  const table = `tls-${randomUUID()}`;
  await createTable(dynamodb.endpoint, table);
  front = await startTlsFront(Number(new URL(dynamodb.endpoint).port));
  env = functionEnv(front.endpoint, table);
});

after(async () => {
  await front?.stop();
  await dynamodb?.stop();
});

const pull = () =>
  httpEvent({
    method: 'POST',
    url: new URL(`http://tls/api/replicache/pull?spaceID=s-${randomUUID()}`),
    headers: { 'content-type': 'application/json', authorization: 'alice', host: 'tls' },
    body: JSON.stringify({ pullVersion: 1, schemaVersion: '', profileID: 'p', clientGroupID: randomUUID(), cookie: null }),
  });

test('a function trusting the endpoint\'s CA pulls over TLS', async () => {
  const f = await startFunction('pull', { ...env, ...front.env });
  try {
    const response = await f.invoke(pull());
    assert.equal(response.statusCode, 200, response.body);
    assert.ok('cookie' in JSON.parse(response.body), response.body);
  } finally {
    await f.stop();
  }
});

test('a certificate the platform does not trust is refused: the pull answers 503', async () => {
  // The platform's roots only (SSL_CERT_FILE and SSL_CERT_DIR unset): the test CA is not among them.
  const { SSL_CERT_FILE, SSL_CERT_DIR, ...platform } = process.env;
  const f = await startFunction('pull', env, { environment: platform });
  try {
    const response = await f.invoke(pull());
    assert.equal(response.statusCode, 503, response.body);
  } finally {
    await f.stop();
  }
});
