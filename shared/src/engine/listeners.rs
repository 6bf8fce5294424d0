//! Poke listeners: the connections of a space recorded in the store, added at connect,
//! removed at disconnect or when a poke finds them gone, and poked after every push that
//! committed.
//!
//! Revocation: a connection is recorded with what the space policy read to admit it (its
//! watch), and conditioned on those reads. A commit that writes a key some connection's
//! policy read marks that connection in the same transaction (so no later push can poke it
//! unmarked); a marked connection is poked only after the policy admits its user again, and
//! is closed if it does not. A policy is a function of the user and of what it reads, so a
//! commit that wrote nothing it read cannot have changed its answer: that poke costs
//! nothing more. See docs/consistency.md, "Pokes and revocation".

use std::collections::{BTreeMap, BTreeSet, HashSet};

use tracing::{debug, info, warn};

use super::{Attempt, Caller, Engine, EngineError};
use crate::access::{Operation, PolicyRead};
use crate::store::{
    Address, Connection, Expect, Listeners, Record, SpentTicket, StoreError, Version, Write,
};
use crate::telemetry_names as names;
use crate::ticket::{Ticket, TicketKey};

/// Most keys of its own space a policy may read for its connection to watch them one by
/// one; a connection admitted by more reads, or by a read of another space, is watched as a
/// whole ([`WATCH_ALL`]): its policy runs again before every poke.
const MAX_WATCHED_KEYS: usize = 8;
/// The watch of a connection checked again before every poke.
const WATCH_ALL: &str = "*";
/// Policies run at once when a commit puts connections in doubt.
const RECHECK_CONCURRENCY: usize = 16;

/// What a policy read to admit a connection, as the listeners record keeps it.
struct Watch {
    /// `None`: it read nothing, so nothing can change its answer.
    recorded: Option<String>,
    /// The connection's write is conditioned on these reads, so that a change of them
    /// between the policy and the write fails the write (and the policy runs again).
    checks: Vec<Write>,
}

impl Watch {
    fn of(space: &str, reads: &[PolicyRead]) -> Watch {
        let mut seen = BTreeSet::new();
        let mut checks = Vec::new();
        for read in reads {
            if read.space != space {
                return Watch::all();
            }
            if seen.insert(key_digest(&read.key)) {
                checks.push(Write::Check {
                    address: Address::Entity {
                        space: read.space.clone(),
                        key: read.key.clone(),
                    },
                    expect: read.version.map_or(Expect::Absent, Expect::Version),
                });
            }
        }
        if seen.len() > MAX_WATCHED_KEYS {
            return Watch::all();
        }
        let digests: Vec<String> = seen.into_iter().collect();
        Watch {
            recorded: (!digests.is_empty()).then(|| digests.join(" ")),
            checks,
        }
    }

    /// Checked before every poke, so its write needs no condition.
    fn all() -> Watch {
        Watch {
            recorded: Some(WATCH_ALL.to_owned()),
            checks: Vec::new(),
        }
    }
}

/// A short, stable digest of a key, as a watch lists it (a key may take a kilobyte; a
/// collision only costs a policy run).
fn key_digest(key: &str) -> String {
    crate::digest::sha256_hex(key, 8)
}

/// Marks, in `listeners`, the connections whose policy read one of the keys `written` by
/// the commit of version `version`; answers the action the commit takes on the listeners:
/// a check of the revision it read, as before, or when it marked some, a write of them
/// conditioned on that revision (the same one action, so no request more). A connection
/// registered after the read fails the commit either way.
pub(crate) fn listeners_write<'a>(
    space: &str,
    listeners: &mut Option<Listeners>,
    written: impl IntoIterator<Item = &'a String>,
    version: Version,
) -> Write {
    let check = Write::Check {
        address: Address::Listeners {
            space: space.to_owned(),
        },
        expect: listeners
            .as_ref()
            .map_or(Expect::Absent, |l| Expect::Version(l.rev)),
    };
    let Some(l) = listeners.as_mut().filter(|l| !l.watches.is_empty()) else {
        return check;
    };
    let written: HashSet<String> = written.into_iter().map(|k| key_digest(k)).collect();
    let touched: Vec<String> = l
        .watches
        .iter()
        .filter(|(_, w)| *w != WATCH_ALL && w.split(' ').any(|d| written.contains(d)))
        .map(|(id, _)| id.clone())
        .collect();
    if touched.is_empty() {
        return check;
    }
    let Write::Check { expect, .. } = check else {
        unreachable!("built above")
    };
    for id in touched {
        l.recheck.insert(id, version);
    }
    l.rev += 1;
    Write::Put {
        record: Record::Listeners(l.clone()),
        expect,
    }
}

