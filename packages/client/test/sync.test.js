// completeSyncs and syncComplete against a fake Replicache.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { completeSyncs, syncComplete, SYNC_KEY } from 'replicache-dynamodb-client';
import { fakeReplicache, settle } from './support/fakes.js';

test('SYNC_KEY is the key the server writes', () => {
  assert.equal(SYNC_KEY, 'replicache-dynamodb/sync');
});

test('completeSyncs pulls after every incomplete page and stops at the complete one', async () => {
  const rep = fakeReplicache();
  const stop = completeSyncs(rep);
  await settle();
  assert.equal(rep.pulls.length, 0, 'no paged sync: no pull');

  rep.set(SYNC_KEY, { complete: false, version: 10, target: 30 });
  await settle();
  assert.equal(rep.pulls.length, 1);
  rep.set(SYNC_KEY, { complete: false, version: 20, target: 30 });
  await settle();
  assert.equal(rep.pulls.length, 2);
  rep.set(SYNC_KEY, { complete: true });
  await settle();
  assert.equal(rep.pulls.length, 2);

  stop();
  assert.equal(rep.subscriptions, 0);
  rep.set(SYNC_KEY, { complete: false, version: 40, target: 50 });
  await settle();
  assert.equal(rep.pulls.length, 2, 'stopped');
});

test('completeSyncs pulls at once when the client starts in the middle of a paged sync', async () => {
  const rep = fakeReplicache();
  rep.set(SYNC_KEY, { complete: false, version: 1, target: 2 });
  const stop = completeSyncs(rep);
  await settle();
  assert.equal(rep.pulls.length, 1);
  stop();
});

test('completeSyncs swallows a failed pull (Replicache retries and reports it itself)', async (t) => {
  const rep = fakeReplicache();
  rep.pull = () => Promise.reject(new Error('offline'));
  const unhandled = [];
  const onUnhandled = (reason) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  t.after(() => process.off('unhandledRejection', onUnhandled));
  const stop = completeSyncs(rep);
  rep.set(SYNC_KEY, { complete: false, version: 1, target: 2 });
  await settle();
  await settle();
  assert.deepEqual(unhandled, []);
  stop();
});

test('syncComplete resolves at once without a paged sync, else at the complete page', async () => {
  const idle = fakeReplicache();
  await syncComplete(idle);
  assert.equal(idle.subscriptions, 0);

  const rep = fakeReplicache();
  rep.set(SYNC_KEY, { complete: false, version: 1, target: 3 });
  let done = false;
  const complete = syncComplete(rep).then(() => { done = true; });
  await settle();
  assert.equal(done, false);
  rep.set(SYNC_KEY, { complete: false, version: 2, target: 3 });
  await settle();
  assert.equal(done, false);
  rep.set(SYNC_KEY, { complete: true });
  await complete;
  assert.equal(rep.subscriptions, 0, 'it unsubscribes');
  assert.equal(rep.pulls.length, 0, 'it does not pull itself');
});
