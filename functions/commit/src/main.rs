//! The committer Lambda function of the chat application: commits the pushes the push
//! function queued for hot spaces, fed by the queue's event source mapping.

use replicache_dynamodb::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    lambda::serve_commits(chat::app()?).await
}
