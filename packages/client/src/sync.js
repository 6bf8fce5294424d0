// Paged syncs: a sync too large for one pull response (a new client of a big space, say) is
// answered in pages. While one is under way the server sets the key SYNC_KEY to
// `{complete: false, ...}`; the page that completes it sets `{complete: true}`. Replicache 15
// does not pull again by itself after a page, so the app does: `completeSyncs(rep)`.

/** The key the server marks an incomplete sync with (`protocol::SYNC_KEY` on the server). */
export const SYNC_KEY = 'replicache-dynamodb/sync';

/**
 * Pulls again as long as the server says the client's sync is incomplete. Each page
 * changes the key's value, so each one triggers the next pull. Returns a function that
 * stops it.
 *
 * @param {import('../index.js').SyncingReplicache} rep a Replicache instance
 * @returns {() => void}
 */
export function completeSyncs(rep) {
  return rep.subscribe(
    (tx) => tx.get(SYNC_KEY),
    (sync) => {
      if (sync && sync.complete === false) rep.pull().catch(() => {});
    },
  );
}

/**
 * Resolves once SYNC_KEY no longer says incomplete (at once when no paged sync is under way).
 * It does not pull: `completeSyncs(rep)` (or `connect`) must be running for a sync to finish.
 *
 * @param {import('../index.js').SyncingReplicache} rep a Replicache instance
 * @returns {Promise<void>}
 */
export function syncComplete(rep) {
  return new Promise((resolve) => {
    const stop = rep.subscribe(
      (tx) => tx.get(SYNC_KEY),
      (sync) => {
        if (!sync || sync.complete !== false) {
          stop();
          resolve();
        }
      },
    );
  });
}
