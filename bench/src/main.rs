//! The benchmark: the engine on DynamoDB Local, against a per-mutation baseline and against
//! DynamoDB Local's own latency, in one run. Prints Markdown tables.
//!
//! ```sh
//! cargo run --release -p bench            # the full run (scripts/bench adds the cold start)
//! cargo run --release -p bench -- --quick # a small run that only proves it still works
//! ```
//!
//! - **Hot space**: 1, 8 and 32 client groups push batches of mutations into one space at
//!   once, write-only (`put` of a fresh key) or read-modify-write (`increment` of one of a
//!   few shared counters). The baseline takes the same batches and commits each mutation on
//!   its own: its own read and its own conditioned `TransactWriteItems`, as Replicache's
//!   row-versioning and express samples commit (one transaction per mutation).
//! - **Pull**: an idle pull, incremental pulls after k changes, and initial syncs.
//! - **Hot space through the queue**: 1 to 128 client groups push into one space directly,
//!   through an SQS FIFO queue (LocalStack's SQS) and committers, and by the engine's choice
//!   (`auto`); from each push until another client group's pull shows it ([`queue`]).
//! - **Floor**: single `BatchGetItem`, `TransactWriteItems` and `Query` calls of the shapes
//!   push and pull make, through the same client and table.

mod queue;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use integration_tests::client::{caller, mutation, pull_ok, push_ok, push_request, View};
use integration_tests::counting::CountingStore;
use integration_tests::dynamodb_local;
use replicache_dynamodb::engine::{Engine, EngineConfig, EngineError};
use replicache_dynamodb::js::JsApp;
use replicache_dynamodb::protocol::{PullResponse, Reply, SYNC_KEY};
use replicache_dynamodb::store::memory::MemoryStore;
use replicache_dynamodb::store::{
    Address, Client, CommitLog, Entity, Expect, Record, SpaceMeta, Store, Write, Written,
};
use replicache_dynamodb::{App, Mutators, Tx};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Benchmarks the engine on DynamoDB Local and prints Markdown tables")]
struct Options {
    /// A small run (1 and 8 groups, 1,000 keys): checks that the benchmark works, in seconds.
    #[arg(long)]
    quick: bool,
    /// Mutations per push in the hot-space runs.
    #[arg(long, default_value_t = 10)]
    batch: u64,
    /// Client groups of the hot-space runs, comma-separated (default 1,8,32; quick 1,8).
    #[arg(long, value_delimiter = ',')]
    groups: Vec<u64>,
    /// Only the hot-space runs (and the floor).
    #[arg(long)]
    hot_only: bool,
    /// In the runs through the queue: the least time between the starts of a group's
    /// pushes, in milliseconds (default 0: each pushes as soon as its last is answered).
    #[arg(long, default_value_t = 0)]
    push_interval_ms: u64,
    /// Only the hot space through the queue: direct, queued and auto, from 1, 8, 32, 64 and
    /// 128 groups (quick: 1 and 8), or `--groups`.
    #[arg(long)]
    queued: bool,
    /// Pushes of each group in the hot-space runs (default 20, half from 32 groups; quick 3).
    #[arg(long)]
    pushes: Option<u64>,
    /// The engine's largest retry delay after a conflict, in milliseconds (default: the
    /// engine's).
    #[arg(long)]
    retry_max_delay_ms: Option<u64>,
    /// Only the fairness runs: one writer's pushes beside this many groups pushing in a loop,
    /// once writes and once mutations that are all rejected.
    #[arg(long)]
    fairness: Option<u64>,
}

/// The same two mutators in JavaScript, as a client would write them.
const BENCH_JS: &str = r#"
export const mutators = {
  async putJs(tx, { key, value }) { await tx.set(key, value); },
  async incrementJs(tx, { key }) { await tx.set(key, ((await tx.get(key)) ?? 0) + 1); },
};
"#;

/// The benchmark's application: a write-only and a read-modify-write mutator, in Rust (`put`,
/// `increment`) and in JavaScript (`putJs`, `incrementJs`).
fn app() -> App {
    let js = JsApp::from_source("bench.js", BENCH_JS).expect("the bench's JavaScript loads");
    App::new(
        Mutators::new()
            .register("put", |tx: Tx, args: Value| async move {
                let key = args["key"].as_str().unwrap_or_default().to_owned();
                tx.set(&key, &args["value"]).await
            })
            .register("increment", |tx: Tx, args: Value| async move {
                let key = args["key"].as_str().unwrap_or_default().to_owned();
                let n: u64 = tx.get(&key).await?.unwrap_or(0);
                tx.set(&key, &(n + 1)).await
            }),
    )
    .js(js)
}

