// The todo application's client-side mutators: the same names, arguments and effects as the
// server's (apps/todo/src/lib.rs). Replicache runs them at once on the local cache; the
// server runs its own copy on push, and its result wins on the next pull (so a mutation the
// server rejects disappears from the client then).
//
// `user` is the signed-in user: the server knows it from the request, the client is told.

export const TODO_PREFIX = 'todo/';
const MAX_TEXT_CHARS = 1000;

const checkText = (text) => typeof text === 'string' && text.trim() !== '' && [...text].length <= MAX_TEXT_CHARS;

/** The mutators, for `new Replicache({mutators: mutators(user), ...})`. */
export function mutators(user) {
  return {
    async createList(tx, { name }) {
      if (await tx.has('members')) return;
      await tx.set('members', { owner: user, members: [user] });
      await tx.set('meta', { name });
    },

    async createTodo(tx, { id, text }) {
      if (!id || !checkText(text) || (await tx.has(`${TODO_PREFIX}${id}`))) return;
      let sort = 0;
      for await (const todo of tx.scan({ prefix: TODO_PREFIX }).values()) {
        sort = Math.max(sort, todo.sort + 1);
      }
      await tx.set(`${TODO_PREFIX}${id}`, { id, text, completed: false, sort });
    },

    async updateTodo(tx, { id, text, completed }) {
      const todo = await tx.get(`${TODO_PREFIX}${id}`);
      if (!todo || (text !== undefined && !checkText(text))) return;
      await tx.set(`${TODO_PREFIX}${id}`, {
        ...todo,
        ...(text !== undefined && { text }),
        ...(completed !== undefined && { completed }),
      });
    },

    async deleteTodo(tx, { id }) {
      await tx.del(`${TODO_PREFIX}${id}`);
    },

    async clearCompleted(tx) {
      for await (const [key, todo] of tx.scan({ prefix: TODO_PREFIX }).entries()) {
        if (todo.completed) await tx.del(key);
      }
    },

    async share(tx, { user: member }) {
      const members = await tx.get('members');
      if (!members || members.owner !== user || !member || members.members.includes(member)) return;
      await tx.set('members', { ...members, members: [...members.members, member] });
    },

    async unshare(tx, { user: member }) {
      const members = await tx.get('members');
      if (!members || members.owner !== user || member === members.owner) return;
      await tx.set('members', { ...members, members: members.members.filter((m) => m !== member) });
    },
  };
}

/**
 * Who may use which list: `private-<user>` is that user's alone; `list-<id>` admits the
 * members its `members` record names, and anyone while it is unclaimed (the first
 * `createList` claims it). The server runs it when this file is the app's JavaScript bundle
 * (`APP_BUNDLE`); the client ignores it. The Rust todo app has the same rules
 * (`apps/todo/src/lib.rs`).
 */
export async function spacePolicy({ user, space, get }) {
  if (space.startsWith('private-')) {
    if (space.slice('private-'.length) !== user) throw new Error("this is another user's private list");
    return true;
  }
  if (space.startsWith('list-')) {
    const members = await get('members');
    if (members && !members.members.includes(user)) throw new Error('not a member of this list');
    return true;
  }
  throw new Error('spaces are private-<user> or list-<id>');
}

/**
 * Who may write, decided inside the push before every mutation (the server runs it; the
 * client ignores it): in a shared list its members, and while it is unclaimed only the
 * `createList` that claims it. Its reads are conditions of the commit, so a member removed
 * meanwhile cannot slip a write in.
 */
export async function writeRule(tx, { name, user, space }) {
  // A private list: the space policy admits its owner only.
  if (!space.startsWith('list-')) return;
  const members = await tx.get('members');
  if (members === undefined) {
    if (name !== 'createList') throw new Error('this list is unclaimed: createList first');
  } else if (!members.members.includes(user)) {
    throw new Error('not a member of this list');
  }
}
