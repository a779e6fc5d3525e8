//! A single Redis server, shared with every other service on it.
//!
//! Batches go over one auto-reconnecting multiplexed connection. A `WATCH`
//! needs a connection of its own for its whole life, so transactions take
//! one from a small pool of dedicated connections.
//!
//! [`Server`] holds that connection logic and the command encoding for every
//! Redis backend; the sentinel store runs one per master it finds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;

use crate::error::SetupError;
use async_trait::async_trait;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, Pipeline, RedisError, ServerErrorKind, Value,
};

use super::tls::TlsFiles;
use super::{
    Command, ExpireArgs, ExpireCondition, GetExpireArgs, HashDeleteArgs, HashExistsArgs,
    HashGetArgs, HashSetArgs, Reply, SetArgs, SetCondition, Store, StoreError, Transaction,
};

/// How to reach a Redis server.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long a round trip may take.
    pub command_timeout: Duration,
    /// Certificates for a `rediss://` URL; without a CA file the system's
    /// roots are trusted.
    pub tls: TlsFiles,
}

impl RedisConfig {
    /// The server at `url` with the default timeouts (1 s each).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
            tls: TlsFiles::default(),
        }
    }
}

/// A store on one Redis server. Cloning it shares its connections.
#[derive(Clone)]
pub struct RedisStore {
    server: Arc<Server<ConnectionManager>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("server", self.server.address())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the server; fails when it cannot be reached now.
    pub async fn connect(config: RedisConfig) -> Result<Self, SetupError> {
        Self::open(config)
            .await
            .map_err(|e| SetupError::Store(format!("{e:#}")))
    }

    async fn open(config: RedisConfig) -> anyhow::Result<Self> {
        let client = if config.url.starts_with("rediss://") {
            Client::build_with_tls(config.url.as_str(), config.tls.certificates()?)
        } else {
            anyhow::ensure!(
                config.tls == TlsFiles::default(),
                "TLS certificates are configured, but {} is not a rediss:// URL",
                redact(&config.url)
            );
            Client::open(config.url.as_str())
        }
        .with_context(|| format!("invalid redis URL {:?}", redact(&config.url)))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let shared = ConnectionManager::new_with_config(client.clone(), manager_config)
            .await
            .with_context(|| format!("cannot connect to redis at {}", redact(&config.url)))?;
        let connection_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout));
        Ok(Self {
            server: Arc::new(Server::new(client, shared, connection_config, None)),
        })
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn batch(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        self.server.batch(&commands).await
    }

    async fn atomic(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        self.server.atomic(&commands).await
    }

    async fn watch(
        &self,
        keys: Vec<String>,
        reads: Vec<Command>,
    ) -> Result<(Box<dyn Transaction>, Vec<Reply>), StoreError> {
        self.server.watch(&keys, &reads).await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.server.ping().await
    }
}

/// A `RedisError` as the store reports it.
pub(super) fn store_error(error: RedisError) -> StoreError {
    if is_wrong_type(&error) {
        return StoreError::corrupt(format!("a key holds the wrong type of value: {error}"));
    }
    let what = if error.is_timeout() {
        "redis timed out"
    } else if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal()
    {
        "redis unreachable"
    } else {
        "redis refused the command"
    };
    StoreError::new(format!("{what}: {error}"))
}

/// Whether Redis answered `WRONGTYPE`, alone or inside a pipeline.
fn is_wrong_type(error: &RedisError) -> bool {
    error.code() == Some("WRONGTYPE")
        || error
            .clone()
            .into_server_errors()
            .is_some_and(|errors| errors.iter().any(|(_, error)| error.code() == "WRONGTYPE"))
}

/// Whether `error` says the connection or the server's role is gone: the
/// server died, hung, or was demoted to a replica.
fn is_lost(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.clone().into_server_errors().is_some_and(|errors| {
            errors.iter().any(|(_, error)| {
                matches!(
                    error.kind(),
                    Some(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown)
                )
            })
        })
}

/// Idle dedicated connections kept for transactions and durable writes.
const IDLE_WATCH_CONNECTIONS: usize = 16;

