//! Push: run the mutations in order against an overlay, then commit once, conditioned on
//! the space version, the clients' lmids and every key the mutators read.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use tracing::{debug, info, warn};

use super::{Attempt, Caller, Engine, EngineError};
use crate::access::Operation;
use crate::error::Kind;
use crate::logged;
use crate::overlay::Overlay;
use crate::protocol::{ProtocolError, PushRequest, Reply, VersionType};
use crate::store::{
    expired, Address, Client, CommitLog, Entity, Expect, Group, Listeners, Record, SpaceMeta,
    Version, Write, Written,
};
use crate::telemetry_names as names;
use crate::tx::{MutationInfo, Tx};

/// Actions every commit spends besides clients and entities: the space counter, the check of
/// the listeners and the commit log slot.
const FIXED_ACTIONS: usize = 3;
/// Bytes set aside in a write for the counter, the commit log and the clients.
const FIXED_BYTES: usize = 256 * 1024;
/// Most keys a retried attempt reads ahead (those its failed attempt read), with its first
/// read: a retry then reads in one request what it read one key at a time, and holds the
/// space for less time, on a space where pushes collide.
const MAX_READ_AHEAD: usize = 64;

/// How much longer a client group is kept than the clients a commit writes: the group is
/// rewritten only when a commit's clients would outlive it, so at most about once per this
/// period while it is in use rather than with every commit.
const GROUP_SLACK: u64 = 60 * 60;

/// Rejections an attempt logs one by one; its commit's log line counts them all, so that a
/// push of many rejected mutations writes a bounded log.
const MAX_LOGGED_REJECTIONS: usize = 10;

/// How far one attempt got.
enum Step {
    /// Finished, with this answer.
    Done(Reply<()>),
    /// Committed part of the mutations (a transaction holds only so much); go on.
    Partial,
}

/// What a push did, beyond its reply: for tests and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// Mutations processed (applied or rejected), each once.
    pub processed: usize,
    /// The mutations the application rejected (or that were too large to commit).
    pub rejected: Vec<Rejection>,
    /// Commits made (a large push takes several).
    pub commits: usize,
}

/// A mutation that was skipped for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Its client.
    pub client_id: String,
    /// Its id.
    pub mutation_id: u64,
    /// Its mutator.
    pub mutator: String,
    /// Why.
    pub reason: String,
}

/// A client as the attempt sees it.
struct ClientState {
    lmid: u64,
    /// The version it was read at; `None` if it is new.
    read_version: Option<Version>,
    dirty: bool,
}

impl Engine {
    /// Processes a push: every mutation with an id above its client's lmid, in order.
    pub async fn push(&self, caller: &Caller, req: &PushRequest) -> Result<Reply<()>, EngineError> {
        Ok(match self.push_outcome(caller, req).await? {
            Reply::Ok(_) => Reply::Ok(()),
            Reply::Error(e) => Reply::Error(e),
        })
    }

