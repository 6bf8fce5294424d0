//! The application the tests run: the chat mutators plus generic ones that exercise reads
//! (read-modify-write, scans) and raw keys and values.

use async_trait::async_trait;
use replicache_dynamodb::{chat, MutationError, Mutator, Mutators, Tx};
use serde::Deserialize;
use serde_json::{json, Value};

/// `put {key, value}`.
pub struct Put;
/// Arguments of [`Put`].
#[derive(Deserialize)]
pub struct PutArgs {
    key: String,
    value: Value,
}
#[async_trait]
impl Mutator for Put {
    type Args = PutArgs;
    async fn apply(&self, tx: &mut Tx<'_>, a: PutArgs) -> Result<(), MutationError> {
        tx.put(&a.key, &a.value)
    }
}

/// `del {key}`.
pub struct Del;
/// Arguments of [`Del`].
#[derive(Deserialize)]
pub struct DelArgs {
    key: String,
}
#[async_trait]
impl Mutator for Del {
    type Args = DelArgs;
    async fn apply(&self, tx: &mut Tx<'_>, a: DelArgs) -> Result<(), MutationError> {
        tx.del(&a.key)
    }
}

/// `incr {key, by}`: reads a number and writes it back increased (0 when absent).
pub struct Incr;
/// Arguments of [`Incr`].
#[derive(Deserialize)]
pub struct IncrArgs {
    key: String,
    by: i64,
}
#[async_trait]
impl Mutator for Incr {
    type Args = IncrArgs;
    async fn apply(&self, tx: &mut Tx<'_>, a: IncrArgs) -> Result<(), MutationError> {
        let current = tx.get(&a.key).await?.and_then(|v| v.as_i64()).unwrap_or(0);
        tx.put(&a.key, &json!(current + a.by))
    }
}

/// `count {prefix, into}`: writes the number of keys under `prefix` to `into`.
pub struct Count;
/// Arguments of [`Count`].
#[derive(Deserialize)]
pub struct CountArgs {
    prefix: String,
    into: String,
}
#[async_trait]
impl Mutator for Count {
    type Args = CountArgs;
    async fn apply(&self, tx: &mut Tx<'_>, a: CountArgs) -> Result<(), MutationError> {
        let n = tx.scan(&a.prefix).await?.len();
        tx.put(&a.into, &json!(n))
    }
}

/// `putMany {keys, value, read?}`: reads `read` if given, then writes every key.
pub struct PutMany;
/// Arguments of [`PutMany`].
#[derive(Deserialize)]
pub struct PutManyArgs {
    keys: Vec<String>,
    value: Value,
    #[serde(default)]
    read: Option<String>,
}
#[async_trait]
impl Mutator for PutMany {
    type Args = PutManyArgs;
    async fn apply(&self, tx: &mut Tx<'_>, a: PutManyArgs) -> Result<(), MutationError> {
        if let Some(k) = &a.read {
            tx.get(k).await?;
        }
        for k in &a.keys {
            tx.put(k, &a.value)?;
        }
        Ok(())
    }
}

/// `readThenFail {keys}`: reads every key, then rejects the mutation (a rule that depends on
/// what it read).
pub struct ReadThenFail;
/// Arguments of [`ReadThenFail`].
#[derive(Deserialize)]
pub struct ReadThenFailArgs {
    keys: Vec<String>,
}
#[async_trait]
impl Mutator for ReadThenFail {
    type Args = ReadThenFailArgs;
    async fn apply(&self, tx: &mut Tx<'_>, a: ReadThenFailArgs) -> Result<(), MutationError> {
        for k in &a.keys {
            tx.get(k).await?;
        }
        Err(MutationError::Invalid("rejected after reading".into()))
    }
}

/// `fail {}`: a business rule that always rejects, after writing (the write must vanish).
pub struct Fail;
#[async_trait]
impl Mutator for Fail {
    type Args = Value;
    async fn apply(&self, tx: &mut Tx<'_>, _: Value) -> Result<(), MutationError> {
        tx.put("fail/written", &json!(true))?;
        Err(MutationError::Invalid("rejected by a business rule".into()))
    }
}

/// The chat mutators and the generic ones above.
pub fn mutators() -> Mutators {
    chat::mutators()
        .register("put", Put)
        .register("del", Del)
        .register("incr", Incr)
        .register("count", Count)
        .register("fail", Fail)
        .register("putMany", PutMany)
        .register("readThenFail", ReadThenFail)
}
