//! The store contract itself, on both stores: what the engine's pulls rely on from
//! [`Store::changes`], and what the in-memory store keeps besides the records.

use std::collections::BTreeMap;

use replicache_dynamodb::store::memory::MemoryStore;
use replicache_dynamodb::store::{
    all_pages, Address, Client, Entity, Expect, Record, Store, Version, Write,
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

on_both_stores! {
    async fn changes_list_each_record_once_at_its_latest_version(backend) {
        const BIG: usize = 180_000;
        let store = backend.store().await;
        let store = store.as_ref();
        // Six commits in each of two spaces: values overwritten later, a tombstone, clients;
        // over a megabyte in all, so that a full read takes more than one page.
        for space in ["s", "t"] {
            put(store, vec![entity(space, "a", 1, Some(BIG)), entity(space, "b", 1, Some(BIG)), client(space, "x", 1)]).await;
            put(store, vec![entity(space, "c", 2, Some(BIG)), entity(space, "d", 2, Some(BIG)), entity(space, "g", 2, Some(BIG))]).await;
            put(store, vec![entity(space, "a", 3, Some(10)), client(space, "x", 3)]).await;
            put(store, vec![entity(space, "e", 4, Some(BIG)), entity(space, "f", 4, Some(BIG)), entity(space, "h", 4, Some(BIG))]).await;
            put(store, vec![entity(space, "c", 5, Some(BIG)), client(space, "y", 5)]).await;
            put(store, vec![entity(space, "b", 6, None)]).await;
        }
        let latest = by_address(&[
            entity("s", "a", 3, Some(10)),
            entity("s", "b", 6, None),
            entity("s", "c", 5, Some(BIG)),
            entity("s", "d", 2, Some(BIG)),
            entity("s", "e", 4, Some(BIG)),
            entity("s", "f", 4, Some(BIG)),
            entity("s", "g", 2, Some(BIG)),
            entity("s", "h", 4, Some(BIG)),
            client("s", "x", 3),
            client("s", "y", 5),
        ]);
        for after in 0..=6 {
            let mut pages = 0;
            let records = all_pages(|page| {
                pages += 1;
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
