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
    let (latest, logs) = latest_per_address(records, version, "a commit above version")?;
    let seen = seen_versions(latest.values());
    check_visible(recent_commits(&logs, after, version, slots)?, &seen)?;
    Ok(latest)
}

/// The latest record per address and the commit logs among `records`; an error if one is
/// above `limit` (`why` says what that means).
fn latest_per_address(
    records: Vec<Record>,
    limit: Version,
    why: &str,
) -> Result<(BTreeMap<Address, Record>, Vec<CommitLog>), String> {
    let mut latest: BTreeMap<Address, Record> = BTreeMap::new();
    let mut logs: Vec<CommitLog> = Vec::new();
    for record in records {
        let v = record.row_version().unwrap_or(0);
        if v > limit {
            return Err(format!("{why} {limit} is partly visible (saw {v})"));
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
    Ok((latest, logs))
}

/// The highest version each entity and client shows among `records`.
fn seen_versions<'a>(records: impl Iterator<Item = &'a Record>) -> HashMap<Written, Version> {
    let mut seen: HashMap<Written, Version> = HashMap::new();
    for r in records {
        let (written, v) = match r {
            Record::Entity(e) => (Written::Entity(e.key.clone()), e.version),
            Record::Client(c) => (Written::Client(c.id.clone()), c.version),
            _ => continue,
        };
        let known = seen.entry(written).or_insert(v);
        *known = (*known).max(v);
    }
    seen
}

/// Every item each of `commits` wrote is seen at least at that commit's version.
fn check_visible(commits: Vec<&CommitLog>, seen: &HashMap<Written, Version>) -> Result<(), String> {
    for log in commits {
        for w in &log.written {
            if seen.get(w).is_none_or(|v| *v < log.version) {
                return Err(format!(
                    "commit {} is not visible on {w:?} yet",
                    log.version
                ));
            }
        }
    }
    Ok(())
}

/// One page of a sync too large for one response: the latest record per address among
/// `records` (the changes in `(after, cut]`, read first), if each commit in
/// `(recent_after, cut]` (those recent enough that they may still be becoming visible; older
/// ones are assumed visible) shows in full: its commit log, and every item it wrote, seen in
/// `records` or, overwritten since, in `later` (the changes above `cut`, read after).
/// Otherwise, why not. The page is not a snapshot: keys overwritten after `cut` come with a
/// later page, and the page that completes the sync is a snapshot again ([`changes_at`]).
pub(crate) fn page_at(
    records: Vec<Record>,
    later: Vec<Record>,
    recent_after: Version,
    cut: Version,
    slots: u32,
) -> Result<BTreeMap<Address, Record>, String> {
    let (latest, logs) = latest_per_address(records, cut, "a page cut at")?;
    if cut > recent_after {
        let seen = seen_versions(latest.values().chain(later.iter()));
        check_visible(recent_commits(&logs, recent_after, cut, slots)?, &seen)?;
    }
    Ok(latest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Entity;

    fn entity(key: &str, version: Version) -> Record {
        Record::Entity(Entity {
            space: "s".into(),
            key: key.into(),
            version,
            value: Some("1".into()),
            expires_at: None,
        })
    }

    fn log(version: Version, keys: &[&str], slots: u32) -> Record {
        Record::CommitLog(CommitLog {
            space: "s".into(),
            slot: (version % u64::from(slots)) as u32,
            version,
            written: keys.iter().map(|k| Written::Entity((*k).into())).collect(),
        })
    }

    #[test]
    fn a_page_needs_its_recent_commits_visible_or_overwritten() {
        // Commit 2 wrote a and b; the page is cut at 2, the space is at 3.
        let page = vec![
            entity("x", 1),
            log(1, &["x"], 8),
            entity("a", 2),
            log(2, &["a", "b"], 8),
        ];
        let b_seen = vec![entity("b", 2)];
        assert!(page_at([page.clone(), b_seen].concat(), vec![], 0, 2, 8).is_ok());
        // b not visible yet: not a page to answer (the client would never get b).
        let why = page_at(page.clone(), vec![], 0, 2, 8).unwrap_err();
        assert!(why.contains("commit 2"), "{why}");
        // b overwritten by commit 3 since: the page stands, b comes with the next one.
        let latest = page_at(page.clone(), vec![entity("b", 3)], 0, 2, 8).unwrap();
        assert!(!latest.contains_key(&Address::Entity {
            space: "s".into(),
            key: "b".into()
        }));
        // Commits older than the recent window are not checked.
        assert!(page_at(page, vec![], 2, 2, 8).is_ok());
    }
}
