//! A full Redis: `maxmemory` under `noeviction`, filled with junk until it
//! refuses a `SET`. Logins and refreshes fail with the typed out-of-memory
//! error; revocations (delete-token, delete-user-token, the sessions a
//! single-mode or `max_sessions` login evicts) still happen. And a Redis
//! whose `maxmemory-policy` can evict sessions is named in `/readyz`.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use dsession::store::{EventRange, RedisConfig, StoreConfig};
use dsession::{Error, SessionManager, Settings};
use dsession_service::ServeConfig;
use serde_json::json;

use crate::support::http::{error_code, send};
use crate::support::served::{service, token};
use crate::support::{Env, RedisServer, hardened_policy, listed, on_every_store, redis_store};

/// A Redis of 4 MiB that refuses writes once full.
fn small_redis() -> RedisServer {
    RedisServer::start_with(&["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"])
}

/// Writes junk keys to `server` until it refuses a `SET` for memory; how
/// many it took. Then `maxmemory` goes down to half of what is used, so
/// that the server stays full when a connection closes (its buffers count
/// as used memory) or a revocation frees a few keys, and has room again
/// once [`free`] deletes the junk.
async fn fill(server: &RedisServer) -> usize {
    let mut redis = server.client().await;
    let junk = "x".repeat(32 << 10);
    let mut written = 0;
    loop {
        let set: ::redis::RedisResult<()> = ::redis::cmd("SET")
            .arg(format!("junk:{written}"))
            .arg(&junk)
            .query_async(&mut redis)
            .await;
        match set {
            Ok(()) => written += 1,
            Err(error) if error.code() == Some("OOM") => break,
            Err(error) => panic!("filling redis: {error}"),
        }
        assert!(written < 10_000, "redis does not fill up");
    }
    let info: String = ::redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut redis)
        .await
        .unwrap();
    let used: u64 = info
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|used| used.trim().parse().ok())
        .unwrap();
    let _: () = ::redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used / 2)
        .query_async(&mut redis)
        .await
        .unwrap();
    written
}

/// Deletes the junk [`fill`] wrote.
async fn free(server: &RedisServer, written: usize) {
    let mut redis = server.client().await;
    let keys: Vec<String> = (0..written).map(|i| format!("junk:{i}")).collect();
    let _: () = ::redis::cmd("DEL")
        .arg(keys)
        .query_async(&mut redis)
        .await
        .unwrap();
}

/// Asserts that `outcome` is the typed refusal of a full store, naming it.
fn assert_out_of_memory<T: std::fmt::Debug>(what: &str, outcome: dsession::Result<T>) {
    match outcome {
        Err(Error::StoreOutOfMemory(message)) => {
            assert!(message.contains("maxmemory"), "{what}: {message}");
        }
        other => panic!("{what}: expected store_out_of_memory, got {other:?}"),
    }
}

async fn valid(sessions: &SessionManager, token: &str) -> bool {
    sessions.check_token(token).await.unwrap().is_some()
}

