//! What a push logs of its input: bounded fields, escaped so that no line can be forged, no
//! argument values, and a bounded number of lines however many mutations are rejected.
//! A test binary of its own: see `tests/Cargo.toml`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use integration_tests::app;
use integration_tests::client::{caller, mutation, push_ok};
use integration_tests::Backend;
use replicache_dynamodb::engine::{Engine, EngineConfig};
use serde_json::json;

/// Log output kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("not poisoned").clone()).expect("UTF-8 logs")
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn rejections_are_logged_bounded_escaped_and_without_argument_values() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // This test's thread only (a current-thread runtime): other tests log elsewhere.
    let _guard = tracing::subscriber::set_default(subscriber);

    let e = Engine::new(
        Backend::Memory.store().await,
        app::app(),
        EngineConfig::default(),
    );
    let forged = format!("x\nERROR forged line {}", "n".repeat(1 << 20));
    // `incr` is a Rust mutator with typed arguments: serde's message would quote the value.
    let secret = json!({"key": "counter", "by": "SECRET-VALUE"});
    let mut mutations = vec![
        mutation("c1", 1, &forged, json!({})),
        mutation("c1", 2, "incr", secret),
    ];
    mutations.extend((3..=1_000).map(|id| mutation("c1", id, "fail", json!({}))));
    push_ok(&e, &caller("alice", "room"), "g1", mutations).await;

    let text = logs.text();
    assert!(!text.contains("SECRET-VALUE"), "{text}");
    assert!(
        text.contains("invalid type, expected i64"),
        "says what was wrong: {text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("ERROR forged")),
        "a newline in a name starts no line: {text}"
    );
    assert!(
        text.contains(r#"x\nERROR forged line nnn"#),
        "escaped: {text}"
    );
    let rejections = text.matches("mutation rejected").count();
    assert_eq!(
        rejections, 10,
        "the first ten of 1,000 rejections, one line each"
    );
    assert!(
        text.contains("rejected=1000"),
        "the commit counts them: {text}"
    );
    assert!(text.len() < 8 * 1024, "{} bytes of logs", text.len());
}
