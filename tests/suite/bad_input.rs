//! Bad input through the HTTP layer: a clear error with the right status, and nothing lost.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use integration_tests::app;
use integration_tests::counting::CountingStore;
use replicache_dynamodb::engine::{Engine, EngineConfig};
use replicache_dynamodb::http_api::{Api, ApiRequest, AuthMode};
use replicache_dynamodb::store::memory::MemoryStore;
use replicache_dynamodb::store::{
    Address, EntityQuery, Limits, Page, PageToken, Record, Store, StoreError, Version, Write,
};
use replicache_dynamodb::Operation;
use serde_json::{json, Value};

fn api_with(config: EngineConfig, max_body_bytes: usize) -> Api {
    let engine = Engine::new(Arc::new(MemoryStore::new()), app::app(), config);
    Api::new(engine, AuthMode::Header, max_body_bytes)
}

fn api() -> Api {
    api_with(EngineConfig::default(), 5 * 1024 * 1024)
}

async fn call(
    api: &Api,
    op: Operation,
    user: &str,
    body: impl Into<Vec<u8>>,
) -> (StatusCode, Value) {
    call_with(api, op, &Method::POST, Some("spaceID=room"), user, body).await
}

async fn call_with(
    api: &Api,
    op: Operation,
    method: &Method,
    query: Option<&str>,
    user: &str,
    body: impl Into<Vec<u8>>,
) -> (StatusCode, Value) {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_str(user).unwrap());
    let body = body.into();
    let response = api
        .handle(
            op,
            ApiRequest {
                method,
                query,
                headers: &headers,
                body: &body,
                jwt_sub: None,
                request_id: None,
            },
        )
        .await;
    let status = response.status();
    let text = response.into_body();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON body")
    };
    (status, value)
}

fn push_body(group: &str, mutations: Value) -> String {
    json!({"pushVersion": 1, "schemaVersion": "v1", "profileID": "p", "clientGroupID": group, "mutations": mutations}).to_string()
}

fn pull_body(group: &str, cookie: Value) -> String {
    json!({"pullVersion": 1, "schemaVersion": "v1", "profileID": "p", "clientGroupID": group, "cookie": cookie}).to_string()
}

fn m(client: &str, id: u64, name: &str, args: Value) -> Value {
    json!({"clientID": client, "id": id, "name": name, "args": args, "timestamp": 1.5})
}

/// The group's full view: (lmid of `client`, keys).
async fn view(api: &Api, group: &str, client: &str) -> (Option<u64>, Vec<String>) {
    let (status, r) = call(api, Operation::Pull, "alice", pull_body(group, Value::Null)).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let keys = r["patch"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|op| op["key"].as_str().map(str::to_owned))
        .collect();
    (r["lastMutationIDChanges"][client].as_u64(), keys)
}

fn assert_error(status: StatusCode, body: &Value, want_status: StatusCode, want_error: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], want_error, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a message says what was wrong: {body}"
    );
}

#[tokio::test]
async fn malformed_json_is_400() {
    let (status, body) = call(&api(), Operation::Push, "alice", "{\"pushVersion\": 1,").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "InvalidJSON");
}

#[tokio::test]
async fn wrong_field_types_are_400() {
    let body = json!({"pushVersion": "1", "clientGroupID": "g", "mutations": []}).to_string();
    let (status, r) = call(&api(), Operation::Push, "alice", body).await;
    assert_error(status, &r, StatusCode::BAD_REQUEST, "InvalidRequest");
    let body = json!({"pullVersion": 1, "clientGroupID": 7, "cookie": null}).to_string();
    let (status, r) = call(&api(), Operation::Pull, "alice", body).await;
    assert_error(status, &r, StatusCode::BAD_REQUEST, "InvalidRequest");
}

#[tokio::test]
async fn missing_fields_are_400() {
    let body = json!({"pushVersion": 1, "mutations": []}).to_string();
    let (status, r) = call(&api(), Operation::Push, "alice", body).await;
    assert_error(status, &r, StatusCode::BAD_REQUEST, "InvalidRequest");
    assert!(
        r["message"].as_str().unwrap().contains("clientGroupID"),
        "{r}"
    );
}

