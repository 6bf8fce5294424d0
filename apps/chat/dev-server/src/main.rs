//! The local server of the chat demo: push, pull, pokes and the demo client (`../web/`, built)
//! in one process on 127.0.0.1. `--help` lists the options.

#[tokio::main]
async fn main() -> Result<(), replicache_dynamodb::dev::Error> {
    let web = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/dist");
    replicache_dynamodb::dev::run_with_web_dir(chat::app()?, web).await
}
