//! Redis Cluster: keys spread over 16384 slots, each served by one master
//! and its replicas.
//!
//! Batches and atomic steps go over redis-rs's cluster connection, which
//! keeps the slot map and one multiplexed connection per node; this store
//! sends each slot's commands there itself and decides what to do when a
//! node answers `MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN` or `READONLY`, or
//! when a node cannot be reached. Several commands for one slot go inside
//! `MULTI`/`EXEC`: a redirection then aborts them all, so sending them again
//! to the node named can never apply a command twice. Reads, deletions and
//! `GETEX` alone go as a plain pipeline instead: applying them twice leaves
//! the same keys (only a `DEL` count may then miss keys the first try
//! deleted), and a full node, which refuses everything queued in `MULTI`,
//! runs them, so that a policy can check and revoke there. A command that may
//! have reached a node before its connection broke is sent again only when
//! it just reads, as the sentinel store does. Retries stop at the command
//! timeout, so a call fails as late as on the other stores.
//!
//! A `WATCH` needs a connection of its own to the master of its slot for
//! its whole life, and so does a durable write (its `WAIT` holds up every
//! later command on its connection); both use dedicated connections, kept
//! in a small pool per master, found from `CLUSTER SLOTS` and corrected by
//! each `MOVED`.
//!
//! An atomic step or a transaction must keep to the keys of one slot: one
//! that spans slots fails with an error naming each key's slot, before
//! anything is sent. A batch may span slots: its commands are grouped by
//! slot and the groups sent at once, one round trip per node.
//!
//! With the near cache on (`[store.near_cache]`, `--near-cache`), each
//! master gets a cache of its own, made when a batch first reads from it,
//! with its own tracking connection; their counters add up in
//! [`Store::near_cache`]. A batch of reads only is grouped by slot as any
//! batch, and each group is answered by the cache of the slot's master,
//! while that master's own `CLUSTER NODES` line, read at the cache's first
//! use and then every quarter of `max_stale`, says it serves the slot, and
//! was asked for less than `max_stale` ago. A group whose fill meets a
//! redirection or a node that cannot serve goes to Redis as an uncached
//! request, which follows redirections and retries, after the master's
//! cache is flushed. Every change this store learns of the slot map (a
//! `MOVED` on any path, a refreshed `CLUSTER SLOTS`, a slot forgotten after
//! a failure) flushes the caches of the masters that lost a slot, and a
//! master that stops serving a slot it served at its last check, or starts
//! migrating it away, has its cache flushed by that check; Redis sends no
//! invalidation for a key that was missing when read and is written on the
//! slot's new master, so this is what keeps such a key from staying missing
//! in the old master's cache. A slot move that no call of this process
//! meets is thus noticed within a quarter of `max_stale` plus a round trip.
//! Only the masters that lost a slot are flushed, not every master; a node
//! the slot map no longer names loses its cache and its tracking
//! connection. Atomic steps, transactions and batches that write always go
//! to Redis, and forget the keys they write in every master's cache before
//! they are sent and again before they return (a key may be cached under
//! the master that served its slot before).
//!
//! The rooms: `slots` (key slots, the master of each slot, `CLUSTER
//! SLOTS`, the slots a node says it serves), `retry` (the retry table and
//! the pauses between tries), `nodes` (the connections, what a failure
//! teaches about the slot's master, and the near caches' checks), `near`
//! (each master's near cache and the slots it may answer for), `request`
//! (what a call sends and what the replies mean, its tries, and the cached
//! path of a batch's reads) and `transaction` (`WATCH` and commit).

mod near;
mod nodes;
mod request;
mod retry;
mod slots;
mod transaction;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use redis::IntoConnectionInfo;
use redis::cluster::ClusterClientBuilder;
use serde::Deserialize;

use self::near::NearCaches;
use self::nodes::Nodes;
use self::request::{Request, cached};
pub use self::slots::key_slot;
use self::slots::{one_slot, per_slot};
use crate::error::SetupError;
use crate::store::redis::codec::{
    Events, events_unwritten, issues_or_revokes, may_run_twice, only_deletions, only_reads,
    read_stream, stream_events, text,
};
use crate::store::redis::error::{redact, setup_error, store_error};
use crate::store::redis::memory;
use crate::store::redis::near_cache::{NearCacheCounts, every};
use crate::store::redis::net::{ADDRESS_FORMS, Connector, Dialer, TlsFiles, node_url};
use crate::store::redis::settings::ServerSettings;
use crate::store::{
    Command, EventRange, MemoryPolicy, Reply, Store, StoreError, StoredEvent, Transaction,
    merge_events,
};

