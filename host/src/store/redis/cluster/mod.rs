//! Redis Cluster: keys spread over 16384 slots, each served by one master
//! and its replicas.
//!
//! Batches and atomic steps go over redis-rs's cluster connection, which
//! keeps the slot map and one multiplexed connection per node; this store
//! sends each slot's commands there itself and decides what to do when a
//! node answers `MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN` or `READONLY`, or
//! when a node cannot be reached. Several commands for one slot go inside
//! `MULTI`/`EXEC`: a redirection then aborts them all, so sending them again
//! to the node named can never apply a command twice. A command that may
//! have reached a node before its connection broke is sent again only when
//! it just reads, as the sentinel store does. Retries stop at the command
//! timeout, so a call fails as late as on the other stores.
//!
//! A `WATCH` needs a connection of its own to the master of its slot for
//! its whole life, and so does a durable write (its `WAIT` holds up every
//! later command on its connection); both use dedicated connections, kept
//! in a small pool per master, found from `CLUSTER SLOTS` and corrected by
//! each `MOVED`. When the slot of a transaction moves between its watch and
//! its commit, the commit is refused by the node and applies nothing; it
//! answers as if a watched key had changed, so the policy reads again and
//! reaches the slot's new master.
//!
//! An atomic step or a transaction must keep to the keys of one slot: one
//! that spans slots fails with an error naming each key's slot, before
//! anything is sent. A batch may span slots: its commands are grouped by
//! slot and the groups sent at once, one round trip per node.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    AsyncConnectionConfig, ErrorKind, IntoConnectionInfo, Pipeline, RedisConnectionInfo,
    RedisError, ServerErrorKind, Value,
};

use super::server::{ReplicaAck, queue, redact, replies, store_error, text};
use super::net::{Connector, TlsFiles, host_and_port};
use crate::store::{Command, Reply, Store, StoreError, Transaction};
use crate::error::SetupError;

/// Slots in a Redis Cluster.
const SLOTS: usize = 16384;

/// The slot Redis Cluster keeps `key` in: CRC16 of the key, or of its hash
/// tag (the part between the first `{` and the next `}`, when not empty).
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = bytes
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &bytes[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(bytes);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOTS as u16
}

/// How to reach a Redis Cluster.
#[derive(Clone)]
pub struct ClusterConfig {
    /// Seed nodes, `redis://host:port` or `rediss://host:port` (TLS); the
    /// store learns the other nodes from them.
    pub nodes: Vec<String>,
    /// ACL user on every node; none for the default user (or the one in the
    /// URLs).
    pub username: Option<String>,
    /// Password on every node.
    pub password: Option<String>,
    /// How long connecting to a node may take.
    pub connect_timeout: Duration,
    /// How long a call may take, redirections and retries included, besides
    /// waiting for replicas.
    pub command_timeout: Duration,
    /// Durable writes: replicas of the master that took a write that must
    /// acknowledge it (`WAIT`) before it succeeds; 0 (the default) turns
    /// this off. Costs as on the sentinel store
    /// ([`super::SentinelConfig::min_replicas_ack`]).
    pub min_replicas_ack: usize,
    /// How long a durable write waits for its replicas; at least 1 ms.
    pub ack_timeout: Duration,
    /// Certificates for `rediss://` nodes; without a CA file the system's
    /// roots are trusted.
    pub tls: TlsFiles,
}

