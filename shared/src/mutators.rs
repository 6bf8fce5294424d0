//! The mutator registry: named async functions an application registers, each with JSON
//! arguments deserialized into its own type.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::store::StoreError;
use crate::tx::Tx;

/// Why a mutation did not apply.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MutationError {
    /// The mutation can never succeed (unknown mutator, invalid arguments, a rule of the
    /// application): it is skipped and its client's lmid still advances.
    #[error("{0}")]
    Invalid(String),
    /// A read saw a state that is not a consistent snapshot: the push is re-run. Mutators
    /// must pass this on (with `?`), never swallow it.
    #[error("inconsistent read, retrying: {0}")]
    Retry(String),
    /// The store failed for now: the push stops and the client retries later.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for MutationError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(why) => MutationError::Retry(why),
            other => MutationError::Store(other),
        }
    }
}

/// A named mutator of the application.
#[async_trait]
pub trait Mutator: Send + Sync + 'static {
    /// The arguments, deserialized from the mutation's `args`.
    type Args: DeserializeOwned + Send;

    /// Applies the mutation through `tx`.
    async fn apply(&self, tx: &mut Tx<'_>, args: Self::Args) -> Result<(), MutationError>;
}

#[async_trait]
trait ErasedMutator: Send + Sync {
    async fn call(&self, tx: &mut Tx<'_>, args: Value) -> Result<(), MutationError>;
}

#[async_trait]
impl<M: Mutator> ErasedMutator for M {
    async fn call(&self, tx: &mut Tx<'_>, args: Value) -> Result<(), MutationError> {
        let args = serde_json::from_value(args)
            .map_err(|e| MutationError::Invalid(format!("invalid arguments: {e}")))?;
        self.apply(tx, args).await
    }
}

/// The application's mutators, by name.
#[derive(Clone, Default)]
pub struct Mutators {
    by_name: HashMap<String, Arc<dyn ErasedMutator>>,
}

impl Mutators {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `mutator` under `name`.
    pub fn register(mut self, name: &str, mutator: impl Mutator) -> Self {
        self.by_name.insert(name.to_owned(), Arc::new(mutator));
        self
    }

    /// Runs the mutator `name`; an unknown name is a permanent error.
    pub async fn run(&self, name: &str, tx: &mut Tx<'_>, args: Value) -> Result<(), MutationError> {
        match self.by_name.get(name) {
            Some(m) => m.call(tx, args).await,
            None => Err(MutationError::Invalid(format!("unknown mutator {name:?}"))),
        }
    }
}
