//! The near cache: batches of reads answered from this process's memory,
//! kept current by Redis's server-assisted client-side caching (RESP3
//! `CLIENT TRACKING` and its invalidation pushes).
//!
//! The rules it keeps, each tested against real Redis (`tests/near_cache.rs`):
//! - a cached key is never served at or after its deadline, the time its
//!   `PTTL` was sent plus the `PTTL`; `TTL` is computed from that deadline;
//! - a closed tracking connection, one silent past `max_stale`, a
//!   `FLUSHALL`, a failover or a moved slot empties the cache before it
//!   answers again ([`Flush`]); on a cluster, a slot moved by others is
//!   noticed within a quarter of `max_stale` when no call of this process
//!   met its redirection first;
//! - this process's writes forget their keys before they return, and every
//!   other client's writes arrive as invalidations;
//! - only batches of reads are answered here; atomic steps, transactions
//!   and batches that write always go to Redis;
//! - at most `max_entries` entries and `max_bytes` bytes, least recently
//!   used out first.
//!
//! One cache serves one Redis server: the redis store has one, the
//! sentinel store one per master it finds (a new one after each
//! failover), and the cluster store one per master, all sharing one
//! [`Counters`]. On a cluster a "moved slot" is noticed by the cluster
//! store, not here: a redirection on any of its paths, or the master's own
//! `CLUSTER NODES` that it reads every quarter of `max_stale`, flushes the
//! master's cache for [`Flush::Topology`] (`store/redis/cluster/near.rs`).
//!
//! `entries` holds what is known, `tracking` the connection that fills it
//! and receives its invalidations, `stats` the counters.
//!
//! redis-rs has a client-side cache of its own (`cache-aio`); it is not
//! used because it breaks the first three rules: it dates a key's expiry
//! from when the reply arrived, not when the `PTTL` was sent, and caches
//! a `TTL` reply as a value that goes stale with age; a fill whose reply
//! is overtaken by its invalidation is stored anyway; the connection
//! manager hands pushes over a channel after the replies that follow them;
//! and its bound counts entries only.

mod entries;
mod stats;
mod tracking;

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{AsyncConnectionConfig, Client, RedisError, Value};
use serde::Deserialize;

use self::entries::{Bounds, Entries, Facts, Need, combine};
pub(crate) use self::stats::Counters;
pub use self::stats::{Flush, NearCacheCounts};
use self::tracking::Tracking;
pub(crate) use self::tracking::every;
use super::codec::{NO_EVENTS, queue, reply};
use super::net::millis;
use crate::store::{Command, Reply, StoreError};

/// How Redis tells the near cache what changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackingMode {
    /// Redis remembers which keys this process read and invalidates those
    /// only; it costs Redis memory per key read (`tracking-table-max-keys`).
    #[default]
    Default,
    /// `BCAST`: Redis invalidates every key under `prefixes` (every key
    /// when none) to every instance, read or not, and remembers nothing.
    Broadcast,
}

/// The near cache of a Redis store (`[store.near_cache]`); off by default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NearCacheConfig {
    /// Answer batches of reads from memory.
    pub enabled: bool,
    /// The most keys kept.
    pub max_entries: usize,
    /// The most bytes kept, keys and values and an estimate of the
    /// bookkeeping; one entry keeps at most a sixteenth of it.
    pub max_bytes: usize,
    /// How invalidations are asked for.
    pub mode: TrackingMode,
    /// With `mode = "broadcast"`, the key prefixes to hear of (the
    /// policy's); none for every key.
    pub prefixes: Vec<String>,
    /// How stale an answer may be when the tracking connection goes silent
    /// without closing (`max_stale_ms`): a heartbeat runs every quarter of
    /// it, and hits stop once the last heartbeat is older.
    #[serde(rename = "max_stale_ms", deserialize_with = "millis")]
    pub max_stale: Duration,
}

/// The default bound on entries.
pub const DEFAULT_NEAR_CACHE_ENTRIES: usize = 100_000;

impl Default for NearCacheConfig {
    /// Off; when enabled, 100,000 entries, 64 MiB, default tracking, and a
    /// second of staleness at most on a silent connection.
    fn default() -> Self {
        Self {
            enabled: false,
            max_entries: DEFAULT_NEAR_CACHE_ENTRIES,
            max_bytes: 64 << 20,
            mode: TrackingMode::Default,
            prefixes: Vec::new(),
            max_stale: Duration::from_secs(1),
        }
    }
}

impl NearCacheConfig {
    /// On, with the defaults.
    pub fn enabled() -> Self {
        Self {
            enabled: true,
            ..Self::default()
        }
    }

    /// Refuses settings that cannot work.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        anyhow::ensure!(
            self.max_entries > 0 && self.max_bytes > 0,
            "near_cache: max_entries and max_bytes must be positive"
        );
        anyhow::ensure!(
            self.max_stale >= Duration::from_millis(4),
            "near_cache: max_stale_ms must be at least 4"
        );
        anyhow::ensure!(
            self.mode == TrackingMode::Broadcast || self.prefixes.is_empty(),
            "near_cache: prefixes need mode = \"broadcast\""
        );
        Ok(())
    }
}

/// The near cache of one Redis server.
pub(crate) struct NearCache {
    entries: Arc<Entries>,
    tracking: Arc<Tracking>,
    counters: Arc<Counters>,
}

/// What one key of a batch needs fetched, and the incarnation its fill
/// must find.
struct Fetch<'a> {
    key: &'a str,
    incarnation: u64,
    needs: Vec<Need>,
}

