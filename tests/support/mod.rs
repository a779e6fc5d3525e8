//! Fixtures: real `redis-server` processes on free loopback ports, and an
//! environment per store kind so that behaviour tests are written once.

pub mod failover;

use std::sync::Arc;
use std::time::Duration;

use dsession::store::{
    self, ClusterConfig, ClusterStore, MemoryStore, RedisConfig, RedisStore, Reply, SentinelConfig,
    SentinelStore, Store, TlsFiles,
};
use dsession::{Limits, Policy, SessionManager, SessionManagerBuilder, Settings};
use dsession_tests::TestCertificates;
pub use dsession_tests::{MASTER_NAME, RedisCluster, RedisServer, SentinelCluster, free_port};
use redis::aio::MultiplexedConnection;

/// Which store an environment runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Redis,
    Sentinel,
    /// A Redis Cluster: only for policies that keep a user's keys in one
    /// slot.
    Cluster,
}

/// One store to run behaviour tests on, with the servers behind it.
pub struct Env {
    pub store: Arc<dyn Store>,
    pub redis: Option<RedisServer>,
    pub sentinel: Option<SentinelCluster>,
    pub cluster: Option<RedisCluster>,
    /// The policy managers get; the built-in default when None.
    pub policy: Option<Policy>,
}

impl Env {
    pub async fn new(kind: Kind) -> Self {
        match kind {
            Kind::Memory => Self {
                store: Arc::new(MemoryStore::new()),
                redis: None,
                sentinel: None,
                cluster: None,
                policy: None,
            },
            Kind::Redis => {
                let server = RedisServer::start();
                let store = RedisStore::connect(RedisConfig::new(server.url()))
                    .await
                    .unwrap();
                Self {
                    store: Arc::new(store),
                    redis: Some(server),
                    sentinel: None,
                    cluster: None,
                    policy: None,
                }
            }
            Kind::Sentinel => {
                let cluster = SentinelCluster::start();
                let store = SentinelStore::connect(sentinel_config(&cluster))
                    .await
                    .unwrap();
                Self {
                    store: Arc::new(store),
                    redis: None,
                    sentinel: Some(cluster),
                    cluster: None,
                    policy: None,
                }
            }
            Kind::Cluster => {
                let cluster = RedisCluster::start();
                let store = ClusterStore::connect(ClusterConfig::new(cluster.urls()))
                    .await
                    .unwrap();
                Self {
                    store: Arc::new(store),
                    redis: None,
                    sentinel: None,
                    cluster: Some(cluster),
                    policy: None,
                }
            }
        }
    }

    /// The same environment with managers on `policy`.
    pub fn with_policy(self, policy: Policy) -> Self {
        Self {
            policy: Some(policy),
            ..self
        }
    }

    /// A builder on this environment's store and policy.
    pub fn builder(&self) -> SessionManagerBuilder {
        let builder = SessionManager::builder().shared_store(Arc::clone(&self.store));
        match &self.policy {
            Some(policy) => builder.policy(policy.clone()),
            None => builder,
        }
    }

    /// A manager with default settings.
    pub fn manager(&self) -> SessionManager {
        self.builder().build().unwrap()
    }

    /// A manager with `settings`.
    pub fn manager_with(&self, settings: Settings) -> SessionManager {
        self.builder().settings(settings).build().unwrap()
    }

    /// Runs raw commands against the store, as another service would.
    pub async fn raw(&self, commands: Vec<store::Command>) -> Vec<Reply> {
        self.store.batch(commands).await.unwrap()
    }

    /// The fields of a hash, sorted.
    pub async fn hash(&self, key: &str) -> Vec<(String, String)> {
        match self
            .raw(vec![store::Command::HashGetAll(key.into())])
            .await
            .remove(0)
        {
            Reply::Pairs(mut pairs) => {
                pairs.sort();
                pairs
            }
            other => panic!("HGETALL {key} gave {other:?}"),
        }
    }

    /// `TTL key`.
    pub async fn ttl(&self, key: &str) -> i64 {
        match self
            .raw(vec![store::Command::Ttl(key.into())])
            .await
            .remove(0)
        {
            Reply::Integer(ttl) => ttl,
            other => panic!("TTL {key} gave {other:?}"),
        }
    }
}

