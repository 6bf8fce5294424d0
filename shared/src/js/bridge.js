// The bridge between the engine and the app's module, evaluated in every JavaScript context
// before the module. A call (a mutation or a policy check) is started here; each `Tx` call
// becomes a request the engine performs (as it does for a Rust mutator, so every read becomes
// a condition of the commit) and settles; `next()` tells the engine what the call waits on.
// Only JSON text crosses between the two, so no JavaScript value outlives a step.
(() => {
  'use strict';
  const MAX_REASON_CHARS = 500;
  let queue = [];
  let waiting = null;
  let outcome = null;

  const shown = (show) => {
    try {
      return show();
    } catch {
      return undefined;
    }
  };
  const reasonOf = (e) => {
    let reason;
    if (e instanceof Error) reason = shown(() => `${e.name}: ${e.message}`);
    else if (typeof e === 'string') reason = e;
    else reason = shown(() => JSON.stringify(e)) ?? shown(() => String(e));
    reason ??= 'a thrown value that cannot be shown';
    return reason.length > MAX_REASON_CHARS ? `${reason.slice(0, MAX_REASON_CHARS)}…` : reason;
  };

  // A request to the engine, settled by `settle` once it is performed.
  const request = (op) => new Promise((resolve, reject) => queue.push({ op, resolve, reject }));

  const checkKey = (key) => {
    if (typeof key !== 'string') throw new TypeError(`a key must be a string, not ${typeof key}`);
    return key;
  };

  const toJSON = (value, key) => {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`the value for ${JSON.stringify(key)} is not JSON`);
    return text;
  };

  // Runs `body` now and turns a synchronous throw into a rejected promise, as an async
  // function would.
  const later = (body) => {
    try {
      return body();
    } catch (e) {
      return Promise.reject(e);
    }
  };

  // What an iteration of a scan offers on the client: async iteration, `next()` and
  // `toArray()`.
  const iteration = (loaded, pick) => {
    const iterator = (async function* () {
      for (const entry of await loaded()) yield pick(entry);
    })();
    iterator.toArray = async () => (await loaded()).map(pick);
    return iterator;
  };

  const scanResult = (options) => {
    const { prefix = '', start, limit, indexName } = options ?? {};
    // The entries, or only the keys (the engine then reads no values), each read once.
    let entries;
    let keys;
    const read = (keysOnly) =>
      later(() => {
        if (indexName !== undefined) throw new TypeError('scans of an index are not supported on the server');
        if (start !== undefined) checkKey(start.key);
        return request({
          op: 'scan',
          prefix: checkKey(prefix),
          start: start === undefined ? null : { key: start.key, exclusive: start.exclusive === true },
          limit: limit === undefined ? null : limit,
          keysOnly,
        });
      });
    const loaded = () => (entries ??= read(false));
    const loadedKeys = () => entries ?? (keys ??= read(true));
    return {
      values: () => iteration(loaded, (e) => e[1]),
      keys: () => iteration(loadedKeys, (e) => e[0]),
      entries: () => iteration(loaded, (e) => e),
      toArray: () => loaded().then((all) => all.map((e) => e[1])),
      [Symbol.asyncIterator]: () => iteration(loaded, (e) => e[1]),
    };
  };

  const writeTransaction = (info) => {
    const set = (key, value) => later(() => request({ op: 'set', key: checkKey(key), value: toJSON(value, key) }));
    return Object.freeze({
      clientID: info.clientID,
      mutationID: info.mutationID,
      reason: 'authoritative',
      location: 'server',
      environment: 'server',
      get: (key) => later(() => request({ op: 'get', key: checkKey(key) })),
      has: (key) => later(() => request({ op: 'has', key: checkKey(key) })),
      set,
      put: set,
      del: (key) => later(() => request({ op: 'del', key: checkKey(key) })),
      isEmpty: () => request({ op: 'isEmpty' }),
      scan: (options) => scanResult(options),
    });
  };

  const start = (call) => {
    queue = [];
    waiting = null;
    outcome = null;
    // A mutator may be a plain function (Replicache allows `void` as well as a promise).
    new Promise((resolve) => resolve(call())).then(
      (value) => {
        outcome = { ok: true, value: value === true };
      },
      (e) => {
        outcome = { ok: false, reason: reasonOf(e) };
      },
    );
  };

  const app = () => globalThis.__replicacheApp;
  const mutatorsOf = (user) => {
    const exported = app().mutators ?? app().default;
    return typeof exported === 'function' ? exported(user) : exported;
  };

  const bridge = {
    // What the module exports, as the engine needs to know it once.
    exports() {
      const exported = app().mutators ?? app().default;
      return JSON.stringify({
        mutators: exported !== null && (typeof exported === 'object' || typeof exported === 'function'),
        policy: typeof app().spacePolicy === 'function',
        writeRule: typeof app().writeRule === 'function',
      });
    },
    mutate(name, argsJSON, infoJSON) {
      const info = JSON.parse(infoJSON);
      start(() => {
        const mutators = mutatorsOf(info.user);
        const mutator = mutators !== null && typeof mutators === 'object' && Object.hasOwn(mutators, name)
          ? mutators[name]
          : undefined;
        if (typeof mutator !== 'function') throw `unknown mutator ${JSON.stringify(name)}`;
        return mutator(writeTransaction(info), JSON.parse(argsJSON));
      });
    },
    // The app's `writeRule(tx, {name, args, user, space})`, run before a mutation with its
    // `tx`.
    writeRule(name, argsJSON, infoJSON) {
      const info = JSON.parse(infoJSON);
      const mutation = Object.freeze({ name, args: JSON.parse(argsJSON), user: info.user, space: info.space });
      start(() => app().writeRule(writeTransaction(info), mutation));
    },
    policy(requestJSON) {
      const { user, space, operation } = JSON.parse(requestJSON);
      const get = (key) => later(() => request({ op: 'get', key: checkKey(key) }));
      const getIn = (other, key) => later(() => request({ op: 'get', space: checkKey(other), key: checkKey(key) }));
      start(() => app().spacePolicy(Object.freeze({ user, space, operation, get, getIn })));
    },
    // What the call waits on: a request to perform, its outcome, or nothing it can wait for.
    next() {
      if (outcome !== null && !outcome.ok) return JSON.stringify(outcome);
      if (waiting === null && queue.length > 0) {
        waiting = queue.shift();
        return JSON.stringify({ request: waiting.op });
      }
      if (outcome !== null) return JSON.stringify(outcome);
      return JSON.stringify({ stuck: true });
    },
    // Settles the request `next()` handed out: `ok` with its result's JSON (absent:
    // undefined), or failed with a message.
    settle(ok, payload) {
      const { resolve, reject } = waiting;
      waiting = null;
      if (ok) resolve(payload === undefined ? undefined : JSON.parse(payload));
      else reject(new Error(payload));
    },
  };
  Object.defineProperty(globalThis, '__replicacheBridge', { value: Object.freeze(bridge) });
})();
