//! Garbage collection with an injected clock: tombstones and client records expire; a cookie
//! older than the tombstone horizon gets a reset; an expired tombstone DynamoDB has not yet
//! deleted is never a value; an expired client pushing an id above 1 gets
//! `ClientStateNotFound`, id 1 starts it afresh, and nothing is applied twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use integration_tests::client::{
    caller, mutation, order, pull_ok, push_ok, push_request, puts, View,
};
use replicache_dynamodb::protocol::{PatchOp, ProtocolError, Reply};
use replicache_dynamodb::{Clock, Engine, EngineConfig};
use serde_json::{json, Value};

use crate::on_both_stores;

const DAY: u64 = 24 * 60 * 60;

/// An engine over `store` whose clock the test moves.
fn engine_at(store: Arc<dyn replicache_dynamodb::store::Store>) -> (Engine, Arc<AtomicU64>) {
    let now = Arc::new(AtomicU64::new(1_800_000_000));
    let read = now.clone();
    let config = EngineConfig {
        clock: Clock::new(move || read.load(Ordering::SeqCst)),
        ..EngineConfig::default()
    };
    (Engine::new(store, crate::app_for_tests(), config), now)
}

on_both_stores! {
    async fn a_cookie_past_the_tombstone_horizon_gets_a_reset(backend) {
        let (e, now) = engine_at(backend.store().await);
        let me = caller("alice", "room");
        push_ok(&e, &me, "g1", vec![
            mutation("c1", 1, "put", json!({"key": "kept", "value": 1})),
            mutation("c1", 2, "put", json!({"key": "gone", "value": 2})),
        ]).await;
        let mut view = View::default();
        view.sync(&e, &me, "g1").await;
        push_ok(&e, &me, "g1", vec![mutation("c1", 3, "del", json!({"key": "gone"}))]).await;

        // Within the horizon, the deletion arrives as a deletion.
        now.fetch_add(28 * DAY, Ordering::SeqCst);
        let fresh = pull_ok(&e, &me, "g1", view.cookie.clone()).await;
        assert_eq!(fresh.patch, [PatchOp::Del { key: "gone".into() }]);

        // Past it (30 days less a day of margin), the same cookie gets a reset.
        now.fetch_add(2 * DAY, Ordering::SeqCst);
        let reset = pull_ok(&e, &me, "g1", view.cookie.clone()).await;
        assert_eq!(reset.patch.first(), Some(&PatchOp::Clear));
        assert_eq!(puts(&reset.patch), ["kept"]);
        assert!(order(&reset.cookie) > order(&view.cookie), "the reset compares greater");
        assert_eq!(reset.last_mutation_id_changes["c1"], 3);
        view.apply(&reset);
        // And the reset's cookie is fresh again.
        let after = pull_ok(&e, &me, "g1", view.cookie.clone()).await;
        assert!(after.patch.is_empty());
    }

    async fn an_expired_tombstone_is_never_a_value(backend) {
        let (e, now) = engine_at(backend.store().await);
        let me = caller("alice", "room");
        push_ok(&e, &me, "g1", vec![
            mutation("c1", 1, "put", json!({"key": "k", "value": 1})),
            mutation("c1", 2, "del", json!({"key": "k"})),
        ]).await;
        // Past the tombstone's expiry; neither store has deleted it (DynamoDB's TTL is late).
        now.fetch_add(31 * DAY, Ordering::SeqCst);
        let scratch = pull_ok(&e, &me, "g2", Value::Null).await;
        assert!(puts(&scratch.patch).is_empty(), "{scratch:?}");
        // A mutator reading it sees nothing, and a counter on it starts from scratch.
        push_ok(&e, &me, "g1", vec![mutation("c1", 3, "incr", json!({"key": "k", "by": 5}))]).await;
        let view = pull_ok(&e, &me, "g3", Value::Null).await;
        assert!(view.patch.contains(&PatchOp::Put { key: "k".into(), value: json!(5) }), "{view:?}");
    }

    async fn an_expired_client_starts_afresh_at_id_1_and_nothing_is_applied_twice(backend) {
        let (e, now) = engine_at(backend.store().await);
        let me = caller("alice", "room");
        push_ok(&e, &me, "g1", vec![
            mutation("c1", 1, "incr", json!({"key": "n", "by": 1})),
            mutation("c1", 2, "incr", json!({"key": "n", "by": 1})),
        ]).await;
        // Refreshed by its pushes: still known after 179 days.
        now.fetch_add(179 * DAY, Ordering::SeqCst);
        push_ok(&e, &me, "g1", vec![mutation("c1", 3, "incr", json!({"key": "n", "by": 1}))]).await;
        now.fetch_add(179 * DAY, Ordering::SeqCst);
        let resent = e.push(&me, &push_request("g1", vec![
            mutation("c1", 3, "incr", json!({"key": "n", "by": 1})),
            mutation("c1", 4, "incr", json!({"key": "n", "by": 1})),
        ])).await;
        assert_eq!(resent, Ok(Reply::Ok(())), "still known: 3 is skipped, 4 applied");

        // 181 days without a push: the client and its group are forgotten.
        now.fetch_add(181 * DAY, Ordering::SeqCst);
        let late = e.push(&me, &push_request("g1", vec![
            mutation("c1", 5, "incr", json!({"key": "n", "by": 1})),
        ])).await;
        assert_eq!(late, Ok(Reply::Error(ProtocolError::ClientStateNotFound)));
        let view = pull_ok(&e, &me, "g2", Value::Null).await;
        assert!(view.patch.contains(&PatchOp::Put { key: "n".into(), value: json!(4) }), "{view:?}");
        // The expired group is unknown too: its old lmids are not reported.
        let group = pull_ok(&e, &me, "g1", Value::Null).await;
        assert!(group.last_mutation_id_changes.is_empty(), "{group:?}");

        // A new client of the group starts at 1, applied once.
        push_ok(&e, &me, "g1", vec![mutation("c1", 1, "incr", json!({"key": "n", "by": 10}))]).await;
        push_ok(&e, &me, "g1", vec![mutation("c1", 1, "incr", json!({"key": "n", "by": 10}))]).await;
        let view = pull_ok(&e, &me, "g1", Value::Null).await;
        assert!(view.patch.contains(&PatchOp::Put { key: "n".into(), value: json!(14) }), "{view:?}");
        assert_eq!(view.last_mutation_id_changes["c1"], 1);
    }
}
