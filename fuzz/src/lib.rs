//! The fuzz targets' properties. `checks` is shared with the integration suite, which replays
//! the checked-in corpus through it (`tests/suite/fuzz_corpus.rs`); `app` is the suite's test
//! application (`tests/src/app.rs`), whose generic mutators reach every `Tx` call.

#[path = "../../tests/src/app.rs"]
pub mod app;
pub mod checks;
