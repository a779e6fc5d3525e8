//! Fixtures: real `redis-server` processes on free loopback ports, an
//! environment per store kind so that behaviour tests are written once,
//! the service under test, and what the tests share besides.

pub mod databases;
mod env;
pub mod failover;
pub mod http;
pub mod served;
mod stores;
pub mod user_service;

use std::time::Duration;

use dsession::{Limits, Policy, SessionManager, User};

pub use dsession_tests::{MASTER_NAME, RedisCluster, RedisServer, SentinelCluster, free_port};
pub use env::{Env, Kind};
pub use stores::{
    add_acl_user, assert_names_both_address_forms, cluster_config, redis_store, sentinel_config,
    tls_client_files,
};

/// 32 hex digits: the random part of a default-policy token.
pub const HEX32: &str = "0123456789abcdef0123456789abcdef";

/// The tokens list-user-token gives for `user`, sorted: what a comparison
/// with the tokens issued needs, whatever order the policy lists in.
pub async fn listed(sessions: &SessionManager, user: &str) -> Vec<String> {
    let mut tokens: Vec<String> = sessions
        .list_user_token(user)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.token)
        .collect();
    tokens.sort();
    tokens
}

/// Seconds since the Unix epoch, as the stores write expiry times.
pub fn now() -> i64 {
    since_epoch().as_secs() as i64
}

/// The time since the Unix epoch.
pub fn since_epoch() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
}

/// Asserts that `actual` is within 2 (seconds) of `expected`.
pub fn assert_near(actual: i64, expected: i64, what: &str) {
    assert!(
        (actual - expected).abs() <= 2,
        "{what}: {actual} is not near {expected}"
    );
}

/// `check_token_or_update_user` of a token that must be valid.
pub async fn checked_user(sessions: &SessionManager, token: &str, user_ttl: i64) -> User {
    sessions
        .check_token_or_update_user(token, user_ttl)
        .await
        .unwrap()
        .unwrap()
}

/// `check_token` of a token that must be valid.
pub async fn valid_user(sessions: &SessionManager, token: &str) -> User {
    sessions.check_token(token).await.unwrap().expect("valid")
}

/// The hostile test policy (loops, allocates or panics on request).
pub fn hostile_policy() -> Policy {
    Policy::from_file(concat!(env!("CARGO_MANIFEST_DIR"), "/guests/hostile.wasm")).unwrap()
}

/// Tight limits, so that the hostile policy's tests run fast.
pub fn tight_limits() -> Limits {
    Limits {
        call_timeout: Duration::from_millis(500),
        memory_bytes: 32 << 20,
        ..Limits::default()
    }
}

/// The built-in hardened policy.
pub fn hardened_policy() -> Policy {
    Policy::builtin_named("hardened").unwrap()
}

/// Writes behaviour tests once and runs each on every store kind: for each
/// `async fn name(env: Env)` listed, a test `memory::name`, `redis::name`
/// and `sentinel::name`. With `; policy = f` after the names, each
/// environment runs the policy `f()` returns; with `; policy = f, cluster`
/// a test `cluster::name` runs it on a Redis Cluster too (the policy must
/// keep each user's keys in one slot).
macro_rules! on_every_store {
    ($($name:ident),+ $(,)? $(; policy = $policy:path $(, $cluster:ident)?)?) => {
        /// The environment the tests below get on a store of `kind`.
        async fn store_env(kind: $crate::support::Kind) -> $crate::support::Env {
            let env = $crate::support::Env::new(kind).await;
            $(let env = env.with_policy($policy());)?
            env
        }

        /// A module `$module` of tests, one per name, on a store of `$kind`.
        macro_rules! tests_on {
            ($module:ident, $kind:ident) => {
                mod $module {
                    $(
                        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                        async fn $name() {
                            let kind = $crate::support::Kind::$kind;
                            super::$name(super::store_env(kind).await).await;
                        }
                    )*
                }
            };
        }

        tests_on!(memory, Memory);
        tests_on!(redis, Redis);
        tests_on!(sentinel, Sentinel);
        $($(tests_on!($cluster, Cluster);)?)?
    };
}
pub(crate) use on_every_store;
