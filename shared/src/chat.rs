//! The default application: the chat of Replicache's "Bring Your Own Backend" tutorial.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Number};

use crate::mutators::{MutationError, Mutator, Mutators};
use crate::tx::Tx;

/// Longest sender name, in characters.
pub const MAX_FROM_CHARS: usize = 100;
/// Longest message, in characters.
pub const MAX_CONTENT_CHARS: usize = 10_000;

/// `createMessage {id, from, content, order}`: puts `message/<id>`.
pub struct CreateMessage;

/// Arguments of [`CreateMessage`].
#[derive(Deserialize)]
pub struct CreateMessageArgs {
    id: String,
    from: String,
    content: String,
    order: Number,
}

#[async_trait]
impl Mutator for CreateMessage {
    type Args = CreateMessageArgs;

    async fn apply(&self, tx: &mut Tx<'_>, args: Self::Args) -> Result<(), MutationError> {
        let id = message_id(&args.id)?;
        let invalid = |why: String| Err(MutationError::Invalid(why));
        if args.from.chars().count() > MAX_FROM_CHARS {
            return invalid(format!("from is longer than {MAX_FROM_CHARS} characters"));
        }
        if args.content.chars().count() > MAX_CONTENT_CHARS {
            return invalid(format!(
                "content is longer than {MAX_CONTENT_CHARS} characters"
            ));
        }
        let Some(order) = args.order.as_u64() else {
            return invalid(format!(
                "order must be a non-negative integer, not {}",
                args.order
            ));
        };
        tx.put(
            &format!("message/{id}"),
            &json!({"from": args.from, "content": args.content, "order": order}),
        )
    }
}

/// `deleteMessage {id}`: deletes `message/<id>`.
pub struct DeleteMessage;

/// Arguments of [`DeleteMessage`].
#[derive(Deserialize)]
pub struct DeleteMessageArgs {
    id: String,
}

#[async_trait]
impl Mutator for DeleteMessage {
    type Args = DeleteMessageArgs;

    async fn apply(&self, tx: &mut Tx<'_>, args: Self::Args) -> Result<(), MutationError> {
        let id = message_id(&args.id)?;
        tx.del(&format!("message/{id}"))
    }
}

fn message_id(id: &str) -> Result<&str, MutationError> {
    if id.is_empty() {
        return Err(MutationError::Invalid("id must not be empty".into()));
    }
    Ok(id)
}

/// The chat application's mutators.
pub fn mutators() -> Mutators {
    Mutators::new()
        .register("createMessage", CreateMessage)
        .register("deleteMessage", DeleteMessage)
}
