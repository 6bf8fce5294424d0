//! The names of the metrics the engine and the HTTP layer record through the `metrics`
//! facade. In Lambda they go out as CloudWatch Embedded Metric Format (namespace
//! `ReplicacheDynamoDB`, dimension `function`); elsewhere nothing records them unless the
//! application installs a recorder.

/// Request latency (milliseconds; label `operation`: push, pull, poke).
pub(crate) const LATENCY_MS: &str = "latency_ms";
/// Answers with status 503 (label `operation`).
pub(crate) const UNAVAILABLE: &str = "unavailable";
/// Answers with a status of 500 or more (label `operation`).
pub(crate) const ERRORS_5XX: &str = "errors_5xx";
/// Bytes of a pull's answer before compression.
pub(crate) const PULL_BYTES: &str = "pull_bytes";
/// Bytes of a compressed answer.
pub(crate) const BYTES_COMPRESSED: &str = "bytes_compressed";
/// Pages of incomplete syncs answered.
pub(crate) const PULL_PAGES: &str = "pull_pages";
/// Pulls answered with a reset (`clear` and the whole space).
pub(crate) const PULL_RESETS: &str = "pull_resets";
/// Pull attempts repeated because a commit was partly visible.
pub(crate) const PULL_RETRIES: &str = "pull_retries";
/// Mutations applied.
pub(crate) const MUTATIONS_APPLIED: &str = "mutations_applied";
/// Mutations rejected (by the application, or too large to commit).
pub(crate) const MUTATIONS_REJECTED: &str = "mutations_rejected";
/// Push attempts repeated after a conflicting commit.
pub(crate) const PUSH_CONFLICTS: &str = "push_conflicts";
/// Changes of a space's poke listeners repeated after a conflicting one.
pub(crate) const LISTENER_CONFLICTS: &str = "listener_conflicts";
/// Pushes sent to the queue (the committer's commits count as any push's).
pub(crate) const PUSHES_QUEUED: &str = "pushes_queued";
/// Queued pushes a commit left out for good (answered through pulls, or logged).
pub(crate) const QUEUED_PUSHES_STOPPED: &str = "queued_pushes_stopped";
/// Pushes answered `ClientStateNotFound`.
pub(crate) const CLIENT_STATE_NOT_FOUND: &str = "client_state_not_found";
/// Execution environments started (Lambda cold starts).
#[cfg(feature = "lambda")]
pub(crate) const COLD_STARTS: &str = "cold_starts";
