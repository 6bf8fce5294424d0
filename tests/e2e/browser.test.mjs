// The demo web client in a real browser: two pages in two browser contexts (two Replicache
// client groups, two users) chat in one space through the dev server, and each sees the
// other's messages and deletions within 2 seconds, by pokes.
//
// Needs apps/chat/web/dist built (npm ci --prefix apps/chat/web && npm run --prefix apps/chat/web build), target/debug/dev-server
// (cargo build -p dev-server) and Chromium (CHROMIUM_PATH, default /usr/bin/chromium).
// Run: node --test tests/e2e/browser.test.mjs

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { launchChromium, root, startServer } from './support.mjs';

/** How long a change may take to show in the other page. */
const PROPAGATION_MS = 2000;

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A page of its own browser context (its own storage, so its own client group). */
async function openChat(space, user) {
  const context = await browser.newContext({ viewport: { width: 820, height: 560 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error));
  const url = new URL(server.url);
  url.searchParams.set('space', space);
  url.searchParams.set('user', user);
  await page.goto(url.href);
  // Ready when the poke socket is open (it pulls on opening, so nothing before is missed).
  await page.waitForSelector('html[data-pokes="open"]', { timeout: 10_000 });
  return { page, errors };
}

/** The `li.message` of `page` whose content contains `text`. */
function messageWith(page, text) {
  return page.locator('li.message', { has: page.locator('.content', { hasText: text }) });
}

async function send(page, from, content) {
  await page.fill('#from', from);
  await page.fill('#content', content);
  const started = performance.now();
  await page.click('#send');
  return started;
}

test('a message and its deletion reach the other page within 2 s', async () => {
  const space = `browser-${Date.now()}-${Math.random().toString(16).slice(2, 8)}`;
  const a = await openChat(space, 'alice');
  const b = await openChat(space, 'bob');
  assert.equal(await a.page.textContent('#space'), space);
  assert.equal(await a.page.textContent('#user'), 'alice');
  assert.equal(await b.page.textContent('#user'), 'bob');

  // Alice writes; text that looks like HTML must stay text.
  const first = 'Hello Bob! <b>not bold</b> & friends';
  const sentFirst = await send(a.page, 'Alice', first);
  const inA = messageWith(a.page, first);
  await inA.waitFor({ timeout: PROPAGATION_MS });
  assert.equal(await a.page.inputValue('#content'), '', 'the content field is cleared after sending');

  const inB = messageWith(b.page, first);
  await inB.waitFor({ timeout: PROPAGATION_MS });
  const shownMs = performance.now() - sentFirst;
  console.log(`browser: message shown in the other page after ${Math.round(shownMs)} ms`);
  assert.ok(shownMs < PROPAGATION_MS, `shown after ${shownMs} ms`);

  const id = await inA.getAttribute('data-id');
  assert.match(id, /^[0-9a-f-]{36}$/, 'ids are random UUIDs');
  assert.equal(await inB.getAttribute('data-id'), id);
  assert.equal(await inB.locator('.from').textContent(), 'Alice');
  assert.equal(await inB.locator('.content').textContent(), first);
  assert.equal(await inB.locator('.content b').count(), 0, 'message text is not parsed as HTML');

  // Bob deletes it; it disappears from Alice's page.
  const deleting = performance.now();
  await inB.locator('button.delete').click();
  await a.page.locator(`li.message[data-id="${id}"]`).waitFor({ state: 'detached', timeout: PROPAGATION_MS });
  const goneMs = performance.now() - deleting;
  console.log(`browser: deletion shown in the other page after ${Math.round(goneMs)} ms`);
  assert.ok(goneMs < PROPAGATION_MS, `gone after ${goneMs} ms`);
  assert.equal(await b.page.locator('li.message').count(), 0);

  // Two more, one each way, in order.
  const second = 'Hi Alice, I deleted that one.';
  const sentSecond = await send(b.page, 'Bob', second);
  await messageWith(a.page, second).waitFor({ timeout: PROPAGATION_MS });
  const secondMs = performance.now() - sentSecond;
  console.log(`browser: reply shown in the other page after ${Math.round(secondMs)} ms`);
  assert.ok(secondMs < PROPAGATION_MS, `reply shown after ${secondMs} ms`);

  const third = 'Fair enough. Pokes make this instant.';
  await send(a.page, 'Alice', third);
  await messageWith(b.page, third).waitFor({ timeout: PROPAGATION_MS });
  for (const { page } of [a, b]) {
    assert.deepEqual(await page.locator('li.message .content').allTextContents(), [second, third]);
    assert.deepEqual(await page.locator('li.message .from').allTextContents(), ['Bob', 'Alice']);
  }

  const artifacts = path.join(root, 'tests/artifacts');
  await mkdir(artifacts, { recursive: true });
  await a.page.screenshot({ path: path.join(artifacts, 'chat.png') });

  assert.deepEqual(a.errors, [], 'no uncaught errors in page A');
  assert.deepEqual(b.errors, [], 'no uncaught errors in page B');
  await a.page.context().close();
  await b.page.context().close();
});
