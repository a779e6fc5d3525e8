//! The `dsession` binary, run as a user would.

#[path = "cli/javascript.rs"]
mod javascript;
#[path = "cli/python.rs"]
mod python;
#[path = "cli/scaffold.rs"]
mod scaffold;
#[path = "cli/serving.rs"]
mod serving;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use dsession::Policy;
use dsession_tests::{RedisCluster, RedisServer};
use serde_json::{Value, json};

use self::serving::{http, reloads, serve, signal, wait_for};

fn dsession(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsession"))
        .args(args)
        .env_remove("DSESSION_REDIS_URL")
        .env_remove("DSESSION_POLICY")
        .output()
        .expect("run dsession")
}

/// `line` split at its spaces: arguments that hold none.
fn words(line: &str) -> Vec<&str> {
    line.split(' ').collect()
}

/// `dsession` with `--redis` of `server` after the arguments given.
fn on_redis(server: &RedisServer) -> impl Fn(&[&str]) -> Output {
    let url = server.url();
    move |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--redis", &url]);
        dsession(&all)
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(output)))
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited")
}

/// Asserts that `output` is an error, exit code 2, whose message says
/// `message`.
fn assert_error_says(output: &Output, message: &str) {
    assert_eq!(code(output), 2);
    let stderr = stderr(output);
    assert!(stderr.contains(message), "{stderr}");
}

/// Runs `dsession policy test` on `component` with `flags` in memory,
/// where its single-mode line must say `single_mode`, and on a Redis it
/// starts: that server, for more.
fn passes_the_kit(component: &str, single_mode: &str, flags: &[&str]) -> RedisServer {
    let with = |args: &[&str]| {
        let mut all = vec!["policy", "test", component];
        all.extend(args);
        all.extend(flags);
        dsession(&all)
    };
    let in_memory = with(&[]);
    let lines = stdout(&in_memory);
    assert_eq!(code(&in_memory), 0, "{lines}");
    assert!(lines.contains("pass  refresh-revoke race"), "{lines}");
    assert!(lines.contains(single_mode), "{lines}");
    let redis = RedisServer::start();
    let on_redis = with(&["--redis", &redis.url()]);
    assert_eq!(code(&on_redis), 0, "{}", stdout(&on_redis));
    redis
}

/// `contents` written to the file `name` in `dir`: its path.
fn write_file(dir: &tempfile::TempDir, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// `dsession policy check` with `args`, the cache directory from the
/// environment being `env_dir`: what it says of the load.
fn loaded(args: &[&str], env_dir: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_dsession"))
        .args(["policy", "check", "hardened"])
        .args(args)
        .env("DSESSION_COMPILE_CACHE_DIR", env_dir)
        .output()
        .expect("run dsession");
    assert_eq!(code(&output), 0, "{output:?}");
    let text = stdout(&output);
    text.lines()
        .find_map(|line| line.strip_prefix("loaded: "))
        .unwrap_or_else(|| panic!("no load line in:\n{text}"))
        .to_owned()
}

#[test]
fn a_compiled_policy_is_kept_for_the_next_process_unless_the_cache_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let from_env = dir.path().join("from-env");
    let flagged = dir.path().join("flagged");
    let flagged_arg = flagged.display().to_string();

    let first = loaded(&[], &from_env);
    assert!(first.starts_with("compiled in"), "{first}");
    assert!(first.contains(&from_env.display().to_string()), "{first}");
    let second = loaded(&[], &from_env);
    assert!(second.starts_with("from the compile cache"), "{second}");

    let first = loaded(&["--compile-cache-dir", &flagged_arg], &from_env);
    assert!(first.contains(&flagged_arg), "{first}");
    assert!(flagged.join("modules").is_dir());

    let off = dir.path().join("off");
    let uncached = loaded(&["--no-compile-cache"], &off);
    assert!(uncached.ends_with("(no compile cache)"), "{uncached}");
    assert!(!off.exists());
}

