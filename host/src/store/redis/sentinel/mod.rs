//! Redis behind Sentinel: the store asks the sentinels where the master is
//! and follows it when they fail over to a replica, without a restart.
//!
//! The master in use is lost when a connection to it fails, when it answers
//! `READONLY` (demoted), when replicas fail to acknowledge a durable write,
//! or when the sentinels name another address; the next call then asks the
//! sentinels again and checks `ROLE` on the address they give. A call in
//! flight when the master goes fails with a store error: a write may have
//! been applied before the connection broke, so writes are never sent twice.
//! A call that only reads is sent once more, to the new master.
//!
//! A master cut off from the sentinels keeps taking writes until it is
//! demoted; the store leaves it within a second of the sentinels naming
//! another. Writes it took meanwhile are lost unless `min_replicas_ack`
//! made them fail.
//!
//! The rooms: `discovery` (asking the sentinels) and `master` (the master
//! in use, and the search for the next).

mod discovery;
mod master;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use redis::RedisConnectionInfo;
use serde::Deserialize;

use self::discovery::Sentinels;
use self::master::{Follower, Master};
use crate::error::SetupError;
use crate::store::redis::codec::only_reads;
use crate::store::redis::error::setup_error;
use crate::store::redis::near_cache::{Counters, NearCacheCounts};
use crate::store::redis::net::{Connector, Dialer, TlsFiles};
use crate::store::redis::settings::ServerSettings;
use crate::store::{
    Command, EventRange, MemoryPolicy, Reply, Store, StoreError, StoredEvent, Transaction,
};

/// How to find the master through Redis Sentinel; in a config file, the
/// `[store]` table with `kind = "sentinel"`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
// Keys that neither the fields nor the flattened `server` take are still
// refused: serde checks what is left (tests/server.rs pins it).
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    /// The sentinels, as `host:port` or `redis://host:port`, asked in turn;
    /// the one that last named a working master is asked first.
    pub sentinels: Vec<String>,
    /// The name the sentinels monitor the master under
    /// (`sentinel monitor NAME …`).
    pub master_name: String,
    /// Password on the sentinels, when they have `requirepass`.
    #[serde(default)]
    pub sentinel_password: Option<String>,
    /// Database number on the master.
    #[serde(default)]
    pub db: i64,
    /// The user and durable writes on the master, the timeouts also with
    /// the sentinels.
    #[serde(flatten)]
    pub server: ServerSettings,
    /// TLS to the sentinels and the master (`[store.tls]`); none for plain
    /// TCP.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
}

impl SentinelConfig {
    /// The master called `master_name` behind `sentinels` (`host:port`),
    /// database 0, no password on the sentinels, the default
    /// [`ServerSettings`], plain TCP.
    pub fn new(sentinels: Vec<String>, master_name: impl Into<String>) -> Self {
        Self {
            sentinels,
            master_name: master_name.into(),
            sentinel_password: None,
            db: 0,
            server: ServerSettings::default(),
            tls: None,
        }
    }
}

impl fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelConfig")
            .field("sentinels", &self.sentinels)
            .field("master_name", &self.master_name)
            .field(
                "sentinel_password",
                &self.sentinel_password.as_ref().map(|_| "***"),
            )
            .field("db", &self.db)
            .field("server", &self.server)
            .field("tls", &self.tls)
            .finish()
    }
}

/// A store on the master that Redis Sentinel names, following failovers.
/// Cloning it shares its connections.
#[derive(Clone)]
pub struct SentinelStore {
    follower: Arc<Follower>,
    near_cache: Option<Arc<Counters>>,
}

impl fmt::Debug for SentinelStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelStore")
            .field("master_name", &self.follower.sentinels().master_name())
            .field("sentinels", &self.follower.sentinels().addresses())
            .field("master", &self.master_address())
            .finish_non_exhaustive()
    }
}

impl SentinelStore {
    /// Asks the sentinels for the master and connects to it; fails when no
    /// sentinel can be reached, when they do not know `master_name`, or
    /// when the master they name cannot be used.
    pub async fn connect(config: SentinelConfig) -> Result<Self, SetupError> {
        Self::open(config).await.map_err(setup_error)
    }

