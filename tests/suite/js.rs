//! JavaScript apps: the client's mutators run on the server with a `tx` like Replicache's
//! `WriteTransaction`, a thrown error or a limit reached rejects the mutation (and the next one
//! runs), engine outcomes cannot be caught, Rust mutators take precedence, and a module that
//! does not load says why.

use std::sync::Arc;
use std::time::Duration;

use integration_tests::client::{caller, mutation, pull_ok, push_ok, push_request, puts};
use integration_tests::counting::CountingStore;
use integration_tests::faulty::FaultyStore;
use replicache_dynamodb::engine::{Engine, EngineConfig, EngineError};
use replicache_dynamodb::js::{JsApp, JsError, JsLimits};
use replicache_dynamodb::store::memory::MemoryStore;
use replicache_dynamodb::testing::{Mutated, TestServer};
use replicache_dynamodb::{App, Mutators, Result, Tx};
use serde_json::{json, Value};

use crate::on_both_stores;

/// Mutators that use every part of the `tx` a client's mutators use.
const PROBE: &str = r#"
export const mutators = {
  async put(tx, { key, value }) { await tx.set(key, value); },
  async putOld(tx, { key, value }) { await tx.put(key, value); },
  async remove(tx, { key }) { await tx.set('removed/' + key, await tx.del(key)); },
  async probe(tx, { prefix }) {
    const scan = tx.scan({ prefix });
    const iterated = [];
    for await (const v of tx.scan({ prefix })) iterated.push(v);
    await tx.set('report', {
      clientID: tx.clientID,
      mutationID: tx.mutationID,
      reason: tx.reason,
      location: tx.location,
      has: await tx.has(prefix + 'a'),
      missing: await tx.get(prefix + 'zzz') === undefined,
      empty: await tx.isEmpty(),
      values: await scan.values().toArray(),
      keys: await tx.scan({ prefix }).keys().toArray(),
      entries: await tx.scan({ prefix }).entries().toArray(),
      toArray: await tx.scan({ prefix }).toArray(),
      iterated,
      after: await tx.scan({ prefix, start: { key: prefix + 'a', exclusive: true } }).keys().toArray(),
      at: await tx.scan({ prefix, start: { key: prefix + 'b' }, limit: 1 }).keys().toArray(),
      now: typeof Date.now() === 'number' && Math.random() < 1,
    });
  },
  async firstTwo(tx, { prefix }) {
    const scan = tx.scan({ prefix, limit: 2 });
    const keys = await scan.keys().toArray();
    await tx.set('firstTwo', { keys, values: await scan.values().toArray(), empty: await tx.isEmpty() });
  },
  async throwString() { throw 'no thanks'; },
  async throwError(tx) { await tx.set('partial', 1); throw new RangeError('out of range'); },
  async throwCircular() { const o = {}; o.self = o; throw o; },
  async throwBigInt() { throw 10n; },
  async reject() { return Promise.reject(new Error('rejected promise')); },
  spin() { for (;;) {} },
  async spinLater(tx) { await tx.get('x'); for (;;) {} },
  async microtasks() { for (;;) await null; },
  async recurse() { const down = (n) => down(n + 1) + 1; down(0); },
  async bomb() { const a = []; for (;;) a.push('x'.repeat(1 << 20) + a.length); },
  async hoard() { globalThis.hoard = []; for (;;) globalThis.hoard.push('x'.repeat(1 << 20) + globalThis.hoard.length); },
  async huge() { return 'x'.repeat(8 << 20); },
  async destructure(tx, { id }) { await tx.set('id', id); },
  async catchAll(tx) {
    try { await tx.get('balance'); } catch {}
    await tx.set('decided', true);
  },
  async forgetful(tx) { await new Promise(() => {}); },
  async notJson(tx) { await tx.set('f', () => 1); },
  async unawaited(tx) { tx.set('fire', 'forget'); },
  plain(tx, { key }) { tx.set(key, 'plain'); },
};
"#;

fn probe_app() -> App {
    App::new(Mutators::new()).js(JsApp::from_source("probe.js", PROBE).expect("loads"))
}

fn rejected(outcome: Mutated) -> String {
    match outcome {
        Mutated::Rejected(reason) => reason,
        Mutated::Applied => panic!("expected a rejection"),
    }
}

