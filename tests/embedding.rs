//! The embedding API a gateway author uses: the tower layers and the axum
//! extractor against real Redis, an explicit runtime, cheap clones, the
//! observer, and validated policy reloads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use dsession::observe::{Observer, Operation, Outcome};
use dsession::tower::{AttachSessionLayer, RequireSessionLayer};
use dsession::{
    Authenticated, Authentication, Authenticator, Error, Policy, Runtime, SessionManager, Settings,
    SetupError,
};

use crate::support::http::error_code;
use crate::support::{RedisServer, redis_store};

async fn redis_sessions(redis: &RedisServer) -> SessionManager {
    let store = redis_store(redis).await;
    SessionManager::builder().store(store).build().unwrap()
}

async fn get_with(app: &Router, token: Option<&str>) -> (StatusCode, Option<String>, String) {
    let (status, headers, body) = crate::support::http::get(app, "/me", token).await;
    let challenge = headers
        .get(header::WWW_AUTHENTICATE)
        .map(|value| value.to_str().unwrap().to_owned());
    (status, challenge, body)
}

#[tokio::test]
async fn the_require_layer_passes_live_tokens_and_answers_401_or_503_for_the_rest() {
    let mut redis = RedisServer::start();
    let sessions = redis_sessions(&redis).await;
    let app = Router::new()
        .route(
            "/me",
            get(|Authenticated(user): Authenticated| async move { user.id }),
        )
        .layer(RequireSessionLayer::new(Authenticator::new(
            sessions.clone(),
        )));

    let token = sessions.set_token("alice", 600).await.unwrap().token;
    assert_eq!(
        get_with(&app, Some(&token)).await,
        (StatusCode::OK, None, "alice".into())
    );

    let (status, challenge, body) = get_with(&app, None).await;
    assert_eq!(
        (status, challenge.as_deref()),
        (StatusCode::UNAUTHORIZED, Some("Bearer"))
    );
    assert_eq!(error_code(&body), "unauthenticated");
    assert!(body.contains("no session token"), "{body}");

    sessions.delete_token(&token).await.unwrap();
    let (status, _, body) = get_with(&app, Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("not valid"), "{body}");
    let (status, _, _) = get_with(&app, Some("not a token at all")).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "malformed is rejected, not an error"
    );

    let live = sessions.set_token("bob", 600).await.unwrap().token;
    redis.kill();
    let (status, challenge, body) = get_with(&app, Some(&live)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(challenge, None, "an outage is not a logout");
    assert_eq!(error_code(&body), "store_error");
}

#[tokio::test]
async fn the_attach_layer_lets_everyone_through_and_tells_who_is_who() {
    let redis = RedisServer::start();
    let sessions = redis_sessions(&redis).await;
    let app = Router::new()
        .route(
            "/me",
            get(|user: Option<Authenticated>| async move {
                user.map_or("anonymous".to_owned(), |Authenticated(user)| user.id)
            }),
        )
        .layer(AttachSessionLayer::new(Authenticator::new(
            sessions.clone(),
        )));
    let token = sessions.set_token("carol", 600).await.unwrap().token;
    assert_eq!(get_with(&app, Some(&token)).await.2, "carol");
    assert_eq!(
        get_with(&app, None).await,
        (StatusCode::OK, None, "anonymous".into())
    );
    assert_eq!(get_with(&app, Some("carol_0000")).await.2, "anonymous");
}

#[tokio::test]
async fn the_extractor_without_a_layer_says_which_layer_is_missing() {
    let app = Router::new().route(
        "/me",
        get(|Authenticated(user): Authenticated| async move { user.id }),
    );
    let (status, _, body) = get_with(&app, Some("alice_0000")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error_code(&body), "missing_session_layer");
    assert!(body.contains("RequireSessionLayer"), "{body}");
}

#[tokio::test]
async fn the_authenticator_slides_expiry_and_reads_every_place_a_token_travels() {
    let redis = RedisServer::start();
    let sessions = redis_sessions(&redis).await;
    let token = sessions.set_token("dave", 100).await.unwrap().token;
    let authenticator = Authenticator::new(sessions.clone())
        .with_cookie("sid")
        .with_sliding_expiry(900);
    let mut headers = http::HeaderMap::new();
    headers.insert(header::COOKIE, format!("a=b; sid={token}").parse().unwrap());
    let Authentication::Valid(user) = authenticator.authenticate(&headers).await.unwrap() else {
        panic!("the cookie's token is live");
    };
    assert_eq!(user.id, "dave");
    let remaining = sessions.check_token(&token).await.unwrap().unwrap();
    assert!(remaining.token_remain_live_time > 800, "{remaining:?}");
    assert_eq!(
        Authenticator::upstream_headers(&user)[dsession::USER_ID_HEADER],
        "dave"
    );
    assert_eq!(
        authenticator.authenticate(&http::HeaderMap::new()).await,
        Ok(Authentication::Missing)
    );
}

