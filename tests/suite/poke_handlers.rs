//! The poke function in-process, fed real API Gateway events: the ticket route (HTTP API,
//! payload 2.0, behind the JWT authorizer) and the WebSocket API's `$connect` and
//! `$disconnect`, with valid, expired, forged, other-space, other-user and missing tickets.

use std::sync::Arc;

use integration_tests::client::listeners;
use integration_tests::counting::CountingStore;
use lambda_http::Body;
use replicache_dynamodb::engine::{Engine, EngineConfig};
use replicache_dynamodb::http_api::{Api, AuthMode};
use replicache_dynamodb::lambda;
use replicache_dynamodb::store::memory::MemoryStore;
use replicache_dynamodb::ticket::TicketKey;
use replicache_dynamodb::Operation;
use serde_json::{json, Value};

struct Setup {
    api: Api,
    store: Arc<MemoryStore>,
    key: TicketKey,
}

/// The todo app (private spaces, a space policy) with a ticket key.
fn setup() -> Setup {
    let store = Arc::new(MemoryStore::new());
    let key = TicketKey::random();
    let engine = Engine::new(store.clone(), todo::app(), EngineConfig::default());
    let api = Api::new(engine, AuthMode::Jwt, 5 * 1024 * 1024).with_tickets(key.clone());
    Setup { api, store, key }
}

fn event(name: &str) -> Value {
    let path = format!("{}/events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("event fixture")).expect("JSON")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn invoke(api: &Api, event: Value) -> (u16, String) {
    let request = lambda_http::request::from_str(&event.to_string()).expect("a valid event");
    let response = lambda::handle(api, Operation::Poke, request).await;
    let status = response.status().as_u16();
    let body = match response.into_body() {
        Body::Text(t) => t,
        Body::Binary(b) => String::from_utf8(b).unwrap(),
        _ => String::new(),
    };
    (status, body)
}

/// The ticket route as `sub` (none: no JWT claims) for `space`.
fn ticket_request(sub: Option<&str>, space: &str) -> Value {
    let mut e = event("http-api-pull");
    e["routeKey"] = json!("POST /api/replicache/poke-ticket");
    e["rawPath"] = json!("/api/replicache/poke-ticket");
    e["requestContext"]["http"]["path"] = json!("/api/replicache/poke-ticket");
    e["requestContext"]["routeKey"] = json!("POST /api/replicache/poke-ticket");
    e["rawQueryString"] = json!(format!("spaceID={space}"));
    e["queryStringParameters"] = json!({"spaceID": space});
    e["body"] = json!("");
    match sub {
        Some(sub) => e["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = json!(sub),
        None => e["requestContext"]["authorizer"] = Value::Null,
    }
    e
}

/// `$connect` of connection `id` to `space`, with `ticket` if any.
fn connect(id: &str, space: &str, ticket: Option<&str>) -> Value {
    let mut e = event("ws-connect");
    e["requestContext"]["connectionId"] = json!(id);
    let mut query = json!({"spaceID": space});
    if let Some(t) = ticket {
        query["ticket"] = json!(t);
    }
    e["multiValueQueryStringParameters"] = json!(query
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), json!([v])))
        .collect::<serde_json::Map<_, _>>());
    e["queryStringParameters"] = query;
    e
}

#[tokio::test]
async fn tickets_are_issued_to_users_the_space_policy_lets_listen() {
    let s = setup();
    let issued = now();
    let (status, body) = invoke(&s.api, ticket_request(Some("alice"), "private-alice")).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let ticket = s
        .key
        .verify(body["ticket"].as_str().unwrap(), now())
        .unwrap();
    assert_eq!(
        (ticket.user.as_str(), ticket.space.as_str()),
        ("alice", "private-alice")
    );
    // A minute from its issue (the clock may have ticked during the call).
    let expires = body["expiresAt"].as_u64().unwrap();
    assert!((issued + 60..=now() + 60).contains(&expires), "{body}");

    let (status, body) = invoke(&s.api, ticket_request(Some("bob"), "private-alice")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "Forbidden"
    );
    let (status, _) = invoke(&s.api, ticket_request(None, "private-alice")).await;
    assert_eq!(status, 401, "no verified JWT");
}

