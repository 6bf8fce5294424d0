//! A store wrapper that fails, as DynamoDB and the network between do: calls that fail before
//! they reach the store, throttling, slow responses, and writes that were applied although
//! the caller is told they failed (ambiguous commits, as when a timeout hides a success). The
//! faults are drawn from a seeded generator, so on a single-threaded runtime a schedule
//! replays exactly. Entity reads can also be made to fail on demand ([`FaultyStore::fail_reads`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use replicache_dynamodb::store::{
    Address, EntityQuery, Limits, Page, PageToken, Record, Store, StoreError, Version, Write,
};

/// How often each fault strikes: chances per call, from 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// A call fails before it reaches the store (a network error, a 500 from DynamoDB):
    /// [`StoreError::Unavailable`], nothing done.
    pub fail: f64,
    /// A call is throttled (`ThrottlingException`, `ProvisionedThroughputExceeded`):
    /// [`StoreError::Unavailable`], nothing done.
    pub throttle: f64,
    /// A write is applied, then the caller is told it timed out ([`StoreError::Unavailable`]).
    pub ambiguous: f64,
    /// A write is applied, then the caller is told it conflicted ([`StoreError::Conflict`]),
    /// as a retry of a request that had in fact succeeded would be.
    pub ambiguous_conflict: f64,
    /// A write is sent, and the caller is told it timed out while the write is still going on
    /// (it may still fail on its own conditions, or become visible later, item by item).
    pub in_flight: f64,
    /// A call is slowed by up to [`Faults::max_delay`], before or after it reaches the store.
    pub slow: f64,
    /// The longest delay of a slow call.
    pub max_delay: Duration,
}

impl Faults {
    /// No faults.
    pub const NONE: Faults = Faults {
        fail: 0.0,
        throttle: 0.0,
        ambiguous: 0.0,
        ambiguous_conflict: 0.0,
        in_flight: 0.0,
        slow: 0.0,
        max_delay: Duration::ZERO,
    };
}

/// How many faults of each kind were injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Calls that reached the wrapper.
    pub calls: usize,
    /// Calls failed before reaching the store.
    pub failed: usize,
    /// Calls throttled.
    pub throttled: usize,
    /// Writes applied but reported as timed out.
    pub ambiguous: usize,
    /// Writes applied but reported as conflicts.
    pub ambiguous_conflicts: usize,
    /// Writes reported as timed out while still going on.
    pub in_flight: usize,
    /// Of those, the ones that were then applied.
    pub in_flight_applied: usize,
    /// Calls slowed.
    pub slowed: usize,
}

impl std::ops::AddAssign for FaultCounts {
    fn add_assign(&mut self, o: Self) {
        self.calls += o.calls;
        self.failed += o.failed;
        self.throttled += o.throttled;
        self.ambiguous += o.ambiguous;
        self.ambiguous_conflicts += o.ambiguous_conflicts;
        self.in_flight += o.in_flight;
        self.in_flight_applied += o.in_flight_applied;
        self.slowed += o.slowed;
    }
}

/// What happens to one call.
enum Fate {
    Fail,
    Throttle,
    Pass,
}

/// What happens to one write that reached the store.
enum Outcome {
    Honest,
    Ambiguous,
    AmbiguousConflict,
    InFlight,
}

