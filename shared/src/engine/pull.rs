//! Pull: the changes between the request's cookie and the space's current version, read
//! with a read-committed query and validated as one snapshot before they are answered.
//!
//! [`Engine::pull`] reads as its steps: check what needs no read, ask the space policy, then
//! attempt until one reads a consistent state: read the space's head and the client group
//! ([`Engine::read_head`]), decide from the cookie where the patch starts, read the changes
//! since and check that they add up to a snapshot or a page of one
//! ([`Engine::read_snapshot`]), decide whether the group's lmids may be told
//! ([`Engine::group_visible`]), and answer ([`respond`]).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{Attempt, Caller, Engine, EngineError};
use crate::access::Operation;
use crate::cookie::{self, Base, Cookie};
use crate::protocol::SYNC_KEY;
use crate::protocol::{PatchOp, ProtocolError, PullRequest, PullResponse, Reply, VersionType};
use crate::snapshot::{changes_at, overwritten, page_at};
use crate::store::{expired, Address, Record, Version};
use crate::telemetry_names as names;

/// How long a commit may take to become wholly visible, at most: far more than DynamoDB takes
/// to finish (or recover) a transaction's commit phase (`docs/consistency.md`).
const VISIBLE_WITHIN_SECS: u64 = 60;

/// What a pull reads first: the space's head, and whether the caller's client group is live.
struct Head {
    version: Version,
    epoch: String,
    group_live: bool,
    /// Whether the group is live and was refused: a queued commit found the server has no
    /// state for one of its clients.
    group_refused: bool,
    /// The time of the read.
    now: u64,
}

/// The changes a response answers: the latest record per address in `(after, cut]`.
struct Snapshot {
    records: BTreeMap<Address, Record>,
    /// The space's version the changes reach: the head's, or a page's end.
    cut: Version,
}

/// What a pull read: the changes, and where it cut them if it did not read them all.
#[derive(Default)]
struct Read {
    records: Vec<Record>,
    cut: Option<Version>,
}

impl Engine {
    /// Answers a pull: cookie, lmid changes of the caller's client group, and patch, all from
    /// one snapshot of the space.
    pub async fn pull(
        &self,
        caller: &Caller,
        req: &PullRequest,
    ) -> Result<Reply<PullResponse>, EngineError> {
        if let Some(e) =
            self.version_error(req.pull_version, VersionType::Pull, &req.schema_version)
        {
            return Ok(Reply::Error(e));
        }
        super::validate_id("clientGroupID", &req.client_group_id)?;
        self.authorize(caller, Operation::Pull).await?;
        let attempt = |_| self.pull_attempt(caller, req);
        self.retrying(names::PULL_RETRIES, attempt).await
    }

    /// One attempt at a consistent answer.
    async fn pull_attempt(
        &self,
        caller: &Caller,
        req: &PullRequest,
    ) -> Result<Reply<PullResponse>, Attempt> {
        let head = self.read_head(caller, &req.client_group_id).await?;
        if head.group_refused {
            return Ok(Reply::Error(ProtocolError::ClientStateNotFound));
        }
        let base = self.base(&req.cookie, &head);
        let after = match &base {
            Base::Version(c) => c.version,
            Base::Null | Base::Reset { .. } => 0,
        };
        let snapshot = self
            .read_snapshot(&caller.space, after, head.version)
            .await?;
        let group = &req.client_group_id;
        let group_live = self.group_visible(caller, group, &head, &snapshot).await?;
        Ok(Reply::Ok(respond(base, &head, snapshot, group, group_live)))
    }

    /// Reads the space's version and epoch and the client group, in one request.
    async fn read_head(&self, caller: &Caller, group: &str) -> Result<Head, Attempt> {
        let got = self
            .store
            .get(&[
                Address::Space {
                    space: caller.space.clone(),
                },
                Address::Group {
                    group: group.to_owned(),
                },
            ])
            .await?;
        let now = self.config.clock.now();
        let (version, epoch) = match &got[0] {
            Some(Record::Space(m)) => (m.version, m.epoch.clone()),
            _ => (0, String::new()),
        };
        // An absent or expired group is unknown, and so are its clients: their lmids are
        // nobody's to learn (whoever pulls with its id, before pushing with it afresh).
        let (group_live, group_refused) = match &got[1] {
            Some(Record::Group(g)) => {
                let live = super::live_group(Some(g), caller, now)?;
                (live, live && g.refused)
            }
            _ => (false, false),
        };
        Ok(Head {
            version,
            epoch,
            group_live,
            group_refused,
            now,
        })
    }

