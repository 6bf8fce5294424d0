//! The hot space through the queue: the same pushes committed directly, through an SQS FIFO
//! queue (LocalStack's SQS, on the host), and by the engine's own choice (`auto`), measured
//! from the push to the moment another client group's pull shows the mutation.
//!
//! Pushers behave as the `replicache` client does: a push carries every mutation of the
//! client not yet known to be committed, so that a push queued behind another one of the
//! same client does not skip ids. A mutation counts as known to be committed once the
//! puller has seen it (the client would learn it from its own pull after the poke); the
//! puller is a measuring instrument, its requests are not counted. Two committers stand in
//! for Lambda's pollers: each receives up to 10 messages, runs them through
//! [`lambda::commit_event`] as the committer function does, deletes what succeeded and leaves
//! the failed ones to the visibility timeout.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use integration_tests::client::{caller, mutation, pull_ok, push_request};
use integration_tests::counting::CountingStore;
use integration_tests::dynamodb_local;
use replicache_dynamodb::engine::{
    Engine, EngineConfig, EngineError, PushPath, PushQueue, QueueError, QueuedPush,
};
use replicache_dynamodb::lambda::{self, SqsQueue};
use replicache_dynamodb::protocol::{PatchOp, Reply};
use replicache_dynamodb::store::Store;
use serde_json::{json, Value};

use crate::{app, check_hot_space, Mix, VALUE};

/// The space of the runs.
const SPACE: &str = "hot";
/// Committers polling the queue, as Lambda's pollers do.
const COMMITTERS: usize = 2;
/// The queue's visibility timeout: a failed message comes back after it.
const VISIBILITY_TIMEOUT_SECS: u32 = 30;
/// The puller's pause between pulls (a client on a poke pulls at once; this bounds the
/// latencies' resolution and what the puller takes from the run).
const PULL_PAUSE: Duration = Duration::from_millis(10);
/// A run that shows no new mutation for this long has lost some: it stops with an error.
const STALL: Duration = Duration::from_secs(120);

/// LocalStack's SQS, as the end-to-end tests start it (`tests/e2e/sqs.mjs`, run by Node, from
/// the venv `tests/sqs/install.sh` fills, installed first if missing); stopped when dropped.
struct LocalStack {
    child: Child,
    /// Where its SQS answers.
    endpoint: String,
}

