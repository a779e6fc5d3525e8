//! The near caches of a cluster: one per master, each with its own tracking
//! connection to that master, all counted in one set of counters.
//!
//! A master's cache answers for a slot only while the master's own word
//! says it serves that slot: its `CLUSTER NODES` line, read when the cache
//! is first used and then every quarter of `max_stale`, and asked for less
//! than `max_stale` ago. A slot the master no longer serves, or is
//! migrating away, flushes its cache: Redis sends no invalidation for a key
//! that did not exist when it was read and is written on the slot's new
//! master, so an entry of a moved slot could otherwise stay wrong for good.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::{AsyncConnectionConfig, Client, RedisError, Value};

use super::slots::SlotSet;
use crate::store::Command;
use crate::store::redis::codec::{text, written_keys};
use crate::store::redis::near_cache::{
    Counters, Flush, NearCache, NearCacheConfig, NearCacheCounts,
};

/// The near cache of every master met so far.
pub(super) struct NearCaches {
    config: NearCacheConfig,
    counters: Arc<Counters>,
    by_master: Mutex<HashMap<Arc<str>, Arc<MasterCache>>>,
}

/// One master's near cache, and the slots it may answer for.
pub(super) struct MasterCache {
    pub(super) near: NearCache,
    /// The slots the master said it serves at its last check, and when that
    /// check was sent; None before the first and after one that failed.
    serves: Mutex<Option<(SlotSet, Instant)>>,
    /// How old the last check may be for the cache to answer.
    max_stale: Duration,
    /// Set while checks fail, so that a master that keeps failing them is
    /// logged once.
    failing: AtomicBool,
    /// Set once the first check ran, so that the first batches on a new
    /// master wait for it rather than go uncached until the next tick.
    first_check: tokio::sync::OnceCell<()>,
}

impl NearCaches {
    /// None when `config` leaves the near cache off.
    pub(super) fn new(config: &NearCacheConfig) -> Option<Self> {
        config.enabled.then(|| Self {
            config: config.clone(),
            counters: Arc::new(Counters::default()),
            by_master: Mutex::new(HashMap::new()),
        })
    }

    fn by_master(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<MasterCache>>> {
        self.by_master.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The counters of every master's cache together.
    pub(super) fn counts(&self) -> NearCacheCounts {
        self.counters.snapshot()
    }

    /// How often each master is asked which slots it serves: as often as a
    /// tracking connection proves itself.
    pub(super) fn check_interval(&self) -> Duration {
        self.config.max_stale / 4
    }

    /// How long a check may take: past that it could not let the cache
    /// answer anyway.
    pub(super) fn check_timeout(&self) -> Duration {
        self.config.max_stale
    }

    /// The cache of the master at `address`, started through `client` with
    /// `connection_config` when there is none yet.
    pub(super) fn get_or_start(
        &self,
        address: &Arc<str>,
        client: impl FnOnce() -> Result<Client, RedisError>,
        connection_config: &AsyncConnectionConfig,
    ) -> Result<Arc<MasterCache>, RedisError> {
        if let Some(cache) = self.by_master().get(address) {
            return Ok(Arc::clone(cache));
        }
        let near = NearCache::start(
            &self.config,
            &client()?,
            connection_config.clone(),
            &self.counters,
        )?
        .expect("the caches exist only when the config turns them on");
        let started = Arc::new(MasterCache {
            near,
            serves: Mutex::new(None),
            max_stale: self.config.max_stale,
            failing: AtomicBool::new(false),
            first_check: tokio::sync::OnceCell::new(),
        });
        // Another call may have started one meanwhile: the first one stays.
        let cache = self
            .by_master()
            .entry(Arc::clone(address))
            .or_insert(started)
            .clone();
        Ok(cache)
    }

    /// Every master's cache, with its address.
    pub(super) fn all(&self) -> Vec<(Arc<str>, Arc<MasterCache>)> {
        self.by_master()
            .iter()
            .map(|(address, cache)| (Arc::clone(address), Arc::clone(cache)))
            .collect()
    }

    /// Forgets the keys `commands` write in every master's cache: a key may
    /// be cached under a master that served its slot before.
    pub(super) fn forget_written(&self, commands: &[Command]) {
        for cache in self.by_master().values() {
            cache.near.forget(written_keys(commands));
        }
    }

    /// Empties and drops the cache of `address`, no longer a master of any
    /// slot, with its tracking connection; the next batch that reads from
    /// it again starts a new one.
    pub(super) fn remove(&self, address: &str) {
        if let Some(cache) = self.by_master().remove(address) {
            cache.near.flush(Flush::Topology);
        }
    }

    /// Empties the cache of each master in `masters`: they lost a slot.
    pub(super) fn flush(&self, masters: &[Arc<str>]) {
        let by_master = self.by_master();
        for master in masters {
            if let Some(cache) = by_master.get(master) {
                cache.near.flush(Flush::Topology);
            }
        }
    }
}

impl MasterCache {
    /// Whether the master said at its last check, sent less than
    /// `max_stale` ago, that it serves `slot`.
    pub(super) fn serves(&self, slot: u16) -> bool {
        self.served()
            .as_ref()
            .is_some_and(|(set, asked)| asked.elapsed() < self.max_stale && set.contains(slot))
    }

    fn served(&self) -> MutexGuard<'_, Option<(SlotSet, Instant)>> {
        self.serves.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `check` unless a first check already ran.
    pub(super) async fn first_check(&self, check: impl Future<Output = ()>) {
        self.first_check.get_or_init(|| check).await;
    }

    /// Takes the master's answer to `CLUSTER NODES`, sent at `asked`: when
    /// it no longer serves a slot it served at the last check, or the
    /// answer is an error, the cache is flushed, as nothing then says its
    /// entries are still the master's.
    pub(super) fn checked(&self, answer: Result<Value, RedisError>, asked: Instant) {
        let served = answer.and_then(|value| {
            let nodes = text(value).map_err(|value| {
                RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "unexpected reply to CLUSTER NODES",
                    format!("{value:?}"),
                ))
            })?;
            SlotSet::served_by_myself(&nodes)
        });
        let mut serves = self.served();
        match served {
            Ok(served) => {
                if serves
                    .as_ref()
                    .is_some_and(|(old, _)| !old.is_subset(&served))
                {
                    self.near.flush(Flush::Topology);
                }
                *serves = Some((served, asked));
                self.failing.store(false, Ordering::Relaxed);
            }
            Err(error) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "near cache: a master did not say which slots it serves; its cache answers nothing until it does");
                }
                if serves.take().is_some() {
                    self.near.flush(Flush::Topology);
                }
            }
        }
    }

    /// Empties the cache after the master answered a fill of `slot` with a
    /// redirection, or could not be reached: the slot goes uncached until
    /// the next check says the master serves it.
    pub(super) fn interrupted(&self, slot: u16) {
        if let Some((served, _)) = self.served().as_mut() {
            served.remove(slot);
        }
        self.near.flush(Flush::Topology);
    }
}
