//! The in-memory store: the embedded default for local runs, and, in adversarial mode, a
//! model of DynamoDB at its weakest for the model check.
//!
//! In adversarial mode a transaction checks its conditions and locks its records atomically,
//! then makes its records visible one at a time in random order, letting other tasks run in
//! between (and, with stragglers, sometimes for long); queries and batch reads read one
//! record at a time the same way. While a record is locked, other transactions touching it
//! fail with a conflict, as DynamoDB's do. The randomness is seeded, so on a single-threaded
//! runtime a schedule replays exactly.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    item_key, record_bytes, Address, EntityQuery, Limits, Page, PageToken, Record, Store,
    StoreError, Version, Write, COMMIT_LOG_PREFIX, ENTITY_PREFIX,
};

type ItemKey = (String, String);

/// DynamoDB's page size for a query: 1 MB.
const PAGE_BYTES: usize = 1024 * 1024;

/// In-memory implementation of [`Store`].
pub struct MemoryStore {
    state: Mutex<State>,
    adversary: Option<Mutex<fastrand::Rng>>,
    /// In adversarial mode, the most turns a straggling item of a transaction waits.
    stragglers: usize,
    limits: Limits,
}

#[derive(Default)]
struct State {
    items: BTreeMap<ItemKey, Record>,
    /// The versioned records of each partition by version and sort key: the order of
    /// [`Store::changes`] (DynamoDB's local secondary index), so that a page costs its own
    /// length and not the space's.
    by_version: HashMap<String, BTreeSet<(Version, String)>>,
    locked: HashSet<ItemKey>,
    /// In adversarial mode only, the records put by every committed transaction.
    history: Option<Vec<Vec<Record>>>,
}

impl State {
    /// Stores `record` at `key`, keeping the version index in step.
    fn put(&mut self, key: ItemKey, record: Record) {
        let version = record.row_version();
        let (pk, sk) = key;
        if let Some(old) = self.items.insert((pk.clone(), sk.clone()), record) {
            if let (Some(v), Some(index)) = (old.row_version(), self.by_version.get_mut(&pk)) {
                index.remove(&(v, sk.clone()));
            }
        }
        if let Some(v) = version {
            self.by_version.entry(pk).or_default().insert((v, sk));
        }
    }

    /// The first of the space's versioned records above version `after` and after `cursor`.
    fn next_change(
        &self,
        pk: &str,
        after: Version,
        cursor: Option<&(Version, String)>,
    ) -> Option<((Version, String), Record)> {
        let from = match cursor {
            Some(c) if c.0 > after => Bound::Excluded(c.clone()),
            _ => Bound::Included((after.checked_add(1)?, String::new())),
        };
        let (v, sk) = self
            .by_version
            .get(pk)?
            .range((from, Bound::Unbounded))
            .next()?;
        let record = self
            .items
            .get(&(pk.to_owned(), sk.clone()))
            .expect("the version index lists only stored records");
        Some(((*v, sk.clone()), record.clone()))
    }

