//! `dsession policy new`, as a policy author outside this repository uses
//! it: scaffold, build, check, test (in memory and on Redis), `cargo test`,
//! and a hot swap into a running `dsession serve`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::serving::{auth, issue, reloads, serve_watching, wait_for};
use super::{code, dsession, passes_the_kit, stderr, stdout};

/// The repository's SDK crate, for `--sdk`.
fn sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest/sdk")
}

/// A target directory kept across runs, so that the scaffolded crate's
/// dependencies build once.
fn target_dir() -> PathBuf {
    let workspace_target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    workspace_target.join("scaffold")
}

/// Runs `command` in `dir` with the shared target directory, timed; panics
/// with its output when it fails.
fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let started = Instant::now();
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .env("DSESSION", env!("CARGO_BIN_EXE_dsession"))
        .env_remove("DSESSION_REDIS_URL")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("the command runs");
    let out = format!("{}{}", stdout(&output), stderr(&output));
    assert!(output.status.success(), "{program} {args:?} failed:\n{out}");
    eprintln!(
        "{program} {args:?}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    out
}

#[test]
fn a_scaffolded_policy_builds_passes_the_kit_and_swaps_into_a_running_service() {
    let outside = tempfile::tempdir().unwrap();
    let sdk = sdk().display().to_string();
    let parent = outside.path().display().to_string();
    let started = Instant::now();
    let created = dsession(&[
        "policy",
        "new",
        "my-policy",
        "--path",
        &parent,
        "--sdk",
        &sdk,
    ]);
    assert_eq!(code(&created), 0, "{created:?}");
    eprintln!(
        "dsession policy new: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let root = outside.path().join("my-policy");
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "tests/conformance.rs",
        "README.md",
        ".gitignore",
    ] {
        assert!(root.join(file).is_file(), "no {file}");
    }
    let again = dsession(&["policy", "new", "my-policy", "--path", &parent]);
    assert_eq!(
        code(&again),
        2,
        "a second scaffold over the first must be refused"
    );

    run(
        &root,
        "cargo",
        &["build", "--release", "--target", "wasm32-wasip2"],
    );
    let component = target_dir().join("wasm32-wasip2/release/my_policy.wasm");
    let component_arg = component.display().to_string();

    let checked = dsession(&["policy", "check", &component_arg]);
    assert_eq!(code(&checked), 0, "{checked:?}");
    assert!(stdout(&checked).contains("self-check with the default settings: passed"));

    let redis = passes_the_kit(&component_arg, "skip  single mode", &[]);
    let url = redis.url();

    // The crate's own test builds the component and runs the kit.
    let tested = run(&root, "cargo", &["test"]);
    assert!(
        tested.contains("the_policy_keeps_the_contract ... ok"),
        "{tested}"
    );

    // A service on the default policy, then the new one swapped in.
    let (process, serving) = serve_watching(outside.path(), &url, &[]);
    let port = process.port;
    let before = issue(&url, "default", "alice");
    assert_eq!(auth(&process, &before), 200);

    let swapped = Instant::now();
    std::fs::copy(&component, &serving).unwrap();
    wait_for(|| reloads(port) == 1, "the new policy was not swapped in");
    eprintln!("hot swap: {:.1} s", swapped.elapsed().as_secs_f64());
    let after = issue(&url, &component_arg, "bob");
    assert_eq!(auth(&process, &after), 200, "the new policy's token");
    assert_eq!(
        auth(&process, &before),
        401,
        "the new policy keeps its tokens elsewhere than the default one"
    );
}
