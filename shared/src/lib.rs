//! A Replicache sync backend on DynamoDB: the protocol engine, its storage, the default chat
//! application, and the HTTP layer both Lambda functions and the local server use.

pub mod auth;
pub mod chat;
pub mod config;
pub mod cookie;
pub mod engine;
pub mod http_api;
pub mod lambda;
pub mod mutators;
pub mod protocol;
pub mod store;
pub mod telemetry;
pub mod tx;

pub use engine::{Caller, CommitListener, Engine, EngineConfig, EngineError};
pub use mutators::{MutationError, Mutator, Mutators};
pub use tx::Tx;
