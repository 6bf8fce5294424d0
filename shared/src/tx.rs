//! [`Tx`]: what a mutator reads and writes through, like Replicache's `WriteTransaction`.

use std::ops::Bound;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};

use crate::error::{reject, Result};
use crate::overlay::Overlay;
use crate::store::EntityQuery;

/// A mutator's view of its space, as of the push that runs it: `get`, `has`, `set`, `del`,
/// `scan`, `keys` and `is_empty`, like Replicache's `WriteTransaction`.
///
/// Reads see the writes of earlier mutations in the same push. Whatever a mutator reads
/// decides the commit: if another push changed a key this one read (or a scanned prefix)
/// before the commit, the whole push is run again on the new state, so a mutator always acts
/// on a consistent snapshot and never loses another push's update.
///
/// Every call returns a [`Result`]: pass its errors on with `?`. They are either rejections
/// (an oversized key or value, a value that is not the type asked for) or the engine's own
/// outcomes, which the engine acts on even if a mutator drops them.
///
/// A `Tx` is cheap to clone and is valid only while its mutator runs; calls after that fail.
///
/// ```
/// use replicache_dynamodb::{reject, Result, Tx};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Counter { value: i64 }
///
/// /// `increment {by}`: a read-modify-write.
/// async fn increment(tx: Tx, by: i64) -> Result<()> {
///     if by == 0 {
///         return Err(reject("by must not be 0"));
///     }
///     let current = tx.get::<Counter>("counter").await?.map_or(0, |c| c.value);
///     tx.set("counter", &Counter { value: current + by }).await
/// }
/// ```
#[derive(Clone)]
pub struct Tx {
    overlay: Arc<Mutex<Overlay>>,
    /// Which of the push's mutations this handle belongs to.
    seq: u64,
    info: Arc<MutationInfo>,
}

/// Who made the mutation a [`Tx`] runs.
#[derive(Debug)]
pub(crate) struct MutationInfo {
    pub(crate) user: String,
    pub(crate) space: String,
    pub(crate) client_id: String,
    pub(crate) mutation_id: u64,
}

/// What [`Tx::scan`] reads: the keys under a prefix, optionally from a start key and up to a
/// limit, in key order (UTF-8 byte order, as Replicache orders keys).
///
/// ```
/// use replicache_dynamodb::Scan;
///
/// let all = Scan::prefix("todo/");
/// let page = Scan::prefix("todo/").start_after("todo/0042").limit(20);
/// # let _ = (all, page);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    prefix: String,
    start: Option<(String, bool)>,
    limit: Option<usize>,
}

impl Scan {
    /// Every key starting with `prefix` (`""`: every key).
    pub fn prefix(prefix: impl Into<String>) -> Self {
        Scan {
            prefix: prefix.into(),
            ..Scan::default()
        }
    }

    /// Only keys at or after `key`.
    pub fn start_at(mut self, key: impl Into<String>) -> Self {
        self.start = Some((key.into(), false));
        self
    }

    /// Only keys strictly after `key`.
    pub fn start_after(mut self, key: impl Into<String>) -> Self {
        self.start = Some((key.into(), true));
        self
    }

    /// At most `limit` entries.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
}

impl From<&str> for Scan {
    fn from(prefix: &str) -> Self {
        Scan::prefix(prefix)
    }
}

impl From<String> for Scan {
    fn from(prefix: String) -> Self {
        Scan::prefix(prefix)
    }
}

impl Tx {
    pub(crate) fn new(overlay: Arc<Mutex<Overlay>>, seq: u64, info: Arc<MutationInfo>) -> Self {
        Tx { overlay, seq, info }
    }

    /// The authenticated user who pushed the mutation.
    pub fn user(&self) -> &str {
        &self.info.user
    }

    /// The space the mutation was pushed to.
    pub fn space(&self) -> &str {
        &self.info.space
    }

    /// The client (browser tab) that made the mutation.
    pub fn client_id(&self) -> &str {
        &self.info.client_id
    }

    /// The mutation's id: its client's sequence number, from 1.
    pub fn mutation_id(&self) -> u64 {
        self.info.mutation_id
    }

