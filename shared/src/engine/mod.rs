//! The protocol engine: push and pull over a [`Store`], as the protocol notes and the
//! consistency design describe them.

mod listeners;
mod pull;
mod push;
mod queue;

pub use push::{PushOutcome, Rejection};
pub use queue::{PushPath, PushQueue, QueueError, QueuedOutcome, QueuedPush};

use std::sync::Arc;
use std::time::Duration;

use crate::access::{Access, Operation, PolicyRead, SpaceRequest};
use crate::app::App;
use crate::error::Kind;
use crate::pokes::Poker;
use crate::protocol::{ProtocolError, VersionType, PROTOCOL_VERSION};
use crate::store::{Store, StoreError};

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The schema version clients must send, overriding the application's
    /// ([`App::schema_version`]); `None`: the application's, if any.
    pub schema_version: Option<String>,
    /// Attempts a push or pull makes against conflicts or partly visible commits before it
    /// answers 503 (the client then retries with its own backoff).
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with full jitter.
    pub retry_base_delay: Duration,
    /// Largest retry delay.
    pub retry_max_delay: Duration,
    /// Slots in each space's ring of commit logs: how many recent commits a reader checks
    /// for visibility. Older commits are assumed fully visible, which holds as long as a
    /// DynamoDB transaction finishes becoming visible before this many later commits of the
    /// same space have completed (they take at least one request each, and a transaction's
    /// commit phase takes well under a second).
    pub commit_log_slots: u32,
    /// Most connections listening to one space's pokes; more are refused (they fall back on
    /// the client's `pullInterval`). Bounds the listeners record every push reads.
    pub max_listeners: usize,
    /// Most connections one user may have listening to one space: a further one replaces
    /// that user's oldest (most often one that closed without its `$disconnect`), so that no
    /// user can take the space's [`EngineConfig::max_listeners`] slots from the others.
    pub max_listeners_per_user: usize,
    /// How long a poke connection stays recorded: API Gateway closes every WebSocket after
    /// 2 hours, and `$disconnect` is best effort, so an entry expires then by itself.
    pub connection_ttl: Duration,
    /// The wall clock, for expiries.
    pub clock: Clock,
    /// How long a deletion's tombstone is kept. A pull cookie issued longer ago than this
    /// (less a day of margin, since the tombstones it needs may be gone) gets a reset: `clear`
    /// and the whole space.
    pub tombstone_ttl: Duration,
    /// How long a client and its client group are kept after they last pushed. After that
    /// they are unknown: a client whose next mutation id is not 1 gets
    /// `ClientStateNotFound`.
    pub client_ttl: Duration,
    /// Most distinct clients one push may carry mutations of; a push with more answers 400
    /// before anything is read. Every commit of a push reads and writes each of its clients,
    /// so this bounds a push's cost per mutation; a real client group has a handful.
    pub max_push_clients: usize,
    /// Most bytes of patch in one pull response. A larger sync is answered in pages, each
    /// cut between commits, the rest marked as to come ([`crate::protocol::SYNC_KEY`]). The
    /// default leaves room for Lambda's 6 MB response limit after base64 (a gzip response
    /// is binary, and base64 adds a third).
    pub pull_budget_bytes: usize,
    /// Which path pushes take to their commit: directly, through the queue
    /// ([`Engine::with_queue`]), or chosen per space. Without a queue, every push commits
    /// directly.
    pub push_path: PushPath,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            schema_version: None,
            max_attempts: 12,
            retry_base_delay: Duration::from_millis(5),
            retry_max_delay: Duration::from_millis(400),
            commit_log_slots: 64,
            max_listeners: 1_000,
            max_listeners_per_user: 32,
            connection_ttl: Duration::from_secs(2 * 60 * 60),
            clock: Clock::default(),
            pull_budget_bytes: 4 * 1024 * 1024,
            max_push_clients: 64,
            tombstone_ttl: Duration::from_secs(30 * DAY),
            client_ttl: Duration::from_secs(180 * DAY),
            push_path: PushPath::Direct,
        }
    }
}

/// Seconds in a day.
pub(crate) const DAY: u64 = 24 * 60 * 60;

/// Seconds since the Unix epoch, from the system clock unless a test sets another.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// A clock reading `now`.
    pub fn new(now: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Clock(Arc::new(now))
    }

    /// The current time, in seconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        })
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// Who is calling, and on which space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The authenticated user.
    pub user: String,
    /// The space (the `spaceID` query parameter).
    pub space: String,
}

/// Why a push or pull failed; each maps to one HTTP status.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    /// The caller may not use this client group or client (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The application's space policy refused the caller this space (403).
    #[error("{0}")]
    Forbidden(String),
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// A temporary failure; the client retries (503).
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a refused store request (500).
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(why) | StoreError::Unavailable(why) => {
                EngineError::Unavailable(why)
            }
            StoreError::Rejected(why) => EngineError::Internal(why),
        }
    }
}

/// Push and pull for one application over one store.
#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn Store>,
    app: App,
    config: EngineConfig,
    poker: Option<Arc<dyn Poker>>,
    queue: Option<Arc<dyn PushQueue>>,
}

/// What went wrong in one attempt.
enum Attempt {
    /// Another commit interfered or is partly visible: try again, reading ahead the keys
    /// this attempt read.
    Retry { why: String, read: Vec<String> },
    /// Give up with this error.
    Fail(EngineError),
}

impl Attempt {
    /// Try again, because of `why`.
    fn retry(why: impl Into<String>) -> Self {
        Attempt::Retry {
            why: why.into(),
            read: Vec::new(),
        }
    }