    /// The first of the partition's records whose sort key starts with `prefix` and comes
    /// after `cursor`.
    fn next_with_prefix(
        &self,
        pk: &str,
        prefix: &str,
        cursor: Option<&String>,
    ) -> Option<(String, Record)> {
        let from = match cursor {
            Some(c) if c.as_str() >= prefix => Bound::Excluded((pk.to_owned(), c.clone())),
            _ => Bound::Included((pk.to_owned(), prefix.to_owned())),
        };
        self.items
            .range((from, Bound::Unbounded))
            .next()
            .filter(|((p, s), _)| p == pk && s.starts_with(prefix))
            .map(|((_, s), r)| (s.clone(), r.clone()))
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store whose operations are atomic, for local runs.
    pub fn new() -> Self {
        MemoryStore {
            state: Mutex::new(State::default()),
            adversary: None,
            stragglers: 0,
            limits: Limits::DYNAMODB,
        }
    }

    /// A store that exposes transactions item by item, scheduled by `seed`, and keeps the
    /// history of its commits.
    pub fn adversarial(seed: u64) -> Self {
        MemoryStore {
            state: Mutex::new(State {
                history: Some(Vec::new()),
                ..State::default()
            }),
            adversary: Some(Mutex::new(fastrand::Rng::with_seed(seed))),
            ..Self::new()
        }
    }

    /// In adversarial mode, makes one item in four of each transaction a straggler, which
    /// becomes visible up to `turns` turns of the other tasks later. Without stragglers an
    /// item waits at most two turns, and a reader must already be under way when a
    /// transaction starts to see it half-visible; DynamoDB gives no such bound.
    pub fn with_stragglers(mut self, turns: usize) -> Self {
        self.stragglers = turns;
        self
    }

    /// Sets the sizes the store holds (DynamoDB's by default); small limits make a model
    /// check exercise the engine's splitting and skipping paths.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The records put by every committed transaction, in commit order, for checkers; kept
    /// in adversarial mode only (`None` otherwise), so that a long local run does not hold
    /// every commit.
    pub fn history(&self) -> Option<Vec<Vec<Record>>> {
        self.lock().history.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// In adversarial mode, lets other tasks run a random number of times.
    async fn interleave(&self) {
        let Some(rng) = &self.adversary else { return };
        let turns = rng.lock().unwrap_or_else(|e| e.into_inner()).usize(0..3);
        for _ in 0..turns {
            tokio::task::yield_now().await;
        }
    }

    /// In adversarial mode with stragglers, sometimes lets other tasks run many times.
    async fn straggle(&self) {
        let Some(rng) = self.adversary.as_ref().filter(|_| self.stragglers > 0) else {
            return;
        };
        let turns = {
            let mut rng = rng.lock().unwrap_or_else(|e| e.into_inner());
            if rng.usize(0..4) == 0 {
                rng.usize(0..self.stragglers)
            } else {
                0
            }
        };
        for _ in 0..turns {
            tokio::task::yield_now().await;
        }
    }

    fn shuffle<T>(&self, items: &mut [T]) {
        if let Some(rng) = &self.adversary {
            rng.lock().unwrap_or_else(|e| e.into_inner()).shuffle(items);
        }
    }

    /// One page of the space's records whose sort key starts with `prefix`, in key order.
    async fn sort_key_prefix(
        &self,
        space: &str,
        prefix: &str,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError> {
        let pk = super::space_pk(space);
        self.query(
            page,
            None,
            |state, cursor| state.next_with_prefix(&pk, prefix, cursor),
            String::clone,
            |t| Some(t.to_owned()),
        )
        .await
    }

    /// Reads the records of a query one at a time: each step takes the first record after
    /// the cursor (`next`), so records committed meanwhile may or may not be seen, as in
    /// DynamoDB. A page ends at 1 MB or after `limit` records.
    async fn query<K>(
        &self,
        page: Option<PageToken>,
        limit: Option<usize>,
        next: impl Fn(&State, Option<&K>) -> Option<(K, Record)>,
        encode: impl Fn(&K) -> String,
        decode: impl Fn(&str) -> Option<K>,
    ) -> Result<Page, StoreError> {
        let mut cursor = match page {
            Some(PageToken(t)) => Some(
                decode(&t).ok_or_else(|| StoreError::Rejected(format!("bad page token {t:?}")))?,
            ),
            None => None,
        };
        let mut records = Vec::new();
        let mut bytes = 0;
        loop {
            self.interleave().await;
            let found = next(&self.lock(), cursor.as_ref());
            let Some((position, record)) = found else {
                return Ok(Page {
                    records,
                    next: None,
                });
            };
            bytes += record_bytes(&record);
            records.push(record);
            cursor = Some(position);
            if bytes >= PAGE_BYTES || limit.is_some_and(|l| records.len() >= l) {
                return Ok(Page {
                    records,
                    next: cursor.as_ref().map(|c| PageToken(encode(c))),
                });
            }
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn limits(&self) -> Limits {
        self.limits
    }

    async fn get(&self, addresses: &[Address]) -> Result<Vec<Option<Record>>, StoreError> {
        let mut out = Vec::with_capacity(addresses.len());
        for address in addresses {
            self.interleave().await;
            out.push(self.lock().items.get(&item_key(address)).cloned());
        }
        Ok(out)
    }

    async fn changes(
        &self,
        space: &str,
        after: Version,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError> {
        let pk = super::space_pk(space);
        self.query(
            page,
            None,
            |state, cursor| state.next_change(&pk, after, cursor),
            |(v, sk)| format!("{v}/{sk}"),
            |t| {
                let (v, sk) = t.split_once('/')?;
                Some((v.parse().ok()?, sk.to_owned()))
            },
        )
        .await
    }

    async fn entities(
        &self,
        space: &str,
        query: &EntityQuery,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError> {
        let pk = super::space_pk(space);
        let prefix = format!("{ENTITY_PREFIX}{}", query.prefix);
        let selected = |sk: &str| {
            sk.strip_prefix(ENTITY_PREFIX)
                .is_some_and(|key| query.selects(key))
        };
        // The first selected record after the cursor: past the keys before the query's start
        // once, at its first step.
        let next = |state: &State, cursor: Option<&String>| {
            let mut found = state.next_with_prefix(&pk, &prefix, cursor);
            while let Some((sk, _)) = found.as_ref().filter(|(sk, _)| !selected(sk)) {
                let sk = sk.clone();
                found = state.next_with_prefix(&pk, &prefix, Some(&sk));
            }
            found
        };
        let mut page = self
            .query(page, query.page_limit, next, String::clone, |t| {
                Some(t.to_owned())
            })
            .await?;
        if query.keys_only {
            for record in &mut page.records {
                if let Record::Entity(e) = record {
                    e.value = e.value.as_ref().map(|_| String::new());
                }
            }
        }
        Ok(page)
    }

    async fn commit_logs(&self, space: &str, page: Option<PageToken>) -> Result<Page, StoreError> {
        self.sort_key_prefix(space, COMMIT_LOG_PREFIX, page).await
    }

    async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut keys: Vec<ItemKey> = writes.iter().map(|w| item_key(&w.address())).collect();
        let distinct: HashSet<&ItemKey> = keys.iter().collect();
        if distinct.len() != keys.len() {
            return Err(StoreError::Rejected(
                "a transaction touches the same record twice".into(),
            ));
        }
        let limits = self.limits();
        if writes.len() > limits.max_write_actions {
            return Err(StoreError::Rejected(format!(
                "{} actions in one transaction",
                writes.len()
            )));
        }
        let mut total = 0;
        for w in &writes {
            if let Write::Put { record, .. } = w {
                let bytes = record_bytes(record);
                if bytes > limits.max_record_bytes {
                    return Err(StoreError::Rejected("record too large".into()));
                }
                total += bytes;
            }
        }
        if total > limits.max_write_bytes {
            return Err(StoreError::Rejected(format!(
                "{total} bytes in one transaction"
            )));
        }
        self.interleave().await;
        {
            let mut state = self.lock();
            if let Some(k) = keys.iter().find(|k| state.locked.contains(*k)) {
                return Err(StoreError::Conflict(format!(
                    "{k:?} is in another transaction"
                )));
            }
            for (w, k) in writes.iter().zip(&keys) {
                let expect = match w {
                    Write::Put { expect, .. } | Write::Check { expect, .. } => expect,
                };
                if !expect.holds(state.items.get(k)) {
                    return Err(StoreError::Conflict(format!(
                        "condition {expect:?} failed on {k:?}"
                    )));
                }
            }
            if let Some(history) = &mut state.history {
                history.push(
                    writes
                        .iter()
                        .filter_map(|w| match w {
                            Write::Put { record, .. } => Some(record.clone()),
                            Write::Check { .. } => None,
                        })
                        .collect(),
                );
            }
            if self.adversary.is_none() {
                for (w, key) in writes.into_iter().zip(keys) {
                    if let Write::Put { record, .. } = w {
                        state.put(key, record);
                    }
                }
                return Ok(());
            }
            state.locked.extend(keys.iter().cloned());
        }
        let mut steps: Vec<(ItemKey, Write)> = keys.drain(..).zip(writes).collect();
        self.shuffle(&mut steps);
        for (key, write) in steps {
            self.interleave().await;
            self.straggle().await;
            let mut state = self.lock();
            state.locked.remove(&key);
            if let Write::Put { record, .. } = write {
                state.put(key, record);
            }
        }
        Ok(())
    }
}