    /// [`Engine::push`], telling what it did.
    pub async fn push_outcome(
        &self,
        caller: &Caller,
        req: &PushRequest,
    ) -> Result<Reply<PushOutcome>, EngineError> {
        if let Some(e) =
            self.version_error(req.push_version, VersionType::Push, &req.schema_version)
        {
            return Ok(Reply::Error(e));
        }
        super::validate_id("clientGroupID", &req.client_group_id)?;
        // The distinct clients, in the order they first appear; each is read and written
        // by every commit of the push, so their number bounds its cost and is checked before
        // anything is read.
        let mut seen = HashSet::new();
        let mut client_ids: Vec<&str> = Vec::new();
        for m in &req.mutations {
            if seen.insert(m.client_id.as_str()) {
                if client_ids.len() == self.config.max_push_clients {
                    return Err(EngineError::BadRequest(format!(
                        "a push may carry mutations of at most {} clients",
                        self.config.max_push_clients
                    )));
                }
                super::validate_id("clientID", &m.client_id)?;
                client_ids.push(&m.client_id);
            }
        }
        self.authorize(caller, Operation::Push).await?;
        let mut outcome = PushOutcome::default();
        let mut failures = 0;
        // The space's listeners as the last committed attempt read them: every connection
        // recorded before that commit (its commit was conditioned on them).
        let mut listeners = None;
        // The keys the last failed attempt read, for the next to read ahead.
        let mut read_ahead = Vec::new();
        loop {
            let mut attempt = PushOutcome::default();
            let mut read = None;
            match self
                .push_attempt(
                    caller,
                    req,
                    &client_ids,
                    &mut attempt,
                    &mut read,
                    &mut read_ahead,
                )
                .await
            {
                Ok(step) => {
                    outcome.processed += attempt.processed;
                    outcome.commits += attempt.commits;
                    if attempt.commits > 0 {
                        // Only a commit makes its rejections final: an attempt that ends in
                        // ClientStateNotFound commits nothing, whatever it rejected first.
                        outcome.rejected.append(&mut attempt.rejected);
                        listeners = read;
                    }
                    match step {
                        Step::Done(reply) => {
                            let rejected = outcome.rejected.len() as u64;
                            metrics::counter!(names::MUTATIONS_REJECTED).increment(rejected);
                            metrics::counter!(names::MUTATIONS_APPLIED)
                                .increment(outcome.processed as u64 - rejected);
                            if outcome.commits > 0 {
                                self.poke(&caller.space, listeners).await;
                            }
                            return Ok(match reply {
                                Reply::Ok(()) => Reply::Ok(outcome),
                                Reply::Error(e) => Reply::Error(e),
                            });
                        }
                        Step::Partial => failures = 0,
                    }
                }
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry(why)) => {
                    metrics::counter!(names::PUSH_CONFLICTS).increment(1);
                    failures += 1;
                    debug!(attempt = failures, %why, "push conflicted; retrying");
                    if failures >= self.config.max_attempts {
                        return Err(EngineError::Unavailable(format!(
                            "push gave up after {failures} conflicting attempts: {why}"
                        )));
                    }
                    self.back_off(failures).await;
                }
            }
        }
    }

    async fn push_attempt(
        &self,
        caller: &Caller,
        req: &PushRequest,
        client_ids: &[&str],
        outcome: &mut PushOutcome,
        listeners_read: &mut Option<Listeners>,
        read_ahead: &mut Vec<String>,
    ) -> Result<Step, Attempt> {
        let space = caller.space.as_str();
        let group_id = req.client_group_id.as_str();
        let mut addresses = vec![
            Address::Space {
                space: space.to_owned(),
            },
            Address::Group {
                group: group_id.to_owned(),
            },
            Address::Listeners {
                space: space.to_owned(),
            },
        ];
        addresses.extend(client_ids.iter().map(|c| Address::Client {
            space: space.to_owned(),
            client: (*c).to_owned(),
        }));
        let mut ahead = std::mem::take(read_ahead);
        ahead.truncate(MAX_READ_AHEAD);
        addresses.extend(ahead.iter().map(|key| Address::Entity {
            space: space.to_owned(),
            key: key.clone(),
        }));
        let mut got = self.store.get(&addresses).await?.into_iter();
        let meta = match got.next().flatten() {
            Some(Record::Space(m)) => Some(m),
            _ => None,
        };
        let now = self.config.clock.now();
        let client_expiry = now.saturating_add(self.config.client_ttl.as_secs());
        let group = match got.next().flatten() {
            Some(Record::Group(g)) => Some(g),
            _ => None,
        };
        // An absent or expired group is unknown, whoever had it, and so are its clients:
        // they may not be continued, only started afresh at id 1.
        let group_live = super::live_group(group.as_ref(), caller, now)?;
        // The group must outlive every client it has, or it could expire (and be taken by
        // anyone who knows its id) while its clients still hold their lmids: it is written
        // whenever this commit's clients would outlive it, conditioned on the expiry read
        // (every write of a group moves it forward), so that a concurrent rewrite of an
        // expired group fails this commit instead of being overwritten.
        let group_write = match group.as_ref().map(|g| g.expires_at) {
            None => Some(Expect::Absent),
            Some(None) => None,
            Some(Some(at)) if at >= client_expiry => None,
            Some(Some(at)) => Some(Expect::Version(at)),
        };
        let mut listeners = match got.next().flatten() {
            Some(Record::Listeners(l)) => Some(l),
            _ => None,
        };
        let mut clients: BTreeMap<&str, ClientState> = BTreeMap::new();
        for (id, record) in client_ids.iter().zip(got.by_ref()) {
            let state = match record {
                // Expired, or of a group that is unknown now: unknown, as if TTL had deleted
                // it (the commit is conditioned on the record read, so that a client pushing
                // meanwhile is not overwritten).
                Some(Record::Client(c))
                    if expired(c.expires_at, now) || (!group_live && c.group == group_id) =>
                {
                    ClientState {
                        lmid: 0,
                        read_version: Some(c.version),
                        dirty: false,
                    }
                }
                Some(Record::Client(c)) => {
                    if c.group != group_id {
                        return Err(Attempt::Fail(EngineError::Unauthorized(format!(
                            "client {id:?} belongs to another client group"
                        ))));
                    }
                    ClientState {
                        lmid: c.lmid,
                        read_version: Some(c.version),
                        dirty: false,
                    }
                }
                _ => ClientState {
                    lmid: 0,
                    read_version: None,
                    dirty: false,
                },
            };
            clients.insert(id, state);
        }

        let version = meta.as_ref().map_or(0, |m| m.version);
        let limits = self.store.limits();
        let mut fresh = Overlay::new(
            self.store.clone(),
            space,
            version,
            self.config.commit_log_slots,
        );
        for (key, record) in ahead.into_iter().zip(got) {
            fresh.read_ahead(key, record);
        }
        let overlay = Arc::new(tokio::sync::Mutex::new(fresh));
        let mut applied = 0usize;
        // Clients this commit writes, counted as they become dirty.
        let mut dirty_clients = 0usize;
        let mut more = false;
        for m in &req.mutations {
            let client = clients.get_mut(m.client_id.as_str()).expect("read above");
            if m.id <= client.lmid {
                continue;
            }
            if m.id > client.lmid + 1 {
                warn!(
                    client = %m.client_id, id = m.id, lmid = client.lmid,
                    "mutation from the future: the server has no state for this client"
                );
                metrics::counter!(names::CLIENT_STATE_NOT_FOUND).increment(1);
                return Ok(Step::Done(Reply::Error(ProtocolError::ClientStateNotFound)));
            }
            // Each mutation gets its own handle; it stops working when the mutator returns.
            let seq = {
                let mut o = overlay.lock().await;
                o.current += 1;
                o.current
            };
            let info = MutationInfo {
                user: caller.user.clone(),
                space: space.to_owned(),
                client_id: m.client_id.clone(),
                mutation_id: m.id,
            };
            let tx = Tx::new(overlay.clone(), seq, Arc::new(info));
            let result = self.app.run(tx, &m.name, &m.args).await;
            let mut o = overlay.lock().await;
            o.current += 1;
            // An engine outcome the mutator ran into wins over whatever it returned.
            let result = match o.failure.take() {
                Some(failure) => Err(failure),
                None => result,
            };
            let mut rejection = None;
            match result.map_err(|e| e.0) {
                Ok(()) => {}
                Err(Kind::Rejected(reason)) => {
                    if outcome.rejected.len() < MAX_LOGGED_REJECTIONS {
                        warn!(client = %m.client_id, id = m.id,
                            mutator = ?logged::bounded(&m.name),
                            reason = ?logged::rejection_reason(&reason),
                            "mutation rejected; skipping it");
                    }
                    o.discard_writes();
                    rejection = Some(reason);
                }
                Err(Kind::Retry(why)) => {
                    *read_ahead = o.keys_read();
                    return Err(Attempt::Retry(why));
                }
                Err(Kind::Store(e)) => return Err(Attempt::Fail(e.into())),
            }
            let new_client = usize::from(!client.dirty);
            let actions = FIXED_ACTIONS
                + usize::from(group_write.is_some())
                + dirty_clients
                + new_client
                + o.touched();
            let bytes = FIXED_BYTES + o.write_bytes();
            if actions > limits.max_write_actions || bytes > limits.max_write_bytes {
                if applied > 0 {
                    // Commit what fits; the rest goes in the next transaction.
                    o.forget();
                    more = true;
                    break;
                }
                warn!(client = %m.client_id, id = m.id, mutator = ?logged::bounded(&m.name),
                    actions, bytes,
                    "mutation touches more than one transaction holds; skipping it");
                o.forget();
                rejection = Some(format!(
                    "touches more than one transaction holds ({actions} actions, {bytes} bytes)"
                ));
            } else {
                o.keep();
            }
            if let Some(reason) = rejection {
                outcome.rejected.push(Rejection {
                    client_id: m.client_id.clone(),
                    mutation_id: m.id,
                    mutator: m.name.clone(),
                    reason,
                });
            }
            let client = clients.get_mut(m.client_id.as_str()).expect("read above");
            client.lmid = m.id;
            dirty_clients += usize::from(!client.dirty);
            client.dirty = true;
            applied += 1;
        }
        if applied == 0 {
            return Ok(Step::Done(Reply::Ok(())));
        }

        let new_version = version + 1;
        let epoch = meta.as_ref().map_or_else(
            || format!("{:016x}", fastrand::u64(..)),
            |m| m.epoch.clone(),
        );
        let (entity_writes, reads) = overlay.lock().await.take_parts();
        let expect_read = |key: &str| match reads.get(key) {
            Some(Some(v)) => Expect::Version(*v),
            Some(None) => Expect::Absent,
            None => Expect::Any,
        };
        let mut written: Vec<Written> =
            entity_writes.keys().cloned().map(Written::Entity).collect();
        let mut writes = vec![Write::Put {
            record: Record::Space(SpaceMeta {
                space: space.to_owned(),
                version: new_version,
                epoch,
            }),
            expect: meta
                .as_ref()
                .map_or(Expect::Absent, |m| Expect::Version(m.version)),
        }];
        if let Some(expect) = group_write {
            writes.push(Write::Put {
                record: Record::Group(Group {
                    id: group_id.to_owned(),
                    user: caller.user.clone(),
                    space: space.to_owned(),
                    expires_at: Some(client_expiry.saturating_add(GROUP_SLACK)),
                }),
                expect,
            });
        }
        for (id, c) in clients.iter().filter(|(_, c)| c.dirty) {
            written.push(Written::Client((*id).to_owned()));
            writes.push(Write::Put {
                record: Record::Client(Client {
                    space: space.to_owned(),
                    id: (*id).to_owned(),
                    group: group_id.to_owned(),
                    version: new_version,
                    lmid: c.lmid,
                    expires_at: Some(client_expiry),
                }),
                expect: c.read_version.map_or(Expect::Absent, Expect::Version),
            });
        }
        for (key, value) in &entity_writes {
            writes.push(Write::Put {
                record: Record::Entity(Entity {
                    space: space.to_owned(),
                    key: key.clone(),
                    version: new_version,
                    value: value.clone(),
                    // A tombstone is needed only by cookies younger than the horizon.
                    expires_at: value
                        .is_none()
                        .then(|| now.saturating_add(self.config.tombstone_ttl.as_secs())),
                }),
                expect: expect_read(key),
            });
        }
        for key in reads.keys().filter(|k| !entity_writes.contains_key(*k)) {
            writes.push(Write::Check {
                address: Address::Entity {
                    space: space.to_owned(),
                    key: key.clone(),
                },
                expect: expect_read(key),
            });
        }
        // A connection registered after the read above fails the commit, so that the poke
        // after it reaches every connection registered before it; those whose space policy
        // read a key this commit writes are marked for it to run again.
        writes.push(super::listeners::listeners_write(
            space,
            &mut listeners,
            entity_writes.keys(),
            new_version,
        ));
        let slots = self.config.commit_log_slots.max(1);
        writes.push(Write::Put {
            record: Record::CommitLog(CommitLog {
                space: space.to_owned(),
                slot: (new_version % u64::from(slots)) as u32,
                version: new_version,
                written,
            }),
            expect: Expect::Any,
        });
        let actions = writes.len();
        if let Err(e) = self.store.write(writes).await {
            // What the next attempt reads ahead, if this one conflicted.
            *read_ahead = reads.into_keys().collect();
            return Err(e.into());
        }
        info!(
            space,
            version = new_version,
            mutations = applied,
            rejected = outcome.rejected.len(),
            actions,
            "committed"
        );
        outcome.processed = applied;
        outcome.commits = 1;
        *listeners_read = listeners;
        Ok(if more {
            Step::Partial
        } else {
            Step::Done(Reply::Ok(()))
        })
    }
}