#[test]
fn token_commands_share_state_through_redis() {
    let server = RedisServer::start();
    let with_redis = on_redis(&server);

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
    assert!(json(&refreshed)["token_expire_time"].as_i64().unwrap() > 0);
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
fn token_list_shows_where_each_login_came_from_a_page_at_a_time() {
    let server = RedisServer::start();
    let with_redis = on_redis(&server);
    for device in ["laptop", "phone"] {
        let created = with_redis(&[
            "token",
            "create",
            "--user",
            "alice",
            "--device",
            device,
            "--ip",
            "192.0.2.7",
            "--label",
            "app=web",
        ]);
        assert_eq!(code(&created), 0, "{created:?}");
    }
    let first = with_redis(&["token", "list", "--user", "alice", "--limit", "1"]);
    let text = stdout(&first);
    assert!(
        text.contains(", ip 192.0.2.7") && text.contains(", app=web"),
        "{text}"
    );
    let cursor = text
        .lines()
        .find_map(|line| line.strip_prefix("next cursor: "))
        .unwrap_or_else(|| panic!("no cursor: {text}"));
    let rest = with_redis(&[
        "token", "list", "--user", "alice", "--limit", "1", "--cursor", cursor, "--json",
    ]);
    let page = json(&rest);
    assert_eq!(page["tokens"].as_array().unwrap().len(), 1);
    assert_eq!(page["next_cursor"], Value::Null);
    let devices = [
        text.contains("device laptop"),
        text.contains("device phone"),
    ];
    let second = page["tokens"][0]["attributes"]["device"].as_str().unwrap();
    assert!(devices[0] != devices[1] && !text.contains(&format!("device {second}")));

    let bad = with_redis(&["token", "create", "--user", "bob", "--ip", "nowhere"]);
    assert_eq!(code(&bad), 2, "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("ip"),
        "{bad:?}"
    );
}

#[test]
fn events_tail_prints_the_recorded_events_and_follows_new_ones() {
    let server = RedisServer::start();
    let with_redis = on_redis(&server);
    let created = with_redis(&[
        "token", "create", "--user", "alice", "--device", "tv", "--events", "--json",
    ]);
    assert_eq!(code(&created), 0, "{created:?}");
    let token = json(&created)["token"].as_str().unwrap().to_owned();
    let revoked = with_redis(&["token", "revoke", "--token", &token, "--events"]);
    assert_eq!(code(&revoked), 0, "{revoked:?}");
    // Without --events nothing is recorded.
    with_redis(&["token", "create", "--user", "bob"]);

    let tail = with_redis(&["events", "tail", "--json"]);
    assert_eq!(code(&tail), 0, "{tail:?}");
    let events: Vec<Value> = stdout(&tail)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["user"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("login", "alice"), ("revoke", "alice")]);
    assert_eq!(events[0]["device"], "tv");
    assert!(!stdout(&tail).contains(&token), "no event shows a token");
    let text = stdout(&with_redis(&["events", "tail", "--last", "1"]));
    assert!(
        text.contains("revoke  user \"alice\", session \""),
        "{text}"
    );
    let first = events[0]["id"].as_str().unwrap();
    let after = with_redis(&["events", "tail", "--after", first, "--json"]);
    assert_eq!(stdout(&after).lines().count(), 1, "{after:?}");
    let bad = with_redis(&["events", "tail", "--after", "soon"]);
    assert_error_says(&bad, "not a stream id");

    // --follow then prints each event as it is recorded.
    let last = events[1]["id"].as_str().unwrap();
    let mut follow = Command::new(env!("CARGO_BIN_EXE_dsession"))
        .args(["events", "tail", "--follow", "--after", last, "--json"])
        .args(["--redis", &server.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    with_redis(&["token", "create", "--user", "carol", "--events"]);
    let mut line = String::new();
    let mut reader = BufReader::new(follow.stdout.take().unwrap());
    reader.read_line(&mut line).unwrap();
    follow.kill().unwrap();
    let output = follow.wait_with_output().unwrap();
    let followed: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?} {}", stderr(&output)));
    assert_eq!(
        (&followed["event"], &followed["user"]),
        (&json!("login"), &json!("carol")),
        "{line}"
    );
}

/// `dsession bench --quick --json --concurrency 4` with `args`: its
/// report, every figure in it seen to have run ops and no errors.
fn bench(args: &[&str]) -> Value {
    let quick = ["bench", "--quick", "--json", "--concurrency", "4"];
    let output = dsession(&[&quick[..], args].concat());
    assert_eq!(code(&output), 0, "{output:?}");
    let report = json(&output);
    for figure in report["figures"].as_array().unwrap() {
        assert_eq!(figure["errors"], 0, "{figure}");
        assert!(figure["ops"].as_u64().unwrap() > 0, "{figure}");
    }
    report
}

#[test]
fn bench_quick_measures_every_operation_with_one_round_trip_per_check() {
    let server = RedisServer::start();
    let url = server.url();
    let report = bench(&["--redis", &url]);
    let figures = report["figures"].as_array().unwrap();
    let figure = |name: &str| {
        figures
            .iter()
            .find(|figure| figure["name"] == name)
            .unwrap_or_else(|| panic!("no figure {name} in {report}"))
    };
    for name in ["check-token", "check-token-or-update-user, cached"] {
        assert_eq!(figure(name)["round_trips_per_op"], 1.0, "{name}");
        assert_eq!(figure(name)["baseline"], "baseline: GET", "{name}");
        assert!(figure(name)["ratio"].as_f64().unwrap() > 0.0, "{name}");
    }
    assert_eq!(figure("check-token")["commands_per_op"], 3.0);
    assert_eq!(figure("baseline: GET")["commands_per_op"], 1.0);
    for name in ["GET /auth", "gRPC Check"] {
        assert_eq!(figure(name)["baseline"], "baseline: GET /healthz", "{name}");
        assert_eq!(figure(name)["round_trips_per_op"], 1.0, "{name}");
    }
    assert_eq!(figure("baseline: GET /healthz")["round_trips_per_op"], 0.0);
    // The operation's own commands, sent raw: the same commands, one round
    // trip, no policy; every figure counts its allocations.
    let own = figure("own batch: check-token");
    assert_eq!(own["commands_per_op"], 3.0);
    assert_eq!(own["round_trips_per_op"], 1.0);
    assert!(figure("check-token")["own_batch_ratio"].as_f64().unwrap() > 0.0);
    for figure in figures {
        assert!(
            figure["allocations_per_op"].as_f64().unwrap() > 0.0,
            "{figure}"
        );
        assert!(figure["near_cache_hit_rate"].is_null(), "{figure}");
    }
}

#[test]
fn bench_quick_with_the_near_cache_answers_checks_from_memory() {
    let server = RedisServer::start();
    let url = server.url();
    let report = bench(&["--redis", &url, "--near-cache", "--ops", "check,auth"]);
    let figures = report["figures"].as_array().unwrap();
    let figure = |name: &str| {
        figures
            .iter()
            .find(|figure| figure["name"] == name)
            .unwrap_or_else(|| panic!("no figure {name} in {report}"))
    };
    for name in ["check-token", "GET /auth"] {
        let hits = figure(name)["near_cache_hit_rate"].as_f64().unwrap();
        assert!(hits > 0.9, "{name}: {hits}");
    }
    // The baselines and the uncached check measure Redis, not the cache.
    for name in ["baseline: GET", "check-token, near cache off"] {
        assert!(figure(name)["near_cache_hit_rate"].is_null(), "{name}");
        assert_eq!(figure(name)["round_trips_per_op"], 1.0, "{name}");
    }
    let refused = dsession(&["bench", "--quick", "--near-cache"]);
    assert_error_says(&refused, "--near-cache needs a Redis store");
}

#[test]
fn bad_input_is_an_error_with_exit_code_2() {
    let created = dsession(&["token", "create", "--user", ""]);
    assert_error_says(&created, "user id must not be empty");

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
    assert_error_says(&created, "cannot connect to redis at redis://127.0.0.1");
}

#[test]
fn unreachable_sentinels_are_named_in_the_error() {
    let (first, second) = (dsession_tests::free_port(), dsession_tests::free_port());
    let sentinels = format!("127.0.0.1:{first},127.0.0.1:{second}");
    let args = ["token", "list", "--user", "alice", "--sentinel", &sentinels];
    let without_name = dsession(&args);
    assert_eq!(code(&without_name), 2);
    assert!(stderr(&without_name).contains("--master-name"));

    let created = dsession(&[&args[..], &["--master-name", "mymaster"]].concat());
    assert_eq!(code(&created), 2);
    let stderr = stderr(&created);
    for sentinel in sentinels.split(',') {
        assert!(
            stderr.contains(sentinel),
            "{sentinel} not named in: {stderr}"
        );
    }
}

#[test]
fn token_check_loads_the_user_with_the_loader_from_flags_or_the_config_file() {
    let server = RedisServer::start();
    let url = server.url();
    let token = |user: &str| {
        let created = dsession(&["token", "create", "--user", user, "--redis", &url, "--json"]);
        json(&created)["token"].as_str().unwrap().to_owned()
    };
    let postgres = std::env::var("DSESSION_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let alice = token("alice");
    let query = "SELECT json_build_object('id', $1::text, 'source', 'postgres')";
    let flags = format!(
        "token check --token {alice} --user-ttl 60 --redis {url} --loader postgres --loader-url {postgres} --json"
    );
    let checked = dsession(&[&words(&flags)[..], &["--loader-query", query]].concat());
    assert_eq!(code(&checked), 0, "{checked:?}");
    assert_eq!(
        json(&checked)["user"]["detail"],
        serde_json::json!({ "id": "alice", "source": "postgres" })
    );

    // The config file names the store and a loader that is down.
    let dir = tempfile::tempdir().unwrap();
    let port = dsession_tests::free_port();
    let config = write_file(
        &dir,
        "dsession.toml",
        format!(
            "[store]\nkind = \"redis\"\nurl = \"{url}\"\n[loader]\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/users/{{id}}\"\n"
        ),
    );
    let config = config.to_str().unwrap();
    let bob = token("bob");
    let flags = format!("token check --token {bob} --user-ttl 60 --config {config} --json");
    let check = |extra: &[&str]| dsession(&[&words(&flags)[..], extra].concat());
    let failed = check(&[]);
    assert_eq!(code(&failed), 2, "{failed:?}");
    assert_eq!(json(&failed)["error"]["code"], "loader_error");
    assert!(
        json(&failed)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach the user source"),
        "{failed:?}"
    );
    let lenient = check(&["--loader-on-error", "no_detail"]);
    assert_eq!(code(&lenient), 0, "{lenient:?}");
    assert_eq!(json(&lenient)["valid"], true);
    assert_eq!(json(&lenient)["user"]["detail"], Value::Null);
}

#[test]
fn without_redis_the_memory_store_serves() {
    let created = dsession(&["token", "create", "--user", "alice"]);
    assert_eq!(code(&created), 0);
    assert!(stdout(&created).starts_with("alice_"));
}

#[test]
fn policy_check_describes_a_policy_and_rejects_what_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(&dir, "dsession_policy.wasm", Policy::builtin_component());
    let builtin = path.to_str().unwrap();
    let checked = dsession(&["policy", "check", builtin]);
    assert_eq!(code(&checked), 0);
    let text = stdout(&checked);
    assert!(text.contains("is a valid dsession policy"), "{text}");
    assert!(
        text.contains("dsession:session/token-manage@0.4.0: self-check, set-token, refresh-token"),
        "{text}"
    );
    assert!(
        text.contains("self-check with the default settings: passed"),
        "{text}"
    );

    let checked = dsession(&["policy", "check", builtin, "--json"]);
    assert_eq!(json(&checked)["valid"], true);

    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let rejected = dsession(&["policy", "check", manifest]);
    assert_error_says(&rejected, "not a valid wasm component");

    let wants_http = write_file(
        &dir,
        "wants_http.wat",
        r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance (export "handle" (func)))))"#,
    );
    let rejected = dsession(&["policy", "check", wants_http.to_str().unwrap()]);
    assert_error_says(
        &rejected,
        "the host does not provide:\n  wasi:http/outgoing-handler@0.2.0 (interface \
         outgoing-handler of package wasi:http, version 0.2.0)",
    );
}