    async fn open(config: SentinelConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(!config.sentinels.is_empty(), "no sentinel addresses given");
        anyhow::ensure!(!config.master_name.is_empty(), "no master name given");
        let connector = Connector::new(config.tls.as_ref())?;
        let sentinels = Sentinels::new(
            config.master_name,
            &config.sentinels,
            config.sentinel_password.as_deref(),
            &connector,
            config.server.timeouts(None),
        )?;
        let ack = config.server.ack()?;
        let masters = Dialer::new(
            connector,
            config
                .server
                .log_in(RedisConnectionInfo::default().set_db(config.db)),
            config.server.timeouts(ack),
        );
        config.server.near_cache.validate()?;
        let counters = Arc::new(Counters::default());
        let near_cache = config
            .server
            .near_cache
            .enabled
            .then(|| Arc::clone(&counters));
        let follower = Arc::new(Follower::new(
            sentinels,
            masters,
            ack,
            config.server.near_cache,
            counters,
            config.server.events,
        ));
        follower.master().await?;
        Follower::follow(Arc::downgrade(&follower));
        Ok(Self {
            follower,
            near_cache,
        })
    }

    /// The master in use, as `host:port`; None while none is known.
    pub fn master_address(&self) -> Option<String> {
        self.follower
            .in_use()
            .map(|master| master.address().to_string())
    }

    /// Runs `call` on the master; when it fails because the master went,
    /// runs it once more on the next master if `resend` (it only reads).
    async fn on_master<T, F, Fut>(&self, resend: bool, call: F) -> Result<T, StoreError>
    where
        F: Fn(Master) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let master = self.follower.master().await?;
        let outcome = match call(Arc::clone(&master)).await {
            Err(_) if resend && master.is_lost() => {
                let master = self.follower.master().await?;
                call(Arc::clone(&master))
                    .await
                    .map_err(|error| (master, error))
            }
            outcome => outcome.map_err(|error| (master, error)),
        };
        outcome.map_err(|(master, error)| {
            error.context(format!(
                "redis master {:?} at {}",
                self.follower.sentinels().master_name(),
                master.address()
            ))
        })
    }
}

#[async_trait]
impl Store for SentinelStore {
    async fn batch(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        self.on_master(only_reads(&commands), |master| {
            let commands = &commands;
            async move { master.batch(commands).await }
        })
        .await
    }

    async fn atomic(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        self.on_master(only_reads(&commands), |master| {
            let commands = &commands;
            async move { master.atomic(commands).await }
        })
        .await
    }

    async fn watch(
        &self,
        keys: Vec<String>,
        reads: Vec<Command>,
    ) -> Result<(Box<dyn Transaction>, Vec<Reply>), StoreError> {
        self.on_master(only_reads(&reads), |master| {
            let (keys, reads) = (&keys, &reads);
            async move { master.watch(keys, reads).await }
        })
        .await
    }

    async fn confirm_writes(&self) -> Result<(), StoreError> {
        self.on_master(false, |master| async move { master.confirm_writes().await })
            .await
    }

    fn near_cache(&self) -> Option<NearCacheCounts> {
        self.near_cache.as_ref().map(|counters| counters.snapshot())
    }

    /// The master's stream; read from the next master when the one in
    /// use went.
    async fn read_events(&self, range: EventRange) -> Result<Vec<StoredEvent>, StoreError> {
        self.on_master(
            true,
            |master| async move { master.read_events(range).await },
        )
        .await
    }

    /// The master's; read from the next master when the one in use went.
    async fn memory_policies(&self) -> Result<Vec<MemoryPolicy>, StoreError> {
        let policy = self
            .on_master(true, |master| async move { master.memory_policy().await })
            .await?;
        Ok(vec![policy])
    }

    /// A writable master, and with durable writes: enough replicas to
    /// acknowledge them, all known to the sentinels (one they do not know
    /// yet could hold the acknowledgements while they promote another).
    async fn ready(&self) -> Result<(), StoreError> {
        let master = self
            .on_master(true, |master| async move {
                match master.role().await?.as_str() {
                    "master" => Ok(master),
                    role => {
                        master.mark_lost();
                        Err(StoreError::new(format!("ROLE is {role}, not master")))
                    }
                }
            })
            .await?;
        let Some(ack) = self.follower.ack() else {
            return Ok(());
        };
        let replicas = master.replicas().await?;
        if replicas.len() < ack.replicas {
            return Err(StoreError::new(format!(
                "durable writes cannot succeed: min_replicas_ack is {} but the master has {} connected replica(s)",
                ack.replicas,
                replicas.len()
            )));
        }
        let known = self.follower.sentinels().known_replicas().await?;
        let unknown: Vec<&String> = replicas.iter().filter(|r| !known.contains(r)).collect();
        if !unknown.is_empty() {
            return Err(StoreError::new(format!(
                "replica(s) {unknown:?} of the master are not yet known to the sentinels: \
                 a failover now could promote a replica that lacks acknowledged writes"
            )));
        }
        Ok(())
    }
}
