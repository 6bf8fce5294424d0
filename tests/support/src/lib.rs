//! What the integration suite (`tests/`) and the fuzz targets (`fuzz/`) share, in one place:
//! the application the tests run, the checks the fuzz targets make (which the suite replays
//! over the checked-in corpus), and the client's comparison of cookies.

pub mod app;
pub mod checks;
pub mod cookies;
