//! The fuzz targets' checks (`tests/support/src/checks.rs`) over their seeds and the checked-in corpus
//! (`tests/fuzz-corpus/<target>/`: minimized with `cargo fuzz cmin`, plus every input that
//! once failed, named `regression-*`), so that `cargo test` keeps them passing without
//! nightly. Fuzzing itself: `fuzz/README.md`.

use std::path::{Path, PathBuf};

use test_support::checks;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-corpus")
        .join(target)
}

/// Runs `check` on every seed and corpus file of `target`; returns how many corpus files.
/// A missing corpus directory fails: the replay would otherwise prove nothing.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let mut inputs: Vec<(String, Vec<u8>)> = checks::seeds()
        .into_iter()
        .filter(|(t, _)| *t == target)
        .enumerate()
        .map(|(i, (_, data))| (format!("seed {i}"), data))
        .collect();
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus {} cannot be read: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    let corpus = files.len();
    for file in files {
        let data = std::fs::read(&file).expect("a corpus file");
        inputs.push((file.display().to_string(), data));
    }
    for (name, data) in inputs {
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            eprintln!(
                "{target} failed on {name}: {:?}",
                String::from_utf8_lossy(&data)
            );
            std::panic::resume_unwind(panic);
        }
    }
    corpus
}

/// Corpus files committed for each target (minimized after 10 million executions, plus
/// regressions): a replay of fewer means the corpus was lost or shrunk by mistake.
const COMMITTED: [(&str, usize); 3] = [("push", 499), ("pull", 435), ("cookie", 366)];

fn committed(target: &str) -> usize {
    COMMITTED
        .iter()
        .find(|(t, _)| *t == target)
        .map_or(0, |(_, n)| *n)
}

#[test]
fn push_corpus() {
    assert!(replay("push", checks::push) >= committed("push"));
}

#[test]
fn pull_corpus() {
    assert!(replay("pull", checks::pull) >= committed("pull"));
}

#[test]
fn cookie_corpus() {
    assert!(replay("cookie", checks::cookie) >= committed("cookie"));
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
