//! `dsession policy new`, as a policy author outside this repository uses
//! it: scaffold, build, check, test (in memory and on Redis), `cargo test`,
//! and a hot swap into a running `dsession serve`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use dsession::Policy;
use dsession_tests::RedisServer;

use super::{auth, code, dsession, issue, reloads, serve, stderr, stdout, wait_for};

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

    let in_memory = dsession(&["policy", "test", &component_arg]);
    assert_eq!(code(&in_memory), 0, "{}", stdout(&in_memory));
    let lines = stdout(&in_memory);
    assert!(lines.contains("pass  refresh-revoke race"), "{lines}");
    assert!(lines.contains("skip  single mode"), "{lines}");

    let redis = RedisServer::start();
    let url = redis.url();
    let on_redis = dsession(&["policy", "test", &component_arg, "--redis", &url]);
    assert_eq!(code(&on_redis), 0, "{}", stdout(&on_redis));

    // The crate's own test builds the component and runs the kit.
    let tested = run(&root, "cargo", &["test"]);
    assert!(
        tested.contains("the_policy_keeps_the_contract ... ok"),
        "{tested}"
    );

    // A service on the default policy, then the new one swapped in.
    let serving = outside.path().join("serving.wasm");
    std::fs::write(&serving, Policy::builtin_component()).unwrap();
    let serving_arg = serving.display().to_string();
    let port = dsession_tests::free_port();
    let listen = format!("127.0.0.1:{port}");
    let process = serve(
        &[
            "--listen",
            &listen,
            "--redis",
            &url,
            "--policy",
            &serving_arg,
            "--watch-policy",
        ],
        &[],
        port,
    );
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
