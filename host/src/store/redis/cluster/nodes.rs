//! The cluster's nodes: redis-rs's cluster connection for batches and
//! atomic steps, dedicated connections (a small pool per master) for the
//! rest, the master of each slot as the nodes tell it, and the masters'
//! near caches, flushed when their master loses a slot and checked against
//! what each master says it serves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, Value};

use super::near::{MasterCache, NearCaches};
use super::retry::{Next, Retry, Target, next_step};
use super::slots::{Masters, SlotRange};
use crate::store::redis::ack::ReplicaAck;
use crate::store::redis::codec::Events;
use crate::store::redis::error::store_error;
use crate::store::redis::near_cache::NearCacheCounts;
use crate::store::redis::net::{Dialer, host_and_port};
use crate::store::redis::pool::Idle;
use crate::store::{Command, StoreError};

/// A connection of its own to one node, for a `WATCH` or a durable write.
pub(super) struct Dedicated {
    /// The node, `host:port`.
    pub(super) address: Arc<str>,
    pub(super) connection: MultiplexedConnection,
}

/// The nodes of one cluster.
pub(super) struct Nodes {
    /// Keeps the slot map and one multiplexed connection per node.
    cluster: ClusterConnection,
    /// Opens the dedicated connections.
    dialer: Dialer,
    ack: Option<ReplicaAck>,
    command_timeout: Duration,
    masters: Masters,
    idle: Idle<Arc<str>>,
    /// The masters' near caches, when configured; each master that loses
    /// a slot in `masters` has its cache flushed.
    near: Option<NearCaches>,
    /// Where session events go: one stream per slot.
    events: Events,
}

impl Nodes {
    /// The nodes `cluster` reaches, and `dialer` for dedicated connections
    /// and tracking connections to them. No slot's master is known until
    /// [`Nodes::refresh_masters`].
    pub(super) fn new(
        cluster: ClusterConnection,
        dialer: Dialer,
        ack: Option<ReplicaAck>,
        command_timeout: Duration,
        near: Option<NearCaches>,
        events: Events,
    ) -> Self {
        Self {
            cluster,
            dialer,
            ack,
            command_timeout,
            masters: Masters::new(),
            idle: Idle::default(),
            near,
            events,
        }
    }

    /// Where session events go.
    pub(super) fn events(&self) -> &Events {
        &self.events
    }

    /// Sends `pipe`, of `count` commands, to the node at `address`.
    pub(super) async fn ask_pipeline(
        &self,
        address: &str,
        pipe: Pipeline,
        count: usize,
    ) -> Result<Vec<Value>, RedisError> {
        self.cluster
            .clone()
            .route_pipeline(pipe, 0, count, route(address)?)
            .await
    }

    /// The acknowledgement a durable write needs, if configured.
    pub(super) fn ack(&self) -> Option<ReplicaAck> {
        self.ack
    }

    /// Forgets the master of `slot`, so that the next call asks the cluster;
    /// the cache of the master known before is flushed.
    pub(super) fn forget(&self, slot: u16) {
        let lost = self.masters.forget(slot);
        self.lost(lost.as_slice());
    }

    /// Records that `address` serves `slot`, from a `MOVED`; the cache of
    /// the master known before is flushed.
    pub(super) fn learn(&self, slot: u16, address: &str) {
        let lost = self.masters.learn(slot, address);
        self.lost(lost.as_slice());
    }

    /// Flushes the caches of `masters`, which lost a slot: a key of it may
    /// be written on its new master, and the old one says nothing of that.
    fn lost(&self, masters: &[Arc<str>]) {
        if let Some(near) = &self.near
            && !masters.is_empty()
        {
            near.flush(masters);
        }
    }

    /// The near caches' counters, when configured.
    pub(super) fn near_cache_counts(&self) -> Option<NearCacheCounts> {
        self.near.as_ref().map(NearCaches::counts)
    }

    /// Whether batches of reads may be answered by near caches.
    pub(super) fn caches_reads(&self) -> bool {
        self.near.is_some()
    }

