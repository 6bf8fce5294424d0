//! The chat of Replicache's "Bring Your Own Backend" tutorial, as an application of
//! `replicache-dynamodb`: the demo in `web/` runs it. Its client-side mutators are in
//! `web/src/mutators.js`.
//!
//! Any signed-in user may read and write any space (no space policy).

use replicache_dynamodb::{reject, App, Mutators, Result, Tx};
use serde::{Deserialize, Serialize};

/// Longest sender name, in characters.
pub const MAX_FROM_CHARS: usize = 100;
/// Longest message, in characters.
pub const MAX_CONTENT_CHARS: usize = 10_000;

/// A message, as stored under `message/<id>` (without its id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Sender name.
    pub from: String,
    /// Text.
    pub content: String,
    /// Position in the conversation.
    pub order: u64,
}

/// Arguments of `createMessage`.
#[derive(Deserialize)]
pub struct NewMessage {
    id: String,
    #[serde(flatten)]
    message: Message,
}

/// Arguments of `deleteMessage`.
#[derive(Deserialize)]
pub struct MessageId {
    id: String,
}

/// `createMessage {id, from, content, order}`: puts `message/<id>`.
pub async fn create_message(tx: Tx, NewMessage { id, message }: NewMessage) -> Result<()> {
    if message.from.chars().count() > MAX_FROM_CHARS {
        return Err(reject(format!(
            "from is longer than {MAX_FROM_CHARS} characters"
        )));
    }
    if message.content.chars().count() > MAX_CONTENT_CHARS {
        return Err(reject(format!(
            "content is longer than {MAX_CONTENT_CHARS} characters"
        )));
    }
    tx.set(&key(&id)?, &message).await
}

/// `deleteMessage {id}`: deletes `message/<id>`.
pub async fn delete_message(tx: Tx, MessageId { id }: MessageId) -> Result<()> {
    tx.del(&key(&id)?).await
}

fn key(id: &str) -> Result<String> {
    if id.is_empty() {
        return Err(reject("id must not be empty"));
    }
    Ok(format!("message/{id}"))
}

/// The chat application.
pub fn app() -> App {
    App::new(
        Mutators::new()
            .register("createMessage", create_message)
            .register("deleteMessage", delete_message),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use replicache_dynamodb::testing::{Mutated, TestServer};
    use serde_json::json;

    #[tokio::test]
    async fn messages_are_created_deleted_and_validated() {
        let server = TestServer::new(app());
        let jane = server.client("jane", "room");
        let create = |id: &str, order: serde_json::Value| json!({"id": id, "from": "Jane", "content": "hi", "order": order});
        assert_eq!(
            jane.mutate("createMessage", create("1", json!(1)))
                .await
                .unwrap(),
            Mutated::Applied
        );
        let stored = server.get::<Message>("room", "message/1").await;
        assert_eq!(
            stored,
            Some(Message {
                from: "Jane".into(),
                content: "hi".into(),
                order: 1
            })
        );

        for bad in [
            create("2", json!(-1)),
            create("2", json!(1.5)),
            create("", json!(1)),
        ] {
            let outcome = jane.mutate("createMessage", bad).await.unwrap();
            assert!(matches!(outcome, Mutated::Rejected(_)), "{outcome:?}");
        }
        let long = "x".repeat(MAX_CONTENT_CHARS + 1);
        let outcome = jane
            .mutate(
                "createMessage",
                json!({"id": "3", "from": "J", "content": long, "order": 3}),
            )
            .await
            .unwrap();
        assert!(
            matches!(outcome, Mutated::Rejected(ref r) if r.contains("content")),
            "{outcome:?}"
        );

        assert_eq!(
            jane.mutate("deleteMessage", json!({"id": "1"}))
                .await
                .unwrap(),
            Mutated::Applied
        );
        assert_eq!(server.entries("room", "message/").await, vec![]);
    }
}