impl ClusterConfig {
    /// The cluster that `nodes` belong to, no credentials, 1 s timeouts,
    /// durable writes off.
    pub fn new(nodes: Vec<String>) -> Self {
        Self {
            nodes,
            username: None,
            password: None,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
            min_replicas_ack: 0,
            ack_timeout: Duration::from_secs(1),
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
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("min_replicas_ack", &self.min_replicas_ack)
            .field("ack_timeout", &self.ack_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Idle dedicated connections kept per master.
const IDLE_CONNECTIONS: usize = 16;
/// The first pause before a call is sent again; each pause doubles.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause between two tries of one call.
const LONGEST_PAUSE: Duration = Duration::from_millis(200);
/// The pause after a node refused a commit because of its slot's state.
const REFUSED_COMMIT_PAUSE: Duration = Duration::from_millis(20);

/// A store on a Redis Cluster, following redirections, resharding and
/// failovers. Cloning it shares its connections.
#[derive(Clone)]
pub struct ClusterStore {
    inner: Arc<Inner>,
}

struct Inner {
    seeds: Vec<String>,
    cluster: ClusterConnection,
    /// TLS or not, for the dedicated connections.
    connector: Connector,
    /// User and password on every node.
    settings: RedisConnectionInfo,
    dedicated: AsyncConnectionConfig,
    ack: Option<ReplicaAck>,
    command_timeout: Duration,
    /// The master of each slot as last seen, `host:port`, for dedicated
    /// connections; None until known.
    masters: Mutex<Vec<Option<Arc<str>>>>,
    /// One `CLUSTER SLOTS` at a time.
    refreshing: tokio::sync::Mutex<()>,
    idle: Mutex<HashMap<Arc<str>, Vec<MultiplexedConnection>>>,
}

impl fmt::Debug for ClusterStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterStore")
            .field("seeds", &self.inner.seeds)
            .finish_non_exhaustive()
    }
}

impl ClusterStore {
    /// Connects to the cluster through its seed nodes and learns its slots;
    /// fails when no seed can be reached now.
    pub async fn connect(config: ClusterConfig) -> Result<Self, SetupError> {
        Self::open(config)
            .await
            .map_err(|e| SetupError::Store(format!("{e:#}")))
    }

    async fn open(config: ClusterConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(!config.nodes.is_empty(), "no cluster nodes given");
        let seeds: Vec<String> = config.nodes.iter().map(|url| redact(url)).collect();
        let secure = config.nodes.iter().all(|url| url.starts_with("rediss://"));
        anyhow::ensure!(
            secure || !config.nodes.iter().any(|url| url.starts_with("rediss://")),
            "the cluster nodes mix rediss:// and redis:// URLs: {seeds:?}"
        );
        anyhow::ensure!(
            secure || config.tls == TlsFiles::default(),
            "TLS certificates are configured, but the cluster nodes are not rediss:// URLs"
        );
        let infos = config
            .nodes
            .iter()
            .map(|url| {
                url.as_str()
                    .into_connection_info()
                    .with_context(|| format!("invalid cluster node URL {:?}", redact(url)))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Credentials in the first URL serve every node, as redis-rs does.
        let mut settings = infos[0].redis_settings().clone();
        if let Some(username) = &config.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &config.password {
            settings = settings.set_password(password);
        }
        let ack = ReplicaAck::configured(config.min_replicas_ack, config.ack_timeout)?;
        let wait = ack.map_or(Duration::ZERO, |ack| ack.timeout);
        let mut builder = ClusterClientBuilder::new(infos)
            .connection_timeout(config.connect_timeout)
            .response_timeout(config.command_timeout)
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
        let inner = Arc::new(Inner {
            seeds,
            cluster,
            connector: Connector::new(secure.then_some(&config.tls))?,
            settings,
            dedicated: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.command_timeout + wait)),
            ack,
            command_timeout: config.command_timeout,
            masters: Mutex::new(vec![None; SLOTS]),
            refreshing: tokio::sync::Mutex::new(()),
            idle: Mutex::new(HashMap::new()),
        });
        inner
            .refresh_masters()
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))
            .context("cannot read the slots of the redis cluster")?;
        Ok(Self { inner })
    }
}

/// The one slot of `keys`, or an error naming each key's slot.
fn one_slot<'k>(what: &str, keys: impl IntoIterator<Item = &'k str>) -> Result<u16, StoreError> {
    let slots: BTreeMap<&str, u16> = keys.into_iter().map(|key| (key, key_slot(key))).collect();
    let mut distinct: Vec<u16> = slots.values().copied().collect();
    distinct.sort_unstable();
    distinct.dedup();
    match distinct[..] {
        [] => Err(StoreError::new(format!("{what} names no key"))),
        [slot] => Ok(slot),
        _ => Err(cross_slot(what, &slots)),
    }
}

fn cross_slot(what: &str, slots: &BTreeMap<&str, u16>) -> StoreError {
    let named = slots
        .iter()
        .map(|(key, slot)| format!("{key:?} in slot {slot}"))
        .collect::<Vec<_>>()
        .join(", ");
    StoreError::new(format!(
        "a redis cluster cannot run {what} over keys in different slots ({named}); \
         nothing was sent. A policy for Redis Cluster puts one hash tag per user in \
         every key, as the built-in `hardened` policy does"
    ))
}

