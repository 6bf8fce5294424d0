//! Queued pushes (`docs/consistency.md`, "Queued pushes"): what the push function answers
//! at once, what a queued commit of several client groups' pushes costs and does, how a
//! commit answers what only it can know (through pulls), and how a space chooses its path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use integration_tests::client::{caller, mutation, pull, pull_ok, push_ok, push_request, puts};
use integration_tests::counting::CountingStore;
use integration_tests::faulty::FaultyStore;
use replicache_dynamodb::engine::{
    Caller, Clock, Engine, EngineConfig, EngineError, PushPath, PushQueue, QueueError, QueuedPush,
};
use replicache_dynamodb::lambda::{commit_event, SqsBatchResponse, SqsEvent};
use replicache_dynamodb::protocol::{Mutation, ProtocolError, Reply};
use replicache_dynamodb::store::memory::MemoryStore;
use serde_json::{json, Value};

use crate::{app_for_tests, on_both_stores};

/// A queue that keeps what it is sent, for the test to commit.
#[derive(Default)]
struct Collecting {
    sent: Mutex<Vec<QueuedPush>>,
}

impl Collecting {
    fn take(&self) -> Vec<QueuedPush> {
        std::mem::take(&mut self.sent.lock().unwrap())
    }
}

#[async_trait]
impl PushQueue for Collecting {
    async fn send(&self, push: &QueuedPush) -> Result<(), QueueError> {
        self.sent.lock().unwrap().push(push.clone());
        Ok(())
    }

    fn max_body_bytes(&self) -> usize {
        4096
    }
}

/// An engine taking `path`, with its queue, its request counter and its clock.
struct Setup {
    engine: Engine,
    queue: Arc<Collecting>,
    count: Arc<CountingStore>,
    now: Arc<AtomicU64>,
}

async fn setup(store: Arc<dyn replicache_dynamodb::store::Store>, path: PushPath) -> Setup {
    let now = Arc::new(AtomicU64::new(1_800_000_000));
    let read = now.clone();
    let count = Arc::new(CountingStore::new(store));
    let queue = Arc::new(Collecting::default());
    let config = EngineConfig {
        clock: Clock::new(move || read.load(Ordering::SeqCst)),
        push_path: path,
        ..EngineConfig::default()
    };
    let engine = Engine::new(count.clone(), app_for_tests(), config).with_queue(queue.clone());
    Setup {
        engine,
        queue,
        count,
        now,
    }
}

fn put(client: &str, id: u64, key: &str) -> Mutation {
    mutation(client, id, "put", json!({"key": key, "value": id}))
}

/// Pushes and expects the push queued.
async fn queued(e: &Engine, who: &Caller, group: &str, mutations: Vec<Mutation>) {
    match e.push_outcome(who, &push_request(group, mutations)).await {
        Ok(Reply::Ok(outcome)) => assert!(outcome.queued, "not queued: {outcome:?}"),
        other => panic!("push failed: {other:?}"),
    }
}