/// Wraps a store and injects [`Faults`] into its calls, drawn from a seeded generator, until
/// [`FaultyStore::heal`]; counts them ([`FaultyStore::counts`]).
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    failing_reads: AtomicBool,
    conflict_next_write: AtomicBool,
    faults: Mutex<Faults>,
    rng: Mutex<fastrand::Rng>,
    counts: Mutex<FaultCounts>,
    in_flight_applied: Arc<AtomicUsize>,
    in_flight: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl FaultyStore {
    /// Wraps `inner`, healthy.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self::with_faults(inner, Faults::NONE, 0)
    }

    /// Wraps `inner`, injecting `faults` drawn with `seed`.
    pub fn with_faults(inner: Arc<dyn Store>, faults: Faults, seed: u64) -> Self {
        FaultyStore {
            inner,
            failing_reads: AtomicBool::new(false),
            conflict_next_write: AtomicBool::new(false),
            faults: Mutex::new(faults),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            counts: Mutex::default(),
            in_flight_applied: Arc::default(),
            in_flight: Mutex::default(),
        }
    }

    /// Turns failing entity reads on or off.
    pub fn fail_reads(&self, on: bool) {
        self.failing_reads.store(on, Ordering::SeqCst);
    }

    /// Makes the next write fail with a conflict, without applying it, as when another
    /// push commits first.
    pub fn conflict_next_write(&self) {
        self.conflict_next_write.store(true, Ordering::SeqCst);
    }

    /// Stops injecting faults (the ones under way finish as they started).
    pub fn heal(&self) {
        *self.faults.lock().unwrap() = Faults::NONE;
    }

    /// The faults injected so far.
    pub fn counts(&self) -> FaultCounts {
        FaultCounts {
            in_flight_applied: self.in_flight_applied.load(Ordering::SeqCst),
            ..*self.counts.lock().unwrap()
        }
    }

    /// Waits for the writes still going on after their caller was told they failed.
    pub async fn settle(&self) {
        loop {
            let pending = std::mem::take(&mut *self.in_flight.lock().unwrap());
            if pending.is_empty() {
                return;
            }
            for task in pending {
                task.await.expect("an in-flight write");
            }
        }
    }

    fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.rng.lock().unwrap().f64() < p
    }

    fn count(&self, f: impl FnOnce(&mut FaultCounts)) {
        f(&mut self.counts.lock().unwrap());
    }

    /// A random delay, if this call is slow.
    fn delay(&self, faults: &Faults) -> Option<Duration> {
        if !self.chance(faults.slow) || faults.max_delay.is_zero() {
            return None;
        }
        self.count(|c| c.slowed += 1);
        let micros = self
            .rng
            .lock()
            .unwrap()
            .u64(0..=faults.max_delay.as_micros() as u64);
        Some(Duration::from_micros(micros))
    }

    /// Decides a call's fate, counting it; sleeps first if it is slow on the way there.
    /// Returns the delay to apply on the way back, if any.
    async fn enter(&self, what: &str) -> Result<Option<Duration>, StoreError> {
        let faults = *self.faults.lock().unwrap();
        self.count(|c| c.calls += 1);
        let fate = if self.chance(faults.fail) {
            Fate::Fail
        } else if self.chance(faults.throttle) {
            Fate::Throttle
        } else {
            Fate::Pass
        };
        let delay = self.delay(&faults);
        let (before, after) = match delay {
            Some(d) if self.rng.lock().unwrap().bool() => (Some(d), None),
            other => (None, other),
        };
        if let Some(d) = before {
            tokio::time::sleep(d).await;
        }
        match fate {
            Fate::Fail => {
                self.count(|c| c.failed += 1);
                Err(StoreError::Unavailable(format!(
                    "injected: {what} failed on its way (connection reset)"
                )))
            }
            Fate::Throttle => {
                self.count(|c| c.throttled += 1);
                Err(StoreError::Unavailable(format!(
                    "injected: ThrottlingException on {what}"
                )))
            }
            Fate::Pass => Ok(after),
        }
    }

    async fn leave<T>(&self, after: Option<Duration>, result: T) -> T {
        if let Some(d) = after {
            tokio::time::sleep(d).await;
        }
        result
    }
}

#[async_trait]
impl Store for FaultyStore {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn get(&self, addresses: &[Address]) -> Result<Vec<Option<Record>>, StoreError> {
        let entity = addresses
            .iter()
            .any(|a| matches!(a, Address::Entity { .. }));
        if entity && self.failing_reads.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "injected: reads are failing".into(),
            ));
        }
        let after = self.enter("BatchGetItem").await?;
        let result = self.inner.get(addresses).await;
        self.leave(after, result).await
    }

    async fn changes(
        &self,
        space: &str,
        after: Version,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError> {
        let delay = self.enter("Query (changes)").await?;
        let result = self.inner.changes(space, after, page).await;
        self.leave(delay, result).await
    }

    async fn entities(
        &self,
        space: &str,
        query: &EntityQuery,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError> {
        let after = self.enter("Query (entities)").await?;
        let result = self.inner.entities(space, query, page).await;
        self.leave(after, result).await
    }

    async fn commit_logs(&self, space: &str, page: Option<PageToken>) -> Result<Page, StoreError> {
        let after = self.enter("Query (commit logs)").await?;
        let result = self.inner.commit_logs(space, page).await;
        self.leave(after, result).await
    }

    async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let after = self.enter("TransactWriteItems").await?;
        if self.conflict_next_write.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Conflict(
                "injected: another push committed first".into(),
            ));
        }
        let faults = *self.faults.lock().unwrap();
        let outcome = if self.chance(faults.in_flight) {
            Outcome::InFlight
        } else if self.chance(faults.ambiguous) {
            Outcome::Ambiguous
        } else if self.chance(faults.ambiguous_conflict) {
            Outcome::AmbiguousConflict
        } else {
            Outcome::Honest
        };
        if let Outcome::InFlight = outcome {
            self.count(|c| c.in_flight += 1);
            let (inner, applied) = (self.inner.clone(), self.in_flight_applied.clone());
            let task = tokio::spawn(async move {
                if inner.write(writes).await.is_ok() {
                    applied.fetch_add(1, Ordering::SeqCst);
                }
            });
            self.in_flight.lock().unwrap().push(task);
            // Let the write start before the caller hears it timed out.
            tokio::task::yield_now().await;
            return self
                .leave(
                    after,
                    Err(StoreError::Unavailable(
                        "injected: TransactWriteItems timed out (still going on)".into(),
                    )),
                )
                .await;
        }
        let result = self.inner.write(writes).await;
        let result = match (result, outcome) {
            (Ok(()), Outcome::Ambiguous) => {
                self.count(|c| c.ambiguous += 1);
                Err(StoreError::Unavailable(
                    "injected: TransactWriteItems timed out (it was applied)".into(),
                ))
            }
            (Ok(()), Outcome::AmbiguousConflict) => {
                self.count(|c| c.ambiguous_conflicts += 1);
                Err(StoreError::Conflict(
                    "injected: TransactionConflict on a retry of an applied write".into(),
                ))
            }
            (result, _) => result,
        };
        self.leave(after, result).await
    }
}
