//! DynamoDB requests per push and pull, counted by a wrapper around the store: a push of
//! write-only mutations costs 2, a pull with nothing new 1, a pull with changes 2 plus one
//! per extra result page.

use std::sync::Arc;

use integration_tests::client::{caller, create, mutation, pull_ok, push_ok};
use integration_tests::counting::CountingStore;
use integration_tests::Backend;
use replicache_dynamodb::store::memory::MemoryStore;
use replicache_dynamodb::store::Store;
use serde_json::{json, Value};

use crate::{engine, on_both_stores};

async fn counted(
    store: Arc<dyn Store>,
) -> (Arc<CountingStore>, replicache_dynamodb::engine::Engine) {
    let counting = Arc::new(CountingStore::new(store));
    let e = engine(counting.clone());
    (counting, e)
}

on_both_stores! {
    async fn push_of_write_only_mutations_costs_two_requests(backend) {
        let (count, e) = counted(backend.store().await).await;
        let me = caller("alice", "room");
        push_ok(&e, &me, "g1", vec![create("c1", 1, "first", 1)]).await;
        assert_eq!(count.take(), 2, "a push of 1 mutation (creating the group)");
        let ninety = (2..=91).map(|i| create("c1", i, &format!("m{i}"), i)).collect();
        push_ok(&e, &me, "g1", ninety).await;
        assert_eq!(count.take(), 2, "a push of 90 mutations");
        let resent = (2..=91).map(|i| create("c1", i, &format!("m{i}"), i)).collect();
        push_ok(&e, &me, "g1", resent).await;
        assert_eq!(count.take(), 1, "a push of already processed mutations commits nothing");
    }

    async fn a_retried_push_reads_ahead_what_its_failed_attempt_read(backend) {
        use integration_tests::faulty::FaultyStore;
        let faulty = Arc::new(FaultyStore::new(backend.store().await));
        let (count, e) = counted(faulty.clone()).await;
        let me = caller("alice", "room");
        let incr = |id, key: &str| mutation("c1", id, "incr", json!({"key": key, "by": 1}));
        push_ok(&e, &me, "g1", vec![incr(1, "a")]).await;
        count.take();
        let three = vec![incr(2, "a"), incr(3, "b"), incr(4, "c")];
        push_ok(&e, &me, "g1", three).await;
        assert_eq!(count.take(), 5, "a push reading 3 keys: the first read, 3 reads, the commit");
        faulty.conflict_next_write();
        let next = vec![incr(5, "a"), incr(6, "b"), incr(7, "c")];
        push_ok(&e, &me, "g1", next).await;
        assert_eq!(
            count.take(),
            5 + 2,
            "after a conflict, the retry reads the 3 keys with its first read"
        );
        let r = pull_ok(&e, &me, "g1", Value::Null).await;
        assert!(r.patch.contains(&replicache_dynamodb::protocol::PatchOp::Put { key: "a".into(), value: json!(3) }));
        assert_eq!(r.last_mutation_id_changes.get("c1"), Some(&7));
    }

    async fn listening_connections_cost_a_push_nothing_more(backend) {
        use integration_tests::recording::RecordingPoker;
        let (count, e) = counted(backend.store().await).await;
        let poker = Arc::new(RecordingPoker::default());
        let e = e.with_poker(poker.clone());
        let me = caller("alice", "room");
        for id in ["w1", "w2", "w3"] {
            e.connect(&me, id).await.unwrap();
            assert_eq!(count.take(), 2, "a connect reads and writes the listeners");
        }
        push_ok(&e, &me, "g1", vec![create("c1", 1, "first", 1)]).await;
        assert_eq!(count.take(), 2, "a push to a space with 3 connections");
        assert_eq!(poker.take()[0].1.len(), 3);
        poker.make_gone("w2");
        push_ok(&e, &me, "g1", vec![create("c1", 2, "second", 2)]).await;
        assert_eq!(count.take(), 2 + 2, "forgetting a gone connection reads and writes once");
        e.disconnect("w1").await.unwrap();
        assert_eq!(count.take(), 3, "a disconnect: the connection, the listeners, the write");
    }

    async fn a_read_costs_one_request_per_key(backend) {
        let (count, e) = counted(backend.store().await).await;
        let me = caller("alice", "room");
        push_ok(&e, &me, "g1", vec![
            mutation("c1", 1, "incr", json!({"key": "a", "by": 1})),
            mutation("c1", 2, "incr", json!({"key": "b", "by": 1})),
            mutation("c1", 3, "incr", json!({"key": "a", "by": 1})),
        ]).await;
        assert_eq!(count.take(), 2 + 2, "two distinct keys read");
    }

    async fn pull_costs_one_request_unchanged_and_two_with_changes(backend) {
        let (count, e) = counted(backend.store().await).await;
        let me = caller("alice", "room");
        push_ok(&e, &me, "g1", vec![create("c1", 1, "a", 1)]).await;
        count.take();
        let first = pull_ok(&e, &me, "g1", Value::Null).await;
        assert_eq!(count.take(), 2, "a pull with changes");
        pull_ok(&e, &me, "g1", first.cookie.clone()).await;
        assert_eq!(count.take(), 1, "a pull with nothing new");
        push_ok(&e, &me, "g1", vec![create("c1", 2, "b", 2)]).await;
        count.take();
        pull_ok(&e, &me, "g1", first.cookie).await;
        assert_eq!(count.take(), 2, "an incremental pull with changes");
    }
}

async fn pages_cost_one_request_each(backend: Backend, store: Arc<dyn Store>) {
    let (count, e) = counted(store).await;
    let me = caller("alice", "room");
    // 25 values of 100 KB: about 2.5 MB, three 1 MB pages.
    let value = "v".repeat(100 * 1024);
    let mutations = (1..=25)
        .map(|i| {
            mutation(
                "c1",
                i,
                "put",
                json!({"key": format!("big/{i:02}"), "value": value}),
            )
        })
        .collect();
    push_ok(&e, &me, "g1", mutations).await;
    count.take();
    let r = pull_ok(&e, &me, "g1", Value::Null).await;
    assert_eq!(r.patch.len(), 26);
    assert_eq!(count.take(), 2 + 2, "{backend:?}: three pages");
}

#[tokio::test]
async fn pull_pages_cost_one_request_each_memory() {
    pages_cost_one_request_each(Backend::Memory, Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn pull_pages_cost_one_request_each_dynamodb() {
    pages_cost_one_request_each(Backend::DynamoDb, Backend::DynamoDb.store().await).await;
}
