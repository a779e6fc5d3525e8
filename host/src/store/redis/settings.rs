//! What the sentinel and cluster stores are configured with alike: the
//! user they log in as, their timeouts, and durable writes.

use std::fmt;
use std::time::Duration;

use redis::{AsyncConnectionConfig, RedisConnectionInfo};
use serde::Deserialize;

use crate::store::EventStream;
use crate::store::redis::ack::ReplicaAck;
use crate::store::redis::near_cache::NearCacheConfig;
use crate::store::redis::net::{DEFAULT_TIMEOUT, millis, timeouts};

/// The settings of the sentinel and cluster stores that mean the same on
/// both. In a `[store]` table they are keys beside the store's own, each
/// duration a `*_ms` key in milliseconds.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    /// ACL user on the master (sentinel) or on every node (cluster); none
    /// for the default user, or on a cluster the one in the URLs.
    pub username: Option<String>,
    /// Password on the master or on every node.
    pub password: Option<String>,
    /// How long connecting to a sentinel, a master or a node may take
    /// (`connect_timeout_ms`).
    #[serde(rename = "connect_timeout_ms", deserialize_with = "millis")]
    pub connect_timeout: Duration,
    /// How long a round trip may take, besides waiting for replicas; on a
    /// cluster, how long a call may take, redirections and retries
    /// included (`command_timeout_ms`).
    #[serde(rename = "command_timeout_ms", deserialize_with = "millis")]
    pub command_timeout: Duration,
    /// Durable writes: how many replicas of the master that took a write
    /// must acknowledge it before it succeeds; 0 (the default) turns this
    /// off.
    ///
    /// Every atomic batch and transaction commit that writes (set-token,
    /// refresh-token, delete-token and delete-user-token in the default
    /// policy) is followed, in the same round trip, by
    /// `WAIT min_replicas_ack ack_timeout`, and fails with a store error when
    /// fewer replicas acknowledged in time. A revocation that succeeded then
    /// survives a failover to one of those replicas.
    ///
    /// Cost: those writes take as long as the slowest of the required
    /// replicas needs to apply them (well under a millisecond on one host, a
    /// network round trip or more between hosts), and each holds a
    /// connection of its own meanwhile (`WAIT` blocks its connection), so
    /// concurrent writes open more connections to the master. While fewer
    /// replicas than required are up, every such write waits the whole
    /// `ack_timeout` and then fails, although the master applied it. Plain
    /// batches (the user-info cache, pruning of dead index entries) are not
    /// waited for.
    pub min_replicas_ack: usize,
    /// How long a durable write waits for its replicas; at least 1 ms
    /// (`ack_timeout_ms`).
    #[serde(rename = "ack_timeout_ms", deserialize_with = "millis")]
    pub ack_timeout: Duration,
    /// Answers batches of reads from memory (`[store.near_cache]`), one
    /// cache per master; off by default.
    pub near_cache: NearCacheConfig,
    /// Where session events go (the service's `[events]`): one stream on
    /// the master, or on a cluster one per slot.
    #[serde(skip)]
    pub events: EventStream,
}

impl Default for ServerSettings {
    /// No credentials, the default timeouts
    /// ([`DEFAULT_TIMEOUT_MS`](crate::store::DEFAULT_TIMEOUT_MS) each),
    /// durable writes off.
    fn default() -> Self {
        Self {
            username: None,
            password: None,
            connect_timeout: DEFAULT_TIMEOUT,
            command_timeout: DEFAULT_TIMEOUT,
            min_replicas_ack: 0,
            ack_timeout: DEFAULT_TIMEOUT,
            near_cache: NearCacheConfig::default(),
            events: EventStream::default(),
        }
    }
}

impl fmt::Debug for ServerSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSettings")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("min_replicas_ack", &self.min_replicas_ack)
            .field("ack_timeout", &self.ack_timeout)
            .field("near_cache", &self.near_cache)
            .field("events", &self.events)
            .finish()
    }
}

impl ServerSettings {
    /// `settings` with this user and password, where given.
    pub(super) fn log_in(&self, mut settings: RedisConnectionInfo) -> RedisConnectionInfo {
        if let Some(username) = &self.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        settings
    }

    /// Durable writes as configured: none when `min_replicas_ack` is 0.
    pub(super) fn ack(&self) -> anyhow::Result<Option<ReplicaAck>> {
        ReplicaAck::configured(self.min_replicas_ack, self.ack_timeout)
    }

    /// The timeouts of a connection whose round trips may also wait for
    /// `ack` (a master's with durable writes; none for a sentinel's).
    pub(super) fn timeouts(&self, ack: Option<ReplicaAck>) -> AsyncConnectionConfig {
        timeouts(
            self.connect_timeout,
            self.command_timeout + ReplicaAck::wait(ack),
        )
    }
}
