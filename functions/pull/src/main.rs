//! The pull Lambda function: `POST /api/replicache/pull` of the chat application.

use replicache_dynamodb::{lambda, Operation};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    lambda::serve(Operation::Pull, chat::app()?).await
}
