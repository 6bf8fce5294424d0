//! The storage trait the engine runs on, and its records: for store implementers and tests.
//! Applications never need this module; they read and write through [`Tx`](crate::Tx).
//!
//! The trait is shaped after DynamoDB's primitives so that the DynamoDB implementation is a
//! direct translation and the in-memory one can reproduce DynamoDB's weakest guarantees:
//!
//! - [`Store::get`] is one `BatchGetItem` with `ConsistentRead`: each item is read
//!   serializably, but the set of items is not a snapshot.
//! - [`Store::changes`], [`Store::entities`] and [`Store::commit_logs`] are one `Query` page
//!   each: read-committed only, so they may see part of a transaction.
//! - [`Store::write`] is one `TransactWriteItems`: all or nothing, every action conditioned.
//!
//! Nothing in the engine depends on which implementation it runs on.

#[cfg(feature = "dynamodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
pub mod dynamo;
mod layout;
pub mod memory;

pub(crate) use layout::{item_key, record_bytes, space_pk, COMMIT_LOG_PREFIX, ENTITY_PREFIX};
use std::ops::Bound;

use async_trait::async_trait;

/// A space version: the number of commits the space has had.
pub type Version = u64;

/// Where a record lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Address {
    /// The space's version counter.
    Space {
        /// Space id.
        space: String,
    },
    /// A Replicache key's value.
    Entity {
        /// Space id.
        space: String,
        /// Replicache key.
        key: String,
    },
    /// A client's last mutation id.
    Client {
        /// Space id.
        space: String,
        /// Client id.
        client: String,
    },
    /// One slot of the space's ring of recent commit write sets.
    CommitLog {
        /// Space id.
        space: String,
        /// Slot number, `version % slots`.
        slot: u32,
    },
    /// A client group's owner and space.
    Group {
        /// Client group id.
        group: String,
    },
    /// The connections listening for the space's pokes.
    Listeners {
        /// Space id.
        space: String,
    },
    /// A poke connection: which space it listens to (for its disconnect).
    Connection {
        /// Connection id.
        id: String,
    },
    /// A poke ticket that has opened a connection.
    SpentTicket {
        /// The ticket's id.
        id: String,
    },
}

/// The space's version counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaceMeta {
    /// Space id.
    pub space: String,
    /// Version of the last commit.
    pub version: Version,
    /// Random id chosen when the counter was created, so that cookies from a wiped store
    /// are recognised.
    pub epoch: String,
    /// Until when the space's pushes take the queue, where the push path is chosen per space
    /// (seconds since the Unix epoch): set by a commit that met contention.
    pub hot_until: Option<u64>,
}

/// A Replicache key and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    /// Space id.
    pub space: String,
    /// Replicache key.
    pub key: String,
    /// Version of the commit that last wrote it.
    pub version: Version,
    /// The value as JSON text; `None` is a tombstone left by a delete.
    pub value: Option<String>,
    /// For a tombstone: when it may be forgotten (seconds since the Unix epoch; the table's
    /// TTL attribute). Pull cookies older than that get a reset instead of the deletion.
    pub expires_at: Option<u64>,
}

/// A client and the last mutation id processed for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Space id.
    pub space: String,
    /// Client id.
    pub id: String,
    /// The client group the client belongs to.
    pub group: String,
    /// Version of the commit that last wrote it.
    pub version: Version,
    /// Last processed mutation id.
    pub lmid: u64,
    /// When the client is forgotten unless it pushes again (seconds since the Unix epoch;
    /// the table's TTL attribute). Expired, it is treated as unknown.
    pub expires_at: Option<u64>,
}

/// Something a commit wrote, as its commit log lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Written {
    /// An entity, by key.
    Entity(String),
    /// A client, by id.
    Client(String),
}

impl Written {
    /// Its address in `space`.
    pub fn address(&self, space: &str) -> Address {
        match self {
            Written::Entity(key) => Address::Entity {
                space: space.to_owned(),
                key: key.clone(),
            },
            Written::Client(client) => Address::Client {
                space: space.to_owned(),
                client: client.clone(),
            },
        }
    }
}