#[tokio::test]
async fn a_js_mutator_uses_the_write_transaction_as_on_the_client() {
    let server = TestServer::new(probe_app());
    let alice = server.client("alice", "room");
    for (key, value) in [("p/a", 1), ("p/b", 2), ("p/c", 3)] {
        assert_eq!(
            alice
                .mutate("put", json!({"key": key, "value": value}))
                .await
                .unwrap(),
            Mutated::Applied
        );
    }
    alice
        .mutate("putOld", json!({"key": "q", "value": {"deep": [1, null]}}))
        .await
        .unwrap();
    assert_eq!(
        alice
            .mutate("probe", json!({"prefix": "p/"}))
            .await
            .unwrap(),
        Mutated::Applied
    );
    let report: Value = server
        .get("room", "report")
        .await
        .unwrap()
        .expect("the report");
    assert_eq!(report["mutationID"], 5);
    assert!(report["clientID"].as_str().is_some_and(|c| !c.is_empty()));
    assert_eq!(report["reason"], "authoritative");
    assert_eq!(report["location"], "server");
    assert_eq!(report["has"], true);
    assert_eq!(report["missing"], true);
    assert_eq!(report["empty"], false);
    assert_eq!(report["values"], json!([1, 2, 3]));
    assert_eq!(report["keys"], json!(["p/a", "p/b", "p/c"]));
    assert_eq!(
        report["entries"],
        json!([["p/a", 1], ["p/b", 2], ["p/c", 3]])
    );
    assert_eq!(report["toArray"], json!([1, 2, 3]));
    assert_eq!(report["iterated"], json!([1, 2, 3]));
    assert_eq!(report["after"], json!(["p/b", "p/c"]));
    assert_eq!(report["at"], json!(["p/b"]));
    assert_eq!(report["now"], true);
    assert_eq!(
        server.get::<Value>("room", "q").await.unwrap(),
        Some(json!({"deep": [1, null]}))
    );

    // `del` resolves to whether the key existed.
    alice.mutate("remove", json!({"key": "p/a"})).await.unwrap();
    alice.mutate("remove", json!({"key": "p/a"})).await.unwrap();
    assert_eq!(server.get::<Value>("room", "p/a").await.unwrap(), None);
    assert_eq!(
        server.get::<Value>("room", "removed/p/a").await.unwrap(),
        Some(json!(false)),
        "the second del found nothing"
    );
    // An unawaited write still lands, as on the client.
    alice.mutate("unawaited", json!(null)).await.unwrap();
    assert_eq!(
        server.get::<Value>("room", "fire").await.unwrap(),
        Some(json!("forget"))
    );
}

#[tokio::test]
async fn what_a_mutator_throws_rejects_it_and_the_next_one_runs() {
    let limits = JsLimits {
        cpu_per_call: Duration::from_millis(50),
        memory_bytes: 32 << 20,
    };
    let js = JsApp::with_limits("probe.js", PROBE, limits).expect("loads");
    let server = TestServer::new(App::new(Mutators::new()).js(js));
    let alice = server.client("alice", "room");
    let cases = [
        ("nope", json!({}), "unknown mutator \"nope\""),
        ("toString", json!({}), "unknown mutator \"toString\""),
        ("throwString", json!({}), "no thanks"),
        ("throwError", json!({}), "RangeError: out of range"),
        ("throwCircular", json!({}), "[object Object]"),
        ("throwBigInt", json!({}), "10"),
        ("reject", json!({}), "Error: rejected promise"),
        ("destructure", json!(null), "TypeError"),
        ("spin", json!({}), "used up its CPU time (50 ms)"),
        ("spinLater", json!({}), "used up its CPU time (50 ms)"),
        ("microtasks", json!({}), "used up its CPU time (50 ms)"),
        ("recurse", json!({}), "RangeError"),
        ("bomb", json!({}), "out of memory"),
        ("hoard", json!({}), "out of memory"),
        ("forgetful", json!({}), "never settles"),
        ("notJson", json!({}), "is not JSON"),
    ];
    for (name, args, expected) in cases {
        let reason = rejected(alice.mutate(name, args).await.unwrap());
        assert!(
            reason.contains(expected),
            "{name}: {reason:?} should say {expected:?}"
        );
        // The engine stays fit: the next mutation applies.
        let next = alice
            .mutate("put", json!({"key": "alive", "value": name}))
            .await
            .unwrap();
        assert_eq!(next, Mutated::Applied, "after {name}");
    }
    assert_eq!(
        server.get::<Value>("room", "partial").await.unwrap(),
        None,
        "a rejected mutation's writes are dropped"
    );
    // A huge return value is ignored, as the server has no caller to give it to.
    assert_eq!(
        alice.mutate("huge", json!({})).await.unwrap(),
        Mutated::Applied
    );
}

