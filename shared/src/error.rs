//! The error mutators and space policies return.
//!
//! Application code makes exactly one kind of error, a rejection ([`reject`]). Everything
//! else an [`Error`] can carry (a read that must be retried, a store failure) comes from the
//! engine and reaches application code only to be passed on with `?`: it cannot be made
//! outside this crate, and swallowing it changes nothing, because the transaction remembers
//! it and the engine acts on it whatever the mutator returns.

use std::fmt;

use crate::store::StoreError;

/// The result of mutators, space policies and [`Tx`](crate::Tx) calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a mutator or space policy did not succeed.
///
/// Make one with [`reject`]; pass on the ones [`Tx`](crate::Tx) calls return with `?`.
#[derive(Clone, PartialEq, Eq)]
pub struct Error(pub(crate) Kind);

/// What an [`Error`] is, for the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The application refused: the mutation is skipped (its lmid still advances), or the
    /// space is refused (403).
    Rejected(String),
    /// A read saw a state that is not one snapshot; the engine re-runs the push.
    Retry(String),
    /// The store failed for now; the client retries later (503).
    Store(StoreError),
}

/// Rejects a mutation (or, from a space policy, refuses the space) for `reason`.
///
/// A rejected mutation is skipped for good: its writes are dropped, its client's last
/// mutation id still advances (so that the client moves on), and the reason is logged.
///
/// ```
/// use replicache_dynamodb::{reject, Result};
///
/// fn check_order(order: i64) -> Result<u64> {
///     u64::try_from(order).map_err(|_| reject("order must be a non-negative integer"))
/// }
/// assert!(check_order(-1).unwrap_err().is_rejection());
/// assert_eq!(check_order(3), Ok(3));
/// ```
pub fn reject(reason: impl fmt::Display) -> Error {
    Error(Kind::Rejected(reason.to_string()))
}

impl Error {
    /// Whether this is a rejection made with [`reject`] (as opposed to an engine outcome
    /// passing through).
    pub fn is_rejection(&self) -> bool {
        matches!(self.0, Kind::Rejected(_))
    }

    pub(crate) fn retry(why: impl Into<String>) -> Self {
        Error(Kind::Retry(why.into()))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(why) => Error(Kind::Retry(why)),
            other => Error(Kind::Store(other)),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Rejected(reason) => f.write_str(reason),
            Kind::Retry(why) => write!(f, "inconsistent read, retrying: {why}"),
            Kind::Store(e) => write!(f, "{e}"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::error::Error for Error {}
