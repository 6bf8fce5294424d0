//! The functions' metrics: CloudWatch Embedded Metric Format documents with the expected
//! metric names, captured in-process from the same recorder `lambda::serve` installs.

use std::sync::Arc;

use integration_tests::client::{caller, create, mutation, pull_request, push_request};
use replicache_dynamodb::engine::{Engine, EngineConfig};
use replicache_dynamodb::store::memory::MemoryStore;
use replicache_dynamodb::{lambda, Operation};
use serde_json::{json, Value};

#[tokio::test]
async fn the_functions_emit_valid_emf_with_the_expected_metrics() {
    let collector = lambda::install_metrics(Operation::Push).expect("the EMF recorder");
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        crate::app_for_tests(),
        EngineConfig::default(),
    );
    let me = caller("alice", "room");
    engine
        .push(
            &me,
            &push_request(
                "g1",
                vec![
                    create("c1", 1, "a", 1),
                    mutation("c1", 2, "fail", json!({})),
                ],
            ),
        )
        .await
        .unwrap();
    engine
        .push(&me, &push_request("g1", vec![create("c1", 7, "b", 7)]))
        .await
        .unwrap();
    engine
        .pull(&me, &pull_request("g1", Value::Null))
        .await
        .unwrap();
    let api = replicache_dynamodb::http_api::Api::new(
        engine,
        replicache_dynamodb::http_api::AuthMode::Header,
        1 << 20,
    );
    let headers = http::HeaderMap::new();
    let body = serde_json::to_vec(&pull_request("g2", Value::Null)).unwrap();
    let response = api
        .handle(
            Operation::Pull,
            replicache_dynamodb::http_api::ApiRequest {
                method: &http::Method::POST,
                query: Some("spaceID=room"),
                headers: &headers,
                body: &body,
                jwt_sub: None,
                request_id: None,
            },
        )
        .await;
    assert_eq!(response.status(), 200);

    let mut out = Vec::new();
    collector.flush(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let doc: Value = serde_json::from_str(line).expect("each line one JSON document");
        let aws = &doc["_aws"];
        assert!(aws["Timestamp"].as_u64().is_some(), "{line}");
        for directive in aws["CloudWatchMetrics"].as_array().expect("directives") {
            assert_eq!(directive["Namespace"], "ReplicacheDynamoDB");
            for dimensions in directive["Dimensions"].as_array().unwrap() {
                for d in dimensions.as_array().unwrap() {
                    let d = d.as_str().unwrap();
                    assert!(doc.get(d).is_some(), "dimension {d} has a value: {line}");
                    assert!(
                        ["function", "operation"].contains(&d),
                        "a low-cardinality dimension: {d}"
                    );
                }
            }
            for metric in directive["Metrics"].as_array().unwrap() {
                let name = metric["Name"].as_str().unwrap();
                assert!(doc.get(name).is_some(), "metric {name} has a value: {line}");
                names.insert(name.to_owned());
            }
        }
        assert_eq!(doc["function"], "push");
    }
    for expected in [
        "latency_ms",
        "mutations_applied",
        "mutations_rejected",
        "client_state_not_found",
        "pull_bytes",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}\n{text}"
        );
    }
}