/// How to reach a Redis Cluster; in a config file, the `[store]` table
/// with `kind = "cluster"`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
// Keys that neither the fields nor the flattened `server` take are still
// refused: serde checks what is left (tests/server.rs pins it).
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Seed nodes, `host:port`, `redis://host:port` or `rediss://host:port`
    /// (TLS); the store learns the other nodes from them.
    pub nodes: Vec<String>,
    /// The user, timeouts and durable writes, on every node.
    #[serde(flatten)]
    pub server: ServerSettings,
    /// Certificates for `rediss://` nodes (`[store.tls]`); without a CA
    /// file the system's roots are trusted.
    #[serde(default)]
    pub tls: TlsFiles,
}

impl ClusterConfig {
    /// The cluster that `nodes` belong to, with the default
    /// [`ServerSettings`] and no certificates.
    pub fn new(nodes: Vec<String>) -> Self {
        Self {
            nodes,
            server: ServerSettings::default(),
            tls: TlsFiles::default(),
        }
    }
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field(
                "nodes",
                &self.nodes.iter().map(|url| redact(url)).collect::<Vec<_>>(),
            )
            .field("server", &self.server)
            .field("tls", &self.tls)
            .finish()
    }
}

/// A store on a Redis Cluster, following redirections, resharding and
/// failovers. Cloning it shares its connections.
#[derive(Clone)]
pub struct ClusterStore {
    seeds: Arc<[String]>,
    nodes: Arc<Nodes>,
}

impl fmt::Debug for ClusterStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterStore")
            .field("seeds", &self.seeds)
            .finish_non_exhaustive()
    }
}

impl ClusterStore {
    /// Connects to the cluster through its seed nodes and learns its slots;
    /// fails when no seed can be reached now.
    pub async fn connect(config: ClusterConfig) -> Result<Self, SetupError> {
        Self::open(config).await.map_err(setup_error)
    }