/// Which language the mutators of a run are written in.
#[derive(Clone, Copy, PartialEq)]
enum Lang {
    Rust,
    Js,
}

impl Lang {
    fn name(self, mix: Mix) -> &'static str {
        match (mix, self) {
            (Mix::WriteOnly, Lang::Rust) => "put",
            (Mix::WriteOnly, Lang::Js) => "putJs",
            (Mix::ReadModifyWrite, Lang::Rust) => "increment",
            (Mix::ReadModifyWrite, Lang::Js) => "incrementJs",
        }
    }
}

/// The engine's own time per mutation on the in-memory store (no DynamoDB latency), Rust
/// against JavaScript: `pushes` pushes of `batch` mutations from one client, one at a time.
async fn per_mutation_cost(mix: Mix, lang: Lang, pushes: u64, batch: u64) -> Duration {
    let engine = Engine::new(Arc::new(MemoryStore::new()), app(), EngineConfig::default());
    let who = caller("bench", "cost");
    let start = Instant::now();
    for p in 0..pushes {
        let mutations = (1..=batch)
            .map(|i| {
                let id = p * batch + i;
                let key = match mix {
                    Mix::WriteOnly => format!("item/{id}"),
                    Mix::ReadModifyWrite => format!("counter/{}", id % COUNTERS),
                };
                mutation("c", id, lang.name(mix), json!({"key": key, "value": VALUE}))
            })
            .collect();
        push_ok(&engine, &who, "g", mutations).await;
    }
    start.elapsed() / (pushes * batch) as u32
}

/// The shared counters the read-modify-write mix increments.
const COUNTERS: u64 = 16;
/// A value of about 100 bytes, like a small chat message.
const VALUE: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labo";

#[derive(Clone, Copy, PartialEq)]
enum Mix {
    WriteOnly,
    ReadModifyWrite,
}

#[derive(Clone, Copy, PartialEq)]
enum Commit {
    /// The engine: one commit per push (up to the transaction's limits).
    Batched,
    /// One commit per mutation, with the same reads and conditions: the baseline.
    PerMutation,
}

struct HotRun {
    mutations: u64,
    wall: Duration,
    latencies: Vec<Duration>,
    conflicts: usize,
    unavailable: usize,
    requests: usize,
}

impl HotRun {
    fn per_second(&self) -> f64 {
        self.mutations as f64 / self.wall.as_secs_f64()
    }
}

