//! Test fixtures shared by dsession's integration tests: real
//! `redis-server` processes on free loopback ports.
#![forbid(unsafe_code)]

mod certificates;
mod cluster;
pub mod netns;
pub mod proxy;
mod sentinel;
mod server;
pub mod tools;

use std::net::TcpListener;
use std::time::{Duration, Instant};

pub use certificates::TestCertificates;
pub use cluster::{CLUSTER_NODE_ARGS, RedisCluster};
pub use sentinel::{MASTER_NAME, SentinelCluster};
pub use server::RedisServer;

/// How long a server may take to answer its first PING, and a replica to
/// sync.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a fixture's own connection may take to connect or to answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause between two polls of a server's state.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().unwrap().port()
}

/// Calls `ready` until it holds; after `timeout`, panics with `failure()`.
fn poll_until(
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
    failure: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "{}", failure());
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// One command to the server on `port`, over a fresh connection with short
/// timeouts; None when it cannot be reached or refuses the command.
fn query<T: redis::FromRedisValue>(port: u16, command: &redis::Cmd) -> Option<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut connection = client.get_connection_with_timeout(QUERY_TIMEOUT).ok()?;
    connection.set_read_timeout(Some(QUERY_TIMEOUT)).ok()?;
    command.query(&mut connection).ok()
}
