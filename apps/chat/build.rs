//! Picks the JavaScript app compiled into the chat crate, and so into the functions and the
//! dev server: `APP_BUNDLE` at build time (a JavaScript developer's own bundle, deployed
//! without a line of Rust), or the chat's own `apps/chat/web/src/mutators.js`.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=APP_BUNDLE");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    // Relative paths are the repository root's, as for `./scripts/dev`, which runs from there
    // and also hands the variable to the dev server at run time.
    let root = manifest.join("../..");
    let name = std::env::var_os("APP_BUNDLE")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "apps/chat/web/src/mutators.js".into());
    let bundle = root.join(&name);
    println!("cargo:rerun-if-changed={}", bundle.display());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("app.js");
    if let Err(e) = std::fs::copy(&bundle, &out) {
        eprintln!("APP_BUNDLE: cannot read {}: {e}", bundle.display());
        std::process::exit(1);
    }
    println!("cargo:rustc-env=APP_BUNDLE_NAME={}", name.to_string_lossy());
}