fn percentile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted
        .get(((sorted.len().saturating_sub(1)) as f64 * q).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn engine_on(store: Arc<CountingStore>, config: &EngineConfig) -> Engine {
    Engine::new(store, app(), config.clone())
}

/// `groups` client groups each push `pushes` batches of `batch` mutations into one space, as
/// fast as their answers come back; a 503 is retried, as the client does.
async fn hot_space(
    config: &EngineConfig,
    mix: Mix,
    commit: Commit,
    lang: Lang,
    groups: u64,
    pushes: u64,
    batch: u64,
) -> HotRun {
    let store = Arc::new(CountingStore::new(Arc::new(
        dynamodb_local::fresh_table().await,
    )));
    let engine = Arc::new(engine_on(store.clone(), config));
    let start = Instant::now();
    let tasks: Vec<_> = (0..groups)
        .map(|g| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let who = caller("bench", "hot");
                let (group, client) = (format!("g{g}"), format!("c{g}"));
                let mut rng = fastrand::Rng::with_seed(g);
                let mut latencies = Vec::new();
                let mut unavailable = 0;
                for p in 0..pushes {
                    let mutations = (1..=batch)
                        .map(|i| {
                            let id = p * batch + i;
                            match mix {
                                Mix::WriteOnly => mutation(
                                    &client,
                                    id,
                                    lang.name(mix),
                                    json!({"key": format!("item/{g}/{id}"), "value": VALUE}),
                                ),
                                Mix::ReadModifyWrite => mutation(
                                    &client,
                                    id,
                                    lang.name(mix),
                                    json!({"key": format!("counter/{}", rng.u64(..COUNTERS))}),
                                ),
                            }
                        })
                        .collect();
                    // The baseline's server takes the same batch and commits its mutations one
                    // by one, each read and conditioned as the engine does.
                    let requests: Vec<_> = match commit {
                        Commit::Batched => vec![push_request(&group, mutations)],
                        Commit::PerMutation => mutations
                            .into_iter()
                            .map(|m| push_request(&group, vec![m]))
                            .collect(),
                    };
                    let sent = Instant::now();
                    for req in &requests {
                        loop {
                            match engine.push(&who, req).await {
                                Ok(Reply::Ok(())) => break,
                                Err(EngineError::Unavailable(_)) => unavailable += 1,
                                other => panic!("push failed: {other:?}"),
                            }
                        }
                    }
                    latencies.push(sent.elapsed());
                }
                (latencies, unavailable)
            })
        })
        .collect();
    let mut run = HotRun {
        mutations: groups * pushes * batch,
        wall: Duration::ZERO,
        latencies: Vec::new(),
        conflicts: 0,
        unavailable: 0,
        requests: 0,
    };
    for task in tasks {
        let (latencies, unavailable) = task.await.expect("a pushing task");
        run.latencies.extend(latencies);
        run.unavailable += unavailable;
    }
    run.wall = start.elapsed();
    run.conflicts = store.take_conflicts();
    run.requests = store.take();
    check_hot_space(&engine, mix, run.mutations).await;
    run
}

/// What the other groups of a fairness run push.
#[derive(Clone, Copy, Debug)]
enum Others {
    /// Writes, as the writer does.
    Writing,
    /// Mutations that are all rejected (an unknown mutator): each push commits only its
    /// client's lmid.
    Rejected,
}

/// What one writer saw, and how many commits the others made meanwhile.
struct FairRun {
    latencies: Vec<Duration>,
    unavailable: usize,
    other_commits: usize,
}

/// One writer pushes `pushes` batches of `batch` writes into a space while `others` groups
/// push batches in a loop until it is done: whether pushes that only reject hold the space's
/// counter (and so the writer) more than pushes that write.
async fn fairness(
    config: &EngineConfig,
    others: Others,
    groups: u64,
    pushes: u64,
    batch: u64,
) -> FairRun {
    let store = Arc::new(CountingStore::new(Arc::new(
        dynamodb_local::fresh_table().await,
    )));
    let engine = Arc::new(engine_on(store.clone(), config));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loops: Vec<_> = (0..groups)
        .map(|g| {
            let (engine, done) = (engine.clone(), done.clone());
            tokio::spawn(async move {
                let who = caller("other", "fair");
                let (group, client) = (format!("o{g}"), format!("oc{g}"));
                let mut commits = 0;
                let mut next = 1;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let mutations = (next..next + batch)
                        .map(|id| match others {
                            Others::Writing => mutation(
                                &client,
                                id,
                                "put",
                                json!({"key": format!("o/{g}/{id}"), "value": VALUE}),
                            ),
                            Others::Rejected => mutation(&client, id, "noSuchMutator", json!({})),
                        })
                        .collect();
                    if let Ok(Reply::Ok(outcome)) = engine
                        .push_outcome(&who, &push_request(&group, mutations))
                        .await
                    {
                        commits += outcome.commits;
                        next += batch;
                    }
                }
                commits
            })
        })
        .collect();
    let who = caller("writer", "fair");
    let mut run = FairRun {
        latencies: Vec::new(),
        unavailable: 0,
        other_commits: 0,
    };
    for p in 0..pushes {
        let mutations = (1..=batch)
            .map(|i| {
                let id = p * batch + i;
                mutation(
                    "w",
                    id,
                    "put",
                    json!({"key": format!("w/{id}"), "value": VALUE}),
                )
            })
            .collect();
        let req = push_request("writer", mutations);
        let sent = Instant::now();
        loop {
            match engine.push(&who, &req).await {
                Ok(Reply::Ok(())) => break,
                Err(EngineError::Unavailable(_)) => run.unavailable += 1,
                other => panic!("push failed: {other:?}"),
            }
        }
        run.latencies.push(sent.elapsed());
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for task in loops {
        run.other_commits += task.await.expect("a pushing task");
    }
    run
}

