//! A store wrapper that counts requests, to assert the engine's round trips.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use replicache_dynamodb::store::{
    Address, EntityQuery, Limits, Page, PageToken, Record, Store, StoreError, Version, Write,
};

/// Counts every call to the wrapped store (each is one DynamoDB request) and the writes
/// that failed on a condition or a concurrent transaction.
pub struct CountingStore {
    inner: Arc<dyn Store>,
    calls: AtomicUsize,
    conflicts: AtomicUsize,
    entities_read: AtomicUsize,
}

impl CountingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        CountingStore {
            inner,
            calls: AtomicUsize::new(0),
            conflicts: AtomicUsize::new(0),
            entities_read: AtomicUsize::new(0),
        }
    }

    /// Writes cancelled by a conflict so far; resets the count.
    pub fn take_conflicts(&self) -> usize {
        self.conflicts.swap(0, Ordering::SeqCst)
    }

    /// Entities (tombstones included) that entity queries returned so far; resets the count.
    pub fn take_entities_read(&self) -> usize {
        self.entities_read.swap(0, Ordering::SeqCst)
    }

    /// Requests so far; resets the count.
    pub fn take(&self) -> usize {
        self.calls.swap(0, Ordering::SeqCst)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Store for CountingStore {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn get(&self, addresses: &[Address]) -> Result<Vec<Option<Record>>, StoreError> {
        self.count();
        self.inner.get(addresses).await
    }

    async fn changes(
        &self,
        space: &str,
        after: Version,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError> {
        self.count();
        self.inner.changes(space, after, page).await
    }

    async fn entities(
        &self,
        space: &str,
        query: &EntityQuery,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError> {
        self.count();
        let page = self.inner.entities(space, query, page).await?;
        self.entities_read
            .fetch_add(page.records.len(), Ordering::SeqCst);
        Ok(page)
    }

    async fn commit_logs(&self, space: &str, page: Option<PageToken>) -> Result<Page, StoreError> {
        self.count();
        self.inner.commit_logs(space, page).await
    }

    async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.count();
        let result = self.inner.write(writes).await;
        if matches!(result, Err(StoreError::Conflict(_))) {
            self.conflicts.fetch_add(1, Ordering::SeqCst);
        }
        result
    }
}