    /// How often [`check_near_caches`] asks the masters which slots they
    /// serve; None without near caches.
    pub(super) fn near_check_interval(&self) -> Option<Duration> {
        self.near.as_ref().map(NearCaches::check_interval)
    }

    /// Forgets the keys `commands` write in every master's near cache:
    /// called before they are sent and again before the call returns.
    pub(super) fn forget_written(&self, commands: &[Command]) {
        if let Some(near) = &self.near {
            near.forget_written(commands);
        }
    }

    /// The near cache of `master`, started when there is none, once the
    /// master said which slots it serves; None without near caches, or
    /// when the cache cannot start.
    pub(super) async fn near_cache(&self, master: &Arc<str>) -> Option<Arc<MasterCache>> {
        let near = self.near.as_ref()?;
        let client = || {
            let (host, port) = node(master)?;
            self.dialer.client(host, port)
        };
        let cache = match near.get_or_start(master, client, self.dialer.timeouts()) {
            Ok(cache) => cache,
            Err(error) => {
                tracing::warn!(%error, %master, "near cache: cannot start a master's cache");
                return None;
            }
        };
        cache
            .first_check(self.check_near_cache(near, master, &cache))
            .await;
        Some(cache)
    }

    /// Asks `master` which slots it serves, for its cache.
    async fn check_near_cache(&self, near: &NearCaches, master: &str, cache: &MasterCache) {
        let asked = Instant::now();
        let nodes = redis::cmd("CLUSTER").arg("NODES").clone();
        let answer = tokio::time::timeout(near.check_timeout(), self.ask(master, nodes))
            .await
            .unwrap_or_else(|_| Err(RedisError::from((ErrorKind::Io, "CLUSTER NODES timed out"))));
        cache.checked(answer, asked);
    }

    /// Checks every master's near cache at once; the cache of a node that
    /// the slot map no longer names goes.
    pub(super) async fn check_near_caches(&self) {
        let Some(near) = &self.near else {
            return;
        };
        let checks = near.all().into_iter().map(|(master, cache)| async move {
            if self.masters.names(&master) {
                self.check_near_cache(near, &master, &cache).await;
            } else {
                near.remove(&master);
            }
        });
        futures_util::future::join_all(checks).await;
    }

    /// The deadline of a call that starts now, all its tries included.
    pub(super) fn deadline(&self, ack: Option<ReplicaAck>) -> Instant {
        Instant::now() + self.command_timeout + ReplicaAck::wait(ack)
    }

    /// Aims the next try on `slot` after `error`, as the retry table says,
    /// and keeps the slot's master as the error told; then pauses if the
    /// next try goes to the slot's master. The error to give up with when
    /// the failure cannot be retried, or when the pause would pass the
    /// deadline.
    pub(super) async fn after_failure(
        &self,
        slot: u16,
        error: RedisError,
        resend: bool,
        retry: &mut Retry,
    ) -> Result<(), StoreError> {
        let next = next_step(&error, resend);
        match &next {
            Next::Redirect {
                address,
                asking: false,
            } => self.learn(slot, address),
            Next::Redirect { asking: true, .. } => {}
            Next::Later => self.forget(slot),
            Next::Fail => return Err(store_error(error).context(format!("slot {slot}"))),
        }
        retry.aim(next);
        let Some(pause) = retry.pause(Instant::now()) else {
            return Err(store_error(error).context(format!(
                "slot {slot}, still failing after retrying for {} ms",
                self.command_timeout.as_millis()
            )));
        };
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }

