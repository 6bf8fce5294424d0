//! The pull Lambda function: `POST /api/replicache/pull`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    replicache_dynamodb::lambda::run(replicache_dynamodb::http_api::Operation::Pull).await
}