impl LocalStack {
    /// Installs LocalStack if its venv is missing, starts it alone on a free loopback port
    /// and waits until its SQS answers.
    async fn start() -> LocalStack {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        // Idempotent: it installs only what is missing.
        let installed = Command::new(root.join("tests/sqs/install.sh"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .expect("run tests/sqs/install.sh");
        assert!(
            installed.success(),
            "installing LocalStack failed: {installed}"
        );
        let started = Instant::now();
        let mut child = Command::new("node")
            .arg(root.join("tests/e2e/sqs.mjs"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start LocalStack (node tests/e2e/sqs.mjs)");
        let stdout = child.stdout.take().expect("its stdout");
        // It prints the endpoint once SQS answers (or exits with why it did not).
        let line = std::io::BufRead::lines(std::io::BufReader::new(stdout))
            .next()
            .and_then(Result::ok)
            .unwrap_or_default();
        let endpoint = line
            .strip_prefix("AWS_ENDPOINT_URL_SQS=")
            .unwrap_or_else(|| panic!("LocalStack did not start: {line:?}"))
            .to_owned();
        eprintln!(
            "LocalStack's SQS answers at {endpoint} ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        LocalStack { child, endpoint }
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        // SIGTERM lets it stop LocalStack; then make sure.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An SQS client for the emulator at `endpoint`, each call bounded by `timeout`.
async fn sqs_client(endpoint: &str, timeout: Duration) -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(replicache_dynamodb::store::dynamo::http_client())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "local", "local", None, None, "bench",
        ))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(timeout)
                .build(),
        )
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

/// A new FIFO queue of pushes.
async fn fifo_queue(client: &aws_sdk_sqs::Client) -> String {
    client
        .create_queue()
        .queue_name(format!("bench-{:016x}.fifo", fastrand::u64(..)))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            VISIBILITY_TIMEOUT_SECS.to_string(),
        )
        .send()
        .await
        .expect("create a FIFO queue")
        .queue_url
        .expect("a queue URL")
}

/// The SQS requests of a run, by kind, and what the committers did.
#[derive(Default)]
struct SqsCounts {
    sends: AtomicUsize,
    receives: AtomicUsize,
    deletes: AtomicUsize,
    /// Batches committed, their messages, and the time `commit_event` took on them.
    batches: AtomicUsize,
    messages: AtomicUsize,
    commit_micros: AtomicUsize,
    /// Messages the committer function reported failed.
    failed: AtomicUsize,
}

impl SqsCounts {
    fn total(&self) -> usize {
        self.sends.load(Ordering::SeqCst)
            + self.receives.load(Ordering::SeqCst)
            + self.deletes.load(Ordering::SeqCst)
    }
}

/// The push function's queue, counting its `SendMessage` requests.
struct CountingQueue {
    inner: SqsQueue,
    counts: Arc<SqsCounts>,
}

#[async_trait]
impl PushQueue for CountingQueue {
    async fn send(&self, push: &QueuedPush) -> Result<(), QueueError> {
        self.counts.sends.fetch_add(1, Ordering::SeqCst);
        self.inner.send(push).await
    }

    fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes()
    }
}

/// What one run measured.
pub struct QueueRun {
    path: PushPath,
    groups: u64,
    mutations: u64,
    /// From the first push until the puller has seen every mutation.
    wall: Duration,
    /// Per mutation, from the start of the first push that carried it until the puller's
    /// pull that first showed it returned.
    visible: Vec<Duration>,
    /// Per push, until its answer.
    answers: Vec<Duration>,
    pushes: usize,
    /// Pushes answered as queued.
    queued: usize,
    /// Writes cancelled by a conflict (each an attempt the engine started again).
    conflicts: usize,
    /// Pushes answered 503 (and pushed again).
    unavailable: usize,
    /// Requests to DynamoDB until the last mutation showed, the puller's left out.
    dynamodb_requests: usize,
    /// `SendMessage`, `ReceiveMessage` and `DeleteMessageBatch` requests until then.
    sqs_requests: usize,
    /// Messages the committer function reported failed (they come back after the
    /// visibility timeout).
    failed_messages: usize,
}

impl QueueRun {
    fn per_second(&self) -> f64 {
        self.mutations as f64 / self.wall.as_secs_f64()
    }
}

/// `groups` client groups each push `pushes` batches of `batch` write-only mutations into
/// one space, each as soon as its previous push is answered and `interval` after the
/// previous one started, taking `path`.
async fn hot_space(
    config: &EngineConfig,
    path: PushPath,
    sqs: &aws_sdk_sqs::Client,
    groups: u64,
    pushes: u64,
    batch: u64,
    interval: Duration,
) -> QueueRun {
    let table: Arc<dyn Store> = Arc::new(dynamodb_local::fresh_table().await);
    let store = Arc::new(CountingStore::new(table.clone()));
    let counts = Arc::new(SqsCounts::default());
    let config = EngineConfig {
        push_path: path,
        ..config.clone()
    };
    let mut pushing = Engine::new(store.clone(), app(), config.clone());
    let queue_url = match path {
        PushPath::Direct => None,
        PushPath::Queued | PushPath::Auto => Some(fifo_queue(sqs).await),
    };
    if let Some(url) = &queue_url {
        pushing = pushing.with_queue(Arc::new(CountingQueue {
            inner: SqsQueue::new(sqs.clone(), url),
            counts: counts.clone(),
        }));
    }
    let pushing = Arc::new(pushing);
    let committing = Arc::new(Engine::new(store.clone(), app(), config.clone()));
    let puller = Engine::new(table, app(), config);
    let confirmed: Arc<Vec<AtomicU64>> = Arc::new((0..groups).map(|_| AtomicU64::new(0)).collect());
    let done = Arc::new(AtomicBool::new(false));

    let start = Instant::now();
    let committers: Vec<_> = match &queue_url {
        None => Vec::new(),
        Some(url) => (0..COMMITTERS)
            .map(|_| {
                tokio::spawn(commit_loop(
                    committing.clone(),
                    sqs.clone(),
                    url.clone(),
                    counts.clone(),
                    done.clone(),
                ))
            })
            .collect(),
    };
    let pushers: Vec<_> = (0..groups)
        .map(|g| {
            tokio::spawn(push_loop(
                pushing.clone(),
                confirmed.clone(),
                g,
                pushes,
                batch,
                interval,
            ))
        })
        .collect();
    let total = groups * pushes * batch;
    let seen = pull_loop(&puller, &confirmed, groups, pushes * batch, total).await;
    let wall = start.elapsed();
    // Snapshots at the moment the last mutation showed: what the run cost.
    let dynamodb_requests = store.take();
    let sqs_requests = counts.total();
    done.store(true, Ordering::SeqCst);

    let mut run = QueueRun {
        path,
        groups,
        mutations: total,
        wall,
        visible: Vec::new(),
        answers: Vec::new(),
        pushes: 0,
        queued: 0,
        conflicts: store.take_conflicts(),
        unavailable: 0,
        dynamodb_requests,
        sqs_requests,
        failed_messages: 0,
    };
    for (g, pusher) in pushers.into_iter().enumerate() {
        let pushed = pusher.await.expect("a pushing task");
        run.pushes += pushed.answers.len();
        run.answers.extend(pushed.answers);
        run.queued += pushed.queued;
        run.unavailable += pushed.unavailable;
        for (started, shown) in pushed.started.iter().zip(&seen[g]) {
            let shown = shown.expect("the puller saw every mutation");
            run.visible.push(shown.saturating_duration_since(*started));
        }
    }
    for committer in committers {
        committer.await.expect("a committing task");
    }
    run.failed_messages = counts.failed.load(Ordering::SeqCst);
    let batches = counts.batches.load(Ordering::SeqCst);
    if batches > 0 {
        eprintln!(
            "  committers: {batches} batches of {:.1} messages on average, commit_event {:.1} ms on average",
            counts.messages.load(Ordering::SeqCst) as f64 / batches as f64,
            counts.commit_micros.load(Ordering::SeqCst) as f64 / batches as f64 / 1000.0,
        );
    }
    check_hot_space(&pushing, Mix::WriteOnly, total).await;
    run
}

/// What one pushing client group did.
struct Pushed {
    /// When the first push carrying each mutation started, by mutation id − 1.
    started: Vec<Instant>,
    /// Each push's time until its answer.
    answers: Vec<Duration>,
    queued: usize,
    unavailable: usize,
}

/// One client group's pushes: each carries the client's new mutations and those not yet
/// known to be committed, as the `replicache` client's pushes do.
async fn push_loop(
    engine: Arc<Engine>,
    confirmed: Arc<Vec<AtomicU64>>,
    g: u64,
    pushes: u64,
    batch: u64,
    interval: Duration,
) -> Pushed {
    let who = caller("bench", SPACE);
    let (group, client) = (format!("g{g}"), format!("c{g}"));
    let mut pending = Vec::new();
    let mut pushed = Pushed {
        started: Vec::new(),
        answers: Vec::new(),
        queued: 0,
        unavailable: 0,
    };
    for p in 0..pushes {
        let sent = Instant::now();
        for id in p * batch + 1..=(p + 1) * batch {
            let key = format!("item/{g}/{id}");
            pending.push(mutation(
                &client,
                id,
                "put",
                json!({"key": key, "value": VALUE}),
            ));
            pushed.started.push(sent);
        }
        let known = confirmed[g as usize].load(Ordering::SeqCst);
        pending.retain(|m| m.id > known);
        let req = push_request(&group, pending.clone());
        loop {
            match engine.push_outcome(&who, &req).await {
                Ok(Reply::Ok(outcome)) => {
                    if outcome.queued {
                        pushed.queued += 1;
                    } else {
                        // Committed here: every pending mutation is processed.
                        pending.clear();
                    }
                    break;
                }
                Err(EngineError::Unavailable(_)) => pushed.unavailable += 1,
                other => panic!("push failed: {other:?}"),
            }
        }
        pushed.answers.push(sent.elapsed());
        // A client's pace, where one is set (not a wait for anything).
        tokio::time::sleep_until((sent + interval).into()).await;
    }
    pushed
}

/// Another client group pulls with its cookie until it has seen every mutation; answers when
/// it first saw each, by group and mutation id − 1, and keeps `confirmed` (each group's
/// highest mutation seen) up to date.
async fn pull_loop(
    engine: &Engine,
    confirmed: &[AtomicU64],
    groups: u64,
    per_group: u64,
    total: u64,
) -> Vec<Vec<Option<Instant>>> {
    let who = caller("bench", SPACE);
    let mut seen = vec![vec![None; per_group as usize]; groups as usize];
    let mut count = 0;
    let mut cookie = Value::Null;
    let mut progress = Instant::now();
    while count < total {
        let r = pull_ok(engine, &who, "puller", cookie).await;
        let now = Instant::now();
        cookie = r.cookie;
        for op in &r.patch {
            let PatchOp::Put { key, .. } = op else {
                continue;
            };
            let Some((g, id)) = key
                .strip_prefix("item/")
                .and_then(|rest| rest.split_once('/'))
                .and_then(|(g, id)| Some((g.parse::<usize>().ok()?, id.parse::<u64>().ok()?)))
            else {
                continue;
            };
            let first = &mut seen[g][id as usize - 1];
            if first.is_none() {
                *first = Some(now);
                count += 1;
                progress = now;
                // A client's mutations commit in order: all before this one are in too.
                confirmed[g].fetch_max(id, Ordering::SeqCst);
            }
        }
        assert!(
            progress.elapsed() < STALL,
            "no new mutation showed for {} s: {count} of {total} seen",
            STALL.as_secs()
        );
        if count < total {
            tokio::time::sleep(PULL_PAUSE).await;
        }
    }
    seen
}

/// One committer: receives batches until `done`, commits each as the committer function
/// does, deletes the messages that succeeded and leaves the failed ones to the visibility
/// timeout.
async fn commit_loop(
    engine: Arc<Engine>,
    sqs: aws_sdk_sqs::Client,
    url: String,
    counts: Arc<SqsCounts>,
    done: Arc<AtomicBool>,
) {
    while !done.load(Ordering::SeqCst) {
        counts.receives.fetch_add(1, Ordering::SeqCst);
        let received = match sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
        {
            Ok(r) => r.messages.unwrap_or_default(),
            Err(e) => {
                eprintln!(
                    "receive failed: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                );
                continue;
            }
        };
        if received.is_empty() {
            continue;
        }
        let mut event = SqsEvent::default();
        event.records = received.iter().map(lambda_record).collect();
        let committing = Instant::now();
        let response = lambda::commit_event(&engine, event).await;
        counts.batches.fetch_add(1, Ordering::SeqCst);
        counts.messages.fetch_add(received.len(), Ordering::SeqCst);
        let micros = committing.elapsed().as_micros() as usize;
        counts.commit_micros.fetch_add(micros, Ordering::SeqCst);
        let failures: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        counts.failed.fetch_add(failures.len(), Ordering::SeqCst);
        let entries: Vec<_> = received
            .iter()
            .enumerate()
            .filter(|(_, m)| !failures.contains(&m.message_id().unwrap_or_default()))
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .expect("a delete entry")
            })
            .collect();
        if entries.is_empty() {
            continue;
        }
        counts.deletes.fetch_add(1, Ordering::SeqCst);
        match sqs
            .delete_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(r) if r.failed.is_empty() => {}
            Ok(r) => eprintln!("deletes failed: {:?}", r.failed),
            Err(e) => eprintln!(
                "delete failed: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            ),
        }
    }
}

/// A received message as Lambda's event source mapping hands it to the function.
fn lambda_record(m: &aws_sdk_sqs::types::Message) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = m.message_id.clone();
    record.receipt_handle = m.receipt_handle.clone();
    record.body = m.body.clone();
    record.md5_of_body = m.md5_of_body.clone();
    record.attributes = m
        .attributes
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
        .collect::<HashMap<_, _>>();
    record.event_source = Some("aws:sqs".to_owned());
    record.aws_region = Some("us-east-1".to_owned());
    record
}

