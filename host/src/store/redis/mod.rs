//! The Redis stores: one server, a master behind Sentinel, a Redis Cluster.

mod cluster;
mod net;
mod sentinel;
mod server;

pub use self::cluster::{ClusterConfig, ClusterStore, key_slot};
pub use self::net::TlsFiles;
pub use self::sentinel::{SentinelConfig, SentinelStore};
pub use self::server::{RedisConfig, RedisStore};