/// The hostile test policy (loops, allocates or panics on request).
pub fn hostile_policy() -> Policy {
    Policy::from_file(concat!(env!("OUT_DIR"), "/dsession_hostile_policy.wasm")).unwrap()
}

/// Tight limits, so that the hostile policy's tests run fast.
pub fn tight_limits() -> Limits {
    Limits {
        call_timeout: Duration::from_millis(500),
        memory_bytes: 32 << 20,
        ..Limits::default()
    }
}

/// How to reach the master of `cluster` through its sentinels.
pub fn sentinel_config(cluster: &SentinelCluster) -> SentinelConfig {
    SentinelConfig::new(cluster.sentinel_addresses(), MASTER_NAME)
}

/// How to reach `cluster` through all its nodes.
pub fn cluster_config(cluster: &RedisCluster) -> ClusterConfig {
    ClusterConfig::new(cluster.urls())
}

/// The client's side of `certificates`: trusting the CA in `ca`
/// (`ca.crt`, or `other-ca.crt`, which signed nothing the servers present),
/// with the client certificate.
pub fn tls_client_files(certificates: &TestCertificates, ca: &str) -> TlsFiles {
    TlsFiles {
        ca_file: Some(certificates.path(ca)),
        client_cert_file: Some(certificates.path("client.crt")),
        client_key_file: Some(certificates.path("client.key")),
    }
}

/// Makes the ACL user `dsession`, password `s3cret`, on the server behind
/// `connection`, reaching only keys that match `key_patterns`.
pub async fn add_acl_user(connection: &mut MultiplexedConnection, key_patterns: &[&str]) {
    let mut command = redis::cmd("ACL");
    command
        .arg("SETUSER")
        .arg("dsession")
        .arg("on")
        .arg(">s3cret")
        .arg("resetkeys");
    for pattern in key_patterns {
        command.arg(format!("~{pattern}"));
    }
    command
        .arg("+@all")
        .query_async::<()>(connection)
        .await
        .expect("ACL SETUSER");
}

/// The built-in hardened policy.
pub fn hardened_policy() -> Policy {
    Policy::builtin_named("hardened").unwrap()
}

/// Writes behaviour tests once and runs each on every store kind: for each
/// `async fn name(env: Env)` listed, a test `memory::name`, `redis::name`
/// and `sentinel::name`. With `policy = f;` first, each environment runs
/// the policy `f()` returns; with `policy = f, cluster;` a test
/// `cluster::name` runs it on a Redis Cluster too (the policy must keep
/// each user's keys in one slot).
macro_rules! on_every_store {
    (policy = $policy:path, cluster; $($name:ident),* $(,)?) => {
        $crate::support::on_every_store!(policy = $policy; $($name),*);
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let env = $crate::support::Env::new($crate::support::Kind::Cluster).await;
                    super::$name(env.with_policy($policy())).await;
                }
            )*
        }
    };
    (policy = $policy:path; $($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let env = $crate::support::Env::new($crate::support::Kind::Memory).await;
                    super::$name(env.with_policy($policy())).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let env = $crate::support::Env::new($crate::support::Kind::Redis).await;
                    super::$name(env.with_policy($policy())).await;
                }
            )*
        }
        mod sentinel {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let env = $crate::support::Env::new($crate::support::Kind::Sentinel).await;
                    super::$name(env.with_policy($policy())).await;
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Env::new($crate::support::Kind::Memory).await).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Env::new($crate::support::Kind::Redis).await).await;
                }
            )*
        }
        mod sentinel {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Env::new($crate::support::Kind::Sentinel).await).await;
                }
            )*
        }
    };
}
pub(crate) use on_every_store;

/// A GET to an in-process app, with the token as `Authorization: Bearer`
/// when given: status, headers and body text.
pub async fn get(
    app: &axum::Router,
    uri: &str,
    token: Option<&str>,
) -> (axum::http::StatusCode, axum::http::HeaderMap, String) {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    let mut request = axum::http::Request::builder().uri(uri);
    if let Some(token) = token {
        request = request.header(axum::http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}