/// What the hot space must hold afterwards: every mutation applied exactly once. A benchmark
/// of a backend that loses or repeats writes would measure nothing.
async fn check_hot_space(engine: &Engine, mix: Mix, mutations: u64) {
    let (view, _) = initial_sync(engine, "hot").await;
    let applied: u64 = match mix {
        Mix::WriteOnly => view.data.len() as u64,
        Mix::ReadModifyWrite => view.data.values().map(|v| v.as_u64().unwrap_or(0)).sum(),
    };
    assert_eq!(
        applied, mutations,
        "the hot space does not hold every mutation once"
    );
}

/// Pulls from scratch until the sync is complete: the client's view (without the sync
/// marker), and the pulls' bytes and pages.
async fn initial_sync(engine: &Engine, space: &str) -> (View, Sync) {
    let who = caller("bench", space);
    let mut view = View::default();
    let mut sync = Sync::default();
    loop {
        let r = view.sync(engine, &who, "reader").await;
        sync.pages += 1;
        sync.bytes += json_bytes(&r);
        if !view.incomplete() {
            view.data.remove(SYNC_KEY);
            return (view, sync);
        }
    }
}

#[derive(Default)]
struct Sync {
    pages: usize,
    bytes: usize,
}

/// Bytes of a pull response's JSON, as the client receives it before compression.
fn json_bytes(r: &PullResponse) -> usize {
    serde_json::to_vec(r).map_or(0, |b| b.len())
}

/// Puts `keys` keys into `space` from `from` on, 90 mutations a push (one commit each).
async fn fill(engine: &Engine, space: &str, from: u64, keys: u64) {
    let who = caller("bench", space);
    let client = format!("filler-{space}");
    let ids: Vec<u64> = (from..from + keys).collect();
    for chunk in ids.chunks(90) {
        let mutations = chunk
            .iter()
            .map(|&i| {
                mutation(
                    &client,
                    i + 1,
                    "put",
                    json!({"key": format!("k/{i:07}"), "value": VALUE}),
                )
            })
            .collect();
        push_ok(engine, &who, &client, mutations).await;
    }
}

struct PullRow {
    what: String,
    latency: Duration,
    bytes: usize,
    requests: usize,
    pages: usize,
    /// Changes, for an incremental pull: its floor is one `BatchGetItem`, and a `Query` if
    /// anything changed.
    incremental: Option<u64>,
}

async fn pulls(config: &EngineConfig, sizes: &[u64], changes: &[u64]) -> Vec<PullRow> {
    let store = Arc::new(CountingStore::new(Arc::new(
        dynamodb_local::fresh_table().await,
    )));
    let engine = engine_on(store.clone(), config);
    let mut rows = Vec::new();
    let mut filled = 0;
    for &size in sizes {
        fill(&engine, "big", filled, size - filled).await;
        filled = size;
        store.take();
        let start = Instant::now();
        let (view, sync) = initial_sync(&engine, "big").await;
        let latency = start.elapsed();
        assert_eq!(view.data.len() as u64, size, "an initial sync missed keys");
        rows.push(PullRow {
            what: format!("initial sync, {size} keys"),
            latency,
            bytes: sync.bytes,
            requests: store.take(),
            pages: sync.pages,
            incremental: None,
        });
    }
    // Incremental pulls, from a cookie of the smallest space.
    let (view, _) = initial_sync(&engine, "small-changes").await;
    let who = caller("bench", "small-changes");
    fill(&engine, "small-changes", 0, sizes[0]).await;
    let mut cookie = pull_ok(&engine, &who, "reader", view.cookie).await.cookie;
    let mut written = sizes[0];
    for &k in std::iter::once(&0).chain(changes) {
        // The median of several rounds of k changes and a pull.
        let mut latencies = Vec::new();
        let (mut bytes, mut requests) = (0, 0);
        for _ in 0..PULL_ROUNDS {
            fill(&engine, "small-changes", written, k).await;
            written += k;
            store.take();
            let start = Instant::now();
            let r = pull_ok(&engine, &who, "reader", cookie).await;
            latencies.push(start.elapsed());
            assert_eq!(r.patch.len() as u64, k, "an incremental pull's patch");
            bytes = json_bytes(&r);
            requests = store.take();
            cookie = r.cookie;
        }
        rows.push(PullRow {
            what: if k == 0 {
                "idle (no change)".to_owned()
            } else {
                format!("incremental, {k} changes")
            },
            latency: percentile(&latencies, 0.5),
            bytes,
            requests,
            pages: 1,
            incremental: Some(k),
        });
    }
    rows
}