/// What the policy answered for the connections a poke doubted.
#[derive(Default)]
struct Verdicts {
    /// Admitted again: connection id, the mark it had (if any) and its new watch.
    admitted: Vec<(String, Option<Version>, Option<String>)>,
    /// The conditions of the admissions (the policies' reads).
    checks: Vec<Write>,
    /// Refused (or gone): to close and forget.
    refused: Vec<String>,
}

impl Engine {
    /// A poke ticket signed with `key` for the caller, and when it expires, if the space
    /// policy lets them listen to the space (what `POST /api/replicache/poke-ticket`
    /// answers).
    pub async fn issue_ticket(
        &self,
        caller: &Caller,
        key: &TicketKey,
    ) -> Result<(String, u64), EngineError> {
        self.authorize(caller, Operation::Poke).await?;
        let expires_at = self.now() + crate::ticket::TICKET_SECS;
        Ok((
            key.issue(&caller.user, &caller.space, expires_at),
            expires_at,
        ))
    }

    /// Records connection `id` as listening to the caller's space, after the application's
    /// space policy allowed it. Costs two requests (a read and a write) besides the policy's.
    pub async fn connect(&self, caller: &Caller, id: &str) -> Result<(), EngineError> {
        self.open_connection(caller, id, None).await
    }

    /// [`Engine::connect`] with `ticket` (verified by the caller, and naming the caller's
    /// user and space), which it spends: a ticket already spent answers
    /// [`EngineError::Unauthorized`]. At no extra request: the spent ticket is read with the
    /// listeners and written, conditioned on its absence, with the connection.
    pub async fn connect_with_ticket(
        &self,
        caller: &Caller,
        id: &str,
        ticket: &Ticket,
    ) -> Result<(), EngineError> {
        let spent = SpentTicket {
            id: ticket.id.clone(),
            expires_at: ticket.expires_at,
        };
        self.open_connection(caller, id, Some(spent)).await
    }

    async fn open_connection(
        &self,
        caller: &Caller,
        id: &str,
        ticket: Option<SpentTicket>,
    ) -> Result<(), EngineError> {
        super::validate_id("connection id", id)?;
        let owner = &owner_digest(&caller.user);
        let ticket = ticket.as_ref();
        let attempt = |_| async move {
            // Again on every attempt: what it read may be what changed meanwhile.
            let reads = self
                .authorize_reading(caller, Operation::Poke)
                .await
                .map_err(Attempt::Fail)?;
            let watch = Watch::of(&caller.space, &reads);
            let now = self.config.clock.now();
            let expires_at = now.saturating_add(self.config.connection_ttl.as_secs());
            self.try_change_listeners(
                &caller.space,
                |listeners| {
                    listeners.connections.retain(|_, expires| *expires > now);
                    // The caller's own oldest make way for this one past their share.
                    let mut own: Vec<(u64, String)> = listeners
                        .owners
                        .iter()
                        .filter(|(_, o)| *o == owner)
                        .filter_map(|(id, _)| Some((*listeners.connections.get(id)?, id.clone())))
                        .collect();
                    own.sort_unstable();
                    let keep = self.config.max_listeners_per_user.saturating_sub(1);
                    for (_, old) in own.iter().take(own.len().saturating_sub(keep)) {
                        listeners.connections.remove(old);
                    }
                    if listeners.connections.len() >= self.config.max_listeners {
                        return Err(EngineError::Unavailable(format!(
                            "the space has {} poke connections, the most it takes",
                            listeners.connections.len()
                        )));
                    }
                    listeners.connections.insert(id.to_owned(), expires_at);
                    listeners.owners.insert(id.to_owned(), owner.clone());
                    listeners.recheck.remove(id);
                    match &watch.recorded {
                        Some(w) => listeners.watches.insert(id.to_owned(), w.clone()),
                        None => listeners.watches.remove(id),
                    };
                    Ok(true)
                },
                Some(Connection {
                    id: id.to_owned(),
                    space: caller.space.clone(),
                    user: caller.user.clone(),
                    expires_at,
                }),
                ticket,
                &watch.checks,
            )
            .await
        };
        self.retrying(names::LISTENER_CONFLICTS, attempt).await
    }

