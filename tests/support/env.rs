//! An environment per store kind, so that behaviour tests are written
//! once.

use std::sync::Arc;

use dsession::store::{self, ClusterStore, MemoryStore, Reply, SentinelStore, Store};
use dsession::{Policy, SessionManager, SessionManagerBuilder, Settings};

use super::stores::{cluster_config, redis_store, sentinel_config};
use super::{RedisCluster, RedisServer, SentinelCluster};

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
        let mut env = Self {
            store: Arc::new(MemoryStore::new()),
            redis: None,
            sentinel: None,
            cluster: None,
            policy: None,
        };
        match kind {
            Kind::Memory => {}
            Kind::Redis => {
                let server = env.redis.insert(RedisServer::start());
                env.store = Arc::new(redis_store(server).await);
            }
            Kind::Sentinel => {
                let cluster = env.sentinel.insert(SentinelCluster::start());
                let config = sentinel_config(cluster);
                env.store = Arc::new(SentinelStore::connect(config).await.unwrap());
            }
            Kind::Cluster => {
                let cluster = env.cluster.insert(RedisCluster::start());
                let config = cluster_config(cluster);
                env.store = Arc::new(ClusterStore::connect(config).await.unwrap());
            }
        }
        env
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