    /// This outcome, with the keys the attempt read for the next to read ahead.
    fn reading(self, keys: Vec<String>) -> Self {
        match self {
            Attempt::Retry { why, .. } => Attempt::Retry { why, read: keys },
            fail => fail,
        }
    }
}

impl From<StoreError> for Attempt {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(why) => Attempt::retry(why),
            other => Attempt::Fail(other.into()),
        }
    }
}

impl Engine {
    /// An engine running `app` over `store`.
    pub fn new(store: Arc<dyn Store>, app: App, mut config: EngineConfig) -> Self {
        if config.schema_version.is_none() {
            config.schema_version = app.schema_version.clone();
        }
        Engine {
            store,
            app,
            config,
            poker: None,
            queue: None,
        }
    }

    /// The engine clock's time, in seconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        self.config.clock.now()
    }

    /// Pokes each space's listeners through `poker` after every push that committed, never
    /// before its commits are visible.
    pub fn with_poker(mut self, poker: Arc<dyn Poker>) -> Self {
        self.poker = Some(poker);
        self
    }

    /// Asks the application's space policy whether `caller` may do `operation` with the
    /// space; nothing else is read or written before it says yes.
    pub async fn authorize(
        &self,
        caller: &Caller,
        operation: Operation,
    ) -> Result<(), EngineError> {
        self.authorize_reading(caller, operation).await.map(drop)
    }

    /// [`Engine::authorize`], answering what the policy read to allow.
    async fn authorize_reading(
        &self,
        caller: &Caller,
        operation: Operation,
    ) -> Result<Vec<PolicyRead>, EngineError> {
        let request = SpaceRequest::new(&caller.user, &caller.space, operation, self.store.clone());
        let answer = self.app.access(request.clone()).await;
        match answer {
            Ok(Access::Allow) => Ok(request.reads()),
            Ok(Access::Deny(reason)) => Err(EngineError::Forbidden(reason)),
            Err(e) => Err(match e.0 {
                Kind::Store(e) => e.into(),
                Kind::Retry(why) => EngineError::Unavailable(why),
                Kind::Rejected(reason) => EngineError::Forbidden(reason),
            }),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or has had to start again
    /// [`EngineConfig::max_attempts`] times (503), waiting longer before each new start
    /// (counted in metric `retries`). Each attempt gets the keys the one before it read.
    async fn retrying<T, F, Fut>(
        &self,
        retries: &'static str,
        mut attempt: F,
    ) -> Result<T, EngineError>
    where
        F: FnMut(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Attempt>>,
    {
        let mut read_ahead = Vec::new();
        let mut failures = 0;
        loop {
            match attempt(read_ahead).await {
                Ok(done) => return Ok(done),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry { why, read }) => {
                    metrics::counter!(retries).increment(1);
                    failures += 1;
                    tracing::debug!(attempt = failures, %why, "starting again");
                    if failures >= self.config.max_attempts {
                        return Err(EngineError::Unavailable(format!(
                            "gave up after {failures} attempts: {why}"
                        )));
                    }
                    self.back_off(failures).await;
                    read_ahead = read;
                }
            }
        }
    }

    /// Waits before attempt `attempt` (1-based), exponentially with full jitter so that
    /// colliding pushers spread out.
    async fn back_off(&self, attempt: u32) {
        let cap = self
            .config
            .retry_base_delay
            .saturating_mul(1 << attempt.min(16))
            .min(self.config.retry_max_delay);
        let micros = fastrand::u64(0..=cap.as_micros() as u64);
        tokio::time::sleep(Duration::from_micros(micros)).await;
    }

    /// The `VersionNotSupported` error for a request of protocol `version` (of `kind`) and
    /// `schema_version`, if either is not the one this server speaks.
    pub fn version_error(
        &self,
        version: u64,
        kind: VersionType,
        schema_version: &str,
    ) -> Option<ProtocolError> {
        let version_type = if version != PROTOCOL_VERSION {
            kind
        } else if self
            .config
            .schema_version
            .as_deref()
            .is_some_and(|expected| expected != schema_version)
        {
            VersionType::Schema
        } else {
            return None;
        };
        Some(ProtocolError::VersionNotSupported { version_type })
    }
}

/// Longest client or client group id accepted.
const MAX_ID_BYTES: usize = 512;

/// Checks a client or client group id before it becomes part of a key.
fn validate_id(what: &str, id: &str) -> Result<(), EngineError> {
    if id.is_empty() || id.len() > MAX_ID_BYTES || id.chars().any(char::is_control) {
        return Err(EngineError::BadRequest(format!(
            "{what} must be 1 to {MAX_ID_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

/// Whether the client group read is live at `now`: absent or expired, it is unknown (and so
/// are its clients), whoever had it. A live group belongs to the user who first pushed with
/// it, in the space it pushed to: anyone else is refused.
fn live_group(
    group: Option<&crate::store::Group>,
    caller: &Caller,
    now: u64,
) -> Result<bool, Attempt> {
    match group {
        Some(g) if !crate::store::expired(g.expires_at, now) => {
            check_group(g, caller)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// A client group belongs to the user who first pushed with it, in the space it pushed to
/// (the caller checks that it has not expired).
fn check_group(group: &crate::store::Group, caller: &Caller) -> Result<(), Attempt> {
    if group.user != caller.user {
        return Err(Attempt::Fail(EngineError::Unauthorized(format!(
            "client group {:?} belongs to another user",
            group.id
        ))));
    }
    if group.space != caller.space {
        return Err(Attempt::Fail(EngineError::Unauthorized(format!(
            "client group {:?} belongs to another space",
            group.id
        ))));
    }
    Ok(())
}