#[tokio::test]
async fn an_outage_during_sliding_is_an_error_not_a_rejection() {
    let mut redis = RedisServer::start();
    let sessions = redis_sessions(&redis).await;
    let token = sessions.set_token("erin", 600).await.unwrap().token;
    let authenticator = Authenticator::new(sessions).with_sliding_expiry(900);
    redis.kill();
    let outcome = authenticator.authenticate_token(&token).await;
    assert!(
        matches!(outcome, Err(ref error @ Error::Store(_)) if error.status() == 503),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_runtime_of_ones_own_runs_its_policies_and_refuses_anothers() {
    let runtime = Runtime::builder()
        .max_instances(4)
        .max_idle_instances(2)
        .max_memory_bytes(32 << 20)
        .epoch_tick(Duration::from_millis(5))
        .build()
        .unwrap();
    let sessions = SessionManager::builder()
        .runtime(runtime.clone())
        .build()
        .unwrap();
    assert_eq!(sessions.policy().runtime(), &runtime);
    // 40 calls at once through 4 instance slots: they queue, none fails.
    let clone = sessions.clone();
    let calls = (0..40).map(|i| {
        let sessions = clone.clone();
        tokio::spawn(async move { sessions.set_token(&format!("u{i}"), 60).await })
    });
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(sessions.list_user_token("u7").await.unwrap().len(), 1);

    let elsewhere = Policy::builtin().unwrap();
    let refused = SessionManager::builder()
        .runtime(runtime.clone())
        .policy(elsewhere.clone())
        .build()
        .unwrap_err();
    assert!(matches!(refused, SetupError::Runtime(_)), "{refused}");
    let refused = sessions.reload_policy(elsewhere).await.unwrap_err();
    assert!(matches!(refused, SetupError::Runtime(_)), "{refused}");
    sessions
        .reload_policy(runtime.builtin_policy("hardened").unwrap())
        .await
        .unwrap();
}

/// An idle instance keeps the stack of its last call: with the runtime's
/// one idle slot filled by one manager, another manager's call still finds
/// a stack.
#[tokio::test]
async fn an_idle_instance_of_one_manager_leaves_a_stack_for_another() {
    let runtime = Runtime::builder()
        .max_instances(1)
        .max_idle_instances(1)
        .build()
        .unwrap();
    let manager = || {
        SessionManager::builder()
            .runtime(runtime.clone())
            .build()
            .unwrap()
    };
    let (first, second) = (manager(), manager());
    first.set_token("alice", 60).await.unwrap();
    assert!(format!("{runtime:?}").contains("idle: 1"), "{runtime:?}");
    second.set_token("bob", 60).await.unwrap();
    first.set_token("carol", 60).await.unwrap();
}

/// A second runtime on the same compile cache, as a second process would
/// be, loads a component from it instead of compiling it; a file there that
/// is not a compiled component is compiled over, not loaded.
#[tokio::test]
async fn a_compile_cache_serves_the_next_runtime_and_survives_a_damaged_file() {
    let dir = tempfile::tempdir().unwrap();
    let cached = || {
        Runtime::builder()
            .compile_cache(dir.path())
            .build()
            .unwrap()
    };
    let stats = |runtime: &Runtime| {
        let stats = runtime.compile_cache_stats().unwrap();
        (stats.hits, stats.misses)
    };
    let first = cached();
    first.builtin_policy("hardened").unwrap();
    assert_eq!(stats(&first), (0, 1));
    let second = cached();
    let policy = second.builtin_policy("hardened").unwrap();
    assert_eq!(stats(&second), (1, 0));
    let sessions = SessionManager::builder()
        .runtime(second.clone())
        .policy(policy)
        .build_checked()
        .await
        .unwrap();
    let issued = sessions.set_token("alice", 60).await.unwrap();
    let user = sessions.check_token(&issued.token).await.unwrap().unwrap();
    assert_eq!(user.id, "alice");

    // The compiled code; beside it the cache keeps `.stats` files, and
    // lock files in the root.
    let files: Vec<_> = walk(&dir.path().join("modules"))
        .into_iter()
        .filter(|path| path.extension().is_none())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::write(&files[0], b"not machine code").unwrap();
    let third = cached();
    third.builtin_policy("hardened").unwrap();
    assert_eq!(stats(&third), (0, 1));
    assert!(Runtime::shared().unwrap().compile_cache_stats().is_none());
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|entry| {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// Counts what the library reports.
#[derive(Default)]
struct Recorder {
    operations: Mutex<Vec<(Operation, &'static str)>>,
    reloads: Mutex<Vec<bool>>,
}

impl Observer for Recorder {
    fn operation(&self, operation: Operation, outcome: Outcome, _: Duration) {
        self.operations
            .lock()
            .unwrap()
            .push((operation, outcome.label()));
    }

    fn policy_reload(&self, accepted: bool) {
        self.reloads.lock().unwrap().push(accepted);
    }
}

#[tokio::test]
async fn the_observer_sees_every_operation_and_reload_and_a_bad_reload_keeps_the_old_policy() {
    let recorder = Arc::new(Recorder::default());
    let sessions = SessionManager::builder()
        .observer(recorder.clone())
        .build()
        .unwrap();
    let token = sessions.set_token("frank", 60).await.unwrap().token;
    sessions.check_token(&token).await.unwrap();
    let refused = sessions.refresh_token("frank_0", 60).await.unwrap_err();
    assert_eq!(
        *recorder.operations.lock().unwrap(),
        vec![
            (Operation::SetToken, "ok"),
            (Operation::CheckToken, "ok"),
            (Operation::RefreshToken, refused.code()),
        ]
    );

    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"not wasm").unwrap();
    let refused = sessions.reload_policy_from(&broken).await.unwrap_err();
    assert!(
        refused.to_string().contains("not a valid wasm component"),
        "{refused}"
    );
    assert!(
        sessions.check_token(&token).await.unwrap().is_some(),
        "the old policy serves on"
    );

    let strict = dsession::SessionManager::builder()
        .settings(Settings {
            default_expire_seconds: -5,
            ..Settings::default()
        })
        .build_checked()
        .await
        .unwrap_err();
    assert!(matches!(strict, SetupError::Settings(_)), "{strict}");

    sessions.reload_policy_from("hardened").await.unwrap();
    assert_eq!(*recorder.reloads.lock().unwrap(), vec![false, true]);
    assert!(
        sessions.check_token(&token).await.unwrap().is_none(),
        "the hardened policy reads its own layout"
    );
}