/// Rounds of each incremental pull; the table gives their median.
const PULL_ROUNDS: usize = 9;

/// DynamoDB Local's own latency for the requests push and pull make (medians).
struct Floor {
    /// `BatchGetItem` of a push: the counter, the group, the client, the listeners.
    get_push: Duration,
    /// `BatchGetItem` of a pull: the counter and the group.
    get_small: Duration,
    /// `TransactWriteItems` of a push of `batch` write-only mutations.
    write: Duration,
    /// `Query` of the changes a pull reads (one page, a few items).
    query: Duration,
}

async fn floor(samples: usize, batch: u64) -> Floor {
    let store = dynamodb_local::fresh_table().await;
    let space = "floor".to_owned();
    let mut times: [Vec<Duration>; 4] = Default::default();
    for v in 0..samples as u64 {
        let written: Vec<String> = (0..batch).map(|i| format!("item/{v}/{i}")).collect();
        let mut writes = vec![
            Write::Put {
                record: Record::Space(SpaceMeta {
                    space: space.clone(),
                    version: v + 1,
                    epoch: "e".into(),
                    hot_until: None,
                }),
                expect: if v == 0 {
                    Expect::Absent
                } else {
                    Expect::Version(v)
                },
            },
            Write::Check {
                address: Address::Listeners {
                    space: space.clone(),
                },
                expect: Expect::Absent,
            },
            Write::Put {
                record: Record::CommitLog(CommitLog {
                    space: space.clone(),
                    slot: ((v + 1) % 64) as u32,
                    version: v + 1,
                    written: written
                        .iter()
                        .cloned()
                        .map(Written::Entity)
                        .chain([Written::Client("c".into())])
                        .collect(),
                }),
                expect: Expect::Any,
            },
            Write::Put {
                record: Record::Client(Client {
                    space: space.clone(),
                    id: "c".into(),
                    group: "g".into(),
                    version: v + 1,
                    lmid: (v + 1) * batch,
                    expires_at: None,
                }),
                expect: if v == 0 {
                    Expect::Absent
                } else {
                    Expect::Version(v)
                },
            },
        ];
        writes.extend(written.into_iter().map(|key| Write::Put {
            record: Record::Entity(Entity {
                space: space.clone(),
                key,
                version: v + 1,
                value: Some(json!(VALUE).to_string()),
                expires_at: None,
            }),
            expect: Expect::Any,
        }));
        let timed = Instant::now();
        store.write(writes).await.expect("a floor write");
        times[0].push(timed.elapsed());
    }
    // Each kind of request in a run of its own, back to back, as the engine's requests of
    // one kind come in the measured runs.
    let push_keys = [
        Address::Space {
            space: space.clone(),
        },
        Address::Group { group: "g".into() },
        Address::Client {
            space: space.clone(),
            client: "c".into(),
        },
        Address::Listeners {
            space: space.clone(),
        },
    ];
    for _ in 0..samples {
        let timed = Instant::now();
        store.get(&push_keys).await.expect("a floor read");
        times[1].push(timed.elapsed());
    }
    for _ in 0..samples {
        let timed = Instant::now();
        store.get(&push_keys[..2]).await.expect("a floor read");
        times[2].push(timed.elapsed());
    }
    // The last commit's items: what an incremental pull after it reads.
    let last = (samples as u64).saturating_sub(1);
    for _ in 0..samples {
        let timed = Instant::now();
        store
            .changes(&space, last, None)
            .await
            .expect("a floor query");
        times[3].push(timed.elapsed());
    }
    Floor {
        write: percentile(&times[0], 0.5),
        get_push: percentile(&times[1], 0.5),
        get_small: percentile(&times[2], 0.5),
        query: percentile(&times[3], 0.5),
    }
}

