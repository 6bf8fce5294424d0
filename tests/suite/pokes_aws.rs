//! Pokes through the real `aws-sdk-apigatewaymanagement` against a local fake of the
//! management API: only after commits, none for a push that commits nothing, a 410 removes
//! the connection, and a slow connection does not hold the push beyond the budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::client::{caller, create, listeners, push_ok};
use integration_tests::fake_management::FakeManagement;
use replicache_dynamodb::engine::{Engine, EngineConfig};
use replicache_dynamodb::lambda::ApiGatewayPoker;
use replicache_dynamodb::store::memory::MemoryStore;
use replicache_dynamodb::store::{Address, Record, Store};

#[tokio::test(flavor = "multi_thread")]
async fn pokes_go_out_after_commits_through_the_management_api() {
    let fake = FakeManagement::start().await;
    let store = Arc::new(MemoryStore::new());
    let poker = ApiGatewayPoker::new(fake.client(), Duration::from_millis(300), 4);
    let e = Engine::new(
        store.clone(),
        crate::app_for_tests(),
        EngineConfig::default(),
    )
    .with_poker(Arc::new(poker));
    // Each post records the space's version the store shows at that moment.
    let watched = store.clone();
    let handle = tokio::runtime::Handle::current();
    fake.observe(Arc::new(move |_| {
        let store = watched.clone();
        tokio::task::block_in_place(|| {
            handle.block_on(async move {
                match store
                    .get(&[Address::Space {
                        space: "room".into(),
                    }])
                    .await
                    .unwrap()
                    .pop()
                    .flatten()
                {
                    Some(Record::Space(m)) => m.version,
                    _ => 0,
                }
            })
        })
    }));
    let me = caller("alice", "room");
    for id in ["live-1", "live-2", "gone-1"] {
        e.connect(&me, id).await.unwrap();
    }
    e.connect(&caller("bob", "elsewhere"), "other-space")
        .await
        .unwrap();
    fake.open("live-1");
    fake.open("live-2");
    fake.open("other-space");

    push_ok(&e, &me, "g1", vec![create("c1", 1, "a", 1)]).await;
    let mut posts = fake.take();
    posts.sort();
    assert_eq!(
        posts,
        [
            ("live-1".into(), "poke".into(), 1),
            ("live-2".into(), "poke".into(), 1)
        ],
        "each live connection of the space poked once, after version 1 was committed"
    );
    assert_eq!(
        listeners(store.as_ref(), "room").await,
        ["live-1", "live-2"],
        "the 410 removed gone-1"
    );

    push_ok(&e, &me, "g1", vec![create("c1", 1, "a", 1)]).await;
    assert!(
        fake.take().is_empty(),
        "a push that commits nothing pokes nobody"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_connection_does_not_hold_the_push() {
    let fake = FakeManagement::start().await;
    let store = Arc::new(MemoryStore::new());
    let budget = Duration::from_millis(200);
    let slow = Duration::from_secs(10);
    let poker = ApiGatewayPoker::new(fake.client(), budget, 4);
    let e = Engine::new(
        store.clone(),
        crate::app_for_tests(),
        EngineConfig::default(),
    )
    .with_poker(Arc::new(poker));
    let me = caller("alice", "room");
    e.connect(&me, "fast").await.unwrap();
    e.connect(&me, "stuck").await.unwrap();
    fake.open("fast");
    fake.slow("stuck", slow);
    let started = Instant::now();
    push_ok(&e, &me, "g1", vec![create("c1", 1, "a", 1)]).await;
    let took = started.elapsed();
    assert!(
        took < slow / 2,
        "the push waited {took:?} for a connection that takes {slow:?}"
    );
    let posts = fake.take();
    assert_eq!(
        posts.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
        ["fast"]
    );
    assert_eq!(
        listeners(store.as_ref(), "room").await,
        ["fast", "stuck"],
        "slow is not gone"
    );
}