/// The write set of one recent commit, kept in a ring of slots so that a reader can tell
/// whether a commit it counts on is fully visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitLog {
    /// Space id.
    pub space: String,
    /// Slot in the ring.
    pub slot: u32,
    /// The commit's version.
    pub version: Version,
    /// Everything the commit wrote besides the counter and this log.
    pub written: Vec<Written>,
}

/// Owner and space of a client group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Client group id.
    pub id: String,
    /// The user who first pushed with it.
    pub user: String,
    /// The space it first pushed to.
    pub space: String,
    /// When the group is forgotten unless it pushes again (seconds since the Unix epoch;
    /// the table's TTL attribute). Expired, it is treated as unknown.
    pub expires_at: Option<u64>,
    /// Whether a queued commit found the server has no state for one of its clients: its
    /// pushes and pulls are then answered `ClientStateNotFound` until it expires.
    pub refused: bool,
}

/// The connections listening for a space's pokes, with when each expires. Pushes read it
/// with the space counter and condition their commit on its revision, so that a connection
/// registered before a commit is always poked for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listeners {
    /// Space id.
    pub space: String,
    /// Bumped by every change, for conditional writes.
    pub rev: u64,
    /// Connection id to expiry (seconds since the Unix epoch). An expired entry is treated
    /// as absent by every reader.
    pub connections: std::collections::BTreeMap<String, u64>,
    /// Connection id to a digest of the user who opened it, for the cap on one user's
    /// connections (those recorded before it was kept have none).
    pub owners: std::collections::BTreeMap<String, String>,
    /// Connection id to what the space policy read to admit it, as digests of the keys of
    /// this space (`*`: it read more, so it is checked again before every poke). Absent
    /// for a connection whose policy read nothing: no write can change its answer.
    pub watches: std::collections::BTreeMap<String, String>,
    /// Connection id to the version of the commit that wrote a key its policy read: the
    /// policy must admit its user again before it is poked again.
    pub recheck: std::collections::BTreeMap<String, Version>,
}

/// A poke connection and what it listens to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Connection id (API Gateway's `connectionId`).
    pub id: String,
    /// The space it listens to.
    pub space: String,
    /// The user who opened it.
    pub user: String,
    /// When it expires (seconds since the Unix epoch); also the item's TTL.
    pub expires_at: u64,
}

/// A poke ticket that has opened a connection: each opens one, and this record, written
/// with the connection, makes a second `$connect` with it fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpentTicket {
    /// The ticket's id.
    pub id: String,
    /// When the ticket expires (seconds since the Unix epoch); also the item's TTL: after
    /// that the ticket itself is refused.
    pub expires_at: u64,
}

/// Any stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// See [`SpaceMeta`].
    Space(SpaceMeta),
    /// See [`Entity`].
    Entity(Entity),
    /// See [`Client`].
    Client(Client),
    /// See [`CommitLog`].
    CommitLog(CommitLog),
    /// See [`Group`].
    Group(Group),
    /// See [`Listeners`].
    Listeners(Listeners),
    /// See [`Connection`].
    Connection(Connection),
    /// See [`SpentTicket`].
    SpentTicket(SpentTicket),
}

impl Record {
    /// The record's address.
    pub fn address(&self) -> Address {
        match self {
            Record::Space(m) => Address::Space {
                space: m.space.clone(),
            },
            Record::Entity(e) => Address::Entity {
                space: e.space.clone(),
                key: e.key.clone(),
            },
            Record::Client(c) => Address::Client {
                space: c.space.clone(),
                client: c.id.clone(),
            },
            Record::CommitLog(l) => Address::CommitLog {
                space: l.space.clone(),
                slot: l.slot,
            },
            Record::Group(g) => Address::Group {
                group: g.id.clone(),
            },
            Record::Listeners(l) => Address::Listeners {
                space: l.space.clone(),
            },
            Record::Connection(c) => Address::Connection { id: c.id.clone() },
            Record::SpentTicket(t) => Address::SpentTicket { id: t.id.clone() },
        }
    }

