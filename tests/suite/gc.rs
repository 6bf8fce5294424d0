//! Garbage collection with an injected clock: tombstones and client records expire; a cookie
//! older than the tombstone horizon gets a reset; an expired tombstone DynamoDB has not yet
//! deleted is never a value; an expired client pushing an id above 1 gets
//! `ClientStateNotFound`, id 1 starts it afresh, and nothing is applied twice; a client group
//! outlives its clients, and nobody else takes it or learns its lmids, idle or expired.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use integration_tests::client::{
    caller, mutation, pull, pull_ok, push_ok, push_request, puts, View,
};
use integration_tests::cookies::above;
use replicache_dynamodb::engine::{Clock, Engine, EngineConfig, EngineError};
use replicache_dynamodb::protocol::{PatchOp, ProtocolError, Reply};
use replicache_dynamodb::store::{
    Address, EntityQuery, Expect, Group, Limits, Page, PageToken, Record, Store, StoreError,
    Version, Write,
};
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
        assert!(above(&reset.cookie, &view.cookie), "the reset compares greater");
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

/// The client group `group` as stored.
async fn group(store: &dyn Store, group: &str) -> Option<Group> {
    let got = store
        .get(&[Address::Group {
            group: group.into(),
        }])
        .await
        .expect("read the group");
    match got.into_iter().next().flatten() {
        Some(Record::Group(g)) => Some(g),
        _ => None,
    }
}

/// Puts `record` unconditionally, beside the engine.
async fn put(store: &dyn Store, record: Record) {
    store
        .write(vec![Write::Put {
            record,
            expect: Expect::Any,
        }])
        .await
        .expect("write beside the engine");
}

fn incr(client: &str, id: u64) -> replicache_dynamodb::protocol::Mutation {
    mutation(client, id, "incr", json!({"key": "n", "by": 1}))
}

on_both_stores! {
    async fn a_pull_reads_again_a_group_it_did_not_see_beside_its_clients(backend) {
        let rival = Arc::new(Interposer::new(backend.store().await));
        let count = Arc::new(integration_tests::counting::CountingStore::new(rival.clone()));
        let (e, _) = engine_at(count.clone());
        let alice = caller("alice", "room");
        push_ok(&e, &alice, "g1", vec![incr("c1", 1)]).await;
        count.take();
        // The commit that created g1 is visible in c1's record, not yet in g1's.
        rival.hide_next_group_read();
        let view = pull_ok(&e, &alice, "g1", Value::Null).await;
        assert_eq!(view.last_mutation_id_changes["c1"], 1, "{view:?}");
        assert_eq!(count.take(), 3, "the group read once more");
        rival.hide_next_group_read();
        let learnt = pull(&e, &caller("bob", "room"), "g1", Value::Null).await;
        assert!(matches!(learnt, Err(EngineError::Unauthorized(_))), "{learnt:?}");
        assert_eq!(count.take(), 3);
        // Seen at once, it costs nothing more.
        pull_ok(&e, &alice, "g1", Value::Null).await;
        assert_eq!(count.take(), 2);
    }

    async fn an_idle_group_outlives_its_clients_and_nobody_else_takes_it(backend) {
        let (e, now) = engine_at(backend.store().await);
        let alice = caller("alice", "room");
        let bob = caller("bob", "room");
        push_ok(&e, &alice, "g1", vec![incr("c1", 1)]).await;
        // A push 89 days later keeps c1 for 180 more days: its group must live as long.
        now.fetch_add(89 * DAY, Ordering::SeqCst);
        push_ok(&e, &alice, "g1", vec![incr("c1", 2)]).await;
        // 91 idle days: 180 since the group was created, 91 since c1 last pushed.
        now.fetch_add(91 * DAY, Ordering::SeqCst);

        let learnt = pull(&e, &bob, "g1", Value::Null).await;
        assert!(matches!(learnt, Err(EngineError::Unauthorized(_))), "{learnt:?}");
        let taken = e.push(&bob, &push_request("g1", vec![incr("c1", 3)])).await;
        assert!(matches!(taken, Err(EngineError::Unauthorized(_))), "{taken:?}");
        let fresh = e.push(&bob, &push_request("g1", vec![incr("b1", 1)])).await;
        assert!(matches!(fresh, Err(EngineError::Unauthorized(_))), "{fresh:?}");
        let elsewhere = e.push(&caller("bob", "lobby"), &push_request("g1", vec![incr("b1", 1)])).await;
        assert!(matches!(elsewhere, Err(EngineError::Unauthorized(_))), "{elsewhere:?}");

        // Alice carries on where she was.
        push_ok(&e, &alice, "g1", vec![incr("c1", 3)]).await;
        let view = pull_ok(&e, &alice, "g1", Value::Null).await;
        assert_eq!(view.last_mutation_id_changes["c1"], 3);
        assert!(view.patch.contains(&PatchOp::Put { key: "n".into(), value: json!(3) }), "{view:?}");
    }

    async fn clients_of_an_expired_group_are_unknown_to_push_and_pull(backend) {
        let store = backend.store().await;
        let (e, now) = engine_at(store.clone());
        let alice = caller("alice", "room");
        let bob = caller("bob", "room");
        push_ok(&e, &alice, "g1", vec![incr("c1", 1), incr("c1", 2)]).await;
        // A group that expires before its clients, as groups were kept before they outlived
        // their clients.
        let mut g1 = group(store.as_ref(), "g1").await.expect("g1 was created");
        g1.expires_at = Some(now.load(Ordering::SeqCst) + 1);
        put(store.as_ref(), Record::Group(g1)).await;
        // Two minutes on: the commit that wrote the clients is long visible.
        now.fetch_add(120, Ordering::SeqCst);

        let learnt = pull_ok(&e, &bob, "g1", Value::Null).await;
        assert!(learnt.last_mutation_id_changes.is_empty(), "{learnt:?}");
        let continued = e.push(&bob, &push_request("g1", vec![incr("c1", 3)])).await;
        assert_eq!(continued, Ok(Reply::Error(ProtocolError::ClientStateNotFound)));
        // Its owner's clients are unknown too (Replicache starts a new group), not refused.
        let own = pull_ok(&e, &alice, "g1", Value::Null).await;
        assert!(own.last_mutation_id_changes.is_empty(), "{own:?}");
        let resumed = e.push(&alice, &push_request("g1", vec![incr("c1", 3)])).await;
        assert_eq!(resumed, Ok(Reply::Error(ProtocolError::ClientStateNotFound)));
        push_ok(&e, &alice, "g2", vec![incr("c2", 1)]).await;
        let view = pull_ok(&e, &alice, "g2", Value::Null).await;
        assert_eq!(view.last_mutation_id_changes["c2"], 1);
        assert!(view.patch.contains(&PatchOp::Put { key: "n".into(), value: json!(3) }), "{view:?}");
    }

    async fn an_expired_group_is_rewritten_only_as_it_was_read(backend) {
        let inner = backend.store().await;
        let rival = Arc::new(Interposer::new(inner.clone()));
        let (e, now) = engine_at(rival.clone());
        push_ok(&e, &caller("alice", "room"), "g1", vec![incr("c1", 1)]).await;
        now.fetch_add(181 * DAY, Ordering::SeqCst);
        // Between Bob's read of the expired group and his commit, Carol creates it afresh
        // in another space.
        let carol = Group {
            id: "g1".into(),
            user: "carol".into(),
            space: "lobby".into(),
            expires_at: Some(now.load(Ordering::SeqCst) + 180 * DAY),
            refused: false,
        };
        rival.before_next_group_write(Record::Group(carol.clone()));
        let taken = e.push(&caller("bob", "room"), &push_request("g1", vec![incr("b1", 1)])).await;
        assert!(matches!(taken, Err(EngineError::Unauthorized(_))), "{taken:?}");
        assert_eq!(group(inner.as_ref(), "g1").await, Some(carol));
    }
}

