//! The `dsession` binary, run as a user would.

use std::process::{Command, Output};

use dsession_tests::RedisServer;
use serde_json::Value;

fn dsession(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsession"))
        .args(args)
        .env_remove("DSESSION_REDIS_URL")
        .env_remove("DSESSION_POLICY")
        .output()
        .expect("run dsession")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(output)))
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited")
}

#[test]
fn token_commands_share_state_through_redis() {
    let server = RedisServer::start();
    let url = server.url();
    let with_redis = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--redis", &url]);
        dsession(&all)
    };

    let created = with_redis(&[
        "token", "create", "--user", "alice", "--ttl", "100", "--json",
    ]);
    assert_eq!(code(&created), 0, "{created:?}");
    let token = json(&created)["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("alice_"));

    let checked = with_redis(&["token", "check", "--token", &token]);
    assert_eq!(code(&checked), 0);
    assert!(
        stdout(&checked).starts_with("valid: user alice"),
        "{}",
        stdout(&checked)
    );

    let listed = with_redis(&["token", "list", "--user", "alice", "--json"]);
    assert_eq!(json(&listed)["tokens"][0]["token"], token.as_str());

    let refreshed = with_redis(&[
        "token", "refresh", "--token", &token, "--ttl", "500", "--json",
    ]);
    assert_eq!(json(&refreshed)["refreshed"], true);
    let checked = with_redis(&["token", "check", "--token", &token, "--json"]);
    let remaining = json(&checked)["user"]["token_remain_live_time"]
        .as_i64()
        .unwrap();
    assert!((498..=500).contains(&remaining), "{remaining}");

    assert_eq!(
        code(&with_redis(&["token", "revoke", "--token", &token])),
        0
    );
    let checked = with_redis(&["token", "check", "--token", &token]);
    assert_eq!(code(&checked), 1);
    assert_eq!(stdout(&checked).trim(), "not valid");
    let refreshed = with_redis(&["token", "refresh", "--token", &token]);
    assert_eq!(code(&refreshed), 1);

    let second = json(&with_redis(&[
        "token", "create", "--user", "alice", "--json",
    ]))["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        code(&with_redis(&["token", "revoke-all", "--user", "alice"])),
        0
    );
    assert_eq!(
        code(&with_redis(&["token", "check", "--token", &second])),
        1
    );
    let listed = with_redis(&["token", "list", "--user", "alice"]);
    assert_eq!(stdout(&listed).trim(), "user alice has no live tokens");
}

#[test]
fn bad_input_is_an_error_with_exit_code_2() {
    let created = dsession(&["token", "create", "--user", ""]);
    assert_eq!(code(&created), 2);
    let stderr = String::from_utf8_lossy(&created.stderr);
    assert!(stderr.contains("user id must not be empty"), "{stderr}");

    let created = dsession(&[
        "token", "create", "--user", "alice", "--ttl", "-5", "--json",
    ]);
    assert_eq!(code(&created), 2);
    assert_eq!(json(&created)["error"]["code"], "invalid_argument");

    let checked = dsession(&["token", "check", "--token", "garbage"]);
    assert_eq!(
        code(&checked),
        1,
        "a malformed token is not valid, not an error"
    );
}

#[test]
fn an_unreachable_redis_is_a_clear_error() {
    let port = dsession_tests::free_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let created = dsession(&["token", "create", "--user", "alice", "--redis", &url]);
    assert_eq!(code(&created), 2);
    let stderr = String::from_utf8_lossy(&created.stderr);
    assert!(
        stderr.contains("cannot connect to redis at redis://127.0.0.1"),
        "{stderr}"
    );
}

#[test]
fn without_redis_the_memory_store_serves() {
    let created = dsession(&["token", "create", "--user", "alice"]);
    assert_eq!(code(&created), 0);
    assert!(stdout(&created).starts_with("alice_"));
}

#[test]
fn policy_check_describes_a_policy_and_rejects_what_is_not_one() {
    let builtin = concat!(env!("OUT_DIR"), "/dsession_policy.wasm");
    let checked = dsession(&["policy", "check", builtin]);
    assert_eq!(code(&checked), 0);
    let text = stdout(&checked);
    assert!(text.contains("is a valid dsession policy"), "{text}");
    assert!(
        text.contains("dsession:session/token-manage@0.1.0: set-token, refresh-token"),
        "{text}"
    );

    let checked = dsession(&["policy", "check", builtin, "--json"]);
    assert_eq!(json(&checked)["valid"], true);

    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let rejected = dsession(&["policy", "check", manifest]);
    assert_eq!(code(&rejected), 2);
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    assert!(stderr.contains("not a valid wasm component"), "{stderr}");
}
