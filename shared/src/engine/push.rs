//! Push: run the mutations in order against an overlay, then commit once, conditioned on
//! the space version, the clients' lmids and every key the mutators read.
//!
//! [`Engine::push_outcome`] reads as its steps: check what needs no read, ask the space
//! policy, then commit by commit (a transaction holds only so much) one attempt after
//! another until one commits: read the push's state in one request ([`Engine::read_state`]),
//! run the mutations against it ([`Engine::run_mutations`]), and write one transaction
//! built from what they did ([`Engine::commit_writes`]). Last, poke the space's listeners.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use tokio::sync::Mutex;
use tracing::{info, warn};

use super::{Attempt, Caller, Engine, EngineError};
use crate::access::Operation;
use crate::error::Kind;
use crate::logged;
use crate::overlay::{EntityWrites, Overlay, ReadSet};
use crate::protocol::{Mutation, ProtocolError, PushRequest, Reply, VersionType};
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

/// How one attempt ended, when it did not have to start again.
enum Pushed {
    /// It committed; more mutations may be left for the next commit.
    Committed(Commit),
    /// Every mutation had been processed already: nothing to commit.
    Nothing,
    /// A mutation's id is beyond its client's next: the server has no state for that client
    /// (nothing of this attempt is committed).
    Refused(ProtocolError),
}

/// What a commit did.
struct Commit {
    /// Mutations whose writes it committed.
    applied: usize,
    /// Mutations it processed without their writes.
    rejected: Vec<Rejection>,
    /// The listeners it was conditioned on: every connection recorded before it.
    listeners: Option<Listeners>,
    /// Whether mutations are left that did not fit in it.
    more: bool,
}

/// What an attempt read before running the mutations, and the overlay they run against.
struct State<'a> {
    /// The space's record (its version and epoch); `None` for a new space.
    meta: Option<SpaceMeta>,
    /// How the client group must be written with the commit, if it must.
    group_write: Option<Expect>,
    /// The space's poke connections.
    listeners: Option<Listeners>,
    /// Each client of the push as the attempt sees it.
    clients: BTreeMap<&'a str, ClientState>,
    /// The time the attempt started.
    now: u64,
    /// The entities as the mutations see them: the store, under their writes so far.
    overlay: Arc<Mutex<Overlay>>,
}

/// A client as the attempt sees it.
struct ClientState {
    lmid: u64,
    /// The version it was read at; `None` if it is new.
    read_version: Option<Version>,
    /// Whether the commit writes it (a mutation of it was processed).
    dirty: bool,
}