/// Pushes of each group at `groups` groups, from `base` at 8 groups or fewer: fewer from
/// more groups, so that the direct path's slowest runs stay within minutes.
fn pushes_at(groups: u64, base: u64) -> u64 {
    let divisor = match groups {
        0..=8 => 1,
        9..=32 => 2,
        33..=64 => 4,
        _ => 8,
    };
    (base / divisor).max(1)
}

/// The same hot space from each of `group_counts` directly, queued and by the engine's
/// choice, on one LocalStack (stopped at the end).
pub async fn comparison(
    config: &EngineConfig,
    group_counts: &[u64],
    base_pushes: u64,
    batch: u64,
    interval: Duration,
) -> Vec<QueueRun> {
    eprintln!("starting LocalStack's SQS");
    let localstack = LocalStack::start().await;
    // Long polls of a second, and a margin.
    let sqs = sqs_client(&localstack.endpoint, Duration::from_secs(20)).await;
    let mut runs = Vec::new();
    for &groups in group_counts {
        let pushes = pushes_at(groups, base_pushes);
        for path in [PushPath::Direct, PushPath::Queued, PushPath::Auto] {
            eprintln!(
                "hot space, {path:?}: {groups} groups, {} mutations",
                groups * pushes * batch
            );
            let run = hot_space(config, path, &sqs, groups, pushes, batch, interval).await;
            eprintln!("  {:.1} s", run.wall.as_secs_f64());
            if path == PushPath::Auto && groups == 1 {
                // A quiet space keeps the direct path: nothing may go through the queue.
                assert_eq!(run.queued, 0, "auto queued a push of a lone client group");
            }
            runs.push(run);
        }
    }
    drop(localstack);
    runs
}

