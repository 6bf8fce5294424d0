//! Testing an application without HTTP: run its mutators and space policy against the
//! in-memory store, then look at the keys they left.
//!
//! ```
//! use replicache_dynamodb::testing::{Mutated, TestServer};
//! use replicache_dynamodb::{reject, App, Mutators, Result, Tx};
//!
//! async fn add(tx: Tx, by: i64) -> Result<()> {
//!     if by < 0 {
//!         return Err(reject("by must not be negative"));
//!     }
//!     let sum = tx.get::<i64>("sum").await?.unwrap_or(0);
//!     tx.set("sum", &(sum + by)).await
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let server = TestServer::new(App::new(Mutators::new().register("add", add)));
//! let alice = server.client("alice", "space-1");
//! assert_eq!(alice.mutate("add", 2).await.unwrap(), Mutated::Applied);
//! assert!(matches!(alice.mutate("add", -1).await.unwrap(), Mutated::Rejected(_)));
//! assert_eq!(server.get::<i64>("space-1", "sum").await, Some(2));
//! # });
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::app::App;
use crate::engine::{Caller, Engine, EngineConfig, EngineError};
use crate::protocol::{Mutation, PullRequest, PullResponse, PushRequest, Reply};
use crate::store::memory::MemoryStore;
use crate::store::{all_pages, Address, Record, Store};

/// An application on a fresh in-memory store.
#[derive(Clone)]
pub struct TestServer {
    engine: Engine,
    store: Arc<MemoryStore>,
    groups: Arc<AtomicU64>,
}

/// What became of a mutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutated {
    /// It committed.
    Applied,
    /// The application rejected it (or it was too large to commit), for this reason.
    Rejected(String),
}

impl TestServer {
    /// `app` on an empty in-memory store.
    pub fn new(app: App) -> Self {
        let store = Arc::new(MemoryStore::new());
        TestServer {
            engine: Engine::new(store.clone(), app, EngineConfig::default()),
            store,
            groups: Arc::default(),
        }
    }

    /// A new client (in a client group of its own) of `user` in `space`.
    pub fn client(&self, user: &str, space: &str) -> TestClient {
        let n = self.groups.fetch_add(1, Ordering::Relaxed);
        TestClient {
            engine: self.engine.clone(),
            caller: Caller {
                user: user.to_owned(),
                space: space.to_owned(),
            },
            group: format!("test-group-{n}"),
            client: format!("test-client-{n}"),
            last_id: AtomicU64::new(0),
        }
    }

    /// The committed value of `key` in `space`, if it exists and is a `T`.
    pub async fn get<T: DeserializeOwned>(&self, space: &str, key: &str) -> Option<T> {
        let address = Address::Entity {
            space: space.to_owned(),
            key: key.to_owned(),
        };
        match self.store.get(&[address]).await.ok()?.pop()?? {
            Record::Entity(e) => serde_json::from_str(e.value.as_deref()?).ok(),
            _ => None,
        }
    }

    /// Every committed key under `prefix` in `space`, with its value, in key order.
    pub async fn entries(&self, space: &str, prefix: &str) -> Vec<(String, Value)> {
        let store = self.store.clone();
        let records = all_pages(|page| store.entities(space, prefix, page))
            .await
            .unwrap_or_default();
        records
            .into_iter()
            .filter_map(|r| match r {
                Record::Entity(e) => Some((e.key, serde_json::from_str(e.value.as_deref()?).ok()?)),
                _ => None,
            })
            .collect()
    }
}

/// One client of a [`TestServer`], pushing its mutations one at a time as its user.
pub struct TestClient {
    engine: Engine,
    caller: Caller,
    group: String,
    client: String,
    last_id: AtomicU64,
}

impl TestClient {
    /// Pushes one mutation `name(args)`. An error is the push's own (the space policy's 403
    /// is [`EngineError::Forbidden`]); a rejection is [`Mutated::Rejected`].
    pub async fn mutate(&self, name: &str, args: impl Serialize) -> Result<Mutated, EngineError> {
        let args = serde_json::to_value(args)
            .map_err(|e| EngineError::BadRequest(format!("arguments are not JSON: {e}")))?;
        let id = self.last_id.load(Ordering::SeqCst) + 1;
        let request = PushRequest {
            push_version: crate::protocol::PROTOCOL_VERSION,
            schema_version: String::new(),
            profile_id: "test".into(),
            client_group_id: self.group.clone(),
            mutations: vec![Mutation {
                client_id: self.client.clone(),
                id,
                name: name.to_owned(),
                args,
                timestamp: 0.0,
            }],
        };
        let outcome = match self.engine.push_outcome(&self.caller, &request).await? {
            Reply::Ok(outcome) => outcome,
            Reply::Error(e) => return Err(EngineError::Internal(format!("push answered {e:?}"))),
        };
        self.last_id.store(id, Ordering::SeqCst);
        Ok(match outcome.rejected.into_iter().next() {
            Some(r) => Mutated::Rejected(r.reason),
            None => Mutated::Applied,
        })
    }

    /// A pull from scratch (no cookie), as this client's user: the whole space.
    pub async fn pull(&self) -> Result<PullResponse, EngineError> {
        let request = PullRequest {
            pull_version: crate::protocol::PROTOCOL_VERSION,
            schema_version: String::new(),
            profile_id: "test".into(),
            client_group_id: self.group.clone(),
            cookie: Value::Null,
        };
        match self.engine.pull(&self.caller, &request).await? {
            Reply::Ok(response) => Ok(response),
            Reply::Error(e) => Err(EngineError::Internal(format!("pull answered {e:?}"))),
        }
    }
}
