//! Dedicated connections kept idle between uses. A `WATCH` needs a
//! connection of its own for its whole life, and so does a durable write
//! (its `WAIT` holds up every later command on its connection).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

use redis::aio::MultiplexedConnection;

/// Idle dedicated connections kept per server.
const IDLE_PER_SERVER: usize = 16;

/// Idle connections by server: `()` where there is one server, its address
/// in a cluster.
pub(super) struct Idle<K> {
    servers: Mutex<HashMap<K, Vec<MultiplexedConnection>>>,
}

impl<K: Eq + Hash> Default for Idle<K> {
    fn default() -> Self {
        Self {
            servers: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash> Idle<K> {
    fn servers(&self) -> MutexGuard<'_, HashMap<K, Vec<MultiplexedConnection>>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection to `server`, if one is kept.
    pub(super) fn take(&self, server: &K) -> Option<MultiplexedConnection> {
        self.servers().get_mut(server).and_then(Vec::pop)
    }

    /// Keeps `connection` for the next use, unless enough are kept.
    pub(super) fn give_back(&self, server: K, connection: MultiplexedConnection) {
        let mut servers = self.servers();
        let idle = servers.entry(server).or_default();
        if idle.len() < IDLE_PER_SERVER {
            idle.push(connection);
        }
    }

    /// Closes the idle connections to `server`: one just failed, and the
    /// others may have died with the same server.
    pub(super) fn clear(&self, server: &K) {
        self.servers().remove(server);
    }
}
