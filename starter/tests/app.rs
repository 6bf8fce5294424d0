use replicache_dynamodb::testing::{Mutated, TestServer};
use serde_json::{json, Value};

#[tokio::test]
async fn creates_a_todo() {
    let server = TestServer::new(myapp::app());
    let alice = server.client("alice", "private-alice");
    let todo = json!({"id": "1", "text": "milk"});
    assert_eq!(alice.mutate("createTodo", todo).await, Ok(Mutated::Applied));
    let stored = json!({"id": "1", "text": "milk", "completed": false, "sort": 0});
    let found: Option<Value> = server.get("private-alice", "todo/1").await.unwrap();
    assert_eq!(found, Some(stored));
}

#[tokio::test]
async fn only_the_owner_may_use_a_private_space() {
    use replicache_dynamodb::engine::EngineError;

    let server = TestServer::new(myapp::app());
    let bob = server.client("bob", "private-alice");
    let todo = json!({"id": "2", "text": "eggs"});
    let refused = bob.mutate("createTodo", todo).await;
    assert!(matches!(refused, Err(EngineError::Forbidden(_))));
    let found: Option<Value> = server.get("private-alice", "todo/2").await.unwrap();
    assert_eq!(found, None);
}
