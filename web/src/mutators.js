// The client's mutators: the same names, arguments and effects as the server's
// (`createMessage` and `deleteMessage` in apps/chat/src/lib.rs). Replicache runs them at once
// on the local cache, then the server runs its own copy on push and its result wins on pull.

export const MESSAGE_PREFIX = 'message/';

export const mutators = {
  async createMessage(tx, { id, from, content, order }) {
    await tx.set(`${MESSAGE_PREFIX}${id}`, { from, content, order });
  },

  async deleteMessage(tx, { id }) {
    await tx.del(`${MESSAGE_PREFIX}${id}`);
  },
};
