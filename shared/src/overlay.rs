//! The engine's bookkeeping of one push attempt: the overlay of writes, the set of keys read
//! with the versions they had, and the size of what the commit would write.
//!
//! Writes go to the overlay and are committed at the end of the push; reads see the overlay
//! first and then the store, strongly consistent, and every key read from the store is
//! remembered with the version it had, so that the commit can be conditioned on it being
//! unchanged (no lost update, even when a read saw only part of another commit). Application
//! code never sees this type: it works through the [`Tx`](crate::Tx) handle.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{reject, Error, Result};
use crate::protocol::SYNC_KEY;
use crate::snapshot::recent_commits;
use crate::store::{
    all_pages, record_bytes, Address, CommitLog, Entity, EntityQuery, Limits, Record, Store,
    Version, Written,
};

/// Entity writes of a commit: key to JSON text, `None` for a delete.
pub(crate) type EntityWrites = BTreeMap<String, Option<String>>;
/// Keys read from the store, with the version seen (`None`: absent).
pub(crate) type ReadSet = BTreeMap<String, Option<Version>>;

/// A push attempt's reads and writes over one space as of one version.
pub(crate) struct Overlay {
    store: Arc<dyn Store>,
    space: String,
    version: Version,
    commit_log_slots: u32,
    limits: Limits,
    /// Writes of mutations already accepted in this push.
    writes: EntityWrites,
    /// Writes of the mutation running now.
    pending: EntityWrites,
    /// Keys read by accepted mutations.
    reads: ReadSet,
    /// Reads of the mutation running now that were not read before.
    pending_reads: ReadSet,
    /// Entities read from the store, by key (`None`: absent).
    cache: HashMap<String, Option<Entity>>,
    /// The space's commit logs, read on the first scan.
    logs: Option<Vec<CommitLog>>,
    /// The mutation that may use the overlay now; handles of earlier ones are closed.
    pub(crate) current: u64,
    /// An engine outcome (retry, store failure) a call of the running mutation ran into. It
    /// decides the mutation's fate whatever the mutator returns, so it cannot be swallowed.
    pub(crate) failure: Option<Error>,
}

