// Fakes for the package's Node tests: a WebSocket and a fetch that record what the code under
// test does and let the test play the server, and a Replicache-like object.

/** A WebSocket class whose instances the test opens, messages and closes by hand. */
export function fakeWebSocket() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.sent = [];
      this.closed = false;
      this.listeners = {};
      sockets.push(this);
    }

    addEventListener(type, listener) {
      (this.listeners[type] ??= []).push(listener);
    }

    emit(type, event = {}) {
      for (const listener of this.listeners[type] ?? []) listener(event);
    }

    send(data) {
      if (this.closed) throw new Error('send on a closed socket');
      this.sent.push(data);
    }

    /** The code under test closes it: like a browser, a close event follows. */
    close() {
      if (this.closed) return;
      this.closed = true;
      queueMicrotask(() => this.emit('close'));
    }

    // The server's side.
    open() {
      this.emit('open');
    }

    message(data) {
      this.emit('message', { data });
    }

    /** The server (or the network) drops the connection. */
    drop() {
      this.closed = true;
      this.emit('error');
      this.emit('close');
    }
  }
  return { WebSocket: FakeWebSocket, sockets };
}

/**
 * A fetch answering ticket requests: `answer()` gives each its status (200: a fresh ticket
 * `t1`, `t2`, ...). Records each request's URL and Authorization header.
 */
export function fakeFetch(answer = () => 200) {
  const requests = [];
  let tickets = 0;
  async function fetch(url, init) {
    const status = answer(requests.length);
    requests.push({ url, method: init.method, authorization: init.headers.authorization });
    const ticket = `t${++tickets}`;
    return { status, json: async () => ({ ticket, expiresAt: 0 }) };
  }
  return { fetch, requests };
}

/** Lets pending promise callbacks (a ticket fetch, say) run. Not a sleep: no time passes. */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * A Replicache-like object: `subscribe` over a key-value map the test changes with `set`,
 * and `pull` and `push` that record their calls.
 */
export function fakeReplicache({ auth = '' } = {}) {
  const data = new Map();
  const subscriptions = new Set();
  const tx = { get: async (key) => data.get(key) };
  const rep = {
    auth,
    pulls: [],
    pushes: [],
    pull(options) {
      rep.pulls.push(options ?? {});
      return Promise.resolve();
    },
    push(options) {
      rep.pushes.push(options ?? {});
      return Promise.resolve();
    },
    subscribe(body, onData) {
      const subscription = { body, onData, last: undefined, first: true };
      subscriptions.add(subscription);
      run(subscription);
      return () => subscriptions.delete(subscription);
    },
    /** Changes a key; subscriptions whose result changed are called (as Replicache does). */
    set(key, value) {
      if (value === undefined) data.delete(key);
      else data.set(key, value);
      for (const subscription of subscriptions) run(subscription);
    },
    get subscriptions() {
      return subscriptions.size;
    },
  };
  async function run(subscription) {
    const result = await subscription.body(tx);
    if (!subscriptions.has(subscription)) return;
    if (!subscription.first && JSON.stringify(result) === JSON.stringify(subscription.last)) return;
    subscription.first = false;
    subscription.last = result;
    subscription.onData(result);
  }
  return rep;
}
