//! Concurrency on DynamoDB Local: client groups pushing into one space at once, several of
//! them read-modify-writing shared keys. Every mutation must apply exactly once, every lmid
//! be exact, and a final pull equal the serial replay. The workload is chosen so that the
//! replay has one answer whatever order the groups' pushes committed in (increments commute;
//! each group's other keys are its own), so it can be checked from outside the store.

use std::collections::BTreeMap;
use std::time::Instant;

use integration_tests::client::{caller, mutation, push_request, View};
use integration_tests::Backend;
use replicache_dynamodb::engine::EngineError;
use replicache_dynamodb::protocol::{Mutation, Reply};
use serde_json::{json, Value};

use crate::engine;

const GROUPS: usize = 8;
const MUTATIONS: u64 = 50;
const SHARED_COUNTERS: usize = 3;

fn workload(g: usize) -> Vec<Mutation> {
    let client = format!("client{g}");
    let mut rng = fastrand::Rng::with_seed(g as u64);
    (1..=MUTATIONS)
        .map(|id| {
            let (name, args) = match id % 5 {
                // Read-modify-write on keys every group touches.
                0 | 1 => ("incr", json!({"key": format!("counter/{}", rng.usize(0..SHARED_COUNTERS)), "by": 1 + (id % 3)})),
                2 => ("createMessage", json!({"id": format!("g{g}-{id}"), "from": format!("user{g}"), "content": format!("message {id}"), "order": id})),
                3 => ("deleteMessage", json!({"id": format!("g{g}-{}", id - 1)})),
                _ => ("incr", json!({"key": format!("own/{g}"), "by": 1})),
            };
            mutation(&client, id, name, args)
        })
        .collect()
}

/// The serial replay of every group's workload.
fn expected() -> BTreeMap<String, Value> {
    let mut data = BTreeMap::new();
    let mut counters: BTreeMap<String, u64> = BTreeMap::new();
    for g in 0..GROUPS {
        for m in workload(g) {
            let a = &m.args;
            match m.name.as_str() {
                "incr" => {
                    *counters
                        .entry(a["key"].as_str().unwrap().to_owned())
                        .or_default() += a["by"].as_u64().unwrap()
                }
                "createMessage" => {
                    data.insert(
                        format!("message/{}", a["id"].as_str().unwrap()),
                        json!({"from": a["from"], "content": a["content"], "order": a["order"]}),
                    );
                }
                "deleteMessage" => {
                    data.remove(&format!("message/{}", a["id"].as_str().unwrap()));
                }
                _ => unreachable!(),
            }
        }
    }
    data.extend(counters.into_iter().map(|(k, v)| (k, json!(v))));
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_groups_pushing_concurrently_into_one_space() {
    let e = engine(Backend::DynamoDb.store().await);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for g in 0..GROUPS {
        let e = e.clone();
        tasks.spawn(async move {
            let me = caller(&format!("user{g}"), "shared-space");
            let group = format!("group{g}");
            let all = workload(g);
            let mut rng = fastrand::Rng::with_seed(1000 + g as u64);
            let (mut released, mut lmid, mut pushes, mut unavailable) = (0usize, 0u64, 0u32, 0u32);
            let mut view = View::default();
            while lmid < MUTATIONS {
                // Like the real client: every push carries all pending mutations.
                released = (released + rng.usize(1..=8)).min(all.len());
                let pending: Vec<Mutation> = all[..released]
                    .iter()
                    .filter(|m| m.id > lmid)
                    .cloned()
                    .collect();
                pushes += 1;
                match e.push(&me, &push_request(&group, pending)).await {
                    Ok(Reply::Ok(())) => {}
                    Err(EngineError::Unavailable(_)) => unavailable += 1,
                    other => panic!("push of {group} failed: {other:?}"),
                }
                let r = view.sync(&e, &me, &group).await;
                if let Some(l) = r.last_mutation_id_changes.get(&format!("client{g}")) {
                    lmid = *l;
                }
                assert!(pushes < 1000, "{group} makes no progress");
            }
            (pushes, unavailable)
        });
    }
    let (mut pushes, mut unavailable) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (p, u) = r.expect("pusher");
        pushes += p;
        unavailable += u;
    }
    let elapsed = started.elapsed();

    let mut view = View::default();
    let observer = caller("observer", "shared-space");
    view.sync(&e, &observer, "observer-group").await;
    assert_eq!(
        view.data,
        expected(),
        "final state differs from the serial replay"
    );
    for g in 0..GROUPS {
        let mine = View::default()
            .sync(
                &e,
                &caller(&format!("user{g}"), "shared-space"),
                &format!("group{g}"),
            )
            .await;
        assert_eq!(
            mine.last_mutation_id_changes.get(&format!("client{g}")),
            Some(&MUTATIONS)
        );
    }
    let version = view.cookie["version"].as_u64().unwrap();
    eprintln!(
        "concurrency on DynamoDB Local: {GROUPS} groups x {MUTATIONS} mutations in {:.2} s: \
         {pushes} pushes, {unavailable} answered 503 after conflicts, {version} commits",
        elapsed.as_secs_f64()
    );
}
