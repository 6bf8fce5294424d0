// Appended to the chat's mutators module for the tests: `incr`, `count` and `scanPage` of
// tests/src/app.rs again, in JavaScript, as `incrJs`, `countJs` and `scanPageJs`, so that the
// model check runs schedules whose read-modify-write and scanning mutators are JavaScript.
Object.assign(mutators, {
  async incrJs(tx, { key, by }) {
    const current = await tx.get(key);
    await tx.set(key, (Number.isInteger(current) ? current : 0) + by);
  },

  async countJs(tx, { prefix, into }) {
    await tx.set(into, (await tx.scan({ prefix }).keys().toArray()).length);
  },

  // `keys()` reads the keys only; `values` writes `[key, value]` entries.
  async scanPageJs(tx, { prefix, start, exclusive, limit, into, values }) {
    const scan = tx.scan({
      prefix,
      start: start == null ? undefined : { key: start, exclusive: exclusive === true },
      limit: limit ?? undefined,
    });
    await tx.set(into, await (values ? scan.entries() : scan.keys()).toArray());
  },
});
