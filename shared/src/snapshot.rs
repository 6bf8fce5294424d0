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
    match unseen(commits, seen).into_iter().next() {
        Some((w, version)) => Err(format!("commit {version} is not visible on {w:?} yet")),
        None => Ok(()),
    }
}

/// What `commits` wrote that is not seen at least at the version of the commit that wrote
/// it, with that version.
fn unseen(commits: Vec<&CommitLog>, seen: &HashMap<Written, Version>) -> Vec<(Written, Version)> {
    let mut unseen = Vec::new();
    for log in commits {
        for w in &log.written {
            if seen.get(w).is_none_or(|v| *v < log.version) {
                unseen.push((w.clone(), log.version));
            }
        }
    }
    unseen
}

/// One page of a sync too large for one response: the latest record per address among
/// `records` (the changes in `(after, cut]`), if each commit in `(recent_after, cut]` (those
/// recent enough that they may still be becoming visible; older ones are assumed visible)
/// shows its commit log. With it, what those commits wrote that the page does not show at
/// their version: each must since have been overwritten above `cut` ([`overwritten`]), or it
/// is not visible yet. The page is not a snapshot: keys overwritten after `cut` come with a
/// later page, and the page that completes the sync is a snapshot again ([`changes_at`]).
pub(crate) fn page_at(
    records: Vec<Record>,
    recent_after: Version,
    cut: Version,
    slots: u32,
) -> Result<(BTreeMap<Address, Record>, Vec<Written>), String> {
    let (latest, logs) = latest_per_address(records, cut, "a page cut at")?;
    let mut missing = Vec::new();
    if cut > recent_after {
        let seen = seen_versions(latest.values());
        let recent = recent_commits(&logs, recent_after, cut, slots)?;
        missing = unseen(recent, &seen).into_iter().map(|(w, _)| w).collect();
        missing.sort_unstable();
        missing.dedup();
    }
    Ok((latest, missing))
}

/// Whether each item a page misses (`missing`, now at `versions`) was overwritten above the
/// page's `cut`, so that it comes with a later page; otherwise, why the page must wait.
pub(crate) fn overwritten(
    missing: &[Written],
    versions: &[Option<Version>],
    cut: Version,
) -> Result<(), String> {
    for (w, version) in missing.iter().zip(versions) {
        if version.is_none_or(|v| v <= cut) {
            return Err(format!("a commit up to {cut} is not visible on {w:?} yet"));
        }
    }
    Ok(())
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
        let (_, missing) = page_at([page.clone(), b_seen].concat(), 0, 2, 8).unwrap();
        assert!(missing.is_empty());
        // b not in the page: it must have been overwritten since, or the client would never
        // get it.
        let (latest, missing) = page_at(page.clone(), 0, 2, 8).unwrap();
        assert_eq!(missing, [Written::Entity("b".into())]);
        assert!(!latest.contains_key(&Address::Entity {
            space: "s".into(),
            key: "b".into()
        }));
        // Not visible yet (absent, or still at an older version): not a page to answer.
        let why = overwritten(&missing, &[None], 2).unwrap_err();
        assert!(why.contains("not visible"), "{why}");
        assert!(overwritten(&missing, &[Some(2)], 2).is_err());
        // Overwritten by commit 3 since: the page stands, b comes with the next one.
        assert!(overwritten(&missing, &[Some(3)], 2).is_ok());
        // Commits older than the recent window are not checked.
        assert!(page_at(page, 2, 2, 8).unwrap().1.is_empty());
    }
}
