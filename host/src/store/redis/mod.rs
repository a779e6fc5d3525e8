//! The Redis stores: one server ([`RedisStore`], here), a master behind
//! Sentinel ([`SentinelStore`]) and a Redis Cluster ([`ClusterStore`]).
//!
//! What the three share has a module of its own, as in redis-rs: `codec`
//! (each store command as a Redis command, each reply as the store's),
//! `server` (the shared and dedicated connections to one server, batches,
//! `MULTI`/`EXEC` and `WATCH`), `pool` (idle dedicated connections), `ack`
//! (durable writes with `WAIT`), `error` (what a Redis failure means: an
//! outage, corrupt data, a full server, a server gone; URLs without
//! passwords), `memory` (how a server makes room once full), `net`
//! (plain TCP or TLS, node addresses, the default timeouts) and `settings`
//! (what the sentinel and cluster stores are configured with alike).
//!
//! A single server is shared with every other service on it. Batches go
//! over one auto-reconnecting multiplexed connection; a `WATCH` takes a
//! dedicated connection for its whole life.

mod ack;
mod cluster;
mod codec;
mod error;
mod memory;
mod near_cache;
mod net;
mod pool;
mod sentinel;
mod server;
mod settings;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use redis::Client;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;

pub use self::cluster::{ClusterConfig, ClusterStore, key_slot};
use self::codec::Events;
use self::error::{redact, setup_error};
use self::near_cache::{Counters, NearCache};
pub use self::near_cache::{
    DEFAULT_NEAR_CACHE_ENTRIES, Flush, NearCacheConfig, NearCacheCounts, TrackingMode,
};
use self::net::{DEFAULT_TIMEOUT, default_timeout, millis, timeouts};
pub use self::net::{DEFAULT_TIMEOUT_MS, TlsFiles};
pub use self::sentinel::{SentinelConfig, SentinelStore};
use self::server::Server;
pub use self::settings::ServerSettings;
use crate::error::SetupError;
use crate::store::{
    Command, EventRange, EventStream, MemoryPolicy, Reply, Store, StoreError, StoredEvent,
    Transaction,
};

/// How to reach a Redis server; in a config file, the `[store]` table
/// with `kind = "redis"`, each duration a `*_ms` key in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// How long connecting may take (`connect_timeout_ms`).
    #[serde(
        rename = "connect_timeout_ms",
        default = "default_timeout",
        deserialize_with = "millis"
    )]
    pub connect_timeout: Duration,
    /// How long a round trip may take (`command_timeout_ms`).
    #[serde(
        rename = "command_timeout_ms",
        default = "default_timeout",
        deserialize_with = "millis"
    )]
    pub command_timeout: Duration,
    /// Certificates for a `rediss://` URL (`[store.tls]`); without a CA
    /// file the system's roots are trusted.
    #[serde(default)]
    pub tls: TlsFiles,
    /// Answers batches of reads from memory (`[store.near_cache]`); off by
    /// default.
    #[serde(default)]
    pub near_cache: NearCacheConfig,
    /// Where session events go (the service's `[events]`).
    #[serde(skip)]
    pub events: EventStream,
}

impl RedisConfig {
    /// The server at `url` with the default timeouts
    /// ([`DEFAULT_TIMEOUT_MS`] each).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connect_timeout: DEFAULT_TIMEOUT,
            command_timeout: DEFAULT_TIMEOUT,
            tls: TlsFiles::default(),
            near_cache: NearCacheConfig::default(),
            events: EventStream::default(),
        }
    }

    /// This config with the near cache `near_cache`.
    pub fn with_near_cache(self, near_cache: NearCacheConfig) -> Self {
        Self { near_cache, ..self }
    }

    /// This config with session events kept in `events`.
    pub fn with_events(self, events: EventStream) -> Self {
        Self { events, ..self }
    }
}

/// A store on one Redis server. Cloning it shares its connections.
#[derive(Clone)]
pub struct RedisStore {
    server: Arc<Server<ConnectionManager>>,
    near_cache: Option<Arc<Counters>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("server", self.server.address())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the server; fails when it cannot be reached now.
    pub async fn connect(config: RedisConfig) -> Result<Self, SetupError> {
        Self::open(config).await.map_err(setup_error)
    }

    async fn open(config: RedisConfig) -> anyhow::Result<Self> {
        let client = if config.url.starts_with("rediss://") {
            Client::build_with_tls(config.url.as_str(), config.tls.certificates()?)
        } else {
            anyhow::ensure!(
                config.tls == TlsFiles::default(),
                "TLS certificates are configured, but {} is not a rediss:// URL",
                redact(&config.url)
            );
            Client::open(config.url.as_str())
        }
        .with_context(|| format!("invalid redis URL {:?}", redact(&config.url)))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let shared = ConnectionManager::new_with_config(client.clone(), manager_config)
            .await
            .with_context(|| format!("cannot connect to redis at {}", redact(&config.url)))?;
        let dedicated = timeouts(config.connect_timeout, config.command_timeout);
        config.near_cache.validate()?;
        let counters = Arc::new(Counters::default());
        let near = NearCache::start(&config.near_cache, &client, dedicated.clone(), &counters)
            .with_context(|| format!("invalid redis URL {:?}", redact(&config.url)))?;
        Ok(Self {
            near_cache: near.is_some().then_some(counters),
            server: Arc::new(Server::new(
                client,
                shared,
                dedicated,
                None,
                near,
                Events::single(config.events),
            )),
        })
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn batch(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        self.server.batch(&commands).await
    }

    async fn atomic(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        self.server.atomic(&commands).await
    }

    async fn watch(
        &self,
        keys: Vec<String>,
        reads: Vec<Command>,
    ) -> Result<(Box<dyn Transaction>, Vec<Reply>), StoreError> {
        self.server.watch(&keys, &reads).await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.server.ping().await
    }

    async fn confirm_writes(&self) -> Result<(), StoreError> {
        self.server.confirm_writes().await
    }

    async fn memory_policies(&self) -> Result<Vec<MemoryPolicy>, StoreError> {
        Ok(vec![self.server.memory_policy().await?])
    }

    async fn read_events(&self, range: EventRange) -> Result<Vec<StoredEvent>, StoreError> {
        self.server.read_events(range).await
    }

    fn near_cache(&self) -> Option<NearCacheCounts> {
        self.near_cache.as_ref().map(|counters| counters.snapshot())
    }
}
