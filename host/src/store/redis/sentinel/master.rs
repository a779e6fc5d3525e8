//! The master in use: found through the sentinels and checked with `ROLE`,
//! given up once lost, and searched for again by one caller at a time while
//! the others wait for its outcome.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use super::discovery::Sentinels;
use crate::store::EventStream;
use crate::store::StoreError;
use crate::store::redis::ack::ReplicaAck;
use crate::store::redis::codec::Events;
use crate::store::redis::error::store_error;
use crate::store::redis::near_cache::{Counters, NearCache, NearCacheConfig};
use crate::store::redis::net::Dialer;
use crate::store::redis::server::{Server, role};

/// How often a sentinel is asked whether the master moved, to catch a
/// failover that no error revealed (reads still work on a demoted master).
const ADDRESS_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long after a failed search for the master calls fail at once with
/// its error, rather than each asking every sentinel again.
const SEARCH_PAUSE: Duration = Duration::from_millis(100);

/// A master the sentinels named.
pub(super) type Master = Arc<Server<MultiplexedConnection>>;

/// Follows the master the sentinels name.
pub(super) struct Follower {
    sentinels: Sentinels,
    /// Opens connections to the masters the sentinels name.
    dialer: Dialer,
    ack: Option<ReplicaAck>,
    /// Each master's near cache, counted in `counters`.
    near_cache: NearCacheConfig,
    counters: Arc<Counters>,
    /// Where each master keeps session events.
    events: EventStream,
    current: Mutex<Current>,
    /// One search for the master at a time.
    searching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Current {
    master: Option<Master>,
    /// Searches finished so far.
    searches: u64,
    /// When and why the last search failed.
    failure: Option<(Instant, StoreError)>,
}

impl Follower {
    /// No master in use until [`Follower::master`] finds one; the masters
    /// `sentinels` name are reached through `dialer`, take writes with
    /// `ack`, and each gets a near cache of its own as `near_cache` says
    /// and keeps session events in `events`.
    pub(super) fn new(
        sentinels: Sentinels,
        dialer: Dialer,
        ack: Option<ReplicaAck>,
        near_cache: NearCacheConfig,
        counters: Arc<Counters>,
        events: EventStream,
    ) -> Self {
        Self {
            sentinels,
            dialer,
            ack,
            near_cache,
            counters,
            events,
            current: Mutex::new(Current::default()),
            searching: tokio::sync::Mutex::new(()),
        }
    }

    /// Asks a sentinel now and then whether the master moved, until the
    /// follower is dropped.
    pub(super) fn follow(follower: Weak<Self>) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ADDRESS_CHECK_INTERVAL).await;
                let Some(follower) = follower.upgrade() else {
                    return;
                };
                follower.check_master_address().await;
            }
        });
    }

    /// The sentinels asked for the master.
    pub(super) fn sentinels(&self) -> &Sentinels {
        &self.sentinels
    }

    /// The acknowledgement durable writes need, if configured.
    pub(super) fn ack(&self) -> Option<ReplicaAck> {
        self.ack
    }

    /// The master in use, lost or not; None while none is known.
    pub(super) fn in_use(&self) -> Option<Master> {
        self.current().master.clone()
    }

    fn current(&self) -> MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The master in use, or a new one from the sentinels when it was lost.
    pub(super) async fn master(&self) -> Result<Master, StoreError> {
        let seen = {
            let current = self.current();
            match (&current.master, &current.failure) {
                (Some(master), _) if !master.is_lost() => return Ok(Arc::clone(master)),
                (None, Some((at, failure))) if at.elapsed() < SEARCH_PAUSE => {
                    return Err(failure.clone());
                }
                _ => current.searches,
            }
        };
        let _searching = self.searching.lock().await;
        {
            // Callers that waited for a search share its outcome instead of
            // each asking the sentinels again.
            let current = self.current();
            if current.searches != seen {
                match (&current.master, &current.failure) {
                    (Some(master), _) if !master.is_lost() => return Ok(Arc::clone(master)),
                    (None, Some((_, failure))) => return Err(failure.clone()),
                    _ => {}
                }
            }
        }
        let found = self
            .sentinels
            .find(|host, port| async move { self.open_master(&host, port).await })
            .await
            .map(Arc::new);
        let mut current = self.current();
        current.searches += 1;
        match found {
            Ok(master) => {
                current.master = Some(Arc::clone(&master));
                current.failure = None;
                Ok(master)
            }
            Err(failure) => {
                current.master = None;
                current.failure = Some((Instant::now(), failure.clone()));
                Err(failure)
            }
        }
    }

    /// Connects to `host:port` and checks that it is a master: during a failover
    /// a sentinel may still name a server that was demoted.
    async fn open_master(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Server<MultiplexedConnection>, StoreError> {
        let client = self.dialer.client(host, port).map_err(store_error)?;
        let mut shared = self.dialer.connect(&client).await.map_err(store_error)?;
        match role(&mut shared).await.map_err(store_error)?.as_str() {
            "master" => {
                let timeouts = self.dialer.timeouts().clone();
                // A new master starts with an empty cache: a failover
                // leaves the old one's behind.
                let near =
                    NearCache::start(&self.near_cache, &client, timeouts.clone(), &self.counters)
                        .map_err(store_error)?;
                let events = Events::single(self.events.clone());
                Ok(Server::new(
                    client, shared, timeouts, self.ack, near, events,
                ))
            }
            role => Err(StoreError::new(format!("ROLE is {role}, not master"))),
        }
    }

    async fn check_master_address(&self) {
        let master = match &self.current().master {
            Some(master) if !master.is_lost() => Arc::clone(master),
            _ => return,
        };
        if let Some((named, sentinel)) = self.sentinels.named_master().await
            && named != master.address().to_string()
        {
            tracing::warn!(
                master_name = %self.sentinels.master_name(),
                old = %master.address(),
                new = %named,
                sentinel = %sentinel,
                "the sentinels moved the redis master"
            );
            master.mark_lost();
        }
    }
}
