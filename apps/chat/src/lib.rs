//! The chat of Replicache's "Bring Your Own Backend" tutorial, as an application of
//! `replicache-dynamodb`: the demo in `web/` runs it. Its mutators exist once, in JavaScript:
//! the server runs the client's own `web/src/mutators.js`, compiled into this crate.
//!
//! Any signed-in user may read and write any space (no space policy).

use replicache_dynamodb::js::JsApp;
use replicache_dynamodb::{App, Mutators};

/// The client's mutators module, `web/src/mutators.js`.
pub const MUTATORS_JS: &str = include_str!("../../../web/src/mutators.js");

/// The chat's mutators as a JavaScript app.
pub fn js() -> JsApp {
    JsApp::from_source("web/src/mutators.js", MUTATORS_JS)
        .expect("web/src/mutators.js loads (the crate's tests load it)")
}

/// The chat application.
pub fn app() -> App {
    App::new(Mutators::new()).js(js())
}

#[cfg(test)]
mod tests {
    use super::*;
    use replicache_dynamodb::testing::{Mutated, TestServer};
    use serde_json::{json, Value};

    #[tokio::test]
    async fn messages_are_created_deleted_and_validated() {
        let server = TestServer::new(app());
        let jane = server.client("jane", "room");
        let create = |id: &str, order: Value| json!({"id": id, "from": "Jane", "content": "hi", "order": order});
        assert_eq!(
            jane.mutate("createMessage", create("1", json!(1)))
                .await
                .unwrap(),
            Mutated::Applied
        );
        let stored = server.get::<Value>("room", "message/1").await;
        assert_eq!(
            stored,
            Some(json!({"from": "Jane", "content": "hi", "order": 1}))
        );

        for (bad, why) in [
            (create("2", json!(-1)), "order"),
            (create("2", json!(1.5)), "order"),
            (create("", json!(1)), "id"),
            (
                json!({"id": "3", "from": "J", "content": "x".repeat(10_001), "order": 3}),
                "content",
            ),
            (
                json!({"id": "3", "from": "J".repeat(101), "content": "", "order": 3}),
                "from",
            ),
        ] {
            let outcome = jane.mutate("createMessage", bad).await.unwrap();
            assert!(
                matches!(outcome, Mutated::Rejected(ref r) if r.contains(why)),
                "{outcome:?}"
            );
        }

        assert_eq!(
            jane.mutate("deleteMessage", json!({"id": "1"}))
                .await
                .unwrap(),
            Mutated::Applied
        );
        assert_eq!(server.entries("room", "message/").await, vec![]);
    }
}
