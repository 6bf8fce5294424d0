use replicache_dynamodb::{lambda, Operation};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    lambda::serve(Operation::Poke, myapp::app()).await
}
