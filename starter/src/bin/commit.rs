use replicache_dynamodb::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda::Error> {
    lambda::serve_commits(myapp::app()).await
}