#[test]
fn policy_check_lists_the_settings_a_policy_reads() {
    let checked = dsession(&["policy", "check", "hardened", "--json"]);
    assert_eq!(code(&checked), 0, "{checked:?}");
    let keys = json(&checked)["config_keys"].clone();
    let names: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "key_prefix",
            "idle_timeout_seconds",
            "touch_interval_seconds",
            "max_sessions",
            "max_sessions_per_device",
            "device_limits",
            "on_limit"
        ]
    );
    assert_eq!(keys[3]["default"], "0");
    assert_eq!(keys[6]["default"], "evict_oldest");
    assert!(keys[2]["default"].is_null(), "a tenth of the idle timeout");

    let text = stdout(&dsession(&["policy", "check", "hardened"]));
    assert!(text.contains("max_sessions (default \"0\")"), "{text}");
    assert!(
        text.contains("touch_interval_seconds (no default)"),
        "{text}"
    );
    let default = stdout(&dsession(&["policy", "check", "default"]));
    assert!(
        default.contains("the policy does not describe its settings"),
        "{default}"
    );
}

#[test]
fn policy_config_flags_reach_the_hardened_policy() {
    let create = "token create --user alice --policy hardened --policy-config";
    let refused = dsession(&words(&format!("{create} max_sessions=lots")));
    assert_error_says(&refused, "max_sessions");
    let created = dsession(&words(&format!(
        "{create} max_sessions=2 --policy-config key_prefix=shop"
    )));
    assert_eq!(code(&created), 0, "{created:?}");
}

