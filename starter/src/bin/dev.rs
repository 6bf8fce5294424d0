#[tokio::main]
async fn main() -> Result<(), replicache_dynamodb::dev::Error> {
    replicache_dynamodb::dev::run(myapp::app()).await
}