    /// Where the patch starts: from the cookie, unless the tombstones of deletions since may
    /// be gone, and then from scratch.
    fn base(&self, cookie: &Value, head: &Head) -> Base {
        let base = match cookie::base_for(cookie, head.version, &head.epoch) {
            Base::Version(c) if self.cookie_too_old(&c, head.now) => Base::Reset { above: c.order },
            base => base,
        };
        if matches!(base, Base::Reset { .. }) {
            metrics::counter!(names::PULL_RESETS).increment(1);
        }
        base
    }

    /// The changes in `(after, version]`, or the first page of them that fits the budget,
    /// checked to be what the space held at the version they reach.
    async fn read_snapshot(
        &self,
        space: &str,
        after: Version,
        version: Version,
    ) -> Result<Snapshot, Attempt> {
        let slots = self.config.commit_log_slots;
        if after == version {
            return Ok(Snapshot {
                records: BTreeMap::new(),
                cut: version,
            });
        }
        let read = self.read_changes(space, after, version).await?;
        let Some(cut) = read.cut else {
            let records =
                changes_at(read.records, after, version, slots).map_err(Attempt::retry)?;
            return Ok(Snapshot {
                records,
                cut: version,
            });
        };
        // A page of a larger sync: the commits up to `cut`, checked visible. What the last
        // commits (which may still be becoming visible) wrote and the page does not show must
        // have been overwritten since: its versions, and only those, are read.
        let recent_from = version.saturating_sub(u64::from(slots.max(1)));
        let (records, missing) =
            page_at(read.records, after.max(recent_from), cut, slots).map_err(Attempt::retry)?;
        if !missing.is_empty() {
            let addresses: Vec<Address> = missing.iter().map(|w| w.address(space)).collect();
            let versions = self.store.versions(&addresses).await?;
            overwritten(&missing, &versions, cut).map_err(Attempt::retry)?;
        }
        Ok(Snapshot { records, cut })
    }

    /// The changes above `after`, in version order, up to the pull budget: a page ends with
    /// the last whole commit that fits (at least one commit, however large).
    async fn read_changes(
        &self,
        space: &str,
        after: Version,
        version: Version,
    ) -> Result<Read, Attempt> {
        let budget = self.config.pull_budget_bytes;
        let mut read = Read::default();
        let mut bytes = 0usize;
        // Where the commit being read starts in `read.records`.
        let mut commit_start = 0usize;
        let mut token = None;
        loop {
            let page = self.store.changes(space, after, token).await?;
            for record in page.records {
                let v = record.row_version().unwrap_or(0);
                let last = read.records.last().and_then(Record::row_version);
                if last.is_some_and(|last| v > last) {
                    commit_start = read.records.len();
                }
                bytes += patch_bytes(&record);
                // Over the budget: cut before this commit, unless it is the first one.
                if bytes > budget && commit_start > 0 && v <= version {
                    read.records.truncate(commit_start);
                    read.cut = read.records.last().and_then(Record::row_version);
                    return Ok(read);
                }
                read.records.push(record);
            }
            match page.next {
                Some(next) => token = Some(next),
                None => return Ok(read),
            }
        }
    }

    /// Whether the lmids of the caller's group `group` may be told. Live clients of the
    /// group among the changes while its record read absent or expired: either the commit
    /// that wrote them (and the group anew) is still becoming visible, or they are left from
    /// before groups outlived their clients. Only then is the group read again: live now, it
    /// is the one those clients were written with. Still not live, clients written by one of
    /// the last commits, within the last minute, make the pull start again, as for any
    /// commit not yet visible; older ones are nobody's.
    async fn group_visible(
        &self,
        caller: &Caller,
        group: &str,
        head: &Head,
        snapshot: &Snapshot,
    ) -> Result<bool, Attempt> {
        let now = head.now;
        let mut orphans = snapshot.records.values().filter_map(|r| match r {
            Record::Client(c) if c.group == group && !expired(c.expires_at, now) => Some(c),
            _ => None,
        });
        let Some(first) = orphans.next().filter(|_| !head.group_live) else {
            return Ok(head.group_live);
        };
        if self.group_live(caller, group, now).await? {
            return Ok(true);
        }
        let client_ttl = self.config.client_ttl.as_secs();
        let recent_from = head
            .version
            .saturating_sub(u64::from(self.config.commit_log_slots));
        let becoming_visible = std::iter::once(first).chain(orphans).any(|c| {
            let written_at = c.expires_at.map(|at| at.saturating_sub(client_ttl));
            c.version > recent_from
                && written_at.is_some_and(|t| t.saturating_add(VISIBLE_WITHIN_SECS) > now)
        });
        if becoming_visible {
            return Err(Attempt::retry(
                "a recent commit wrote clients of a group not yet visible",
            ));
        }
        Ok(false)
    }

