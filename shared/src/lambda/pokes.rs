//! Pokes on AWS: after a push commits, the push function posts `poke` to every connection of
//! the space through API Gateway's management API (`PostToConnection`), concurrently and
//! within a time budget, so that a slow or dead connection never holds the push's response;
//! and closes those whose user the space policy now refuses (`DeleteConnection`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_sdk_apigatewaymanagement::Client;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::pokes::{Poker, POKE};

/// Posts pokes to API Gateway WebSocket connections.
#[derive(Clone, Debug)]
pub struct ApiGatewayPoker {
    client: Client,
    budget: Duration,
    concurrency: usize,
}

impl ApiGatewayPoker {
    /// Pokes through `client` (configured with the WebSocket API stage's endpoint,
    /// `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`), at most `concurrency`
    /// posts at once, giving up on those not done within `budget`.
    pub fn new(client: Client, budget: Duration, concurrency: usize) -> Self {
        ApiGatewayPoker {
            client,
            budget,
            concurrency: concurrency.max(1),
        }
    }
}

/// What one post found.
enum Posted {
    Delivered,
    Gone(String),
    Failed,
}

#[async_trait]
impl Poker for ApiGatewayPoker {
    async fn poke(&self, space: &str, connections: &[String]) -> Vec<String> {
        if connections.is_empty() {
            return Vec::new();
        }
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut posts = JoinSet::new();
        for id in connections {
            let (client, permits, id) = (self.client.clone(), permits.clone(), id.clone());
            posts.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let sent = client
                    .post_to_connection()
                    .connection_id(&id)
                    .data(Blob::new(POKE))
                    .send()
                    .await;
                match sent {
                    Ok(_) => Posted::Delivered,
                    Err(e)
                        if matches!(
                            e.as_service_error(),
                            Some(PostToConnectionError::GoneException(_))
                        ) =>
                    {
                        Posted::Gone(id)
                    }
                    Err(e) => {
                        debug!(connection = %id, error = ?e, "poke failed");
                        Posted::Failed
                    }
                }
            });
        }
        let (mut delivered, mut failed, mut gone) = (0usize, 0usize, Vec::new());
        let deadline = tokio::time::Instant::now() + self.budget;
        loop {
            match tokio::time::timeout_at(deadline, posts.join_next()).await {
                Ok(Some(Ok(Posted::Delivered))) => delivered += 1,
                Ok(Some(Ok(Posted::Gone(id)))) => gone.push(id),
                Ok(Some(_)) => failed += 1,
                Ok(None) => break,
                Err(_) => {
                    // Out of time: the rest is abandoned (their clients pull on their next
                    // poke, reconnect or pull interval).
                    warn!(
                        space,
                        abandoned = posts.len(),
                        budget_ms = self.budget.as_millis() as u64,
                        "pokes not done within the budget; abandoning them"
                    );
                    posts.abort_all();
                    break;
                }
            }
        }
        info!(space, delivered, failed, gone = gone.len(), "poked");
        gone
    }

    async fn close(&self, space: &str, connections: &[String]) {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut deletes = JoinSet::new();
        for id in connections {
            let (client, permits, id) = (self.client.clone(), permits.clone(), id.clone());
            deletes.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let deleted = client.delete_connection().connection_id(&id).send().await;
                match deleted {
                    Err(e)
                        if !matches!(
                            e.as_service_error(),
                            Some(DeleteConnectionError::GoneException(_))
                        ) =>
                    {
                        // Forgotten anyway: no later poke reaches it, and it expires.
                        debug!(connection = %id, error = ?e, "closing a connection failed");
                        false
                    }
                    _ => true,
                }
            });
        }
        let (mut closed, mut failed) = (0usize, 0usize);
        let deadline = tokio::time::Instant::now() + self.budget;
        loop {
            match tokio::time::timeout_at(deadline, deletes.join_next()).await {
                Ok(Some(Ok(true))) => closed += 1,
                Ok(Some(_)) => failed += 1,
                Ok(None) => break,
                Err(_) => {
                    warn!(
                        space,
                        abandoned = deletes.len(),
                        "closing connections not done within the budget; abandoning them"
                    );
                    deletes.abort_all();
                    break;
                }
            }
        }
        info!(
            space,
            closed, failed, "closed connections the space policy refuses"
        );
    }
}
