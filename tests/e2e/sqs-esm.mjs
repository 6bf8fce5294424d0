// A stand-in for Lambda's SQS event source mapping on a FIFO queue with ReportBatchItemFailures,
// as the Lambda developer guide describes it (services-sqs-scaling, -parameters, -errorhandling):
//
// - One poller per function instance (`invokers`), so at most one batch per instance at a time;
//   each long-polls ReceiveMessage for up to `batchSize` (≤ 10 for FIFO, no batching window).
//   A batch may hold several message groups, each in order. The queue keeps one batch of a
//   group in flight; the stand-in checks that it did (below) instead of relying on it.
// - The function gets an SQS event, the JSON `aws_lambda_events::event::sqs::SqsEvent` parses.
// - Settling: the function failed (invoke rejected) → nothing deleted, the whole batch comes back
//   after the visibility timeout. A response null, `{}`, or with `batchItemFailures` null or [] →
//   all deleted. An `itemIdentifier` empty, null, missing or not a messageId of the batch → the
//   whole batch failed. Otherwise the messages not listed are deleted.
// - Failed messages are left to the queue's visibility timeout, as Lambda leaves them; with
//   `retryAfterSeconds` (≥ 1) they are made visible again after that many seconds instead, so
//   that a test need not wait for a long timeout. Never 0: LocalStack then hands a group to two
//   pollers at once now and then (docs/testing.md), which SQS does not.
//
// Checks, recorded in `violations` so that a test can assert there are none: a group received
// while a batch of it is in flight here and its visibility timeout has not run out (the queue
// broke FIFO's promise); the failures a response reports for a group are not a suffix of that
// group's records in the batch (Lambda would delete the later ones and break the group's order).

import { sqsCall } from './sqs.mjs';

/** Lambda's record of message `m` (SQS JSON protocol) of the queue `queueArn`. */
function toRecord(m, queueArn, region) {
  return {
    messageId: m.MessageId,
    receiptHandle: m.ReceiptHandle,
    body: m.Body,
    attributes: m.Attributes ?? {},
    messageAttributes: Object.fromEntries(
      Object.entries(m.MessageAttributes ?? {}).map(([key, v]) => [key, {
        stringValue: v.StringValue,
        binaryValue: v.BinaryValue,
        stringListValues: v.StringListValues ?? [],
        binaryListValues: v.BinaryListValues ?? [],
        dataType: v.DataType,
      }]),
    ),
    md5OfBody: m.MD5OfBody,
    md5OfMessageAttributes: m.MD5OfMessageAttributes ?? null,
    eventSource: 'aws:sqs',
    eventSourceARN: queueArn,
    awsRegion: region,
  };
}

const groupOf = (m) => m.Attributes?.MessageGroupId;

/**
 * The messageIds of `messages` a function's `response` failed, by Lambda's rules, and whether
 * the response was malformed (which fails the whole batch).
 */
function failuresOf(response, messages) {
  const all = new Set(messages.map((m) => m.MessageId));
  if (response === null || response === undefined) return { failed: new Set(), malformed: false };
  if (typeof response !== 'object') return { failed: all, malformed: true };
  const items = response.batchItemFailures;
  if (items === null || items === undefined || (Array.isArray(items) && items.length === 0)) {
    return { failed: new Set(), malformed: false };
  }
  if (!Array.isArray(items) || items.some((item) => typeof item?.itemIdentifier !== 'string' || !all.has(item.itemIdentifier))) {
    return { failed: all, malformed: true };
  }
  return { failed: new Set(items.map((item) => item.itemIdentifier)), malformed: false };
}

/** Splits `list` into chunks of 10, the most a batch API call of SQS takes. */
const chunks = (list) => Array.from({ length: Math.ceil(list.length / 10) }, (_, i) => list.slice(i * 10, i * 10 + 10));