#[tokio::test]
async fn a_js_catch_cannot_swallow_an_engine_outcome() {
    let store = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let e = Engine::new(store.clone(), probe_app(), EngineConfig::default());
    let me = caller("alice", "room");
    store.fail_reads(true);
    let push = e
        .push(
            &me,
            &push_request("g1", vec![mutation("c1", 1, "catchAll", json!({}))]),
        )
        .await;
    assert!(matches!(push, Err(EngineError::Unavailable(_))), "{push:?}");
    store.fail_reads(false);
    let view = pull_ok(&e, &me, "g1", Value::Null).await;
    assert!(
        puts(&view.patch).is_empty() && view.last_mutation_id_changes.is_empty(),
        "{view:?}"
    );
    push_ok(
        &e,
        &me,
        "g1",
        vec![mutation("c1", 1, "catchAll", json!({}))],
    )
    .await;
    let view = pull_ok(&e, &me, "g1", Value::Null).await;
    assert_eq!(view.last_mutation_id_changes["c1"], 1);
}

#[tokio::test]
async fn rust_mutators_take_precedence_and_a_factory_gets_the_user() {
    let js = JsApp::from_source(
        "factory.js",
        "export function mutators(user) {
           return { async whoami(tx) { await tx.set('who', user); }, async hot(tx) { await tx.set('hot', 'js'); } };
         }",
    )
    .expect("loads");
    async fn hot(tx: Tx, _: Value) -> Result<()> {
        tx.set("hot", &"rust").await
    }
    let server = TestServer::new(App::new(Mutators::new().register("hot", hot)).js(js));
    let bob = server.client("bob", "room");
    bob.mutate("whoami", json!(null)).await.unwrap();
    bob.mutate("hot", json!(null)).await.unwrap();
    assert_eq!(
        server
            .get::<String>("room", "who")
            .await
            .unwrap()
            .as_deref(),
        Some("bob")
    );
    assert_eq!(
        server
            .get::<String>("room", "hot")
            .await
            .unwrap()
            .as_deref(),
        Some("rust")
    );
}

#[tokio::test]
async fn a_js_space_policy_decides_with_the_apps_records() {
    let js = JsApp::from_source(
        "policy.js",
        "export const mutators = { async join(tx, user) { const m = (await tx.get('members')) ?? []; await tx.set('members', [...m, user]); } };
         export async function spacePolicy({ user, space, operation, get, getIn }) {
           if (user === 'mallory') throw new Error('mallory is banned');
           if (space === 'open') return true;
           if ((await getIn('directory', 'admins'))?.includes(user)) return true;
           return operation !== 'push' && ((await get('members')) ?? []).includes(user);
         }",
    )
    .expect("loads");
    assert!(js.has_space_policy());
    let server = TestServer::new(App::new(Mutators::new()).js(js));
    let denied = server
        .client("mallory", "open")
        .mutate("join", json!("mallory"))
        .await;
    assert_eq!(
        denied,
        Err(EngineError::Forbidden("Error: mallory is banned".into()))
    );
    server
        .client("alice", "open")
        .mutate("join", json!("alice"))
        .await
        .unwrap();
    let carol = server.client("carol", "team");
    assert!(matches!(carol.pull().await, Err(EngineError::Forbidden(_))));
    assert!(matches!(
        carol.mutate("join", json!("carol")).await,
        Err(EngineError::Forbidden(_))
    ));
}

