// The chat's mutators, written once: Replicache runs them at once on the local cache, and the
// server runs this very file on push (apps/chat compiles it in), whose result wins on pull.
// A mutator that throws is refused on the client and rejected on the server.

export const MESSAGE_PREFIX = 'message/';
/** Longest sender name, in characters. */
export const MAX_FROM_CHARS = 100;
/** Longest message, in characters. */
export const MAX_CONTENT_CHARS = 10_000;

const check = (ok, why) => {
  if (!ok) throw new Error(why);
};
const checkId = (id) => check(typeof id === 'string' && id !== '', 'id must be a non-empty string');
const chars = (text) => [...text].length;

export const mutators = {
  async createMessage(tx, { id, from, content, order }) {
    checkId(id);
    check(typeof from === 'string' && chars(from) <= MAX_FROM_CHARS, `from must be a string of at most ${MAX_FROM_CHARS} characters`);
    check(typeof content === 'string' && chars(content) <= MAX_CONTENT_CHARS, `content must be a string of at most ${MAX_CONTENT_CHARS} characters`);
    check(Number.isSafeInteger(order) && order >= 0, 'order must be a non-negative integer');
    await tx.set(`${MESSAGE_PREFIX}${id}`, { from, content, order });
  },

  async deleteMessage(tx, { id }) {
    checkId(id);
    await tx.del(`${MESSAGE_PREFIX}${id}`);
  },
};
