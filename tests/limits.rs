//! A misbehaving policy is stopped and the host keeps serving.

use std::time::{Duration, Instant};

use std::sync::Arc;

use dsession::{Error, InstanceReuse, Limits, Policy, SessionManager};

use crate::support::{hostile_policy, tight_limits};

fn hostile() -> SessionManager {
    hostile_with(tight_limits())
}

fn hostile_with(limits: Limits) -> SessionManager {
    SessionManager::builder()
        .policy(hostile_policy())
        .limits(limits)
        .build()
        .unwrap()
}

/// What the hostile policy's set-token for `user` returns as its expiry:
/// the instance's call count, or for `peek` whether it was tainted.
async fn expiry(sessions: &SessionManager, user: &str) -> i64 {
    sessions
        .set_token(user, 60)
        .await
        .unwrap()
        .token_expire_time
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_reused_but_never_after_a_trap() {
    let sessions = hostile();
    assert_eq!(expiry(&sessions, "count").await, 1);
    assert_eq!(
        expiry(&sessions, "count").await,
        2,
        "a warm instance serves"
    );
    for (user, reason) in [
        ("taint", "tainted its instance"),
        ("loop", "time limit"),
        ("alloc", "memory"),
        ("panic", "panics on request"),
    ] {
        assert_policy_error(&sessions, user, reason).await;
        assert_eq!(expiry(&sessions, "peek").await, 0, "after {user}");
        assert_eq!(expiry(&sessions, "count").await, 2, "after {user}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_instance_never_sees_the_state_of_a_trapped_one() {
    let sessions = Arc::new(hostile());
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let sessions = Arc::clone(&sessions);
            tokio::spawn(async move {
                let mut peeks = Vec::new();
                for round in 0..25 {
                    if (task + round) % 3 == 0 {
                        assert!(matches!(
                            sessions.set_token("taint", 60).await,
                            Err(Error::Policy(_))
                        ));
                    } else {
                        peeks.push(expiry(&sessions, "peek").await);
                    }
                }
                peeks
            })
        })
        .collect();
    for task in tasks {
        let peeks = task.await.unwrap();
        assert!(!peeks.is_empty());
        assert!(peeks.iter().all(|&tainted| tainted == 0), "{peeks:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_mode_gives_every_call_a_new_instance() {
    let sessions = hostile_with(Limits {
        reuse: InstanceReuse::Fresh,
        ..tight_limits()
    });
    for _ in 0..3 {
        assert_eq!(expiry(&sessions, "count").await, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_is_replaced_after_its_call_budget() {
    let sessions = hostile_with(Limits {
        reuse: InstanceReuse::Pooled {
            max_calls: 2,
            max_memory_bytes: 64 << 20,
        },
        ..tight_limits()
    });
    let counts = [
        expiry(&sessions, "count").await,
        expiry(&sessions, "count").await,
        expiry(&sessions, "count").await,
    ];
    assert_eq!(counts, [1, 2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_grown_past_its_memory_bound_is_replaced() {
    let sessions = hostile_with(Limits {
        reuse: InstanceReuse::Pooled {
            max_calls: 1000,
            max_memory_bytes: 3 << 20,
        },
        ..tight_limits()
    });
    assert_eq!(expiry(&sessions, "count").await, 1);
    assert_eq!(expiry(&sessions, "hoard").await, 2);
    assert_eq!(expiry(&sessions, "count").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_swap_starts_from_new_instances() {
    let policy = hostile_policy();
    let sessions = SessionManager::builder()
        .policy(policy.clone())
        .build()
        .unwrap();
    assert_eq!(expiry(&sessions, "count").await, 1);
    assert_eq!(expiry(&sessions, "count").await, 2);
    sessions.swap_policy(policy);
    assert_eq!(expiry(&sessions, "count").await, 1);
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

#[test]
fn every_import_the_host_lacks_is_named_with_its_package_and_version() {
    let imports = br#"(component
        (import "wasi:http/outgoing-handler@0.2.0" (instance (export "handle" (func))))
        (import "wasi:cli/environment@0.2.3" (instance))
        (import "wasi:random/random@0.2.3" (instance
            (export "get-random-bytes" (func (param "len" u64) (result string)))))
        (import "acme:cache/lookup" (instance
            (export "get" (func (param "key" string) (result string)))))
    )"#;
    let refused = format!("{:#}", Policy::from_bytes(imports).unwrap_err());
    let lines: Vec<&str> = refused.lines().collect();
    assert_eq!(lines.len(), 5, "{refused}");
    assert!(lines[0].ends_with("the component imports something the host does not provide:"));
    assert!(
        lines[1].starts_with(
            "  wasi:http/outgoing-handler@0.2.0 (interface outgoing-handler of package \
             wasi:http, version 0.2.0): instance export `handle`"
        ),
        "{refused}"
    );
    assert!(
        lines[2].starts_with(
            "  wasi:random/random@0.2.3 (interface random of package wasi:random, version \
             0.2.3): instance export `get-random-bytes` has the wrong type"
        ),
        "a provided interface of another shape: {refused}"
    );
    assert!(
        lines[3].starts_with(
            "  acme:cache/lookup (interface lookup of package acme:cache, no version):"
        ),
        "{refused}"
    );
    assert!(
        lines[4].starts_with("this host provides WASI 0.2"),
        "{refused}"
    );
}