/// Splits a command into one per slot of its keys (only `DEL` and `EXISTS`
/// name several keys; their replies add up).
fn per_slot(command: &Command) -> Vec<(u16, Command)> {
    match command {
        Command::Del(keys) | Command::Exists(keys) => {
            let mut groups: BTreeMap<u16, Vec<String>> = BTreeMap::new();
            for key in keys {
                groups.entry(key_slot(key)).or_default().push(key.clone());
            }
            groups
                .into_iter()
                .map(|(slot, keys)| {
                    let part = match command {
                        Command::Del(_) => Command::Del(keys),
                        _ => Command::Exists(keys),
                    };
                    (slot, part)
                })
                .collect()
        }
        _ => vec![(key_slot(command.keys()[0]), command.clone())],
    }
}

fn only_reads(commands: &[Command]) -> bool {
    commands.iter().all(Command::is_read)
}

/// What a call sends to one slot's master.
struct Request<'a> {
    commands: &'a [Command],
    /// Inside `MULTI`/`EXEC`.
    transaction: bool,
    /// `WAIT` after `EXEC`.
    ack: Option<ReplicaAck>,
}

impl Request<'_> {
    /// The pipeline, with `ASKING` first when a node asked for it, and how
    /// many replies it gets.
    fn pipeline(&self, asking: bool) -> Result<(Pipeline, usize), StoreError> {
        let mut pipe = redis::pipe();
        let mut count = self.commands.len();
        if asking {
            pipe.cmd("ASKING");
            count += 1;
        }
        if self.transaction {
            pipe.cmd("MULTI");
            queue(&mut pipe, self.commands, false)?;
            pipe.cmd("EXEC");
            count += 2;
        } else {
            queue(&mut pipe, self.commands, false)?;
        }
        if let Some(ack) = self.ack {
            pipe.cmd("WAIT")
                .arg(ack.replicas)
                .arg(u64::try_from(ack.timeout.as_millis()).unwrap_or(u64::MAX));
            count += 1;
        }
        Ok((pipe, count))
    }

    /// The replies: None when `EXEC` answered nil (a watched key changed).
    /// A redirection or a node that cannot serve now is the error
    /// [`interruption`] finds.
    fn replies(&self, asking: bool, mut values: Vec<Value>) -> Result<Answer, Failure> {
        if let Some(error) = interruption(&values) {
            return Err(Failure::Redis(error));
        }
        let acknowledged = self.ack.and_then(|_| values.pop());
        if asking && !values.is_empty() {
            values.remove(0);
        }
        let executed = if self.transaction {
            match values.pop() {
                Some(Value::Nil) => return Ok(None),
                Some(Value::Array(items)) => items,
                Some(Value::ServerError(error)) => return Err(Failure::Redis(error.into())),
                other => {
                    return Err(Failure::Store(StoreError::new(format!(
                        "unexpected redis reply {other:?} to EXEC"
                    ))));
                }
            }
        } else {
            values
        };
        // A command's own error (WRONGTYPE) fails the whole call.
        let executed = match Value::Array(executed).extract_error() {
            Ok(Value::Array(items)) => items,
            Ok(other) => vec![other],
            Err(error) => return Err(Failure::Redis(error)),
        };
        let replies = replies(self.commands, executed).map_err(Failure::Store)?;
        if let Some(ack) = self.ack {
            ack.check(acknowledged).map_err(Failure::Store)?;
        }
        Ok(Some(replies))
    }
}

type Answer = Option<Vec<Reply>>;

/// Why one try failed.
enum Failure {
    Redis(RedisError),
    Store(StoreError),
}

/// The first reply saying a node cannot serve the slot now: a redirection,
/// or a slot being moved, a cluster without a master for it, a demoted or
/// loading node. Inside `MULTI` such a reply aborts the transaction, so
/// nothing was applied.
fn interruption(values: &[Value]) -> Option<RedisError> {
    values.iter().find_map(|value| match value {
        Value::ServerError(error)
            if matches!(
                error.kind(),
                Some(
                    ServerErrorKind::Moved
                        | ServerErrorKind::Ask
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::BusyLoading
                        | ServerErrorKind::ReadOnly
                )
            ) =>
        {
            Some(RedisError::from(error.clone()))
        }
        _ => None,
    })
}