async fn manager(
    server: &RedisServer,
    hardened: Option<&str>,
    single_mode: bool,
) -> SessionManager {
    let mut builder = SessionManager::builder()
        .store(redis_store(server).await)
        .settings(Settings {
            single_mode,
            ..Settings::default()
        });
    if let Some(max_sessions) = hardened {
        builder = builder
            .policy(hardened_policy())
            .policy_config([("max_sessions", max_sessions)]);
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn on_a_full_redis_logins_and_refreshes_fail_naming_it_and_delete_token_revokes() {
    let server = small_redis();
    let sessions = manager(&server, None, false).await;
    let kept = sessions.set_token("alice", 600).await.unwrap().token;
    let revoked = sessions.set_token("alice", 600).await.unwrap().token;
    fill(&server).await;

    assert_out_of_memory("login", sessions.set_token("bob", 600).await);
    assert_out_of_memory("refresh", sessions.refresh_token(&kept, 600).await);
    sessions.delete_token(&revoked).await.unwrap();
    assert!(!valid(&sessions, &revoked).await);
    assert!(valid(&sessions, &kept).await, "checks still work");
    let listed = listed(&sessions, "alice").await;
    assert_eq!(listed, [kept]);
}

#[tokio::test]
async fn on_a_full_redis_a_revocation_runs_without_its_event_under_both_policies() {
    for hardened in [None, Some("0")] {
        let server = small_redis();
        let mut builder = SessionManager::builder()
            .store(redis_store(&server).await)
            .record_events(true);
        if let Some(max_sessions) = hardened {
            builder = builder
                .policy(hardened_policy())
                .policy_config([("max_sessions", max_sessions)]);
        }
        let sessions = builder.build().unwrap();
        let one = sessions.set_token("alice", 600).await.unwrap().token;
        let other = sessions.set_token("alice", 600).await.unwrap().token;
        let recorded = |sessions: SessionManager| async move {
            sessions
                .read_events(EventRange::Last(100))
                .await
                .unwrap()
                .into_iter()
                .map(|event| event.event)
                .collect::<Vec<_>>()
        };
        assert_eq!(recorded(sessions.clone()).await, ["login", "login"]);
        fill(&server).await;

        sessions.delete_token(&one).await.unwrap();
        sessions.delete_user_token("alice").await.unwrap();
        assert!(!valid(&sessions, &one).await && !valid(&sessions, &other).await);
        assert_eq!(
            recorded(sessions.clone()).await,
            ["login", "login"],
            "a full Redis refuses the events, and the revocations run without them"
        );
        assert_out_of_memory("login", sessions.set_token("bob", 600).await);
    }
}

#[tokio::test]
async fn on_a_full_redis_delete_user_token_revokes_every_token_under_both_policies() {
    for hardened in [None, Some("0")] {
        let server = small_redis();
        let sessions = manager(&server, hardened, false).await;
        let mut tokens = Vec::new();
        for _ in 0..3 {
            tokens.push(sessions.set_token("alice", 600).await.unwrap().token);
        }
        let bob = sessions.set_token("bob", 600).await.unwrap().token;
        let junk = fill(&server).await;

        assert_out_of_memory("login", sessions.set_token("alice", 600).await);
        sessions.delete_user_token("alice").await.unwrap();
        for token in &tokens {
            assert!(!valid(&sessions, token).await, "{hardened:?}: {token}");
        }
        assert!(valid(&sessions, &bob).await, "{hardened:?}");

        // Once there is room again, a login works and the revoked stay dead.
        free(&server, junk).await;
        let after = sessions.set_token("alice", 600).await.unwrap().token;
        assert!(valid(&sessions, &after).await, "{hardened:?}");
        for token in &tokens {
            assert!(!valid(&sessions, token).await, "{hardened:?}: {token}");
        }
    }
}

#[tokio::test]
async fn a_single_mode_login_refused_by_a_full_redis_still_revokes_the_old_tokens() {
    // The default policy in single mode, and the hardened one (max 1).
    for hardened in [None, Some("0")] {
        let server = small_redis();
        let sessions = manager(&server, hardened, true).await;
        let old = sessions.set_token("alice", 600).await.unwrap().token;
        let bob = sessions.set_token("bob", 600).await.unwrap().token;
        fill(&server).await;

        assert_out_of_memory("login", sessions.set_token("alice", 600).await);
        assert!(!valid(&sessions, &old).await, "{hardened:?}");
        assert!(sessions.list_user_token("alice").await.unwrap().is_empty());
        assert!(valid(&sessions, &bob).await, "{hardened:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_logins_on_a_full_redis_fail_typed_and_never_exceed_max_sessions() {
    let server = small_redis();
    let sessions = Arc::new(manager(&server, Some("2"), false).await);
    let mut tokens = Vec::new();
    for _ in 0..2 {
        tokens.push(sessions.set_token("alice", 600).await.unwrap().token);
    }
    fill(&server).await;

    // One login beyond the limit: refused, and the oldest session is gone.
    assert_out_of_memory("login", sessions.set_token("alice", 600).await);
    assert!(!valid(&sessions, &tokens[0]).await, "the oldest is evicted");
    assert!(valid(&sessions, &tokens[1]).await);

    // Racing logins may get through once evictions free some memory; every
    // refusal is typed, and no more than two sessions are ever live.
    let logins: Vec<_> = (0..20)
        .map(|_| {
            let sessions = Arc::clone(&sessions);
            tokio::spawn(async move { sessions.set_token("alice", 600).await })
        })
        .collect();
    for login in logins {
        match login.await.unwrap() {
            Ok(issued) => tokens.push(issued.token),
            refused => assert_out_of_memory("racing login", refused),
        }
    }
    let mut live = 0;
    for token in &tokens {
        live += usize::from(valid(&sessions, token).await);
    }
    assert!(live <= 2, "{live} live sessions");
    assert!(sessions.list_user_token("alice").await.unwrap().len() <= 2);
}

fn serving(server: &RedisServer) -> ServeConfig {
    ServeConfig {
        store: StoreConfig::Redis(RedisConfig::new(server.url())),
        ..ServeConfig::default()
    }
}

#[tokio::test]
async fn the_service_answers_a_full_redis_with_store_out_of_memory_and_still_revokes() {
    let server = small_redis();
    let (app, _) = service(serving(&server)).await;
    let alice = token(&app, "alice").await;
    fill(&server).await;

    let refused = send(
        &app,
        Method::POST,
        "/v1/tokens",
        &[],
        Some(r#"{"user_id":"bob"}"#),
    )
    .await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&refused), "store_out_of_memory");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("maxmemory"), "{message}");

    let body = json!({ "token": alice }).to_string();
    let revoked = send(&app, Method::POST, "/v1/tokens/revoke", &[], Some(&body)).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let checked = send(&app, Method::POST, "/v1/tokens/check", &[], Some(&body)).await;
    assert_eq!(checked.body["valid"], false);
    let ready = send(&app, Method::GET, "/readyz", &[], None).await;
    assert_eq!(
        (ready.status, ready.body),
        (StatusCode::OK, json!({ "status": "ok" })),
        "full under noeviction: refusing writes, losing nothing"
    );
}

#[tokio::test]
async fn readyz_warns_when_redis_can_evict_sessions_and_stays_ready() {
    for policy in ["allkeys-lru", "volatile-lru"] {
        let server =
            RedisServer::start_with(&["--maxmemory", "10mb", "--maxmemory-policy", policy]);
        let (app, _) = service(serving(&server)).await;
        let ready = send(&app, Method::GET, "/readyz", &[], None).await;
        assert_eq!(ready.status, StatusCode::OK);
        assert_eq!(ready.body["status"], "ok");
        let warnings = ready.body["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let warning = warnings[0].as_str().unwrap();
        for named in [policy, "noeviction", "logs a user out", "volatile-*"] {
            assert!(warning.contains(named), "{named} missing from {warning}");
        }
    }
    let unlimited = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    let (app, _) = service(serving(&unlimited)).await;
    let ready = send(&app, Method::GET, "/readyz", &[], None).await;
    assert_eq!(
        ready.body,
        json!({ "status": "ok" }),
        "no limit, no eviction"
    );

    let document = send(&app, Method::GET, "/openapi.json", &[], None).await;
    let health = &document.body["components"]["schemas"]["Health"];
    assert_eq!(health["properties"]["warnings"]["type"], "array");
    assert_eq!(
        health["required"],
        json!(["status"]),
        "warnings may be left out"
    );
    let unavailable = &document.body["paths"]["/v1/tokens"]["post"]["responses"]["503"];
    let described = unavailable["description"].as_str().unwrap();
    assert!(described.contains("store_out_of_memory"), "{described}");
}

#[tokio::test]
async fn a_redis_that_refuses_config_is_a_warning_in_readyz_not_a_failure() {
    let server = small_redis();
    let mut redis = server.client().await;
    let _: () = ::redis::cmd("ACL")
        .arg(&["SETUSER", "app", "on", ">s3cret", "~*", "+@all", "-config"][..])
        .query_async(&mut redis)
        .await
        .unwrap();
    let url = format!("redis://app:s3cret@127.0.0.1:{}", server.port());
    let config = ServeConfig {
        store: StoreConfig::Redis(RedisConfig::new(url)),
        ..ServeConfig::default()
    };
    let (app, _) = service(config).await;
    let ready = send(&app, Method::GET, "/readyz", &[], None).await;
    assert_eq!(ready.status, StatusCode::OK);
    let warning = ready.body["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("maxmemory-policy is unknown") && warning.contains("config|get"),
        "{warning}"
    );
}

async fn every_master_reports_how_it_makes_room(env: Env) {
    let policies = env.store.memory_policies().await.unwrap();
    let masters = match (&env.redis, &env.sentinel, &env.cluster) {
        (None, None, None) => 0,
        (_, _, Some(cluster)) => cluster.master_ports().len(),
        _ => 1,
    };
    assert_eq!(policies.len(), masters, "{policies:?}");
    for policy in policies {
        assert_eq!(
            (policy.max_bytes, policy.policy.as_str()),
            (0, "noeviction")
        );
        assert!(!policy.evicts());
    }
}

on_every_store!(
    every_master_reports_how_it_makes_room;
    policy = crate::support::hardened_policy, cluster
);