    /// Whether the client group `group` is live at `now`, checked as the caller's.
    async fn group_live(&self, caller: &Caller, group: &str, now: u64) -> Result<bool, Attempt> {
        let got = self
            .store
            .get(&[Address::Group {
                group: group.to_owned(),
            }])
            .await?;
        match got.into_iter().next().flatten() {
            Some(Record::Group(g)) => super::live_group(Some(&g), caller, now),
            _ => Ok(false),
        }
    }

    /// Whether a pull from `cookie` may need tombstones already forgotten.
    fn cookie_too_old(&self, cookie: &Cookie, now: u64) -> bool {
        let horizon = self
            .config
            .tombstone_ttl
            .as_secs()
            .saturating_sub(super::DAY)
            .max(self.config.tombstone_ttl.as_secs() / 2);
        cookie.issued.saturating_add(horizon) < now
    }
}

/// The response to a pull from `base` that read `snapshot`: the patch, the lmids of the
/// caller's `group` if it is `group_live` (held back in the cookie until the page that
/// completes a paged sync), and the next cookie.
fn respond(
    base: Base,
    head: &Head,
    snapshot: Snapshot,
    group: &str,
    group_live: bool,
) -> PullResponse {
    let (full, issued, owed) = match &base {
        // A page of a paged sync keeps the time its sync's base was issued (every version
        // after that base was committed later); a complete sync is issued now.
        Base::Version(c) => (false, c.issued, c.pending.clone()),
        Base::Null | Base::Reset { .. } => (true, head.now, None),
    };
    let complete = snapshot.cut == head.version;
    let mut patch = Vec::new();
    if full {
        patch.push(PatchOp::Clear);
    }
    let mut lmids = owed.clone().unwrap_or_default();
    for record in snapshot.records.into_values() {
        match record {
            Record::Entity(e) => match e.value {
                Some(text) => patch.push(PatchOp::Put {
                    key: e.key,
                    value: serde_json::from_str(&text).unwrap_or(Value::Null),
                }),
                // An expired tombstone is absent: no cookie that could need it is served.
                None if !full && !expired(e.expires_at, head.now) => {
                    patch.push(PatchOp::Del { key: e.key })
                }
                None => {}
            },
            Record::Client(c)
                if group_live && c.group == group && !expired(c.expires_at, head.now) =>
            {
                lmids.insert(c.id, c.lmid);
            }
            _ => {}
        }
    }
    let mut next = cookie::next_cookie(&base, snapshot.cut, &head.epoch);
    next.issued = if complete { head.now } else { issued };
    if !complete {
        // lmids wait for the page that completes the sync: until then the client keeps its
        // pending mutations, whose effects some keys may not show yet.
        next.pending = Some(std::mem::take(&mut lmids));
        metrics::counter!(names::PULL_PAGES).increment(1);
        patch.push(PatchOp::Put {
            key: SYNC_KEY.to_owned(),
            value: json!({"complete": false, "version": snapshot.cut, "target": head.version}),
        });
    } else if owed.is_some() {
        patch.push(PatchOp::Put {
            key: SYNC_KEY.to_owned(),
            value: json!({"complete": true}),
        });
    }
    PullResponse {
        cookie: next.to_json(),
        last_mutation_id_changes: lmids,
        patch,
    }
}

/// About the bytes a record takes in a pull response.
fn patch_bytes(record: &Record) -> usize {
    match record {
        Record::Entity(e) => 32 + e.key.len() + e.value.as_ref().map_or(0, String::len),
        Record::Client(c) => 16 + c.id.len(),
        _ => 0,
    }
}
