//! A store wrapper that runs something of the test's just before its first write: to put a
//! concurrent change between what an operation read and what it writes, deterministically.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use replicache_dynamodb::store::{
    Address, EntityQuery, Limits, Page, PageToken, Record, Store, StoreError, Version, Write,
};

type Hook = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Passes every call to the wrapped store; the first write first awaits the hook.
pub struct BeforeWrite {
    inner: Arc<dyn Store>,
    hook: Mutex<Option<Hook>>,
    fired: AtomicBool,
}

impl BeforeWrite {
    /// Wraps `inner`, with no hook yet.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        BeforeWrite {
            inner,
            hook: Mutex::new(None),
            fired: AtomicBool::new(false),
        }
    }

    /// Runs `hook` to completion before the next write.
    pub fn before_first_write(&self, hook: Hook) {
        *self.hook.lock().unwrap() = Some(hook);
    }

    /// Whether the hook has run.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Store for BeforeWrite {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn get(&self, addresses: &[Address]) -> Result<Vec<Option<Record>>, StoreError> {
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
        query: &EntityQuery,
        page: Option<PageToken>,
    ) -> Result<Page, StoreError> {
        self.inner.entities(space, query, page).await
    }

    async fn commit_logs(&self, space: &str, page: Option<PageToken>) -> Result<Page, StoreError> {
        self.inner.commit_logs(space, page).await
    }

    async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let hook = self.hook.lock().unwrap().take();
        if let Some(hook) = hook {
            hook.await;
            self.fired.store(true, Ordering::SeqCst);
        }
        self.inner.write(writes).await
    }
}
