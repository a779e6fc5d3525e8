//! The tracking connection: RESP3 with `CLIENT TRACKING ON`, over which a
//! near cache sends its fills and Redis pushes its invalidations.
//!
//! The connection's driver hands each push to [`on_push`] as it parses it,
//! before any reply that follows it on the wire, so an invalidation is
//! applied before the answer to any read sent after the write. When the
//! connection closes (a failure, `CLIENT KILL`, a server restart) the cache
//! is flushed before the next connection serves a fill.
//!
//! A connection can also go silent without closing (a partition): a
//! heartbeat `PING` runs every quarter of `max_stale`, and a `PONG` proves
//! that every invalidation Redis sent before the `PING` has arrived. Hits
//! are served only while the last proof is younger than `max_stale`; a
//! `PING` that fails or times out drops the connection and flushes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, IntoConnectionInfo, Pipeline, ProtocolVersion, PushInfo,
    PushKind, RedisError, Value,
};

use super::entries::Entries;
use super::stats::Flush;
use super::{NearCacheConfig, TrackingMode};
use crate::store::redis::codec::text;

/// The tracking connection to one server, opened when first needed and
/// again after it closed.
pub(super) struct Tracking {
    client: Client,
    connection_config: AsyncConnectionConfig,
    /// `CLIENT TRACKING ON` and its options.
    tracking_on: redis::Cmd,
    entries: Arc<Entries>,
    live: tokio::sync::Mutex<Option<Live>>,
    /// When the last proof that no invalidation is outstanding was sent,
    /// in milliseconds since `origin`; 0 for none yet.
    proven: AtomicU64,
    origin: Instant,
    max_stale: Duration,
}

/// One open tracking connection; `open` turns false when its driver says
/// it closed.
struct Live {
    connection: MultiplexedConnection,
    open: Arc<AtomicBool>,
}

impl Tracking {
    /// A tracking connection to `client`'s server, with `connection_config`'s
    /// timeouts; its heartbeat runs while the returned value lives.
    pub(super) fn start(
        client: &Client,
        connection_config: AsyncConnectionConfig,
        config: &NearCacheConfig,
        entries: Arc<Entries>,
    ) -> Result<Arc<Self>, RedisError> {
        let info = client.get_connection_info().clone();
        let settings = info.redis_settings().clone();
        let resp3 = info
            .set_redis_settings(settings.set_protocol(ProtocolVersion::RESP3))
            .into_connection_info()?;
        let mut tracking_on = redis::cmd("CLIENT");
        tracking_on.arg("TRACKING").arg("ON");
        if config.mode == TrackingMode::Broadcast {
            tracking_on.arg("BCAST");
            for prefix in &config.prefixes {
                tracking_on.arg("PREFIX").arg(prefix);
            }
        }
        let tracking = Arc::new(Self {
            client: Client::open(resp3)?,
            connection_config,
            tracking_on,
            entries,
            live: tokio::sync::Mutex::new(None),
            proven: AtomicU64::new(0),
            origin: Instant::now(),
            max_stale: config.max_stale,
        });
        tokio::spawn(every(
            Arc::downgrade(&tracking),
            config.max_stale / 4,
            async |tracking: Arc<Self>| tracking.beat().await,
        ));
        Ok(tracking)
    }

    /// Whether hits may be served: every invalidation sent more than
    /// `max_stale` ago is known to have arrived.
    pub(super) fn current(&self) -> bool {
        let proven = self.proven.load(Ordering::Acquire);
        proven != 0 && self.millis(Instant::now()).saturating_sub(proven) < self.max_millis()
    }

    fn millis(&self, at: Instant) -> u64 {
        // 1 for the first millisecond, so that 0 keeps meaning "never".
        u64::try_from(at.duration_since(self.origin).as_millis()).unwrap_or(u64::MAX) + 1
    }

    fn max_millis(&self) -> u64 {
        u64::try_from(self.max_stale.as_millis()).unwrap_or(u64::MAX)
    }

