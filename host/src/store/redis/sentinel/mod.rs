//! Redis behind Sentinel: the store asks the sentinels where the master is
//! and follows it when they fail over to a replica, without a restart.
//!
//! The master in use is lost when a connection to it fails, when it answers
//! `READONLY` (demoted), when replicas fail to acknowledge a durable write,
//! or when the sentinels name another address; the next call then asks the
//! sentinels again and checks `ROLE` on the address they give. A call in
//! flight when the master goes fails with a store error: a write may have
//! been applied before the connection broke, so writes are never sent twice.
//! A call that only reads is sent once more, to the new master.
//!
//! A master cut off from the sentinels keeps taking writes until it is
//! demoted; the store leaves it within a second of the sentinels naming
//! another. Writes it took meanwhile are lost unless `min_replicas_ack`
//! made them fail.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::error::SetupError;
use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisConnectionInfo, RedisError};

use super::server::{ReplicaAck, Server, role, store_error, text};
use super::net::{Connector, TlsFiles, host_and_port};
use crate::store::{Command, Reply, Store, StoreError, Transaction};

/// How to find the master through Redis Sentinel.
#[derive(Clone)]
pub struct SentinelConfig {
    /// The sentinels, as `host:port`, asked in turn; the one that last named
    /// a working master is asked first.
    pub sentinels: Vec<String>,
    /// The name the sentinels monitor the master under
    /// (`sentinel monitor NAME …`).
    pub master_name: String,
    /// ACL user on the master; none for the default user.
    pub username: Option<String>,
    /// Password on the master.
    pub password: Option<String>,
    /// Password on the sentinels, when they have `requirepass`.
    pub sentinel_password: Option<String>,
    /// Database number on the master.
    pub db: i64,
    /// How long connecting to a sentinel or to the master may take.
    pub connect_timeout: Duration,
    /// How long a round trip may take, besides waiting for replicas.
    pub command_timeout: Duration,
    /// Durable writes: how many replicas must acknowledge each write before
    /// it succeeds; 0 (the default) turns this off.
    ///
    /// Every atomic batch and transaction commit that writes (set-token,
    /// refresh-token, delete-token and delete-user-token in the default
    /// policy) is followed, in the same round trip, by
    /// `WAIT min_replicas_ack ack_timeout`, and fails with a store error when
    /// fewer replicas acknowledged in time. A revocation that succeeded then
    /// survives a failover to one of those replicas.
    ///
    /// Cost: those writes take as long as the slowest of the required
    /// replicas needs to apply them (well under a millisecond on one host, a
    /// network round trip or more between hosts), and each holds a
    /// connection of its own meanwhile (`WAIT` blocks its connection), so
    /// concurrent writes open more connections to the master. While fewer
    /// replicas than required are up, every such write waits the whole
    /// `ack_timeout` and then fails, although the master applied it. Plain
    /// batches (the user-info cache, pruning of dead index entries) are not
    /// waited for.
    pub min_replicas_ack: usize,
    /// How long a durable write waits for its replicas; at least 1 ms.
    pub ack_timeout: Duration,
    /// TLS to the sentinels and the master; none for plain TCP.
    pub tls: Option<TlsFiles>,
}

impl SentinelConfig {
    /// The master called `master_name` behind `sentinels` (`host:port`),
    /// database 0, no passwords, 1 s timeouts, durable writes off.
    pub fn new(sentinels: Vec<String>, master_name: impl Into<String>) -> Self {
        Self {
            sentinels,
            master_name: master_name.into(),
            username: None,
            password: None,
            sentinel_password: None,
            db: 0,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
            min_replicas_ack: 0,
            ack_timeout: Duration::from_secs(1),
            tls: None,
        }
    }
}

