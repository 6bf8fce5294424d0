//! The queued path on AWS: the push function sends pushes to an SQS FIFO queue
//! ([`SqsQueue`]), and the committer function, fed by the queue's event source mapping,
//! commits them ([`commit_event`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};

use crate::engine::{Engine, PushQueue, QueueError, QueuedPush};

/// The largest message body SQS takes (256 KiB, the limit every region and emulator
/// shares); a larger push commits directly.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// An SQS FIFO queue of pushes: each space is a message group, so that its pushes stay in
/// order, and each push's deduplication id is derived from it.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    /// The queue at `url`, through `client`.
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
        }
    }
}

#[async_trait]
impl PushQueue for SqsQueue {
    async fn send(&self, push: &QueuedPush) -> Result<(), QueueError> {
        let body = push.body();
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_deduplication_id(QueuedPush::deduplication_id(&body))
            .message_body(body)
            .message_group_id(message_group(&push.space))
            .send()
            .await
            .map(drop)
            .map_err(|e| QueueError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))
    }

    fn max_body_bytes(&self) -> usize {
        MAX_BODY_BYTES
    }
}

/// The message group of a space's pushes: the space id itself where SQS takes it (1 to 128
/// of its printable ASCII characters), else a digest of it.
fn message_group(space: &str) -> String {
    let allowed = |c: char| c.is_ascii_graphic();
    if !space.is_empty() && space.len() <= 128 && space.chars().all(allowed) {
        return space.to_owned();
    }
    crate::digest::sha256_hex(space, 32)
}

/// Commits a batch of the queue's messages, space by space, each space's pushes in the
/// order they came. Answers the messages to deliver again, for a space whose commit failed
/// for a reason that may pass: that push and every later one of its space in the batch, so
/// that the queue keeps their order. A message that can never commit (unreadable, or a push
/// the engine leaves out) is logged and not delivered again.
pub async fn commit_event(engine: &Engine, event: SqsEvent) -> SqsBatchResponse {
    // Per space: its messages' ids and pushes, in the batch's order.
    let mut spaces: BTreeMap<String, (Vec<String>, Vec<QueuedPush>)> = BTreeMap::new();
    for record in event.records {
        let id = record.message_id.unwrap_or_default();
        let body = record.body.unwrap_or_default();
        match serde_json::from_str::<QueuedPush>(&body) {
            Ok(push) => {
                let (ids, pushes) = spaces.entry(push.space.clone()).or_default();
                ids.push(id);
                pushes.push(push);
            }
            Err(e) => {
                tracing::error!(message = %id, error = %e, "unreadable queued push; dropping it")
            }
        }
    }
    // Spaces commit side by side; a space's pushes in their order.
    let mut commits = tokio::task::JoinSet::new();
    for (space, (ids, pushes)) in spaces {
        let engine = engine.clone();
        commits.spawn(async move {
            let done = commit_space(&engine, &space, &ids, &pushes).await;
            ids.into_iter().skip(done)
        });
    }
    let mut response = SqsBatchResponse::default();
    while let Some(failed) = commits.join_next().await {
        // A commit that panicked leaves its messages to the visibility timeout, as a
        // function error would (it cannot name them: the whole batch comes back).
        let Ok(failed) = failed else {
            return failed_batch();
        };
        response.batch_item_failures.extend(failed.map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        }));
    }
    response
}

/// An answer that fails the whole batch: an item identifier that names no message.
fn failed_batch() -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut failure = BatchItemFailure::default();
    failure.item_identifier = String::new();
    response.batch_item_failures.push(failure);
    response
}

/// Commits one space's messages; answers how many of them are done (committed, or left out
/// for good). All at once first; if that fails, one by one, so that one push that keeps
/// failing holds back only itself and those after it.
async fn commit_space(
    engine: &Engine,
    space: &str,
    ids: &[String],
    pushes: &[QueuedPush],
) -> usize {
    let Err(e) = engine.commit_queued(pushes).await else {
        return pushes.len();
    };
    if pushes.len() == 1 {
        tracing::warn!(space, message = %ids[0], error = %e, "queued push failed; it comes back");
        return 0;
    }
    tracing::warn!(space, error = %e, "queued pushes failed together; committing them one by one");
    for (done, (id, push)) in ids.iter().zip(pushes).enumerate() {
        if let Err(e) = engine.commit_queued(std::slice::from_ref(push)).await {
            tracing::warn!(space, message = %id, error = %e, "queued push failed; it and those after it come back");
            return done;
        }
    }
    pushes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_space_is_its_own_message_group_where_sqs_takes_it() {
        assert_eq!(message_group("room-1/a:b"), "room-1/a:b");
        let odd = message_group("salle à manger");
        assert_eq!(odd.len(), 64);
        assert_ne!(odd, message_group("salle a manger"));
        assert_eq!(message_group(&"x".repeat(129)).len(), 64);
    }
}