    /// Forgets every proof: no hit until the connection answers again.
    pub(super) fn unprove(&self) {
        self.proven.store(0, Ordering::Release);
    }

    /// Records that every invalidation sent before `sent` has arrived.
    fn prove(&self, sent: Instant) {
        self.proven.fetch_max(self.millis(sent), Ordering::AcqRel);
    }

    /// The open connection, or a new one with tracking on.
    async fn connection(&self) -> Result<MultiplexedConnection, RedisError> {
        let mut live = self.live.lock().await;
        if let Some(current) = live
            .as_ref()
            .filter(|live| live.open.load(Ordering::Acquire))
        {
            return Ok(current.connection.clone());
        }
        if live.take().is_some() {
            // The old connection's close already flushed; whatever a fill
            // stored since came from it, and its invalidations are lost.
            self.entries.flush(Flush::Disconnected);
        }
        let open = Arc::new(AtomicBool::new(true));
        let pushes = {
            let entries = Arc::clone(&self.entries);
            let open = Arc::clone(&open);
            move |push: PushInfo| {
                on_push(&entries, &open, push);
                Ok::<(), std::convert::Infallible>(())
            }
        };
        let config = self.connection_config.clone().set_push_sender(pushes);
        let mut connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let sent = Instant::now();
        self.tracking_on.query_async::<()>(&mut connection).await?;
        self.prove(sent);
        *live = Some(Live {
            connection: connection.clone(),
            open,
        });
        Ok(connection)
    }

    /// Sends `pipe` on the tracking connection: the replies, and the time it
    /// was sent, the earliest its reads may be.
    pub(super) async fn send(&self, pipe: &Pipeline) -> Result<(Vec<Value>, Instant), RedisError> {
        let mut connection = self.connection().await?;
        let sent = Instant::now();
        let values = pipe.query_async(&mut connection).await?;
        self.prove(sent);
        Ok((values, sent))
    }

    /// Closes the connection and flushes, for `why`.
    async fn drop_connection(&self, why: Flush) {
        if let Some(live) = self.live.lock().await.take() {
            live.open.store(false, Ordering::Release);
        }
        self.unprove();
        self.entries.flush(why);
    }

    /// One heartbeat: `PING` on the open connection, if any.
    async fn beat(&self) {
        let connection = {
            let live = self.live.lock().await;
            live.as_ref()
                .filter(|live| live.open.load(Ordering::Acquire))
                .map(|live| live.connection.clone())
        };
        let Some(mut connection) = connection else {
            return;
        };
        let sent = Instant::now();
        match redis::cmd("PING").query_async::<()>(&mut connection).await {
            Ok(()) => self.prove(sent),
            Err(error) => {
                tracing::warn!(%error, "near cache: the tracking connection failed its heartbeat; cache flushed");
                self.drop_connection(Flush::Silent).await;
            }
        }
    }
}

/// Applies one push of the tracking connection.
fn on_push(entries: &Entries, open: &AtomicBool, push: PushInfo) {
    match push.kind {
        PushKind::Invalidate => match push.data.into_iter().next() {
            Some(Value::Array(keys)) => {
                for key in keys {
                    if let Ok(key) = text(key) {
                        entries.invalidate(&key);
                    }
                }
            }
            // FLUSHALL and FLUSHDB invalidate with a null.
            Some(Value::Nil) => entries.flush(Flush::Server),
            _ => {}
        },
        PushKind::Disconnection => {
            open.store(false, Ordering::Release);
            entries.flush(Flush::Disconnected);
        }
        _ => {}
    }
}

/// Runs `beat` on `target` every `interval` while `target` lives: a near
/// cache's heartbeat, and the cluster's check of which slots each master
/// serves.
pub(crate) async fn every<T, F, Fut>(target: Weak<T>, interval: Duration, beat: F)
where
    F: Fn(Arc<T>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(target) = target.upgrade() else {
            return;
        };
        beat(target).await;
    }
}
