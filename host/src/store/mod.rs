//! Key-value stores with Redis semantics: what a policy reads and writes.
//!
//! A [`Store`] runs the typed commands of the policy's `store` interface.
//! Each method is one network round trip however many commands it carries,
//! so a policy can reason about its cost.

mod config;
mod events;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod tap;

use std::fmt;

use async_trait::async_trait;

pub use self::config::StoreConfig;
#[cfg(feature = "redis")]
pub(crate) use self::events::merge as merge_events;
pub use self::events::{DEFAULT_EVENTS_MAX_LEN, EventId, EventRange, EventStream, StoredEvent};
pub use self::memory::MemoryStore;
#[cfg(feature = "redis")]
pub use self::redis::{
    ClusterConfig, ClusterStore, DEFAULT_NEAR_CACHE_ENTRIES, DEFAULT_TIMEOUT_MS, Flush,
    NearCacheConfig, NearCacheCounts, RedisConfig, RedisStore, SentinelConfig, SentinelStore,
    ServerSettings, TlsFiles, TrackingMode, key_slot,
};
pub use self::tap::{Call, Counters, Counts, Tap};

// The WIT `store` interface's own types, generated once; their docs say
// what each command replies.
pub use crate::wit::store::{
    Command, EventArgs, ExpireArgs, ExpireCondition, GetExpireArgs, HashDeleteArgs, HashExistsArgs,
    HashGetArgs, HashSetArgs, Reply, SetArgs, SetCondition,
};

impl Command {
    /// Rejects arguments Redis would reject or misread, so that a bad policy
    /// gets a clear error instead of a surprise (`EXPIRE 0` deletes a key).
    pub fn validate(&self) -> Result<(), StoreError> {
        let invalid = |what: &str| Err(StoreError::invalid_command(format!("{what} in {self:?}")));
        match self {
            Self::Set(SetArgs { ttl_seconds, .. }) if *ttl_seconds < 0 => {
                invalid("negative SET ttl")
            }
            Self::Expire(ExpireArgs { seconds, .. }) if *seconds < 1 => {
                invalid("EXPIRE seconds below 1")
            }
            Self::GetExpire(GetExpireArgs { seconds, .. }) if *seconds < 1 => {
                invalid("GETEX seconds below 1")
            }
            Self::Del(keys) | Self::Exists(keys) if keys.is_empty() => invalid("no keys"),
            Self::HashSet(HashSetArgs { fields, .. }) if fields.is_empty() => invalid("no fields"),
            Self::HashDelete(HashDeleteArgs { fields, .. }) if fields.is_empty() => {
                invalid("no fields")
            }
            Self::AppendEvent(EventArgs { fields, .. }) if fields.is_empty() => {
                invalid("no fields")
            }
            _ => Ok(()),
        }
    }

    /// The keys the command touches, in order; for an event, the key it is
    /// written beside, whose slot its stream shares on a cluster.
    pub fn keys(&self) -> impl Iterator<Item = &str> + Clone {
        let keys: &[String] = match self {
            Self::Del(keys) | Self::Exists(keys) => keys,
            Self::Get(key)
            | Self::Ttl(key)
            | Self::HashGetAll(key)
            | Self::Set(SetArgs { key, .. })
            | Self::Expire(ExpireArgs { key, .. })
            | Self::HashSet(HashSetArgs { key, .. })
            | Self::HashDelete(HashDeleteArgs { key, .. })
            | Self::HashExists(HashExistsArgs { key, .. })
            | Self::GetExpire(GetExpireArgs { key, .. })
            | Self::HashGet(HashGetArgs { key, .. })
            | Self::AppendEvent(EventArgs { beside: key, .. }) => std::slice::from_ref(key),
        };
        keys.iter().map(String::as_str)
    }

    /// Whether the command only reads (`GET`, `EXISTS`, `TTL`, `HGETALL`,
    /// `HEXISTS`, `HGET`), so that sending it twice is as good as sending it
    /// once. `GETEX` writes an expiry, so it is not a read.
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Self::Get(_)
                | Self::Exists(_)
                | Self::Ttl(_)
                | Self::HashGetAll(_)
                | Self::HashExists(_)
                | Self::HashGet(_)
        )
    }
}

/// A store failure: unreachable, timed out, or a command it refused. Says
/// nothing about whether a token is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    message: String,
    cause: Cause,
}

/// What a [`StoreError`] says of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Unavailable,
    Corrupt,
    OutOfMemory,
}

impl StoreError {
    /// A failure described by `message`: the store is unavailable.
    pub fn new(message: impl Into<String>) -> Self {
        Self::with_cause(message, Cause::Unavailable)
    }