on_both_stores! {
    async fn a_queued_commit_takes_several_groups_at_once(backend) {
        let s = setup(backend.store().await, PushPath::Queued).await;
        let e = &s.engine;
        for (user, group, client) in [("ann", "ga", "ca"), ("bob", "gb", "cb"), ("cy", "gc", "cc")] {
            queued(e, &caller(user, "room"), group, vec![put(client, 1, client), put(client, 2, user)]).await;
            assert_eq!(s.count.take(), 1, "a queued push reads once and writes nothing");
        }
        let batch = s.queue.take();
        assert_eq!(batch.len(), 3);
        let done = e.commit_queued(&batch).await.unwrap();
        assert_eq!((done.outcome.processed, done.outcome.commits), (6, 1));
        assert!(done.stopped.is_empty());
        assert_eq!(s.count.take(), 2, "three groups' pushes: one read, one write");
        let r = pull_ok(e, &caller("ann", "room"), "ga", Value::Null).await;
        assert_eq!(puts(&r.patch).len(), 6);
        assert_eq!(r.last_mutation_id_changes.get("ca"), Some(&2));
    }

    async fn redelivered_and_reordered_pushes_apply_once(backend) {
        let s = setup(backend.store().await, PushPath::Queued).await;
        let e = &s.engine;
        let ann = caller("ann", "room");
        let incr = |id| mutation("c1", id, "incr", json!({"key": "n", "by": 1}));
        queued(e, &ann, "g1", vec![incr(1), incr(2)]).await;
        queued(e, &ann, "g1", vec![incr(1), incr(2), incr(3)]).await;
        let sent = s.queue.take();
        // The later push first, the first twice, and the later again.
        let batch = vec![sent[1].clone(), sent[0].clone(), sent[0].clone(), sent[1].clone()];
        let done = e.commit_queued(&batch).await.unwrap();
        assert_eq!(done.outcome.processed, 3);
        let again = e.commit_queued(&sent).await.unwrap();
        assert_eq!((again.outcome.processed, again.outcome.commits), (0, 0));
        let r = pull_ok(e, &ann, "g1", Value::Null).await;
        assert!(r.patch.contains(&replicache_dynamodb::protocol::PatchOp::Put { key: "n".into(), value: json!(3) }));
    }

    async fn what_the_push_function_can_answer_is_not_queued(backend) {
        let s = setup(backend.store().await, PushPath::Queued).await;
        let e = &s.engine;
        let ann = caller("ann", "room");
        queued(e, &ann, "g1", vec![put("c1", 1, "a")]).await;
        e.commit_queued(&s.queue.take()).await.unwrap();
        // Nothing new: answered, not queued.
        let again = e.push_outcome(&ann, &push_request("g1", vec![put("c1", 1, "a")])).await;
        assert!(matches!(again, Ok(Reply::Ok(ref o)) if !o.queued && o.processed == 0), "{again:?}");
        // A gap: the server has no state for mutation 3.
        let gap = e.push(&ann, &push_request("g1", vec![put("c1", 3, "a")])).await;
        assert_eq!(gap, Ok(Reply::Error(ProtocolError::ClientStateNotFound)));
        // Another user's group, a bad version: answered.
        let bob = e.push(&caller("bob", "room"), &push_request("g1", vec![put("c9", 1, "a")])).await;
        assert!(matches!(bob, Err(EngineError::Unauthorized(_))), "{bob:?}");
        // Too large for a message: committed directly.
        let big = json!({"key": "big", "value": "x".repeat(5000)});
        let direct = e.push_outcome(&ann, &push_request("g1", vec![mutation("c1", 2, "put", big)])).await;
        assert!(matches!(direct, Ok(Reply::Ok(ref o)) if !o.queued && o.processed == 1), "{direct:?}");
        assert!(s.queue.take().is_empty());
    }

    async fn a_group_without_state_at_commit_is_refused_through_pulls(backend) {
        let s = setup(backend.store().await, PushPath::Queued).await;
        let e = &s.engine;
        let (ann, bob) = (caller("ann", "room"), caller("bob", "room"));
        queued(e, &ann, "g1", vec![put("c1", 1, "a")]).await;
        e.commit_queued(&s.queue.take()).await.unwrap();
        queued(e, &ann, "g1", vec![put("c1", 2, "b")]).await;
        // Ann's state expires while her push waits in the queue; Bob's push comes after.
        s.now.fetch_add(400 * 24 * 60 * 60, Ordering::SeqCst);
        queued(e, &bob, "g2", vec![put("c2", 1, "c")]).await;
        let done = e.commit_queued(&s.queue.take()).await.unwrap();
        assert_eq!(done.outcome.processed, 1, "Bob's push commits");
        assert_eq!(done.stopped.len(), 1, "{done:?}");
        assert_eq!(done.stopped[0].0, 0);
        let answer = pull(e, &ann, "g1", Value::Null).await;
        assert_eq!(answer, Ok(Reply::Error(ProtocolError::ClientStateNotFound)));
        let refused = e.push(&ann, &push_request("g1", vec![put("c1", 1, "a")])).await;
        assert_eq!(refused, Ok(Reply::Error(ProtocolError::ClientStateNotFound)));
        let r = pull_ok(e, &bob, "g2", Value::Null).await;
        assert_eq!(r.last_mutation_id_changes.get("c2"), Some(&1));
        // A new group of Ann's (Replicache's reset) goes on.
        push_ok(e, &ann, "g3", vec![put("c3", 1, "d")]).await;
        let done = e.commit_queued(&s.queue.take()).await.unwrap();
        assert_eq!(done.outcome.processed, 1);
        // A batch of one such push marks its group too.
        queued(e, &ann, "g3", vec![put("c3", 2, "e")]).await;
        s.now.fetch_add(400 * 24 * 60 * 60, Ordering::SeqCst);
        let done = e.commit_queued(&s.queue.take()).await.unwrap();
        assert_eq!((done.outcome.processed, done.stopped.len()), (0, 1));
        let answer = pull(e, &ann, "g3", Value::Null).await;
        assert_eq!(answer, Ok(Reply::Error(ProtocolError::ClientStateNotFound)));
    }

    async fn a_client_claimed_by_two_groups_of_a_batch_commits_in_the_first(backend) {
        let s = setup(backend.store().await, PushPath::Queued).await;
        let e = &s.engine;
        queued(e, &caller("ann", "room"), "g1", vec![put("shared", 1, "a")]).await;
        queued(e, &caller("bob", "room"), "g2", vec![put("shared", 1, "b")]).await;
        queued(e, &caller("bob", "room"), "g1", vec![put("c9", 1, "c")]).await;
        let done = e.commit_queued(&s.queue.take()).await.unwrap();
        assert_eq!(done.outcome.processed, 1, "{done:?}");
        let stopped: Vec<usize> = done.stopped.iter().map(|(i, _)| *i).collect();
        assert_eq!(stopped, vec![1, 2], "{done:?}");
        let r = pull_ok(e, &caller("ann", "room"), "g1", Value::Null).await;
        assert_eq!(r.last_mutation_id_changes.get("shared"), Some(&1));
        assert_eq!(puts(&r.patch), vec!["a"]);
    }

    async fn a_batch_leaves_out_what_can_never_commit(backend) {
        let s = setup(backend.store().await, PushPath::Queued).await;
        let e = &s.engine;
        let ok = QueuedPush { user: "ann".into(), space: "room".into(), push: push_request("g1", vec![put("c1", 1, "a")]) };
        let mut old = ok.clone();
        old.push.push_version = 0;
        let elsewhere = QueuedPush { space: "hall".into(), ..ok.clone() };
        let done = e.commit_queued(&[old.clone(), elsewhere.clone()]).await.unwrap();
        assert_eq!((done.outcome.commits, done.stopped.len()), (0, 2));
        let done = e.commit_queued(&[old, ok, elsewhere]).await.unwrap();
        assert_eq!(done.outcome.processed, 1);
        let stopped: Vec<usize> = done.stopped.iter().map(|(i, _)| *i).collect();
        assert_eq!(stopped, vec![0, 2]);
    }

    async fn a_batch_fills_transactions_to_their_limit(backend) {
        let s = setup(backend.store().await, PushPath::Queued).await;
        let e = &s.engine;
        for g in 0..10 {
            let client = format!("c{g}");
            let mutations = (1..=10).map(|i| put(&client, i, &format!("k{g}/{i}"))).collect();
            queued(e, &caller(&format!("u{g}"), "room"), &format!("g{g}"), mutations).await;
        }
        s.count.take();
        let done = e.commit_queued(&s.queue.take()).await.unwrap();
        assert_eq!(done.outcome.processed, 100);
        // 100 entities, 10 clients, 10 groups and 3 fixed actions: two transactions.
        assert_eq!(done.outcome.commits, 2);
        assert_eq!(s.count.take(), 4);
    }

    async fn a_batch_counts_only_the_groups_it_writes(backend) {
        let s = setup(backend.store().await, PushPath::Queued).await;
        let e = &s.engine;
        // Ninety keys in one mutation fit a transaction beside its client and its new group,
        // however many other new groups the batch holds.
        let keys: Vec<String> = (0..90).map(|k| format!("k{k}")).collect();
        let many = mutation("c0", 1, "putMany", json!({"keys": keys, "value": 1}));
        queued(e, &caller("u0", "room"), "g0", vec![many]).await;
        for g in 1..10 {
            queued(e, &caller(&format!("u{g}"), "room"), &format!("g{g}"), vec![put(&format!("c{g}"), 1, "x")]).await;
        }
        let done = e.commit_queued(&s.queue.take()).await.unwrap();
        assert!(done.outcome.rejected.is_empty(), "{:?}", done.outcome.rejected);
        assert_eq!(done.outcome.processed, 10);
    }

    async fn auto_commits_a_large_push_to_a_quiet_space_directly(backend) {
        let s = setup(backend.store().await, PushPath::Auto).await;
        let e = &s.engine;
        let ann = caller("ann", "room");
        let mutations = (1..=150).map(|i| put("c1", i, &format!("k{i}"))).collect();
        let large = e.push_outcome(&ann, &push_request("g1", mutations)).await;
        assert!(matches!(large, Ok(Reply::Ok(ref o)) if !o.queued && o.processed == 150 && o.commits == 2), "{large:?}");
        s.count.take();
        let next = e.push_outcome(&ann, &push_request("g1", vec![put("c1", 151, "a")])).await;
        assert!(matches!(next, Ok(Reply::Ok(ref o)) if !o.queued), "a split push is no contention: {next:?}");
        assert_eq!(s.count.take(), 2);
    }

    async fn auto_queues_a_space_while_its_commits_meet_contention(backend) {
        let faulty = Arc::new(FaultyStore::new(backend.store().await));
        let s = setup(faulty.clone(), PushPath::Auto).await;
        let e = &s.engine;
        let ann = caller("ann", "room");
        let direct = e.push_outcome(&ann, &push_request("g1", vec![put("c1", 1, "a")])).await;
        assert!(matches!(direct, Ok(Reply::Ok(ref o)) if !o.queued), "{direct:?}");
        assert_eq!(s.count.take(), 2, "a quiet space commits directly, in 2 requests");
        // A commit that meets contention makes the space take the queue a while.
        faulty.conflict_next_write();
        let contended = e.push_outcome(&ann, &push_request("g1", vec![put("c1", 2, "b")])).await;
        assert!(matches!(contended, Ok(Reply::Ok(ref o)) if !o.queued && o.processed == 1), "{contended:?}");
        assert!(s.queue.take().is_empty(), "a conflict is retried directly");
        s.count.take();
        queued(e, &ann, "g1", vec![put("c1", 3, "c")]).await;
        assert_eq!(s.count.take(), 1, "a hot space's push reads once and is queued");
        let done = e.commit_queued(&s.queue.take()).await.unwrap();
        assert_eq!(done.outcome.processed, 1);
        // A minute without contention: direct again.
        s.now.fetch_add(61, Ordering::SeqCst);
        let cool = e.push_outcome(&ann, &push_request("g1", vec![put("c1", 4, "d")])).await;
        assert!(matches!(cool, Ok(Reply::Ok(ref o)) if !o.queued && o.processed == 1), "{cool:?}");
    }
}

