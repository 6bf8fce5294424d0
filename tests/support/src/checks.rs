//! What the fuzz targets check, for any input. Shared by the targets (`fuzz/fuzz_targets/`)
//! and the integration suite, which replays the checked-in corpus through the same functions
//! (`tests/suite/fuzz_corpus.rs`).
//!
//! Every target goes through the HTTP layer ([`Api::handle`]) of an engine over the in-memory
//! store, and checks:
//!
//! - no panic and no 5xx: the in-memory store never throttles and, used by one request at a
//!   time, never conflicts, so not even a 503 is acceptable here;
//! - a well-formed answer: JSON, the status and `error` the README documents, a message;
//! - `push` (on a store where two pushes were made before): a replayed push answers the same
//!   and changes nothing; after `{}`, every client's lmid is the largest id it pushed, or what
//!   it was if larger (no mutation lost, none processed twice);
//! - `pull` and `cookie` (each input pulled twice: with the default pull budget, and with a
//!   budget so small that every commit is a page): the answer is exactly what the protocol
//!   says for the sent cookie, to the key: after `clear` (only for a cookie the server cannot
//!   serve from, or too old for its tombstones) every key at the answer's version, else every
//!   key written after the sent cookie's version, up to the answer's version (a page ends
//!   between two commits, and says so in its sync key); the lmids are exactly the caller's
//!   group's clients written in the same range (a page keeps them in its cookie, the page
//!   that completes the sync sends them); the cookie never compares below the one sent (as
//!   the client compares them) and moves whenever the state may differ.
//!
//! An input of `push` and `pull` is `<query>\n<authorization>\n<body>`; with fewer than two
//! newlines all of it is the body, sent by `alice` to space `room`. `cookie` builds a pull
//! body around a cookie made with `arbitrary` from its input.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::cookies::compare;
use arbitrary::{Arbitrary, Unstructured};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use replicache_dynamodb::engine::{Clock, Engine, EngineConfig};
use replicache_dynamodb::http_api::{Api, ApiRequest, AuthMode};
use replicache_dynamodb::protocol::SYNC_KEY;
use replicache_dynamodb::protocol::{PullRequest, PushRequest};
use replicache_dynamodb::store::memory::MemoryStore;
use replicache_dynamodb::Operation;
use serde_json::{json, Map, Value};

/// The production default body limit.
const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;
/// The engine's clock: fixed, so that nothing expires and cookies carry a known time.
const NOW: u64 = 1_800_000_000;
/// A pull budget that makes a page of every commit of the world.
const TINY_PULL_BUDGET: usize = 40;

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    static WORLD: World = World::build();
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    RUNTIME.with(|rt| rt.block_on(future))
}

fn config() -> EngineConfig {
    EngineConfig {
        clock: Clock::new(|| NOW),
        ..EngineConfig::default()
    }
}

fn api_over(store: Arc<MemoryStore>, config: EngineConfig) -> Api {
    let engine = Engine::new(store, crate::app::app(), config);
    Api::new(engine, AuthMode::Header, MAX_BODY_BYTES)
}

fn api() -> Api {
    api_over(Arc::new(MemoryStore::new()), config())
}

/// A request as the HTTP layer gets it.
#[derive(Debug, Clone)]
pub struct HttpInput {
    query: Option<String>,
    authorization: Option<HeaderValue>,
    body: Vec<u8>,
}

impl HttpInput {
    /// `<query>\n<authorization>\n<body>`, or all of it the body.
    pub fn parse(data: &[u8]) -> Self {
        let mut parts = data.splitn(3, |b| *b == b'\n');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(query), Some(authorization), Some(body)) => HttpInput {
                query: (!query.is_empty()).then(|| String::from_utf8_lossy(query).into_owned()),
                // A server never hands on a header value that is not one.
                authorization: HeaderValue::from_bytes(authorization)
                    .ok()
                    .filter(|_| !authorization.is_empty()),
                body: body.to_vec(),
            },
            _ => HttpInput {
                query: Some("spaceID=room".into()),
                authorization: Some(HeaderValue::from_static("alice")),
                body: data.to_vec(),
            },
        }
    }

    fn with_body(&self, body: Vec<u8>) -> Self {
        HttpInput {
            body,
            ..self.clone()
        }
    }

    /// The user the server takes the caller for (header mode).
    fn user(&self) -> String {
        self.authorization
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or("anonymous")
            .to_owned()
    }

    async fn call(&self, api: &Api, op: Operation) -> Answer {
        let mut headers = HeaderMap::new();
        if let Some(a) = &self.authorization {
            headers.insert(AUTHORIZATION, a.clone());
        }
        let response = api
            .handle(
                op,
                ApiRequest {
                    method: &Method::POST,
                    query: self.query.as_deref(),
                    headers: &headers,
                    body: &self.body,
                    jwt_sub: None,
                    request_id: None,
                },
            )
            .await;
        let status = response.status();
        let text = response.into_body();
        let body = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "{} answered {status} with a body that is not JSON ({e}): {text:?}",
                op.name()
            )
        });
        let answer = Answer { status, body };
        answer.check_form(op);
        answer
    }
}

