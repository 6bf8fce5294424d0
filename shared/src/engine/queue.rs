//! The queued path for hot spaces: a push is checked, sent to a queue that keeps each space's
//! pushes in order (an SQS FIFO queue, one message group per space), and answered 200; a
//! committer takes the space's pushes from the queue in order and commits several client
//! groups' mutations at once ([`Engine::commit_queued`]), with exactly the conditions of a
//! direct push, so that nothing rests on the queue delivering once or in order.
//!
//! The protocol allows it: Replicache needs only a 200 from a push, and keeps a mutation
//! pending (pushing it again with its next push) until a pull shows its client's last
//! mutation id past it. Where a commit finds the server has no state for a queued push's
//! client, the push cannot be answered any more: its client group is marked refused, and
//! its pulls and pushes are answered `ClientStateNotFound` (`docs/consistency.md`, "Queued
//! pushes").

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::push::{Pending, Route, Stop};
use super::{Caller, Engine, EngineError, PushOutcome};
use crate::protocol::{PushRequest, VersionType};
use crate::store::SpaceMeta;
use crate::telemetry_names as names;

/// Which path pushes take to their commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PushPath {
    /// Every push commits in the request that brought it.
    #[default]
    Direct,
    /// Every push that fits a message goes to the queue.
    Queued,
    /// A space's pushes go to the queue while its commits meet contention (and for a minute
    /// after), and commit directly otherwise.
    Auto,
}

impl std::str::FromStr for PushPath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "direct" => Ok(PushPath::Direct),
            "queued" => Ok(PushPath::Queued),
            "auto" => Ok(PushPath::Auto),
            other => Err(format!("{other:?} is not direct, queued or auto")),
        }
    }
}

/// A push on its way through the queue: what the committer needs to commit it as the push
/// function would have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedPush {
    /// The authenticated user who pushed.
    pub user: String,
    /// The space pushed to: the message group, so that a space's pushes stay in order.
    pub space: String,
    /// The push as the client sent it.
    pub push: PushRequest,
}

impl QueuedPush {
    /// The message's body.
    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("a push serializes")
    }

    /// The deduplication id of a message with `body`: the same push sent twice within the
    /// queue's window is taken once (a client's retry of a push whose answer it lost, say).
    pub fn deduplication_id(body: &str) -> String {
        crate::digest::sha256_hex(body, 32)
    }
}

/// Where queued pushes go: the push function sends them, a committer commits them.
#[async_trait]
pub trait PushQueue: Send + Sync {
    /// Sends `push` with its space as the message group; an error leaves the push to commit
    /// directly.
    async fn send(&self, push: &QueuedPush) -> Result<(), QueueError>;

    /// The largest message body the queue takes, in bytes; a larger push commits directly.
    fn max_body_bytes(&self) -> usize;
}

/// Why a push could not be queued.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct QueueError(pub String);

/// What committing a batch of queued pushes did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueuedOutcome {
    /// What the commits did, summed over the pushes.
    pub outcome: PushOutcome,
    /// Pushes that stopped without being committed, by their index in the batch, with why:
    /// they are answered through pulls (`ClientStateNotFound`) or not at all (a push that
    /// may not be committed, such as one of another user's client group).
    pub stopped: Vec<(usize, String)>,
}

impl Engine {
    /// Sends pushes to `queue` as [`crate::engine::EngineConfig::push_path`] says.
    pub fn with_queue(mut self, queue: std::sync::Arc<dyn PushQueue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Commits `pushes`, taken in order from the queue, all of one space: as many client
    /// groups' mutations in each commit as the store's transactions hold. A push that can
    /// never commit (a malformed or refused one) is left out and logged, never failed: only
    /// an error that may pass (the store unavailable) fails the batch, for the queue to
    /// deliver again.
    pub async fn commit_queued(&self, pushes: &[QueuedPush]) -> Result<QueuedOutcome, EngineError> {
        let Some(first) = pushes.first() else {
            return Ok(QueuedOutcome::default());
        };
        let callers: Vec<Caller> = pushes
            .iter()
            .map(|p| Caller {
                user: p.user.clone(),
                space: first.space.clone(),
            })
            .collect();
        let mut stopped = Vec::new();
        let mut pending = Vec::new();
        let mut indexes = Vec::new();
        for (index, (push, caller)) in pushes.iter().zip(&callers).enumerate() {
            match self.checked(push, caller) {
                Ok(p) => {
                    pending.push(p);
                    indexes.push(index);
                }
                Err(why) => stopped.push((index, why)),
            }
        }
        let done = match pending.is_empty() {
            true => Default::default(),
            false => self.commit_pushes(&pending, Route::Queued).await?,
        };
        for (i, why) in done.stopped {
            let why = match why {
                Stop::Protocol(e) => format!("{e:?}"),
                Stop::Error(e) => e.to_string(),
            };
            stopped.push((indexes[i], why));
        }
        stopped.sort();
        for (i, why) in &stopped {
            warn!(space = first.space.as_str(), push = i, %why, "queued push not committed");
            metrics::counter!(names::QUEUED_PUSHES_STOPPED).increment(1);
        }
        Ok(QueuedOutcome {
            outcome: done.outcome,
            stopped,
        })
    }

    /// A queued push as a commit takes it, if it still passes what the push function
    /// checked before queuing it (the settings may have changed since).
    fn checked<'a>(&self, push: &'a QueuedPush, caller: &'a Caller) -> Result<Pending<'a>, String> {
        let req = &push.push;
        if push.space != caller.space {
            return Err("a push of another space in the batch".to_owned());
        }
        if let Some(e) =
            self.version_error(req.push_version, VersionType::Push, &req.schema_version)
        {
            return Err(format!("{e:?}"));
        }
        super::validate_id("clientGroupID", &req.client_group_id).map_err(|e| e.to_string())?;
        let clients = self.distinct_clients(req).map_err(|e| e.to_string())?;
        Ok(Pending {
            caller,
            req,
            clients,
        })
    }

    /// The route of a push: it may go to the queue if pushes may take one.
    pub(super) fn route(&self) -> Route {
        match (&self.queue, self.config.push_path) {
            (Some(_), PushPath::Queued | PushPath::Auto) => Route::MayQueue,
            _ => Route::Direct,
        }
    }

    /// Whether `push` fits a message of the queue.
    pub(super) fn fits_queue(&self, push: &Pending<'_>) -> bool {
        let Some(queue) = &self.queue else {
            return false;
        };
        message(push.caller, push.req).body().len() <= queue.max_body_bytes()
    }

    /// Whether a push to a space whose record reads `meta` at `now` takes the queue.
    pub(super) fn takes_queue(&self, meta: Option<&SpaceMeta>, now: u64) -> bool {
        match self.config.push_path {
            PushPath::Direct => false,
            PushPath::Queued => true,
            PushPath::Auto => meta.and_then(|m| m.hot_until).is_some_and(|at| at > now),
        }
    }

    /// Sends the push to the queue.
    pub(super) async fn enqueue(
        &self,
        caller: &Caller,
        req: &PushRequest,
    ) -> Result<(), QueueError> {
        let queue = self
            .queue
            .as_ref()
            .ok_or_else(|| QueueError("no queue".to_owned()))?;
        queue.send(&message(caller, req)).await
    }
}

/// The message of `req` from `caller`.
fn message(caller: &Caller, req: &PushRequest) -> QueuedPush {
    QueuedPush {
        user: caller.user.clone(),
        space: caller.space.clone(),
        push: req.clone(),
    }
}
