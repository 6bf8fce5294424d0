//! The fuzz targets' checks (`fuzz/src/checks.rs`) over their seeds and the checked-in corpus
//! (`tests/fuzz-corpus/<target>/`: minimized with `cargo fuzz cmin`, plus every input that
//! once failed, named `regression-*`), so that `cargo test` keeps them passing without
//! nightly. Fuzzing itself: `fuzz/README.md`.

use std::path::{Path, PathBuf};

use integration_tests::app;

#[path = "../../fuzz/src/checks.rs"]
mod checks;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-corpus")
        .join(target)
}

/// Runs `check` on every seed and corpus file of `target`; returns how many.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let mut inputs: Vec<(String, Vec<u8>)> = checks::seeds()
        .into_iter()
        .filter(|(t, _)| *t == target)
        .enumerate()
        .map(|(i, (_, data))| (format!("seed {i}"), data))
        .collect();
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(target))
        .map(|dir| dir.map(|e| e.expect("a corpus entry").path()).collect())
        .unwrap_or_default();
    files.sort();
    for file in files {
        let data = std::fs::read(&file).expect("a corpus file");
        inputs.push((file.display().to_string(), data));
    }
    let count = inputs.len();
    for (name, data) in inputs {
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            eprintln!(
                "{target} failed on {name}: {:?}",
                String::from_utf8_lossy(&data)
            );
            std::panic::resume_unwind(panic);
        }
    }
    count
}

#[test]
fn push_corpus() {
    assert!(replay("push", checks::push) > 10);
}

#[test]
fn pull_corpus() {
    assert!(replay("pull", checks::pull) > 10);
}

#[test]
fn cookie_corpus() {
    replay("cookie", checks::cookie);
}

/// Writes the seeds into `fuzz/corpus/<target>/` to start fuzzing from: `cargo test -p
/// integration-tests fuzz_corpus::write_seeds -- --ignored`.
#[test]
#[ignore = "a tool for starting to fuzz"]
fn write_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (i, (target, data)) in checks::seeds().into_iter().enumerate() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("a corpus directory");
        std::fs::write(dir.join(format!("seed-{i:03}")), data).expect("a seed");
    }
}
