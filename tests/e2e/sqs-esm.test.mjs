// The stand-in for Lambda's SQS event source mapping (sqs-esm.mjs), against LocalStack's SQS
// (sqs.mjs) with functions written here in JavaScript: order and exactly-once delivery across
// several function instances, partial batch failures, function errors, a poison message, and
// the stand-in's own checks (against a scripted fake queue, which can break FIFO's promises).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startEventSourceMapping } from './sqs-esm.mjs';
import { startSqs } from './sqs.mjs';

/** Queue visibility timeout in the tests: short, so that a failed batch is back soon. */
const VISIBILITY = 2;

let localstack;

before(async () => {
  localstack = await startSqs({ name: 'sqs-esm.test' });
});

after(async () => {
  await localstack?.stop();
});

const sqs = (...args) => localstack.sqs(...args);
const queue = (options) => localstack.createFifoQueue(`esm-${randomUUID()}`, { visibilityTimeout: VISIBILITY, ...options });

/** Sends `bodies` (`group:index`) in this order, 10 a call; each body is its own dedup id. */
async function send(queueUrl, bodies) {
  for (let i = 0; i < bodies.length; i += 10) {
    const entries = bodies.slice(i, i + 10).map((body, k) => ({
      Id: String(k),
      MessageBody: body,
      MessageGroupId: body.split(':')[0],
      MessageDeduplicationId: body,
    }));
    const answer = await sqs('SendMessageBatch', { QueueUrl: queueUrl, Entries: entries });
    assert.equal(answer.Failed?.length ?? 0, 0, JSON.stringify(answer.Failed));
  }
}

const bodiesOf = (groups, per) => Array.from({ length: per }, (_, i) => groups.map((g) => `${g}:${i}`)).flat();

/** Drains the dead-letter queue: its bodies in the order received. */
async function drain(queueUrl) {
  const bodies = [];
  for (;;) {
    const { Messages: messages = [] } = await sqs('ReceiveMessage', { QueueUrl: queueUrl, MaxNumberOfMessages: 10, MessageSystemAttributeNames: ['MessageGroupId'] });
    if (!messages.length) return bodies;
    for (const m of messages) {
      assert.equal(m.Attributes.MessageGroupId, m.Body.split(':')[0], 'a dead letter keeps its group');
      bodies.push(m.Body);
    }
    await sqs('DeleteMessageBatch', { QueueUrl: queueUrl, Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })) });
  }
}

/**
 * A function that commits records in order and records what it saw: `deliveries` (per group,
 * `index#receiveCount` of every record handed to it), `committed` (per group, the indexes), the
 * largest number of invocations at once, and the events. `fail(record, invocation)` true makes
 * it fail that record, and so the rest of its group in the batch, as FIFO requires.
 */
function committer({ fail = () => false } = {}) {
  const deliveries = {};
  const committed = {};
  const events = [];
  const busy = new Set(); // groups inside an invocation now
  const overlaps = [];
  let running = 0;
  let invocations = 0;
  const state = { deliveries, committed, events, overlaps, mostAtOnce: 0 };
  state.invoker = async (event) => {
    invocations += 1;
    const invocation = invocations;
    running += 1;
    state.mostAtOnce = Math.max(state.mostAtOnce, running);
    events.push(event);
    const groups = new Set(event.Records.map((r) => r.attributes.MessageGroupId));
    for (const g of groups) {
      if (busy.has(g)) overlaps.push(g);
      busy.add(g);
    }
    try {
      // The function's work: gives the other pollers time to receive meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 20));
      const failedGroups = new Set();
      const batchItemFailures = [];
      for (const record of event.Records) {
        const group = record.attributes.MessageGroupId;
        const index = Number(record.body.split(':')[1]);
        (deliveries[group] ??= []).push(`${index}#${record.attributes.ApproximateReceiveCount}`);
        if (failedGroups.has(group) || fail(record, invocation)) {
          failedGroups.add(group);
          batchItemFailures.push({ itemIdentifier: record.messageId });
        } else {
          (committed[group] ??= []).push(index);
        }
      }
      return { batchItemFailures };
    } finally {
      for (const g of groups) busy.delete(g);
      running -= 1;
    }
  };
  return state;
}

const range = (n, from = 0) => Array.from({ length: n - from }, (_, i) => i + from);