/// A committer's batch: `(message id, body)` as Lambda's event source mapping sends them.
fn event(messages: &[(&str, String)]) -> SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body)| json!({"messageId": id, "receiptHandle": "r", "body": body, "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs", "awsRegion": "us-east-1"}))
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("an SQS event")
}

fn failed(response: &SqsBatchResponse) -> Vec<&str> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect()
}

#[tokio::test]
async fn the_committer_answers_the_messages_to_deliver_again() {
    let faulty = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let s = setup(faulty.clone(), PushPath::Queued).await;
    let e = &s.engine;
    queued(e, &caller("ann", "one"), "g1", vec![put("c1", 1, "a")]).await;
    queued(e, &caller("bob", "two"), "g2", vec![put("c2", 1, "b")]).await;
    queued(
        e,
        &caller("ann", "one"),
        "g1",
        vec![put("c1", 1, "a"), put("c1", 2, "c")],
    )
    .await;
    let bodies: Vec<String> = s.queue.take().iter().map(QueuedPush::body).collect();
    let batch = [
        ("m1", bodies[0].clone()),
        ("m2", bodies[1].clone()),
        ("junk", "not a push".to_owned()),
        ("m3", bodies[2].clone()),
    ];
    let response = commit_event(e, event(&batch)).await;
    assert!(failed(&response).is_empty(), "{response:?}");
    let r = pull_ok(e, &caller("ann", "one"), "g1", Value::Null).await;
    assert_eq!(r.last_mutation_id_changes.get("c1"), Some(&2));
    // The store fails its reads of entities: the space's messages come back, all of them.
    let incr = |id| mutation("c1", id, "incr", json!({"key": "n", "by": 1}));
    queued(e, &caller("ann", "one"), "g1", vec![incr(3)]).await;
    queued(e, &caller("ann", "one"), "g1", vec![incr(3), incr(4)]).await;
    let bodies: Vec<String> = s.queue.take().iter().map(QueuedPush::body).collect();
    faulty.fail_reads(true);
    let response = commit_event(
        e,
        event(&[("m4", bodies[0].clone()), ("m5", bodies[1].clone())]),
    )
    .await;
    assert_eq!(failed(&response), vec!["m4", "m5"]);
    faulty.fail_reads(false);
    let response = commit_event(
        e,
        event(&[("m4", bodies[0].clone()), ("m5", bodies[1].clone())]),
    )
    .await;
    assert!(failed(&response).is_empty());
    let r = pull_ok(e, &caller("ann", "one"), "g1", Value::Null).await;
    assert_eq!(r.last_mutation_id_changes.get("c1"), Some(&4));
}