    /// Forgets connection `id` (it closed). Unknown ids are ignored.
    pub async fn disconnect(&self, id: &str) -> Result<(), EngineError> {
        super::validate_id("connection id", id)?;
        let got = self
            .store
            .get(&[Address::Connection { id: id.to_owned() }])
            .await?;
        let Some(Some(Record::Connection(connection))) = got.into_iter().next() else {
            debug!(connection = id, "disconnect of an unknown connection");
            return Ok(());
        };
        self.forget_listeners(&connection.space, &[id.to_owned()])
            .await
    }

    /// Removes `ids` (and any expired entry) from the space's listeners.
    pub(crate) async fn forget_listeners(
        &self,
        space: &str,
        ids: &[String],
    ) -> Result<(), EngineError> {
        let now = self.config.clock.now();
        self.change_listeners(space, |listeners| {
            let before = listeners.connections.len();
            listeners
                .connections
                .retain(|id, expires| *expires > now && !ids.contains(id));
            Ok(listeners.connections.len() != before)
        })
        .await
    }

    /// Pokes the listeners of `space` (as a push's last commit read or marked them) after
    /// the push committed, then forgets those expired or found gone. A connection in doubt
    /// (marked by a commit that wrote what its policy read, or watched as a whole) is poked
    /// only if the policy admits its user again; one refused is closed and forgotten.
    /// Failures are logged: the commit stands.
    pub(crate) async fn poke(&self, space: &str, listeners: Option<Listeners>) {
        let Some(poker) = &self.poker else {
            return;
        };
        let listeners = listeners.unwrap_or_default();
        let now = self.config.clock.now();
        let (mut live, mut stale) = (Vec::new(), Vec::new());
        for (id, expires) in &listeners.connections {
            if *expires > now {
                live.push(id.clone());
            } else {
                stale.push(id.clone());
            }
        }
        let doubted: Vec<String> = live
            .iter()
            .filter(|id| {
                listeners.recheck.contains_key(*id)
                    || listeners.watches.get(*id).is_some_and(|w| w == WATCH_ALL)
            })
            .cloned()
            .collect();
        let mut verdicts = Verdicts::default();
        if !doubted.is_empty() {
            verdicts = self.recheck(space, &listeners, &doubted).await;
            let admitted: HashSet<&String> = verdicts.admitted.iter().map(|a| &a.0).collect();
            // Undecided ones (the policy failed) are neither poked nor forgotten: the next
            // poke asks again.
            live.retain(|id| !doubted.contains(id) || admitted.contains(id));
            if !verdicts.refused.is_empty() {
                info!(
                    space,
                    refused = verdicts.refused.len(),
                    "closing poke connections the space policy now refuses"
                );
                poker.close(space, &verdicts.refused).await;
            }
        }
        stale.extend(poker.poke(space, &live).await);
        stale.append(&mut verdicts.refused);
        let readmitted = verdicts
            .admitted
            .iter()
            .any(|(id, mark, watch)| mark.is_some() || listeners.watches.get(id) != watch.as_ref());
        if stale.is_empty() && !readmitted {
            return;
        }
        if let Err(e) = self.settle(space, &stale, verdicts).await {
            warn!(space, error = %e, "could not record what a poke found");
        }
    }