/// A response: status and JSON body.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Answer {
    /// No 5xx, and the shape the README documents for the status.
    fn check_form(&self, op: Operation) {
        let Answer { status, body } = self;
        let error = body.get("error").and_then(Value::as_str);
        match status.as_u16() {
            200 => match error {
                Some("VersionNotSupported") => {
                    let version_type = body["versionType"].as_str();
                    assert!(
                        matches!(version_type, Some("push" | "pull" | "schema")),
                        "{body}"
                    );
                }
                Some("ClientStateNotFound") if op == Operation::Push => {}
                Some(other) => panic!("{} answered 200 with error {other}: {body}", op.name()),
                None if op == Operation::Push => assert_eq!(body, &json!({}), "push answered"),
                None => {
                    let keys: BTreeSet<&str> = body
                        .as_object()
                        .map(|o| o.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    assert_eq!(
                        keys,
                        BTreeSet::from(["cookie", "lastMutationIDChanges", "patch"]),
                        "pull answered {body}"
                    );
                }
            },
            code @ (400 | 401 | 413) => {
                let expected: &[&str] = match code {
                    400 => &["InvalidJSON", "InvalidRequest"],
                    401 => &["Unauthorized"],
                    _ => &["PayloadTooLarge"],
                };
                assert!(
                    error.is_some_and(|e| expected.contains(&e)),
                    "{} answered {status} with {body}",
                    op.name()
                );
                assert!(
                    body["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "{} answered {status} without a message: {body}",
                    op.name()
                );
            }
            _ => panic!("{} answered {status}: {body}", op.name()),
        }
    }

    /// A normal pull answer (not an error object).
    fn is_pull_response(&self) -> bool {
        self.status == StatusCode::OK && self.body.get("error").is_none()
    }
}

/// The accepted body as the server reads it.
fn request<T: serde::de::DeserializeOwned>(body: &[u8]) -> T {
    let value: Value = serde_json::from_slice(body).expect("an accepted body is JSON");
    serde_json::from_value(value).expect("an accepted body is a request")
}

/// Pushes of [`history`] made before each input of the push target, so that pushes meet
/// existing clients, groups and keys.
const PREPUSHED: usize = 2;

/// The push target: `data` as a push on a fresh store holding the first `PREPUSHED` pushes of
/// `history`, then again.
pub fn push(data: &[u8]) {
    let input = HttpInput::parse(data);
    fastrand::seed(0);
    let api = api();
    let mut lmids: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    block_on(async {
        for (space, user, group, mutations) in history().into_iter().take(PREPUSHED) {
            for m in &mutations {
                let client = m["clientID"].as_str().expect("id").to_owned();
                let id = m["id"].as_u64().expect("id");
                lmids
                    .entry(group.to_owned())
                    .or_default()
                    .insert(client, id);
            }
            let before = HttpInput {
                query: Some(format!("spaceID={space}")),
                authorization: Some(HeaderValue::from_static(user)),
                body: push_body(group, mutations).to_string().into_bytes(),
            };
            assert_eq!(before.call(&api, Operation::Push).await.body, json!({}));
        }
        let first = input.call(&api, Operation::Push).await;
        let group = serde_json::from_slice::<Value>(&input.body)
            .ok()
            .and_then(|b| b.get("clientGroupID")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| "observer".into());
        let before = full_pull(&api, &input, &group).await;
        let again = input.call(&api, Operation::Push).await;
        assert_eq!(again, first, "a replayed push answered differently");
        let after = full_pull(&api, &input, &group).await;
        assert_eq!(after, before, "a replayed push changed the space");

        if first.status == StatusCode::OK && first.body == json!({}) {
            let pushed: PushRequest = request(&input.body);
            // Every client of the push is new or of this group, and its lmid is now the
            // largest id it pushed (or what it was, if larger).
            let mut expected = lmids.remove(&pushed.client_group_id).unwrap_or_default();
            for m in pushed.mutations.iter().filter(|m| m.id > 0) {
                let lmid = expected.entry(m.client_id.clone()).or_default();
                *lmid = (*lmid).max(m.id);
            }
            let view = after.expect("the pusher may pull its space");
            assert_eq!(
                view.body["lastMutationIDChanges"],
                json!(expected),
                "lmids after an accepted push"
            );
        }
    })
}

/// The caller's full pull of `group` in the input's space, if the server answers one.
async fn full_pull(api: &Api, input: &HttpInput, group: &str) -> Option<Answer> {
    let body = json!({"pullVersion": 1, "clientGroupID": group, "cookie": null});
    let answer = input
        .with_body(body.to_string().into_bytes())
        .call(api, Operation::Pull)
        .await;
    answer.is_pull_response().then_some(answer)
}

/// The pull target: `data` as a pull of the fixed world, with either budget.
pub fn pull(data: &[u8]) {
    let input = HttpInput::parse(data);
    WORLD.with(|world| {
        block_on(async {
            for (api, paged) in [(&world.api, false), (&world.paged_api, true)] {
                let answer = input.call(api, Operation::Pull).await;
                if answer.is_pull_response() {
                    let sent: PullRequest = request(&input.body);
                    world.check(
                        &input.user(),
                        &sent.client_group_id,
                        &sent.cookie,
                        paged,
                        &answer,
                    );
                }
            }
        })
    })
}

/// The cookie target: a pull of the fixed world with a cookie made from `data`.
pub fn cookie(data: &[u8]) {
    let Ok(case) = CookieCase::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    WORLD.with(|world| {
        let (user, group) = case.caller.pick();
        let space = case.space.name();
        let cookie = case.cookie.to_json(world, 0);
        let body = pull_body(group, cookie.clone());
        let input = HttpInput {
            query: Some(format!("spaceID={space}")),
            authorization: Some(HeaderValue::from_static(user)),
            body: body.to_string().into_bytes(),
        };
        let refused = world
            .groups
            .get(group)
            .is_some_and(|g| g.user != user || g.space != space);
        for (api, paged) in [(&world.api, false), (&world.paged_api, true)] {
            let answer = block_on(input.call(api, Operation::Pull));
            if refused {
                assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
            } else {
                assert!(answer.is_pull_response(), "{cookie} answered {answer:?}");
                world.check(user, group, &cookie, paged, &answer);
            }
        }
    })
}

/// A space's committed states, by version.
struct Space {
    name: &'static str,
    epoch: String,
    /// `states[v]`: the state at version `v`.
    states: Vec<State>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct State {
    data: BTreeMap<String, Value>,
    lmids: BTreeMap<String, u64>,
    /// The keys the commit of this version wrote.
    written: BTreeSet<String>,
}

impl Space {
    fn version(&self) -> u64 {
        self.states.len() as u64 - 1
    }

    /// The keys whose last write is in `(after, upto]`.
    fn keys_written(&self, after: u64, upto: u64) -> BTreeSet<&String> {
        let last = |key: &String| {
            (1..self.states.len())
                .rev()
                .find(|&v| self.states[v].written.contains(key))
                .map_or(0, |v| v as u64)
        };
        let all: BTreeSet<&String> = self.states.iter().flat_map(|s| &s.written).collect();
        all.into_iter()
            .filter(|k| (after + 1..=upto).contains(&last(k)))
            .collect()
    }

    /// The clients whose last commit is in `(after, upto]`, with their lmid then.
    fn clients_written(&self, after: u64, upto: u64) -> BTreeMap<String, u64> {
        let now = self.states.last().expect("version 0");
        now.lmids
            .iter()
            .filter(|(c, l)| {
                let first_at = (0..self.states.len())
                    .find(|&v| self.states[v].lmids.get(*c) == Some(l))
                    .expect("reached") as u64;
                after < first_at && first_at <= upto
            })
            .map(|(c, l)| (c.clone(), *l))
            .collect()
    }
}

struct Group {
    user: &'static str,
    space: &'static str,
    clients: BTreeSet<String>,
}

/// A store with a known history that pulls read (and never change), and two APIs over it:
/// one with the default pull budget, one that makes a page of every commit.
struct World {
    api: Api,
    paged_api: Api,
    spaces: Vec<Space>,
    groups: BTreeMap<&'static str, Group>,
}

/// The pushes that make the world: (space, user, group, mutations as `(client, id, name,
/// args)`), one commit each.
fn history() -> Vec<(&'static str, &'static str, &'static str, Vec<Value>)> {
    vec![
        (
            "room",
            "alice",
            "g1",
            vec![
                m("c1", 1, "put", json!({"key": "a", "value": 1})),
                m("c1", 2, "put", json!({"key": "b", "value": {"x": [1, 2]}})),
            ],
        ),
        (
            "room",
            "bob",
            "g2",
            vec![m(
                "d1",
                1,
                "createMessage",
                json!({"id": "m1", "from": "Bob", "content": "hi", "order": 1}),
            )],
        ),
        (
            "room",
            "alice",
            "g1",
            vec![m("c2", 1, "del", json!({"key": "a"}))],
        ),
        (
            "room",
            "alice",
            "g1",
            vec![
                m("c1", 3, "put", json!({"key": "a", "value": "again"})),
                m("c2", 2, "incr", json!({"key": "ctr", "by": 5})),
            ],
        ),
        (
            "room",
            "bob",
            "g2",
            vec![
                m("d1", 2, "deleteMessage", json!({"id": "m1"})),
                m("d1", 3, "put", json!({"key": "zz", "value": null})),
            ],
        ),
        ("room", "alice", "g1", vec![m("c1", 4, "fail", json!({}))]),
        (
            "room",
            "bob",
            "g2",
            vec![m(
                "d2",
                1,
                "putMany",
                json!({"keys": ["k1", "k2", "k3"], "value": 7}),
            )],
        ),
        (
            "lobby",
            "carol",
            "g3",
            vec![m("e1", 1, "put", json!({"key": "a", "value": 1}))],
        ),
        (
            "lobby",
            "carol",
            "g3",
            vec![m("e1", 2, "put", json!({"key": "ü/ключ", "value": true}))],
        ),
    ]
}

impl World {
    fn build() -> World {
        fastrand::seed(0);
        let store = Arc::new(MemoryStore::new());
        let api = api_over(store.clone(), config());
        let paged_api = api_over(
            store,
            EngineConfig {
                pull_budget_bytes: TINY_PULL_BUDGET,
                ..config()
            },
        );
        let mut spaces: Vec<Space> = ["room", "lobby", "empty"]
            .into_iter()
            .map(|name| Space {
                name,
                epoch: String::new(),
                states: vec![State::default()],
            })
            .collect();
        let mut groups: BTreeMap<&'static str, Group> = BTreeMap::new();
        block_on(async {
            for (space, user, group, mutations) in history() {
                let g = groups.entry(group).or_insert_with(|| Group {
                    user,
                    space,
                    clients: BTreeSet::new(),
                });
                for m in &mutations {
                    g.clients
                        .insert(m["clientID"].as_str().expect("id").to_owned());
                }
                let input = HttpInput {
                    query: Some(format!("spaceID={space}")),
                    authorization: Some(HeaderValue::from_static(user)),
                    body: push_body(group, mutations).to_string().into_bytes(),
                };
                let pushed = input.call(&api, Operation::Push).await;
                assert_eq!(pushed.body, json!({}), "setting up the world");
                let s = spaces.iter_mut().find(|s| s.name == space).expect("space");
                let version = s.states.len() as u64;
                let mut state = State::default();
                for (group, g) in groups.iter().filter(|(_, g)| g.space == space) {
                    let input = HttpInput {
                        authorization: Some(HeaderValue::from_static(g.user)),
                        ..input.clone()
                    };
                    let answer = full_pull(&api, &input, group).await.expect("a full pull");
                    let cookie = &answer.body["cookie"];
                    assert_eq!(cookie["version"], json!(version), "one commit a push");
                    s.epoch = cookie["epoch"].as_str().expect("epoch").to_owned();
                    state.data = apply(&BTreeMap::new(), &answer.body["patch"]);
                    let lmids: BTreeMap<String, u64> =
                        serde_json::from_value(answer.body["lastMutationIDChanges"].clone())
                            .expect("lmids");
                    state.lmids.extend(lmids);
                    // What the commit wrote: the keys of a diff from the version before.
                    let before = json!({"order": version - 1, "version": version - 1, "epoch": s.epoch, "t": NOW});
                    let diff = input
                        .with_body(pull_body(group, before).to_string().into_bytes())
                        .call(&api, Operation::Pull)
                        .await;
                    state.written = diff.body["patch"]
                        .as_array()
                        .expect("patch")
                        .iter()
                        .map(|op| op["key"].as_str().expect("key").to_owned())
                        .collect();
                }
                s.states.push(state);
            }
        });
        World {
            api,
            paged_api,
            spaces,
            groups,
        }
    }

    fn space(&self, name: &str) -> &Space {
        self.spaces.iter().find(|s| s.name == name).expect("space")
    }

    /// Checks a pull answer to `sent` by `user` for `group` (see the module documentation),
    /// from the API with the tiny budget if `paged`.
    fn check(&self, user: &str, group: &str, sent: &Value, paged: bool, answer: &Answer) {
        let body = &answer.body;
        let cookie = &body["cookie"];
        // The space answered, known by its epoch: every other space is empty (epoch "").
        let epoch = cookie["epoch"].as_str().expect("epoch");
        let space = self
            .spaces
            .iter()
            .find(|s| s.epoch == epoch)
            .unwrap_or_else(|| panic!("an answer from no space: {body}"));
        let version = space.version();
        let members = match self.groups.get(group) {
            Some(g) => {
                assert!(
                    g.user == user && g.space == space.name,
                    "{user} pulled {group} of {} in {} from {}",
                    g.user,
                    g.space,
                    space.name
                );
                g.clients.clone()
            }
            None => BTreeSet::new(),
        };

        // Where the answer must start from.
        let base = base(sent, space);
        let (after, issued, owed, full) = match &base {
            Some(b) => (b.version, b.issued, b.pending.clone(), false),
            None => (0, NOW, None, true),
        };
        let cut = cookie["version"].as_u64().expect("version");
        let complete = cut == version;
        if after == version {
            assert!(complete, "{sent} answered {body}");
        } else {
            assert!(after < cut && cut <= version, "{sent} answered {body}");
        }
        assert!(paged || complete, "a page with the default budget: {body}");

        let mut lmids = owed.clone().unwrap_or_default();
        lmids.extend(
            space
                .clients_written(after, cut)
                .into_iter()
                .filter(|(c, _)| members.contains(c)),
        );
        let mut expected_cookie = json!({
            "order": cookie["order"], "version": cut, "epoch": space.epoch,
            "t": if complete { NOW } else { issued },
        });
        if !complete {
            expected_cookie["p"] = json!(lmids);
        }
        assert_eq!(cookie, &expected_cookie, "{sent} answered {body}");
        let sent_lmids = if complete { json!(lmids) } else { json!({}) };
        assert_eq!(
            body["lastMutationIDChanges"], sent_lmids,
            "{sent} answered {body}"
        );

        let at_cut = &space.states[cut as usize].data;
        let mut patch = Vec::new();
        if full {
            patch.push(json!({"op": "clear"}));
        }
        for key in space.keys_written(after, cut) {
            match at_cut.get(key) {
                Some(value) => patch.push(json!({"op": "put", "key": key, "value": value})),
                None if !full => patch.push(json!({"op": "del", "key": key})),
                None => {}
            }
        }
        if !complete {
            let sync = json!({"complete": false, "version": cut, "target": version});
            patch.push(json!({"op": "put", "key": SYNC_KEY, "value": sync}));
        } else if owed.is_some() {
            let sync = json!({"complete": true});
            patch.push(json!({"op": "put", "key": SYNC_KEY, "value": sync}));
        }
        assert_eq!(body["patch"], json!(patch), "{sent} answered {body}");

        // Progress, as the client compares cookies. A cookie owing lmids at the space's
        // version is crafted: the server makes one only for a page short of the version.
        let crafted = owed.is_some() && after == version;
        if let Some(ordering) = compare(cookie, sent) {
            let must_move = full || after < cut;
            assert!(
                ordering == Ordering::Greater || (ordering == Ordering::Equal && !must_move),
                "{cookie} after {sent} ({ordering:?})"
            );
            if ordering == Ordering::Equal && !crafted {
                assert!(
                    patch.is_empty() && body["lastMutationIDChanges"] == json!({}),
                    "changes under an unchanged cookie: {body}"
                );
            }
        }
    }
}

/// Applies patch operations to `data`.
fn apply(data: &BTreeMap<String, Value>, ops: &Value) -> BTreeMap<String, Value> {
    let mut data = data.clone();
    for op in ops.as_array().expect("ops") {
        let key = op["key"].as_str().unwrap_or_default().to_owned();
        match op["op"].as_str() {
            Some("clear") => data.clear(),
            Some("put") => {
                data.insert(key, op["value"].clone());
            }
            Some("del") => {
                data.remove(&key);
            }
            _ => panic!("patch op {op}"),
        }
    }
    data
}

/// A cookie the server can diff from.
struct Base {
    version: u64,
    issued: u64,
    pending: Option<BTreeMap<String, u64>>,
}

/// How old a cookie may be (its tombstones are kept that long, less a day).
fn horizon() -> u64 {
    let ttl = EngineConfig::default().tombstone_ttl.as_secs();
    ttl.saturating_sub(24 * 60 * 60).max(ttl / 2)
}

/// The cookie the server can diff from, if `sent` is one: a cookie it issued (or could
/// have): `order` an unsigned integer or a string, `version` at most the space's, the space's
/// `epoch` (any epoch at version 0), `t` (when it was issued, 0 if absent) within the
/// tombstones' horizon, and `p` (lmids owed) absent, null or a map to unsigned integers. Like
/// serde, this takes the fields from an object (other fields ignored) or from an array of
/// three to five elements in that order.
fn base(sent: &Value, space: &Space) -> Option<Base> {
    let fields: Vec<Option<&Value>> = match sent {
        Value::Object(o) => ["order", "version", "epoch", "t", "p"]
            .iter()
            .map(|f| o.get(*f))
            .collect(),
        Value::Array(a) if (3..=5).contains(&a.len()) => (0..5).map(|i| a.get(i)).collect(),
        _ => return None,
    };
    let (order, version, epoch) = (fields[0]?, fields[1]?.as_u64()?, fields[2]?.as_str()?);
    let issued = match fields[3] {
        None => 0,
        Some(t) => t.as_u64()?,
    };
    let pending = match fields[4] {
        None | Some(Value::Null) => None,
        Some(Value::Object(p)) => Some(
            p.iter()
                .map(|(c, l)| Some((c.clone(), l.as_u64()?)))
                .collect::<Option<BTreeMap<_, _>>>()?,
        ),
        Some(_) => return None,
    };
    let ours = (order.is_u64() || order.is_string())
        && version <= space.version()
        && (epoch == space.epoch || version == 0)
        && issued.saturating_add(horizon()) >= NOW;
    ours.then_some(Base {
        version,
        issued,
        pending,
    })
}

/// One case of the cookie target (pulled with both budgets).
#[derive(Debug, Arbitrary)]
struct CookieCase {
    caller: CallerPick,
    space: SpacePick,
    cookie: CookieIn,
}

#[derive(Debug, Arbitrary)]
enum CallerPick {
    AliceG1,
    BobG2,
    CarolG3,
    AliceNew,
    AliceG2,
    BobG1,
}

impl CallerPick {
    fn pick(&self) -> (&'static str, &'static str) {
        match self {
            CallerPick::AliceG1 => ("alice", "g1"),
            CallerPick::BobG2 => ("bob", "g2"),
            CallerPick::CarolG3 => ("carol", "g3"),
            CallerPick::AliceNew => ("alice", "new"),
            CallerPick::AliceG2 => ("alice", "g2"),
            CallerPick::BobG1 => ("bob", "g1"),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum SpacePick {
    Room,
    Lobby,
    Empty,
}

impl SpacePick {
    fn name(&self) -> &'static str {
        match self {
            SpacePick::Room => "room",
            SpacePick::Lobby => "lobby",
            SpacePick::Empty => "empty",
        }
    }
}

#[derive(Debug, Arbitrary)]
enum CookieIn {
    Null,
    Ours {
        order: OrderIn,
        version: VersionIn,
        epoch: EpochIn,
        issued: IssuedIn,
        pending: PendingIn,
        extra: Vec<(String, JsonIn)>,
    },
    Tuple(OrderIn, VersionIn, EpochIn, IssuedIn, PendingIn),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text(TextIn),
    Json(JsonIn),
}

#[derive(Debug, Arbitrary)]
enum OrderIn {
    Small(u8),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text(TextIn),
    Json(JsonIn),
    Missing,
}

#[derive(Debug, Arbitrary)]
enum TextIn {
    Plain(String),
    /// `"<prefix>~<counter, 16 digits>"`, as a reset from a string cookie makes.
    Counted(String, u64),
    Digits(u64),
}

#[derive(Debug, Arbitrary)]
enum VersionIn {
    Small(u8),
    Unsigned(u64),
    Json(JsonIn),
    Missing,
}

#[derive(Debug, Arbitrary)]
enum EpochIn {
    Of(SpacePick),
    Other(String),
    Json(JsonIn),
    Missing,
}

/// `t`: when the cookie was issued.
#[derive(Debug, Arbitrary)]
enum IssuedIn {
    Now,
    /// This many seconds ago (or ahead).
    Ago(i32),
    Any(u64),
    Json(JsonIn),
    Missing,
}

/// `p`: the lmids a page owes.
#[derive(Debug, Arbitrary)]
enum PendingIn {
    Owed(Vec<(ClientPick, u8)>),
    Json(JsonIn),
    Missing,
}

#[derive(Debug, Arbitrary)]
enum ClientPick {
    C1,
    C2,
    D1,
    E1,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum JsonIn {
    Null,
    Bool(bool),
    Signed(i64),
    Unsigned(u64),
    Float(f64),
    Text(String),
    Array(Vec<JsonIn>),
    Object(Vec<(String, JsonIn)>),
}

/// Deeper values are cut (the server refuses JSON nested over 128 levels, as it should).
const MAX_DEPTH: usize = 32;

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

impl CookieIn {
    fn to_json(&self, world: &World, depth: usize) -> Value {
        match self {
            CookieIn::Null => Value::Null,
            CookieIn::Ours {
                order,
                version,
                epoch,
                issued,
                pending,
                extra,
            } => {
                let mut o = Map::new();
                for (k, v) in extra {
                    o.insert(k.clone(), v.to_json(depth + 1));
                }
                for (k, v) in [
                    ("order", order.to_json(depth)),
                    ("version", version.to_json(depth)),
                    ("epoch", epoch.to_json(world, depth)),
                    ("t", issued.to_json(depth)),
                    ("p", pending.to_json(depth)),
                ] {
                    if let Some(v) = v {
                        o.insert(k.into(), v);
                    }
                }
                Value::Object(o)
            }
            CookieIn::Tuple(order, version, epoch, issued, pending) => Value::Array(
                [
                    order.to_json(depth),
                    version.to_json(depth),
                    epoch.to_json(world, depth),
                    issued.to_json(depth),
                    pending.to_json(depth),
                ]
                .into_iter()
                .flatten()
                .collect(),
            ),
            CookieIn::Unsigned(n) => json!(n),
            CookieIn::Signed(n) => json!(n),
            CookieIn::Float(f) => float(*f),
            CookieIn::Text(t) => t.to_json(),
            CookieIn::Json(j) => j.to_json(depth),
        }
    }
}

impl OrderIn {
    fn to_json(&self, depth: usize) -> Option<Value> {
        Some(match self {
            OrderIn::Small(n) => json!(n),
            OrderIn::Unsigned(n) => json!(n),
            OrderIn::Signed(n) => json!(n),
            OrderIn::Float(f) => float(*f),
            OrderIn::Text(t) => t.to_json(),
            OrderIn::Json(j) => j.to_json(depth + 1),
            OrderIn::Missing => return None,
        })
    }
}

impl TextIn {
    fn to_json(&self) -> Value {
        match self {
            TextIn::Plain(s) => json!(s),
            TextIn::Counted(prefix, n) => {
                json!(format!("{prefix}~{:016}", n % 10_000_000_000_000_000))
            }
            TextIn::Digits(n) => json!(n.to_string()),
        }
    }
}

impl VersionIn {
    fn to_json(&self, depth: usize) -> Option<Value> {
        Some(match self {
            VersionIn::Small(n) => json!(n % 12),
            VersionIn::Unsigned(n) => json!(n),
            VersionIn::Json(j) => j.to_json(depth + 1),
            VersionIn::Missing => return None,
        })
    }
}

impl EpochIn {
    fn to_json(&self, world: &World, depth: usize) -> Option<Value> {
        Some(match self {
            EpochIn::Of(space) => json!(world.space(space.name()).epoch),
            EpochIn::Other(s) => json!(s),
            EpochIn::Json(j) => j.to_json(depth + 1),
            EpochIn::Missing => return None,
        })
    }
}

impl IssuedIn {
    fn to_json(&self, depth: usize) -> Option<Value> {
        Some(match self {
            IssuedIn::Now => json!(NOW),
            IssuedIn::Ago(s) => json!(NOW.saturating_add_signed(-i64::from(*s))),
            IssuedIn::Any(t) => json!(t),
            IssuedIn::Json(j) => j.to_json(depth + 1),
            IssuedIn::Missing => return None,
        })
    }
}

impl PendingIn {
    fn to_json(&self, depth: usize) -> Option<Value> {
        Some(match self {
            PendingIn::Owed(lmids) => Value::Object(
                lmids
                    .iter()
                    .map(|(c, l)| {
                        let c = match c {
                            ClientPick::C1 => "c1",
                            ClientPick::C2 => "c2",
                            ClientPick::D1 => "d1",
                            ClientPick::E1 => "e1",
                            ClientPick::Other(other) => other,
                        };
                        (c.to_owned(), json!(l))
                    })
                    .collect(),
            ),
            PendingIn::Json(j) => j.to_json(depth + 1),
            PendingIn::Missing => return None,
        })
    }
}

impl JsonIn {
    fn to_json(&self, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        match self {
            JsonIn::Null => Value::Null,
            JsonIn::Bool(b) => json!(b),
            JsonIn::Signed(n) => json!(n),
            JsonIn::Unsigned(n) => json!(n),
            JsonIn::Float(f) => float(*f),
            JsonIn::Text(s) => json!(s),
            JsonIn::Array(items) => items.iter().map(|i| i.to_json(depth + 1)).collect(),
            JsonIn::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json(depth + 1)))
                    .collect(),
            ),
        }
    }
}

/// A mutation.
fn m(client: &str, id: u64, name: &str, args: Value) -> Value {
    json!({"clientID": client, "id": id, "name": name, "args": args, "timestamp": 1.5})
}

/// A push body.
fn push_body(group: &str, mutations: Vec<Value>) -> Value {
    json!({
        "pushVersion": 1, "schemaVersion": "", "profileID": "p",
        "clientGroupID": group, "mutations": mutations,
    })
}

/// A pull body.
fn pull_body(group: &str, cookie: Value) -> Value {
    json!({
        "pullVersion": 1, "schemaVersion": "", "profileID": "p",
        "clientGroupID": group, "cookie": cookie,
    })
}

/// Inputs to start fuzzing from, and that the suite always replays: `(target, input)`.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut seeds = Vec::new();
    let http =
        |query: &str, user: &str, body: Value| format!("{query}\n{user}\n{body}").into_bytes();
    for (space, user, group, mutations) in history() {
        seeds.push((
            "push",
            http(
                &format!("spaceID={space}"),
                user,
                push_body(group, mutations),
            ),
        ));
    }
    let more = [
        vec![
            m("c1", 1, "incr", json!({"key": "n", "by": 2})),
            m("c1", 2, "count", json!({"prefix": "", "into": "total"})),
            m(
                "c2",
                1,
                "scanPage",
                json!({"prefix": "", "start": "m", "exclusive": true, "limit": 2, "into": "page"}),
            ),
        ],
        vec![
            m("c1", 1, "readThenFail", json!({"keys": ["a", "b"]})),
            m(
                "c1",
                2,
                "putMany",
                json!({"keys": ["x", "y"], "value": [1], "read": "a"}),
            ),
            m("c1", 1, "put", json!({"key": "dup", "value": 0})),
        ],
        vec![m("c1", 2, "put", json!({"key": "future", "value": 1}))],
        vec![m("c1", 1, "nosuch", json!(null))],
    ];
    for mutations in more {
        seeds.push(("push", http("spaceID=s", "u", push_body("g", mutations))));
    }
    seeds.push(("push", br#"{"pushVersion": 0}"#.to_vec()));
    WORLD.with(|world| {
        for space in &world.spaces {
            for (user, group) in [("alice", "g1"), ("bob", "g2"), ("carol", "g3")] {
                let version = space.version();
                let cookies = [
                    Value::Null,
                    json!({"order": 0, "version": 0, "epoch": "", "t": NOW}),
                    json!({"order": 3, "version": 3, "epoch": space.epoch, "t": NOW}),
                    json!({"order": version, "version": version, "epoch": space.epoch, "t": NOW}),
                    // Too old for the tombstones: a reset.
                    json!({"order": 2, "version": 2, "epoch": space.epoch}),
                    // A page of a sync, owing an lmid.
                    json!({"order": 2, "version": 2, "epoch": space.epoch, "t": NOW, "p": {"c1": 2}}),
                ];
                for cookie in cookies {
                    let body = pull_body(group, cookie);
                    seeds.push(("pull", http(&format!("spaceID={}", space.name), user, body)));
                }
            }
        }
    });
    seeds.push((
        "pull",
        br#"{"pullVersion": 1, "clientGroupID": "g1", "cookie": "7~0000000000000003"}"#.to_vec(),
    ));
    seeds
}