#[tokio::main]
async fn main() {
    let options = Options::parse();
    let batch = options.batch;
    let (group_counts, pushes, samples, sizes, changes): (&[u64], u64, usize, &[u64], &[u64]) =
        if options.quick {
            (&[1, 8], 3, 10, &[1_000], &[1, 10])
        } else {
            (
                &[1, 8, 32],
                20,
                100,
                &[1_000, 10_000, 100_000],
                &[1, 10, 100],
            )
        };
    let pushes = options.pushes.unwrap_or(pushes);
    let interval = Duration::from_millis(options.push_interval_ms);
    let mut config = EngineConfig::default();
    if let Some(ms) = options.retry_max_delay_ms {
        config.retry_max_delay = Duration::from_millis(ms);
    }
    eprintln!("starting DynamoDB Local");
    dynamodb_local::endpoint();
    let queue_groups: &[u64] = match (&options.groups[..], options.quick) {
        ([], true) => &[1, 8],
        ([], false) => &[1, 8, 32, 64, 128],
        (groups, _) => groups,
    };
    if options.queued {
        eprintln!("warming DynamoDB Local up: {samples} samples of each request");
        floor(samples, batch).await;
        let runs = queue::comparison(&config, queue_groups, pushes, batch, interval).await;
        queue::print(&runs, batch, interval);
        return;
    }
    if let Some(groups) = options.fairness {
        println!("| the others push | others | writer's push p50 ms | p99 ms | writer's 503s | others' commits |");
        println!("|---|---|---|---|---|---|");
        for others in [Others::Writing, Others::Rejected] {
            eprintln!("fairness: one writer beside {groups} groups, {others:?}");
            let run = fairness(&config, others, groups, pushes, batch).await;
            println!(
                "| {others:?} | {groups} | {:.1} | {:.1} | {} | {} |",
                ms(percentile(&run.latencies, 0.5)),
                ms(percentile(&run.latencies, 0.99)),
                run.unavailable,
                run.other_commits
            );
        }
        return;
    }

    eprintln!("floor: {samples} samples of each request, after as many to warm DynamoDB Local up");
    floor(samples, batch).await;
    let first_floor = floor(samples, batch).await;

    struct HotRow {
        mix: Mix,
        groups: u64,
        commit: Commit,
        lang: Lang,
        run: HotRun,
        ratio: f64,
    }
    let group_counts = if options.groups.is_empty() {
        group_counts
    } else {
        &options.groups[..]
    };
    let mut hot = Vec::new();
    for mix in [Mix::WriteOnly, Mix::ReadModifyWrite] {
        for &groups in group_counts {
            let mut baseline_rate = None;
            for (commit, lang) in [
                (Commit::PerMutation, Lang::Rust),
                (Commit::Batched, Lang::Rust),
                (Commit::Batched, Lang::Js),
            ] {
                let pushes = if groups >= 32 { pushes / 2 } else { pushes }.max(1);
                eprintln!(
                    "hot space: {groups} groups, {} mutations",
                    groups * pushes * batch
                );
                let run = hot_space(&config, mix, commit, lang, groups, pushes, batch).await;
                let base = *baseline_rate.get_or_insert(run.per_second());
                let ratio = run.per_second() / base;
                hot.push(HotRow {
                    mix,
                    groups,
                    commit,
                    lang,
                    run,
                    ratio,
                });
            }
        }
    }

    let queue_runs = queue::comparison(&config, queue_groups, pushes, batch, interval).await;

    eprintln!("JavaScript against Rust, per mutation");
    let cost_pushes = if options.quick { 20 } else { 300 };
    let mut costs = Vec::new();
    for mix in [Mix::WriteOnly, Mix::ReadModifyWrite] {
        let rust = per_mutation_cost(mix, Lang::Rust, cost_pushes, batch).await;
        let js = per_mutation_cost(mix, Lang::Js, cost_pushes, batch).await;
        costs.push((mix, rust, js));
    }

    eprintln!("pulls");
    let rows = if options.hot_only {
        Vec::new()
    } else {
        pulls(&config, sizes, changes).await
    };

    // DynamoDB Local's JIT keeps getting faster for a while: the floor is measured again at
    // the end, and each request's faster median is the one the ratios use (the stricter).
    eprintln!("floor again");
    let last_floor = floor(samples, batch).await;
    let floor = Floor {
        get_push: first_floor.get_push.min(last_floor.get_push),
        get_small: first_floor.get_small.min(last_floor.get_small),
        write: first_floor.write.min(last_floor.write),
        query: first_floor.query.min(last_floor.query),
    };
    let push_floor = floor.get_push + floor.write;
    println!("\n### DynamoDB Local's own latency (median of {samples}, at the start and at the end of the run)\n");
    println!("| request | shape | start p50 ms | end p50 ms |");
    println!("|---|---|---:|---:|");
    let shapes = [
        (
            "BatchGetItem",
            "a push's: counter, group, client, listeners".to_owned(),
            first_floor.get_push,
            last_floor.get_push,
        ),
        (
            "BatchGetItem",
            "a pull's: counter, group".to_owned(),
            first_floor.get_small,
            last_floor.get_small,
        ),
        (
            "TransactWriteItems",
            format!(
                "a push of {batch} write-only mutations ({} actions)",
                batch + 4
            ),
            first_floor.write,
            last_floor.write,
        ),
        (
            "Query",
            format!("a pull's changes after one commit of {batch} keys (one page)"),
            first_floor.query,
            last_floor.query,
        ),
    ];
    for (request, shape, first, last) in shapes {
        println!(
            "| {request} | {shape} | {:.2} | {:.2} |",
            ms(first),
            ms(last)
        );
    }

    println!(
        "\n### Hot space: {batch} mutations per push, one space, every group pushing at once\n"
    );
    println!("| mix | groups | commits | mutations/s | push p50 ms | p99 ms | p50 × floor | conflicts | 503s | requests/mutation | × per-mutation |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for HotRow {
        mix,
        groups,
        commit,
        lang,
        run,
        ratio,
    } in hot
    {
        let p50 = percentile(&run.latencies, 0.5);
        println!(
            "| {} | {groups} | {} | {:.0} | {:.1} | {:.1} | {:.2} | {} | {} | {:.2} | {ratio:.2} |",
            if mix == Mix::WriteOnly {
                "write-only"
            } else {
                "read-modify-write"
            },
            match (commit, lang) {
                (Commit::Batched, Lang::Rust) => "per push (this engine)",
                (Commit::Batched, Lang::Js) => "per push (this engine), JavaScript mutators",
                (Commit::PerMutation, _) => "per mutation (baseline)",
            },
            run.per_second(),
            ms(p50),
            ms(percentile(&run.latencies, 0.99)),
            p50.as_secs_f64() / push_floor.as_secs_f64(),
            run.conflicts,
            run.unavailable,
            run.requests as f64 / run.mutations as f64,
        );
    }

    queue::print(&queue_runs, batch, interval);

    println!("\n### JavaScript mutators against the same in Rust (in-memory store, {} mutations of {batch} a push)\n", cost_pushes * batch);
    println!("| mix | Rust µs/mutation | JavaScript µs/mutation | JavaScript's overhead µs |");
    println!("|---|---:|---:|---:|");
    for (mix, rust, js) in costs {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "| {} | {:.1} | {:.1} | {:.1} |",
            if mix == Mix::WriteOnly {
                "write-only"
            } else {
                "read-modify-write"
            },
            us(rust),
            us(js),
            us(js) - us(rust),
        );
    }

    if !rows.is_empty() {
        println!("\n### Pull (one client group, values of about 100 bytes, default page budget)\n");
        println!("| pull | latency ms | bytes | DynamoDB requests | pages | × floor |");
        println!("|---|---:|---:|---:|---:|---:|");
        for r in rows {
            println!(
                "| {} | {:.1} | {} | {} | {} | {} |",
                r.what,
                ms(r.latency),
                r.bytes,
                r.requests,
                r.pages,
                r.incremental.map_or(String::new(), |k| {
                    let f = if k == 0 {
                        floor.get_small
                    } else {
                        floor.get_small + floor.query
                    };
                    format!("{:.2}", r.latency.as_secs_f64() / f.as_secs_f64())
                }),
            );
        }
    }
    println!("\nThe floors (each request's faster median): a push, BatchGetItem + TransactWriteItems = {:.2} ms; an idle pull, one BatchGetItem = {:.2} ms; an incremental pull, BatchGetItem + Query = {:.2} ms.", ms(push_floor), ms(floor.get_small), ms(floor.get_small + floor.query));
}
