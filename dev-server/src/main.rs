//! The local server of the chat demo: push, pull, pokes and the demo client (`web/`) in one
//! process on 127.0.0.1. `--help` lists the options.

#[tokio::main]
async fn main() -> Result<(), replicache_dynamodb::dev::Error> {
    replicache_dynamodb::dev::run(chat::app()?).await
}
