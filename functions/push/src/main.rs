//! The push Lambda function: `POST /api/replicache/push`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    replicache_dynamodb::lambda::run(replicache_dynamodb::http_api::Operation::Push).await
}
