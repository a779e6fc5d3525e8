//! Builds a policy component for `wasm32-wasip2` from a build script.
//!
//! Shared by the build scripts of `dsession` (the built-in policy) and
//! `dsession-tests` (the hostile test policy).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the crate at `crate_dir` in release mode for `wasm32-wasip2` and
/// copies `{artifact}.wasm` into `OUT_DIR`; returns the copy's path.
pub fn build(crate_dir: &Path, artifact: &str) -> PathBuf {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // A target dir of its own: sharing the outer one deadlocks on its lock.
    let target_dir = out_dir.join("guest-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        // A component is a cdylib; natively (tests, clippy) the crate is a plain lib.
        .args(["rustc", "--lib", "--crate-type", "cdylib", "--release"])
        .args(["--target", "wasm32-wasip2", "--manifest-path"])
        .arg(crate_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer build's flags and wrappers (clippy, coverage) are for the host target.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .status()
        .expect("cannot run cargo to build the policy component");
    assert!(
        status.success(),
        "building {} for wasm32-wasip2 failed; is the target installed? (rustup target add wasm32-wasip2)",
        crate_dir.display()
    );
    let built = target_dir
        .join("wasm32-wasip2/release/deps")
        .join(format!("{artifact}.wasm"));
    let copy = out_dir.join(format!("{artifact}.wasm"));
    std::fs::copy(&built, &copy).unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
    for watched in ["src", "Cargo.toml"] {
        println!(
            "cargo:rerun-if-changed={}",
            crate_dir.join(watched).display()
        );
    }
    let root = crate_dir.ancestors().find(|dir| dir.join("wit").is_dir());
    if let Some(root) = root {
        println!("cargo:rerun-if-changed={}", root.join("wit").display());
        println!(
            "cargo:rerun-if-changed={}",
            root.join("Cargo.lock").display()
        );
    }
    copy
}
