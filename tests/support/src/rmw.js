// Appended to the chat's mutators module for the tests: `incr` and `count` of tests/src/app.rs
// again, in JavaScript, as `incrJs` and `countJs`, so that the model check runs schedules whose
// read-modify-write and scanning mutators are JavaScript.
Object.assign(mutators, {
  async incrJs(tx, { key, by }) {
    const current = await tx.get(key);
    await tx.set(key, (Number.isInteger(current) ? current : 0) + by);
  },

  async countJs(tx, { prefix, into }) {
    await tx.set(into, (await tx.scan({ prefix }).keys().toArray()).length);
  },
});
