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
//! assert_eq!(server.get::<i64>("space-1", "sum").await, Ok(Some(2)));
//! # });
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::access::{Access, Operation, SpaceRequest};
use crate::app::App;
use crate::engine::{Caller, Engine, EngineConfig, EngineError};
use crate::error::{reject, Result};
use crate::protocol::{Mutation, PullRequest, PullResponse, PushRequest, Reply};
use crate::store::memory::MemoryStore;
use crate::store::{all_pages, Address, EntityQuery, Record, Store};
use crate::ticket::{Ticket, TicketError, TicketKey};

/// An application on a fresh in-memory store.
#[derive(Clone)]
pub struct TestServer {
    engine: Engine,
    store: Arc<MemoryStore>,
    groups: Arc<AtomicU64>,
    tickets: TicketKey,
    pauses: Pauses,
}

/// Requests to hold after the space policy answers them (see
/// [`TestServer::pause_after_policy`]).
type Pauses = Arc<Mutex<Vec<Pause>>>;

struct Pause {
    operation: Operation,
    user: String,
    space: String,
    answered: oneshot::Sender<Result<Access>>,
    release: oneshot::Receiver<()>,
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
        let pauses = Pauses::default();
        let app = hold_after_policy(app, pauses.clone());
        TestServer {
            engine: Engine::new(store.clone(), app, EngineConfig::default()),
            store,
            groups: Arc::default(),
            tickets: TicketKey::random(),
            pauses,
        }
    }

    /// A new client (in a client group of its own) of `user` in `space`.
    pub fn client(&self, user: &str, space: &str) -> TestClient {
        let n = self.groups.fetch_add(1, Ordering::Relaxed);
        TestClient {
            engine: self.engine.clone(),
            tickets: self.tickets.clone(),
            caller: Caller {
                user: user.to_owned(),
                space: space.to_owned(),
            },
            group: format!("test-group-{n}"),
            client: format!("test-client-{n}"),
            last_id: AtomicU64::new(0),
        }
    }

    /// The committed value of `key` in `space` as a `T`, `None` if the key does not exist.
    /// A value that is not a `T` is an error naming the key and what did not parse.
    pub async fn get<T: DeserializeOwned>(&self, space: &str, key: &str) -> Result<Option<T>> {
        let address = Address::Entity {
            space: space.to_owned(),
            key: key.to_owned(),
        };
        let value = match self.store.get(&[address]).await?.pop().flatten() {
            Some(Record::Entity(e)) => e.value,
            _ => None,
        };
        value
            .map(|text| {
                serde_json::from_str(&text).map_err(|e| {
                    reject(format!(
                        "the value of {key:?} in {space:?} is not a {}: {e}",
                        std::any::type_name::<T>()
                    ))
                })
            })
            .transpose()
    }

    /// Every committed key under `prefix` in `space`, with its value, in key order.
    pub async fn entries(&self, space: &str, prefix: &str) -> Vec<(String, Value)> {
        let store = self.store.clone();
        let query = EntityQuery::prefix(prefix);
        let records = all_pages(|page| store.entities(space, &query, page))
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

    /// Holds the next `operation` of `user` in `space` (a push, a pull, or a poke ticket or
    /// connection) right after the space policy answered it, until the pause is released or
    /// dropped: a test can then run another request in between, as a concurrent one would.
    ///
    /// ```
    /// use replicache_dynamodb::testing::{Mutated, TestServer};
    /// use replicache_dynamodb::{Access, App, Mutators, Operation, Result, Tx};
    ///
    /// async fn put(tx: Tx, key: String) -> Result<()> {
    ///     tx.set(&key, &true).await
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let server = TestServer::new(App::new(Mutators::new().register("put", put)));
    /// let (alice, bob) = (server.client("alice", "s"), server.client("bob", "s"));
    /// let mut pause = server.pause_after_policy(Operation::Push, "alice", "s");
    /// let (pushed, ()) = tokio::join!(alice.mutate("put", "a"), async {
    ///     assert_eq!(pause.answered().await, Ok(Access::Allow));
    ///     // Alice's push is allowed and waits; Bob's commits first.
    ///     assert_eq!(bob.mutate("put", "b").await, Ok(Mutated::Applied));
    ///     pause.release();
    /// });
    /// assert_eq!(pushed, Ok(Mutated::Applied));
    /// # });
    /// ```
    pub fn pause_after_policy(&self, operation: Operation, user: &str, space: &str) -> PolicyPause {
        let (answered, answer) = oneshot::channel();
        let (release, released) = oneshot::channel();
        lock(&self.pauses).push(Pause {
            operation,
            user: user.to_owned(),
            space: space.to_owned(),
            answered,
            release: released,
        });
        PolicyPause {
            answer,
            release: Some(release),
        }
    }

    /// What `ticket` says, if this server issued it ([`TestClient::poke_ticket`]) and it has
    /// not expired.
    pub fn check_ticket(&self, ticket: &str) -> Result<Ticket, TicketError> {
        self.tickets.verify(ticket, self.engine.now())
    }

    /// Opens a poke connection to `space` with `ticket`, as the WebSocket's `$connect` does
    /// (`?spaceID=<space>&ticket=<ticket>`): the ticket must be valid and for that space, the
    /// space policy must let its user listen, and a ticket opens one connection. Its id.
    pub async fn connect(&self, space: &str, ticket: &str) -> Result<String, EngineError> {
        let ticket = self
            .check_ticket(ticket)
            .map_err(|e| EngineError::Unauthorized(e.to_string()))?;
        if ticket.space != space {
            return Err(EngineError::Unauthorized(
                "the ticket is for another space".into(),
            ));
        }
        let caller = Caller {
            user: ticket.user.clone(),
            space: ticket.space.clone(),
        };
        let id = format!(
            "test-connection-{}",
            self.groups.fetch_add(1, Ordering::Relaxed)
        );
        self.engine
            .connect_with_ticket(&caller, &id, &ticket)
            .await?;
        Ok(id)
    }
}

