//! `create-table <name>`: creates the table the store expects, with the store's own code, in
//! the DynamoDB the standard AWS environment names (`AWS_ENDPOINT_URL_DYNAMODB` for
//! DynamoDB Local). The end-to-end tests make their tables with it.

use replicache_dynamodb::store::dynamo::DynamoStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args()
        .nth(1)
        .ok_or("usage: create-table <table name>")?;
    let store = DynamoStore::from_env(name).await?;
    store.create_table().await?;
    Ok(())
}
