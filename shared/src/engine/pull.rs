//! Pull: the changes between the request's cookie and the space's current version, read
//! with a read-committed query and validated as one snapshot before they are answered.

use serde_json::{json, Value};
use tracing::debug;

use super::{Attempt, Caller, Engine, EngineError};
use crate::access::Operation;
use crate::cookie::{self, Base};
use crate::protocol::SYNC_KEY;
use crate::protocol::{PatchOp, PullRequest, PullResponse, Reply, VersionType};
use crate::snapshot::{changes_at, page_at};
use crate::store::{all_pages, expired, Address, Record, Version};

/// How long a commit may take to become wholly visible, at most: far more than DynamoDB takes
/// to finish (or recover) a transaction's commit phase (`docs/consistency.md`).
const VISIBLE_WITHIN_SECS: u64 = 60;

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
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.pull_attempt(caller, req).await {
                Ok(response) => return Ok(Reply::Ok(response)),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry(why)) => {
                    metrics::counter!(crate::telemetry_names::PULL_RETRIES).increment(1);
                    debug!(attempt, %why, "pull saw a partial commit; retrying");
                    if attempt >= self.config.max_attempts {
                        return Err(EngineError::Unavailable(format!(
                            "no consistent snapshot after {attempt} attempts: {why}"
                        )));
                    }
                    self.back_off(attempt).await;
                }
            }
        }
    }

    async fn pull_attempt(
        &self,
        caller: &Caller,
        req: &PullRequest,
    ) -> Result<PullResponse, Attempt> {
        let space = caller.space.as_str();
        let got = self
            .store
            .get(&[
                Address::Space {
                    space: space.to_owned(),
                },
                Address::Group {
                    group: req.client_group_id.clone(),
                },
            ])
            .await?;
        let (version, epoch) = match &got[0] {
            Some(Record::Space(m)) => (m.version, m.epoch.clone()),
            _ => (0, String::new()),
        };
        let now = self.config.clock.now();
        // An absent or expired group is unknown, and so are its clients: their lmids are
        // nobody's to learn (whoever pulls with its id, before pushing with it afresh).
        let group_live = match &got[1] {
            Some(Record::Group(g)) => super::live_group(Some(g), caller, now)?,
            _ => false,
        };
        let base = match cookie::base_for(&req.cookie, version, &epoch) {
            // The tombstones of deletions since may be gone: start again from scratch.
            Base::Version(c) if self.cookie_too_old(&c, now) => Base::Reset { above: c.order },
            base => base,
        };
        // A page of a paged sync keeps the time its sync's base was issued (every version
        // after that base was committed later); a complete sync is issued now.
        let base_issued = match &base {
            Base::Version(c) => c.issued,
            Base::Null | Base::Reset { .. } => now,
        };
        let (after, owed) = match &base {
            Base::Version(c) => (c.version, c.pending.clone()),
            Base::Null | Base::Reset { .. } => (0, None),
        };
        let full = !matches!(base, Base::Version(_));
        if matches!(base, Base::Reset { .. }) {
            metrics::counter!(crate::telemetry_names::PULL_RESETS).increment(1);
        }
        let read = if after == version {
            Read::default()
        } else {
            self.read_changes(space, after, version).await?
        };
        // A page of a larger sync: the commits up to `cut`, checked visible (a cut inside the
        // last commits, which may still be becoming visible, needs what they overwrote since).
        let (records, cut) = match read.cut {
            Some(cut) => {
                let slots = u64::from(self.config.commit_log_slots.max(1));
                let recent_from = version.saturating_sub(slots);
                let overwritten = if cut > recent_from {
                    let store = self.store.as_ref();
                    all_pages(|page| store.changes(space, cut, page)).await?
                } else {
                    Vec::new()
                };
                let latest = page_at(
                    read.records,
                    overwritten,
                    after.max(recent_from),
                    cut,
                    self.config.commit_log_slots,
                )
                .map_err(Attempt::Retry)?;
                (latest, cut)
            }
            None => (
                changes_at(read.records, after, version, self.config.commit_log_slots)
                    .map_err(Attempt::Retry)?,
                version,
            ),
        };
        let complete = cut == version;
        // Live clients of the group while its record read absent or expired: either the
        // commit that wrote them (and the group anew) is still becoming visible, or they are
        // left from before groups outlived their clients. Only then is the group read again:
        // live now, it is the one those clients were written with. Still not live, clients
        // written by one of the last commits, within the last minute, make the pull start
        // again, as for any commit not yet visible; older ones are nobody's.
        let client_ttl = self.config.client_ttl.as_secs();
        let recent_from = version.saturating_sub(u64::from(self.config.commit_log_slots));
        let mut orphans = records.values().filter_map(|r| match r {
            Record::Client(c) if c.group == req.client_group_id && !expired(c.expires_at, now) => {
                Some(c)
            }
            _ => None,
        });
        let group_live = match orphans.next() {
            Some(first) if !group_live => {
                let live = self.group_live(caller, &req.client_group_id, now).await?;
                let becoming_visible = std::iter::once(first).chain(orphans).any(|c| {
                    let written_at = c.expires_at.map(|at| at.saturating_sub(client_ttl));
                    c.version > recent_from
                        && written_at.is_some_and(|t| t.saturating_add(VISIBLE_WITHIN_SECS) > now)
                });
                if !live && becoming_visible {
                    return Err(Attempt::Retry(
                        "a recent commit wrote clients of a group not yet visible".into(),
                    ));
                }
                live
            }
            _ => group_live,
        };

        let mut patch = Vec::new();
        if full {
            patch.push(PatchOp::Clear);
        }
        let mut lmids = owed.clone().unwrap_or_default();
        for record in records.into_values() {
            match record {
                Record::Entity(e) => match e.value {
                    Some(text) => patch.push(PatchOp::Put {
                        key: e.key,
                        value: serde_json::from_str(&text).unwrap_or(Value::Null),
                    }),
                    // An expired tombstone is absent: no cookie that could need it is served.
                    None if !full && !expired(e.expires_at, now) => {
                        patch.push(PatchOp::Del { key: e.key })
                    }
                    None => {}
                },
                Record::Client(c)
                    if group_live
                        && c.group == req.client_group_id
                        && !expired(c.expires_at, now) =>
                {
                    lmids.insert(c.id, c.lmid);
                }
                _ => {}
            }
        }
        let mut next = cookie::next_cookie(&base, cut, &epoch);
        next.issued = if complete { now } else { base_issued };
        if complete {
            if owed.is_some() {
                patch.push(PatchOp::Put {
                    key: SYNC_KEY.to_owned(),
                    value: json!({"complete": true}),
                });
            }
        } else {
            // lmids wait for the page that completes the sync: until then the client keeps
            // its pending mutations, whose effects some keys may not show yet.
            next.pending = Some(std::mem::take(&mut lmids));
            metrics::counter!(crate::telemetry_names::PULL_PAGES).increment(1);
            patch.push(PatchOp::Put {
                key: SYNC_KEY.to_owned(),
                value: json!({"complete": false, "version": cut, "target": version}),
            });
        }
        Ok(PullResponse {
            cookie: next.to_json(),
            last_mutation_id_changes: lmids,
            patch,
        })
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
}

impl Engine {
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
    fn cookie_too_old(&self, cookie: &cookie::Cookie, now: u64) -> bool {
        let horizon = self
            .config
            .tombstone_ttl
            .as_secs()
            .saturating_sub(super::DAY)
            .max(self.config.tombstone_ttl.as_secs() / 2);
        cookie.issued.saturating_add(horizon) < now
    }
}

/// What a pull read: the changes, and where it cut them if it did not read them all.
#[derive(Default)]
struct Read {
    records: Vec<Record>,
    cut: Option<Version>,
}

/// About the bytes a record takes in a pull response.
fn patch_bytes(record: &Record) -> usize {
    match record {
        Record::Entity(e) => 32 + e.key.len() + e.value.as_ref().map_or(0, String::len),
        Record::Client(c) => 16 + c.id.len(),
        _ => 0,
    }
}
