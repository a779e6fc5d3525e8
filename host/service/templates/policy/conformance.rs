//! `cargo test` builds the component and runs dsession's conformance kit
//! on it: `dsession policy test`, on the in-memory store, or on the Redis
//! that `DSESSION_REDIS_URL` names. It needs the `dsession` binary (on the
//! PATH, or its path in `DSESSION`) and the `wasm32-wasip2` target.

use std::path::PathBuf;
use std::process::Command;

/// Builds the component as `cargo build --release --target wasm32-wasip2`
/// does, and returns its path.
fn component() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&root)
        .status()
        .expect("cargo runs");
    assert!(built.success(), "the policy does not build");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    target.join("wasm32-wasip2/release/{{crate_name}}.wasm")
}

#[test]
fn the_policy_keeps_the_contract() {
    let component = component();
    let dsession = std::env::var_os("DSESSION").unwrap_or_else(|| "dsession".into());
    let kit = Command::new(&dsession)
        .arg("policy")
        .arg("test")
        .arg(&component)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {dsession:?} (set DSESSION to its path): {e}"));
    assert!(kit.success(), "the policy fails the conformance kit (see above)");
}