/// What to do after a failed try.
enum Next {
    /// Send it to this node, `host:port`, with `ASKING` first if `asking`.
    Redirect { address: String, asking: bool },
    /// Nothing was applied; send it again after a pause.
    Later,
    /// Give up with this error.
    Fail,
}

fn next_step(error: &RedisError, resend: bool) -> Next {
    let redirect = |asking| match error.redirect_node() {
        Some((address, _slot)) => Next::Redirect {
            address: address.to_owned(),
            asking,
        },
        None => Next::Later,
    };
    match error.kind() {
        ErrorKind::Server(ServerErrorKind::Moved) => redirect(false),
        ErrorKind::Server(ServerErrorKind::Ask) => redirect(true),
        ErrorKind::Server(
            ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::BusyLoading
            | ServerErrorKind::ReadOnly,
        )
        | ErrorKind::ClusterConnectionNotFound => Next::Later,
        _ if error.is_connection_refusal() => Next::Later,
        // The node may have applied it before the connection broke.
        _ if error.is_io_error() || error.is_connection_dropped() || error.is_timeout() => {
            if resend { Next::Later } else { Next::Fail }
        }
        _ => Next::Fail,
    }
}

/// Where a try goes: the slot's master as known, or a node named by a
/// redirection.
#[derive(Clone, Default)]
struct Target {
    address: Option<String>,
    asking: bool,
}

impl Inner {
    fn masters(&self) -> MutexGuard<'_, Vec<Option<Arc<str>>>> {
        self.masters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn idle(&self) -> MutexGuard<'_, HashMap<Arc<str>, Vec<MultiplexedConnection>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long a call may take, all its tries included.
    fn deadline(&self, ack: Option<ReplicaAck>) -> Instant {
        Instant::now() + self.command_timeout + ack.map_or(Duration::ZERO, |ack| ack.timeout)
    }

    /// Runs `request` on the master of `slot`, following redirections and
    /// sending it again while nothing can have been applied (or, with
    /// `resend`, while it only reads), until the deadline.
    async fn run(
        &self,
        slot: u16,
        request: &Request<'_>,
        resend: bool,
    ) -> Result<Answer, StoreError> {
        let deadline = self.deadline(request.ack);
        let mut target = Target::default();
        let mut pause = FIRST_PAUSE;
        loop {
            let (pipe, count) = request.pipeline(target.asking)?;
            let sent = if request.ack.is_some() {
                self.send_dedicated(slot, &target, &pipe, count).await
            } else {
                self.send_shared(slot, &target, pipe, count).await
            };
            let error = match sent
                .map_err(Failure::Redis)
                .and_then(|values| request.replies(target.asking, values))
            {
                Ok(answer) => return Ok(answer),
                Err(Failure::Store(error)) => return Err(error),
                Err(Failure::Redis(error)) => error,
            };
            self.after_failure(slot, error, resend, &mut target, &mut pause, deadline)
                .await?;
        }
    }

    /// Aims the next try on `slot` after `error`: where a redirection
    /// points, at once, or at the slot's master after `pause`, which then
    /// doubles. The error to give up with when the failure cannot be
    /// retried, or when the pause would pass `deadline`.
    async fn after_failure(
        &self,
        slot: u16,
        error: RedisError,
        resend: bool,
        target: &mut Target,
        pause: &mut Duration,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        match next_step(&error, resend) {
            Next::Redirect { address, asking } => {
                if !asking {
                    self.learn(slot, &address);
                }
                *target = Target {
                    address: Some(address),
                    asking,
                };
            }
            Next::Later => {
                *target = Target::default();
                self.forget(slot);
            }
            Next::Fail => return Err(store_error(error).context(format!("slot {slot}"))),
        }
        if Instant::now() + *pause > deadline {
            return Err(store_error(error).context(format!(
                "slot {slot}, still failing after retrying for {} ms",
                self.command_timeout.as_millis()
            )));
        }
        if target.address.is_none() {
            tokio::time::sleep(*pause).await;
            *pause = (*pause * 2).min(LONGEST_PAUSE);
        }
        Ok(())
    }