test('8 groups reach 3 function instances in order, each message once', async () => {
  const { queueUrl, queueArn } = await queue();
  const groups = range(8).map((g) => `g${g}`);
  const PER = 20;
  await send(queueUrl, bodiesOf(groups, PER));
  const fn = committer();
  const esm = await startEventSourceMapping({ sqs, queueUrl, queueArn, invokers: [fn.invoker, fn.invoker, fn.invoker] });
  await esm.idle();
  await esm.stop();

  for (const g of groups) {
    assert.deepEqual(fn.committed[g], range(PER), `group ${g} committed in order, once each`);
    assert.deepEqual(fn.deliveries[g], range(PER).map((i) => `${i}#1`), `group ${g} delivered once each`);
  }
  assert.deepEqual(fn.overlaps, [], 'no group was in two invocations at once');
  assert.deepEqual(esm.violations, []);
  assert.ok(fn.mostAtOnce >= 2, `the instances ran at once (at most ${fn.mostAtOnce})`);
  const sizes = fn.events.map((e) => e.Records.length);
  assert.ok(sizes.every((n) => n <= 10) && sizes.some((n) => n > 1), `batches of up to 10 (${sizes})`);
  assert.equal(esm.stats.records, groups.length * PER);
  assert.equal(esm.stats.deleted, groups.length * PER);
  assert.equal(esm.stats.requests.DeleteMessageBatch, esm.stats.batches, 'one delete a batch');
  assert.equal(esm.stats.requests.ChangeMessageVisibilityBatch, 0);
});

test('the event has the shape of Lambda\'s SQS event (aws_lambda_events SqsEvent)', async () => {
  const { queueUrl, queueArn } = await queue();
  await sqs('SendMessage', {
    QueueUrl: queueUrl,
    MessageBody: 'a:0',
    MessageGroupId: 'a',
    MessageDeduplicationId: 'a:0',
    MessageAttributes: { kind: { DataType: 'String', StringValue: 'push' } },
  });
  const fn = committer();
  const esm = await startEventSourceMapping({ endpoint: localstack.endpoint, queueUrl, queueArn, invokers: [fn.invoker] });
  await esm.idle();
  await esm.stop();

  assert.equal(fn.events.length, 1);
  const [record] = fn.events[0].Records;
  assert.deepEqual(Object.keys(fn.events[0]), ['Records']);
  assert.match(record.messageId, /^[0-9a-f-]{36}$/);
  assert.equal(typeof record.receiptHandle, 'string');
  assert.equal(record.body, 'a:0');
  assert.match(record.md5OfBody, /^[0-9a-f]{32}$/);
  assert.match(record.md5OfMessageAttributes, /^[0-9a-f]{32}$/);
  assert.equal(record.eventSource, 'aws:sqs');
  assert.equal(record.eventSourceARN, queueArn);
  assert.equal(record.awsRegion, 'us-east-1');
  assert.deepEqual(record.messageAttributes, { kind: { stringValue: 'push', binaryValue: undefined, stringListValues: [], binaryListValues: [], dataType: 'String' } });
  for (const name of ['ApproximateReceiveCount', 'SentTimestamp', 'SenderId', 'ApproximateFirstReceiveTimestamp', 'SequenceNumber', 'MessageGroupId', 'MessageDeduplicationId']) {
    assert.equal(typeof record.attributes[name], 'string', `attribute ${name}`);
  }
  assert.equal(record.attributes.MessageGroupId, 'a');
  assert.equal(record.attributes.MessageDeduplicationId, 'a:0');
  assert.equal(record.attributes.ApproximateReceiveCount, '1');
});

test('a partial batch failure: the failed suffix of a group comes back in order after the visibility timeout; the rest is deleted', async () => {
  const { queueUrl, queueArn } = await queue();
  await send(queueUrl, bodiesOf(['a', 'b'], 5));
  // a:2 fails on its first delivery; a:3 and a:4 follow it as the rest of the group.
  const fn = committer({ fail: (r) => r.body === 'a:2' && r.attributes.ApproximateReceiveCount === '1' });
  const esm = await startEventSourceMapping({ sqs, queueUrl, queueArn, invokers: [fn.invoker] });
  await esm.idle();
  await esm.stop();

  const first = fn.events[0].Records;
  assert.equal(first.length, 10, 'the first batch took all ten (the test needs it)');
  assert.deepEqual(new Set(first.map((r) => r.attributes.MessageGroupId)), new Set(['a', 'b']), 'a batch holds several groups');
  assert.deepEqual(fn.deliveries.a, ['0#1', '1#1', '2#1', '3#1', '4#1', '2#2', '3#2', '4#2']);
  assert.deepEqual(fn.deliveries.b, range(5).map((i) => `${i}#1`));
  assert.deepEqual(fn.committed.a, range(5));
  assert.deepEqual(fn.committed.b, range(5));
  assert.equal(esm.stats.failedRecords, 3);
  assert.equal(esm.stats.deleted, 10);
  assert.deepEqual(esm.violations, []);
});