/// What running the mutations did, for the commit.
#[derive(Default)]
struct Run {
    applied: usize,
    rejected: Vec<Rejection>,
    /// Whether mutations are left that did not fit.
    more: bool,
    /// Why the push must stop uncommitted: a mutation's id is beyond its client's next, the
    /// server has no state for that client.
    refused: Option<ProtocolError>,
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
        let client_ids = self.distinct_clients(req)?;
        self.authorize(caller, Operation::Push).await?;
        let mut outcome = PushOutcome::default();
        let mut applied = 0;
        let mut listeners = None;
        let refused = loop {
            let attempt = |read_ahead| self.push_attempt(caller, req, &client_ids, read_ahead);
            match self.retrying(names::PUSH_CONFLICTS, attempt).await? {
                Pushed::Committed(commit) => {
                    applied += commit.applied;
                    outcome.processed += commit.applied + commit.rejected.len();
                    outcome.rejected.extend(commit.rejected);
                    outcome.commits += 1;
                    listeners = commit.listeners;
                    if !commit.more {
                        break None;
                    }
                }
                Pushed::Nothing => break None,
                Pushed::Refused(e) => break Some(e),
            }
        };
        metrics::counter!(names::MUTATIONS_APPLIED).increment(applied as u64);
        metrics::counter!(names::MUTATIONS_REJECTED).increment(outcome.rejected.len() as u64);
        if outcome.commits > 0 {
            self.poke(&caller.space, listeners).await;
        }
        Ok(match refused {
            None => Reply::Ok(outcome),
            Some(e) => Reply::Error(e),
        })
    }

    /// The push's distinct clients, in the order they first appear. Each is read and written
    /// by every commit of the push, so their number bounds its cost: it is checked before
    /// anything is read.
    fn distinct_clients<'a>(&self, req: &'a PushRequest) -> Result<Vec<&'a str>, EngineError> {
        let mut seen = HashSet::new();
        let mut client_ids = Vec::new();
        for m in &req.mutations {
            if seen.insert(m.client_id.as_str()) {
                if client_ids.len() == self.config.max_push_clients {
                    return Err(EngineError::BadRequest(format!(
                        "a push may carry mutations of at most {} clients",
                        self.config.max_push_clients
                    )));
                }
                super::validate_id("clientID", &m.client_id)?;
                client_ids.push(m.client_id.as_str());
            }
        }
        Ok(client_ids)
    }

    /// One attempt at the push's next commit: read, run the mutations, write.
    async fn push_attempt(
        &self,
        caller: &Caller,
        req: &PushRequest,
        client_ids: &[&str],
        read_ahead: Vec<String>,
    ) -> Result<Pushed, Attempt> {
        let mut state = self
            .read_state(caller, &req.client_group_id, client_ids, read_ahead)
            .await?;
        let run = self.run_mutations(caller, req, &mut state).await?;
        if let Some(e) = run.refused {
            return Ok(Pushed::Refused(e));
        }
        if run.applied + run.rejected.len() == 0 {
            return Ok(Pushed::Nothing);
        }
        let (entity_writes, reads) = state.overlay.lock().await.take_parts();
        let writes = self.commit_writes(
            caller,
            &req.client_group_id,
            &mut state,
            &entity_writes,
            &reads,
        );
        let actions = writes.len();
        if let Err(e) = self.store.write(writes).await {
            // What the next attempt reads ahead, if this one conflicted.
            return Err(Attempt::from(e).reading(reads.into_keys().collect()));
        }
        info!(
            space = caller.space.as_str(),
            version = state.version() + 1,
            mutations = run.applied + run.rejected.len(),
            rejected = run.rejected.len(),
            actions,
            "committed"
        );
        Ok(Pushed::Committed(Commit {
            applied: run.applied,
            rejected: run.rejected,
            listeners: state.listeners,
            more: run.more,
        }))
    }

    /// Reads, in one request, the space, the client group, the listeners, the push's clients
    /// and the keys to read ahead, and interprets them at the clock's time.
    async fn read_state<'a>(
        &self,
        caller: &Caller,
        group_id: &str,
        client_ids: &[&'a str],
        mut read_ahead: Vec<String>,
    ) -> Result<State<'a>, Attempt> {
        let space = caller.space.as_str();
        read_ahead.truncate(MAX_READ_AHEAD);
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
        addresses.extend(read_ahead.iter().map(|key| Address::Entity {
            space: space.to_owned(),
            key: key.clone(),
        }));
        let mut got = self.store.get(&addresses).await?.into_iter();
        let now = self.config.clock.now();
        let meta = match got.next().flatten() {
            Some(Record::Space(m)) => Some(m),
            _ => None,
        };
        let group = match got.next().flatten() {
            Some(Record::Group(g)) => Some(g),
            _ => None,
        };
        // An absent or expired group is unknown, whoever had it, and so are its clients:
        // they may not be continued, only started afresh at id 1.
        let group_live = super::live_group(group.as_ref(), caller, now)?;
        let listeners = match got.next().flatten() {
            Some(Record::Listeners(l)) => Some(l),
            _ => None,
        };
        let mut clients = BTreeMap::new();
        for (id, record) in client_ids.iter().zip(got.by_ref()) {
            let state = client_state(id, record, group_id, group_live, now)?;
            clients.insert(*id, state);
        }
        let version = meta.as_ref().map_or(0, |m| m.version);
        let slots = self.config.commit_log_slots;
        let mut overlay = Overlay::new(self.store.clone(), space, version, slots);
        for (key, record) in read_ahead.into_iter().zip(got) {
            overlay.read_ahead(key, record);
        }
        let client_expiry = now.saturating_add(self.config.client_ttl.as_secs());
        Ok(State {
            meta,
            group_write: group_write(group.as_ref(), client_expiry),
            listeners,
            clients,
            now,
            overlay: Arc::new(Mutex::new(overlay)),
        })
    }

    /// Runs the push's mutations above their clients' lmids, in order, until one would not
    /// fit in the commit, or one's id is beyond its client's next.
    async fn run_mutations(
        &self,
        caller: &Caller,
        req: &PushRequest,
        state: &mut State<'_>,
    ) -> Result<Run, Attempt> {
        let limits = self.store.limits();
        let mut run = Run::default();
        // Clients this commit writes, counted as they become dirty.
        let mut dirty_clients = 0usize;
        for m in &req.mutations {
            let client = state.clients.get_mut(m.client_id.as_str()).expect("read");
            if m.id <= client.lmid {
                continue;
            }
            if m.id > client.lmid + 1 {
                warn!(
                    client = %m.client_id, id = m.id, lmid = client.lmid,
                    "mutation from the future: the server has no state for this client"
                );
                metrics::counter!(names::CLIENT_STATE_NOT_FOUND).increment(1);
                run.refused = Some(ProtocolError::ClientStateNotFound);
                return Ok(run);
            }
            let logged = run.rejected.len() < MAX_LOGGED_REJECTIONS;
            let mut rejection = self.run_mutation(caller, m, &state.overlay, logged).await?;
            let mut o = state.overlay.lock().await;
            let actions = FIXED_ACTIONS
                + usize::from(state.group_write.is_some())
                + dirty_clients
                + usize::from(!client.dirty)
                + o.touched();
            let bytes = FIXED_BYTES + o.write_bytes();
            if actions > limits.max_write_actions || bytes > limits.max_write_bytes {
                o.forget();
                if run.applied + run.rejected.len() > 0 {
                    // Commit what fits; the rest goes in the next transaction.
                    run.more = true;
                    break;
                }
                warn!(client = %m.client_id, id = m.id, mutator = ?logged::bounded(&m.name),
                    actions, bytes,
                    "mutation touches more than one transaction holds; skipping it");
                rejection = Some(format!(
                    "touches more than one transaction holds ({actions} actions, {bytes} bytes)"
                ));
            } else {
                o.keep();
            }
            match rejection {
                Some(reason) => run.rejected.push(Rejection {
                    client_id: m.client_id.clone(),
                    mutation_id: m.id,
                    mutator: m.name.clone(),
                    reason,
                }),
                None => run.applied += 1,
            }
            client.lmid = m.id;
            dirty_clients += usize::from(!client.dirty);
            client.dirty = true;
        }
        Ok(run)
    }

    /// Runs mutation `m` with a `Tx` of its own, which stops working when the mutator
    /// returns; the reason if the application rejected it (its writes discarded).
    async fn run_mutation(
        &self,
        caller: &Caller,
        m: &Mutation,
        overlay: &Arc<Mutex<Overlay>>,
        log_rejection: bool,
    ) -> Result<Option<String>, Attempt> {
        let seq = {
            let mut o = overlay.lock().await;
            o.current += 1;
            o.current
        };
        let info = MutationInfo {
            user: caller.user.clone(),
            space: caller.space.clone(),
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
        match result.map_err(|e| e.0) {
            Ok(()) => Ok(None),
            Err(Kind::Rejected(reason)) => {
                if log_rejection {
                    warn!(client = %m.client_id, id = m.id,
                        mutator = ?logged::bounded(&m.name),
                        reason = ?logged::rejection_reason(&reason),
                        "mutation rejected; skipping it");
                }
                o.discard_writes();
                Ok(Some(reason))
            }
            Err(Kind::Retry(why)) => Err(Attempt::retry(why).reading(o.keys_read())),
            Err(Kind::Store(e)) => Err(Attempt::Fail(e.into())),
        }
    }

    /// The commit's writes, each conditioned on what the attempt read: the space's next
    /// version, the group if it must be, the clients processed, the entities written, a
    /// check of each key only read, the listeners (checked, or written with marks), and the
    /// commit's log.
    fn commit_writes(
        &self,
        caller: &Caller,
        group_id: &str,
        state: &mut State<'_>,
        entity_writes: &EntityWrites,
        reads: &ReadSet,
    ) -> Vec<Write> {
        let space = caller.space.as_str();
        let version = state.version() + 1;
        let client_expiry = state.now.saturating_add(self.config.client_ttl.as_secs());
        let epoch = state.meta.as_ref().map_or_else(
            || format!("{:016x}", fastrand::u64(..)),
            |m| m.epoch.clone(),
        );
        let mut writes = vec![Write::Put {
            record: Record::Space(SpaceMeta {
                space: space.to_owned(),
                version,
                epoch,
            }),
            expect: state
                .meta
                .as_ref()
                .map_or(Expect::Absent, |m| Expect::Version(m.version)),
        }];
        if let Some(expect) = state.group_write {
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
        let mut written: Vec<Written> =
            entity_writes.keys().cloned().map(Written::Entity).collect();
        for (id, c) in state.clients.iter().filter(|(_, c)| c.dirty) {
            written.push(Written::Client((*id).to_owned()));
            writes.push(client_write(space, id, group_id, version, c, client_expiry));
        }
        self.entity_writes(space, version, state.now, entity_writes, reads, &mut writes);
        // A connection registered after the read above fails the commit, so that the poke
        // after it reaches every connection registered before it; those whose space policy
        // read a key this commit writes are marked for it to run again.
        writes.push(super::listeners::listeners_write(
            space,
            &mut state.listeners,
            entity_writes.keys(),
            version,
        ));
        let slots = self.config.commit_log_slots.max(1);
        writes.push(Write::Put {
            record: Record::CommitLog(CommitLog {
                space: space.to_owned(),
                slot: (version % u64::from(slots)) as u32,
                version,
                written,
            }),
            expect: Expect::Any,
        });
        writes
    }

    /// The writes of the entities the mutations wrote at `version`, and a check of each
    /// they only read, each conditioned on the version it was read at.
    fn entity_writes(
        &self,
        space: &str,
        version: u64,
        now: u64,
        entity_writes: &EntityWrites,
        reads: &ReadSet,
        writes: &mut Vec<Write>,
    ) {
        let expect_read = |key: &str| match reads.get(key) {
            Some(Some(v)) => Expect::Version(*v),
            Some(None) => Expect::Absent,
            None => Expect::Any,
        };
        for (key, value) in entity_writes {
            writes.push(Write::Put {
                record: Record::Entity(Entity {
                    space: space.to_owned(),
                    key: key.clone(),
                    version,
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
    }
}

impl State<'_> {
    /// The space's version the attempt read.
    fn version(&self) -> u64 {
        self.meta.as_ref().map_or(0, |m| m.version)
    }
}

/// How client `id` of the push stands, from its `record` read with a group that is
/// `group_live` or not.
fn client_state(
    id: &str,
    record: Option<Record>,
    group_id: &str,
    group_live: bool,
    now: u64,
) -> Result<ClientState, Attempt> {
    let (lmid, read_version) = match record {
        // Expired, or of a group that is unknown now: unknown, as if TTL had deleted it (the
        // commit is conditioned on the record read, so that a client pushing meanwhile is
        // not overwritten).
        Some(Record::Client(c))
            if expired(c.expires_at, now) || (!group_live && c.group == group_id) =>
        {
            (0, Some(c.version))
        }
        Some(Record::Client(c)) if c.group != group_id => {
            return Err(Attempt::Fail(EngineError::Unauthorized(format!(
                "client {id:?} belongs to another client group"
            ))));
        }
        Some(Record::Client(c)) => (c.lmid, Some(c.version)),
        _ => (0, None),
    };
    Ok(ClientState {
        lmid,
        read_version,
        dirty: false,
    })
}

/// The write of client `id` at `version`, conditioned on the version it was read at.
fn client_write(
    space: &str,
    id: &str,
    group_id: &str,
    version: Version,
    client: &ClientState,
    expires_at: u64,
) -> Write {
    Write::Put {
        record: Record::Client(Client {
            space: space.to_owned(),
            id: id.to_owned(),
            group: group_id.to_owned(),
            version,
            lmid: client.lmid,
            expires_at: Some(expires_at),
        }),
        expect: client.read_version.map_or(Expect::Absent, Expect::Version),
    }
}

/// How the client group read must be written with a commit whose clients expire at
/// `client_expiry`, if it must. The group must outlive every client it has, or it could
/// expire (and be taken by anyone who knows its id) while its clients still hold their
/// lmids: it is written whenever the commit's clients would outlive it, conditioned on the
/// expiry read (every write of a group moves it forward), so that a concurrent rewrite of an
/// expired group fails this commit instead of being overwritten.
fn group_write(group: Option<&Group>, client_expiry: u64) -> Option<Expect> {
    match group.map(|g| g.expires_at) {
        None => Some(Expect::Absent),
        Some(None) => None,
        Some(Some(at)) if at >= client_expiry => None,
        Some(Some(at)) => Some(Expect::Version(at)),
    }
}