fn name(path: PushPath) -> &'static str {
    match path {
        PushPath::Direct => "direct",
        PushPath::Queued => "queued",
        PushPath::Auto => "auto",
    }
}

/// Prints the runs as a Markdown table, and how they meet the goals of issue 18.
pub fn print(runs: &[QueueRun], batch: u64, interval: Duration) {
    use crate::{ms, percentile};
    let pace = if interval.is_zero() {
        "each group pushing as soon as its last push is answered".to_owned()
    } else {
        format!(
            "each group pushing every {} ms at most",
            interval.as_millis()
        )
    };
    println!("\n### Hot space through the queue: {batch} write-only mutations per push, one space, {pace}, {COMMITTERS} committers\n");
    println!("| groups | path | mutations | mutations/s | × direct | conflicts | 503s | pushes queued | push answer p50 ms | push-to-visible p50 ms | p99 ms | DynamoDB requests/mutation | SQS requests/mutation |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let direct_rate = |groups| {
        runs.iter()
            .find(|r| r.groups == groups && r.path == PushPath::Direct)
            .map_or(f64::NAN, QueueRun::per_second)
    };
    for r in runs {
        let failed = if r.failed_messages > 0 {
            format!(" ({} messages failed)", r.failed_messages)
        } else {
            String::new()
        };
        println!(
            "| {} | {}{failed} | {} | {:.0} | {:.2} | {} | {} | {} of {} | {:.1} | {:.0} | {:.0} | {:.2} | {:.2} |",
            r.groups,
            name(r.path),
            r.mutations,
            r.per_second(),
            r.per_second() / direct_rate(r.groups),
            r.conflicts,
            r.unavailable,
            r.queued,
            r.pushes,
            ms(percentile(&r.answers, 0.5)),
            ms(percentile(&r.visible, 0.5)),
            ms(percentile(&r.visible, 0.99)),
            r.dynamodb_requests as f64 / r.mutations as f64,
            r.sqs_requests as f64 / r.mutations as f64,
        );
    }
    println!();
    if let Some(auto) = runs
        .iter()
        .find(|r| r.groups == 1 && r.path == PushPath::Auto)
    {
        println!(
            "- 1 group, auto: {} of {} pushes queued (PushOutcome::queued false for every push: the direct path).",
            auto.queued, auto.pushes
        );
    }
    if let Some(queued) = runs
        .iter()
        .find(|r| r.groups == 32 && r.path == PushPath::Queued)
    {
        let times = queued.per_second() / direct_rate(32);
        let p99 = percentile(&queued.visible, 0.99);
        let verdict = |ok: bool| if ok { "met" } else { "not met" };
        println!(
            "- 32 groups, queued: {times:.1}× direct's mutations/s (goal ≥ 5×: {}), {} conflicts (goal 0: {}), push-to-visible p99 {:.0} ms (goal < 1,000 ms: {}).",
            verdict(times >= 5.0),
            queued.conflicts,
            verdict(queued.conflicts == 0),
            ms(p99),
            verdict(p99 < Duration::from_secs(1)),
        );
    }
}