impl Overlay {
    /// An overlay over `space` as of `version`.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        space: &str,
        version: Version,
        commit_log_slots: u32,
    ) -> Self {
        Overlay {
            limits: store.limits(),
            store,
            space: space.to_owned(),
            version,
            commit_log_slots,
            writes: BTreeMap::new(),
            pending: BTreeMap::new(),
            reads: BTreeMap::new(),
            pending_reads: BTreeMap::new(),
            cache: HashMap::new(),
            logs: None,
            current: 0,
            failure: None,
        }
    }

    /// The value of `key`, or `None` if it does not exist.
    pub(crate) async fn get(&mut self, key: &str) -> Result<Option<Value>> {
        self.check_key(key)?;
        if let Some(v) = self.pending.get(key).or_else(|| self.writes.get(key)) {
            return Ok(parse(v.as_deref()));
        }
        if let Some(cached) = self.cache.get(key).cloned() {
            // Record the read again: the mutation that first read it may have been forgotten.
            self.remember(key, cached.as_ref())?;
            return Ok(parse(cached.and_then(|e| e.value).as_deref()));
        }
        let address = Address::Entity {
            space: self.space.clone(),
            key: key.to_owned(),
        };
        let got = self.store.get(std::slice::from_ref(&address)).await?;
        let entity = entity_of(got.into_iter().next().flatten());
        self.remember(key, entity.as_ref())?;
        let parsed = parse(entity.as_ref().and_then(|e| e.value.as_deref()));
        self.cache.insert(key.to_owned(), entity);
        Ok(parsed)
    }

    /// Takes `record` (`None`: absent) as read for entity `key` ahead of the mutators, with
    /// the attempt's first read: a `get` of it then records the read as if it had made it,
    /// with the version read. Like any read, it is condition-checked at commit only if used.
    pub(crate) fn read_ahead(&mut self, key: String, record: Option<Record>) {
        self.cache.entry(key).or_insert(entity_of(record));
    }

    /// Every key read so far in this attempt.
    pub(crate) fn keys_read(&self) -> Vec<String> {
        self.reads
            .keys()
            .chain(self.pending_reads.keys())
            .cloned()
            .collect()
    }

    /// Sets `key` to `value`. A key or value too large to store, or a reserved key, is a
    /// rejection.
    pub(crate) fn put(&mut self, key: &str, value: &Value) -> Result<()> {
        check_writable(key)?;
        self.check_key(key)?;
        let record = Record::Entity(Entity {
            space: self.space.clone(),
            key: key.to_owned(),
            version: self.version + 1,
            value: Some(value.to_string()),
            expires_at: None,
        });
        let size = record_bytes(&record);
        if size > self.limits.max_record_bytes {
            return Err(reject(format!(
                "the value of {key:?} takes {size} bytes stored; at most {} fit",
                self.limits.max_record_bytes
            )));
        }
        let Record::Entity(Entity { value, .. }) = record else {
            unreachable!("built as an entity above")
        };
        self.pending.insert(key.to_owned(), value);
        Ok(())
    }

    /// Deletes `key` (leaving a tombstone, so that pulls can report the deletion).
    pub(crate) fn del(&mut self, key: &str) -> Result<()> {
        check_writable(key)?;
        self.check_key(key)?;
        self.pending.insert(key.to_owned(), None);
        Ok(())
    }

    /// The existing entries `query` selects, in key order, at most `limit` of them; with
    /// their values, or `None` for each value of a keys-only query.
    ///
    /// The keys a scan returns are not condition-checked at commit (a scan may return more
    /// keys than a transaction holds checks): the scan is validated as the state at this
    /// overlay's version instead, and the commit is conditioned on that version. A scan
    /// that a limit stopped is validated only over the range its answer depends on, from its
    /// start to its last entry: it reads no further, and a key after that cannot change it.
    pub(crate) async fn scan(
        &mut self,
        mut query: EntityQuery,
        limit: Option<usize>,
    ) -> Result<Vec<(String, Option<Value>)>> {
        self.check_key(&query.prefix)?;
        if let Bound::Included(k) | Bound::Excluded(k) = &query.start {
            self.check_key(k)?;
        }
        if limit == Some(0) {
            return Ok(Vec::new());
        }
        // Pages until the store has no more, or the entries read so far, with this push's
        // own writes among them, fill the limit; each page asks for at least what is still
        // missing, and twice the last (tombstones and this push's deletes count for nothing).
        query.page_limit = limit;
        let mut seen: BTreeMap<String, Entity> = BTreeMap::new();
        let mut token = None;
        let read_to = loop {
            let page = self.store.entities(&self.space, &query, token).await?;
            for record in page.records {
                if let Record::Entity(e) = record {
                    if e.version > self.version {
                        return Err(Error::retry(format!(
                            "scan saw {:?} at version {} above {}",
                            e.key, e.version, self.version
                        )));
                    }
                    seen.insert(e.key.clone(), e);
                }
            }
            let (Some(next), Some(limit)) = (page.next, limit) else {
                break None;
            };
            let last = seen.keys().next_back().cloned();
            let found = last
                .as_deref()
                .map_or(0, |last| self.view(&query, &seen, Some(last)).len());
            if found >= limit {
                break last;
            }
            let asked = query.page_limit.unwrap_or(limit);
            query.page_limit = Some((limit - found).max(asked.saturating_mul(2)));
            token = Some(next);
        };
        let mut entries = self.view(&query, &seen, read_to.as_deref());
        entries.truncate(limit.unwrap_or(usize::MAX));
        // What the answer depends on: up to its last entry if the limit cut it, else all the
        // query selects.
        let end = match limit {
            Some(limit) if entries.len() == limit => entries.last().map(|(k, _)| k.clone()),
            _ => None,
        };
        let covered = |k: &str| query.selects(k) && end.as_deref().is_none_or(|end| k <= end);
        let logs = self.commit_logs().await?.to_vec();
        // A scan is read-committed: a key written by a recent commit may not be visible yet
        // (a phantom). Commit logs list what each recent commit wrote; every such key the
        // answer depends on must have been seen at least at that commit's version.
        for log in &logs {
            for written in &log.written {
                if let Written::Entity(k) = written {
                    if covered(k) && seen.get(k).is_none_or(|e| e.version < log.version) {
                        return Err(Error::retry(format!(
                            "commit {} is not yet visible to a scan of {:?}",
                            log.version, query.prefix
                        )));
                    }
                }
            }
        }
        for entity in seen.values().filter(|e| covered(&e.key)) {
            self.read_before(&entity.key, Some(entity.version))?;
            // A keys-only read has no values to serve a later `get`.
            if !query.keys_only || entity.value.is_none() {
                self.cache.insert(entity.key.clone(), Some(entity.clone()));
            }
        }
        let keys_only = query.keys_only;
        Ok(entries
            .into_iter()
            .map(|(k, v)| {
                let value = (!keys_only).then(|| parse(Some(&v)).unwrap_or(Value::Null));
                (k, value)
            })
            .collect())
    }

    /// The live entries `query` selects among `seen` (read from the store up to `read_to`,
    /// or all of them) with this push's writes over them, as JSON text.
    fn view(
        &self,
        query: &EntityQuery,
        seen: &BTreeMap<String, Entity>,
        read_to: Option<&str>,
    ) -> Vec<(String, String)> {
        let within = |k: &str| query.selects(k) && read_to.is_none_or(|to| k <= to);
        let mut view: EntityWrites = seen
            .iter()
            .filter(|(k, _)| within(k))
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect();
        for (k, v) in self.writes.iter().chain(self.pending.iter()) {
            if within(k) {
                view.insert(k.clone(), v.clone());
            }
        }
        view.into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect()
    }

    /// The commit logs of the commits at or below this overlay's version that a reader
    /// cannot yet assume visible, after checking that each of them is itself visible.
    async fn commit_logs(&mut self) -> Result<&[CommitLog]> {
        if self.logs.is_none() {
            let (store, space) = (self.store.clone(), self.space.clone());
            let records = all_pages(|page| store.commit_logs(&space, page)).await?;
            let logs: Vec<CommitLog> = records
                .into_iter()
                .filter_map(|r| match r {
                    Record::CommitLog(l) => Some(l),
                    _ => None,
                })
                .collect();
            let recent = recent_commits(&logs, 0, self.version, self.commit_log_slots)
                .map_err(Error::retry)?;
            self.logs = Some(recent.into_iter().cloned().collect());
        }
        Ok(self.logs.as_deref().unwrap_or_default())
    }

    /// Records a read of `key` for the commit's conditions.
    fn remember(&mut self, key: &str, entity: Option<&Entity>) -> Result<()> {
        let version = entity.map(|e| e.version);
        if !self.read_before(key, version)? {
            self.pending_reads.insert(key.to_owned(), version);
        }
        Ok(())
    }

    /// Whether `key` was read before in this attempt; a retry if it was read at another
    /// version than `version` (the two reads straddle a commit).
    fn read_before(&self, key: &str, version: Option<Version>) -> Result<bool> {
        match self.reads.get(key).or_else(|| self.pending_reads.get(key)) {
            Some(before) if *before != version => {
                Err(Error::retry(format!("{key:?} changed between two reads")))
            }
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    fn check_key(&self, key: &str) -> Result<()> {
        if key.len() > self.limits.max_key_bytes {
            return Err(reject(format!(
                "key of {} bytes; keys hold at most {} bytes",
                key.len(),
                self.limits.max_key_bytes
            )));
        }
        Ok(())
    }

    /// Accepts the running mutation's reads and writes.
    pub(crate) fn keep(&mut self) {
        self.writes.append(&mut self.pending);
        self.reads.append(&mut self.pending_reads);
    }

    /// Drops the running mutation's writes. Its reads stay pending (its outcome, a
    /// rejection, still depended on them) until [`Overlay::keep`] or [`Overlay::forget`].
    pub(crate) fn discard_writes(&mut self) {
        self.pending.clear();
    }

    /// Forgets the running mutation entirely, as if it had not run.
    pub(crate) fn forget(&mut self) {
        self.pending.clear();
        self.pending_reads.clear();
    }

    /// Distinct entities the commit would touch, running mutation included.
    pub(crate) fn touched(&self) -> usize {
        let mut keys: BTreeSet<&String> = self.writes.keys().collect();
        keys.extend(self.pending.keys());
        keys.extend(self.reads.keys());
        keys.extend(self.pending_reads.keys());
        keys.len()
    }

    /// Estimated bytes the entity writes take, running mutation included.
    pub(crate) fn write_bytes(&self) -> usize {
        let entity_overhead = 64 + self.space.len();
        self.writes
            .iter()
            .chain(self.pending.iter())
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, String::len) + entity_overhead)
            .sum()
    }

    /// The accepted writes and reads, for the commit.
    pub(crate) fn take_parts(&mut self) -> (EntityWrites, ReadSet) {
        (
            std::mem::take(&mut self.writes),
            std::mem::take(&mut self.reads),
        )
    }
}

