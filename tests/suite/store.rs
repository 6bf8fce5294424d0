//! The store contract itself, on both stores: what the engine's pulls rely on from
//! [`Store::changes`], and what the in-memory store keeps besides the records.

use std::collections::BTreeMap;

use replicache_dynamodb::store::memory::MemoryStore;
use replicache_dynamodb::store::{
    all_pages, Address, Client, Entity, EntityQuery, Expect, Record, Store, Version, Write,
};

use crate::on_both_stores;

/// An entity of `space` at `version`, with a value of `bytes` bytes (`None`: a tombstone).
fn entity(space: &str, key: &str, version: Version, bytes: Option<usize>) -> Record {
    Record::Entity(Entity {
        space: space.into(),
        key: key.into(),
        version,
        value: bytes.map(|n| format!("\"{}\"", "x".repeat(n))),
        expires_at: None,
    })
}

fn client(space: &str, id: &str, version: Version) -> Record {
    Record::Client(Client {
        space: space.into(),
        id: id.into(),
        group: "g".into(),
        version,
        lmid: version,
        expires_at: None,
    })
}

async fn put(store: &dyn Store, records: Vec<Record>) {
    let writes = records
        .into_iter()
        .map(|record| Write::Put {
            record,
            expect: Expect::Any,
        })
        .collect();
    store.write(writes).await.expect("write");
}

/// The records of a query, keyed by address, with their version.
fn by_address(records: &[Record]) -> BTreeMap<Address, Record> {
    records.iter().map(|r| (r.address(), r.clone())).collect()
}

/// Bytes of a big value: a few of them fill more than one page of a query (1 MB).
const BIG: usize = 180_000;

/// Six commits in each of spaces `s` and `t`: values overwritten later, a tombstone, clients,
/// over a megabyte in all. Returns the records of `s` as they stand.
async fn fill(store: &dyn Store) -> BTreeMap<Address, Record> {
    for space in ["s", "t"] {
        let big = |key, version| entity(space, key, version, Some(BIG));
        put(store, vec![big("a", 1), big("b", 1), client(space, "x", 1)]).await;
        put(
            store,
            vec![big("c", 2), big("d", 2), big("g", 2), big("i", 2)],
        )
        .await;
        put(
            store,
            vec![entity(space, "a", 3, Some(10)), client(space, "x", 3)],
        )
        .await;
        put(
            store,
            vec![big("e", 4), big("f", 4), big("h", 4), big("j", 4)],
        )
        .await;
        put(store, vec![big("c", 5), client(space, "y", 5)]).await;
        put(store, vec![entity(space, "b", 6, None)]).await;
    }
    by_address(&[
        entity("s", "a", 3, Some(10)),
        entity("s", "b", 6, None),
        entity("s", "c", 5, Some(BIG)),
        entity("s", "d", 2, Some(BIG)),
        entity("s", "e", 4, Some(BIG)),
        entity("s", "f", 4, Some(BIG)),
        entity("s", "g", 2, Some(BIG)),
        entity("s", "h", 4, Some(BIG)),
        entity("s", "i", 2, Some(BIG)),
        entity("s", "j", 4, Some(BIG)),
        client("s", "x", 3),
        client("s", "y", 5),
    ])
}

on_both_stores! {
    async fn changes_list_each_record_once_at_its_latest_version(backend) {
        let store = backend.store().await;
        let store = store.as_ref();
        let latest = fill(store).await;
        for after in 0..=6 {
            let mut pages = 0;
            let records = all_pages(|page| {
                pages += 1;
                assert!(pages < 100, "the pages never end");
                store.changes("s", after, page)
            })
            .await
            .expect("changes");
            let versions: Vec<Version> = records.iter().filter_map(Record::row_version).collect();
            assert_eq!(versions.len(), records.len(), "only versioned records");
            assert!(versions.is_sorted(), "in version order, after {after}: {versions:?}");
            assert_eq!(by_address(&records).len(), records.len(), "each record once, after {after}");
            let expected: BTreeMap<Address, Record> = latest
                .iter()
                .filter(|(_, r)| r.row_version() > Some(after))
                .map(|(a, r)| (a.clone(), r.clone()))
                .collect();
            assert_eq!(by_address(&records), expected, "after {after}");
            if after == 0 {
                assert!(pages >= 2, "a full read takes pages ({pages})");
            }
        }
    }
}

on_both_stores! {
    async fn entities_list_each_key_once_in_key_order(backend) {
        let store = backend.store().await;
        let store = store.as_ref();
        let latest = fill(store).await;
        let mut pages = 0;
        let every = EntityQuery::prefix("");
        let records = all_pages(|page| {
            pages += 1;
            assert!(pages < 100, "the pages never end");
            store.entities("s", &every, page)
        })
        .await
        .expect("entities");
        let expected: Vec<Record> = latest
            .into_values()
            .filter(|r| matches!(r, Record::Entity(_)))
            .collect();
        assert_eq!(records, expected);
        assert!(pages >= 2, "a full read takes pages ({pages})");
    }
}

#[tokio::test]
async fn only_the_adversarial_store_keeps_a_history() {
    let local = MemoryStore::new();
    let adversarial = MemoryStore::adversarial(7);
    for store in [&local, &adversarial] {
        put(store, vec![entity("s", "a", 1, Some(1))]).await;
        put(store, vec![entity("s", "a", 2, Some(2))]).await;
    }
    assert_eq!(local.history(), None);
    assert_eq!(
        adversarial.history(),
        Some(vec![
            vec![entity("s", "a", 1, Some(1))],
            vec![entity("s", "a", 2, Some(2))],
        ])
    );
}