    /// The store answered, but a key holds data of the wrong type
    /// (`WRONGTYPE`): corrupt data, not an outage.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::with_cause(message, Cause::Corrupt)
    }

    /// The store is full and refused a command that may use memory (Redis:
    /// `OOM`, its used memory past `maxmemory` under `noeviction`). Reads
    /// and deletions still run there, so a policy can still revoke.
    pub fn out_of_memory(message: impl Into<String>) -> Self {
        Self::with_cause(message, Cause::OutOfMemory)
    }

    fn with_cause(message: impl Into<String>, cause: Cause) -> Self {
        Self {
            message: message.into(),
            cause,
        }
    }

    /// The same failure, its message prefixed with `context`.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self {
            message: format!("{context}: {}", self.message),
            ..self
        }
    }

    /// Whether this is corrupt data rather than an unavailable store.
    pub fn is_corrupt(&self) -> bool {
        self.cause == Cause::Corrupt
    }

    /// Whether the store refused a command for want of memory
    /// ([`Self::out_of_memory`]).
    pub fn is_out_of_memory(&self) -> bool {
        self.cause == Cause::OutOfMemory
    }

    fn invalid_command(message: String) -> Self {
        Self::new(format!("invalid command: {message}"))
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

/// How one server of a store makes room once full: Redis's `maxmemory`
/// and `maxmemory-policy`, from [`Store::memory_policies`].
///
/// Sessions need `noeviction`. Under any other policy a full Redis deletes
/// keys on its own: every evicted token key or index logs a user out (the
/// built-in policies fail closed), and the `volatile-*` policies evict
/// sessions too, since every session key has a TTL. Under `noeviction` a
/// full Redis refuses writes instead ([`crate::Error::StoreOutOfMemory`]),
/// while checks and revocations still work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPolicy {
    /// The server, `host:port`.
    pub server: String,
    /// `maxmemory` in bytes; 0 means no limit, so that nothing is evicted.
    pub max_bytes: u64,
    /// `maxmemory-policy`, e.g. `noeviction` or `allkeys-lru`.
    pub policy: String,
}

impl MemoryPolicy {
    /// Whether the server may evict session keys: it has a memory limit
    /// and its policy is not `noeviction`.
    pub fn evicts(&self) -> bool {
        self.max_bytes > 0 && self.policy != "noeviction"
    }
}

impl fmt::Display for MemoryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "redis {} has maxmemory {} and maxmemory-policy {}",
            self.server, self.max_bytes, self.policy
        )
    }
}

/// A read-modify-write begun by [`Store::watch`]. Dropping it without
/// committing releases the watch.
#[async_trait]
pub trait Transaction: Send {
    /// Runs `commands` atomically unless a watched key was written, expired
    /// or deleted since the watch: then nothing runs and the answer is
    /// `Ok(None)`. One round trip.
    async fn commit(
        self: Box<Self>,
        commands: Vec<Command>,
    ) -> Result<Option<Vec<Reply>>, StoreError>;
}

/// A key-value store with Redis semantics.
///
/// The contract every backend keeps (and the behaviour tests check):
/// a missing key reads as [`Reply::Nil`] or an empty hash, never an error;
/// an expired key is missing; each method costs one round trip.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Runs `commands` in order as one pipeline. Not atomic. Fails whole when
    /// any command fails.
    async fn batch(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError>;

    /// Runs `commands` atomically (`MULTI`/`EXEC`).
    ///
    /// A full Redis refuses every command queued in `MULTI`, but runs a
    /// plain `DEL` or `HDEL`. When it refuses a step of deletions alone
    /// (nothing of it ran), the Redis stores send it again as a plain
    /// pipeline, in order, so that a policy can still revoke: each command
    /// then runs once, though another client's may come between them.
    async fn atomic(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError>;

    /// Watches `keys`, then runs `reads`; returns the transaction to commit
    /// and the replies to `reads`.
    async fn watch(
        &self,
        keys: Vec<String>,
        reads: Vec<Command>,
    ) -> Result<(Box<dyn Transaction>, Vec<Reply>), StoreError>;

    /// Whether the store can take writes now (a ping for Redis).
    async fn ready(&self) -> Result<(), StoreError>;

    /// With durable writes (`min_replicas_ack`), waits until enough
    /// replicas have every write the master took so far, not only this
    /// process's: a revocation confirms its outcome with it, so that one
    /// that found nothing left to delete on a master cut off from its
    /// replicas is not acknowledged. At once without durable writes, and
    /// for stores without replicas. The cluster store cannot ask this of a
    /// whole cluster and answers at once; its writes still wait.
    async fn confirm_writes(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// How each server that takes the store's writes makes room once full
    /// (Redis: `CONFIG GET maxmemory*` on each master); empty, the default,
    /// for a store that never evicts, as the memory store. An error when
    /// it cannot be read, e.g. from a managed Redis that refuses `CONFIG`:
    /// the store may work all the same.
    async fn memory_policies(&self) -> Result<Vec<MemoryPolicy>, StoreError> {
        Ok(Vec::new())
    }

    /// Reads session events from the store's stream ([`EventStream`]),
    /// oldest first. A store without one answers with an error, the
    /// default.
    async fn read_events(&self, range: EventRange) -> Result<Vec<StoredEvent>, StoreError> {
        let _ = range;
        Err(StoreError::new("this store keeps no session events"))
    }

    /// The near cache's counters, when the store answers reads from memory
    /// ([`NearCacheConfig`]); None, the default, without one.
    #[cfg(feature = "redis")]
    fn near_cache(&self) -> Option<NearCacheCounts> {
        None
    }

    /// Whether keys are spread over Redis Cluster slots, so that every
    /// [`Store::atomic`] and [`Store::watch`] must keep to the keys of one
    /// slot (see [`crate::check_slot_layout`]). False unless a store says so.
    fn is_sharded(&self) -> bool {
        false
    }
}
