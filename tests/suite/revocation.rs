//! Revocation reaches pokes: a member removed from a shared todo list while connected hears no
//! poke after that commit and their connection is closed (`DeleteConnection` through the real
//! SDK against the fake management API), the others keep hearing them, and a poke of a space
//! whose policy's keys were not written costs no request more than it did before.

use std::sync::Arc;
use std::time::Duration;

use integration_tests::client::{caller, listeners, mutation};
use integration_tests::counting::CountingStore;
use integration_tests::fake_management::FakeManagement;
use integration_tests::recording::RecordingPoker;
use replicache_dynamodb::engine::{Caller, Engine, EngineConfig, EngineError};
use replicache_dynamodb::http_api::{Api, AuthMode};
use replicache_dynamodb::lambda::{self, ApiGatewayPoker};
use replicache_dynamodb::protocol::{Mutation, Reply};
use replicache_dynamodb::store::Store;
use replicache_dynamodb::ticket::TicketKey;
use replicache_dynamodb::Operation;
use serde_json::{json, Value};

/// Requests of a `createTodo` push to a shared list with three connections, poke included,
/// before revocation reached pokes (measured on the parent commit, 1edbe59, with this test's
/// first half: the same on both stores).
const CREATE_TODO_REQUESTS: usize = 7;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `$connect` of connection `id` to `space` with `ticket`, as API Gateway sends it.
fn connect_event(id: &str, space: &str, ticket: &str) -> Value {
    let path = format!("{}/events/ws-connect.json", env!("CARGO_MANIFEST_DIR"));
    let mut e: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    e["requestContext"]["connectionId"] = json!(id);
    e["queryStringParameters"] = json!({"spaceID": space, "ticket": ticket});
    e["multiValueQueryStringParameters"] = json!({"spaceID": [space], "ticket": [ticket]});
    e
}

/// Opens connection `id` of `user` to `space` through the poke function's `$connect`.
async fn connect(poke: &Api, key: &TicketKey, id: &str, user: &str, space: &str) -> u16 {
    let ticket = key.issue(user, space, now() + 60);
    let event = connect_event(id, space, &ticket).to_string();
    let request = lambda_http::request::from_str(&event).expect("a valid event");
    let response = lambda::handle(poke, Operation::Poke, request).await;
    response.status().as_u16()
}

/// A push of `mutations` by `who` that must succeed.
async fn push(engine: &Engine, who: &Caller, mutations: Vec<Mutation>) {
    let group = format!("g-{}-{}", who.user, who.space);
    let req = integration_tests::client::push_request(&group, mutations);
    let reply = engine.push_outcome(who, &req).await.expect("push");
    let Reply::Ok(outcome) = reply else {
        panic!("push answered {reply:?}")
    };
    assert!(outcome.rejected.is_empty(), "{:?}", outcome.rejected);
}

crate::on_both_stores! {
    async fn a_member_removed_while_connected_hears_no_more_pokes(backend) {
        let store = Arc::new(CountingStore::new(backend.store().await));
        let fake = FakeManagement::start().await;
        let poker = ApiGatewayPoker::new(fake.client(), Duration::from_secs(5), 4);
        let engine = Engine::new(store.clone(), todo::app(), EngineConfig::default())
            .with_poker(Arc::new(poker));
        let key = TicketKey::random();
        let poke = Api::new(engine.clone(), AuthMode::Jwt, 1 << 20).with_tickets(key.clone());
        let space = "list-team";
        let alice = caller("alice", space);
        let client = "alice-client";
        push(&engine, &alice, vec![
            mutation(client, 1, "createList", json!({"name": "team"})),
            mutation(client, 2, "share", json!({"user": "bob"})),
            mutation(client, 3, "share", json!({"user": "carol"})),
        ]).await;
        for (id, user) in [("a", "alice"), ("b", "bob"), ("c", "carol")] {
            assert_eq!(connect(&poke, &key, id, user, space).await, 200, "{user}");
            fake.open(id);
        }
        let todo = |n: u64| mutation(client, n, "createTodo", json!({"id": format!("t{n}"), "text": "x"}));

        // Nothing about access changed: everyone is poked, at no request more than before.
        store.take();
        push(&engine, &alice, vec![todo(4)]).await;
        assert_eq!(store.take(), CREATE_TODO_REQUESTS, "a poke costs no request more");
        assert_eq!(poked(&fake), ["a", "b", "c"]);

        // Alice removes bob: that commit's poke reaches alice and carol only, and closes bob's.
        push(&engine, &alice, vec![mutation(client, 5, "unshare", json!({"user": "bob"}))]).await;
        let revoking = store.take();
        assert_eq!(poked(&fake), ["a", "c"], "bob hears no poke of his removal");
        assert_eq!(fake.take_closed(), ["b"], "bob's connection is closed");
        assert_eq!(listeners(store.as_ref(), space).await, ["a", "c"]);
        // The same removal in a list nobody listens to: what it costs without pokes.
        let quiet = caller("alice", "list-quiet");
        push(&engine, &quiet, vec![
            mutation("qc", 1, "createList", json!({"name": "quiet"})),
            mutation("qc", 2, "share", json!({"user": "bob"})),
            mutation("qc", 3, "share", json!({"user": "carol"})),
        ]).await;
        store.take();
        push(&engine, &quiet, vec![mutation("qc", 4, "unshare", json!({"user": "bob"}))]).await;
        let unpoked = store.take();
        eprintln!("revocation: removing a member took {revoking} requests, {unpoked} without connections");
        // The poke's re-check: the three connections' records (one read), the policy for each
        // of their three users (one read each), and the listeners' read-modify-write (two).
        assert_eq!(revoking - unpoked, 1 + 3 + 2, "the cost of a revocation");

        // Later commits: still no poke for bob, and again no request more than before.
        push(&engine, &alice, vec![todo(6)]).await;
        assert_eq!(store.take(), CREATE_TODO_REQUESTS, "the marks are gone: no cost more");
        assert_eq!(poked(&fake), ["a", "c"], "carol, whose access did not change, still hears");

        // Bob cannot come back.
        assert_eq!(connect(&poke, &key, "b2", "bob", space).await, 403);
    }
}

