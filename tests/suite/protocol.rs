//! The protocol rules, each checked against the in-memory store and DynamoDB Local.

use integration_tests::client::{
    caller, create, mutation, pull, pull_ok, push_ok, push_request, puts, View,
};
use integration_tests::cookies::above;
use replicache_dynamodb::engine::EngineError;
use replicache_dynamodb::protocol::{PatchOp, ProtocolError, Reply};
use serde_json::{json, Value};

use crate::{fresh, on_both_stores};

fn dels(patch: &[PatchOp]) -> Vec<&str> {
    patch
        .iter()
        .filter_map(|op| match op {
            PatchOp::Del { key } => Some(key.as_str()),
            _ => None,
        })
        .collect()
}

on_both_stores! {
    async fn push_then_pull_returns_data_lmids_and_a_new_cookie(backend) {
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        push_ok(&e, &me, "g1", vec![create("c1", 1, "a", 1), create("c1", 2, "b", 2)]).await;
        let r = pull_ok(&e, &me, "g1", Value::Null).await;
        assert_eq!(r.patch[0], PatchOp::Clear);
        assert_eq!(puts(&r.patch), ["message/a", "message/b"]);
        assert_eq!(
            r.patch[1],
            PatchOp::Put {
                key: "message/a".into(),
                value: json!({"from": "Jane", "content": "hello a", "order": 1})
            }
        );
        assert_eq!(r.last_mutation_id_changes.get("c1"), Some(&2));
        assert!(above(&r.cookie, &Value::Null));
    }

    async fn a_pull_at_the_current_cookie_changes_nothing(backend) {
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        push_ok(&e, &me, "g1", vec![create("c1", 1, "a", 1)]).await;
        let first = pull_ok(&e, &me, "g1", Value::Null).await;
        let again = pull_ok(&e, &me, "g1", first.cookie.clone()).await;
        assert_eq!(again.cookie, first.cookie);
        assert!(again.patch.is_empty());
        assert!(again.last_mutation_id_changes.is_empty());
    }

    async fn an_empty_space_answers_clear_and_a_cookie(backend) {
        let e = fresh(backend).await;
        let r = pull_ok(&e, &caller("alice", "empty"), "g1", Value::Null).await;
        assert_eq!(r.patch, vec![PatchOp::Clear]);
        assert!(r.last_mutation_id_changes.is_empty());
        assert!(above(&r.cookie, &Value::Null));
    }

    async fn incremental_pulls_carry_only_changes_and_deletions(backend) {
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        push_ok(&e, &me, "g1", vec![create("c1", 1, "a", 1), create("c1", 2, "b", 2)]).await;
        let first = pull_ok(&e, &me, "g1", Value::Null).await;
        push_ok(&e, &me, "g1", vec![
            mutation("c1", 3, "deleteMessage", json!({"id": "a"})),
            create("c1", 4, "c", 3),
        ]).await;
        let next = pull_ok(&e, &me, "g1", first.cookie.clone()).await;
        assert!(!next.patch.contains(&PatchOp::Clear));
        assert_eq!(puts(&next.patch), ["message/c"]);
        assert_eq!(dels(&next.patch), ["message/a"]);
        assert_eq!(next.last_mutation_id_changes.get("c1"), Some(&4));
        assert!(above(&next.cookie, &first.cookie));
        // A full pull leaves tombstones out.
        let full = pull_ok(&e, &me, "g1", Value::Null).await;
        assert!(dels(&full.patch).is_empty());
        assert_eq!(puts(&full.patch), ["message/b", "message/c"]);
    }

    async fn resent_mutations_are_skipped(backend) {
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        let batch = vec![mutation("c1", 1, "incr", json!({"key": "n", "by": 5}))];
        push_ok(&e, &me, "g1", batch.clone()).await;
        let first = pull_ok(&e, &me, "g1", Value::Null).await;
        push_ok(&e, &me, "g1", batch).await;
        let again = pull_ok(&e, &me, "g1", first.cookie.clone()).await;
        assert_eq!(again.cookie, first.cookie, "a skipped push must not commit");
        let full = pull_ok(&e, &me, "g1", Value::Null).await;
        assert!(full.patch.contains(&PatchOp::Put { key: "n".into(), value: json!(5) }));
    }

    async fn an_unknown_client_starting_above_one_gets_client_state_not_found(backend) {
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        let r = e.push(&me, &push_request("g1", vec![create("c1", 3, "a", 1)])).await;
        assert_eq!(r, Ok(Reply::Error(ProtocolError::ClientStateNotFound)));
        let view = pull_ok(&e, &me, "g1", Value::Null).await;
        assert!(puts(&view.patch).is_empty(), "nothing of that push may be applied");
    }

    async fn a_gap_in_a_known_clients_ids_gets_client_state_not_found(backend) {
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        push_ok(&e, &me, "g1", vec![create("c1", 1, "a", 1)]).await;
        let r = e.push(&me, &push_request("g1", vec![create("c1", 3, "c", 3)])).await;
        assert_eq!(r, Ok(Reply::Error(ProtocolError::ClientStateNotFound)));
    }

    async fn a_gap_after_a_rejected_mutation_gets_client_state_not_found(backend) {
        // The rejection belongs to an attempt that commits nothing: it is no rejection (found
        // by the push fuzz target: counting it made the applied count underflow).
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        let r = e.push_outcome(&me, &push_request("g1", vec![
            mutation("c1", 1, "noSuchMutator", json!({})),
            create("c1", 3, "c", 3),
        ])).await;
        assert_eq!(r, Ok(Reply::Error(ProtocolError::ClientStateNotFound)));
        let r = pull_ok(&e, &me, "g1", Value::Null).await;
        assert!(r.last_mutation_id_changes.is_empty() && puts(&r.patch).is_empty(), "{r:?}");
    }

    async fn permanent_errors_advance_the_lmid_without_effects(backend) {
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        push_ok(&e, &me, "g1", vec![
            mutation("c1", 1, "noSuchMutator", json!({})),
            mutation("c1", 2, "createMessage", json!({"id": "x", "from": "J"})),
            mutation("c1", 3, "fail", json!({})),
            create("c1", 4, "ok", 1),
        ]).await;
        let r = pull_ok(&e, &me, "g1", Value::Null).await;
        assert_eq!(r.last_mutation_id_changes.get("c1"), Some(&4));
        assert_eq!(puts(&r.patch), ["message/ok"]);
    }

    async fn mutations_of_several_clients_apply_in_push_order(backend) {
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        push_ok(&e, &me, "g1", vec![
            mutation("c1", 1, "put", json!({"key": "k", "value": "first"})),
            mutation("c2", 1, "put", json!({"key": "k", "value": "second"})),
            mutation("c1", 2, "incr", json!({"key": "n", "by": 1})),
            mutation("c2", 2, "incr", json!({"key": "n", "by": 10})),
        ]).await;
        let r = pull_ok(&e, &me, "g1", Value::Null).await;
        assert!(r.patch.contains(&PatchOp::Put { key: "k".into(), value: json!("second") }));
        assert!(r.patch.contains(&PatchOp::Put { key: "n".into(), value: json!(11) }));
        assert_eq!(r.last_mutation_id_changes.get("c1"), Some(&2));
        assert_eq!(r.last_mutation_id_changes.get("c2"), Some(&2));
    }

    async fn lmids_are_reported_only_to_their_own_group(backend) {
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        push_ok(&e, &me, "g1", vec![create("c1", 1, "a", 1)]).await;
        let mine = pull_ok(&e, &me, "g1", Value::Null).await;
        push_ok(&e, &me, "g2", vec![create("c2", 1, "b", 2)]).await;
        let next = pull_ok(&e, &me, "g1", mine.cookie.clone()).await;
        assert!(above(&next.cookie, &mine.cookie));
        assert_eq!(puts(&next.patch), ["message/b"]);
        assert!(next.last_mutation_id_changes.is_empty());
    }

    async fn a_forked_group_pulls_normally_from_its_parents_cookie(backend) {
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        push_ok(&e, &me, "g1", vec![create("c1", 1, "a", 1)]).await;
        let parent = pull_ok(&e, &me, "g1", Value::Null).await;
        push_ok(&e, &me, "g1", vec![create("c1", 2, "b", 2)]).await;
        let fork = pull_ok(&e, &me, "new-group", parent.cookie.clone()).await;
        assert!(!fork.patch.contains(&PatchOp::Clear));
        assert_eq!(puts(&fork.patch), ["message/b"]);
        assert!(fork.last_mutation_id_changes.is_empty());
    }

    async fn a_cookie_newer_than_the_server_resets_the_client_with_a_greater_cookie(backend) {
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        push_ok(&e, &me, "g1", vec![create("c1", 1, "a", 1)]).await;
        let future = json!({"order": 500, "version": 500, "epoch": "whatever"});
        let r = pull_ok(&e, &me, "g1", future.clone()).await;
        assert_eq!(r.patch[0], PatchOp::Clear);
        assert_eq!(puts(&r.patch), ["message/a"]);
        assert!(above(&r.cookie, &json!(500)));
        // Later pulls from the reset cookie are incremental and keep growing.
        push_ok(&e, &me, "g1", vec![create("c1", 2, "b", 2)]).await;
        let next = pull_ok(&e, &me, "g1", r.cookie.clone()).await;
        assert_eq!(puts(&next.patch), ["message/b"]);
        assert!(above(&next.cookie, &r.cookie));
        // So are plain numbers another server may have issued.
        let numeric = pull_ok(&e, &me, "g1", json!(41)).await;
        assert_eq!(numeric.patch[0], PatchOp::Clear);
        assert!(above(&numeric.cookie, &json!(41)));
    }

    async fn a_cookie_from_another_epoch_resets_the_client(backend) {
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        push_ok(&e, &me, "g1", vec![create("c1", 1, "a", 1)]).await;
        let stale = json!({"order": 1, "version": 1, "epoch": "a-wiped-store"});
        let r = pull_ok(&e, &me, "g1", stale).await;
        assert_eq!(r.patch[0], PatchOp::Clear);
        assert!(above(&r.cookie, &json!(1)));
    }

    async fn a_group_belongs_to_its_first_user_and_space(backend) {
        let e = fresh(backend).await;
        let alice = caller("alice", "room");
        push_ok(&e, &alice, "g1", vec![create("c1", 1, "a", 1)]).await;
        let mallory = caller("mallory", "room");
        let r = e.push(&mallory, &push_request("g1", vec![create("c1", 2, "x", 2)])).await;
        assert!(matches!(r, Err(EngineError::Unauthorized(_))), "{r:?}");
        let r = pull(&e, &mallory, "g1", Value::Null).await;
        assert!(matches!(r, Err(EngineError::Unauthorized(_))), "{r:?}");
        let elsewhere = caller("alice", "other-room");
        let r = e.push(&elsewhere, &push_request("g1", vec![create("c1", 2, "x", 2)])).await;
        assert!(matches!(r, Err(EngineError::Unauthorized(_))), "{r:?}");
        let r = pull(&e, &elsewhere, "g1", Value::Null).await;
        assert!(matches!(r, Err(EngineError::Unauthorized(_))), "{r:?}");
        let view = pull_ok(&e, &alice, "g1", Value::Null).await;
        assert_eq!(view.last_mutation_id_changes.get("c1"), Some(&1), "nothing applied");
    }

    async fn a_client_belongs_to_one_group(backend) {
        let e = fresh(backend).await;
        let alice = caller("alice", "room");
        push_ok(&e, &alice, "g1", vec![create("c1", 1, "a", 1)]).await;
        let r = e.push(&alice, &push_request("g2", vec![create("c1", 2, "x", 2)])).await;
        assert!(matches!(r, Err(EngineError::Unauthorized(_))), "{r:?}");
    }

    async fn legacy_and_unknown_versions_are_refused_with_status_200_errors(backend) {
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        let mut push = push_request("g1", vec![create("c1", 1, "a", 1)]);
        push.push_version = 0;
        assert_eq!(
            e.push(&me, &push).await,
            Ok(Reply::Error(ProtocolError::VersionNotSupported {
                version_type: replicache_dynamodb::protocol::VersionType::Push
            }))
        );
        let mut req = integration_tests::client::pull_request("g1", Value::Null);
        req.pull_version = 0;
        assert!(matches!(
            e.pull(&me, &req).await,
            Ok(Reply::Error(ProtocolError::VersionNotSupported { .. }))
        ));
    }

    async fn a_push_larger_than_one_transaction_commits_in_parts(backend) {
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        let mutations = (1..=230).map(|i| create("c1", i, &format!("m{i:03}"), i)).collect();
        push_ok(&e, &me, "g1", mutations).await;
        let mut view = View::default();
        view.sync(&e, &me, "g1").await;
        assert_eq!(view.lmids.get("c1"), Some(&230));
        assert_eq!(view.data.len(), 230);
    }

    async fn scans_see_committed_and_pending_writes(backend) {
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        push_ok(&e, &me, "g1", vec![create("c1", 1, "a", 1), create("c1", 2, "b", 2)]).await;
        push_ok(&e, &me, "g1", vec![
            mutation("c1", 3, "deleteMessage", json!({"id": "a"})),
            create("c1", 4, "c", 3),
            create("c1", 5, "d", 4),
            mutation("c1", 6, "count", json!({"prefix": "message/", "into": "stats/messages"})),
        ]).await;
        let mut view = View::default();
        view.sync(&e, &me, "g1").await;
        assert_eq!(view.data.get("stats/messages"), Some(&json!(3)));
    }

    async fn keys_and_values_too_large_to_store_are_permanent_errors(backend) {
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        let long_key = "k".repeat(2000);
        let big_value = "x".repeat(250 * 1024);
        push_ok(&e, &me, "g1", vec![
            mutation("c1", 1, "put", json!({"key": long_key, "value": 1})),
            mutation("c1", 2, "put", json!({"key": "big", "value": big_value})),
            mutation("c1", 3, "put", json!({"key": "fine", "value": "x".repeat(150 * 1024)})),
        ]).await;
        let mut view = View::default();
        view.sync(&e, &me, "g1").await;
        assert_eq!(view.lmids.get("c1"), Some(&3));
        assert_eq!(view.data.keys().collect::<Vec<_>>(), ["fine"]);
    }

    async fn pulls_spanning_several_pages_are_complete(backend) {
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        // About 2.5 MB: three 1 MB query pages.
        let value = "v".repeat(100 * 1024);
        let mutations = (1..=25)
            .map(|i| mutation("c1", i, "put", json!({"key": format!("big/{i:02}"), "value": value})))
            .collect();
        push_ok(&e, &me, "g1", mutations).await;
        let mut view = View::default();
        view.sync(&e, &me, "g1").await;
        assert_eq!(view.data.len(), 25);
        assert_eq!(view.lmids.get("c1"), Some(&25));
    }
    async fn the_poker_hears_every_push_that_committed_after_it_is_visible(backend) {
        use integration_tests::recording::RecordingPoker;
        use replicache_dynamodb::store::{Address, Record};
        use std::sync::Arc;
        let store = backend.store().await;
        let poker = Arc::new(RecordingPoker::default());
        let e = crate::engine(store.clone()).with_poker(poker.clone());
        let me = caller("alice", "room");
        push_ok(&e, &me, "g1", vec![create("c1", 1, "a", 1)]).await;
        assert_eq!(poker.take(), [("room".to_owned(), vec![])]);
        let r = pull_ok(&e, &me, "g1", Value::Null).await;
        assert_eq!(r.cookie["version"], 1, "the commit was visible when the poker ran");
        push_ok(&e, &me, "g1", vec![create("c1", 1, "a", 1)]).await;
        assert!(poker.take().is_empty(), "a push that commits nothing is silent");

        // Recorded connections are handed to the poker; gone ones are forgotten after.
        e.connect(&me, "conn-1").await.unwrap();
        e.connect(&me, "conn-2").await.unwrap();
        e.connect(&caller("bob", "elsewhere"), "conn-3").await.unwrap();
        poker.make_gone("conn-2");
        push_ok(&e, &me, "g1", vec![create("c1", 2, "b", 2)]).await;
        assert_eq!(poker.take(), [("room".to_owned(), vec!["conn-1".to_owned(), "conn-2".to_owned()])]);
        let listeners = store.get(&[Address::Listeners { space: "room".into() }]).await.unwrap();
        let Some(Some(Record::Listeners(l))) = listeners.into_iter().next() else { panic!("no listeners") };
        assert_eq!(l.connections.keys().collect::<Vec<_>>(), ["conn-1"]);
        e.disconnect("conn-1").await.unwrap();
        e.disconnect("never-connected").await.unwrap();
        push_ok(&e, &me, "g1", vec![create("c1", 3, "c", 3)]).await;
        assert_eq!(poker.take(), [("room".to_owned(), vec![])]);

        // A push too large for one transaction is poked once, after its last commit.
        let many = (4..=200).map(|i| create("c1", i, &format!("m{i}"), i)).collect();
        push_ok(&e, &me, "g1", many).await;
        assert_eq!(poker.take().len(), 1);
    }

    async fn a_connection_made_while_a_push_runs_is_poked_for_its_commit(backend) {
        use integration_tests::recording::RecordingPoker;
        use replicache_dynamodb::{App, Mutators, Tx};
        use replicache_dynamodb::engine::{EngineConfig, Engine};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let store = backend.store().await;
        // Another process registers a connection after this push read the listeners and
        // before it commits (the client then pulls and sees the state before the commit).
        let other = Engine::new(store.clone(), crate::app_for_tests(), EngineConfig::default());
        let once = Arc::new(AtomicBool::new(false));
        let app = App::new(Mutators::new().register("slow", move |tx: Tx, _: Value| {
            let (other, once) = (other.clone(), once.clone());
            async move {
                if !once.swap(true, Ordering::SeqCst) {
                    other.connect(&caller("bob", "room"), "late").await.unwrap();
                }
                tx.set("k", &1).await
            }
        }));
        let poker = Arc::new(RecordingPoker::default());
        let e = Engine::new(store, app, EngineConfig::default()).with_poker(poker.clone());
        push_ok(&e, &caller("alice", "room"), "g1", vec![mutation("c1", 1, "slow", json!({}))]).await;
        assert_eq!(poker.take(), [("room".to_owned(), vec!["late".to_owned()])]);
    }

    async fn a_rejected_mutation_that_read_many_keys_still_advances_its_lmid(backend) {
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        let keys: Vec<String> = (0..100).map(|i| format!("k/{i:03}")).collect();
        push_ok(&e, &me, "g1", vec![
            mutation("c1", 1, "readThenFail", json!({"keys": keys})),
            mutation("c1", 2, "readThenFail", json!({"keys": keys[..10]})),
            mutation("c1", 3, "put", json!({"key": "after", "value": 1})),
        ]).await;
        let mut view = View::default();
        view.sync(&e, &me, "g1").await;
        assert_eq!(view.lmids.get("c1"), Some(&3));
        assert_eq!(view.data.keys().collect::<Vec<_>>(), ["after"]);
    }

    async fn a_scan_may_return_more_keys_than_a_transaction_holds(backend) {
        let e = fresh(backend).await;
        let me = caller("alice", "room");
        let mutations = (1..=150).map(|i| create("c1", i, &format!("m{i:03}"), i)).collect();
        push_ok(&e, &me, "g1", mutations).await;
        push_ok(&e, &me, "g1", vec![
            mutation("c1", 151, "count", json!({"prefix": "message/", "into": "stats/messages"})),
        ]).await;
        let mut view = View::default();
        view.sync(&e, &me, "g1").await;
        assert_eq!(view.lmids.get("c1"), Some(&151));
        assert_eq!(view.data.get("stats/messages"), Some(&json!(150)));
    }

    async fn an_ambiguous_commit_is_not_applied_again_when_the_push_is_retried(backend) {
        use integration_tests::faulty::{Faults, FaultyStore};
        use std::sync::Arc;
        // The commit is applied, but the engine hears that it timed out (503: the client
        // retries the push), or that it conflicted (the engine runs the push again at once).
        let timed_out = Faults { ambiguous: 1.0, ..Faults::NONE };
        let conflicted = Faults { ambiguous_conflict: 1.0, ..Faults::NONE };
        for faults in [timed_out, conflicted] {
            let store = Arc::new(FaultyStore::with_faults(backend.store().await, faults, 1));
            let e = crate::engine(store.clone());
            let me = caller("alice", "room");
            let batch = vec![
                mutation("c1", 1, "incr", json!({"key": "n", "by": 5})),
                mutation("c2", 1, "incr", json!({"key": "n", "by": 1})),
            ];
            let first = e.push(&me, &push_request("g1", batch.clone())).await;
            if faults == timed_out {
                assert!(matches!(first, Err(EngineError::Unavailable(_))), "{first:?}");
                assert_eq!(store.counts().ambiguous, 1);
                store.heal();
                push_ok(&e, &me, "g1", batch).await;
            } else {
                assert!(matches!(first, Ok(Reply::Ok(()))), "{first:?}");
                assert_eq!(store.counts().ambiguous_conflicts, 1);
                store.heal();
            }
            let mut view = View::default();
            view.sync(&e, &me, "g1").await;
            assert_eq!(view.cookie["version"], 1, "one commit");
            assert_eq!(view.data.get("n"), Some(&json!(6)), "each mutation applied once");
            assert_eq!(view.lmids.get("c1"), Some(&1));
            assert_eq!(view.lmids.get("c2"), Some(&1));
            push_ok(&e, &me, "g1", vec![mutation("c1", 2, "incr", json!({"key": "n", "by": 1}))]).await;
            view.sync(&e, &me, "g1").await;
            assert_eq!(view.data.get("n"), Some(&json!(7)));
        }
    }
}