#[test]
fn a_module_that_does_not_load_says_why() {
    let syntax = JsApp::from_source(
        "bad.js",
        "export const mutators = {\n  async oops(tx) {\n    await tx.set('a' 'b');\n  }\n};\n",
    );
    match syntax {
        Err(JsError::Module {
            file,
            line,
            message,
        }) => {
            assert_eq!(file, "bad.js");
            assert_eq!(line, Some(3), "{message}");
            assert!(message.contains("SyntaxError"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let none = JsApp::from_source("none.js", "export const helpers = {};");
    assert_eq!(
        none.unwrap_err(),
        JsError::NoMutators {
            file: "none.js".into()
        }
    );
    let throws = JsApp::from_source(
        "throws.js",
        "throw new Error('at load');\nexport const mutators = {};",
    );
    assert!(
        matches!(throws, Err(JsError::Module { ref message, .. }) if message.contains("at load")),
        "{throws:?}"
    );
    let imports = JsApp::from_source(
        "imports.js",
        "import { x } from './other.js';\nexport const mutators = {};",
    );
    assert!(
        matches!(imports, Err(JsError::Module { .. })),
        "{imports:?}"
    );
    let missing = JsApp::load("/nonexistent/app.js");
    assert!(matches!(missing, Err(JsError::Read { .. })), "{missing:?}");
    let spins = JsApp::from_source("spins.js", "for (;;) {}\nexport const mutators = {};");
    assert!(
        matches!(spins, Err(JsError::Module { ref message, .. }) if message.contains("CPU time")),
        "{spins:?}"
    );
}

on_both_stores! {
    async fn js_mutators_commit_on_both_stores(backend) {
        let e = Engine::new(backend.store().await, probe_app(), EngineConfig::default());
        let me = caller("alice", "room");
        let mutations = (1..=3)
            .map(|i| mutation("c1", i, "put", json!({"key": format!("k/{i}"), "value": i})))
            .chain([mutation("c1", 4, "throwString", json!({})), mutation("c1", 5, "remove", json!({"key": "k/2"}))])
            .collect();
        push_ok(&e, &me, "g1", mutations).await;
        let view = pull_ok(&e, &me, "g1", Value::Null).await;
        assert_eq!(view.last_mutation_id_changes["c1"], 5);
        let keys = puts(&view.patch);
        assert_eq!(keys, ["k/1", "k/3", "removed/k/2"]);
    }
}

#[tokio::test]
async fn the_todo_apps_javascript_rules_hold_on_the_server() {
    let source = include_str!("../../apps/todo/client/mutators.js");
    let js = JsApp::from_source("apps/todo/client/mutators.js", source).expect("loads");
    assert!(js.has_space_policy() && js.has_write_rule());
    let server = TestServer::new(App::new(Mutators::new()).js(js));
    let space = "list-groceries";
    let mallory = server.client("mallory", space);
    let spam = json!({"id": "1", "text": "spam"});
    let refused = rejected(mallory.mutate("createTodo", spam).await.unwrap());
    assert!(refused.contains("unclaimed"), "{refused}");
    let alice = server.client("alice", space);
    alice
        .mutate("createList", json!({"name": "Groceries"}))
        .await
        .unwrap();
    alice
        .mutate("createTodo", json!({"id": "1", "text": "apples"}))
        .await
        .unwrap();
    // Claimed: a stranger is refused by the space policy before anything runs.
    let stranger = mallory
        .mutate("createTodo", json!({"id": "2", "text": "spam"}))
        .await;
    assert!(
        matches!(stranger, Err(EngineError::Forbidden(_))),
        "{stranger:?}"
    );
    let todos = server.entries(space, "todo/").await;
    assert_eq!(todos.len(), 1, "{todos:?}");
}

/// `isEmpty`, and `keys()` of a scan with a limit, read only what they answer: one key, and
/// the keys alone (the scan's `values()` then reads the entries).
#[tokio::test]
async fn js_is_empty_and_keys_read_only_what_they_need() {
    let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let e = Engine::new(counting.clone(), probe_app(), EngineConfig::default());
    let me = caller("alice", "room");
    let puts = (0..20)
        .map(|i| {
            mutation(
                "c1",
                i + 1,
                "put",
                json!({"key": format!("p/{i:02}"), "value": i}),
            )
        })
        .collect();
    push_ok(&e, &me, "g1", puts).await;
    counting.take_entities_read();
    push_ok(
        &e,
        &me,
        "g1",
        vec![mutation("c1", 21, "firstTwo", json!({"prefix": "p/"}))],
    )
    .await;
    // Two keys, their two entries, and one key for isEmpty.
    assert_eq!(counting.take_entities_read(), 2 + 2 + 1);
    let view = pull_ok(&e, &me, "g2", Value::Null).await;
    let report = view.patch.iter().find_map(|op| match op {
        replicache_dynamodb::protocol::PatchOp::Put { key, value } if key == "firstTwo" => {
            Some(value.clone())
        }
        _ => None,
    });
    assert_eq!(
        report,
        Some(json!({"keys": ["p/00", "p/01"], "values": [0, 1], "empty": false}))
    );
}