fn parse(text: Option<&str>) -> Option<Value> {
    text.map(|t| serde_json::from_str(t).unwrap_or(Value::Null))
}

/// The entity a read returned; anything else at an entity's address counts as absent.
fn entity_of(record: Option<Record>) -> Option<Entity> {
    match record {
        Some(Record::Entity(e)) => Some(e),
        _ => None,
    }
}

/// Refuses the keys the server writes itself: a value stored under the sync marker would
/// reach clients as the server's word on whether a paged sync is complete.
fn check_writable(key: &str) -> Result<()> {
    if key == SYNC_KEY {
        return Err(reject(format!(
            "{SYNC_KEY:?} is reserved for the server's sync marker"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{Expect, Write};

    const SPACE: &str = "s";

    fn entity(key: &str, version: Version, value: Option<&str>) -> Record {
        Record::Entity(Entity {
            space: SPACE.into(),
            key: key.into(),
            version,
            value: value.map(str::to_owned),
            expires_at: None,
        })
    }

    fn log(version: Version, keys: &[&str]) -> Record {
        Record::CommitLog(CommitLog {
            space: SPACE.into(),
            slot: version as u32,
            version,
            written: keys.iter().map(|k| Written::Entity((*k).into())).collect(),
        })
    }

    /// An overlay at version 2 over `p/a`, `p/c` and `p/e`, written by commit 1, and whatever
    /// of commit 2 (which wrote `late`) is `visible`: the rest of commit 2 is still on its way.
    async fn overlay(late: &str, visible: Vec<Record>) -> Overlay {
        let store = Arc::new(MemoryStore::new());
        let before = vec![
            entity("p/a", 1, Some("1")),
            entity("p/c", 1, Some("3")),
            entity("p/e", 1, Some("5")),
            log(1, &["p/a", "p/c", "p/e"]),
            log(2, &[late]),
        ];
        for records in [before, visible] {
            let writes = records
                .into_iter()
                .map(|record| Write::Put {
                    record,
                    expect: Expect::Any,
                })
                .collect();
            store.write(writes).await.expect("written");
        }
        Overlay::new(store, SPACE, 2, 64)
    }

    fn page(limit: usize) -> (EntityQuery, Option<usize>) {
        (EntityQuery::prefix("p/"), Some(limit))
    }

    fn keys(entries: Vec<(String, Option<Value>)>) -> Vec<String> {
        entries.into_iter().map(|(k, _)| k).collect()
    }

    #[tokio::test]
    async fn a_scan_stopped_by_its_limit_depends_only_on_what_it_read() {
        // Commit 2's write after the page's last entry cannot change the page.
        let (query, limit) = page(2);
        let got = overlay("p/d", vec![]).await.scan(query, limit).await;
        assert_eq!(keys(got.expect("no retry")), ["p/a", "p/c"]);
        // Without a limit the scan's answer would miss it: it must read again.
        let got = overlay("p/d", vec![])
            .await
            .scan(EntityQuery::prefix("p/"), None)
            .await;
        assert!(got.is_err_and(|e| !e.is_rejection()));
    }

    #[tokio::test]
    async fn a_scan_stopped_by_its_limit_sees_every_commit_up_to_its_last_entry() {
        // A key inserted before the page's last entry, not yet visible.
        let (query, limit) = page(2);
        let got = overlay("p/b", vec![]).await.scan(query, limit).await;
        assert!(got.is_err_and(|e| !e.is_rejection()));
        // The last entry itself, deleted by commit 2 whose tombstone is not yet visible.
        let (query, limit) = page(2);
        let got = overlay("p/c", vec![]).await.scan(query, limit).await;
        assert!(got.is_err_and(|e| !e.is_rejection()));
        // Once visible, the page moves on past it.
        let (query, limit) = page(2);
        let mut o = overlay("p/c", vec![entity("p/c", 2, None)]).await;
        assert_eq!(keys(o.scan(query, limit).await.unwrap()), ["p/a", "p/e"]);
    }

    #[tokio::test]
    async fn a_keys_only_scan_leaves_values_to_a_later_get() {
        let mut o = overlay("p/z", vec![entity("p/z", 2, Some("26"))]).await;
        let query = EntityQuery {
            keys_only: true,
            ..EntityQuery::prefix("p/")
        };
        let got = o.scan(query, Some(3)).await.unwrap();
        assert_eq!(
            got,
            [
                ("p/a".into(), None),
                ("p/c".into(), None),
                ("p/e".into(), None)
            ]
        );
        assert_eq!(o.get("p/c").await.unwrap(), Some(serde_json::json!(3)));
    }
}