impl fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |password: &Option<String>| password.as_ref().map(|_| "***");
        f.debug_struct("SentinelConfig")
            .field("sentinels", &self.sentinels)
            .field("master_name", &self.master_name)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("sentinel_password", &redacted(&self.sentinel_password))
            .field("db", &self.db)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("min_replicas_ack", &self.min_replicas_ack)
            .field("ack_timeout", &self.ack_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

/// How often a sentinel is asked whether the master moved, to catch a
/// failover that no error revealed (reads still work on a demoted master).
const ADDRESS_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long after a failed search for the master calls fail at once with
/// its error, rather than each asking every sentinel again.
const SEARCH_PAUSE: Duration = Duration::from_millis(100);

/// A store on the master that Redis Sentinel names, following failovers.
/// Cloning it shares its connections.
#[derive(Clone)]
pub struct SentinelStore {
    inner: Arc<Inner>,
}

type Master = Arc<Server<MultiplexedConnection>>;

struct Inner {
    master_name: String,
    sentinels: Vec<Sentinel>,
    /// The sentinel that named the master in use.
    preferred: AtomicUsize,
    sentinel_connection: AsyncConnectionConfig,
    master_settings: RedisConnectionInfo,
    /// TLS or not, for the sentinels and the masters they name.
    connector: Connector,
    master_connection: AsyncConnectionConfig,
    ack: Option<ReplicaAck>,
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

struct Sentinel {
    address: String,
    client: Client,
}

/// What one sentinel said when asked for the master.
enum Answer {
    Unreachable(RedisError),
    UnknownName,
    NamedUnusable { master: String, error: StoreError },
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(error) => write!(f, "unreachable ({error})"),
            Self::UnknownName => f.write_str("does not know that master name"),
            Self::NamedUnusable { master, error } => write!(f, "named {master}: {error}"),
        }
    }
}

impl fmt::Debug for SentinelStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelStore")
            .field("master_name", &self.inner.master_name)
            .field(
                "sentinels",
                &self
                    .inner
                    .sentinels
                    .iter()
                    .map(|sentinel| sentinel.address.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("master", &self.master_address())
            .finish_non_exhaustive()
    }
}

fn parse_address(address: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = host_and_port(address)
        .with_context(|| format!("sentinel address {address:?} is not host:port"))?;
    Ok((host.to_owned(), port))
}

impl SentinelStore {
    /// Asks the sentinels for the master and connects to it; fails when no
    /// sentinel can be reached, when they do not know `master_name`, or
    /// when the master they name cannot be used.
    pub async fn connect(config: SentinelConfig) -> Result<Self, SetupError> {
        Self::open(config)
            .await
            .map_err(|e| SetupError::Store(format!("{e:#}")))
    }

    async fn open(config: SentinelConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(!config.sentinels.is_empty(), "no sentinel addresses given");
        anyhow::ensure!(!config.master_name.is_empty(), "no master name given");
        let mut sentinel_settings = RedisConnectionInfo::default();
        if let Some(password) = &config.sentinel_password {
            sentinel_settings = sentinel_settings.set_password(password);
        }
        let connector = Connector::new(config.tls.as_ref())?;
        let sentinels = config
            .sentinels
            .iter()
            .map(|address| {
                let (host, port) = parse_address(address)?;
                let client = connector
                    .client(&host, port, &sentinel_settings)
                    .with_context(|| format!("invalid sentinel address {address:?}"))?;
                Ok(Sentinel {
                    address: address.clone(),
                    client,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let mut master_settings = RedisConnectionInfo::default().set_db(config.db);
        if let Some(username) = &config.username {
            master_settings = master_settings.set_username(username);
        }
        if let Some(password) = &config.password {
            master_settings = master_settings.set_password(password);
        }
        let ack = ReplicaAck::configured(config.min_replicas_ack, config.ack_timeout)?;
        let wait = ack.map_or(Duration::ZERO, |ack| ack.timeout);
        let inner = Arc::new(Inner {
            master_name: config.master_name,
            sentinels,
            preferred: AtomicUsize::new(0),
            sentinel_connection: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.command_timeout)),
            master_settings,
            connector,
            master_connection: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.command_timeout + wait)),
            ack,
            current: Mutex::new(Current::default()),
            searching: tokio::sync::Mutex::new(()),
        });
        inner.master().await?;
        follow_master(Arc::downgrade(&inner));
        Ok(Self { inner })
    }

    /// The master in use, as `host:port`; None while none is known.
    pub fn master_address(&self) -> Option<String> {
        self.inner
            .current()
            .master
            .as_ref()
            .map(|master| master.address().to_string())
    }

    /// Runs `call` on the master; when it fails because the master went,
    /// runs it once more on the next master if `resend` (it only reads).
    async fn on_master<T, F, Fut>(&self, resend: bool, call: F) -> Result<T, StoreError>
    where
        F: Fn(Master) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let master = self.inner.master().await?;
        let outcome = match call(Arc::clone(&master)).await {
            Err(_) if resend && master.is_lost() => {
                let master = self.inner.master().await?;
                call(Arc::clone(&master))
                    .await
                    .map_err(|error| (master, error))
            }
            outcome => outcome.map_err(|error| (master, error)),
        };
        outcome.map_err(|(master, error)| {
            error.context(format!(
                "redis master {:?} at {}",
                self.inner.master_name,
                master.address()
            ))
        })
    }
}