    /// The value of `key` as a `T`, or `None` if the key does not exist. A value that is not
    /// a `T` rejects the mutation (use [`serde_json::Value`] to take any value).
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let mut overlay = self.open().await?;
        let read = overlay.get(key).await;
        let value = settle(&mut overlay, read)?;
        value
            .map(|v| {
                serde_json::from_value(v).map_err(|e| {
                    reject(format!(
                        "the value of {key:?} is not a {}: {e}",
                        std::any::type_name::<T>()
                    ))
                })
            })
            .transpose()
    }

    /// Whether `key` exists.
    pub async fn has(&self, key: &str) -> Result<bool> {
        let mut overlay = self.open().await?;
        let read = overlay.get(key).await;
        Ok(settle(&mut overlay, read)?.is_some())
    }

    /// Sets `key` to `value`. A key over 1,022 bytes or a value over about 199 KB stored
    /// rejects the mutation.
    pub async fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let value = serde_json::to_value(value)
            .map_err(|e| reject(format!("the value for {key:?} is not JSON: {e}")))?;
        self.open().await?.put(key, &value)
    }

    /// Deletes `key` (nothing happens if it does not exist). Use [`Tx::has`] first to know
    /// whether it did: that read then becomes part of what the commit depends on.
    pub async fn del(&self, key: &str) -> Result<()> {
        self.open().await?.del(key)
    }

    /// The entries `scan` selects, values as `T`, in key order.
    ///
    /// A scan sees exactly the space as of the push (no phantoms, no half-visible commits)
    /// plus this push's own writes. With a limit it reads from the store only as far as its
    /// answer reaches (and the deleted keys on the way), so a page of a large prefix costs a
    /// page.
    pub async fn scan<T: DeserializeOwned>(
        &self,
        scan: impl Into<Scan>,
    ) -> Result<Vec<(String, T)>> {
        self.read(scan.into(), false)
            .await?
            .into_iter()
            .map(
                |(k, v)| match serde_json::from_value(v.unwrap_or_default()) {
                    Ok(t) => Ok((k, t)),
                    Err(e) => Err(reject(format!(
                        "the value of {k:?} is not a {}: {e}",
                        std::any::type_name::<T>()
                    ))),
                },
            )
            .collect()
    }

    /// The keys `scan` selects, in key order, like [`Tx::scan`] but without reading their
    /// values.
    pub async fn keys(&self, scan: impl Into<Scan>) -> Result<Vec<String>> {
        let entries = self.read(scan.into(), true).await?;
        Ok(entries.into_iter().map(|(k, _)| k).collect())
    }

    /// Whether the space has no key at all (this push's writes included), like Replicache's
    /// `isEmpty`. It reads one key from the store (more only past deleted keys, whose
    /// tombstones come first), and the commit depends on the answer like any scan's.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.keys(Scan::prefix("").limit(1)).await?.is_empty())
    }

    async fn read(&self, scan: Scan, keys_only: bool) -> Result<Vec<(String, Option<Value>)>> {
        let query = EntityQuery {
            start: match scan.start {
                None => Bound::Unbounded,
                Some((key, true)) => Bound::Excluded(key),
                Some((key, false)) => Bound::Included(key),
            },
            keys_only,
            ..EntityQuery::prefix(scan.prefix)
        };
        let mut overlay = self.open().await?;
        let read = overlay.scan(query, scan.limit).await;
        settle(&mut overlay, read)
    }

    /// The overlay, if this handle's mutation is still running.
    async fn open(&self) -> Result<MutexGuard<'_, Overlay>> {
        let overlay = self.overlay.lock().await;
        if overlay.current != self.seq {
            return Err(reject(
                "this Tx belongs to a mutation that has finished; use the Tx a mutator is given",
            ));
        }
        Ok(overlay)
    }
}

/// Remembers an engine outcome (retry, store failure) that a call ran into, so that a
/// mutator that drops the error changes nothing: the engine acts on it all the same.
fn settle<R>(overlay: &mut Overlay, result: Result<R>) -> Result<R> {
    if let Err(e) = &result {
        if !e.is_rejection() && overlay.failure.is_none() {
            overlay.failure = Some(e.clone());
        }
    }
    result
}