    /// Runs the policy again for the users of connections `doubted` (once per user).
    async fn recheck(&self, space: &str, listeners: &Listeners, doubted: &[String]) -> Verdicts {
        let mut verdicts = Verdicts::default();
        let addresses: Vec<Address> = doubted
            .iter()
            .map(|id| Address::Connection { id: id.clone() })
            .collect();
        let records = match self.store.get(&addresses).await {
            Ok(records) => records,
            Err(e) => {
                warn!(space, error = %e, "could not read the connections in doubt; not poking them");
                return verdicts;
            }
        };
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, record) in doubted.iter().zip(records) {
            match record {
                Some(Record::Connection(c)) if c.space == space => {
                    users.entry(c.user).or_default().push(id.clone());
                }
                // Closed meanwhile (or never completed): nothing to admit.
                _ => verdicts.refused.push(id.clone()),
            }
        }
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(RECHECK_CONCURRENCY));
        let mut runs = tokio::task::JoinSet::new();
        for (user, ids) in users {
            let (engine, permits) = (self.clone(), permits.clone());
            let caller = Caller {
                user,
                space: space.to_owned(),
            };
            runs.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let answer = engine.authorize_reading(&caller, Operation::Poke).await;
                (ids, answer)
            });
        }
        while let Some(run) = runs.join_next().await {
            let Ok((ids, answer)) = run else {
                continue;
            };
            match answer {
                Ok(reads) => {
                    let watch = Watch::of(space, &reads);
                    for id in ids {
                        let mark = listeners.recheck.get(&id).copied();
                        verdicts.admitted.push((id, mark, watch.recorded.clone()));
                    }
                    verdicts.checks.extend(watch.checks);
                }
                Err(EngineError::Forbidden(_) | EngineError::Unauthorized(_)) => {
                    verdicts.refused.extend(ids);
                }
                Err(e) => {
                    warn!(space, error = %e, "the space policy failed; not poking its connections");
                }
            }
        }
        verdicts
    }

    /// Writes what a poke found: `forget` removed, and the connections admitted again
    /// unmarked (unless a later commit marked them again) with their new watches,
    /// conditioned on the policies' reads. If those changed meanwhile, the marks stay (the
    /// next poke runs the policies again) and only `forget` is written.
    async fn settle(
        &self,
        space: &str,
        forget: &[String],
        verdicts: Verdicts,
    ) -> Result<(), EngineError> {
        let now = self.config.clock.now();
        let mut checks: Vec<Write> = Vec::new();
        let mut seen = HashSet::new();
        for check in verdicts.checks {
            if seen.insert(check.address()) {
                checks.push(check);
            }
        }
        let forget_only = |listeners: &mut Listeners| {
            let before = listeners.connections.len();
            listeners
                .connections
                .retain(|id, expires| *expires > now && !forget.contains(id));
            listeners.connections.len() != before
        };
        // A transaction takes 100 actions: beyond that, the marks stay.
        if !verdicts.admitted.is_empty() && checks.len() < 90 {
            let tried = self
                .try_change_listeners(
                    space,
                    |listeners| {
                        let mut changed = forget_only(listeners);
                        for (id, mark, watch) in &verdicts.admitted {
                            if !listeners.connections.contains_key(id) {
                                continue;
                            }
                            if mark.is_some() && listeners.recheck.get(id) == mark.as_ref() {
                                listeners.recheck.remove(id);
                                changed = true;
                            }
                            if listeners.watches.get(id) != watch.as_ref() {
                                match watch {
                                    Some(w) => listeners.watches.insert(id.clone(), w.clone()),
                                    None => listeners.watches.remove(id),
                                };
                                changed = true;
                            }
                        }
                        Ok(changed)
                    },
                    None,
                    None,
                    &checks,
                )
                .await;
            match tried {
                Ok(()) => return Ok(()),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry { why, .. }) => {
                    debug!(%why, "listeners or the policies' reads changed; keeping the marks");
                }
            }
        }
        if forget.is_empty() {
            return Ok(());
        }
        self.change_listeners(space, |listeners| Ok(forget_only(listeners)))
            .await
    }

    /// Read-modify-write of the space's listeners: `change` edits them and says whether it
    /// changed anything; the write is conditioned on the revision read, and retried.
    async fn change_listeners(
        &self,
        space: &str,
        change: impl Fn(&mut Listeners) -> Result<bool, EngineError>,
    ) -> Result<(), EngineError> {
        let attempt = |_| self.try_change_listeners(space, &change, None, None, &[]);
        self.retrying(names::LISTENER_CONFLICTS, attempt).await
    }

    /// One read-modify-write of the space's listeners, conditioned on the revision read and
    /// on `checks`. With `also`, that record is written too. With `ticket`, it is read too and
    /// refused if spent, and written as spent with the change (a `$connect` that raced with
    /// another on the same ticket finds it spent on its retry).
    async fn try_change_listeners(
        &self,
        space: &str,
        change: impl Fn(&mut Listeners) -> Result<bool, EngineError>,
        also: Option<Connection>,
        ticket: Option<&SpentTicket>,
        checks: &[Write],
    ) -> Result<(), Attempt> {
        let mut addresses = vec![Address::Listeners {
            space: space.to_owned(),
        }];
        if let Some(t) = ticket {
            addresses.push(Address::SpentTicket { id: t.id.clone() });
        }
        let mut got = self.store.get(&addresses).await?.into_iter();
        let listeners = got.next().flatten();
        if let Some(Some(Record::SpentTicket(_))) = got.next() {
            return Err(Attempt::Fail(EngineError::Unauthorized(
                "the ticket has already opened a connection: get another".to_owned(),
            )));
        }
        let (mut listeners, expect) = match listeners {
            Some(Record::Listeners(l)) => {
                let expect = Expect::Version(l.rev);
                (l, expect)
            }
            _ => (
                Listeners {
                    space: space.to_owned(),
                    ..Listeners::default()
                },
                Expect::Absent,
            ),
        };
        let changed = change(&mut listeners).map_err(Attempt::Fail)?;
        let Listeners {
            connections,
            owners,
            watches,
            recheck,
            ..
        } = &mut listeners;
        owners.retain(|id, _| connections.contains_key(id));
        watches.retain(|id, _| connections.contains_key(id));
        recheck.retain(|id, _| connections.contains_key(id));
        if !changed && also.is_none() {
            return Ok(());
        }
        listeners.rev += 1;
        let mut writes = vec![Write::Put {
            record: Record::Listeners(listeners),
            expect,
        }];
        if let Some(connection) = also {
            writes.push(Write::Put {
                record: Record::Connection(connection),
                expect: Expect::Any,
            });
        }
        if let Some(t) = ticket {
            writes.push(Write::Put {
                record: Record::SpentTicket(t.clone()),
                expect: Expect::Absent,
            });
        }
        writes.extend_from_slice(checks);
        match self.store.write(writes).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict(why)) => Err(Attempt::retry(why)),
            Err(e) => Err(Attempt::Fail(e.into())),
        }
    }
}

