//! The application-facing API as the engine enforces it: the space policy runs before
//! anything else is read or written, engine outcomes cannot be swallowed by a mutator, a `Tx`
//! does not outlive its mutation, scans honour their start key and limit, and the library
//! does not depend on the example applications.

use std::process::Command;
use std::sync::{Arc, Mutex};

use integration_tests::app;
use integration_tests::client::{caller, mutation, pull_ok, push_ok, push_request};
use integration_tests::counting::CountingStore;
use integration_tests::faulty::FaultyStore;
use replicache_dynamodb::store::memory::MemoryStore;
use replicache_dynamodb::{Access, App, Engine, EngineConfig, EngineError, Mutators, Result, Tx};
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

/// The library is what applications build on, never the other way round: neither example
/// app is anywhere in its dependency tree, with every feature on.
#[test]
fn the_library_depends_on_neither_example_app() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "replicache-dynamodb",
            "--all-features",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names.first(), Some(&"replicache-dynamodb"), "{tree}");
    assert!(
        names.contains(&"serde") && names.contains(&"axum"),
        "{tree}"
    );
    for app in ["chat", "todo"] {
        assert!(
            !names.contains(&app),
            "the library depends on the {app} app:\n{tree}"
        );
    }
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
    let server = replicache_dynamodb::testing::TestServer::new(App::new(mutators));
    let me = server.client("alice", "room");
    use replicache_dynamodb::testing::Mutated;
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
