//! Push: run the mutations in order against an overlay, then commit once, conditioned on
//! the space version, the clients' lmids and every key the mutators read.
//!
//! [`Engine::push_outcome`] reads as its steps: check what needs no read, ask the space
//! policy, then commit by commit (a transaction holds only so much) one attempt after
//! another until one commits: read the push's state in one request ([`Engine::read_state`]),
//! run the mutations against it ([`Engine::run_mutations`]), and write one transaction
//! built from what they did ([`Engine::commit_writes`]). Last, poke the space's listeners.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
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

/// How long a space keeps taking the queue after a commit that met contention, where the
/// push path is chosen per space (`auto`).
const HOT_SECS: u64 = 60;

/// What a push did, beyond its reply: for tests and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOutcome {
    /// Mutations processed (applied or rejected), each once.
    pub processed: usize,
    /// The mutations the application rejected (or that were too large to commit).
    pub rejected: Vec<Rejection>,
    /// Commits made (a large push takes several).
    pub commits: usize,
    /// Whether the push went to the queue, for a committer to commit (nothing was
    /// processed yet).
    pub queued: bool,
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
    /// Every mutation had been processed already: nothing to commit. With the space's
    /// listeners read, for a redelivered batch to poke them: its commit may have been made
    /// by a committer that stopped before its poke.
    Nothing(Option<Listeners>),
    /// The space takes the queue now, and the push may go there: what the attempt read
    /// raised no objection to it.
    Queue,
    /// These pushes cannot go on (nothing of this attempt is committed): the others start
    /// again without them.
    Out(Vec<(usize, Stop)>),
}

/// Why a push stopped before all its mutations were processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// An answer for the client: a mutation's id is beyond its client's next (the server has
    /// no state for that client), or its client group was refused for that before.
    Protocol(ProtocolError),
    /// The push may not be committed at all (its group or a client belongs to another).
    Error(EngineError),
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

/// One push of a commit: its caller, its request and its distinct clients. A direct push is
/// its commits' only push; a queued commit takes several of one space, in order.
pub(crate) struct Pending<'a> {
    pub(crate) caller: &'a Caller,
    pub(crate) req: &'a PushRequest,
    pub(crate) clients: Vec<&'a str>,
}

/// How the pushes came, and so what may become of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// A push committed here and answered.
    Direct,
    /// A push sent to the queue if its space takes the queue now, else committed here.
    MayQueue,
    /// Pushes from the queue, already answered: a client group found without state is marked
    /// refused, for its pulls to answer `ClientStateNotFound`.
    Queued,
}

/// What committing a list of pushes did.
#[derive(Default)]
pub(crate) struct Committed {
    /// What it did, summed over the pushes.
    pub(crate) outcome: PushOutcome,
    /// The pushes that stopped, by their index in the list, and why.
    pub(crate) stopped: BTreeMap<usize, Stop>,
    /// Whether the push should go to the queue instead (only by [`Route::MayQueue`]).
    pub(crate) queue: bool,
}

/// What an attempt read before running the mutations, and the overlay they run against.
struct State<'a> {
    /// The space's record (its version and epoch); `None` for a new space.
    meta: Option<SpaceMeta>,
    /// The client groups of the pushes, by id.
    groups: BTreeMap<&'a str, GroupState>,
    /// The space's poke connections.
    listeners: Option<Listeners>,
    /// Each client of the pushes as the attempt sees it.
    clients: BTreeMap<&'a str, ClientState<'a>>,
    /// The pushes that may not go on, found by this attempt's read, and why.
    stopped: Vec<(usize, Stop)>,
    /// The time the attempt started.
    now: u64,
    /// The entities as the mutations see them: the store, under their writes so far.
    overlay: Arc<Mutex<Overlay>>,
}

/// A client group as the attempt sees it.
struct GroupState {
    /// The user it belongs to.
    user: String,
    /// How it must be written with the commit, if it must: to outlive its clients, or to be
    /// marked refused.
    write: Option<Expect>,
    /// Whether this commit marks it refused.
    refuse: bool,
    /// Whether a mutation of it was processed.
    dirty: bool,
}

/// A client as the attempt sees it.
struct ClientState<'a> {
    /// Its client group.
    group: &'a str,
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
    /// The push that must stop uncommitted: a mutation's id is beyond its client's next, the
    /// server has no state for that client.
    refused: Option<usize>,
}