/// A store that, once asked, writes a record of its own just before the next write that
/// puts a client group: a rival's commit landing between an engine's read and its commit.
/// It can also hide the client group from the next read of it, as a commit creating the
/// group that is not yet visible there would.
struct Interposer {
    inner: Arc<dyn Store>,
    armed: AtomicBool,
    record: std::sync::Mutex<Option<Record>>,
    hide_group: AtomicBool,
}

impl Interposer {
    fn new(inner: Arc<dyn Store>) -> Self {
        Interposer {
            inner,
            armed: AtomicBool::new(false),
            record: std::sync::Mutex::new(None),
            hide_group: AtomicBool::new(false),
        }
    }

    fn hide_next_group_read(&self) {
        self.hide_group.store(true, Ordering::SeqCst);
    }

    fn before_next_group_write(&self, record: Record) {
        *self.record.lock().expect("not poisoned") = Some(record);
        self.armed.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl Store for Interposer {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn get(&self, addresses: &[Address]) -> Result<Vec<Option<Record>>, StoreError> {
        let mut got = self.inner.get(addresses).await?;
        if addresses.iter().any(|a| matches!(a, Address::Group { .. }))
            && self.hide_group.swap(false, Ordering::SeqCst)
        {
            for (address, record) in addresses.iter().zip(got.iter_mut()) {
                if matches!(address, Address::Group { .. }) {
                    *record = None;
                }
            }
        }
        Ok(got)
    }

    async fn changes(
        &self,
        space: &str,
        after: Version,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError> {
        self.inner.changes(space, after, page).await
    }

    async fn entities(
        &self,
        space: &str,
        query: &EntityQuery,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError> {
        self.inner.entities(space, query, page).await
    }

    async fn commit_logs(&self, space: &str, page: Option<PageToken>) -> Result<Page, StoreError> {
        self.inner.commit_logs(space, page).await
    }

    async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let puts_group = writes.iter().any(|w| {
            matches!(
                w,
                Write::Put {
                    record: Record::Group(_),
                    ..
                }
            )
        });
        if puts_group && self.armed.swap(false, Ordering::SeqCst) {
            let record = self.record.lock().expect("not poisoned").take();
            if let Some(record) = record {
                put(self.inner.as_ref(), record).await;
            }
        }
        self.inner.write(writes).await
    }
}
