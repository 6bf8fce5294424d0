use replicache_dynamodb::{lambda, Operation};

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    lambda::serve(Operation::Push, myapp::app()).await
}