/// How many replicas must acknowledge a write, and how long to wait for them.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReplicaAck {
    pub(super) replicas: usize,
    pub(super) timeout: Duration,
}

impl ReplicaAck {
    /// Durable writes as configured: none when `replicas` is 0.
    pub(super) fn configured(replicas: usize, timeout: Duration) -> anyhow::Result<Option<Self>> {
        if replicas == 0 {
            return Ok(None);
        }
        // WAIT with a timeout of 0 waits forever.
        anyhow::ensure!(
            timeout >= Duration::from_millis(1),
            "ack_timeout must be at least 1 ms"
        );
        Ok(Some(Self { replicas, timeout }))
    }

    /// Whether the reply to `WAIT` says enough replicas acknowledged.
    pub(super) fn check(self, reply: Option<Value>) -> Result<(), StoreError> {
        let count = match reply {
            Some(Value::Int(count)) => count,
            other => {
                return Err(StoreError::new(format!(
                    "unexpected redis reply {other:?} to WAIT"
                )));
            }
        };
        if usize::try_from(count).unwrap_or(0) < self.replicas {
            return Err(StoreError::new(format!(
                "only {count} of {} replicas acknowledged the write within {} ms: \
                 the master applied it, but a failover may lose it",
                self.replicas,
                self.timeout.as_millis()
            )));
        }
        Ok(())
    }
}

/// Connections to one server: `shared` carries batches, and each `WATCH` (or
/// write that waits for replicas) gets a dedicated connection, kept in a
/// small pool between uses.
pub(super) struct Server<C> {
    client: Client,
    shared: C,
    connection_config: AsyncConnectionConfig,
    idle: Mutex<Vec<MultiplexedConnection>>,
    /// Replicas that must acknowledge each atomic write before it succeeds.
    ack: Option<ReplicaAck>,
    /// Set once a connection failed in a way that says the server is gone or
    /// no longer a master, so that whoever chose this server chooses again.
    lost: AtomicBool,
}

