//! Wire types of the Replicache push and pull protocol (version 1), as the `replicache`
//! 15.x client sends and accepts them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The only push and pull protocol version this server speaks.
pub const PROTOCOL_VERSION: u64 = 1;

/// The key a pull response sets to `{"complete": false, ...}` when it is one page of a sync
/// too large for one response, and to `{"complete": true}` with the page that completes it.
/// Replicache 15 does not pull again by itself after a page: pull again while this key says
/// `complete: false` (`completeSyncs` of the client package, `packages/client`, does).
/// [`crate::Tx`] refuses to write it: a mutation that sets or deletes it is rejected.
pub const SYNC_KEY: &str = "replicache-dynamodb/sync";

/// Body of `POST /api/replicache/pull`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullRequest {
    /// Protocol version; 0 is the legacy protocol and is refused.
    pub pull_version: u64,
    /// The application's schema version, compared with the configured one.
    #[serde(default)]
    pub schema_version: String,
    /// Identifies the browser profile; only logged.
    #[serde(default, rename = "profileID")]
    pub profile_id: String,
    /// The client group asking.
    #[serde(rename = "clientGroupID")]
    pub client_group_id: String,
    /// The cookie of the client's current snapshot, `null` for none.
    #[serde(default)]
    pub cookie: Value,
}

/// Body of `POST /api/replicache/push`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PushRequest {
    /// Protocol version; 0 is the legacy protocol and is refused.
    pub push_version: u64,
    /// The application's schema version, compared with the configured one.
    #[serde(default)]
    pub schema_version: String,
    /// Identifies the browser profile; only logged.
    #[serde(default, rename = "profileID")]
    pub profile_id: String,
    /// The client group pushing.
    #[serde(rename = "clientGroupID")]
    pub client_group_id: String,
    /// All pending mutations of the group, oldest first.
    pub mutations: Vec<Mutation>,
}

/// One mutation of a push.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Mutation {
    /// The client (tab) that made the mutation.
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// Per-client sequence number, starting at 1.
    pub id: u64,
    /// Mutator name.
    pub name: String,
    /// Mutator arguments, as the client's mutator received them.
    #[serde(default)]
    pub args: Value,
    /// `performance.now()` on the client; not wall-clock time, only logged.
    #[serde(default)]
    pub timestamp: f64,
}

/// One operation of a pull patch.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum PatchOp {
    /// Drop everything the client has.
    Clear,
    /// Set `key` to `value`.
    Put {
        /// Replicache key.
        key: String,
        /// JSON value.
        value: Value,
    },
    /// Remove `key`.
    Del {
        /// Replicache key.
        key: String,
    },
}

/// Successful pull response.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PullResponse {
    /// Cookie of the snapshot this response brings the client to.
    pub cookie: Value,
    /// Last mutation ids of the group's clients that changed since the request's cookie.
    #[serde(rename = "lastMutationIDChanges")]
    pub last_mutation_id_changes: std::collections::BTreeMap<String, u64>,
    /// Changes to apply, in order.
    pub patch: Vec<PatchOp>,
}

/// Which version a `VersionNotSupported` error is about.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum VersionType {
    /// `pushVersion`.
    Push,
    /// `pullVersion`.
    Pull,
    /// `schemaVersion`.
    Schema,
}

/// Error objects the client acts on; they are sent with HTTP status 200.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(tag = "error")]
pub enum ProtocolError {
    /// The server has no state for the client (group): the client resets.
    ClientStateNotFound,
    /// The client must be updated.
    VersionNotSupported {
        /// Which version was refused.
        #[serde(rename = "versionType")]
        version_type: VersionType,
    },
}

/// What a push or pull answers with HTTP 200.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply<T> {
    /// The normal response.
    Ok(T),
    /// A protocol error object.
    Error(ProtocolError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_objects_serialize_as_the_client_expects() {
        assert_eq!(
            serde_json::to_value(ProtocolError::ClientStateNotFound).unwrap(),
            json!({"error": "ClientStateNotFound"})
        );
        assert_eq!(
            serde_json::to_value(ProtocolError::VersionNotSupported {
                version_type: VersionType::Schema
            })
            .unwrap(),
            json!({"error": "VersionNotSupported", "versionType": "schema"})
        );
    }

    #[test]
    fn patch_ops_serialize_as_the_client_expects() {
        let ops = vec![
            PatchOp::Clear,
            PatchOp::Put {
                key: "a".into(),
                value: json!(1),
            },
            PatchOp::Del { key: "b".into() },
        ];
        assert_eq!(
            serde_json::to_value(ops).unwrap(),
            json!([{"op": "clear"}, {"op": "put", "key": "a", "value": 1}, {"op": "del", "key": "b"}])
        );
    }
}
