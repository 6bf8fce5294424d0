//! How records lie in the table: their partition and sort keys and their attribute names,
//! the one home of these facts for the DynamoDB store (which reads and writes them), the
//! in-memory store (which orders and sizes records as DynamoDB does) and `template.yaml`
//! (whose key schema and index the tests compare with [`crate::store::dynamo`]'s table).

use super::{Address, Record, Written};

/// Name of the local secondary index on (`pk`, `v`) that every versioned record appears in.
#[cfg(feature = "dynamodb")]
pub(crate) const VERSION_INDEX: &str = "by-version";

/// Attribute names.
pub(crate) mod attr {
    /// Partition key.
    pub(crate) const PK: &str = "pk";
    /// Sort key.
    pub(crate) const SK: &str = "sk";
    /// The version of an entity, client or commit log: the index's sort key.
    pub(crate) const VERSION: &str = "v";
    /// A space's version counter.
    pub(crate) const SPACE_VERSION: &str = "version";
    /// The life of a space's version counter.
    pub(crate) const EPOCH: &str = "epoch";
    /// An entity's JSON value.
    pub(crate) const VALUE: &str = "value";
    /// Marks an entity's tombstone.
    pub(crate) const DELETED: &str = "deleted";
    /// When an item expires: the table's TTL attribute.
    pub(crate) const EXPIRES_AT: &str = "expires_at";
    /// A client's last mutation id.
    pub(crate) const LMID: &str = "lmid";
    /// A client's group.
    pub(crate) const GROUP: &str = "group";
    /// What a commit log's commit wrote.
    pub(crate) const WRITTEN: &str = "written";
    /// A group's or connection's user.
    pub(crate) const USER: &str = "user";
    /// A group's or connection's space.
    pub(crate) const SPACE: &str = "space";
    /// A listeners record's revision.
    pub(crate) const REV: &str = "rev";
    /// A listeners record's connections and their expiries.
    pub(crate) const CONNS: &str = "conns";
    /// A listeners record's connections' owners.
    pub(crate) const OWNERS: &str = "owners";
    /// A listeners record's connections' watches (what the space policy read to admit them).
    pub(crate) const WATCHES: &str = "watches";
    /// A listeners record's connections marked for the space policy to run again.
    pub(crate) const RECHECK: &str = "recheck";
    /// A space record's end of contention, when pushes take the queue until then.
    pub(crate) const HOT_UNTIL: &str = "hot_until";
    /// A client group's mark that the server has no state for it.
    pub(crate) const REFUSED: &str = "refused";
}

/// Partition and sort key of an address. Both implementations use this layout, so the
/// in-memory store orders records exactly as DynamoDB does (by UTF-8 bytes).
pub(crate) fn item_key(address: &Address) -> (String, String) {
    match address {
        Address::Space { space } => (space_pk(space), META_SK.to_owned()),
        Address::Entity { space, key } => (space_pk(space), format!("{ENTITY_PREFIX}{key}")),
        Address::Client { space, client } => (space_pk(space), format!("{CLIENT_PREFIX}{client}")),
        Address::CommitLog { space, slot } => {
            (space_pk(space), format!("{COMMIT_LOG_PREFIX}{slot:05}"))
        }
        Address::Group { group } => (format!("{GROUP_PK_PREFIX}{group}"), GROUP_SK.to_owned()),
        Address::Listeners { space } => (space_pk(space), LISTENERS_SK.to_owned()),
        Address::Connection { id } => (
            format!("{CONNECTION_PK_PREFIX}{id}"),
            CONNECTION_SK.to_owned(),
        ),
        Address::SpentTicket { id } => (format!("{TICKET_PK_PREFIX}{id}"), TICKET_SK.to_owned()),
    }
}

/// Partition key of a space.
pub(crate) fn space_pk(space: &str) -> String {
    format!("{SPACE_PK_PREFIX}{space}")
}

