//! The chat of Replicache's "Bring Your Own Backend" tutorial, as an application of
//! `replicache-dynamodb`: the demo in `web/` (its client) runs it. Its mutators exist once, in JavaScript:
//! the server runs the client's own `web/src/mutators.js`, compiled into this crate.
//!
//! Any signed-in user may read and write any space (no space policy).
//!
//! Built with `APP_BUNDLE=path/to/app.js` (relative to the repository root, or absolute), the crate
//! compiles that bundle in instead: the functions and the dev server then run a JavaScript
//! developer's own app, without a line of Rust.

use replicache_dynamodb::js::{JsApp, JsError};
use replicache_dynamodb::{App, Mutators};

/// The JavaScript app compiled in: `apps/chat/web/src/mutators.js`, or the `APP_BUNDLE` of the build.
pub const MUTATORS_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/app.js"));
/// The file [`MUTATORS_JS`] was read from, for messages.
const MUTATORS_FILE: &str = env!("APP_BUNDLE_NAME");

/// The compiled-in mutators as a JavaScript app; an error names the file and line of a
/// bundle that does not load.
pub fn js() -> Result<JsApp, JsError> {
    JsApp::from_source(MUTATORS_FILE, MUTATORS_JS)
}

/// The chat application (or the app of the build's `APP_BUNDLE`).
pub fn app() -> Result<App, JsError> {
    Ok(App::new(Mutators::new()).js(js()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use replicache_dynamodb::testing::{Mutated, TestServer};
    use serde_json::{json, Value};

    #[tokio::test]
    async fn messages_are_created_deleted_and_validated() {
        let server = TestServer::new(app().expect("the chat's mutators load"));
        let jane = server.client("jane", "room");
        let create = |id: &str, order: Value| json!({"id": id, "from": "Jane", "content": "hi", "order": order});
        assert_eq!(
            jane.mutate("createMessage", create("1", json!(1)))
                .await
                .unwrap(),
            Mutated::Applied
        );
        let stored = server.get::<Value>("room", "message/1").await.unwrap();
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