    /// Sends `pipe` over the cluster connection to the master of `slot`, or
    /// to the node a redirection named.
    async fn send_shared(
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

    /// Sends `pipe` over a dedicated connection to the master of `slot`, or
    /// to the node a redirection named.
    async fn send_dedicated(
        &self,
        slot: u16,
        target: &Target,
        pipe: &Pipeline,
        count: usize,
    ) -> Result<Vec<Value>, RedisError> {
        let address: Arc<str> = match &target.address {
            Some(address) => address.as_str().into(),
            None => self.master(slot).await?,
        };
        let mut connection = self.connection(&address).await?;
        match connection.req_packed_commands(pipe, 0, count).await {
            Ok(values) => {
                self.give_back(address, connection);
                Ok(values)
            }
            Err(error) => {
                self.drop_idle(&address);
                Err(error)
            }
        }
    }

    /// The master of `slot` as known, after `CLUSTER SLOTS` if unknown.
    async fn master(&self, slot: u16) -> Result<Arc<str>, RedisError> {
        if let Some(address) = self.masters()[usize::from(slot)].clone() {
            return Ok(address);
        }
        let _one_at_a_time = self.refreshing.lock().await;
        if let Some(address) = self.masters()[usize::from(slot)].clone() {
            return Ok(address);
        }
        self.refresh_masters().await?;
        self.masters()[usize::from(slot)].clone().ok_or_else(|| {
            RedisError::from((
                ErrorKind::ClusterConnectionNotFound,
                "no master serves the slot",
                slot.to_string(),
            ))
        })
    }

    /// Reads the master of every slot from `CLUSTER SLOTS`.
    async fn refresh_masters(&self) -> Result<(), RedisError> {
        let ranges = self.slot_ranges().await?;
        let mut masters = self.masters();
        masters.iter_mut().for_each(|master| *master = None);
        for range in ranges {
            let address: Arc<str> = range.master.into();
            for slot in range.start..=range.end {
                masters[usize::from(slot)] = Some(Arc::clone(&address));
            }
        }
        Ok(())
    }

    /// `CLUSTER SLOTS`, from any node.
    async fn slot_ranges(&self) -> Result<Vec<SlotRange>, RedisError> {
        let value = self
            .cluster
            .clone()
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?;
        SlotRange::parse(value).ok_or_else(|| {
            RedisError::from((
                ErrorKind::UnexpectedReturnType,
                "unexpected reply to CLUSTER SLOTS",
            ))
        })
    }

    /// Records that `address` serves `slot` (from a `MOVED`).
    fn learn(&self, slot: u16, address: &str) {
        self.masters()[usize::from(slot)] = Some(address.into());
    }

    /// Forgets the master of `slot`, so that the next call asks the cluster.
    fn forget(&self, slot: u16) {
        self.masters()[usize::from(slot)] = None;
    }

    async fn connection(&self, address: &Arc<str>) -> Result<MultiplexedConnection, RedisError> {
        if let Some(connection) = self.idle().get_mut(address).and_then(Vec::pop) {
            return Ok(connection);
        }
        let (host, port) = host_and_port(address).ok_or_else(|| {
            RedisError::from((
                ErrorKind::InvalidClientConfig,
                "invalid node address",
                address.to_string(),
            ))
        })?;
        self.connector
            .client(host, port, &self.settings)?
            .get_multiplexed_async_connection_with_config(&self.dedicated)
            .await
    }

    /// Closes the idle connections to `address`: one of them just failed,
    /// and the others may have died with the same node.
    fn drop_idle(&self, address: &str) {
        self.idle().remove(address);
    }

    fn give_back(&self, address: Arc<str>, connection: MultiplexedConnection) {
        let mut idle = self.idle();
        let pool = idle.entry(address).or_default();
        if pool.len() < IDLE_CONNECTIONS {
            pool.push(connection);
        }
    }
}

/// One line of `CLUSTER SLOTS`: a range of slots and its master.
struct SlotRange {
    start: u16,
    end: u16,
    master: String,
    replicas: usize,
}

impl SlotRange {
    fn parse(value: Value) -> Option<Vec<Self>> {
        let Value::Array(ranges) = value else {
            return None;
        };
        let number = |value: &Value| match value {
            Value::Int(n) => u16::try_from(*n).ok(),
            _ => None,
        };
        ranges
            .into_iter()
            .map(|range| {
                let Value::Array(fields) = range else {
                    return None;
                };
                let (start, end) = (number(fields.first()?)?, number(fields.get(1)?)?);
                let Value::Array(node) = fields.get(2)? else {
                    return None;
                };
                let host = text(node.first()?.clone()).ok()?;
                let port = number(node.get(1)?)?;
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                Some(Self {
                    start,
                    end,
                    master: format!("{host}:{port}"),
                    replicas: fields.len().saturating_sub(3),
                })
            })
            .collect()
    }
}

#[async_trait]
impl Store for ClusterStore {
    /// Groups `commands` by slot and sends the groups at once, each to its
    /// master; `DEL` and `EXISTS` over keys of several slots are split and
    /// their counts added.
    async fn batch(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        for command in &commands {
            command.validate()?;
        }
        let mut groups: BTreeMap<u16, Vec<Command>> = BTreeMap::new();
        // For each command, where its parts went: (slot, index in group).
        let mut parts: Vec<Vec<(u16, usize)>> = Vec::with_capacity(commands.len());
        for command in &commands {
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
            let request = Request {
                commands: group,
                transaction: group.len() > 1,
                ack: None,
            };
            let answer = self.inner.run(slot, &request, only_reads(group)).await?;
            Ok::<_, StoreError>((slot, answer.unwrap_or_default()))
        });
        let mut answers: HashMap<u16, Vec<Reply>> = futures_util::future::try_join_all(sent)
            .await?
            .into_iter()
            .collect();
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