/// The connections posted to since the last call, sorted.
fn poked(fake: &FakeManagement) -> Vec<String> {
    let mut ids: Vec<String> = fake.take().into_iter().map(|(id, _, _)| id).collect();
    ids.sort();
    ids
}

crate::on_both_stores! {
    async fn a_connection_races_with_its_removal(backend) {
        // The connection's policy read `members` before the removal committed, its write
        // came after: the write is conditioned on that read, so it fails, the policy runs
        // again and refuses.
        let store: Arc<dyn Store> = backend.store().await;
        let poker = Arc::new(RecordingPoker::default());
        let engine = Engine::new(store.clone(), todo::app(), EngineConfig::default())
            .with_poker(poker.clone());
        let space = "list-race";
        let alice = caller("alice", space);
        push(&engine, &alice, vec![
            mutation("ac", 1, "createList", json!({"name": "race"})),
            mutation("ac", 2, "share", json!({"user": "bob"})),
        ]).await;
        let hooked = Arc::new(integration_tests::hooked::BeforeWrite::new(store.clone()));
        let remover = engine.clone();
        let removal = alice.clone();
        hooked.before_first_write(Box::pin(async move {
            push(&remover, &removal, vec![mutation("ac", 3, "unshare", json!({"user": "bob"}))]).await;
        }));
        let racing = Engine::new(hooked.clone(), todo::app(), EngineConfig::default());
        let refused = racing.connect(&caller("bob", space), "b").await;
        assert!(hooked.fired(), "the removal ran between bob's policy and his write");
        assert!(
            matches!(refused, Err(EngineError::Forbidden(_))),
            "{refused:?}"
        );
        assert!(listeners(store.as_ref(), space).await.is_empty());
        poker.take();
        push(&engine, &alice, vec![mutation("ac", 4, "createTodo", json!({"id": "t", "text": "x"}))]).await;
        assert_eq!(poker.take(), [(space.to_owned(), vec![])], "nobody to poke");
    }
}

crate::on_both_stores! {
    async fn a_connection_whose_policy_fails_is_not_poked_until_it_admits_again(backend) {
        // The test app with a policy of members, and an outage switch it reads: while the
        // policy fails, the connections in doubt are neither poked nor closed.
        let app = integration_tests::app::app().space_policy(|request| async move {
            if request.get::<bool>("outage").await?.unwrap_or(false) {
                return Err(replicache_dynamodb::store::StoreError::Unavailable("down".into()).into());
            }
            let members = request.get::<Vec<String>>("members").await?.unwrap_or_default();
            Ok(replicache_dynamodb::Access::from(members.iter().any(|m| m == request.user())))
        });
        let store = backend.store().await;
        let poker = Arc::new(RecordingPoker::default());
        let engine = Engine::new(store.clone(), app, EngineConfig::default())
            .with_poker(poker.clone());
        let space = "room";
        let put = |id: u64, key: &str, value: Value| {
            mutation("c", id, "put", json!({"key": key, "value": value}))
        };
        let alice = caller("alice", space);
        // Nobody is a member yet: the policy refuses alice's push, so she starts the room
        // through an engine without a policy.
        let open = Engine::new(store.clone(), integration_tests::app::app(), EngineConfig::default());
        push(&open, &alice, vec![put(1, "members", json!(["alice", "bob"]))]).await;
        engine.connect(&alice, "a").await.unwrap();
        engine.connect(&caller("bob", space), "b").await.unwrap();
        poker.take();

        push(&engine, &alice, vec![put(2, "outage", json!(true))]).await;
        assert_eq!(poker.take(), [(space.to_owned(), vec![])], "nobody poked while in doubt");
        assert!(poker.take_closed().is_empty(), "nor closed");
        assert_eq!(listeners(store.as_ref(), space).await, ["a", "b"]);

        push(&open, &alice, vec![put(3, "outage", json!(false))]).await;
        push(&engine, &alice, vec![put(4, "x", json!(1))]).await;
        assert_eq!(
            poker.take(),
            [(space.to_owned(), vec!["a".to_owned(), "b".to_owned()])],
            "admitted again, both are poked"
        );
    }
}
