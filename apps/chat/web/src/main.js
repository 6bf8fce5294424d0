// The chat of Replicache's "Bring Your Own Backend" tutorial, on this project's server.
// Page URL: /?space=<space id>&user=<user id> (both optional); against a deployed stack also
// &api=<ApiUrl output>&ws=<PokeURL output>.
import { Replicache } from 'replicache';
import { MESSAGE_PREFIX, mutators } from './mutators.js';
import { connect, replicacheOptions } from 'replicache-dynamodb-client';

const USER_KEY = 'chat.userID';
const FROM_KEY = 'chat.from';

// localStorage can be unavailable (privacy settings); the app then just forgets.
const storage = {
  get(key) {
    try {
      return window.localStorage.getItem(key);
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      window.localStorage.setItem(key, value);
    } catch {
      // ignore
    }
  },
};

function randomUserID() {
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  return `user-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

function userIDFrom(params) {
  const given = params.get('user');
  if (given) return given;
  let stored = storage.get(USER_KEY);
  if (!stored) {
    stored = randomUserID();
    storage.set(USER_KEY, stored);
  }
  return stored;
}

const params = new URLSearchParams(window.location.search);
const spaceID = params.get('space') || 'default';
const userID = userIDFrom(params);
// The server: the page's own (the dev server), or a deployed stack's HTTP API and poke
// WebSocket. The dev server (and a stack deployed with AuthMode=header) takes the
// Authorization header as the user id; with AuthMode=jwt this would be the user's JWT.
const server = { spaceID, auth: userID, api: params.get('api') || '', ws: params.get('ws') || '' };

const rep = new Replicache({
  name: `chat-${userID}-${spaceID}`,
  ...replicacheOptions(server),
  mutators,
});

const $ = (selector) => document.querySelector(selector);
const list = $('#messages');
const empty = $('#empty');
const form = $('#message-form');
const fromInput = $('#from');
const contentInput = $('#content');
const status = $('#status');

$('#space').textContent = spaceID;
$('#user').textContent = userID;
document.title = `${spaceID} · Replicache chat`;
fromInput.value = storage.get(FROM_KEY) ?? '';

// Online: Replicache's own view (its last push or pull got through or not).
function showOnline(online) {
  status.textContent = online ? 'online' : 'offline';
  status.classList.toggle('online', online);
  status.classList.toggle('offline', !online);
}
showOnline(rep.online);
rep.onOnlineChange = showOnline;

// The messages, in order, kept up to date by Replicache.
let messages = [];

function byOrder(a, b) {
  return a.order - b.order || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function messageRow(id) {
  const li = document.createElement('li');
  li.className = 'message';
  li.dataset.id = id;
  const from = document.createElement('span');
  from.className = 'from';
  const content = document.createElement('span');
  content.className = 'content';
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'delete';
  remove.title = 'Delete this message';
  remove.textContent = 'Delete';
  li.append(from, content, remove);
  return li;
}

const rows = new Map(); // id → li

function render() {
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const seen = new Set();
  for (const message of messages) {
    seen.add(message.id);
    let li = rows.get(message.id);
    if (!li) {
      li = messageRow(message.id);
      rows.set(message.id, li);
    }
    // textContent only: message text is user data and is never parsed as HTML.
    li.querySelector('.from').textContent = message.from;
    li.querySelector('.content').textContent = message.content;
    li.querySelector('.delete').setAttribute('aria-label', `Delete the message from ${message.from}`);
    list.append(li); // (re)appending in order sorts the list; unchanged rows stay put
  }
  for (const [id, li] of rows) {
    if (!seen.has(id)) {
      li.remove();
      rows.delete(id);
    }
  }
  empty.hidden = messages.length > 0;
  if (nearBottom) list.scrollTop = list.scrollHeight;
}

rep.subscribe((tx) => tx.scan({ prefix: MESSAGE_PREFIX }).entries().toArray(), {
  onData(entries) {
    messages = entries
      .map(([key, value]) => ({
        id: key.slice(MESSAGE_PREFIX.length),
        from: String(value.from ?? ''),
        content: String(value.content ?? ''),
        order: Number(value.order) || 0,
      }))
      .sort(byOrder);
    render();
  },
});

list.addEventListener('click', (event) => {
  const button = event.target.closest('button.delete');
  if (!button) return;
  const id = button.closest('li.message')?.dataset.id;
  if (id) void rep.mutate.deleteMessage({ id });
});

form.addEventListener('submit', (event) => {
  event.preventDefault();
  const from = fromInput.value.trim();
  const content = contentInput.value.trim();
  if (!from || !content) return;
  storage.set(FROM_KEY, from);
  const order = messages.reduce((max, m) => Math.max(max, m.order), -1) + 1;
  // Runs locally at once; Replicache pushes it when it can (also after being offline).
  void rep.mutate.createMessage({ id: crypto.randomUUID(), from, content, order });
  contentInput.value = '';
  contentInput.focus();
});

// Pokes make other clients' changes show up at once (the 60 s pull interval is the
// fallback); after being offline, what was written meanwhile is pushed at once; a space too
// large for one pull response arrives in pages, pulled until it is all here.
connect(rep, server, {
  onState: (open) => {
    document.documentElement.dataset.pokes = open ? 'open' : 'closed';
  },
});
