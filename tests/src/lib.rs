//! Test support: DynamoDB Local, a round-trip counting store, and protocol helpers; the test
//! application and the client's cookie comparison come from `test-support`, shared with the
//! fuzz targets.

pub use test_support::{app, cookies};

pub mod client;
pub mod counting;
pub mod dynamodb_local;
pub mod fake_management;
pub mod faulty;
pub mod hooked;
pub mod recording;

use std::sync::Arc;

use replicache_dynamodb::store::memory::MemoryStore;
use replicache_dynamodb::store::Store;

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The in-memory store (atomic mode).
    Memory,
    /// A fresh table in DynamoDB Local.
    DynamoDb,
}

impl Backend {
    /// A new, empty store of this kind.
    pub async fn store(self) -> Arc<dyn Store> {
        match self {
            Backend::Memory => Arc::new(MemoryStore::new()),
            Backend::DynamoDb => Arc::new(dynamodb_local::fresh_table().await),
        }
    }
}