impl<C> Server<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// `shared` must be a connection to `client`'s server; dedicated
    /// connections are opened with `connection_config`.
    pub(super) fn new(
        client: Client,
        shared: C,
        connection_config: AsyncConnectionConfig,
        ack: Option<ReplicaAck>,
    ) -> Self {
        Self {
            client,
            shared,
            connection_config,
            idle: Mutex::new(Vec::new()),
            ack,
            lost: AtomicBool::new(false),
        }
    }

    /// Where the server is.
    pub(super) fn address(&self) -> &ConnectionAddr {
        self.client.get_connection_info().addr()
    }

    /// Whether a failure said the server is gone or demoted.
    pub(super) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Records that the server is gone or demoted; its idle connections go too.
    pub(super) fn mark_lost(&self) {
        self.lost.store(true, Ordering::SeqCst);
        self.drop_idle();
    }

    fn drop_idle(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn failed(&self, error: RedisError) -> StoreError {
        if is_lost(&error) {
            self.mark_lost();
        }
        store_error(error)
    }

    /// The acknowledgement `commands` need: none unless one of them writes.
    fn acknowledgement(&self, commands: &[Command]) -> Option<ReplicaAck> {
        self.ack
            .filter(|_| commands.iter().any(|command| !command.is_read()))
    }

    fn idle_connection(&self) -> Option<MultiplexedConnection> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    async fn new_connection(&self) -> Result<MultiplexedConnection, RedisError> {
        self.client
            .get_multiplexed_async_connection_with_config(&self.connection_config)
            .await
    }

    fn give_back(&self, connection: MultiplexedConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_WATCH_CONNECTIONS {
            idle.push(connection);
        }
    }

    /// `PING` on the shared connection.
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.shared.clone())
            .await
            .map_err(|error| self.failed(error))
    }

    /// The replicas connected to this master, as `ip:port`, from `ROLE`.
    pub(super) async fn replicas(&self) -> Result<Vec<String>, StoreError> {
        let value: Value = redis::cmd("ROLE")
            .query_async(&mut self.shared.clone())
            .await
            .map_err(|error| self.failed(error))?;
        let unexpected =
            |value: &Value| StoreError::new(format!("unexpected ROLE reply {value:?}"));
        let Value::Array(items) = value else {
            return Err(unexpected(&value));
        };
        let Some(Value::Array(replicas)) = items.get(2) else {
            return Err(unexpected(&Value::Array(items)));
        };
        replicas
            .iter()
            .map(|replica| match replica {
                Value::Array(fields) if fields.len() >= 2 => {
                    let ip = text(fields[0].clone()).map_err(|v| unexpected(&v))?;
                    let port = text(fields[1].clone()).map_err(|v| unexpected(&v))?;
                    Ok(format!("{ip}:{port}"))
                }
                other => Err(unexpected(other)),
            })
            .collect()
    }

    /// The first element of `ROLE` on the shared connection.
    pub(super) async fn role(&self) -> Result<String, StoreError> {
        role(&mut self.shared.clone())
            .await
            .map_err(|error| self.failed(error))
    }

    /// Runs `commands` in order as one pipeline.
    pub(super) async fn batch(&self, commands: &[Command]) -> Result<Vec<Reply>, StoreError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        queue(&mut pipe, commands, false)?;
        let values: Vec<Value> = pipe
            .query_async(&mut self.shared.clone())
            .await
            .map_err(|error| self.failed(error))?;
        replies(commands, values)
    }

    /// Runs `commands` atomically on the shared connection.
    pub(super) async fn atomic(&self, commands: &[Command]) -> Result<Vec<Reply>, StoreError> {
        let executed = match self.acknowledgement(commands) {
            // WAIT holds up every later command on its connection until the
            // replicas answer, so it must not hold up the shared one.
            Some(_) => {
                let mut connection = match self.idle_connection() {
                    Some(connection) => connection,
                    None => self
                        .new_connection()
                        .await
                        .map_err(|error| self.failed(error))?,
                };
                let executed = self.exec(&mut connection, commands).await;
                if executed.is_ok() {
                    self.give_back(connection);
                }
                executed
            }
            None => self.exec(&mut self.shared.clone(), commands).await,
        };
        executed?.ok_or_else(|| StoreError::new("redis aborted a transaction nobody watched"))
    }

    /// Watches `keys` on a dedicated connection, then runs `reads` there.
    pub(super) async fn watch(
        self: &Arc<Self>,
        keys: &[String],
        reads: &[Command],
    ) -> Result<(Box<dyn Transaction>, Vec<Reply>), StoreError> {
        // WATCH goes first, so that it protects the reads after it.
        let mut pipe = redis::pipe();
        if !keys.is_empty() {
            pipe.cmd("WATCH").arg(keys).ignore();
        }
        queue(&mut pipe, reads, false)?;
        let (connection, values) = match self.idle_connection() {
            Some(mut connection) => match pipe.query_async(&mut connection).await {
                // An idle connection may have died with an earlier server
                // process; WATCH and reads write nothing, so sending them
                // again on a fresh connection is safe.
                Err(error) if is_lost(&error) => {
                    self.drop_idle();
                    self.watch_on_new_connection(&pipe).await?
                }
                outcome => (connection, outcome.map_err(|error| self.failed(error))?),
            },
            None => self.watch_on_new_connection(&pipe).await?,
        };
        let replies = replies(reads, values)?;
        let transaction = RedisTransaction {
            server: Arc::clone(self),
            connection: Some(connection),
        };
        Ok((Box::new(transaction), replies))
    }

    async fn watch_on_new_connection(
        &self,
        pipe: &Pipeline,
    ) -> Result<(MultiplexedConnection, Vec<Value>), StoreError> {
        let watched = async {
            let mut connection = self.new_connection().await?;
            let values = pipe.query_async(&mut connection).await?;
            Ok((connection, values))
        };
        watched.await.map_err(|error| self.failed(error))
    }

    /// Runs `commands` atomically on `connection`: None when a `WATCH`
    /// aborted it. When replicas must acknowledge and a command writes,
    /// `WAIT` follows `EXEC` in the same round trip.
    async fn exec(
        &self,
        connection: &mut impl ConnectionLike,
        commands: &[Command],
    ) -> Result<Option<Vec<Reply>>, StoreError> {
        if commands.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let ack = self.acknowledgement(commands);
        let mut pipe = redis::pipe();
        pipe.cmd("MULTI").ignore();
        queue(&mut pipe, commands, true)?;
        pipe.cmd("EXEC");
        if let Some(ack) = ack {
            pipe.cmd("WAIT")
                .arg(ack.replicas)
                .arg(u64::try_from(ack.timeout.as_millis()).unwrap_or(u64::MAX));
        }
        let mut values: Vec<Value> = pipe
            .query_async(connection)
            .await
            .map_err(|error| self.failed(error))?;
        let acknowledged = ack.and_then(|_| values.pop());
        let executed = match values.pop() {
            Some(Value::Nil) => return Ok(None),
            Some(Value::Array(values)) => replies(commands, values)?,
            other => {
                return Err(StoreError::new(format!(
                    "unexpected redis reply {other:?} to EXEC"
                )));
            }
        };
        if let Some(ack) = ack
            && let Err(error) = ack.check(acknowledged)
        {
            // A master that lost its replicas may be cut off from a
            // failover that promoted one of them.
            self.mark_lost();
            return Err(error);
        }
        Ok(Some(executed))
    }
}

