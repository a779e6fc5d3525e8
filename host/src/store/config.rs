//! Which store to open, as the service's config file and the CLI name it.

use std::sync::Arc;
#[cfg(feature = "redis")]
use std::time::Duration;

use serde::Deserialize;

#[cfg(feature = "redis")]
use super::{
    ClusterConfig, ClusterStore, DEFAULT_TIMEOUT_MS, RedisConfig, RedisStore, SentinelConfig,
    SentinelStore, TlsFiles,
};
use super::{MemoryStore, Store};
use crate::error::SetupError;

/// A store and its settings, picked by `kind`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    /// The embedded store: tokens live in this process only.
    #[default]
    Memory,
    /// One Redis server.
    #[cfg(feature = "redis")]
    Redis {
        /// `redis://[user:password@]host:port/db`.
        url: String,
        /// Connect timeout in milliseconds (default 1000).
        #[serde(default = "default_timeout_ms")]
        connect_timeout_ms: u64,
        /// Command timeout in milliseconds (default 1000).
        #[serde(default = "default_timeout_ms")]
        command_timeout_ms: u64,
        /// Certificates for a `rediss://` URL (`[store.tls]`).
        #[serde(default)]
        tls: TlsFiles,
    },
    /// Redis behind sentinels, following failovers.
    #[cfg(feature = "redis")]
    Sentinel {
        /// The sentinels, as `host:port`.
        sentinels: Vec<String>,
        /// The name the sentinels monitor the master under.
        master_name: String,
        /// ACL user on the master.
        #[serde(default)]
        username: Option<String>,
        /// Password on the master.
        #[serde(default)]
        password: Option<String>,
        /// Password on the sentinels.
        #[serde(default)]
        sentinel_password: Option<String>,
        /// Database number.
        #[serde(default)]
        db: i64,
        /// Connect timeout in milliseconds (default 1000).
        #[serde(default = "default_timeout_ms")]
        connect_timeout_ms: u64,
        /// Command timeout in milliseconds (default 1000).
        #[serde(default = "default_timeout_ms")]
        command_timeout_ms: u64,
        /// Durable writes: replicas that must acknowledge each revoking or
        /// issuing write (0, the default, turns this off; see
        /// [`SentinelConfig::min_replicas_ack`] for its cost).
        #[serde(default)]
        min_replicas_ack: usize,
        /// How long a durable write waits for its replicas, in milliseconds.
        #[serde(default = "default_timeout_ms")]
        ack_timeout_ms: u64,
        /// TLS to the sentinels and the master (`[store.tls]`); absent
        /// means plain TCP.
        #[serde(default)]
        tls: Option<TlsFiles>,
    },
    /// A Redis Cluster, following redirections, resharding and failovers.
    #[cfg(feature = "redis")]
    /// Its atomic steps and transactions must keep to one slot: the policy
    /// must put one hash tag per user in every key (`hardened` does).
    Cluster {
        /// Seed nodes, `redis://host:port` or `rediss://host:port`; the
        /// others are learned from them.
        nodes: Vec<String>,
        /// ACL user on every node.
        #[serde(default)]
        username: Option<String>,
        /// Password on every node.
        #[serde(default)]
        password: Option<String>,
        /// Connect timeout in milliseconds (default 1000).
        #[serde(default = "default_timeout_ms")]
        connect_timeout_ms: u64,
        /// Command timeout in milliseconds, redirections and retries
        /// included (default 1000).
        #[serde(default = "default_timeout_ms")]
        command_timeout_ms: u64,
        /// Durable writes: replicas of the master that took a write that
        /// must acknowledge it (0, the default, turns this off).
        #[serde(default)]
        min_replicas_ack: usize,
        /// How long a durable write waits for its replicas, in milliseconds.
        #[serde(default = "default_timeout_ms")]
        ack_timeout_ms: u64,
        /// Certificates for `rediss://` nodes (`[store.tls]`).
        #[serde(default)]
        tls: TlsFiles,
    },
}

#[cfg(feature = "redis")]
fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs and passwords stay out of logs.
        f.write_str(self.kind())
    }
}

impl StoreConfig {
    /// `memory`, `redis`, `sentinel` or `cluster`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            #[cfg(feature = "redis")]
            Self::Redis { .. } => "redis",
            #[cfg(feature = "redis")]
            Self::Sentinel { .. } => "sentinel",
            #[cfg(feature = "redis")]
            Self::Cluster { .. } => "cluster",
        }
    }

    /// Opens the store; fails when it cannot be reached now.
    pub async fn open(&self) -> Result<Arc<dyn Store>, SetupError> {
        Ok(match self {
            Self::Memory => Arc::new(MemoryStore::new()),
            #[cfg(feature = "redis")]
            Self::Redis {
                url,
                connect_timeout_ms,
                command_timeout_ms,
                tls,
            } => Arc::new(
                RedisStore::connect(RedisConfig {
                    url: url.clone(),
                    connect_timeout: Duration::from_millis(*connect_timeout_ms),
                    command_timeout: Duration::from_millis(*command_timeout_ms),
                    tls: tls.clone(),
                })
                .await?,
            ),
            #[cfg(feature = "redis")]
            Self::Sentinel {
                sentinels,
                master_name,
                username,
                password,
                sentinel_password,
                db,
                connect_timeout_ms,
                command_timeout_ms,
                min_replicas_ack,
                ack_timeout_ms,
                tls,
            } => Arc::new(
                SentinelStore::connect(SentinelConfig {
                    username: username.clone(),
                    password: password.clone(),
                    sentinel_password: sentinel_password.clone(),
                    db: *db,
                    connect_timeout: Duration::from_millis(*connect_timeout_ms),
                    command_timeout: Duration::from_millis(*command_timeout_ms),
                    min_replicas_ack: *min_replicas_ack,
                    ack_timeout: Duration::from_millis(*ack_timeout_ms),
                    tls: tls.clone(),
                    ..SentinelConfig::new(sentinels.clone(), master_name.clone())
                })
                .await?,
            ),
            #[cfg(feature = "redis")]
            Self::Cluster {
                nodes,
                username,
                password,
                connect_timeout_ms,
                command_timeout_ms,
                min_replicas_ack,
                ack_timeout_ms,
                tls,
            } => Arc::new(
                ClusterStore::connect(ClusterConfig {
                    username: username.clone(),
                    password: password.clone(),
                    connect_timeout: Duration::from_millis(*connect_timeout_ms),
                    command_timeout: Duration::from_millis(*command_timeout_ms),
                    min_replicas_ack: *min_replicas_ack,
                    ack_timeout: Duration::from_millis(*ack_timeout_ms),
                    tls: tls.clone(),
                    ..ClusterConfig::new(nodes.clone())
                })
                .await?,
            ),
        })
    }
}