#[test]
fn serve_refuses_to_listen_beyond_loopback_without_an_admin_key() {
    let output = Command::new(env!("CARGO_BIN_EXE_dsession"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env_remove("DSESSION_ADMIN_KEY")
        .env_remove("DSESSION_CONFIG")
        .output()
        .unwrap();
    assert_error_says(
        &output,
        "refusing to listen on 0.0.0.0:0 without an admin key",
    );
}

#[test]
fn serve_layers_config_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (from_file, from_env, from_flag) = (
        dsession_tests::free_port(),
        dsession_tests::free_port(),
        dsession_tests::free_port(),
    );
    let config = write_file(
        &dir,
        "dsession.toml",
        format!("listen = \"127.0.0.1:{from_file}\"\nadmin_key = \"from-file\"\n"),
    );
    let config = config.display().to_string();
    let env_listen = ("DSESSION_LISTEN", format!("127.0.0.1:{from_env}"));

    let process = serve(
        &["--config", &config],
        std::slice::from_ref(&env_listen),
        from_env,
    );
    let (status, _) = http(process.port, "POST", "/admin/policy/reload").unwrap();
    assert_eq!(status, 401, "the admin key from the file applies");
    drop(process);

    let flag = format!("127.0.0.1:{from_flag}");
    let process = serve(
        &["--config", &config, "--listen", &flag],
        &[env_listen],
        from_flag,
    );
    assert_eq!(http(process.port, "GET", "/healthz").unwrap().0, 200);
}

#[test]
fn serve_warns_at_start_and_in_readyz_when_redis_can_evict_sessions() {
    let server =
        RedisServer::start_with(&["--maxmemory", "10mb", "--maxmemory-policy", "allkeys-lru"]);
    let port = dsession_tests::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_dsession"))
        .args(["serve", "--redis", &server.url(), "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run dsession serve");
    let mut process = serving::ServeProcess { child, port };
    wait_for(
        || matches!(http(port, "GET", "/healthz"), Ok((200, _))),
        "dsession serve did not start",
    );
    let (status, body) = http(port, "GET", "/readyz").unwrap();
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["status"], "ok");
    let warning = ready["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("maxmemory-policy allkeys-lru"),
        "{warning}"
    );

    let mut logs = process.child.stderr.take().unwrap();
    drop(process);
    let mut logged = String::new();
    std::io::Read::read_to_string(&mut logs, &mut logged).unwrap();
    let warned = logged
        .lines()
        .find(|line| line.contains("WARN") && line.contains("can lose sessions"))
        .unwrap_or_else(|| panic!("no warning at start in:\n{logged}"));
    for named in ["allkeys-lru", "noeviction", "volatile-*"] {
        assert!(warned.contains(named), "{named} missing from {warned}");
    }
}

/// The HTTP status of the denial a gRPC `Check` without a token gets from
/// the gRPC listener on `port`.
fn grpc_denial_status(port: u16) -> i32 {
    use envoy_types::ext_authz::v3::pb::{CheckRequest, HttpResponse};
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut client = AuthorizationClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        let response = client.check(CheckRequest::default()).await.unwrap();
        match response.into_inner().http_response {
            Some(HttpResponse::DeniedResponse(denied)) => denied.status.unwrap().code,
            other => panic!("not a denial: {other:?}"),
        }
    })
}