/// A store that serves one stale read of an entity, as DynamoDB may while a commit is only
/// partly visible: the space counter already shows the commit, the entity not yet.
struct StaleOnce {
    inner: std::sync::Arc<dyn replicache_dynamodb::store::Store>,
    stale: std::sync::Mutex<Option<replicache_dynamodb::store::Entity>>,
}

#[async_trait::async_trait]
impl replicache_dynamodb::store::Store for StaleOnce {
    fn limits(&self) -> replicache_dynamodb::store::Limits {
        self.inner.limits()
    }
    async fn get(
        &self,
        addresses: &[replicache_dynamodb::store::Address],
    ) -> Result<
        Vec<Option<replicache_dynamodb::store::Record>>,
        replicache_dynamodb::store::StoreError,
    > {
        use replicache_dynamodb::store::{Address, Record};
        let mut got = self.inner.get(addresses).await?;
        for (address, record) in addresses.iter().zip(got.iter_mut()) {
            if let Address::Entity { key, .. } = address {
                let mut stale = self.stale.lock().unwrap();
                if stale.as_ref().is_some_and(|e| &e.key == key) {
                    *record = stale.take().map(Record::Entity);
                }
            }
        }
        Ok(got)
    }
    async fn changes(
        &self,
        space: &str,
        after: u64,
        page: Option<replicache_dynamodb::store::PageToken>,
    ) -> Result<replicache_dynamodb::store::Page, replicache_dynamodb::store::StoreError> {
        self.inner.changes(space, after, page).await
    }
    async fn entities(
        &self,
        space: &str,
        query: &replicache_dynamodb::store::EntityQuery,
        page: Option<replicache_dynamodb::store::PageToken>,
    ) -> Result<replicache_dynamodb::store::Page, replicache_dynamodb::store::StoreError> {
        self.inner.entities(space, query, page).await
    }
    async fn commit_logs(
        &self,
        space: &str,
        page: Option<replicache_dynamodb::store::PageToken>,
    ) -> Result<replicache_dynamodb::store::Page, replicache_dynamodb::store::StoreError> {
        self.inner.commit_logs(space, page).await
    }
    async fn write(
        &self,
        writes: Vec<replicache_dynamodb::store::Write>,
    ) -> Result<(), replicache_dynamodb::store::StoreError> {
        self.inner.write(writes).await
    }
}