#[tokio::test]
async fn connect_takes_only_a_valid_ticket_for_its_space_and_user() {
    let s = setup();
    let space = "private-alice";
    let valid = s.key.issue("alice", space, now() + 60);
    let refused = [
        (None, 401, "missing"),
        (Some(s.key.issue("alice", space, now() - 1)), 401, "expired"),
        (
            Some(TicketKey::random().issue("alice", space, now() + 60)),
            401,
            "forged",
        ),
        (
            Some(s.key.issue("alice", "private-bob", now() + 60)),
            401,
            "another space",
        ),
        // Signed, but for a user the space policy refuses.
        (
            Some(s.key.issue("bob", space, now() + 60)),
            403,
            "another user",
        ),
        (Some("garbage".to_owned()), 401, "not a ticket"),
    ];
    for (i, (ticket, expected, what)) in refused.into_iter().enumerate() {
        let (status, body) = invoke(
            &s.api,
            connect(&format!("bad-{i}"), space, ticket.as_deref()),
        )
        .await;
        assert_eq!(status, expected, "{what}: {body}");
    }
    assert!(
        listeners(s.store.as_ref(), space).await.is_empty(),
        "nothing recorded for refusals"
    );

    let (status, body) = invoke(&s.api, connect("conn-A", space, Some(&valid))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(listeners(s.store.as_ref(), space).await, ["conn-A"]);

    let mut disconnect = event("ws-disconnect");
    disconnect["requestContext"]["connectionId"] = json!("conn-A");
    let (status, _) = invoke(&s.api, disconnect.clone()).await;
    assert_eq!(status, 200);
    assert!(listeners(s.store.as_ref(), space).await.is_empty());
    // A second disconnect (API Gateway retries) is harmless.
    assert_eq!(invoke(&s.api, disconnect).await.0, 200);
}

#[tokio::test]
async fn the_event_fixtures_parse_as_websocket_events() {
    let s = setup();
    // The fixture as it is: its ticket placeholder is no ticket.
    let (status, _) = invoke(&s.api, event("ws-connect")).await;
    assert_eq!(status, 401);
    assert_eq!(invoke(&s.api, event("ws-disconnect")).await.0, 200);
}

crate::on_both_stores! {
    async fn a_ticket_opens_one_connection(backend) {
        let store = Arc::new(CountingStore::new(backend.store().await));
        let key = TicketKey::random();
        let engine = Engine::new(store.clone(), todo::app(), EngineConfig::default());
        let api = Api::new(engine, AuthMode::Jwt, 5 * 1024 * 1024).with_tickets(key.clone());
        let space = "private-alice";
        let ticket = key.issue("alice", space, now() + 60);
        let (status, body) = invoke(&api, connect("conn-A", space, Some(&ticket))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(store.take(), 2, "spending the ticket costs no request more");
        for id in ["conn-B", "conn-A"] {
            let (status, body) = invoke(&api, connect(id, space, Some(&ticket))).await;
            assert_eq!(status, 401, "{id}: {body}");
            assert!(body.contains("already"), "{body}");
        }
        assert_eq!(listeners(store.as_ref(), space).await, ["conn-A"]);
        // Another ticket opens another connection.
        let fresh = key.issue("alice", space, now() + 60);
        let (status, body) = invoke(&api, connect("conn-C", space, Some(&fresh))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(listeners(store.as_ref(), space).await, ["conn-A", "conn-C"]);

        // Two connects racing with one ticket: one opens.
        let racing = key.issue("alice", space, now() + 60);
        let (a, b) = tokio::join!(
            invoke(&api, connect("race-1", space, Some(&racing))),
            invoke(&api, connect("race-2", space, Some(&racing))),
        );
        let mut statuses = [a.0, b.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 401], "{a:?} {b:?}");
        assert_eq!(listeners(store.as_ref(), space).await.len(), 3);
    }
}

crate::on_both_stores! {
    async fn one_user_cannot_take_a_spaces_poke_slots(backend) {
        use std::sync::atomic::{AtomicU64, Ordering};
        use integration_tests::client::caller;
        use replicache_dynamodb::engine::Clock;
        let store = backend.store().await;
        let clock = Arc::new(AtomicU64::new(1_800_000_000));
        let read = clock.clone();
        let config = EngineConfig {
            max_listeners: 10,
            max_listeners_per_user: 3,
            clock: Clock::new(move || read.load(Ordering::SeqCst)),
            ..EngineConfig::default()
        };
        let e = Engine::new(store.clone(), integration_tests::app::app(), config);
        let (mallory, alice) = (caller("mallory", "room"), caller("alice", "room"));
        for i in 0..25 {
            clock.fetch_add(1, Ordering::SeqCst);
            e.connect(&mallory, &format!("m{i:02}")).await.unwrap();
        }
        // Mallory's newest three remain; the others made way.
        assert_eq!(listeners(store.as_ref(), "room").await, ["m22", "m23", "m24"]);
        for i in 0..3 {
            e.connect(&alice, &format!("a{i}")).await.unwrap();
        }
        e.connect(&mallory, "m25").await.unwrap();
        assert_eq!(
            listeners(store.as_ref(), "room").await,
            ["a0", "a1", "a2", "m23", "m24", "m25"],
            "alice keeps hers"
        );
    }
}
