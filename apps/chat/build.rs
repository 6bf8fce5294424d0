//! Picks the JavaScript app compiled into the chat crate, and so into the functions and the
//! dev server: `APP_BUNDLE` at build time (a JavaScript developer's own bundle, deployed
//! without a line of Rust), or the chat's own `web/src/mutators.js`.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=APP_BUNDLE");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let bundle = match std::env::var_os("APP_BUNDLE").filter(|v| !v.is_empty()) {
        Some(path) => manifest.join(path),
        None => manifest.join("../../web/src/mutators.js"),
    };
    println!("cargo:rerun-if-changed={}", bundle.display());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("app.js");
    if let Err(e) = std::fs::copy(&bundle, &out) {
        eprintln!("APP_BUNDLE: cannot read {}: {e}", bundle.display());
        std::process::exit(1);
    }
    println!("cargo:rustc-env=APP_BUNDLE_NAME={}", bundle.display());
}