fn only_reads(commands: &[Command]) -> bool {
    commands.iter().all(Command::is_read)
}

#[async_trait]
impl Store for SentinelStore {
    async fn batch(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        self.on_master(only_reads(&commands), |master| {
            let commands = &commands;
            async move { master.batch(commands).await }
        })
        .await
    }

    async fn atomic(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        self.on_master(only_reads(&commands), |master| {
            let commands = &commands;
            async move { master.atomic(commands).await }
        })
        .await
    }

    async fn watch(
        &self,
        keys: Vec<String>,
        reads: Vec<Command>,
    ) -> Result<(Box<dyn Transaction>, Vec<Reply>), StoreError> {
        self.on_master(only_reads(&reads), |master| {
            let (keys, reads) = (&keys, &reads);
            async move { master.watch(keys, reads).await }
        })
        .await
    }

    /// A writable master, and with durable writes: enough replicas to
    /// acknowledge them, all known to the sentinels (one they do not know
    /// yet could hold the acknowledgements while they promote another).
    async fn ready(&self) -> Result<(), StoreError> {
        let master = self
            .on_master(true, |master| async move {
                match master.role().await?.as_str() {
                    "master" => Ok(master),
                    role => {
                        master.mark_lost();
                        Err(StoreError::new(format!("ROLE is {role}, not master")))
                    }
                }
            })
            .await?;
        let Some(ack) = self.inner.ack else {
            return Ok(());
        };
        let replicas = master.replicas().await?;
        if replicas.len() < ack.replicas {
            return Err(StoreError::new(format!(
                "durable writes cannot succeed: min_replicas_ack is {} but the master has {} connected replica(s)",
                ack.replicas,
                replicas.len()
            )));
        }
        let known = self.inner.known_replicas().await?;
        let unknown: Vec<&String> = replicas.iter().filter(|r| !known.contains(r)).collect();
        if !unknown.is_empty() {
            return Err(StoreError::new(format!(
                "replica(s) {unknown:?} of the master are not yet known to the sentinels: \
                 a failover now could promote a replica that lacks acknowledged writes"
            )));
        }
        Ok(())
    }
}

/// Asks a sentinel now and then whether the master moved, until the store
/// is dropped.
fn follow_master(inner: Weak<Inner>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(ADDRESS_CHECK_INTERVAL).await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            inner.check_master_address().await;
        }
    });
}

impl Inner {
    fn current(&self) -> MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The master in use, or a new one from the sentinels when it was lost.
    async fn master(&self) -> Result<Master, StoreError> {
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
        let found = self.find_master().await.map(Arc::new);
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

    /// Asks each sentinel in turn for the master until one names a server
    /// that is reachable and says it is a master.
    async fn find_master(&self) -> Result<Server<MultiplexedConnection>, StoreError> {
        let first = self.preferred.load(Ordering::Relaxed);
        let mut answers: Vec<(&str, Answer)> = Vec::with_capacity(self.sentinels.len());
        for offset in 0..self.sentinels.len() {
            let index = (first + offset) % self.sentinels.len();
            let sentinel = &self.sentinels[index];
            let answer = match self.ask(sentinel).await {
                Err(error) => Answer::Unreachable(error),
                Ok(None) => Answer::UnknownName,
                Ok(Some((host, port))) => {
                    let master = format!("{host}:{port}");
                    let tried = answers.iter().find_map(|(_, answer)| match answer {
                        Answer::NamedUnusable { master: m, error } if *m == master => {
                            Some(error.clone())
                        }
                        _ => None,
                    });
                    let outcome = match tried {
                        Some(error) => Err(error),
                        None => self.open_master(&host, port).await,
                    };
                    match outcome {
                        Ok(server) => {
                            self.preferred.store(index, Ordering::Relaxed);
                            tracing::info!(
                                master_name = %self.master_name,
                                master = %master,
                                sentinel = %sentinel.address,
                                "using the redis master named by sentinel"
                            );
                            return Ok(server);
                        }
                        Err(error) => Answer::NamedUnusable { master, error },
                    }
                }
            };
            answers.push((&sentinel.address, answer));
        }
        Err(self.no_master(&answers))
    }

    fn no_master(&self, answers: &[(&str, Answer)]) -> StoreError {
        let name = &self.master_name;
        let details = answers
            .iter()
            .map(|(sentinel, answer)| format!("{sentinel} {answer}"))
            .collect::<Vec<_>>()
            .join("; ");
        let unreachable = |answer: &Answer| matches!(answer, Answer::Unreachable(_));
        let message = if answers.iter().all(|(_, answer)| unreachable(answer)) {
            format!("no sentinel reachable to find redis master {name:?}: tried {details}")
        } else if answers
            .iter()
            .all(|(_, answer)| unreachable(answer) || matches!(answer, Answer::UnknownName))
        {
            format!("the sentinels do not know a redis master named {name:?}: {details}")
        } else {
            format!("no usable redis master {name:?} found through the sentinels: {details}")
        };
        StoreError::new(message)
    }

    /// `SENTINEL get-master-addr-by-name`: None when the sentinel does not
    /// know the name.
    async fn ask(&self, sentinel: &Sentinel) -> Result<Option<(String, u16)>, RedisError> {
        let mut connection = sentinel
            .client
            .get_multiplexed_async_connection_with_config(&self.sentinel_connection)
            .await?;
        let address: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master_name)
            .query_async(&mut connection)
            .await?;
        Ok(address)
    }

