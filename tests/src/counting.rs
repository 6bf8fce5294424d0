//! A store wrapper that counts requests and the bytes of values they read, to assert the
//! engine's round trips and what they cost.

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
    value_bytes: AtomicUsize,
    entities_read: AtomicUsize,
}

impl CountingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        CountingStore {
            inner,
            calls: AtomicUsize::new(0),
            conflicts: AtomicUsize::new(0),
            value_bytes: AtomicUsize::new(0),
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

    /// Bytes of entity values read so far; resets the count.
    pub fn take_value_bytes(&self) -> usize {
        self.value_bytes.swap(0, Ordering::SeqCst)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }

    fn read<'a>(&self, records: impl IntoIterator<Item = &'a Record>) {
        let bytes: usize = records
            .into_iter()
            .map(|r| match r {
                Record::Entity(e) => e.value.as_ref().map_or(0, String::len),
                _ => 0,
            })
            .sum();
        self.value_bytes.fetch_add(bytes, Ordering::SeqCst);
    }

    fn read_page(&self, page: Result<Page, StoreError>) -> Result<Page, StoreError> {
        if let Ok(page) = &page {
            self.read(&page.records);
        }
        page
    }
}

#[async_trait]
impl Store for CountingStore {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn get(&self, addresses: &[Address]) -> Result<Vec<Option<Record>>, StoreError> {
        self.count();
        let got = self.inner.get(addresses).await;
        if let Ok(records) = &got {
            self.read(records.iter().flatten());
        }
        got
    }

    async fn versions(&self, addresses: &[Address]) -> Result<Vec<Option<Version>>, StoreError> {
        self.count();
        self.inner.versions(addresses).await
    }

    async fn changes(
        &self,
        space: &str,
        after: Version,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError> {
        self.count();
        self.read_page(self.inner.changes(space, after, page).await)
    }

    async fn entities(
        &self,
        space: &str,
        query: &EntityQuery,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError> {
        self.count();
        let page = self.read_page(self.inner.entities(space, query, page).await)?;
        self.entities_read
            .fetch_add(page.records.len(), Ordering::SeqCst);
        Ok(page)
    }

    async fn commit_logs(&self, space: &str, page: Option<PageToken>) -> Result<Page, StoreError> {
        self.count();
        self.read_page(self.inner.commit_logs(space, page).await)
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