/** `promise`, or a rejection after `seconds` (Lambda's function timeout, a function error). */
function withTimeout(promise, seconds) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the function timed out after ${seconds} s`)), seconds * 1000);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** How much earlier than its visibility timeout a queue may show a message again (LocalStack: ±0.5 s). */
const TIMER_SLACK_MS = 1_000;

/**
 * Starts the mapping from the FIFO queue `queueUrl` (ARN `queueArn`) to `invokers`: one per
 * function instance, each `async (event) => response` or an object with such an `invoke` (what
 * lambda-runtime.mjs's startFunction returns). SQS calls go through `sqs(operation, body, options)`
 * (sqs.mjs's startSqs().sqs) or, given `endpoint`, sqs.mjs's sqsCall. An invocation that has not
 * answered after `timeoutSeconds` is a function error, as Lambda's function timeout is (a
 * function process that died mid-batch would otherwise hold its poller forever).
 *
 * Resolves with `{ stats, violations, idle(), stop() }`: `stats` counts batches, records, deletes,
 * failures and SQS requests as they happen; `idle()` resolves when the queue holds no message
 * (visible, in flight or delayed) and no batch is being handled; `stop()` ends the polls and
 * waits for the batches in hand to settle.
 */
export async function startEventSourceMapping({
  sqs: call,
  endpoint,
  queueUrl,
  queueArn,
  invokers,
  batchSize = 10,
  waitSeconds = 1,
  retryAfterSeconds,
  timeoutSeconds = 30,
  region = 'us-east-1',
  log = () => {},
}) {
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10) throw new Error('a FIFO batch size is 1 to 10');
  if (!invokers?.length) throw new Error('no invokers: give one per function instance');
  if (retryAfterSeconds !== undefined && !(Number.isInteger(retryAfterSeconds) && retryAfterSeconds >= 1)) {
    throw new Error('retryAfterSeconds is a whole number of seconds, at least 1 (0 meets a LocalStack race; see docs/testing.md)');
  }
  call ??= (operation, body, options) => sqsCall(endpoint, operation, body, options);
  const stats = {
    batches: 0,
    records: 0,
    deleted: 0,
    failedRecords: 0,
    functionErrors: 0,
    malformedResponses: 0,
    deleteFailures: 0,
    /** A group received again while a batch of it was in flight here past its visibility timeout (the function was too slow: SQS may do that). */
    expiredRedeliveries: 0,
    receiveErrors: 0,
    settleErrors: 0,
    emptyReceives: 0,
    /** The mapping's own SQS requests (not idle()'s). */
    requests: { ReceiveMessage: 0, DeleteMessageBatch: 0, ChangeMessageVisibilityBatch: 0 },
  };
  const violations = [];
  const sqs = (operation, body, options) => {
    stats.requests[operation] += 1;
    return call(operation, body, options);
  };
  const visibilityMs = 1000 * Number((await call('GetQueueAttributes', { QueueUrl: queueUrl, AttributeNames: ['VisibilityTimeout'] })).Attributes.VisibilityTimeout);
  const abort = new AbortController();
  /** Set by `stop({ drain: true })`: no new poll starts; those in progress finish. */
  let draining = false;
  const groupsInFlight = new Map(); // group -> Map(batch -> its messages of the group, for a violation's text)
  let batchesInHand = 0;
  const label = (messages, group) => messages.filter((m) => groupOf(m) === group).map((m) => `${m.MessageId}#${m.Attributes?.ApproximateReceiveCount}`).join(',');

  /** Notes the groups of a batch just received as in flight, checking none of them already was. */
  function hold(messages) {
    const batch = { receivedAt: performance.now(), groups: [...new Set(messages.map(groupOf))] };
    for (const group of batch.groups) {
      const holding = groupsInFlight.get(group) ?? new Map();
      for (const [other, otherLabel] of holding) {
        if (batch.receivedAt < other.receivedAt + visibilityMs - TIMER_SLACK_MS) {
          violations.push(`group ${group} received (${label(messages, group)}) while a batch of it (${otherLabel}) was in flight`);
        } else {
          stats.expiredRedeliveries += 1;
        }
      }
      groupsInFlight.set(group, holding.set(batch, label(messages, group)));
    }
    return batch;
  }

  function release(batch) {
    for (const group of batch.groups) {
      const holding = groupsInFlight.get(group);
      holding.delete(batch);
      if (!holding.size) groupsInFlight.delete(group);
    }
  }

  /** Per group, the failures must be the group's last records in the batch. */
  function checkSuffixes(messages, groups, failed) {
    for (const group of groups) {
      const flags = messages.filter((m) => groupOf(m) === group).map((m) => failed.has(m.MessageId));
      const first = flags.indexOf(true);
      if (first >= 0 && flags.slice(first).includes(false)) {
        violations.push(`group ${group}: the failures reported are not a suffix of its records (${flags.map((f) => (f ? 'failed' : 'ok'))})`);
      }
    }
  }

  async function settle(messages, failed) {
    const done = messages.filter((m) => !failed.has(m.MessageId));
    const again = messages.filter((m) => failed.has(m.MessageId));
    stats.failedRecords += again.length;
    for (const chunk of chunks(done)) {
      const answer = await sqs('DeleteMessageBatch', { QueueUrl: queueUrl, Entries: chunk.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })) });
      stats.deleted += answer.Successful?.length ?? 0;
      // E.g. the visibility timeout ran out during the batch: SQS redelivers, the function must cope.
      stats.deleteFailures += answer.Failed?.length ?? 0;
    }
    if (retryAfterSeconds === undefined) return;
    for (const chunk of chunks(again)) {
      await sqs('ChangeMessageVisibilityBatch', {
        QueueUrl: queueUrl,
        Entries: chunk.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: retryAfterSeconds })),
      });
    }
  }

  async function handle(invoke, messages) {
    const batch = hold(messages);
    stats.batches += 1;
    stats.records += messages.length;
    let failed;
    try {
      const response = await withTimeout(invoke({ Records: messages.map((m) => toRecord(m, queueArn, region)) }), timeoutSeconds);
      const outcome = failuresOf(response, messages);
      failed = outcome.failed;
      if (outcome.malformed) stats.malformedResponses += 1;
      else checkSuffixes(messages, batch.groups, failed);
    } catch (error) {
      log(`function error: ${error.message}`);
      stats.functionErrors += 1;
      failed = new Set(messages.map((m) => m.MessageId));
    }
    // Released before settling: once the delete is on its way the queue may rightly hand the
    // group on, before this poller hears back.
    release(batch);
    try {
      await settle(messages, failed);
    } catch (error) {
      // The undeleted messages come back after the visibility timeout.
      log(`settling a batch: ${error.message}`);
      stats.settleErrors += 1;
    }
  }

  async function poll(invoke, index) {
    while (!abort.signal.aborted && !draining) {
      let messages;
      try {
        const answer = await sqs('ReceiveMessage', {
          QueueUrl: queueUrl,
          MaxNumberOfMessages: batchSize,
          WaitTimeSeconds: waitSeconds,
          MessageSystemAttributeNames: ['All'],
          MessageAttributeNames: ['All'],
        }, { signal: abort.signal });
        messages = answer.Messages ?? [];
      } catch (error) {
        if (abort.signal.aborted) return;
        log(`poller ${index}: ${error.message}`);
        stats.receiveErrors += 1;
        await new Promise((resolve) => setTimeout(resolve, 200));
        continue;
      }
      if (!messages.length) {
        stats.emptyReceives += 1;
        continue;
      }
      batchesInHand += 1;
      try {
        await handle(invoke, messages);
      } finally {
        batchesInHand -= 1;
      }
    }
  }

  const pollers = invokers.map((invoker, i) => poll(typeof invoker === 'function' ? invoker : (event) => invoker.invoke(event), i));

  return {
    stats,
    violations,
    /** Resolves when the queue is empty and no batch is in hand; rejects after `timeoutMs`. */
    async idle({ timeoutMs = 30_000 } = {}) {
      const deadline = Date.now() + timeoutMs;
      let last = 'not asked';
      for (;;) {
        if (batchesInHand === 0) {
          const a = (await call('GetQueueAttributes', {
            QueueUrl: queueUrl,
            AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
          })).Attributes;
          last = `visible ${a.ApproximateNumberOfMessages}, in flight ${a.ApproximateNumberOfMessagesNotVisible}, delayed ${a.ApproximateNumberOfMessagesDelayed}`;
          const empty = a.ApproximateNumberOfMessages === '0' && a.ApproximateNumberOfMessagesNotVisible === '0' && a.ApproximateNumberOfMessagesDelayed === '0';
          if (empty && batchesInHand === 0) return;
        }
        if (Date.now() > deadline) {
          throw new Error(`the queue is not idle after ${timeoutMs / 1000} s: ${last}, batches in hand ${batchesInHand}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    /**
     * Ends the polls and waits for the batches in hand to settle. A receive cut short may
     * still take messages on the queue's side (SQS's too: the reason for
     * ReceiveRequestAttemptId), which then stay invisible until their visibility timeout with
     * a receive counted; `drain` instead lets each poll in progress finish and handles what it
     * receives, as Lambda does when a mapping is disabled: for a test that starts another
     * mapping on the same queue.
     */
    async stop({ drain = false } = {}) {
      if (drain) draining = true;
      else abort.abort();
      await Promise.all(pollers);
    },
  };
}