/// Sort key prefix of entities.
pub(crate) const ENTITY_PREFIX: &str = "e/";
/// Sort key prefix of clients.
pub(crate) const CLIENT_PREFIX: &str = "c/";
/// Sort key prefix of commit log slots.
pub(crate) const COMMIT_LOG_PREFIX: &str = "log/";
/// Sort key of a space's listeners.
pub(crate) const LISTENERS_SK: &str = "listeners";
/// Sort key of a space's record.
pub(crate) const META_SK: &str = "meta";
/// Partition key prefix of spaces.
pub(crate) const SPACE_PK_PREFIX: &str = "s/";
/// Partition key prefix, and sort key, of client groups.
pub(crate) const GROUP_PK_PREFIX: &str = "g/";
pub(crate) const GROUP_SK: &str = "group";
/// Partition key prefix, and sort key, of poke connections.
pub(crate) const CONNECTION_PK_PREFIX: &str = "w/";
pub(crate) const CONNECTION_SK: &str = "conn";
/// Partition key prefix, and sort key, of spent poke tickets.
pub(crate) const TICKET_PK_PREFIX: &str = "t/";
pub(crate) const TICKET_SK: &str = "ticket";

/// A conservative estimate of a record's stored size in bytes (attribute names and values,
/// numbers counted at their largest), used to keep records and writes within [`Limits`].
pub(crate) fn record_bytes(record: &Record) -> usize {
    const NUMBER: usize = 21;
    let (pk, sk) = item_key(&record.address());
    let keys = attr::PK.len() + pk.len() + attr::SK.len() + sk.len();
    keys + match record {
        Record::Space(m) => {
            attr::SPACE_VERSION.len()
                + NUMBER
                + attr::EPOCH.len()
                + m.epoch.len()
                + attr::HOT_UNTIL.len()
                + NUMBER
        }
        Record::Entity(e) => {
            attr::VERSION.len()
                + NUMBER
                + attr::VALUE.len()
                + e.value.as_ref().map_or(0, String::len)
                + attr::DELETED.len()
                + 1
                + attr::EXPIRES_AT.len()
                + NUMBER
        }
        Record::Client(c) => {
            attr::VERSION.len()
                + NUMBER
                + attr::LMID.len()
                + NUMBER
                + attr::GROUP.len()
                + c.group.len()
                + attr::EXPIRES_AT.len()
                + NUMBER
        }
        Record::CommitLog(l) => {
            attr::VERSION.len()
                + NUMBER
                + attr::WRITTEN.len()
                + l.written
                    .iter()
                    .map(|w| match w {
                        Written::Entity(k) => k.len() + ENTITY_PREFIX.len() + 3,
                        Written::Client(c) => c.len() + CLIENT_PREFIX.len() + 3,
                    })
                    .sum::<usize>()
        }
        Record::Group(g) => {
            attr::USER.len()
                + g.user.len()
                + attr::SPACE.len()
                + g.space.len()
                + attr::EXPIRES_AT.len()
                + NUMBER
                + attr::REFUSED.len()
                + 1
        }
        Record::Listeners(l) => {
            attr::REV.len()
                + NUMBER
                + attr::CONNS.len()
                + l.connections
                    .keys()
                    .map(|id| id.len() + NUMBER + 3)
                    .sum::<usize>()
                + attr::OWNERS.len()
                + l.owners
                    .iter()
                    .map(|(id, owner)| id.len() + owner.len() + 3)
                    .sum::<usize>()
                + attr::WATCHES.len()
                + l.watches
                    .iter()
                    .map(|(id, watch)| id.len() + watch.len() + 3)
                    .sum::<usize>()
                + attr::RECHECK.len()
                + l.recheck
                    .keys()
                    .map(|id| id.len() + NUMBER + 3)
                    .sum::<usize>()
        }
        Record::Connection(c) => {
            attr::SPACE.len()
                + c.space.len()
                + attr::USER.len()
                + c.user.len()
                + attr::EXPIRES_AT.len()
                + NUMBER
        }
        Record::SpentTicket(_) => attr::EXPIRES_AT.len() + NUMBER,
    }
}
