//! The application the tests run: the chat mutators (the client's own JavaScript) plus generic
//! Rust ones that exercise reads (read-modify-write, scans) and raw keys and values.

use replicache_dynamodb::js::JsApp;
use replicache_dynamodb::{reject, App, Mutators, Result, Scan, Tx};
use serde::Deserialize;
use serde_json::{json, Value};

/// Arguments of `put`.
#[derive(Deserialize)]
pub struct PutArgs {
    key: String,
    value: Value,
}

/// Arguments of `del`.
#[derive(Deserialize)]
pub struct DelArgs {
    key: String,
}

/// Arguments of `incr`.
#[derive(Deserialize)]
pub struct IncrArgs {
    key: String,
    by: i64,
}

/// Arguments of `count`.
#[derive(Deserialize)]
pub struct CountArgs {
    prefix: String,
    into: String,
}

/// Arguments of `putMany`.
#[derive(Deserialize)]
pub struct PutManyArgs {
    keys: Vec<String>,
    value: Value,
    #[serde(default)]
    read: Option<String>,
}

/// Arguments of `copy`.
#[derive(Deserialize)]
pub struct CopyArgs {
    from: String,
    to: String,
}

/// Arguments of `readThenFail`.
#[derive(Deserialize)]
pub struct ReadThenFailArgs {
    keys: Vec<String>,
}

/// `put {key, value}`.
pub async fn put(tx: Tx, a: PutArgs) -> Result<()> {
    tx.set(&a.key, &a.value).await
}

/// `del {key}`.
pub async fn del(tx: Tx, a: DelArgs) -> Result<()> {
    tx.del(&a.key).await
}

/// `incr {key, by}`: reads a number and writes it back increased (0 when absent).
pub async fn incr(tx: Tx, a: IncrArgs) -> Result<()> {
    let current = tx
        .get::<Value>(&a.key)
        .await?
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    tx.set(&a.key, &json!(current + a.by)).await
}

/// `count {prefix, into}`: writes the number of keys under `prefix` to `into`.
pub async fn count(tx: Tx, a: CountArgs) -> Result<()> {
    let n = tx.scan::<Value>(Scan::prefix(a.prefix)).await?.len();
    tx.set(&a.into, &json!(n)).await
}

/// `putMany {keys, value, read?}`: reads `read` if given, then writes every key.
pub async fn put_many(tx: Tx, a: PutManyArgs) -> Result<()> {
    if let Some(k) = &a.read {
        tx.get::<Value>(k).await?;
    }
    for k in &a.keys {
        tx.set(k, &a.value).await?;
    }
    Ok(())
}

/// `copy {from, to}`: sets `to` to the value of `from`, or deletes `to` when `from` is absent.
/// What it writes depends on a key it only reads, so only the commit's check on `from` can
/// tell that the copy is stale.
pub async fn copy(tx: Tx, a: CopyArgs) -> Result<()> {
    match tx.get::<Value>(&a.from).await? {
        Some(value) => tx.set(&a.to, &value).await,
        None => tx.del(&a.to).await,
    }
}

/// `readThenFail {keys}`: reads every key, then rejects the mutation (a rule that depends on
/// what it read).
pub async fn read_then_fail(tx: Tx, a: ReadThenFailArgs) -> Result<()> {
    for k in &a.keys {
        tx.get::<Value>(k).await?;
    }
    Err(reject("rejected after reading"))
}

/// `fail {}`: a business rule that always rejects, after writing (the write must vanish).
pub async fn fail(tx: Tx, _: Value) -> Result<()> {
    tx.set("fail/written", &true).await?;
    Err(reject("rejected by a business rule"))
}

/// The generic mutators above (the chat's are JavaScript: [`app`] adds them).
pub fn mutators() -> Mutators {
    Mutators::new()
        .register("put", put)
        .register("del", del)
        .register("incr", incr)
        .register("count", count)
        .register("fail", fail)
        .register("putMany", put_many)
        .register("readThenFail", read_then_fail)
        .register("copy", copy)
        .register("scanPage", scan_page)
}

/// The test application: [`mutators`], open to everyone.
pub fn app() -> App {
    App::new(mutators()).js(js())
}

/// The chat's JavaScript mutators, with `incrJs`, `countJs` and `scanPageJs`: `incr`,
/// `count` and `scanPage` in JavaScript (`rmw.js`).
pub fn js() -> JsApp {
    let source = format!("{}\n{}", chat::MUTATORS_JS, include_str!("rmw.js"));
    JsApp::from_source("chat-and-rmw.js", &source).expect("the test mutators load")
}

/// Arguments of `scanPage`.
#[derive(Deserialize)]
pub struct ScanPageArgs {
    prefix: String,
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    exclusive: bool,
    #[serde(default)]
    limit: Option<usize>,
    into: String,
    /// Read the keys only ([`Tx::keys`]).
    #[serde(default, rename = "keysOnly")]
    keys_only: bool,
    /// Write `[key, value]` entries instead of keys.
    #[serde(default)]
    values: bool,
}

/// `scanPage {prefix, start?, exclusive?, limit?, into, keysOnly?, values?}`: writes the keys
/// a scan with those options returns to `into` (read with [`Tx::keys`] for `keysOnly`), or
/// its `[key, value]` entries for `values`.
pub async fn scan_page(tx: Tx, a: ScanPageArgs) -> Result<()> {
    let mut scan = Scan::prefix(a.prefix);
    if let Some(start) = a.start {
        scan = if a.exclusive {
            scan.start_after(start)
        } else {
            scan.start_at(start)
        };
    }
    if let Some(limit) = a.limit {
        scan = scan.limit(limit);
    }
    if a.keys_only {
        return tx.set(&a.into, &tx.keys(scan).await?).await;
    }
    let entries = tx.scan::<Value>(scan).await?;
    if a.values {
        return tx.set(&a.into, &entries).await;
    }
    let keys: Vec<String> = entries.into_iter().map(|(k, _)| k).collect();
    tx.set(&a.into, &keys).await
}