    /// The version of the commit that wrote it, for records that are versioned (and so
    /// appear in [`Store::changes`]).
    pub fn row_version(&self) -> Option<Version> {
        match self {
            Record::Entity(e) => Some(e.version),
            Record::Client(c) => Some(c.version),
            Record::CommitLog(l) => Some(l.version),
            Record::Space(_)
            | Record::Group(_)
            | Record::Listeners(_)
            | Record::Connection(_)
            | Record::SpentTicket(_) => None,
        }
    }

    /// What an [`Expect::Version`] condition compares: the counter for a space, the
    /// revision for listeners, the expiry for a client group (every write of a group moves
    /// it forward), the row version otherwise.
    pub fn condition_version(&self) -> Option<Version> {
        match self {
            Record::Space(m) => Some(m.version),
            Record::Listeners(l) => Some(l.rev),
            Record::Group(g) => g.expires_at,
            other => other.row_version(),
        }
    }
}

/// Whether a record that expires at `expires_at` has expired at `now`. DynamoDB's TTL deletes
/// expired items late (typically within two days), so every reader checks this itself.
pub fn expired(expires_at: Option<u64>, now: u64) -> bool {
    expires_at.is_some_and(|at| at <= now)
}

/// A condition on a record's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No condition.
    Any,
    /// The record must not exist.
    Absent,
    /// The record must exist at this version ([`Record::condition_version`]).
    Version(Version),
}

impl Expect {
    /// Whether `current` satisfies the condition.
    pub fn holds(&self, current: Option<&Record>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::Version(v) => current.and_then(Record::condition_version) == Some(*v),
        }
    }
}

/// One action of a transactional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Replace the record at its address, if the condition holds.
    Put {
        /// The new record.
        record: Record,
        /// Condition on the current one.
        expect: Expect,
    },
    /// Write nothing, but fail the whole transaction unless the condition holds.
    Check {
        /// The record checked.
        address: Address,
        /// The condition.
        expect: Expect,
    },
}

impl Write {
    /// The address the action touches.
    pub fn address(&self) -> Address {
        match self {
            Write::Put { record, .. } => record.address(),
            Write::Check { address, .. } => address.clone(),
        }
    }
}

/// Which entities [`Store::entities`] reads: the keys under a prefix, optionally from a start
/// key, in key order (UTF-8 bytes), with or without their values.
///
/// ```
/// use std::ops::Bound;
/// use replicache_dynamodb::store::EntityQuery;
///
/// let all = EntityQuery::prefix("todo/");
/// let page = EntityQuery {
///     start: Bound::Excluded("todo/0042".into()),
///     page_limit: Some(20),
///     keys_only: true,
///     ..EntityQuery::prefix("todo/")
/// };
/// # let _ = (all, page);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityQuery {
    /// Only keys starting with this (`""`: every key).
    pub prefix: String,
    /// Only keys from this one on (included or not); a start before the prefix reads from
    /// the prefix.
    pub start: Bound<String>,
    /// At most this many records a page (DynamoDB's `Limit`); a page that reached it may
    /// have a next page even when nothing follows.
    pub page_limit: Option<usize>,
    /// Leave the values out (DynamoDB's `ProjectionExpression`): a live entity comes with
    /// an empty value, `Some("")`, which is never JSON; a tombstone still with `None`.
    pub keys_only: bool,
}

impl EntityQuery {
    /// Every entity whose key starts with `prefix`, with its value.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        EntityQuery {
            prefix: prefix.into(),
            start: Bound::Unbounded,
            page_limit: None,
            keys_only: false,
        }
    }

    /// Whether `key` is one the query selects.
    pub fn selects(&self, key: &str) -> bool {
        key.starts_with(&self.prefix)
            && match &self.start {
                Bound::Unbounded => true,
                Bound::Included(start) => key >= start.as_str(),
                Bound::Excluded(start) => key > start.as_str(),
            }
    }
}

