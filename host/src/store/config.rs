//! Which store to open, as the service's config file and the CLI name it.

use std::sync::Arc;

use serde::Deserialize;

#[cfg(feature = "redis")]
use super::{
    ClusterConfig, ClusterStore, NearCacheConfig, RedisConfig, RedisStore, SentinelConfig,
    SentinelStore,
};
use super::{EventStream, MemoryStore, Store};
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
    Redis(RedisConfig),
    /// Redis behind sentinels, following failovers.
    #[cfg(feature = "redis")]
    Sentinel(SentinelConfig),
    /// A Redis Cluster, following redirections, resharding and failovers.
    /// Its atomic steps and transactions must keep to one slot: the policy
    /// must put one hash tag per user in every key (`hardened` does).
    #[cfg(feature = "redis")]
    Cluster(ClusterConfig),
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
            Self::Redis(_) => "redis",
            #[cfg(feature = "redis")]
            Self::Sentinel(_) => "sentinel",
            #[cfg(feature = "redis")]
            Self::Cluster(_) => "cluster",
        }
    }

    /// The near cache settings of a Redis store; None for the memory store,
    /// which has no Redis to cache.
    #[cfg(feature = "redis")]
    pub fn near_cache_mut(&mut self) -> Option<&mut NearCacheConfig> {
        match self {
            Self::Memory => None,
            Self::Redis(config) => Some(&mut config.near_cache),
            Self::Sentinel(config) => Some(&mut config.server.near_cache),
            Self::Cluster(config) => Some(&mut config.server.near_cache),
        }
    }

    /// Opens the store, keeping session events as
    /// [`EventStream::default`] says; fails when it cannot be reached now.
    pub async fn open(&self) -> Result<Arc<dyn Store>, SetupError> {
        self.open_with_events(&EventStream::default()).await
    }

    /// Opens the store, keeping session events in `events`; fails when it
    /// cannot be reached now.
    pub async fn open_with_events(
        &self,
        events: &EventStream,
    ) -> Result<Arc<dyn Store>, SetupError> {
        let events = events.clone();
        Ok(match self {
            Self::Memory => Arc::new(MemoryStore::with_events(&events)),
            #[cfg(feature = "redis")]
            Self::Redis(config) => {
                Arc::new(RedisStore::connect(config.clone().with_events(events)).await?)
            }
            #[cfg(feature = "redis")]
            Self::Sentinel(config) => {
                let mut config = config.clone();
                config.server.events = events;
                Arc::new(SentinelStore::connect(config).await?)
            }
            #[cfg(feature = "redis")]
            Self::Cluster(config) => {
                let mut config = config.clone();
                config.server.events = events;
                Arc::new(ClusterStore::connect(config).await?)
            }
        })
    }
}
