//! Who may do what with a space: the requests a space policy and a write rule decide on, and
//! a policy's answer.

use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;

use crate::error::{reject, Result};
use crate::store::{Address, Record, Store, Version};

/// What a request does with a space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Push mutations (`POST /api/replicache/push`).
    Push,
    /// Pull changes (`POST /api/replicache/pull`).
    Pull,
    /// Listen for pokes (the WebSocket).
    Poke,
}

impl Operation {
    /// `"push"`, `"pull"` or `"poke"`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Push => "push",
            Operation::Pull => "pull",
            Operation::Poke => "poke",
        }
    }
}

/// A space policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The user may use the space.
    Allow,
    /// The user may not (403), for this reason.
    Deny(String),
}

impl Access {
    /// [`Access::Deny`] for `reason`.
    pub fn deny(reason: impl std::fmt::Display) -> Self {
        Access::Deny(reason.to_string())
    }
}

impl From<bool> for Access {
    /// `true` allows; `false` denies without a particular reason.
    fn from(allowed: bool) -> Self {
        if allowed {
            Access::Allow
        } else {
            Access::deny("this user may not use this space")
        }
    }
}

/// What a space policy decides on: who wants to do what with which space, and a way to read
/// the application's own records (a membership list, say) to decide.
#[derive(Clone)]
pub struct SpaceRequest {
    user: String,
    space: String,
    operation: Operation,
    store: Arc<dyn Store>,
    /// What the policy read so far, for a poke connection to watch (see [`PolicyRead`]).
    reads: Arc<Mutex<Vec<PolicyRead>>>,
}

/// One record a space policy read, and the version it found (`None`: absent): the
/// connection the policy admitted is conditioned on it, and watches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PolicyRead {
    /// The space read.
    pub space: String,
    /// The key read.
    pub key: String,
    /// Its version then (a tombstone's too); `None`: absent.
    pub version: Option<Version>,
}

impl SpaceRequest {
    pub(crate) fn new(
        user: &str,
        space: &str,
        operation: Operation,
        store: Arc<dyn Store>,
    ) -> Self {
        SpaceRequest {
            user: user.to_owned(),
            space: space.to_owned(),
            operation,
            store,
            reads: Arc::default(),
        }
    }

    /// The records the policy read through this request (and its clones) so far.
    pub(crate) fn reads(&self) -> Vec<PolicyRead> {
        self.reads.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The authenticated user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The space asked for.
    pub fn space(&self) -> &str {
        &self.space
    }

    /// What the user wants to do.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The current value of `key` in the space asked for (a strongly consistent read).
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.get_in(&self.space, key).await
    }

    /// The current value of `key` in `space` (a strongly consistent read).
    ///
    /// A policy decides before the push or pull runs, not atomically with it: a membership
    /// removed while a push is in flight may let that push through. A mutator that must not
    /// race with such a change reads the record through its [`Tx`](crate::Tx) instead, which
    /// conditions the commit on it.
    pub async fn get_in<T: DeserializeOwned>(&self, space: &str, key: &str) -> Result<Option<T>> {
        let address = Address::Entity {
            space: space.to_owned(),
            key: key.to_owned(),
        };
        let got = self.store.get(std::slice::from_ref(&address)).await?;
        let entity = match got.into_iter().next() {
            Some(Some(Record::Entity(entity))) => Some(entity),
            _ => None,
        };
        self.reads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(PolicyRead {
                space: space.to_owned(),
                key: key.to_owned(),
                version: entity.as_ref().map(|e| e.version),
            });
        let Some(entity) = entity else {
            return Ok(None);
        };
        entity
            .value
            .map(|text| {
                serde_json::from_str(&text).map_err(|e| {
                    reject(format!(
                        "the value of {key:?} in {space:?} is not the type asked for: {e}"
                    ))
                })
            })
            .transpose()
    }
}

/// A mutation as a write rule sees it: its mutator's name and arguments (the user, space and
/// client are the [`Tx`](crate::Tx)'s).
#[derive(Debug, Clone, PartialEq)]
pub struct MutationRequest {
    /// The mutator's name.
    pub name: String,
    /// Its arguments, as the client sent them.
    pub args: serde_json::Value,
}
