//! Telling whether read-committed reads add up to one snapshot: the commit log ring says what
//! each recent commit wrote, so a reader can check that every recent commit it counts on is
//! fully visible (see `docs/consistency.md`).

use std::collections::{BTreeMap, HashMap};

use crate::store::{Address, CommitLog, Record, Version, Written};

/// The commit logs of the commits in `(after, version]` that are recent enough that their
/// visibility must be checked, or why they cannot be trusted yet: a slot does not show the
/// commit it should (that commit is not visible yet), or shows one newer than `version`.
pub(crate) fn recent_commits(
    logs: &[CommitLog],
    after: Version,
    version: Version,
    slots: u32,
) -> Result<Vec<&CommitLog>, String> {
    let slots = u64::from(slots.max(1));
    let mut by_slot: HashMap<u32, &CommitLog> = HashMap::new();
    for log in logs {
        if log.version > version {
            return Err(format!(
                "commit {} above version {version} is partly visible",
                log.version
            ));
        }
        let known = by_slot.entry(log.slot).or_insert(log);
        if log.version > known.version {
            *known = log;
        }
    }
    let first = after.max(version.saturating_sub(slots)) + 1;
    (first..=version)
        .map(|v| {
            let slot = (v % slots) as u32;
            by_slot
                .get(&slot)
                .filter(|log| log.version == v)
                .copied()
                .ok_or_else(|| format!("commit {v} is not visible yet"))
        })
        .collect()
}

/// The latest record per address from a read-committed query of the changes in
/// `(after, version]`, if they are exactly the state at `version`: nothing newer than
/// `version` is visible, and every recent commit in the range is visible on every record it
/// wrote. Otherwise, why not.
pub(crate) fn changes_at(
    records: Vec<Record>,
    after: Version,
    version: Version,
    slots: u32,
) -> Result<BTreeMap<Address, Record>, String> {
    let mut latest: BTreeMap<Address, Record> = BTreeMap::new();
    let mut logs: Vec<CommitLog> = Vec::new();
    for record in records {
        let v = record.row_version().unwrap_or(0);
        if v > version {
            return Err(format!(
                "a commit above version {version} is partly visible"
            ));
        }
        if let Record::CommitLog(log) = &record {
            logs.push(log.clone());
        }
        let address = record.address();
        if latest
            .get(&address)
            .is_none_or(|r| r.row_version().unwrap_or(0) < v)
        {
            latest.insert(address, record);
        }
    }
    let seen: HashMap<Written, Version> = latest
        .values()
        .filter_map(|r| match r {
            Record::Entity(e) => Some((Written::Entity(e.key.clone()), e.version)),
            Record::Client(c) => Some((Written::Client(c.id.clone()), c.version)),
            _ => None,
        })
        .collect();
    for log in recent_commits(&logs, after, version, slots)? {
        for w in &log.written {
            if seen.get(w).is_none_or(|v| *v < log.version) {
                return Err(format!(
                    "commit {} is not visible on {w:?} yet",
                    log.version
                ));
            }
        }
    }
    Ok(latest)
}