#[test]
fn serve_answers_grpc_check_on_grpc_listen_from_file_environment_or_flag_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let [from_file, from_env, from_flag] = [(); 3].map(|()| dsession_tests::free_port());
    let config = write_file(
        &dir,
        "dsession.toml",
        format!("grpc_listen = \"127.0.0.1:{from_file}\"\n[limits]\nshutdown_timeout_ms = 500\n"),
    );
    let config = config.display().to_string();
    let listen = |port: u16| format!("127.0.0.1:{port}");

    let port = dsession_tests::free_port();
    let process = serve(&["--config", &config, "--listen", &listen(port)], &[], port);
    assert_eq!(grpc_denial_status(from_file), 401);
    drop(process);

    let env = ("DSESSION_GRPC_LISTEN", listen(from_env));
    let port = dsession_tests::free_port();
    let process = serve(
        &["--config", &config, "--listen", &listen(port)],
        std::slice::from_ref(&env),
        port,
    );
    assert_eq!(grpc_denial_status(from_env), 401);
    drop(process);

    let port = dsession_tests::free_port();
    let flag = listen(from_flag);
    let mut process = serve(
        &[
            "--config",
            &config,
            "--listen",
            &listen(port),
            "--grpc-listen",
            &flag,
        ],
        &[env],
        port,
    );
    assert_eq!(grpc_denial_status(from_flag), 401);
    signal(&process, "TERM");
    wait_for(
        || process.child.try_wait().unwrap().is_some(),
        "SIGTERM did not stop the service",
    );
    assert!(process.child.wait().unwrap().success());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", from_flag)).is_err(),
        "the gRPC listener outlived the service"
    );
}

