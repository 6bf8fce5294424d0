//! The engine's bookkeeping of one push attempt: the overlay of writes, the set of keys read
//! with the versions they had, and the size of what the commit would write.
//!
//! Writes go to the overlay and are committed at the end of the push; reads see the overlay
//! first and then the store, strongly consistent, and every key read from the store is
//! remembered with the version it had, so that the commit can be conditioned on it being
//! unchanged (no lost update, even when a read saw only part of another commit). Application
//! code never sees this type: it works through the [`Tx`](crate::Tx) handle.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;

use crate::error::{reject, Error, Result};
use crate::protocol::SYNC_KEY;
use crate::snapshot::recent_commits;
use crate::store::{
    all_pages, record_bytes, Address, CommitLog, Entity, Limits, Record, Store, Version, Written,
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

    /// Every existing key starting with `prefix` and its value, in key order.
    ///
    /// The keys a scan returns are not condition-checked at commit (a scan may return more
    /// keys than a transaction holds checks): the scan is validated as the state at this
    /// overlay's version instead, and the commit is conditioned on that version.
    pub(crate) async fn scan(&mut self, prefix: &str) -> Result<Vec<(String, Value)>> {
        self.check_key(prefix)?;
        let (store, space) = (self.store.clone(), self.space.clone());
        let records = all_pages(|page| store.entities(&space, prefix, page)).await?;
        let logs = self.commit_logs().await?.to_vec();
        let mut seen: BTreeMap<String, Entity> = BTreeMap::new();
        for record in records {
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
        // A scan is read-committed: a key written by a recent commit may not be visible yet
        // (a phantom). Commit logs list what each recent commit wrote; every such key under
        // the prefix must have been seen at least at that commit's version.
        for log in &logs {
            for written in &log.written {
                if let Written::Entity(k) = written {
                    if k.starts_with(prefix) && seen.get(k).is_none_or(|e| e.version < log.version)
                    {
                        return Err(Error::retry(format!(
                            "commit {} is not yet visible to a scan of {prefix:?}",
                            log.version
                        )));
                    }
                }
            }
        }
        for entity in seen.values() {
            self.read_before(&entity.key, Some(entity.version))?;
            self.cache.insert(entity.key.clone(), Some(entity.clone()));
        }
        let mut view: EntityWrites = seen.into_iter().map(|(k, e)| (k, e.value)).collect();
        for (k, v) in self.writes.iter().chain(self.pending.iter()) {
            if k.starts_with(prefix) {
                view.insert(k.clone(), v.clone());
            }
        }
        Ok(view
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, parse(Some(&v)).unwrap_or(Value::Null))))
            .collect())
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