/// A short digest of a user id, as the listeners record keeps it: the record holds up to
/// [`super::EngineConfig::max_listeners`] entries, and a user id may take 512 bytes.
fn owner_digest(user: &str) -> String {
    crate::digest::sha256_hex(user, 12)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(space: &str, key: &str, version: Option<Version>) -> PolicyRead {
        PolicyRead {
            space: space.to_owned(),
            key: key.to_owned(),
            version,
        }
    }

    #[test]
    fn a_watch_lists_the_keys_of_its_space_once_each_and_conditions_on_them() {
        assert!(
            Watch::of("s", &[]).recorded.is_none(),
            "read nothing: no watch"
        );
        let w = Watch::of(
            "s",
            &[
                read("s", "members", Some(3)),
                read("s", "members", Some(3)),
                read("s", "x", None),
            ],
        );
        let recorded = w.recorded.unwrap();
        assert_eq!(recorded.split(' ').count(), 2);
        assert!(recorded.contains(&key_digest("members")));
        assert_eq!(w.checks.len(), 2);
        assert!(w.checks.contains(&Write::Check {
            address: Address::Entity {
                space: "s".into(),
                key: "x".into()
            },
            expect: Expect::Absent,
        }));
        let foreign = Watch::of("s", &[read("s", "a", None), read("teams", "t", Some(1))]);
        assert_eq!(foreign.recorded.as_deref(), Some(WATCH_ALL));
        assert!(
            foreign.checks.is_empty(),
            "checked before every poke instead"
        );
        let many: Vec<PolicyRead> = (0..=MAX_WATCHED_KEYS)
            .map(|i| read("s", &format!("k{i}"), None))
            .collect();
        assert_eq!(Watch::of("s", &many).recorded.as_deref(), Some(WATCH_ALL));
    }

    #[test]
    fn a_commit_marks_only_the_connections_watching_what_it_wrote() {
        let mut listeners = Some(Listeners {
            space: "s".into(),
            rev: 7,
            watches: [
                ("member".to_owned(), key_digest("members")),
                ("all".to_owned(), WATCH_ALL.to_owned()),
            ]
            .into_iter()
            .collect(),
            ..Listeners::default()
        });
        let unchanged = listeners.clone();
        let check = listeners_write("s", &mut listeners, &["todo/1".to_owned()], 8);
        assert!(matches!(
            check,
            Write::Check {
                expect: Expect::Version(7),
                ..
            }
        ));
        assert_eq!(
            listeners, unchanged,
            "nothing watched written: nothing changes"
        );

        let put = listeners_write("s", &mut listeners, &["members".to_owned()], 8);
        let Write::Put {
            record: Record::Listeners(l),
            expect,
        } = put
        else {
            panic!("{put:?}")
        };
        assert_eq!(
            expect,
            Expect::Version(7),
            "conditioned on the revision read"
        );
        assert_eq!(l.rev, 8);
        assert_eq!(l.recheck, [("member".to_owned(), 8)].into_iter().collect());
        assert_eq!(Some(l), listeners, "the poke sees the marks");

        let mut none = None;
        assert!(matches!(
            listeners_write("s", &mut none, &["members".to_owned()], 1),
            Write::Check {
                expect: Expect::Absent,
                ..
            }
        ));
    }
}