test('a function error: nothing is deleted, the whole batch comes back after the visibility timeout', async () => {
  const { queueUrl, queueArn } = await queue();
  await send(queueUrl, bodiesOf(['a', 'b'], 3));
  const fn = committer();
  let calls = 0;
  const crashing = async (event) => {
    calls += 1;
    if (calls === 1) throw new Error('the function crashed');
    return fn.invoker(event);
  };
  const esm = await startEventSourceMapping({ sqs, queueUrl, queueArn, invokers: [crashing] });
  await esm.idle();
  await esm.stop();

  assert.equal(esm.stats.functionErrors, 1);
  assert.equal(esm.stats.failedRecords, 6);
  for (const g of ['a', 'b']) {
    assert.deepEqual(fn.deliveries[g], range(3).map((i) => `${i}#2`), `group ${g}: every message back, in order, received twice`);
    assert.deepEqual(fn.committed[g], range(3));
  }
  assert.equal(esm.stats.deleted, 6);
  assert.deepEqual(esm.violations, []);
});

test('a poison message goes to the dead-letter queue after maxReceiveCount (its batch-mates of its group with it); the group flows again', async () => {
  const maxReceiveCount = 3;
  const { queueUrl, queueArn, dlqUrl } = await queue({ maxReceiveCount });
  await send(queueUrl, ['p:0', 'p:1', 'q:0', 'p:2', 'q:1', 'q:2']);
  const fn = committer({ fail: (r) => r.body === 'p:1' });
  const esm = await startEventSourceMapping({ sqs, queueUrl, queueArn, invokers: [fn.invoker, fn.invoker], retryAfterSeconds: 1 });
  await esm.idle();
  // The space's later pushes, sent once the poison is gone, are committed.
  await send(queueUrl, ['p:3', 'p:4']);
  await esm.idle();
  await esm.stop();

  // Lambda fails the rest of a group's batch with its failed message, so a message that shared
  // the poison's batches (p:2 here, when a receive returned it with p:1) is charged a receive each
  // time and follows the poison into the dead-letter queue, in order.
  const dead = await drain(dlqUrl);
  assert.ok(dead.length >= 1 && dead.length <= 2, `p:1, maybe p:2, in the dead-letter queue (${dead})`);
  assert.deepEqual(dead, range(dead.length + 1, 1).map((i) => `p:${i}`));
  assert.deepEqual(fn.deliveries.p.filter((d) => d.startsWith('1#')), range(maxReceiveCount + 1, 1).map((n) => `1#${n}`), 'the poison, delivered maxReceiveCount times');
  assert.deepEqual(fn.committed.p, [0, ...range(3, dead.length + 1), 3, 4]);
  assert.deepEqual(fn.committed.q, [0, 1, 2]);
  assert.deepEqual(esm.violations, []);
});

test('transient failures and crashes at random: every group still committed in order, each message once', async () => {
  const { queueUrl, queueArn } = await queue();
  const groups = range(8).map((g) => `g${g}`);
  const PER = 10;
  await send(queueUrl, bodiesOf(groups, PER));
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const fn = committer({ fail: () => random() < 0.04 });
  const crashy = async (event) => {
    if (random() < 0.05) throw new Error('the function crashed');
    return fn.invoker(event);
  };
  const esm = await startEventSourceMapping({ sqs, queueUrl, queueArn, invokers: [crashy, crashy, crashy], retryAfterSeconds: 1 });
  await esm.idle();
  await esm.stop();

  for (const g of groups) assert.deepEqual(fn.committed[g], range(PER), `group ${g}`);
  assert.ok(esm.stats.failedRecords > 0, 'some records failed (the test needs it)');
  assert.deepEqual(fn.overlaps, []);
  assert.deepEqual(esm.violations, []);
});

/**
 * A scripted queue: ReceiveMessage answers the `batches` in turn, then nothing. A message is
 * gone once deleted or its visibility changed (so run the stand-in with `retryAfterSeconds`),
 * which its attributes count. The calls made are in `calls`.
 */
