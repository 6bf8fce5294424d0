//! A [Replicache](https://doc.replicache.dev) sync backend: your application's mutators and
//! access rules, run by a push/pull engine that stays consistent under concurrency on
//! DynamoDB, served from AWS Lambda or from a local development server.
//!
//! # Your application
//!
//! An application is an [`App`]: its [`Mutators`] (the server side of the `mutators` your
//! Replicache client is created with), who may use which space, and optionally a schema
//! version. Mutators are plain `async fn`s over a [`Tx`] with typed arguments:
//!
//! ```
//! use replicache_dynamodb::{reject, Access, App, Mutators, Result, Tx};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Message {
//!     id: String,
//!     from: String,
//!     content: String,
//!     order: u64,
//! }
//!
//! async fn create_message(tx: Tx, m: Message) -> Result<()> {
//!     if m.content.is_empty() {
//!         return Err(reject("a message needs content"));
//!     }
//!     tx.set(&format!("message/{}", m.id), &m).await
//! }
//!
//! pub fn app() -> App {
//!     App::new(Mutators::new().register("createMessage", create_message))
//!         // Optional: who may push to, pull from and listen to which space.
//!         .space_policy(|request| async move {
//!             Ok(Access::from(!request.space().starts_with("admin-")))
//!         })
//! }
//! ```
//!
//! - A mutator that returns `Err(`[`reject`]`(reason))` is skipped for good: its writes are
//!   dropped, its client's last mutation id advances, the reason is logged. Errors that
//!   [`Tx`] calls return are passed on with `?`; the engine handles them (it re-runs the
//!   push on a fresh snapshot, or answers 503 so that the client retries).
//! - Every key a mutator reads becomes a condition of the commit: if another push changed
//!   it in between, the push runs again on the new state. Mutators must therefore have no
//!   effects besides their `Tx` writes.
//! - The space policy runs before anything else is read or written; [`Access::Deny`]
//!   answers 403. It can read the application's own records ([`SpaceRequest::get`]).
//!
//! # Running it
//!
//! - On AWS: one binary per function, each `lambda::serve(Operation::Push, app())` (or
//!   `Pull`, `Poke`), and `lambda::serve_commits(app())` for the committer of the pushes a
//!   hot space queues ([`engine::PushPath`]), deployed with the repository's `template.yaml`
//!   (feature `lambda`). The repository's `scripts/new-app` writes such a crate, with the
//!   template, for your app.
//! - Locally: `dev::run(app())` serves push, pull, pokes and a web client on 127.0.0.1, on
//!   an in-memory store (feature `dev-server`) or DynamoDB Local (`dev-server-dynamodb`).
//! - In tests: [`testing::TestServer`] runs mutators and the policy on the in-memory store,
//!   without HTTP.
//!
//! # What lives where
//!
//! The crate root holds what an application author uses: [`App`], [`Mutators`], [`Tx`] and
//! [`Scan`], [`reject`] with [`Error`] and [`Result`], and the space policy's [`Access`],
//! [`Operation`], [`SpaceRequest`] and [`MutationRequest`]. The rest is for those who
//! embed or extend it:
//!
//! | module | for |
//! |---|---|
//! | [`testing`] | unit tests of an app: [`testing::TestServer`] |
//! | `dev`, `lambda` | serving an app locally or on AWS |
//! | `js` | an app written in JavaScript |
//! | [`engine`] | running push and pull yourself: [`engine::Engine`] over a store, with a queue for hot spaces ([`engine::PushQueue`]) |
//! | [`http_api`] | the HTTP layer over an engine, for another server |
//! | [`store`] | the storage contract, the in-memory store, the DynamoDB store |
//! | [`protocol`] | the Replicache wire types |
//! | [`pokes`], [`ticket`] | telling clients to pull, and the tickets poke sockets open with |
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `dynamodb` | the DynamoDB store |
//! | `lambda` | the Lambda entry point (`lambda::serve`), on DynamoDB |
//! | `dev-server` | the local server (`dev::run`) on the in-memory store, without the AWS SDK |
//! | `dev-server-dynamodb` | the local server on DynamoDB (Local) too, when `TABLE_NAME` is set |
//! | `js` | JavaScript apps (`js::JsApp`): the client's own mutators, run by QuickJS |
//!
//! All are on by default. With `default-features = false` only the engine, the in-memory
//! store and the HTTP layer are compiled; `features = ["dev-server", "js"]` is the light
//! build of a new app's local server.
//!
//! # Consistency
//!
//! DynamoDB's multi-item reads are only read-committed; how the engine still gives every pull
//! one snapshot and applies every mutation exactly once is in the repository's
//! `docs/consistency.md`.

#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod access;
mod app;
mod auth;
#[cfg(any(feature = "lambda", feature = "dev-server"))]
mod config;
mod cookie;
mod digest;
mod error;
mod logged;
mod mutators;
mod overlay;
pub mod pokes;
mod snapshot;
#[cfg(any(feature = "lambda", feature = "dev-server"))]
mod telemetry;
mod telemetry_names;
pub mod ticket;
mod tx;

#[cfg(feature = "dev-server")]
#[cfg_attr(docsrs, doc(cfg(feature = "dev-server")))]
pub mod dev;
pub mod engine;
pub mod http_api;
#[cfg(feature = "js")]
#[cfg_attr(docsrs, doc(cfg(feature = "js")))]
pub mod js;
#[cfg(feature = "lambda")]
#[cfg_attr(docsrs, doc(cfg(feature = "lambda")))]
pub mod lambda;
pub mod protocol;
pub mod store;
pub mod testing;

pub use access::{Access, MutationRequest, Operation, SpaceRequest};
pub use app::App;
pub use error::{reject, Error, Result};
pub use mutators::Mutators;
pub use tx::{Scan, Tx};
