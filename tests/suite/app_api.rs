//! The application-facing API as the engine enforces it: the space policy runs before
//! anything else is read or written, engine outcomes cannot be swallowed by a mutator, a `Tx`
//! does not outlive its mutation, and scans honour their start key and limit.

use std::sync::{Arc, Mutex};

use integration_tests::app;
use integration_tests::client::{caller, mutation, pull_ok, push_ok, push_request};
use integration_tests::counting::CountingStore;
use integration_tests::faulty::FaultyStore;
use replicache_dynamodb::engine::{Engine, EngineConfig, EngineError};
use replicache_dynamodb::protocol::PatchOp;
use replicache_dynamodb::store::memory::MemoryStore;
use replicache_dynamodb::testing::{Mutated, TestServer};
use replicache_dynamodb::{reject, Access, App, Mutators, Operation, Result, Tx};
use serde_json::{json, Value};

use crate::on_both_stores;

fn keys_of(engine_view: &replicache_dynamodb::protocol::PullResponse) -> Vec<String> {
    engine_view
        .patch
        .iter()
        .filter_map(|op| match op {
            replicache_dynamodb::protocol::PatchOp::Put { key, .. } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

on_both_stores! {
    async fn a_denied_space_costs_no_request_and_writes_nothing(backend) {
        let counting = Arc::new(CountingStore::new(backend.store().await));
        let app = app::app().space_policy(|request| async move {
            Ok(if request.user() == "mallory" {
                Access::deny("mallory is banned")
            } else {
                Access::Allow
            })
        });
        let e = Engine::new(counting.clone(), app, EngineConfig::default());
        let intruder = caller("mallory", "room");
        let push = e
            .push(&intruder, &push_request("g1", vec![mutation("c1", 1, "put", json!({"key": "k", "value": 1}))]))
            .await;
        assert_eq!(push, Err(EngineError::Forbidden("mallory is banned".into())));
        let pull = e.pull(&intruder, &integration_tests::client::pull_request("g1", Value::Null)).await;
        assert_eq!(pull, Err(EngineError::Forbidden("mallory is banned".into())));
        assert_eq!(counting.take(), 0, "nothing read or written for a denied space");
        let view = pull_ok(&e, &caller("alice", "room"), "g2", Value::Null).await;
        assert!(keys_of(&view).is_empty(), "nothing written: {view:?}");
    }

    async fn scans_honour_start_key_and_limit(backend) {
        let e = crate::fresh(backend).await;
        let me = caller("alice", "room");
        let puts = (1..=5).map(|i| mutation("c1", i, "put", json!({"key": format!("p/{i}"), "value": i}))).collect();
        push_ok(&e, &me, "g1", puts).await;
        let scans = vec![
            mutation("c1", 6, "scanPage", json!({"prefix": "p/", "into": "out/all"})),
            mutation("c1", 7, "scanPage", json!({"prefix": "p/", "start": "p/2", "into": "out/at"})),
            mutation("c1", 8, "scanPage", json!({"prefix": "p/", "start": "p/2", "exclusive": true, "limit": 2, "into": "out/after"})),
            mutation("c1", 9, "scanPage", json!({"prefix": "p/", "limit": 0, "into": "out/none"})),
            // The push's own earlier writes count: p/0 sorts first, p/3 is gone.
            mutation("c1", 10, "put", json!({"key": "p/0", "value": 0})),
            mutation("c1", 11, "del", json!({"key": "p/3"})),
            mutation("c1", 12, "scanPage", json!({"prefix": "p/", "limit": 3, "into": "out/own"})),
        ];
        push_ok(&e, &me, "g1", scans).await;
        let view = pull_ok(&e, &me, "g1", Value::Null).await;
        let value = |key: &str| view.patch.iter().find_map(|op| match op {
            replicache_dynamodb::protocol::PatchOp::Put { key: k, value } if k == key => Some(value.clone()),
            _ => None,
        });
        assert_eq!(value("out/all"), Some(json!(["p/1", "p/2", "p/3", "p/4", "p/5"])));
        assert_eq!(value("out/at"), Some(json!(["p/2", "p/3", "p/4", "p/5"])));
        assert_eq!(value("out/after"), Some(json!(["p/3", "p/4"])));
        assert_eq!(value("out/none"), Some(json!([])));
        assert_eq!(value("out/own"), Some(json!(["p/0", "p/1", "p/2"])));
    }

    async fn scans_read_only_what_their_answer_needs(backend) {
        // A scan with a limit reads as far as its answer reaches, keys only when asked, and
        // `is_empty` one key; on DynamoDB through a start key's `BETWEEN` up to the first key
        // after the prefix (`p0` for `p/`), which is no key of it.
        let counting = Arc::new(CountingStore::new(backend.store().await));
        let mutators = app::mutators().register("isEmpty", |tx: Tx, into: String| async move {
            let empty = tx.is_empty().await?;
            tx.set(&into, &empty).await
        });
        let e = Engine::new(counting.clone(), App::new(mutators), EngineConfig::default());
        let me = caller("alice", "room");
        push_ok(&e, &me, "g1", vec![mutation("c1", 1, "isEmpty", json!("empty/before"))]).await;
        let puts = (0..40)
            .map(|i| mutation("c1", i + 2, "put", json!({"key": format!("p/{i:02}"), "value": i})))
            .chain([mutation("c1", 42, "put", json!({"key": "p0", "value": "after"}))])
            .collect();
        push_ok(&e, &me, "g1", puts).await;
        // Deleted keys on the way are read, and skipped.
        let dels = (0..3).map(|i| mutation("c1", 43 + i, "del", json!({"key": format!("p/{i:02}")}))).collect();
        push_ok(&e, &me, "g1", dels).await;
        // The entities each read: pages ask for what is missing and at least twice the last
        // page, so deleted keys cost few requests.
        let reads = [
            ("isEmpty", json!("empty/after"), 1),
            ("scanPage", json!({"prefix": "p/", "limit": 2, "into": "out/first", "values": true}), 2 + 4),
            ("scanPage", json!({"prefix": "p/", "start": "p/10", "limit": 3, "into": "out/at", "keysOnly": true}), 3),
            ("scanPage", json!({"prefix": "p/", "start": "p/10", "exclusive": true, "limit": 3, "into": "out/after"}), 3),
            ("scanPage", json!({"prefix": "p/", "start": "p/38", "limit": 5, "into": "out/last", "keysOnly": true}), 2),
            ("scanPage", json!({"prefix": "p/", "start": "a", "limit": 1, "into": "out/before", "keysOnly": true}), 1 + 2 + 4),
            ("scanPage", json!({"prefix": "p/", "start": "q", "into": "out/beyond"}), 0),
        ];
        for (i, (name, args, read)) in reads.into_iter().enumerate() {
            counting.take_entities_read();
            push_ok(&e, &me, "g1", vec![mutation("c1", 46 + i as u64, name, args.clone())]).await;
            assert_eq!(counting.take_entities_read(), read, "{name} {args}");
        }
        let view = pull_ok(&e, &me, "g2", Value::Null).await;
        let value = |key: &str| view.patch.iter().find_map(|op| match op {
            replicache_dynamodb::protocol::PatchOp::Put { key: k, value } if k == key => Some(value.clone()),
            _ => None,
        });
        assert_eq!(value("empty/before"), Some(json!(true)));
        assert_eq!(value("empty/after"), Some(json!(false)));
        assert_eq!(value("out/first"), Some(json!([["p/03", 3], ["p/04", 4]])));
        assert_eq!(value("out/at"), Some(json!(["p/10", "p/11", "p/12"])));
        assert_eq!(value("out/after"), Some(json!(["p/11", "p/12", "p/13"])));
        assert_eq!(value("out/last"), Some(json!(["p/38", "p/39"])));
        assert_eq!(value("out/before"), Some(json!(["p/03"])));
        assert_eq!(value("out/beyond"), Some(json!([])));
    }
}

/// A mutator that drops the error of a failed read still cannot commit on what it did not
/// read: the engine acts on the failure (503, nothing written) whatever the mutator returns.
#[tokio::test]
async fn engine_outcomes_cannot_be_swallowed() {
    let store = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    async fn swallow(tx: Tx, _: Value) -> Result<()> {
        let _ignored = tx.get::<Value>("balance").await;
        tx.set("decided", &true).await
    }
    let app = App::new(Mutators::new().register("swallow", swallow));
    let e = Engine::new(store.clone(), app, EngineConfig::default());
    let me = caller("alice", "room");
    store.fail_reads(true);
    let push = e
        .push(
            &me,
            &push_request("g1", vec![mutation("c1", 1, "swallow", json!({}))]),
        )
        .await;
    assert!(matches!(push, Err(EngineError::Unavailable(_))), "{push:?}");
    store.fail_reads(false);
    let view = pull_ok(&e, &me, "g1", Value::Null).await;
    assert!(
        keys_of(&view).is_empty() && view.last_mutation_id_changes.is_empty(),
        "{view:?}"
    );
    // Once reads work, the same mutation applies, once.
    push_ok(&e, &me, "g1", vec![mutation("c1", 1, "swallow", json!({}))]).await;
    let view = pull_ok(&e, &me, "g1", Value::Null).await;
    assert_eq!(keys_of(&view), ["decided"]);
    assert_eq!(view.last_mutation_id_changes["c1"], 1);
}

/// A `Tx` kept past its mutation (stashed, or moved into a task) fails instead of writing
/// into a later mutation.
#[tokio::test]
async fn a_tx_works_only_while_its_mutation_runs() {
    let stash: Arc<Mutex<Option<Tx>>> = Arc::default();
    let (keep, reuse) = (stash.clone(), stash.clone());
    let app = App::new(
        Mutators::new()
            .register("keep", move |tx: Tx, _: Value| {
                let keep = keep.clone();
                async move {
                    *keep.lock().unwrap() = Some(tx.clone());
                    tx.set("a", &1).await
                }
            })
            .register("reuse", move |tx: Tx, _: Value| {
                let old = reuse.lock().unwrap().take().expect("stashed");
                async move {
                    let stale = old.set("b", &2).await;
                    assert!(stale.as_ref().is_err_and(|e| e.is_rejection()), "{stale:?}");
                    tx.set("c", &3).await
                }
            }),
    );
    let e = Engine::new(Arc::new(MemoryStore::new()), app, EngineConfig::default());
    let me = caller("alice", "room");
    push_ok(
        &e,
        &me,
        "g1",
        vec![
            mutation("c1", 1, "keep", json!({})),
            mutation("c1", 2, "reuse", json!({})),
        ],
    )
    .await;
    let view = pull_ok(&e, &me, "g1", Value::Null).await;
    assert_eq!(keys_of(&view), ["a", "c"]);
}

#[tokio::test]
async fn a_mutator_called_without_arguments_gets_them_in_any_type_that_takes_none() {
    #[derive(serde::Deserialize)]
    struct Empty {}
    #[derive(serde::Deserialize)]
    struct Unit;
    #[derive(serde::Deserialize)]
    struct Optional {
        #[serde(default)]
        note: Option<String>,
    }
    let mutators = Mutators::new()
        .register("empty", |tx: Tx, Empty {}| async move {
            tx.set("empty", &true).await
        })
        .register(
            "unit",
            |tx: Tx, Unit| async move { tx.set("unit", &true).await },
        )
        .register("nothing", |tx: Tx, (): ()| async move {
            tx.set("nothing", &true).await
        })
        .register("option", |tx: Tx, o: Option<u32>| async move {
            tx.set("option", &o).await
        })
        .register("optional", |tx: Tx, o: Optional| async move {
            tx.set("optional", &o.note).await
        })
        .register("needs", |tx: Tx, id: String| async move {
            tx.set("needs", &id).await
        });
    let server = TestServer::new(App::new(mutators));
    let me = server.client("alice", "room");
    for name in ["empty", "unit", "nothing", "option", "optional"] {
        assert_eq!(
            me.mutate(name, Value::Null).await.unwrap(),
            Mutated::Applied,
            "{name}"
        );
    }
    assert_eq!(
        server.get::<bool>("room", "empty").await.unwrap(),
        Some(true)
    );
    assert_eq!(
        server.get::<Value>("room", "optional").await.unwrap(),
        Some(Value::Null)
    );
    let needs = me.mutate("needs", Value::Null).await.unwrap();
    assert!(
        matches!(needs, Mutated::Rejected(ref r) if r.starts_with("invalid arguments")),
        "{needs:?}"
    );
}

/// `TestServer::get` names the key and what did not parse when a value has another type, and
/// a client pulls on from the cookie of its last pull.
#[tokio::test]
async fn the_test_server_reads_typed_values_and_pulls_from_a_cookie() {
    let server = TestServer::new(app::app());
    let me = server.client("alice", "room");
    let put = |key: &str, value: Value| json!({"key": key, "value": value});
    assert_eq!(
        me.mutate("put", put("n", json!("seven"))).await,
        Ok(Mutated::Applied)
    );
    let wrong = server.get::<i64>("room", "n").await.unwrap_err();
    assert!(
        wrong.to_string().contains(r#""n""#) && wrong.to_string().contains("invalid type: string"),
        "{wrong}"
    );
    assert_eq!(
        server.get::<String>("room", "n").await,
        Ok(Some("seven".into()))
    );
    assert_eq!(server.get::<i64>("room", "absent").await, Ok(None));

    let first = me.pull().await.unwrap();
    assert_eq!(
        me.mutate("put", put("m", json!(1))).await,
        Ok(Mutated::Applied)
    );
    let next = me.pull_from(&first.cookie).await.unwrap();
    assert_eq!(
        next.patch,
        [PatchOp::Put {
            key: "m".into(),
            value: json!(1)
        }]
    );
    assert_eq!(
        next.last_mutation_id_changes.values().collect::<Vec<_>>(),
        [&2]
    );
    let idle = me.pull_from(&next.cookie).await.unwrap();
    assert!(
        idle.patch.is_empty() && idle.last_mutation_id_changes.is_empty(),
        "{idle:?}"
    );
}

/// A client asks for a poke ticket as the web client does; the ticket names its user and
/// space, opens one connection to that space, and is refused to a user the policy turns away.
#[tokio::test]
async fn the_test_server_issues_poke_tickets_that_open_one_connection() {
    let app = App::new(app::mutators())
        .space_policy(|r| async move { Ok(Access::from(r.user() != "mallory")) });
    let server = TestServer::new(app);
    let ticket = server.client("alice", "room").poke_ticket().await.unwrap();
    let said = server.check_ticket(&ticket).unwrap();
    assert_eq!((said.user.as_str(), said.space.as_str()), ("alice", "room"));
    assert!(server.check_ticket(&ticket.replace('.', ".x")).is_err());
    let refused = server.connect("other-room", &ticket).await;
    assert!(
        matches!(refused, Err(EngineError::Unauthorized(_))),
        "{refused:?}"
    );
    server.connect("room", &ticket).await.unwrap();
    let again = server.connect("room", &ticket).await;
    assert!(
        matches!(again, Err(EngineError::Unauthorized(_))),
        "{again:?}"
    );
    let mallory = server.client("mallory", "room").poke_ticket().await;
    assert!(
        matches!(mallory, Err(EngineError::Forbidden(_))),
        "{mallory:?}"
    );
}

/// A push held after the space policy allowed it, while a concurrent push removes its user
/// from the members: the policy's yes is stale by then, and the write rule, which runs inside
/// the push, refuses the mutation.
#[tokio::test]
async fn a_pause_after_the_policy_lets_a_concurrent_push_in() {
    fn member(members: Option<Vec<String>>, user: &str) -> bool {
        members.is_none_or(|m| m.iter().any(|m| m == user))
    }
    let app = App::new(app::mutators())
        .space_policy(
            |r| async move { Ok(Access::from(member(r.get("members").await?, r.user()))) },
        )
        .write_rule(|tx: Tx, _| async move {
            if member(tx.get("members").await?, tx.user()) {
                Ok(())
            } else {
                Err(reject("members only"))
            }
        });
    let server = TestServer::new(app);
    let (owner, alice) = (
        server.client("owner", "team"),
        server.client("alice", "team"),
    );
    let members = |m: Value| json!({"key": "members", "value": m});
    assert_eq!(
        owner
            .mutate("put", members(json!(["owner", "alice"])))
            .await,
        Ok(Mutated::Applied)
    );

    let mut pause = server.pause_after_policy(Operation::Push, "alice", "team");
    let note = json!({"key": "note", "value": "hi"});
    let (pushed, ()) = tokio::join!(alice.mutate("put", note), async {
        assert_eq!(pause.answered().await, Ok(Access::Allow));
        assert_eq!(
            owner.mutate("put", members(json!(["owner"]))).await,
            Ok(Mutated::Applied)
        );
        pause.release();
    });
    assert_eq!(pushed, Ok(Mutated::Rejected("members only".into())));
    assert_eq!(server.get::<Value>("team", "note").await, Ok(None));
    // The pause held one request: the next push runs the policy, which now refuses.
    let refused = alice
        .mutate("put", json!({"key": "note", "value": "again"}))
        .await;
    assert!(
        matches!(refused, Err(EngineError::Forbidden(_))),
        "{refused:?}"
    );
}

/// A typed read of a value of another type rejects the mutation, naming the key, the type
/// asked for and what did not parse; in a scan as in a `get`.
#[tokio::test]
async fn a_value_of_another_type_rejects_the_mutation_and_says_why() {
    let mutators = app::mutators()
        .register("getNumber", |tx: Tx, key: String| async move {
            tx.get::<i64>(&key).await.map(drop)
        })
        .register("scanNumbers", |tx: Tx, prefix: String| async move {
            tx.scan::<i64>(prefix.as_str()).await.map(drop)
        });
    let server = TestServer::new(App::new(mutators));
    let me = server.client("alice", "room");
    let put = json!({"key": "n/word", "value": "seven"});
    assert_eq!(me.mutate("put", put).await, Ok(Mutated::Applied));
    for (name, args) in [("getNumber", "n/word"), ("scanNumbers", "n/")] {
        let Ok(Mutated::Rejected(reason)) = me.mutate(name, args).await else {
            panic!("{name} was not rejected");
        };
        assert!(
            reason.contains(r#""n/word""#)
                && reason.contains("i64")
                && reason.contains("invalid type: string \"seven\""),
            "{name}: {reason}"
        );
    }
}