function fakeQueue(batches) {
  const calls = [];
  const script = [...batches];
  const out = new Set(); // receipt handles handed out and not settled
  const fake = async (operation, body, { signal } = {}) => {
    calls.push({ operation, body });
    switch (operation) {
      case 'GetQueueAttributes':
        return {
          Attributes: {
            VisibilityTimeout: '30',
            ApproximateNumberOfMessages: String(script.flat().length),
            ApproximateNumberOfMessagesNotVisible: String(out.size),
            ApproximateNumberOfMessagesDelayed: '0',
          },
        };
      case 'ReceiveMessage':
        if (script.length) {
          const messages = script.shift();
          for (const m of messages) out.add(m.ReceiptHandle);
          return { Messages: messages };
        }
        // An empty long poll, cut short by stop().
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, 50);
          signal?.addEventListener('abort', () => { clearTimeout(timer); resolve(); });
        });
        return {};
      case 'DeleteMessageBatch':
      case 'ChangeMessageVisibilityBatch':
        for (const e of body.Entries) out.delete(e.ReceiptHandle);
        return { Successful: body.Entries.map((e) => ({ Id: e.Id })) };
      default:
        throw new Error(`the fake queue has no ${operation}`);
    }
  };
  const settled = (operation) => calls.filter((c) => c.operation === operation).flatMap((c) => c.body.Entries.map((e) => e.ReceiptHandle));
  return { fake, deleted: () => settled('DeleteMessageBatch'), retried: () => settled('ChangeMessageVisibilityBatch') };
}

const message = (group, id) => ({ MessageId: id, ReceiptHandle: `rh-${id}`, Body: id, MD5OfBody: '', Attributes: { MessageGroupId: group, ApproximateReceiveCount: '1' } });

test('the stand-in reports a group handed out while a batch of it is in flight, and failures that are not a suffix', async () => {
  const queue = fakeQueue([[message('g', 'm1')], [message('g', 'm2')], [message('h', 'h1'), message('h', 'h2')]]);
  let opened;
  const gate = new Promise((resolve) => { opened = resolve; });
  let calls = 0;
  const invoker = async (event) => {
    calls += 1;
    if (calls === 1) await gate; // holds m1 in flight until m2 was received
    else opened();
    const h1 = event.Records.find((r) => r.messageId === 'h1');
    return { batchItemFailures: h1 ? [{ itemIdentifier: 'h1' }] : [] };
  };
  const esm = await startEventSourceMapping({ sqs: queue.fake, queueUrl: 'q', queueArn: 'arn', invokers: [invoker, invoker], retryAfterSeconds: 1 });
  await esm.idle();
  await esm.stop();

  assert.equal(esm.violations.length, 2, esm.violations.join('\n'));
  assert.match(esm.violations.join('\n'), /group g received \(m\d#1\) while a batch of it \(m\d#1\) was in flight/);
  assert.match(esm.violations.join('\n'), /group h: the failures reported are not a suffix/);
});

test('the stand-in settles by Lambda\'s rules: null or empty answers delete all; a malformed one fails the whole batch; a listed one is retried', async () => {
  const answers = [null, {}, { batchItemFailures: null }, { batchItemFailures: [] }, { batchItemFailures: [{ itemIdentifier: 'x' }] },
    { batchItemFailures: [{ itemIdentifier: '' }] }, { batchItemFailures: [{ id: 'm6' }] }, { batchItemFailures: [{ itemIdentifier: 'm7' }] }];
  const queue = fakeQueue(answers.map((_, i) => [message(`g${i}`, `m${i}`)]));
  let i = 0;
  const esm = await startEventSourceMapping({ sqs: queue.fake, queueUrl: 'q', queueArn: 'arn', invokers: [async () => answers[i++]], retryAfterSeconds: 1 });
  await esm.idle();
  await esm.stop();

  assert.deepEqual(queue.deleted(), ['rh-m0', 'rh-m1', 'rh-m2', 'rh-m3']);
  assert.deepEqual(queue.retried(), ['rh-m4', 'rh-m5', 'rh-m6', 'rh-m7']);
  assert.equal(esm.stats.malformedResponses, 3, 'x, "" and a missing itemIdentifier');
  assert.equal(esm.stats.failedRecords, 4, 'three malformed answers and m7, failed by its own');
  assert.deepEqual(esm.violations, []);
});