    async fn open(config: ClusterConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(!config.nodes.is_empty(), "no cluster nodes given");
        let seeds: Vec<String> = config.nodes.iter().map(|url| redact(url)).collect();
        let urls = config
            .nodes
            .iter()
            .map(|node| {
                node_url(node).with_context(|| {
                    format!("cluster node {:?} is not {ADDRESS_FORMS}", redact(node))
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let secure = urls.iter().all(|url| url.starts_with("rediss://"));
        anyhow::ensure!(
            secure || !urls.iter().any(|url| url.starts_with("rediss://")),
            "the cluster nodes mix rediss:// and redis:// URLs: {seeds:?}"
        );
        anyhow::ensure!(
            secure || config.tls == TlsFiles::default(),
            "TLS certificates are configured, but the cluster nodes are not rediss:// URLs"
        );
        let infos = urls
            .iter()
            .map(|url| {
                url.as_str().into_connection_info().with_context(|| {
                    format!("cluster node {:?} is not {ADDRESS_FORMS}", redact(url))
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Credentials in the first URL serve every node, as redis-rs does.
        let settings = config.server.log_in(infos[0].redis_settings().clone());
        let ack = config.server.ack()?;
        config.server.near_cache.validate()?;
        let mut builder = ClusterClientBuilder::new(infos)
            .connection_timeout(config.server.connect_timeout)
            .response_timeout(config.server.command_timeout)
            // This store decides which failures to retry, and how.
            .retries(0);
        if let Some(username) = settings.username() {
            builder = builder.username(username);
        }
        if let Some(password) = settings.password() {
            builder = builder.password(password);
        }
        if secure {
            builder = builder.certs(config.tls.certificates()?);
        }
        let client = builder
            .build()
            .with_context(|| format!("invalid redis cluster nodes {seeds:?}"))?;
        let cluster = client
            .get_async_connection()
            .await
            .with_context(|| format!("cannot connect to the redis cluster at {seeds:?}"))?;
        let dialer = Dialer::new(
            Connector::new(secure.then_some(&config.tls))?,
            settings,
            config.server.timeouts(ack),
        );
        let nodes = Nodes::new(
            cluster,
            dialer,
            ack,
            config.server.command_timeout,
            NearCaches::new(&config.server.near_cache),
            Events::per_slot(config.server.events.clone()),
        );
        nodes
            .refresh_masters()
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))
            .context("cannot read the slots of the redis cluster")?;
        let nodes = Arc::new(nodes);
        if let Some(interval) = nodes.near_check_interval() {
            tokio::spawn(every(
                Arc::downgrade(&nodes),
                interval,
                async |nodes: Arc<Nodes>| nodes.check_near_caches().await,
            ));
        }
        Ok(Self {
            seeds: seeds.into(),
            nodes,
        })
    }
}

impl ClusterStore {
    /// [`Store::atomic`], without the near cache's bookkeeping.
    async fn atomic_uncached(&self, commands: &[Command]) -> Result<Vec<Reply>, StoreError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let slot = one_slot("an atomic step", commands.iter().flat_map(Command::keys))?;
        let writes = !only_reads(commands);
        let request = Request {
            commands,
            transaction: true,
            ack: self.nodes.ack().filter(|_| writes),
        };
        let answer = match request.run(&self.nodes, slot, !writes).await {
            // Nothing ran; deletions alone may run outside MULTI, where a
            // full node takes them, so that a policy can still revoke.
            Err(refused) if refused.is_out_of_memory() => {
                let Some(deletions) = only_deletions(commands) else {
                    return Err(refused);
                };
                if deletions.is_empty() {
                    return Ok(events_unwritten(commands, Vec::new()));
                }
                let deletions = Request {
                    commands: &deletions,
                    transaction: false,
                    ..request
                };
                let replies = deletions.run(&self.nodes, slot, false).await?;
                return Ok(events_unwritten(commands, replies.unwrap_or_default()));
            }
            answer => answer?,
        };
        answer.ok_or_else(|| StoreError::new("redis aborted a transaction nobody watched"))
    }
}

#[async_trait]
impl Store for ClusterStore {
    /// Groups `commands` by slot and sends the groups at once, each to its
    /// master; `DEL` and `EXISTS` over keys of several slots are split and
    /// their counts added. With the near cache, a batch of reads is
    /// answered group by group from the cache of each slot's master.
    async fn batch(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        for command in &commands {
            command.validate()?;
        }
        let reads = only_reads(&commands);
        let cache = reads && self.nodes.caches_reads();
        if !reads {
            self.nodes.forget_written(&commands);
        }
        let mut groups: BTreeMap<u16, Vec<Command>> = BTreeMap::new();
        // For each command, where its parts went: (slot, index in group).
        let mut parts: Vec<Vec<(u16, usize)>> = Vec::with_capacity(commands.len());
        for command in commands {
            parts.push(
                per_slot(command)
                    .into_iter()
                    .map(|(slot, part)| {
                        let group = groups.entry(slot).or_default();
                        group.push(part);
                        (slot, group.len() - 1)
                    })
                    .collect(),
            );
        }
        let sent = groups.iter().map(|(&slot, group)| async move {
            if cache && let Some(replies) = cached(&self.nodes, slot, group).await? {
                return Ok((slot, replies));
            }
            let request = Request {
                commands: group,
                transaction: group.len() > 1 && !may_run_twice(group),
                ack: self.nodes.ack().filter(|_| issues_or_revokes(group)),
            };
            let answer = request.run(&self.nodes, slot, only_reads(group)).await?;
            Ok::<_, StoreError>((slot, answer.unwrap_or_default()))
        });
        let answers = futures_util::future::try_join_all(sent).await;
        if !reads {
            for group in groups.values() {
                self.nodes.forget_written(group);
            }
        }
        let mut answers: HashMap<u16, Vec<Reply>> = answers?.into_iter().collect();
        parts
            .into_iter()
            .map(|parts| {
                let mut total: Option<Reply> = None;
                for (slot, index) in parts {
                    let reply = answers
                        .get_mut(&slot)
                        .and_then(|replies| replies.get_mut(index))
                        .map(|reply| std::mem::replace(reply, Reply::Nil))
                        .ok_or_else(|| StoreError::new("a slot's replies are missing"))?;
                    total = Some(match (total, reply) {
                        (None, reply) => reply,
                        (Some(Reply::Integer(a)), Reply::Integer(b)) => Reply::Integer(a + b),
                        (Some(_), other) => {
                            return Err(StoreError::new(format!(
                                "unexpected redis reply {other:?} to a split command"
                            )));
                        }
                    });
                }
                total.ok_or_else(|| StoreError::new("a command named no key"))
            })
            .collect()
    }

    /// `MULTI`/`EXEC` on the master of the commands' one slot; when a full
    /// node refuses them and they only delete, in order as a pipeline.
    /// Never answered by the near cache.
    async fn atomic(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        self.nodes.forget_written(&commands);
        let outcome = self.atomic_uncached(&commands).await;
        self.nodes.forget_written(&commands);
        outcome
    }

    async fn watch(
        &self,
        keys: Vec<String>,
        reads: Vec<Command>,
    ) -> Result<(Box<dyn Transaction>, Vec<Reply>), StoreError> {
        transaction::watch(&self.nodes, keys, reads).await
    }

    /// The cluster says `cluster_state:ok`; with durable writes, every
    /// master has enough replicas to acknowledge them.
    async fn ready(&self) -> Result<(), StoreError> {
        let info = self
            .nodes
            .ask_any(redis::cmd("CLUSTER").arg("INFO").clone())
            .await
            .map_err(store_error)?;
        let info = text(info).map_err(|value| {
            StoreError::new(format!("unexpected reply {value:?} to CLUSTER INFO"))
        })?;
        if !info.lines().any(|line| line.trim() == "cluster_state:ok") {
            return Err(StoreError::new(
                "the redis cluster is not ok (CLUSTER INFO has no cluster_state:ok)",
            ));
        }
        let Some(ack) = self.nodes.ack() else {
            return Ok(());
        };
        let ranges = self.nodes.slot_ranges().await.map_err(store_error)?;
        match ranges.iter().find(|range| range.replicas < ack.replicas) {
            Some(range) => Err(StoreError::new(format!(
                "durable writes cannot succeed: min_replicas_ack is {} but the master {} of \
                 slots {}-{} has {} replica(s)",
                ack.replicas, range.master, range.start, range.end, range.replicas
            ))),
            None => Ok(()),
        }
    }

    /// Every master's, each asked at once.
    async fn memory_policies(&self) -> Result<Vec<MemoryPolicy>, StoreError> {
        let ranges = self.nodes.slot_ranges().await.map_err(store_error)?;
        let masters: BTreeSet<String> = ranges.into_iter().map(|range| range.master).collect();
        let asked = masters.into_iter().map(|master| async move {
            let reply = self
                .nodes
                .ask(&master, memory::config_get())
                .await
                .map_err(|error| memory::unreadable(store_error(error)).context(&master))?;
            memory::parse(master, reply)
        });
        futures_util::future::try_join_all(asked).await
    }

    fn is_sharded(&self) -> bool {
        true
    }

    /// Every slot's stream, each master asked for those of its slots in one
    /// pipeline, all at once; merged by id. Streams on different masters
    /// take ids from different clocks, so an event a master appends with
    /// an id below one already read elsewhere is missed by a read after
    /// that id.
    async fn read_events(&self, range: EventRange) -> Result<Vec<StoredEvent>, StoreError> {
        let ranges = self.nodes.slot_ranges().await.map_err(store_error)?;
        let mut slots: BTreeMap<String, Vec<u16>> = BTreeMap::new();
        for slot_range in ranges {
            slots
                .entry(slot_range.master.clone())
                .or_default()
                .extend(slot_range.start..=slot_range.end);
        }
        let stream = self.nodes.events().stream();
        let asked = slots.into_iter().map(|(master, slots)| async move {
            let mut pipe = redis::pipe();
            for &slot in &slots {
                pipe.add_command(read_stream(&stream.slot_key(slot), range));
            }
            let values = self
                .nodes
                .ask_pipeline(&master, pipe, slots.len())
                .await
                .map_err(|error| store_error(error).context(&master))?;
            values
                .into_iter()
                .map(stream_events)
                .collect::<Result<Vec<_>, StoreError>>()
        });
        let streams = futures_util::future::try_join_all(asked).await?;
        Ok(merge_events(streams.into_iter().flatten().collect(), range))
    }

    /// Every master's near cache counted together.
    fn near_cache(&self) -> Option<NearCacheCounts> {
        self.nodes.near_cache_counts()
    }
}