    /// `MULTI`/`EXEC` on the master of the commands' one slot.
    async fn atomic(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let slot = one_slot("an atomic step", commands.iter().flat_map(Command::keys))?;
        let writes = !only_reads(&commands);
        let request = Request {
            commands: &commands,
            transaction: true,
            ack: self.inner.ack.filter(|_| writes),
        };
        self.inner
            .run(slot, &request, !writes)
            .await?
            .ok_or_else(|| StoreError::new("redis aborted a transaction nobody watched"))
    }

    async fn watch(
        &self,
        keys: Vec<String>,
        reads: Vec<Command>,
    ) -> Result<(Box<dyn Transaction>, Vec<Reply>), StoreError> {
        let slot = one_slot(
            "a transaction",
            keys.iter()
                .map(String::as_str)
                .chain(reads.iter().flat_map(Command::keys)),
        )?;
        let inner = &self.inner;
        let deadline = inner.deadline(None);
        let mut target = Target::default();
        let mut pause = FIRST_PAUSE;
        loop {
            // WATCH goes first, so that it protects the reads after it;
            // after an ASK each command needs its own ASKING.
            let mut pipe = redis::pipe();
            let asking = |pipe: &mut Pipeline| {
                if target.asking {
                    pipe.cmd("ASKING");
                }
            };
            asking(&mut pipe);
            pipe.cmd("WATCH").arg(&keys);
            for read in &reads {
                asking(&mut pipe);
                queue(&mut pipe, std::slice::from_ref(read), false)?;
            }
            let per_command = 1 + usize::from(target.asking);
            let count = per_command * (1 + reads.len());
            let sent = async {
                let address: Arc<str> = match &target.address {
                    Some(address) => address.as_str().into(),
                    None => inner.master(slot).await?,
                };
                let mut connection = inner.connection(&address).await?;
                match connection.req_packed_commands(&pipe, 0, count).await {
                    Ok(values) => Ok((address, connection, values)),
                    Err(error) => {
                        inner.drop_idle(&address);
                        Err(error)
                    }
                }
            }
            .await;
            let error = match sent {
                Ok((address, connection, values)) => match interruption(&values) {
                    None => {
                        let values: Vec<Value> = values
                            .into_iter()
                            .skip(per_command)
                            .skip(usize::from(target.asking))
                            .step_by(per_command)
                            .collect();
                        let values = match Value::Array(values).extract_error() {
                            Ok(Value::Array(values)) => values,
                            Ok(other) => vec![other],
                            Err(error) => return Err(store_error(error)),
                        };
                        let replies = replies(&reads, values)?;
                        let transaction = ClusterTransaction {
                            inner: Arc::clone(inner),
                            address,
                            connection: Some(connection),
                            slot,
                            asking: target.asking,
                        };
                        return Ok((Box::new(transaction), replies));
                    }
                    Some(error) => error,
                },
                Err(error) => error,
            };
            inner
                .after_failure(slot, error, true, &mut target, &mut pause, deadline)
                .await?;
        }
    }