impl Run {
    fn processed(&self) -> usize {
        self.applied + self.rejected.len()
    }
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
        let clients = self.distinct_clients(req)?;
        self.authorize(caller, Operation::Push).await?;
        let pushes = [Pending {
            caller,
            req,
            clients,
        }];
        let mut done = self.commit_pushes(&pushes, self.route()).await?;
        if done.queue {
            match self.enqueue(caller, req).await {
                Ok(()) => {
                    metrics::counter!(names::PUSHES_QUEUED).increment(1);
                    done.outcome.queued = true;
                    return Ok(Reply::Ok(done.outcome));
                }
                // The queue only spares a hot space its conflicts: without it, the push
                // commits here.
                Err(e) => warn!(error = %e, "could not queue the push; committing it here"),
            }
            done = self.commit_pushes(&pushes, Route::Direct).await?;
        }
        match done.stopped.pop_first() {
            None => Ok(Reply::Ok(done.outcome)),
            Some((_, Stop::Protocol(e))) => Ok(Reply::Error(e)),
            Some((_, Stop::Error(e))) => Err(e),
        }
    }

    /// Commits `pushes` (of one space, in order) commit by commit until every mutation is
    /// processed or its push stopped, then pokes the space if anything committed.
    pub(crate) async fn commit_pushes(
        &self,
        pushes: &[Pending<'_>],
        route: Route,
    ) -> Result<Committed, EngineError> {
        let mut done = Committed::default();
        let mut applied = 0;
        let mut listeners = None;
        loop {
            // A commit whose attempt started again met contention, and so did pushes that
            // queued up behind each other: the space then takes the queue a while.
            let attempts = AtomicU32::new(0);
            // Only a push none of whose commits is made yet may still go to the queue.
            let route = match route {
                Route::MayQueue if done.outcome.commits > 0 => Route::Direct,
                route => route,
            };
            let attempt = |read_ahead| {
                let contended = attempts.fetch_add(1, Ordering::Relaxed) > 0 || pushes.len() > 1;
                self.push_attempt(pushes, &done.stopped, route, contended, read_ahead)
            };
            match self.retrying(names::PUSH_CONFLICTS, attempt).await? {
                Pushed::Committed(commit) => {
                    applied += commit.applied;
                    let outcome = &mut done.outcome;
                    outcome.processed += commit.applied + commit.rejected.len();
                    outcome.rejected.extend(commit.rejected);
                    outcome.commits += 1;
                    listeners = commit.listeners;
                    if !commit.more {
                        break;
                    }
                }
                Pushed::Nothing(read) => {
                    if route == Route::Queued && done.outcome.commits == 0 {
                        listeners = read;
                    }
                    break;
                }
                Pushed::Queue => {
                    done.queue = true;
                    return Ok(done);
                }
                Pushed::Out(stopped) => {
                    done.stopped.extend(stopped);
                    // Queued pushes go on without those stopped; the next attempt also
                    // marks refused the groups that must be (even if no push is left).
                    if route != Route::Queued {
                        break;
                    }
                }
            }
        }
        metrics::counter!(names::MUTATIONS_APPLIED).increment(applied as u64);
        let rejected = done.outcome.rejected.len() as u64;
        metrics::counter!(names::MUTATIONS_REJECTED).increment(rejected);
        if done.outcome.commits > 0 || listeners.is_some() {
            self.poke(&pushes[0].caller.space, listeners).await;
        }
        Ok(done)
    }

    /// The push's distinct clients, in the order they first appear. Each is read and written
    /// by every commit of the push, so their number bounds its cost: it is checked before
    /// anything is read.
    pub(crate) fn distinct_clients<'a>(
        &self,
        req: &'a PushRequest,
    ) -> Result<Vec<&'a str>, EngineError> {
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

    /// One attempt at the next commit of the pushes not `stopped`: read, run the mutations,
    /// write.
    async fn push_attempt(
        &self,
        pushes: &[Pending<'_>],
        stopped: &BTreeMap<usize, Stop>,
        route: Route,
        contended: bool,
        read_ahead: Vec<String>,
    ) -> Result<Pushed, Attempt> {
        let mut state = self.read_state(pushes, stopped, route, read_ahead).await?;
        if !state.stopped.is_empty() {
            return Ok(Pushed::Out(state.stopped));
        }
        let queue = self.takes_queue(state.meta.as_ref(), state.now);
        if route == Route::MayQueue && queue && self.fits_queue(&pushes[0]) {
            return Ok(may_queue(&pushes[0], &state));
        }
        let run = self.run_mutations(pushes, stopped, &mut state).await?;
        if let Some(index) = run.refused {
            let why = Stop::Protocol(ProtocolError::ClientStateNotFound);
            return Ok(Pushed::Out(vec![(index, why)]));
        }
        // A commit may only mark groups refused: it is a commit all the same, and its poke
        // has the refused clients pull, and learn it.
        let refusing = state.groups.values().any(|g| g.refuse);
        if run.processed() == 0 && !refusing {
            return Ok(Pushed::Nothing(state.listeners));
        }
        let (entity_writes, reads) = state.overlay.lock().await.take_parts();
        let writes = self.commit_writes(pushes, &mut state, contended, &entity_writes, &reads);
        let actions = writes.len();
        if let Err(e) = self.store.write(writes).await {
            // What the next attempt reads ahead, if this one conflicted.
            return Err(Attempt::from(e).reading(reads.into_keys().collect()));
        }
        info!(
            space = pushes[0].caller.space.as_str(),
            version = state.version() + 1,
            pushes = pushes.len() - stopped.len(),
            mutations = run.processed(),
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

    /// Reads, in one request, the space, the listeners, the pushes' client groups and
    /// clients and the keys to read ahead, and interprets them at the clock's time: how each
    /// group and client stands, and which pushes may not go on.
    async fn read_state<'a>(
        &self,
        pushes: &[Pending<'a>],
        stopped: &BTreeMap<usize, Stop>,
        route: Route,
        mut read_ahead: Vec<String>,
    ) -> Result<State<'a>, Attempt> {
        let space = pushes[0].caller.space.as_str();
        read_ahead.truncate(MAX_READ_AHEAD);
        // Every push's group (a stopped one's may have to be marked refused), and the
        // clients of those that go on.
        let group_ids = distinct(pushes.iter().map(|p| p.req.client_group_id.as_str()));
        let going_on = pushes
            .iter()
            .enumerate()
            .filter(|(i, _)| !stopped.contains_key(i));
        let client_ids = distinct(going_on.flat_map(|(_, p)| p.clients.iter().copied()));
        let addresses = state_addresses(space, &group_ids, &client_ids, &read_ahead);
        let mut got = self.store.get(&addresses).await?.into_iter();
        let now = self.config.clock.now();
        let meta = match got.next().flatten() {
            Some(Record::Space(m)) => Some(m),
            _ => None,
        };
        let listeners = match got.next().flatten() {
            Some(Record::Listeners(l)) => Some(l),
            _ => None,
        };
        let mut groups = BTreeMap::new();
        for (id, record) in group_ids.iter().zip(got.by_ref()) {
            let group = match record {
                Some(Record::Group(g)) => Some(g),
                _ => None,
            };
            groups.insert(*id, group);
        }
        let clients: BTreeMap<&str, Option<Record>> =
            client_ids.iter().copied().zip(got.by_ref()).collect();
        let version = meta.as_ref().map_or(0, |m| m.version);
        let slots = self.config.commit_log_slots;
        let mut overlay = Overlay::new(self.store.clone(), space, version, slots);
        for (key, record) in read_ahead.into_iter().zip(got) {
            overlay.read_ahead(key, record);
        }
        let mut state = State {
            meta,
            groups: BTreeMap::new(),
            listeners,
            clients: BTreeMap::new(),
            stopped: Vec::new(),
            now,
            overlay: Arc::new(Mutex::new(overlay)),
        };
        let read = Read { groups, clients };
        state.admit_all(&read, pushes, stopped, route, self.client_expiry(now))?;
        Ok(state)
    }

    /// When a client group written by a commit at `now` expires: after every client the
    /// commit writes.
    fn group_expiry(&self, now: u64) -> u64 {
        self.client_expiry(now).saturating_add(GROUP_SLACK)
    }

    /// When a client written by a commit at `now` expires.
    fn client_expiry(&self, now: u64) -> u64 {
        now.saturating_add(self.config.client_ttl.as_secs())
    }

    /// Runs the mutations above their clients' lmids, push by push in order, until one
    /// would not fit in the commit, or one's id is beyond its client's next.
    async fn run_mutations(
        &self,
        pushes: &[Pending<'_>],
        stopped: &BTreeMap<usize, Stop>,
        state: &mut State<'_>,
    ) -> Result<Run, Attempt> {
        let limits = self.store.limits();
        let mut run = Run::default();
        // Clients and groups this commit writes, counted as they become dirty (a group is
        // written with its first processed mutation if its expiry must move, and when it is
        // refused).
        let mut dirty_clients = 0usize;
        let mut group_writes = state.groups.values().filter(|g| g.refuse).count();
        let going_on = pushes
            .iter()
            .enumerate()
            .filter(|(i, _)| !stopped.contains_key(i));
        'pushes: for (index, push) in going_on {
            for m in &push.req.mutations {
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
                    run.refused = Some(index);
                    return Ok(run);
                }
                let logged = run.rejected.len() < MAX_LOGGED_REJECTIONS;
                let mut rejection = self
                    .run_mutation(push.caller, m, &state.overlay, logged)
                    .await?;
                let new_group_write = state
                    .groups
                    .get(client.group)
                    .map_or(0, |g| usize::from(g.write.is_some() && !g.dirty));
                let mut o = state.overlay.lock().await;
                let actions = FIXED_ACTIONS
                    + group_writes
                    + new_group_write
                    + dirty_clients
                    + usize::from(!client.dirty)
                    + o.touched();
                let bytes = FIXED_BYTES + o.write_bytes();
                if actions > limits.max_write_actions || bytes > limits.max_write_bytes {
                    o.forget();
                    if run.processed() > 0 {
                        // Commit what fits; the rest goes in the next transaction.
                        run.more = true;
                        break 'pushes;
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
                group_writes += new_group_write;
                client.dirty = true;
                let group = client.group;
                if let Some(g) = state.groups.get_mut(group) {
                    g.dirty = true;
                }
            }
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
    /// version, the groups that must be, the clients processed, the entities written, a
    /// check of each key only read, the listeners (checked, or written with marks), and the
    /// commit's log. A `contended` commit keeps the space taking the queue a while longer.
    fn commit_writes(
        &self,
        pushes: &[Pending<'_>],
        state: &mut State<'_>,
        contended: bool,
        entity_writes: &EntityWrites,
        reads: &ReadSet,
    ) -> Vec<Write> {
        let space = pushes[0].caller.space.as_str();
        let version = state.version() + 1;
        let client_expiry = self.client_expiry(state.now);
        let epoch = state.meta.as_ref().map_or_else(
            || format!("{:016x}", fastrand::u64(..)),
            |m| m.epoch.clone(),
        );
        let hot_until = match &state.meta {
            // Whatever this function's own path: the push function reads it, and the
            // committer (configured apart) keeps a busy space hot.
            _ if contended => Some(state.now.saturating_add(HOT_SECS)),
            Some(m) => m.hot_until,
            None => None,
        };
        let mut writes = vec![Write::Put {
            record: Record::Space(SpaceMeta {
                space: space.to_owned(),
                version,
                epoch,
                hot_until,
            }),
            expect: state
                .meta
                .as_ref()
                .map_or(Expect::Absent, |m| Expect::Version(m.version)),
        }];
        writes.extend(self.group_writes(space, state));
        let mut written: Vec<Written> =
            entity_writes.keys().cloned().map(Written::Entity).collect();
        for (id, c) in state.clients.iter().filter(|(_, c)| c.dirty) {
            written.push(Written::Client((*id).to_owned()));
            writes.push(client_write(space, id, version, c, client_expiry));
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

    /// The writes of the client groups that must be written: those a processed mutation
    /// keeps alive whose clients would outlive them, and those marked refused.
    fn group_writes(&self, space: &str, state: &State<'_>) -> Vec<Write> {
        let expires_at = self.group_expiry(state.now);
        state
            .groups
            .iter()
            .filter(|(_, g)| g.dirty || g.refuse)
            .filter_map(|(id, g)| {
                Some(Write::Put {
                    record: Record::Group(Group {
                        id: (*id).to_owned(),
                        user: g.user.clone(),
                        space: space.to_owned(),
                        // A refused group's expiry differs from any other write's of the same
                        // second, so that its condition tells them apart.
                        expires_at: Some(expires_at + u64::from(g.refuse)),
                        refused: g.refuse,
                    }),
                    expect: g.write?,
                })
            })
            .collect()
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

/// The groups and clients an attempt read, before they are interpreted push by push.
struct Read<'a> {
    groups: BTreeMap<&'a str, Option<Group>>,
    clients: BTreeMap<&'a str, Option<Record>>,
}

impl<'a> State<'a> {
    /// The space's version the attempt read.
    fn version(&self) -> u64 {
        self.meta.as_ref().map_or(0, |m| m.version)
    }

    /// Takes in the pushes not `stopped` that may go on, noting why the others may not; for
    /// queued pushes, first marks refused the groups that must be.
    fn admit_all(
        &mut self,
        read: &Read<'a>,
        pushes: &[Pending<'a>],
        stopped: &BTreeMap<usize, Stop>,
        route: Route,
        client_expiry: u64,
    ) -> Result<(), Attempt> {
        if route == Route::Queued {
            self.refuse_groups(read, pushes, stopped);
        }
        for (index, push) in pushes.iter().enumerate() {
            if !stopped.contains_key(&index) {
                if let Err(why) = self.admit(read, push, client_expiry)? {
                    self.stopped.push((index, why));
                }
            }
        }
        Ok(())
    }

    /// Marks refused, for queued pushes, the group of each push `stopped` because the server
    /// has no state for one of its clients, unless the store has it refused already (and
    /// then, as after the mark, the group's other pushes stop when they are admitted).
    fn refuse_groups(
        &mut self,
        read: &Read<'a>,
        pushes: &[Pending<'a>],
        stopped: &BTreeMap<usize, Stop>,
    ) {
        for (index, why) in stopped {
            let push = &pushes[*index];
            let id = push.req.client_group_id.as_str();
            let record = read.groups.get(id).and_then(Option::as_ref);
            let live = record.filter(|g| !expired(g.expires_at, self.now));
            let owned = live.is_none_or(|g| super::check_group(g, push.caller).is_ok());
            if !matches!(why, Stop::Protocol(_)) || !owned || live.is_some_and(|g| g.refused) {
                continue;
            }
            self.groups.entry(id).or_insert_with(|| GroupState {
                user: push.caller.user.clone(),
                write: Some(group_expect(record)),
                refuse: true,
                dirty: false,
            });
        }
    }

    /// Takes in `push` if its group and clients may go on, with how they stand; else why
    /// not (or why the attempt must start again).
    fn admit(
        &mut self,
        read: &Read<'a>,
        push: &Pending<'a>,
        client_expiry: u64,
    ) -> Result<Result<(), Stop>, Attempt> {
        match self.admit_push(read, push, client_expiry) {
            Ok(()) => Ok(Ok(())),
            Err(not) => stop(not),
        }
    }

    /// [`State::admit`], with an attempt that fails as the push's stop.
    fn admit_push(
        &mut self,
        read: &Read<'a>,
        push: &Pending<'a>,
        client_expiry: u64,
    ) -> Result<(), Admission> {
        let id = push.req.client_group_id.as_str();
        let record = read.groups.get(id).and_then(Option::as_ref);
        // An absent or expired group is unknown, whoever had it, and so are its clients:
        // they may not be continued, only started afresh at id 1.
        let live = super::live_group(record, push.caller, self.now)?;
        if let Some(g) = self.groups.get(id) {
            if g.user != push.caller.user {
                return Err(Admission::Stop(Stop::Error(EngineError::Unauthorized(
                    format!("client group {id:?} belongs to another user"),
                ))));
            }
        }
        let refused = live && record.is_some_and(|g| g.refused);
        if refused || self.groups.get(id).is_some_and(|g| g.refuse) {
            return Err(Admission::Stop(Stop::Protocol(
                ProtocolError::ClientStateNotFound,
            )));
        }
        let mut clients = Vec::new();
        for c in &push.clients {
            let record = read.clients.get(c).cloned().flatten();
            let state = client_state(c, record, id, live, self.now)?;
            if self.clients.get(c).is_some_and(|known| known.group != id) {
                return Err(Admission::Stop(Stop::Error(EngineError::Unauthorized(
                    format!("client {c:?} belongs to another client group"),
                ))));
            }
            clients.push((*c, state));
        }
        self.groups.entry(id).or_insert_with(|| GroupState {
            user: push.caller.user.clone(),
            write: group_write(record, client_expiry),
            refuse: false,
            dirty: false,
        });
        for (c, state) in clients {
            self.clients.entry(c).or_insert(state);
        }
        Ok(())
    }
}

/// What an attempt reads, in this order: the space's counter and listeners, the groups, the
/// clients, and the keys read ahead.
fn state_addresses(
    space: &str,
    group_ids: &[&str],
    client_ids: &[&str],
    read_ahead: &[String],
) -> Vec<Address> {
    let mut addresses = vec![
        Address::Space {
            space: space.to_owned(),
        },
        Address::Listeners {
            space: space.to_owned(),
        },
    ];
    addresses.extend(group_ids.iter().map(|g| Address::Group {
        group: (*g).to_owned(),
    }));
    addresses.extend(client_ids.iter().map(|c| Address::Client {
        space: space.to_owned(),
        client: (*c).to_owned(),
    }));
    addresses.extend(read_ahead.iter().map(|key| Address::Entity {
        space: space.to_owned(),
        key: key.clone(),
    }));
    addresses
}

/// Why a push is not taken in: it stops, or the attempt must start again.
enum Admission {
    Stop(Stop),
    Attempt(Attempt),
}

impl From<Attempt> for Admission {
    /// An attempt that fails for good stops the push; one that must start again stays so.
    fn from(attempt: Attempt) -> Self {
        match attempt {
            Attempt::Fail(e) => Admission::Stop(Stop::Error(e)),
            retry => Admission::Attempt(retry),
        }
    }
}

/// A push not taken in: its stop, or the attempt's start again.
fn stop(admission: Admission) -> Result<Result<(), Stop>, Attempt> {
    match admission {
        Admission::Stop(why) => Ok(Err(why)),
        Admission::Attempt(attempt) => Err(attempt),
    }
}

/// What becomes of a push that may go to the queue, by what the attempt read: queued if it
/// has a mutation to process; answered here if it has none, or if one's id is beyond its
/// client's next (as a commit would answer it).
fn may_queue(push: &Pending<'_>, state: &State<'_>) -> Pushed {
    let mut next: BTreeMap<&str, u64> = BTreeMap::new();
    let mut any = false;
    for m in &push.req.mutations {
        let lmid = next.entry(m.client_id.as_str()).or_insert_with(|| {
            state
                .clients
                .get(m.client_id.as_str())
                .map_or(0, |c| c.lmid)
        });
        if m.id <= *lmid {
            continue;
        }
        if m.id > *lmid + 1 {
            metrics::counter!(names::CLIENT_STATE_NOT_FOUND).increment(1);
            return Pushed::Out(vec![(
                0,
                Stop::Protocol(ProtocolError::ClientStateNotFound),
            )]);
        }
        *lmid = m.id;
        any = true;
    }
    if any {
        Pushed::Queue
    } else {
        Pushed::Nothing(None)
    }
}

/// The items of `items` without repeats, in the order they first appear.
fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    items.filter(|i| seen.insert(*i)).collect()
}

/// How client `id` of a push with group `group_id` stands, from its `record` read with a
/// group that is `group_live` or not.
fn client_state<'a>(
    id: &str,
    record: Option<Record>,
    group_id: &'a str,
    group_live: bool,
    now: u64,
) -> Result<ClientState<'a>, Attempt> {
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
        group: group_id,
        lmid,
        read_version,
        dirty: false,
    })
}

/// The write of client `id` at `version`, conditioned on the version it was read at.
fn client_write(
    space: &str,
    id: &str,
    version: Version,
    client: &ClientState<'_>,
    expires_at: u64,
) -> Write {
    Write::Put {
        record: Record::Client(Client {
            space: space.to_owned(),
            id: id.to_owned(),
            group: client.group.to_owned(),
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

/// The condition of a write of the group read, whatever it must say.
fn group_expect(group: Option<&Group>) -> Expect {
    match group.map(|g| g.expires_at) {
        None => Expect::Absent,
        Some(None) => Expect::Any,
        Some(Some(at)) => Expect::Version(at),
    }
}
