//! The poke Lambda function of the chat application: `POST /api/replicache/poke-ticket` (a
//! one-minute ticket for the poke WebSocket) and the WebSocket API's `$connect` and
//! `$disconnect`.

use replicache_dynamodb::{lambda, Operation};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    lambda::serve(Operation::Poke, chat::app()?).await
}
