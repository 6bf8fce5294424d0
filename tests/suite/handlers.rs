//! The Lambda handlers in-process, fed real API Gateway HTTP API (payload 2.0) events.

use std::sync::Arc;

use base64::Engine as _;
use integration_tests::app;
use lambda_http::Body;
use replicache_dynamodb::engine::{Engine, EngineConfig};
use replicache_dynamodb::http_api::{Api, AuthMode};
use replicache_dynamodb::lambda;
use replicache_dynamodb::store::memory::MemoryStore;
use replicache_dynamodb::Operation;
use serde_json::{json, Value};

fn api() -> Api {
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        app::app(),
        EngineConfig::default(),
    );
    Api::new(engine, AuthMode::Jwt, 5 * 1024 * 1024)
}

fn event(name: &str) -> Value {
    let path = format!("{}/events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("event fixture")).expect("JSON")
}

/// A push or pull event with `body`, as API Gateway sends it (base64 for binary bodies).
fn with_body(mut e: Value, body: &str, base64: bool) -> Value {
    if base64 {
        e["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
        e["isBase64Encoded"] = json!(true);
    } else {
        e["body"] = json!(body);
    }
    e["headers"]["content-length"] = json!(body.len().to_string());
    e
}

async fn invoke(api: &Api, op: Operation, event: Value) -> (u16, Value, http::HeaderMap) {
    let request =
        lambda_http::request::from_str(&event.to_string()).expect("a valid HTTP API event");
    let response = lambda::handle(api, op, request).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = match response.into_body() {
        Body::Text(t) if !t.is_empty() => serde_json::from_str(&t).expect("JSON"),
        Body::Empty | Body::Text(_) => Value::Null,
        Body::Binary(b) => serde_json::from_slice(&b).expect("JSON"),
        _ => Value::Null,
    };
    (status, body, headers)
}

fn push_json(id: u64) -> String {
    json!({
        "pushVersion": 1, "schemaVersion": "", "profileID": "p1", "clientGroupID": "g1",
        "mutations": [{"clientID": "c1", "id": id, "name": "createMessage",
            "args": {"id": format!("m{id}"), "from": "Alice", "content": "hi", "order": id}, "timestamp": 12.5}]
    })
    .to_string()
}

fn pull_json(cookie: Value) -> String {
    json!({"pullVersion": 1, "schemaVersion": "", "profileID": "p1", "clientGroupID": "g1", "cookie": cookie}).to_string()
}

#[tokio::test]
async fn push_then_pull_through_api_gateway_events() {
    let api = api();
    let (status, body, headers) = invoke(
        &api,
        Operation::Push,
        with_body(event("http-api-push"), &push_json(1), false),
    )
    .await;
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(headers["content-type"], "application/json");
    // API Gateway base64-encodes bodies it considers binary; both forms work.
    let (status, _, _) = invoke(
        &api,
        Operation::Push,
        with_body(event("http-api-push"), &push_json(2), true),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body, _) = invoke(
        &api,
        Operation::Pull,
        with_body(event("http-api-pull"), &pull_json(Value::Null), false),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["lastMutationIDChanges"], json!({"c1": 2}));
    assert_eq!(body["patch"][0], json!({"op": "clear"}));
    assert_eq!(body["patch"][1]["key"], "message/m1");
    assert_eq!(
        body["patch"][2]["value"],
        json!({"from": "Alice", "content": "hi", "order": 2})
    );
}

#[tokio::test]
async fn the_space_comes_from_the_query_string() {
    let api = api();
    invoke(
        &api,
        Operation::Push,
        with_body(event("http-api-push"), &push_json(1), false),
    )
    .await;
    let mut other = with_body(event("http-api-pull"), &pull_json(Value::Null), false);
    other["rawQueryString"] = json!("spaceID=room-2");
    other["queryStringParameters"] = json!({"spaceID": "room-2"});
    let (status, body, _) = invoke(&api, Operation::Pull, other).await;
    assert_eq!(status, 401, "g1 belongs to room-1: {body}");
}

/// CORS is API Gateway's (the template's `AllowedOrigins`): a function that added its own
/// headers would contradict it, so it adds none, not even to a preflight that reaches it.
#[tokio::test]
async fn the_functions_send_no_cors_headers() {
    let mut e = event("http-api-pull");
    e["requestContext"]["http"]["method"] = json!("OPTIONS");
    e["routeKey"] = json!("OPTIONS /api/replicache/pull");
    e["requestContext"]["authorizer"] = Value::Null;
    e["headers"]["origin"] = json!("https://elsewhere.example");
    e["headers"]["access-control-request-method"] = json!("POST");
    let (status, _, headers) = invoke(&api(), Operation::Pull, e).await;
    assert_eq!(status, 204);
    let (_, _, answered) = invoke(
        &api(),
        Operation::Push,
        with_body(event("http-api-push"), &push_json(1), false),
    )
    .await;
    for h in [&headers, &answered] {
        let cors: Vec<_> = h
            .keys()
            .filter(|k| k.as_str().starts_with("access-control-"))
            .collect();
        assert!(cors.is_empty(), "CORS headers sent: {cors:?}");
    }
}

#[tokio::test]
async fn a_bad_body_is_400() {
    let (status, body, _) = invoke(
        &api(),
        Operation::Push,
        with_body(event("http-api-push"), "{not json", false),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "InvalidJSON");
}

#[tokio::test]
async fn a_request_without_jwt_claims_is_401() {
    let mut e = with_body(event("http-api-push"), &push_json(1), false);
    e["requestContext"]
        .as_object_mut()
        .expect("context")
        .remove("authorizer");
    let (status, body, _) = invoke(&api(), Operation::Push, e).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "Unauthorized");
}

#[tokio::test]
async fn the_jwt_subject_owns_the_client_group() {
    let api = api();
    invoke(
        &api,
        Operation::Push,
        with_body(event("http-api-push"), &push_json(1), false),
    )
    .await;
    let mut e = with_body(event("http-api-push"), &push_json(2), false);
    e["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = json!("user-mallory");
    let (status, _, _) = invoke(&api, Operation::Push, e).await;
    assert_eq!(status, 401);
}

/// A large pull answered to a client that accepts gzip goes out compressed (binary, so
/// base64-encoded by the runtime), and decompresses to the same JSON.
#[tokio::test]
async fn large_pulls_are_gzipped_when_the_client_accepts_it() {
    let api = api();
    let mutations: Vec<Value> = (1..=40)
        .map(|i| json!({"clientID": "c1", "id": i, "name": "createMessage",
            "args": {"id": format!("m{i}"), "from": "Alice", "content": "hello ".repeat(20), "order": i}, "timestamp": 1}))
        .collect();
    let push = json!({"pushVersion": 1, "schemaVersion": "", "profileID": "p1", "clientGroupID": "g1", "mutations": mutations});
    let (status, _, _) = invoke(
        &api,
        Operation::Push,
        with_body(event("http-api-push"), &push.to_string(), false),
    )
    .await;
    assert_eq!(status, 200);

    let pull = |gzip: bool| {
        let mut e = with_body(event("http-api-pull"), &pull_json(Value::Null), false);
        if gzip {
            e["headers"]["accept-encoding"] = json!("gzip, deflate, br");
        }
        e
    };
    let plain = lambda::handle(
        &api,
        Operation::Pull,
        lambda_http::request::from_str(&pull(false).to_string()).unwrap(),
    )
    .await;
    assert!(plain.headers().get("content-encoding").is_none());
    let Body::Text(plain_text) = plain.into_body() else {
        panic!("a text body")
    };

    let zipped = lambda::handle(
        &api,
        Operation::Pull,
        lambda_http::request::from_str(&pull(true).to_string()).unwrap(),
    )
    .await;
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    let Body::Binary(bytes) = zipped.into_body() else {
        panic!("a binary body")
    };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
        .unwrap();
    let (a, b): (Value, Value) = (
        serde_json::from_str(&plain_text).unwrap(),
        serde_json::from_str(&text).unwrap(),
    );
    assert_eq!(a["patch"], b["patch"]);
    eprintln!(
        "pull of 40 messages: {} bytes raw, {} gzipped",
        plain_text.len(),
        bytes.len()
    );
    assert!(
        bytes.len() * 4 < plain_text.len(),
        "{} vs {}",
        bytes.len(),
        plain_text.len()
    );
}

crate::on_both_stores! {
    async fn an_idle_client_group_is_not_taken_over_through_the_functions(backend) {
        use std::sync::atomic::{AtomicU64, Ordering};
        const DAY: u64 = 24 * 60 * 60;
        let now = Arc::new(AtomicU64::new(1_800_000_000));
        let read = now.clone();
        let config = EngineConfig {
            clock: replicache_dynamodb::engine::Clock::new(move || read.load(Ordering::SeqCst)),
            ..EngineConfig::default()
        };
        let engine = Engine::new(backend.store().await, app::app(), config);
        let api = Api::new(engine, AuthMode::Jwt, 5 * 1024 * 1024);
        let as_user = |user: &str, op: &str, body: String| {
            let mut e = with_body(event(op), &body, false);
            e["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = json!(user);
            e
        };
        let push = |user: &str, id: u64| as_user(user, "http-api-push", push_json(id));
        let pull = |user: &str| as_user(user, "http-api-pull", pull_json(Value::Null));
        let owner = event("http-api-push")["requestContext"]["authorizer"]["jwt"]["claims"]["sub"]
            .as_str()
            .expect("the fixture's user")
            .to_owned();

        assert_eq!(invoke(&api, Operation::Push, push(&owner, 1)).await.0, 200);
        now.fetch_add(89 * DAY, Ordering::SeqCst);
        assert_eq!(invoke(&api, Operation::Push, push(&owner, 2)).await.0, 200);
        now.fetch_add(91 * DAY, Ordering::SeqCst);

        let (status, body, _) = invoke(&api, Operation::Pull, pull("user-mallory")).await;
        assert_eq!(status, 401, "{body}");
        let (status, body, _) = invoke(&api, Operation::Push, push("user-mallory", 3)).await;
        assert_eq!(status, 401, "{body}");
        let (status, body, _) = invoke(&api, Operation::Push, push(&owner, 3)).await;
        assert_eq!((status, body), (200, json!({})));
        let (status, body, _) = invoke(&api, Operation::Pull, pull(&owner)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["lastMutationIDChanges"], json!({"c1": 3}));
    }
}
