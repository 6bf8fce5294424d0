//! The todo application's local server: `cargo run -p todo` (`--help` lists the options).

#[tokio::main]
async fn main() -> Result<(), replicache_dynamodb::dev::Error> {
    replicache_dynamodb::dev::run(todo::app()).await
}
