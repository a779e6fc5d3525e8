//! Key-value stores with Redis semantics: what a policy reads and writes.
//!
//! A [`Store`] runs the typed commands of the policy's `store` interface.
//! Each method is one network round trip however many commands it carries,
//! so a policy can reason about its cost.

#[cfg(feature = "redis")]
mod cluster;
mod config;
mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod sentinel;
mod tap;
#[cfg(feature = "redis")]
mod tls;

use std::fmt;

use async_trait::async_trait;

#[cfg(feature = "redis")]
pub use self::cluster::{ClusterConfig, ClusterStore, key_slot};
pub use self::config::StoreConfig;
pub use self::memory::MemoryStore;
#[cfg(feature = "redis")]
pub use self::redis::{RedisConfig, RedisStore};
#[cfg(feature = "redis")]
pub use self::sentinel::{SentinelConfig, SentinelStore};
pub use self::tap::{Call, Counters, Counts, Tap};
#[cfg(feature = "redis")]
pub use self::tls::TlsFiles;

/// When a `SET` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCondition {
    /// Always.
    Always,
    /// Only when the key does not exist (`NX`).
    IfAbsent,
    /// Only when the key exists (`XX`).
    IfPresent,
}

/// When an `EXPIRE` changes a key's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireCondition {
    /// Always.
    Always,
    /// Only when the key has no expiry (`NX`).
    IfNone,
    /// Only when the new expiry is later than the current one (`GT`); a key
    /// without expiry is never changed.
    IfLater,
}

/// One command of a batch. The reply each gives is documented on [`Reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `GET key` → [`Reply::Text`], or [`Reply::Nil`] when missing.
    Get(String),
    /// `SET key value [EX ttl] [NX|XX]` → [`Reply::Ok`], or [`Reply::Nil`]
    /// when the condition kept it from writing. A TTL of 0 means no expiry.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Lifetime in seconds, 0 for none.
        ttl_seconds: i64,
        /// When to write.
        condition: SetCondition,
    },
    /// `DEL key…` → [`Reply::Integer`]: how many keys existed.
    Del(Vec<String>),
    /// `EXISTS key…` → [`Reply::Integer`]: how many of the keys exist.
    Exists(Vec<String>),
    /// `TTL key` → [`Reply::Integer`]: seconds left, -1 without expiry, -2
    /// when missing.
    Ttl(String),
    /// `EXPIRE key seconds [NX|GT]` → [`Reply::Integer`]: 1 when changed.
    Expire {
        /// The key.
        key: String,
        /// New lifetime, at least 1 second.
        seconds: i64,
        /// When to change it.
        condition: ExpireCondition,
    },
    /// `HSET key field value…` → [`Reply::Integer`]: how many fields are new.
    HashSet {
        /// The hash.
        key: String,
        /// Fields and values, at least one.
        fields: Vec<(String, String)>,
    },
    /// `HDEL key field…` → [`Reply::Integer`]: how many fields existed.
    HashDelete {
        /// The hash.
        key: String,
        /// Fields, at least one.
        fields: Vec<String>,
    },
    /// `HGETALL key` → [`Reply::Pairs`], empty when missing.
    HashGetAll(String),
    /// `HEXISTS key field` → [`Reply::Integer`]: 1 when the field exists.
    HashExists {
        /// The hash.
        key: String,
        /// The field.
        field: String,
    },
    /// `GETEX key EX seconds` → [`Reply::Text`], or [`Reply::Nil`] when
    /// missing; an existing key gets the new lifetime. Never creates a key.
    GetExpire {
        /// The key.
        key: String,
        /// New lifetime, at least 1 second.
        seconds: i64,
    },
    /// `HGET key field` → [`Reply::Text`], or [`Reply::Nil`] when missing.
    HashGet {
        /// The hash.
        key: String,
        /// The field.
        field: String,
    },
}

impl Command {
    /// Rejects arguments Redis would reject or misread, so that a bad policy
    /// gets a clear error instead of a surprise (`EXPIRE 0` deletes a key).
    pub fn validate(&self) -> Result<(), StoreError> {
        let invalid = |what: &str| Err(StoreError::invalid_command(format!("{what} in {self:?}")));
        match self {
            Self::Set { ttl_seconds, .. } if *ttl_seconds < 0 => invalid("negative SET ttl"),
            Self::Expire { seconds, .. } if *seconds < 1 => invalid("EXPIRE seconds below 1"),
            Self::GetExpire { seconds, .. } if *seconds < 1 => invalid("GETEX seconds below 1"),
            Self::Del(keys) | Self::Exists(keys) if keys.is_empty() => invalid("no keys"),
            Self::HashSet { fields, .. } if fields.is_empty() => invalid("no fields"),
            Self::HashDelete { fields, .. } if fields.is_empty() => invalid("no fields"),
            _ => Ok(()),
        }
    }

    /// The keys the command touches, in order.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Self::Del(keys) | Self::Exists(keys) => keys.iter().map(String::as_str).collect(),
            Self::Get(key)
            | Self::Ttl(key)
            | Self::HashGetAll(key)
            | Self::Set { key, .. }
            | Self::Expire { key, .. }
            | Self::HashSet { key, .. }
            | Self::HashDelete { key, .. }
            | Self::HashExists { key, .. }
            | Self::GetExpire { key, .. }
            | Self::HashGet { key, .. } => vec![key.as_str()],
        }
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
                | Self::HashExists { .. }
                | Self::HashGet { .. }
        )
    }
}

/// The reply to one [`Command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A missing value, or a conditional write that did not happen.
    Nil,
    /// A write that happened.
    Ok,
    /// A number.
    Integer(i64),
    /// A string value.
    Text(String),
    /// A hash's fields and values.
    Pairs(Vec<(String, String)>),
}

/// A store failure: unreachable, timed out, or a command it refused. Says
/// nothing about whether a token is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    message: String,
    corrupt: bool,
}

impl StoreError {
    /// A failure described by `message`: the store is unavailable.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            corrupt: false,
        }
    }

    /// The store answered, but a key holds data of the wrong type
    /// (`WRONGTYPE`): corrupt data, not an outage.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            corrupt: true,
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
        self.corrupt
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

    /// Whether keys are spread over Redis Cluster slots, so that every
    /// [`Store::atomic`] and [`Store::watch`] must keep to the keys of one
    /// slot (see [`crate::check_slot_layout`]). False unless a store says so.
    fn is_sharded(&self) -> bool {
        false
    }
}