impl NearCache {
    /// A cache of `client`'s server, counted in `counters`; None when the
    /// config leaves it off.
    pub(crate) fn start(
        config: &NearCacheConfig,
        client: &Client,
        connection_config: AsyncConnectionConfig,
        counters: &Arc<Counters>,
    ) -> Result<Option<Self>, RedisError> {
        if !config.enabled {
            return Ok(None);
        }
        let bounds = Bounds {
            entries: config.max_entries,
            bytes: config.max_bytes,
        };
        let entries = Arc::new(Entries::new(bounds, Arc::clone(counters)));
        let tracking = Tracking::start(client, connection_config, config, Arc::clone(&entries))?;
        Ok(Some(Self {
            entries,
            tracking,
            counters: Arc::clone(counters),
        }))
    }

    /// Answers `reads` (every command a read): from memory where the
    /// entries hold the answer, the rest in one round trip on the tracking
    /// connection, whose answers are then kept. A failed round trip is
    /// `failed`'s error, so that the cluster store can tell a redirection
    /// from a refusal.
    pub(crate) async fn batch<E: From<StoreError>>(
        &self,
        reads: &[Command],
        failed: impl Fn(RedisError) -> E,
    ) -> Result<Vec<Reply>, E> {
        for command in reads {
            command.validate()?;
        }
        let now = Instant::now();
        let looked_up = self.entries.lookup_all(reads, now, self.tracking.current());
        let mut replies = Vec::with_capacity(reads.len());
        let mut fetches: Vec<Fetch<'_>> = Vec::new();
        for (command, looked_up) in reads.iter().zip(looked_up) {
            match looked_up {
                Ok(reply) => replies.push(Some(reply)),
                Err(incarnations) => {
                    replies.push(None);
                    for (key, incarnation) in command.keys().zip(incarnations) {
                        add_fetch(&mut fetches, key, incarnation, Need::of(command));
                    }
                }
            }
        }
        let misses = replies.iter().filter(|reply| reply.is_none()).count();
        self.counters.read(reads.len() - misses, misses);
        if fetches.is_empty() {
            // Answered without waiting: spend the task's budget as a socket
            // read would, so that a loop of hits still lets the runtime run
            // other tasks (the connections' drivers, the heartbeat).
            tokio::task::consume_budget().await;
            return Ok(replies.into_iter().map(Option::unwrap).collect());
        }
        let facts = self.fetch(&fetches, failed).await?;
        for (fetch, facts) in fetches.iter().zip(&facts) {
            self.entries
                .fill(fetch.key, fetch.incarnation, facts.clone());
        }
        let now = Instant::now();
        let facts_of = |key: &str| {
            let index = fetches.iter().position(|fetch| fetch.key == key);
            &facts[index.expect("every missed key was fetched")]
        };
        reads
            .iter()
            .zip(replies)
            .map(|(command, reply)| match reply {
                Some(reply) => Ok(reply),
                None => {
                    combine(command, |key| facts_of(key).answer(command, now)).ok_or_else(|| {
                        StoreError::new(format!("the near cache fetched no answer to {command:?}"))
                            .into()
                    })
                }
            })
            .collect()
    }

    /// One pipeline on the tracking connection: `PTTL` of each key, then
    /// the reads each needs; the facts of each key, in order. A failed
    /// round trip is `failed`'s error.
    async fn fetch<E: From<StoreError>>(
        &self,
        fetches: &[Fetch<'_>],
        failed: impl Fn(RedisError) -> E,
    ) -> Result<Vec<Facts>, E> {
        let mut pipe = redis::pipe();
        let reads: Vec<Vec<Command>> = fetches
            .iter()
            .map(|fetch| {
                fetch
                    .needs
                    .iter()
                    .map(|need| need.read(fetch.key))
                    .collect()
            })
            .collect();
        for (fetch, reads) in fetches.iter().zip(&reads) {
            pipe.cmd("PTTL").arg(fetch.key);
            queue(&mut pipe, reads, false, &NO_EVENTS)?;
        }
        let (values, sent) = self.tracking.send(&pipe).await.map_err(failed)?;
        let mut values = values.into_iter();
        let mut next = || {
            values.next().ok_or_else(|| {
                StoreError::new("redis answered too few replies to a near cache fill")
            })
        };
        let mut all = Vec::with_capacity(fetches.len());
        for (fetch, reads) in fetches.iter().zip(reads) {
            let pttl = match next()? {
                Value::Int(pttl) => pttl,
                other => {
                    return Err(StoreError::new(format!("PTTL answered {other:?}")).into());
                }
            };
            let mut facts = Facts::expiring(pttl, sent);
            for (need, read) in fetch.needs.iter().zip(&reads) {
                facts.learn(need, reply(read, next()?)?)?;
            }
            all.push(facts);
        }
        Ok(all)
    }

    /// Forgets `keys`, which this process writes: called before the write
    /// is sent and again before it returns, so that no read of this process
    /// after the write can be answered with the value before it.
    pub(crate) fn forget<'a>(&self, keys: impl Iterator<Item = &'a str>) {
        self.entries.forget(keys);
    }

    /// Empties the cache for `why`; no hit until the tracking connection
    /// answers again.
    pub(crate) fn flush(&self, why: Flush) {
        self.tracking.unprove();
        self.entries.flush(why);
    }
}

/// Adds `need` of `key` to the fetches of one batch.
fn add_fetch<'a>(fetches: &mut Vec<Fetch<'a>>, key: &'a str, incarnation: u64, need: Option<Need>) {
    let fetch = match fetches.iter_mut().position(|fetch| fetch.key == key) {
        Some(index) => &mut fetches[index],
        None => {
            fetches.push(Fetch {
                key,
                incarnation,
                needs: Vec::new(),
            });
            fetches.last_mut().expect("just pushed")
        }
    };
    if let Some(need) = need
        && !fetch.needs.contains(&need)
    {
        fetch.needs.push(need);
    }
}
