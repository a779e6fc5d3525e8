//! A misbehaving policy is stopped and the host keeps serving.

use std::time::{Duration, Instant};

use dsession::{Error, Policy, SessionManager};

use crate::support::{hostile_policy, tight_limits};

fn hostile() -> SessionManager {
    SessionManager::builder()
        .policy(hostile_policy())
        .limits(tight_limits())
        .build()
        .unwrap()
}

/// set-token for `user` makes the hostile policy misbehave; the error says
/// `reason`.
async fn assert_policy_error(sessions: &SessionManager, user: &str, reason: &str) {
    match sessions.set_token(user, 60).await {
        Err(Error::Policy(message)) => assert!(message.contains(reason), "{message}"),
        other => panic!("expected a policy error, got {other:?}"),
    }
}

async fn assert_still_serving(hostile: &SessionManager) {
    let issued = hostile.set_token("fine", 60).await.unwrap();
    assert!(issued.token.starts_with("fine_"));
    let good = SessionManager::builder().build().unwrap();
    let issued = good.set_token("alice", 60).await.unwrap();
    assert!(good.check_token(&issued.token).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_loops_forever_is_stopped_at_its_time_limit() {
    let sessions = hostile();
    let started = Instant::now();
    assert_policy_error(&sessions, "loop", "time limit").await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert_still_serving(&sessions).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_allocates_without_bound_is_stopped_at_its_memory_limit() {
    let sessions = hostile();
    assert_policy_error(&sessions, "alloc", "memory").await;
    assert_still_serving(&sessions).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_policy_reports_its_message() {
    let sessions = hostile();
    assert_policy_error(&sessions, "panic", "panics on request").await;
    assert_still_serving(&sessions).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looping_policies_do_not_starve_good_calls() {
    let sessions = std::sync::Arc::new(hostile());
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let sessions = std::sync::Arc::clone(&sessions);
            tokio::spawn(async move { sessions.set_token("loop", 60).await })
        })
        .collect();
    let good = SessionManager::builder().build().unwrap();
    let started = Instant::now();
    for _ in 0..20 {
        good.set_token("alice", 60).await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "good calls waited {:?}",
        started.elapsed()
    );
    for task in loops {
        assert!(matches!(task.await.unwrap(), Err(Error::Policy(_))));
    }
}

#[test]
fn what_is_not_a_policy_is_rejected_with_the_reason() {
    let reason = |bytes: &[u8]| format!("{:#}", Policy::from_bytes(bytes).unwrap_err());
    assert!(reason(b"not wasm at all").contains("not a valid wasm component"));
    assert!(reason(b"(module)").contains("not a valid wasm component"));
    assert!(reason(b"(component)").contains("does not export the policy world"));
    let imports_more = br#"(component (import "evil:net/socket" (func)))"#;
    assert!(reason(imports_more).contains("imports something the host does not provide"));
}