    /// Sends `pipe` over the cluster connection to the master of `slot`, or
    /// to the node a redirection named.
    pub(super) async fn send_shared(
        &self,
        slot: u16,
        target: &Target,
        pipe: Pipeline,
        count: usize,
    ) -> Result<Vec<Value>, RedisError> {
        let route = match target.address.as_deref().and_then(host_and_port) {
            Some((host, port)) => SingleNodeRoutingInfo::ByAddress {
                host: host.to_owned(),
                port,
            },
            None => SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master)),
        };
        self.cluster
            .clone()
            .route_pipeline(pipe, 0, count, route)
            .await
    }

    /// Sends `pipe` over a dedicated connection, which goes back to the pool.
    pub(super) async fn send_dedicated(
        &self,
        slot: u16,
        target: &Target,
        pipe: &Pipeline,
        count: usize,
    ) -> Result<Vec<Value>, RedisError> {
        let (dedicated, values) = self.on_dedicated(slot, target, pipe, count).await?;
        self.give_back(dedicated);
        Ok(values)
    }

    /// Sends `pipe` to the master of `slot`, or to the node a redirection
    /// named, over a dedicated connection (an idle one, or a new one), and
    /// hands that connection over with the replies. After a failure the
    /// node's idle connections are closed: they may have died with it.
    pub(super) async fn on_dedicated(
        &self,
        slot: u16,
        target: &Target,
        pipe: &Pipeline,
        count: usize,
    ) -> Result<(Dedicated, Vec<Value>), RedisError> {
        let address: Arc<str> = match &target.address {
            Some(address) => address.as_str().into(),
            None => self.master(slot).await?,
        };
        let mut connection = match self.idle.take(&address) {
            Some(connection) => connection,
            None => self.connect(&address).await?,
        };
        match connection.req_packed_commands(pipe, 0, count).await {
            Ok(values) => Ok((
                Dedicated {
                    address,
                    connection,
                },
                values,
            )),
            Err(error) => {
                self.idle.clear(&address);
                Err(error)
            }
        }
    }

    /// Keeps a dedicated connection for the next use.
    pub(super) fn give_back(&self, dedicated: Dedicated) {
        self.idle.give_back(dedicated.address, dedicated.connection);
    }

    async fn connect(&self, address: &str) -> Result<MultiplexedConnection, RedisError> {
        let (host, port) = node(address)?;
        self.dialer.connect(&self.dialer.client(host, port)?).await
    }

    /// The master of `slot` as known, after `CLUSTER SLOTS` if unknown.
    pub(super) async fn master(&self, slot: u16) -> Result<Arc<str>, RedisError> {
        self.masters
            .get(
                slot,
                async || self.slot_ranges().await,
                |lost| self.lost(&lost),
            )
            .await
    }

    /// Reads the master of every slot from `CLUSTER SLOTS`.
    pub(super) async fn refresh_masters(&self) -> Result<(), RedisError> {
        let lost = self.masters.set(self.slot_ranges().await?);
        self.lost(&lost);
        Ok(())
    }

    /// `CLUSTER SLOTS`, from any node.
    pub(super) async fn slot_ranges(&self) -> Result<Vec<SlotRange>, RedisError> {
        SlotRange::parse(
            self.ask_any(redis::cmd("CLUSTER").arg("SLOTS").clone())
                .await?,
        )
    }

    /// Sends `cmd` to the node at `address`, `host:port`.
    pub(super) async fn ask(&self, address: &str, cmd: Cmd) -> Result<Value, RedisError> {
        self.cluster
            .clone()
            .route_command(cmd, RoutingInfo::SingleNode(route(address)?))
            .await
    }

    /// Sends `cmd` to any node.
    pub(super) async fn ask_any(&self, cmd: Cmd) -> Result<Value, RedisError> {
        self.cluster
            .clone()
            .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
            .await
    }
}

/// The host and port of a node's `host:port`.
fn node(address: &str) -> Result<(&str, u16), RedisError> {
    host_and_port(address).ok_or_else(|| {
        RedisError::from((
            ErrorKind::InvalidClientConfig,
            "invalid node address",
            address.to_owned(),
        ))
    })
}

/// The route to the node at `host:port`.
fn route(address: &str) -> Result<SingleNodeRoutingInfo, RedisError> {
    let (host, port) = node(address)?;
    Ok(SingleNodeRoutingInfo::ByAddress {
        host: host.to_owned(),
        port,
    })
}