/// The first element of `ROLE` on `connection`: `master`, `slave` or
/// `sentinel`.
pub(super) async fn role(connection: &mut impl ConnectionLike) -> Result<String, RedisError> {
    let value: Value = redis::cmd("ROLE").query_async(connection).await?;
    let role = match value {
        Value::Array(items) => items.into_iter().next().and_then(|role| text(role).ok()),
        _ => None,
    };
    role.ok_or_else(|| {
        RedisError::from((redis::ErrorKind::UnexpectedReturnType, "ROLE gave no role"))
    })
}

/// Holds its dedicated connection until commit; dropped uncommitted, the
/// connection goes with it and so does its `WATCH`.
struct RedisTransaction<C> {
    server: Arc<Server<C>>,
    connection: Option<MultiplexedConnection>,
}

#[async_trait]
impl<C> Transaction for RedisTransaction<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn commit(
        mut self: Box<Self>,
        commands: Vec<Command>,
    ) -> Result<Option<Vec<Reply>>, StoreError> {
        let mut connection = self
            .connection
            .take()
            .ok_or_else(|| StoreError::new("transaction committed twice"))?;
        let outcome = if commands.is_empty() {
            // EXEC with nothing queued still ends the WATCH.
            redis::cmd("UNWATCH")
                .query_async::<()>(&mut connection)
                .await
                .map(|()| Some(Vec::new()))
                .map_err(|error| self.server.failed(error))
        } else {
            self.server.exec(&mut connection, &commands).await
        };
        if outcome.is_ok() {
            self.server.give_back(connection);
        }
        outcome
    }
}

/// The URL with its password replaced, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