    /// The cluster says `cluster_state:ok`; with durable writes, every
    /// master has enough replicas to acknowledge them.
    async fn ready(&self) -> Result<(), StoreError> {
        let info = self
            .inner
            .cluster
            .clone()
            .route_command(
                redis::cmd("CLUSTER").arg("INFO").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
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
        let Some(ack) = self.inner.ack else {
            return Ok(());
        };
        let ranges = self.inner.slot_ranges().await.map_err(store_error)?;
        match ranges.iter().find(|range| range.replicas < ack.replicas) {
            Some(range) => Err(StoreError::new(format!(
                "durable writes cannot succeed: min_replicas_ack is {} but the master {} of \
                 slots {}-{} has {} replica(s)",
                ack.replicas, range.master, range.start, range.end, range.replicas
            ))),
            None => Ok(()),
        }
    }

    fn is_sharded(&self) -> bool {
        true
    }
}

/// Holds its dedicated connection, with its `WATCH`, until commit.
struct ClusterTransaction {
    inner: Arc<Inner>,
    address: Arc<str>,
    connection: Option<MultiplexedConnection>,
    slot: u16,
    /// The slot is being imported by this node, which takes commands for
    /// it only after `ASKING`.
    asking: bool,
}

#[async_trait]
impl Transaction for ClusterTransaction {
    async fn commit(
        mut self: Box<Self>,
        commands: Vec<Command>,
    ) -> Result<Option<Vec<Reply>>, StoreError> {
        let mut connection = self
            .connection
            .take()
            .ok_or_else(|| StoreError::new("transaction committed twice"))?;
        if commands.is_empty() {
            // UNWATCH ends the WATCH as an empty EXEC would.
            redis::cmd("UNWATCH")
                .query_async::<()>(&mut connection)
                .await
                .map_err(store_error)?;
            self.inner.give_back(Arc::clone(&self.address), connection);
            return Ok(Some(Vec::new()));
        }
        for command in &commands {
            command.validate()?;
        }
        let slot = one_slot("a transaction", commands.iter().flat_map(Command::keys))?;
        if slot != self.slot {
            // Dropping the connection releases the WATCH.
            return Err(StoreError::new(format!(
                "a redis cluster cannot commit a transaction in slot {slot} that watched slot {}; \
                 nothing was applied",
                self.slot
            )));
        }
        let writes = !only_reads(&commands);
        let request = Request {
            commands: &commands,
            transaction: true,
            ack: self.inner.ack.filter(|_| writes),
        };
        let (pipe, count) = request.pipeline(self.asking)?;
        let values = connection
            .req_packed_commands(&pipe, 0, count)
            .await
            .map_err(store_error)?;
        match request.replies(self.asking, values) {
            Ok(answer) => {
                self.inner.give_back(Arc::clone(&self.address), connection);
                Ok(answer)
            }
            Err(Failure::Store(error)) => Err(error),
            Err(Failure::Redis(error)) => match next_step(&error, false) {
                // The slot moved or cannot be served now: the node refused
                // the whole transaction, as when a watched key changes. The
                // pause keeps the policy's retries from racing through a
                // slot migration, which refuses new keys until it ends.
                Next::Redirect { .. } | Next::Later => {
                    self.inner.forget(self.slot);
                    tokio::time::sleep(REFUSED_COMMIT_PAUSE).await;
                    Ok(None)
                }
                Next::Fail => Err(store_error(error)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_cluster_specification() {
        // Examples from the Redis Cluster specification and redis-cli.
        assert_eq!(key_slot("123456789"), 12739);
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(key_slot("foo{}{bar}"), key_slot("foo{}{bar}"));
        assert_ne!(key_slot("foo{}{bar}"), key_slot("bar"));
        assert_eq!(key_slot("foo{{bar}}zap"), key_slot("{bar"));
        assert_eq!(key_slot("foo{bar}{zap}"), key_slot("bar"));
    }

    #[test]
    fn a_step_over_two_slots_names_each_keys_slot() {
        let error = one_slot("an atomic step", ["a", "b"]).unwrap_err();
        let message = error.message();
        assert!(message.contains("\"a\" in slot 15495"), "{message}");
        assert!(message.contains("\"b\" in slot 3300"), "{message}");
        assert!(message.contains("hardened"), "{message}");
        assert_eq!(one_slot("x", ["{u}a", "{u}b"]).unwrap(), key_slot("u"));
    }
}