#[tokio::test]
async fn an_oversized_body_is_413_and_nothing_is_applied() {
    let api = api_with(EngineConfig::default(), 1024);
    let body = push_body(
        "g1",
        json!([m(
            "c1",
            1,
            "put",
            json!({"key": "k", "value": "x".repeat(2000)})
        )]),
    );
    let (status, r) = call(&api, Operation::Push, "alice", body).await;
    assert_error(status, &r, StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge");
    assert_eq!(view(&api, "g1", "c1").await, (None, vec![]));
}

#[tokio::test]
async fn wrong_method_is_405_and_preflight_is_answered() {
    let api = api();
    let (status, r) = call_with(&api, Operation::Pull, &Method::GET, None, "alice", "").await;
    assert_error(
        status,
        &r,
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
    );
    let (status, _) = call_with(&api, Operation::Pull, &Method::OPTIONS, None, "", "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn an_invalid_space_id_is_400() {
    let (status, r) = call_with(
        &api(),
        Operation::Pull,
        &Method::POST,
        Some("spaceID="),
        "alice",
        pull_body("g", Value::Null),
    )
    .await;
    assert_error(status, &r, StatusCode::BAD_REQUEST, "InvalidRequest");
}

#[tokio::test]
async fn an_unknown_mutator_is_skipped_and_its_lmid_advances() {
    let api = api();
    let body = push_body(
        "g1",
        json!([
            m("c1", 1, "launchRockets", json!({})),
            m("c1", 2, "put", json!({"key": "after", "value": 1}))
        ]),
    );
    let (status, r) = call(&api, Operation::Push, "alice", body).await;
    assert_eq!((status, r), (StatusCode::OK, json!({})));
    assert_eq!(
        view(&api, "g1", "c1").await,
        (Some(2), vec!["after".to_owned()])
    );
}

#[tokio::test]
async fn invalid_mutator_arguments_are_skipped_and_their_lmids_advance() {
    let api = api();
    let valid = json!({"id": "ok", "from": "Jane", "content": "hi", "order": 1});
    let invalid = [
        json!({"from": "Jane", "content": "hi", "order": 1}),
        json!({"id": 5, "from": "Jane", "content": "hi", "order": 1}),
        json!({"id": "", "from": "Jane", "content": "hi", "order": 1}),
        json!({"id": "a", "from": "J".repeat(101), "content": "hi", "order": 1}),
        json!({"id": "a", "from": "Jane", "content": "c".repeat(10_001), "order": 1}),
        json!({"id": "a", "from": "Jane", "content": "hi", "order": -1}),
        json!({"id": "a", "from": "Jane", "content": "hi", "order": 1.5}),
        json!("not an object"),
    ];
    let mut mutations: Vec<Value> = invalid
        .iter()
        .enumerate()
        .map(|(i, a)| m("c1", i as u64 + 1, "createMessage", a.clone()))
        .collect();
    let n = mutations.len() as u64;
    mutations.push(m("c1", n + 1, "deleteMessage", json!({"id": ""})));
    mutations.push(m("c1", n + 2, "createMessage", valid));
    let (status, _) = call(
        &api,
        Operation::Push,
        "alice",
        push_body("g1", json!(mutations)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        view(&api, "g1", "c1").await,
        (Some(n + 2), vec!["message/ok".to_owned()])
    );
}

#[tokio::test]
async fn a_foreign_client_group_is_401() {
    let api = api();
    let (status, _) = call(
        &api,
        Operation::Push,
        "alice",
        push_body(
            "g1",
            json!([m("c1", 1, "put", json!({"key": "k", "value": 1}))]),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, r) = call(
        &api,
        Operation::Push,
        "mallory",
        push_body(
            "g1",
            json!([m("c1", 2, "put", json!({"key": "k", "value": 666}))]),
        ),
    )
    .await;
    assert_error(status, &r, StatusCode::UNAUTHORIZED, "Unauthorized");
    let (status, r) = call(
        &api,
        Operation::Pull,
        "mallory",
        pull_body("g1", Value::Null),
    )
    .await;
    assert_error(status, &r, StatusCode::UNAUTHORIZED, "Unauthorized");
    assert_eq!(
        view(&api, "g1", "c1").await,
        (Some(1), vec!["k".to_owned()])
    );
}

#[tokio::test]
async fn legacy_protocol_versions_get_version_not_supported_with_200() {
    let api = api();
    let body = json!({"pushVersion": 0, "clientGroupID": "g", "mutations": []}).to_string();
    assert_eq!(
        call(&api, Operation::Push, "alice", body).await,
        (
            StatusCode::OK,
            json!({"error": "VersionNotSupported", "versionType": "push"})
        )
    );
    let body = json!({"pullVersion": 0, "clientGroupID": "g", "cookie": null}).to_string();
    assert_eq!(
        call(&api, Operation::Pull, "alice", body).await,
        (
            StatusCode::OK,
            json!({"error": "VersionNotSupported", "versionType": "pull"})
        )
    );
}

#[tokio::test]
async fn legacy_requests_in_their_own_shape_get_version_not_supported_with_200() {
    // What replicache sends to recover mutations from a version 12 or older database.
    let api = api();
    let pull = json!({"profileID": "p", "clientID": "c", "cookie": null, "lastMutationID": 3, "pullVersion": 0, "schemaVersion": ""});
    assert_eq!(
        call(&api, Operation::Pull, "alice", pull.to_string()).await,
        (
            StatusCode::OK,
            json!({"error": "VersionNotSupported", "versionType": "pull"})
        )
    );
    let push = json!({"profileID": "p", "clientID": "c", "mutations": [{"id": 1, "name": "createMessage", "args": {}, "timestamp": 1}], "pushVersion": 0, "schemaVersion": ""});
    assert_eq!(
        call(&api, Operation::Push, "alice", push.to_string()).await,
        (
            StatusCode::OK,
            json!({"error": "VersionNotSupported", "versionType": "push"})
        )
    );
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_400() {
    let (status, r) = call(&api(), Operation::Pull, "alice", "[1, 2]").await;
    assert_error(status, &r, StatusCode::BAD_REQUEST, "InvalidRequest");
}

#[tokio::test]
async fn a_wrong_schema_version_gets_version_not_supported_with_200() {
    let api = api_with(
        EngineConfig {
            schema_version: Some("v2".into()),
            ..EngineConfig::default()
        },
        1 << 20,
    );
    let schema_error = json!({"error": "VersionNotSupported", "versionType": "schema"});
    assert_eq!(
        call(&api, Operation::Pull, "alice", pull_body("g", Value::Null)).await,
        (StatusCode::OK, schema_error.clone())
    );
    assert_eq!(
        call(&api, Operation::Push, "alice", push_body("g", json!([]))).await,
        (StatusCode::OK, schema_error)
    );
}

#[tokio::test]
async fn an_over_long_key_is_a_permanent_mutation_error() {
    let api = api();
    let body = push_body(
        "g1",
        json!([
            m(
                "c1",
                1,
                "createMessage",
                json!({"id": "i".repeat(1100), "from": "J", "content": "hi", "order": 1})
            ),
            m("c1", 2, "put", json!({"key": "k".repeat(1023), "value": 1})),
            m("c1", 3, "put", json!({"key": "k".repeat(1022), "value": 1})),
        ]),
    );
    assert_eq!(
        call(&api, Operation::Push, "alice", body).await.0,
        StatusCode::OK
    );
    assert_eq!(
        view(&api, "g1", "c1").await,
        (Some(3), vec!["k".repeat(1022)])
    );
}

#[tokio::test]
async fn an_oversized_value_is_a_permanent_mutation_error() {
    let api = api();
    let body = push_body(
        "g1",
        json!([
            m(
                "c1",
                1,
                "put",
                json!({"key": "big", "value": "x".repeat(300 * 1024)})
            ),
            m("c1", 2, "put", json!({"key": "small", "value": "x"})),
        ]),
    );
    assert_eq!(
        call(&api, Operation::Push, "alice", body).await.0,
        StatusCode::OK
    );
    assert_eq!(
        view(&api, "g1", "c1").await,
        (Some(2), vec!["small".to_owned()])
    );
}

#[tokio::test]
async fn a_pull_with_a_cookie_newer_than_the_server_resets_the_client() {
    let api = api();
    call(
        &api,
        Operation::Push,
        "alice",
        push_body(
            "g1",
            json!([m("c1", 1, "put", json!({"key": "k", "value": 1}))]),
        ),
    )
    .await;
    let future = json!({"order": 1000, "version": 1000, "epoch": "x"});
    let (status, r) = call(&api, Operation::Pull, "alice", pull_body("g1", future)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(r["patch"][0], json!({"op": "clear"}));
    assert_eq!(r["patch"][1]["key"], "k");
    assert!(r["cookie"]["order"].as_u64().unwrap() > 1000, "{r}");
}

/// A user id too long to store (the client group record holds it) is refused before anything
/// is read or written, instead of failing the commit with a 500.
#[tokio::test]
async fn a_user_id_over_512_bytes_is_401_and_nothing_is_written() {
    let api = api();
    let body = push_body(
        "g1",
        json!([m("c1", 1, "put", json!({"key": "a", "value": 1}))]),
    );
    for long in ["u".repeat(513), "u".repeat(250 * 1024)] {
        let (status, r) = call(&api, Operation::Push, &long, body.clone()).await;
        assert_error(status, &r, StatusCode::UNAUTHORIZED, "Unauthorized");
        let (status, r) = call(&api, Operation::Pull, &long, pull_body("g1", Value::Null)).await;
        assert_error(status, &r, StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let at_most = "u".repeat(512);
    let (status, r) = call(&api, Operation::Push, &at_most, body).await;
    assert_eq!((status, r), (StatusCode::OK, json!({})));
    let (status, r) = call(
        &api,
        Operation::Pull,
        &at_most,
        pull_body("g1", Value::Null),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["lastMutationIDChanges"], json!({"c1": 1}));
}

/// The API over a request-counting store of `backend`.
async fn counted_api(backend: integration_tests::Backend) -> (Arc<CountingStore>, Api) {
    let count = Arc::new(CountingStore::new(backend.store().await));
    let engine = Engine::new(count.clone(), app::app(), EngineConfig::default());
    (count, Api::new(engine, AuthMode::Header, 5 * 1024 * 1024))
}

/// A `put` of its own key by each of `clients` clients, `per_client` mutations each,
/// interleaved so that every commit writes every client.
fn puts_from(clients: usize, per_client: u64) -> Value {
    let mutations: Vec<Value> = (1..=per_client)
        .flat_map(|id| {
            (0..clients).map(move |c| {
                m(
                    &format!("c{c}"),
                    id,
                    "put",
                    json!({"key": format!("k{c}/{id}"), "value": 1}),
                )
            })
        })
        .collect();
    json!(mutations)
}

crate::on_both_stores! {
    async fn a_push_from_more_clients_than_allowed_is_400_before_any_request(backend) {
        let (count, api) = counted_api(backend).await;
        let most = EngineConfig::default().max_push_clients;
        for clients in [most + 1, 4_000] {
            let body = push_body("g1", puts_from(clients, 1));
            let (status, r) = call(&api, Operation::Push, "alice", body).await;
            assert_error(status, &r, StatusCode::BAD_REQUEST, "InvalidRequest");
            assert!(r["message"].as_str().unwrap().contains(&most.to_string()), "{r}");
            assert_eq!(count.take(), 0, "{clients} clients: nothing read or written");
        }
        // Many mutations of one client are one client.
        let (status, r) = call(&api, Operation::Push, "alice", push_body("g1", puts_from(1, 500))).await;
        assert_eq!((status, r), (StatusCode::OK, json!({})));
    }

    async fn a_push_from_the_most_clients_allowed_costs_requests_bounded_by_its_size(backend) {
        let (count, api) = counted_api(backend).await;
        let most = EngineConfig::default().max_push_clients;
        let per_client = 8;
        let body = push_body("g1", puts_from(most, per_client));
        let (status, r) = call(&api, Operation::Push, "alice", body).await;
        assert_eq!((status, r), (StatusCode::OK, json!({})));
        // A commit is one read and one write, and holds 100 actions: 4 besides clients and
        // keys (counter, group, listeners, log), then a key for each mutation and a client for
        // each client it has not written yet. The mutations cycle through all the clients, so
        // a commit of fewer mutations than clients writes a client for every one of them.
        let mutations = most * per_client as usize;
        let per_commit = (100 - 4) / 2;
        assert!(per_commit < most);
        let commits = mutations.div_ceil(per_commit);
        let requests = count.take();
        assert_eq!(requests, 2 * commits, "{requests} requests for {commits} commits");
        let (lmid, keys) = view(&api, "g1", &format!("c{}", most - 1)).await;
        assert_eq!((lmid, keys.len()), (Some(per_client), mutations));
    }
}

crate::on_both_stores! {
    async fn a_page_reads_no_value_beyond_its_cut(backend) {
        // Large commits, more than a query page of them, all within the last commits: a
        // fresh sync's first page, cut after the first, once read every one of them (values
        // and all) to check that page's visibility.
        let count = Arc::new(CountingStore::new(backend.store().await));
        let config = EngineConfig {
            pull_budget_bytes: 1_000,
            ..EngineConfig::default()
        };
        let engine = Engine::new(count.clone(), app::app(), config);
        let api = Api::new(engine, AuthMode::Header, 5 * 1024 * 1024);
        let value = "x".repeat(100_000);
        for id in 1..=30u64 {
            let put = m("c1", id, "put", json!({"key": format!("k{id:02}"), "value": value}));
            let (status, _) = call(&api, Operation::Push, "alice", push_body("g1", json!([put]))).await;
            assert_eq!(status, StatusCode::OK);
        }
        count.take();
        count.take_value_bytes();
        let (status, r) = call(&api, Operation::Pull, "alice", pull_body("g2", Value::Null)).await;
        assert_eq!(status, StatusCode::OK, "{r}");
        assert_eq!(r["patch"][1]["key"], "k01", "{r}");
        assert_eq!(r["patch"].as_array().unwrap().len(), 3, "clear, k01, the sync key");
        // The space's head, the first page of changes (a query page holds at most 1 MB), and
        // the version of what commit 1 wrote that the page does not show: client c1, written
        // again by every later commit.
        assert_eq!(count.take(), 3);
        let read = count.take_value_bytes();
        assert!(read <= 1024 * 1024 + value.len(), "{read} bytes of values read");
    }
}

/// A store whose every call fails with one error.
struct Broken(StoreError);

#[async_trait::async_trait]
impl Store for Broken {
    fn limits(&self) -> Limits {
        Limits::DYNAMODB
    }

    async fn get(&self, _: &[Address]) -> Result<Vec<Option<Record>>, StoreError> {
        Err(self.0.clone())
    }

    async fn changes(&self, _: &str, _: Version, _: Option<PageToken>) -> Result<Page, StoreError> {
        Err(self.0.clone())
    }

    async fn entities(
        &self,
        _: &str,
        _: &EntityQuery,
        _: Option<PageToken>,
    ) -> Result<Page, StoreError> {
        Err(self.0.clone())
    }

    async fn commit_logs(&self, _: &str, _: Option<PageToken>) -> Result<Page, StoreError> {
        Err(self.0.clone())
    }

    async fn write(&self, _: Vec<Write>) -> Result<(), StoreError> {
        Err(self.0.clone())
    }
}

#[tokio::test]
async fn server_errors_answer_a_request_id_and_no_internals() {
    let internals = "dispatch failure: http://127.0.0.1:8000/ table replicache-prod";
    for (error, want_status, want_error) in [
        (
            StoreError::Unavailable(internals.into()),
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
        ),
        (
            StoreError::Rejected(internals.into()),
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
        ),
    ] {
        let engine = Engine::new(Arc::new(Broken(error)), app::app(), EngineConfig::default());
        let api = Api::new(engine, AuthMode::Header, 1 << 20);
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("alice"));
        for (op, body) in [
            (Operation::Pull, pull_body("g1", Value::Null)),
            (
                Operation::Push,
                push_body(
                    "g1",
                    json!([m("c1", 1, "put", json!({"key": "k", "value": 1}))]),
                ),
            ),
        ] {
            let response = api
                .handle(
                    op,
                    ApiRequest {
                        method: &Method::POST,
                        query: Some("spaceID=room"),
                        headers: &headers,
                        body: body.as_bytes(),
                        jwt_sub: None,
                        request_id: Some("req-42"),
                    },
                )
                .await;
            let status = response.status();
            let text = response.into_body();
            let r: Value = serde_json::from_str(&text).expect("JSON body");
            assert_error(status, &r, want_status, want_error);
            assert_eq!(r["requestId"], "req-42", "{r}");
            assert!(
                !text.contains("127.0.0.1") && !text.contains("replicache-prod"),
                "{text}"
            );
        }
    }
}

#[tokio::test]
async fn the_sync_marker_key_is_not_for_mutators_to_write() {
    use replicache_dynamodb::protocol::SYNC_KEY;
    let api = api();
    let body = push_body(
        "g1",
        json!([
            m(
                "c1",
                1,
                "put",
                json!({"key": SYNC_KEY, "value": {"complete": true}})
            ),
            m("c1", 2, "put", json!({"key": "after", "value": 1}))
        ]),
    );
    let (status, r) = call(&api, Operation::Push, "alice", body).await;
    assert_eq!((status, r), (StatusCode::OK, json!({})));
    let (status, full) = call(&api, Operation::Pull, "alice", pull_body("g1", Value::Null)).await;
    assert_eq!(status, StatusCode::OK, "{full}");
    assert_eq!(
        full["patch"],
        json!([{"op": "clear"}, {"op": "put", "key": "after", "value": 1}]),
        "the put rejected"
    );
    let body = push_body("g1", json!([m("c1", 3, "del", json!({"key": SYNC_KEY}))]));
    let (status, r) = call(&api, Operation::Push, "alice", body).await;
    assert_eq!((status, r), (StatusCode::OK, json!({})));
    let (status, diff) = call(
        &api,
        Operation::Pull,
        "alice",
        pull_body("g1", full["cookie"].clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{diff}");
    assert_eq!(diff["patch"], json!([]), "the del rejected");
    assert_eq!(diff["lastMutationIDChanges"], json!({"c1": 3}));
}

#[tokio::test]
async fn an_authorization_header_that_is_not_ascii_is_401_not_anonymous() {
    let api = api();
    for bytes in [&b"\xc3\xa5lice"[..], b"\xff\xfe", b"al\x80ice"] {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_bytes(bytes).expect("obs-text is a valid header value"),
        );
        for (op, body) in [
            (Operation::Pull, pull_body("g1", Value::Null)),
            (
                Operation::Push,
                push_body(
                    "g1",
                    json!([m("c1", 1, "put", json!({"key": "k", "value": 1}))]),
                ),
            ),
            (Operation::Poke, String::new()),
        ] {
            let response = api
                .handle(
                    op,
                    ApiRequest {
                        method: &Method::POST,
                        query: Some("spaceID=room"),
                        headers: &headers,
                        body: body.as_bytes(),
                        jwt_sub: None,
                        request_id: None,
                    },
                )
                .await;
            let status = response.status();
            let r: Value = serde_json::from_str(response.body()).expect("JSON body");
            assert_error(status, &r, StatusCode::UNAUTHORIZED, "Unauthorized");
        }
    }
    // Nothing was written as `anonymous`.
    let (status, r) = call(
        &api,
        Operation::Pull,
        "anonymous",
        pull_body("g1", Value::Null),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["lastMutationIDChanges"], json!({}), "{r}");
}