#[test]
fn serve_reloads_on_sighup_and_file_change_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write_file(&dir, "policy.wasm", Policy::builtin_component());
    let port = dsession_tests::free_port();
    let listen = format!("127.0.0.1:{port}");
    let policy_arg = policy.display().to_string();
    let config = write_file(
        &dir,
        "dsession.toml",
        "[limits]\nshutdown_timeout_ms = 500\n",
    );
    let config_arg = config.display().to_string();
    let mut process = serve(
        &[
            "--config",
            &config_arg,
            "--listen",
            &listen,
            "--policy",
            &policy_arg,
            "--watch-policy",
        ],
        &[],
        port,
    );
    assert_eq!(reloads(port), 0);

    signal(&process, "HUP");
    wait_for(|| reloads(port) == 1, "SIGHUP did not reload the policy");

    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(&policy, Policy::builtin_component()).unwrap();
    wait_for(
        || reloads(port) == 2,
        "changing the file did not reload the policy",
    );

    // A client that never finishes its request must not hold the process up
    // past the shutdown deadline.
    let mut half_sent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    half_sent
        .write_all(
            b"POST /v1/tokens HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
              content-length: 50\r\n\r\n{",
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    signal(&process, "TERM");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let status = loop {
        if let Some(status) = process.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SIGTERM did not stop the service"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn bench_runs_on_a_cluster_with_the_hardened_policy_and_refuses_the_default_one() {
    let cluster = RedisCluster::start();
    let nodes = cluster.urls().join(",");
    let refused = dsession(&["bench", "--quick", "--ops", "check", "--cluster", &nodes]);
    assert_ne!(code(&refused), 0);
    let stderr = stderr(&refused);
    assert!(
        stderr.contains("cannot run on a Redis Cluster") && stderr.contains("--policy hardened"),
        "{stderr}"
    );

    let report = bench(&[
        "--ops",
        "check,set,set-single",
        "--policy",
        "hardened",
        "--cluster",
        &nodes,
    ]);
    assert_eq!(report["store"], "cluster");
}

#[test]
fn renamed_config_keys_and_flags_still_work_and_say_their_new_names() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(
        &dir,
        "old.toml",
        "[auth]\nuser_ttl_seconds = 6\nrefresh_on_check_seconds = 9\n",
    );
    let create = [
        "token",
        "create",
        "--user",
        "alice",
        "--token-prefix",
        "old",
    ];
    let created = dsession(&[&create[..], &["--config", config.to_str().unwrap()]].concat());
    assert_eq!(code(&created), 0, "{created:?}");
    let stderr = stderr(&created);
    for (old, new) in [
        ("auth.user_ttl_seconds", "auth.user_ttl"),
        ("auth.refresh_on_check_seconds", "auth.sliding_expiry"),
        ("--token-prefix", "--token-key-prefix"),
    ] {
        let warned = stderr.contains(&format!("{old} is deprecated")) && stderr.contains(new);
        assert!(warned, "no warning naming {new}: {stderr}");
    }
    let both = dsession(&[&create[..], &["--token-key-prefix", "new"]].concat());
    assert_eq!(code(&both), 2, "an old flag beside its new name: {both:?}");
}
