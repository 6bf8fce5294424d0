//! Helpers to speak the protocol to an engine the way the `replicache` client does.

use std::collections::BTreeMap;

use replicache_dynamodb::engine::{Caller, Engine, EngineError};
use replicache_dynamodb::protocol::{
    Mutation, PatchOp, PullRequest, PullResponse, PushRequest, Reply, SYNC_KEY,
};
use serde_json::{json, Value};

/// A caller in `space` as `user`.
pub fn caller(user: &str, space: &str) -> Caller {
    Caller {
        user: user.to_owned(),
        space: space.to_owned(),
    }
}

/// A `createMessage` mutation.
pub fn create(client: &str, id: u64, msg: &str, order: u64) -> Mutation {
    mutation(
        client,
        id,
        "createMessage",
        json!({"id": msg, "from": "Jane", "content": format!("hello {msg}"), "order": order}),
    )
}

/// Any mutation.
pub fn mutation(client: &str, id: u64, name: &str, args: Value) -> Mutation {
    Mutation {
        client_id: client.to_owned(),
        id,
        name: name.to_owned(),
        args,
        timestamp: 1.0,
    }
}

/// A version 1 push.
pub fn push_request(group: &str, mutations: Vec<Mutation>) -> PushRequest {
    PushRequest {
        push_version: 1,
        schema_version: "v1".into(),
        profile_id: "p1".into(),
        client_group_id: group.to_owned(),
        mutations,
    }
}

/// A version 1 pull.
pub fn pull_request(group: &str, cookie: Value) -> PullRequest {
    PullRequest {
        pull_version: 1,
        schema_version: "v1".into(),
        profile_id: "p1".into(),
        client_group_id: group.to_owned(),
        cookie,
    }
}

/// Pushes and expects success.
pub async fn push_ok(engine: &Engine, caller: &Caller, group: &str, mutations: Vec<Mutation>) {
    match engine.push(caller, &push_request(group, mutations)).await {
        Ok(Reply::Ok(())) => {}
        other => panic!("push failed: {other:?}"),
    }
}

/// Pulls and expects a normal response.
pub async fn pull_ok(engine: &Engine, caller: &Caller, group: &str, cookie: Value) -> PullResponse {
    match engine.pull(caller, &pull_request(group, cookie)).await {
        Ok(Reply::Ok(r)) => r,
        other => panic!("pull failed: {other:?}"),
    }
}

/// Pull result as a `Result` for error assertions.
pub async fn pull(
    engine: &Engine,
    caller: &Caller,
    group: &str,
    cookie: Value,
) -> Result<Reply<PullResponse>, EngineError> {
    engine.pull(caller, &pull_request(group, cookie)).await
}

/// A client's local view, updated from pull responses as the real client applies them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct View {
    /// Key-value pairs.
    pub data: BTreeMap<String, Value>,
    /// Cookie of the last applied response.
    pub cookie: Value,
    /// Known lmids.
    pub lmids: BTreeMap<String, u64>,
    /// The version of the last complete sync, while a paged one is under way.
    pub last_complete: u64,
}

impl View {
    /// Applies a pull response; panics where the real client would reject it.
    pub fn apply(&mut self, r: &PullResponse) {
        for (c, lmid) in &r.last_mutation_id_changes {
            let old = self.lmids.get(c).copied().unwrap_or(0);
            assert!(*lmid >= old, "lmid of {c} went back from {old} to {lmid}");
            self.lmids.insert(c.clone(), *lmid);
        }
        for op in &r.patch {
            match op {
                PatchOp::Clear => self.data.clear(),
                PatchOp::Put { key, value } => {
                    self.data.insert(key.clone(), value.clone());
                }
                PatchOp::Del { key } => {
                    self.data.remove(key);
                }
            }
        }
        self.cookie = r.cookie.clone();
    }

    /// Whether the view is in the middle of a paged sync (its last pull marked the sync
    /// incomplete).
    pub fn incomplete(&self) -> bool {
        self.data
            .get(SYNC_KEY)
            .is_some_and(|sync| sync["complete"] == false)
    }

    /// Pulls and applies.
    pub async fn sync(&mut self, engine: &Engine, caller: &Caller, group: &str) -> PullResponse {
        let r = pull_ok(engine, caller, group, self.cookie.clone()).await;
        self.apply(&r);
        r
    }
}

/// The keys a patch puts, in order.
pub fn puts(patch: &[PatchOp]) -> Vec<&str> {
    patch
        .iter()
        .filter_map(|op| match op {
            PatchOp::Put { key, .. } => Some(key.as_str()),
            _ => None,
        })
        .collect()
}

/// The connections recorded as listening to `space`.
pub async fn listeners(store: &dyn replicache_dynamodb::store::Store, space: &str) -> Vec<String> {
    use replicache_dynamodb::store::{Address, Record};
    let got = store
        .get(&[Address::Listeners {
            space: space.into(),
        }])
        .await
        .expect("read the listeners");
    match got.into_iter().next().flatten() {
        Some(Record::Listeners(l)) => l.connections.into_keys().collect(),
        _ => vec![],
    }
}