    /// The replicas the preferred sentinel knows for the master, as
    /// `ip:port`.
    async fn known_replicas(&self) -> Result<Vec<String>, StoreError> {
        let sentinel = &self.sentinels[self.preferred.load(Ordering::Relaxed)];
        let unreachable = |error: RedisError| {
            StoreError::new(format!(
                "sentinel {} unreachable: {error}",
                sentinel.address
            ))
        };
        let mut connection = sentinel
            .client
            .get_multiplexed_async_connection_with_config(&self.sentinel_connection)
            .await
            .map_err(unreachable)?;
        let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(&self.master_name)
            .query_async(&mut connection)
            .await
            .map_err(unreachable)?;
        Ok(replicas
            .into_iter()
            .filter_map(|replica| {
                let fields: Vec<(String, String)> = match replica {
                    redis::Value::Map(pairs) => pairs
                        .into_iter()
                        .filter_map(|(k, v)| Some((text(k).ok()?, text(v).ok()?)))
                        .collect(),
                    redis::Value::Array(items) => items
                        .chunks(2)
                        .filter_map(|pair| {
                            Some((
                                text(pair.first()?.clone()).ok()?,
                                text(pair.get(1)?.clone()).ok()?,
                            ))
                        })
                        .collect(),
                    _ => return None,
                };
                let field = |name: &str| {
                    fields
                        .iter()
                        .find_map(|(k, v)| (k == name).then(|| v.clone()))
                };
                Some(format!("{}:{}", field("ip")?, field("port")?))
            })
            .collect())
    }

    /// Connects to `host:port` and checks that it is a master: during a failover
    /// a sentinel may still name a server that was demoted.
    async fn open_master(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Server<MultiplexedConnection>, StoreError> {
        let client = self
            .connector
            .client(host, port, &self.master_settings)
            .map_err(store_error)?;
        let mut shared = client
            .get_multiplexed_async_connection_with_config(&self.master_connection)
            .await
            .map_err(store_error)?;
        match role(&mut shared).await.map_err(store_error)?.as_str() {
            "master" => Ok(Server::new(
                client,
                shared,
                self.master_connection.clone(),
                self.ack,
            )),
            role => Err(StoreError::new(format!("ROLE is {role}, not master"))),
        }
    }

    async fn check_master_address(&self) {
        let master = match &self.current().master {
            Some(master) if !master.is_lost() => Arc::clone(master),
            _ => return,
        };
        let sentinel = &self.sentinels[self.preferred.load(Ordering::Relaxed)];
        if let Ok(Some((host, port))) = self.ask(sentinel).await
            && format!("{host}:{port}") != master.address().to_string()
        {
            tracing::warn!(
                master_name = %self.master_name,
                old = %master.address(),
                new = %format!("{host}:{port}"),
                sentinel = %sentinel.address,
                "the sentinels moved the redis master"
            );
            master.mark_lost();
        }
    }
}
