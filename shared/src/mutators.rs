//! [`Mutators`]: the application's mutators, by name.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{reject, Result};
use crate::tx::Tx;

type BoxedMutator =
    Arc<dyn Fn(Tx, Value) -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + Sync>;

/// The application's mutators, by name: the server side of the `mutators` a Replicache
/// client is created with.
///
/// A mutator is any `async fn(Tx, Args) -> Result<()>` (or a closure returning such a
/// future), where `Args` is deserialized from the mutation's arguments. Arguments that do not
/// deserialize, and names nobody registered, reject the mutation. A mutator the client calls
/// without arguments gets `null`, which `()`, `Option<T>`, a unit struct and a struct without
/// required fields all accept.
///
/// ```
/// use replicache_dynamodb::{reject, Mutators, Result, Tx};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Message { id: String, from: String, content: String, order: u64 }
///
/// async fn create_message(tx: Tx, m: Message) -> Result<()> {
///     if m.id.is_empty() {
///         return Err(reject("id must not be empty"));
///     }
///     tx.set(&format!("message/{}", m.id), &m).await
/// }
///
/// #[derive(Deserialize)]
/// struct Id { id: String }
///
/// let mutators = Mutators::new()
///     .register("createMessage", create_message)
///     .register("deleteMessage", |tx: Tx, Id { id }| async move {
///         tx.del(&format!("message/{id}")).await
///     });
/// assert!(mutators.contains("deleteMessage"));
/// ```
#[derive(Clone, Default)]
pub struct Mutators {
    by_name: HashMap<String, BoxedMutator>,
    /// The JavaScript app's mutators, for the names not registered here.
    #[cfg(feature = "js")]
    pub(crate) js: Option<crate::js::JsApp>,
}

impl Mutators {
    /// No mutators yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `mutator` under `name` (replacing one registered before under that name).
    pub fn register<Args, F, Fut>(mut self, name: &str, mutator: F) -> Self
    where
        Args: DeserializeOwned + Send + 'static,
        F: Fn(Tx, Args) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let mutator = Arc::new(mutator);
        let boxed: BoxedMutator = Arc::new(move |tx, args| {
            let mutator = mutator.clone();
            Box::pin(async move {
                // The client sends `null` for a mutator called without arguments: a type
                // that takes no fields (`struct Clear {}`) accepts it as `{}`.
                let args = Args::deserialize(&args)
                    .or_else(|e| match args {
                        Value::Null => {
                            Args::deserialize(&Value::Object(Default::default())).map_err(|_| e)
                        }
                        _ => Err(e),
                    })
                    .map_err(|e| reject(format!("invalid arguments: {e}")))?;
                mutator(tx, args).await
            })
        });
        self.by_name.insert(name.to_owned(), boxed);
        self
    }

    /// Whether a mutator is registered under `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Runs the mutator `name`: the one registered here, else the JavaScript app's; an
    /// unknown name is a rejection.
    pub(crate) async fn run(&self, name: &str, tx: Tx, args: Value) -> Result<()> {
        if let Some(m) = self.by_name.get(name) {
            return m(tx, args).await;
        }
        #[cfg(feature = "js")]
        if let Some(js) = &self.js {
            return js.mutate(name, tx, args).await;
        }
        Err(reject(format!("unknown mutator {name:?}")))
    }
}

impl std::fmt::Debug for Mutators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.by_name.keys().collect();
        names.sort();
        f.debug_struct("Mutators").field("names", &names).finish()
    }
}
