//! A store wrapper whose entity reads can be made to fail, as a throttled or unreachable
//! DynamoDB would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use replicache_dynamodb::store::{
    Address, Limits, Page, PageToken, Store, StoreError, Version, Write,
};

/// Fails `get`s of entities with [`StoreError::Unavailable`] while [`FaultyStore::fail_reads`]
/// is on; everything else goes to the wrapped store.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    failing: AtomicBool,
}

impl FaultyStore {
    /// Wraps `inner`, healthy.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        FaultyStore {
            inner,
            failing: AtomicBool::new(false),
        }
    }

    /// Turns failing entity reads on or off.
    pub fn fail_reads(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }
}

#[async_trait]
impl Store for FaultyStore {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn get(
        &self,
        addresses: &[Address],
    ) -> Result<Vec<Option<replicache_dynamodb::store::Record>>, StoreError> {
        let entity = addresses
            .iter()
            .any(|a| matches!(a, Address::Entity { .. }));
        if entity && self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "injected: reads are failing".into(),
            ));
        }
        self.inner.get(addresses).await
    }

    async fn changes(
        &self,
        space: &str,
        after: Version,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError> {
        self.inner.changes(space, after, page).await
    }

    async fn entities(
        &self,
        space: &str,
        prefix: &str,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError> {
        self.inner.entities(space, prefix, page).await
    }

    async fn commit_logs(&self, space: &str, page: Option<PageToken>) -> Result<Page, StoreError> {
        self.inner.commit_logs(space, page).await
    }

    async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.inner.write(writes).await
    }
}