/// An opaque position to continue a query from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken(pub String);

/// One page of a query.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The records, in the query's order.
    pub records: Vec<Record>,
    /// Where the next page starts, if there is one.
    pub next: Option<PageToken>,
}

/// Sizes a store can hold, which the engine must respect so that a write is never refused
/// for its size after mutations have run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest Replicache key, in UTF-8 bytes.
    pub max_key_bytes: usize,
    /// Largest stored record, counting its key and value, in bytes.
    pub max_record_bytes: usize,
    /// Most actions in one [`Store::write`].
    pub max_write_actions: usize,
    /// Most bytes in one [`Store::write`].
    pub max_write_bytes: usize,
}

impl Limits {
    /// DynamoDB's limits: sort keys of 1,024 bytes (less the `e/` prefix), transactions of
    /// 100 actions and 4 MB, and items of 400 KB, of which a versioned record gets half: an
    /// item projected into the local secondary index counts twice (DynamoDB Local refuses such
    /// items above 200 KB; we hold DynamoDB to the same), less 1 KB of margin for the
    /// estimate.
    pub const DYNAMODB: Limits = Limits {
        max_key_bytes: 1024 - 2,
        max_record_bytes: 199 * 1024,
        max_write_actions: 100,
        max_write_bytes: 4 * 1024 * 1024,
    };
}

/// Why a store call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// A write's condition failed or it collided with another transaction: nothing was
    /// written; re-read and try again.
    #[error("write conflict: {0}")]
    Conflict(String),
    /// The store is unreachable, throttling or failing for now; try again later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store refused the request itself; retrying will not help.
    #[error("store rejected the request: {0}")]
    Rejected(String),
}

/// The storage the engine runs on. See the module documentation for the guarantees.
#[async_trait]
pub trait Store: Send + Sync {
    /// The sizes this store holds.
    fn limits(&self) -> Limits;

    /// Reads records by address, each strongly consistent; one request.
    async fn get(&self, addresses: &[Address]) -> Result<Vec<Option<Record>>, StoreError>;

    /// The version of each entity or client at `addresses` (`None` if absent), each strongly
    /// consistent: [`Store::get`] without the values.
    async fn versions(&self, addresses: &[Address]) -> Result<Vec<Option<Version>>, StoreError> {
        let records = self.get(addresses).await?;
        Ok(records
            .iter()
            .map(|r| r.as_ref().and_then(Record::row_version))
            .collect())
    }

    /// One page of the space's versioned records (entities, clients, commit logs) with a
    /// version above `after`, in version order; strongly consistent but read-committed.
    async fn changes(
        &self,
        space: &str,
        after: Version,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError>;

    /// One page of the space's entities that `query` selects, in key order; strongly
    /// consistent but read-committed.
    async fn entities(
        &self,
        space: &str,
        query: &EntityQuery,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError>;

    /// One page of the space's commit log slots; strongly consistent but read-committed.
    async fn commit_logs(&self, space: &str, page: Option<PageToken>) -> Result<Page, StoreError>;

    /// Applies every action or none; fails with [`StoreError::Conflict`] when a condition
    /// fails or another transaction holds one of the records.
    async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError>;
}

/// Reads every page of a query.
pub async fn all_pages<'a, F, Fut>(mut query: F) -> Result<Vec<Record>, StoreError>
where
    F: FnMut(Option<PageToken>) -> Fut + 'a,
    Fut: std::future::Future<Output = Result<Page, StoreError>> + 'a,
{
    let mut records = Vec::new();
    let mut token = None;
    loop {
        let page = query(token).await?;
        records.extend(page.records);
        match page.next {
            Some(next) => token = Some(next),
            None => return Ok(records),
        }
    }
}