/// A request held after the space policy answered it: see
/// [`TestServer::pause_after_policy`].
pub struct PolicyPause {
    answer: oneshot::Receiver<Result<Access>>,
    release: Option<oneshot::Sender<()>>,
}

impl PolicyPause {
    /// Waits until the policy has answered the request (which then waits); its answer.
    pub async fn answered(&mut self) -> Result<Access> {
        (&mut self.answer)
            .await
            .unwrap_or_else(|_| Err(reject("the test server is gone")))
    }

    /// Lets the request go on.
    pub fn release(mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
    }
}

/// `app`, whose space policy's answers wait for the pauses in `pauses` that match them.
fn hold_after_policy(app: App, pauses: Pauses) -> App {
    let inner = app.clone();
    app.space_policy(move |request: SpaceRequest| {
        let (inner, pauses) = (inner.clone(), pauses.clone());
        async move {
            let (operation, user, space) = (
                request.operation(),
                request.user().to_owned(),
                request.space().to_owned(),
            );
            let answer = inner.access(request).await;
            let pause = {
                let mut pauses = lock(&pauses);
                let at = pauses
                    .iter()
                    .position(|p| p.operation == operation && p.user == user && p.space == space);
                at.map(|at| pauses.remove(at))
            };
            if let Some(pause) = pause {
                let _ = pause.answered.send(answer.clone());
                // Released, or the pause dropped: either way, go on.
                let _ = pause.release.await;
            }
            answer
        }
    })
}

fn lock(pauses: &Pauses) -> std::sync::MutexGuard<'_, Vec<Pause>> {
    pauses.lock().unwrap_or_else(|e| e.into_inner())
}

/// One client of a [`TestServer`], pushing its mutations one at a time as its user.
pub struct TestClient {
    engine: Engine,
    tickets: TicketKey,
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
        self.pull_from(&Value::Null).await
    }

    /// A pull from `cookie` (a response's [`PullResponse::cookie`]), as this client's user:
    /// what changed since.
    pub async fn pull_from(&self, cookie: &Value) -> Result<PullResponse, EngineError> {
        let request = PullRequest {
            pull_version: crate::protocol::PROTOCOL_VERSION,
            schema_version: String::new(),
            profile_id: "test".into(),
            client_group_id: self.group.clone(),
            cookie: cookie.clone(),
        };
        match self.engine.pull(&self.caller, &request).await? {
            Reply::Ok(response) => Ok(response),
            Reply::Error(e) => Err(EngineError::Internal(format!("pull answered {e:?}"))),
        }
    }

    /// A poke ticket, as the client asks for one (`POST /api/replicache/poke-ticket`): the
    /// space policy must let the user listen. Open a connection with
    /// [`TestServer::connect`].
    pub async fn poke_ticket(&self) -> Result<String, EngineError> {
        let (ticket, _) = self
            .engine
            .issue_ticket(&self.caller, &self.tickets)
            .await?;
        Ok(ticket)
    }
}