#[tokio::test]
async fn a_stale_read_served_again_from_the_cache_is_still_conditioned() {
    use replicache_dynamodb::store::memory::MemoryStore;
    use replicache_dynamodb::store::Entity;
    let inner = std::sync::Arc::new(MemoryStore::new());
    let store = std::sync::Arc::new(StaleOnce {
        inner: inner.clone(),
        stale: std::sync::Mutex::new(None),
    });
    let e = crate::engine(store.clone());
    let me = caller("alice", "room");
    push_ok(
        &e,
        &me,
        "g1",
        vec![mutation("c1", 1, "incr", json!({"key": "ctr", "by": 4}))],
    )
    .await;
    push_ok(
        &e,
        &me,
        "g1",
        vec![mutation("c1", 2, "incr", json!({"key": "ctr", "by": 1}))],
    )
    .await;
    // The next read of ctr sees version 1 (4), though version 2 (5) is committed.
    *store.stale.lock().unwrap() = Some(Entity {
        space: "room".into(),
        key: "ctr".into(),
        version: 1,
        value: Some("4".into()),
        expires_at: None,
    });
    let too_many: Vec<String> = (0..120).map(|i| format!("k/{i}")).collect();
    push_ok(
        &e,
        &me,
        "g1",
        vec![
            // Reads ctr (stale), then is skipped: it writes more than a transaction holds.
            mutation(
                "c1",
                3,
                "putMany",
                json!({"keys": too_many, "value": 1, "read": "ctr"}),
            ),
            // Reads ctr again, from the cache: the commit must still be conditioned on it.
            mutation("c1", 4, "incr", json!({"key": "ctr", "by": 1})),
        ],
    )
    .await;
    let mut view = View::default();
    view.sync(&e, &me, "g1").await;
    assert_eq!(view.lmids.get("c1"), Some(&4));
    assert_eq!(view.data.get("ctr"), Some(&json!(6)), "no lost update");
    assert!(
        view.data.keys().all(|k| !k.starts_with("k/")),
        "the big mutation was skipped"
    );
}