fn add(pipe: &mut Pipeline, command: &Command) {
    match command {
        Command::Get(key) => {
            pipe.cmd("GET").arg(key);
        }
        Command::Set(SetArgs {
            key,
            value,
            ttl_seconds,
            condition,
        }) => {
            let cmd = pipe.cmd("SET").arg(key).arg(value);
            if *ttl_seconds > 0 {
                cmd.arg("EX").arg(*ttl_seconds);
            }
            match condition {
                SetCondition::Always => {}
                SetCondition::IfAbsent => {
                    cmd.arg("NX");
                }
                SetCondition::IfPresent => {
                    cmd.arg("XX");
                }
            }
        }
        Command::Del(keys) => {
            pipe.cmd("DEL").arg(keys);
        }
        Command::Exists(keys) => {
            pipe.cmd("EXISTS").arg(keys);
        }
        Command::Ttl(key) => {
            pipe.cmd("TTL").arg(key);
        }
        Command::Expire(ExpireArgs {
            key,
            seconds,
            condition,
        }) => {
            let cmd = pipe.cmd("EXPIRE").arg(key).arg(*seconds);
            match condition {
                ExpireCondition::Always => {}
                ExpireCondition::IfNone => {
                    cmd.arg("NX");
                }
                ExpireCondition::IfLater => {
                    cmd.arg("GT");
                }
            }
        }
        Command::HashSet(HashSetArgs { key, fields }) => {
            let cmd = pipe.cmd("HSET").arg(key);
            for (field, value) in fields {
                cmd.arg(field).arg(value);
            }
        }
        Command::HashDelete(HashDeleteArgs { key, fields }) => {
            pipe.cmd("HDEL").arg(key).arg(fields);
        }
        Command::HashGetAll(key) => {
            pipe.cmd("HGETALL").arg(key);
        }
        Command::HashExists(HashExistsArgs { key, field }) => {
            pipe.cmd("HEXISTS").arg(key).arg(field);
        }
        Command::GetExpire(GetExpireArgs { key, seconds }) => {
            pipe.cmd("GETEX").arg(key).arg("EX").arg(*seconds);
        }
        Command::HashGet(HashGetArgs { key, field }) => {
            pipe.cmd("HGET").arg(key).arg(field);
        }
    }
}

/// Validates `commands` and adds them to `pipe`; with `ignore_replies`
/// their replies are dropped (inside `MULTI` they only answer `QUEUED`).
pub(super) fn queue(
    pipe: &mut Pipeline,
    commands: &[Command],
    ignore_replies: bool,
) -> Result<(), StoreError> {
    for command in commands {
        command.validate()?;
        add(pipe, command);
        if ignore_replies {
            pipe.ignore();
        }
    }
    Ok(())
}

pub(super) fn text(value: Value) -> Result<String, Value> {
    match value {
        Value::BulkString(bytes) => {
            String::from_utf8(bytes).map_err(|e| Value::BulkString(e.into_bytes()))
        }
        Value::SimpleString(text) => Ok(text),
        other => Err(other),
    }
}

fn reply(command: &Command, value: Value) -> Result<Reply, StoreError> {
    let unexpected =
        |value: &Value| StoreError::new(format!("unexpected redis reply {value:?} to {command:?}"));
    Ok(match (command, value) {
        (
            Command::Get(_) | Command::Set(_) | Command::GetExpire(_) | Command::HashGet(_),
            Value::Nil,
        ) => Reply::Nil,
        (Command::Set(_), Value::Okay) => Reply::Ok,
        (Command::Get(_) | Command::GetExpire(_) | Command::HashGet(_), value) => {
            Reply::Text(text(value).map_err(|value| unexpected(&value))?)
        }
        (
            Command::Del(_)
            | Command::Exists(_)
            | Command::Ttl(_)
            | Command::Expire(_)
            | Command::HashSet(_)
            | Command::HashDelete(_)
            | Command::HashExists(_),
            Value::Int(n),
        ) => Reply::Integer(n),
        (Command::HashGetAll(_), Value::Map(pairs)) => Reply::Pairs(
            pairs
                .into_iter()
                .map(|(field, value)| Ok((text(field)?, text(value)?)))
                .collect::<Result<_, Value>>()
                .map_err(|value| unexpected(&value))?,
        ),
        (Command::HashGetAll(_), Value::Array(items)) => {
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let mut items = items.into_iter();
            while let (Some(field), Some(value)) = (items.next(), items.next()) {
                let field = text(field).map_err(|value| unexpected(&value))?;
                let value = text(value).map_err(|value| unexpected(&value))?;
                pairs.push((field, value));
            }
            Reply::Pairs(pairs)
        }
        (_, value) => return Err(unexpected(&value)),
    })
}

pub(super) fn replies(commands: &[Command], values: Vec<Value>) -> Result<Vec<Reply>, StoreError> {
    if values.len() != commands.len() {
        return Err(StoreError::new(format!(
            "redis answered {} replies to {} commands",
            values.len(),
            commands.len()
        )));
    }
    commands
        .iter()
        .zip(values)
        .map(|(command, value)| reply(command, value))
        .collect()
}
