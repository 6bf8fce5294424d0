//! The integration suite: one binary, so the SDK and the emulator are linked and started once.

mod app_api;
mod bad_input;
mod concurrency;
mod fuzz_corpus;
mod gc;
mod handlers;
mod js;
mod metrics;
mod model_check;
mod poke_handlers;
mod pokes_aws;
mod protocol;
mod queued;
mod revocation;
mod round_trips;
mod store;
mod template;
mod write_rules;

use std::sync::Arc;

use integration_tests::{app, Backend};
use replicache_dynamodb::engine::{Engine, EngineConfig};
use replicache_dynamodb::store::Store;

/// An engine running the test application over `store`.
pub fn engine(store: Arc<dyn Store>) -> Engine {
    Engine::new(store, app::app(), EngineConfig::default())
}

/// The test application.
pub fn app_for_tests() -> replicache_dynamodb::App {
    app::app()
}

/// A fresh engine on a fresh store of `backend`.
pub async fn fresh(backend: Backend) -> Engine {
    engine(backend.store().await)
}

/// Runs an async test body once per store: `memory` and `dynamodb` submodules.
#[macro_export]
macro_rules! on_both_stores {
    ($(async fn $name:ident($backend:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                async fn run($backend: integration_tests::Backend) $body
                #[tokio::test]
                async fn memory() { run(integration_tests::Backend::Memory).await }
                #[tokio::test]
                async fn dynamodb() { run(integration_tests::Backend::DynamoDb).await }
            }
        )*
    };
}
