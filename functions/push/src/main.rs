//! The push Lambda function: `POST /api/replicache/push` of the chat application.

use replicache_dynamodb::{lambda, Operation};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    lambda::serve(Operation::Push, chat::app()?).await
}
