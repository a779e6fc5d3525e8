//! A single Redis server, shared with every other service on it.
//!
//! Batches go over one auto-reconnecting multiplexed connection. A `WATCH`
//! needs a connection of its own for its whole life, so transactions take
//! one from a small pool of dedicated connections.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Pipeline, RedisError, Value};

use super::{Command, ExpireCondition, Reply, SetCondition, Store, StoreError, Transaction};

/// How to reach a Redis server.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long a round trip may take.
    pub command_timeout: Duration,
}

impl RedisConfig {
    /// The server at `url` with the default timeouts (1 s each).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
        }
    }
}

/// Idle dedicated connections kept for transactions.
const IDLE_WATCH_CONNECTIONS: usize = 16;

/// A store on one Redis server. Cloning it shares its connections.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    shared: ConnectionManager,
    connection_config: AsyncConnectionConfig,
    idle: Mutex<Vec<MultiplexedConnection>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("server", &self.inner.client.get_connection_info().addr())
            .finish_non_exhaustive()
    }
}

fn store_error(error: RedisError) -> StoreError {
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

impl RedisStore {
    /// Connects to the server; fails when it cannot be reached now.
    pub async fn connect(config: RedisConfig) -> anyhow::Result<Self> {
        let client = Client::open(config.url.as_str())
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
            inner: Arc::new(Inner {
                client,
                shared,
                connection_config,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }
}

impl Inner {
    async fn dedicated(&self) -> Result<MultiplexedConnection, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(connection) => Ok(connection),
            None => self
                .client
                .get_multiplexed_async_connection_with_config(&self.connection_config)
                .await
                .map_err(store_error),
        }
    }

    fn give_back(&self, connection: MultiplexedConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_WATCH_CONNECTIONS {
            idle.push(connection);
        }
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
        Command::Set {
            key,
            value,
            ttl_seconds,
            condition,
        } => {
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
        Command::Expire {
            key,
            seconds,
            condition,
        } => {
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
        Command::HashSet { key, fields } => {
            let cmd = pipe.cmd("HSET").arg(key);
            for (field, value) in fields {
                cmd.arg(field).arg(value);
            }
        }
        Command::HashDelete { key, fields } => {
            pipe.cmd("HDEL").arg(key).arg(fields);
        }
        Command::HashGetAll(key) => {
            pipe.cmd("HGETALL").arg(key);
        }
    }
}

fn pipeline(commands: &[Command]) -> Result<Pipeline, StoreError> {
    let mut pipe = redis::pipe();
    for command in commands {
        command.validate()?;
        add(&mut pipe, command);
    }
    Ok(pipe)
}

fn text(value: Value) -> Result<String, Value> {
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
        (Command::Get(_) | Command::Set { .. }, Value::Nil) => Reply::Nil,
        (Command::Set { .. }, Value::Okay) => Reply::Ok,
        (Command::Get(_), value) => Reply::Text(text(value).map_err(|value| unexpected(&value))?),
        (
            Command::Del(_)
            | Command::Exists(_)
            | Command::Ttl(_)
            | Command::Expire { .. }
            | Command::HashSet { .. }
            | Command::HashDelete { .. },
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

fn replies(commands: &[Command], values: Vec<Value>) -> Result<Vec<Reply>, StoreError> {
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

/// Runs `commands` atomically on `connection`: None when a `WATCH` aborted it.
async fn exec(
    connection: &mut impl redis::aio::ConnectionLike,
    commands: &[Command],
) -> Result<Option<Vec<Reply>>, StoreError> {
    if commands.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let values: Option<Vec<Value>> = pipeline(commands)?
        .atomic()
        .query_async(connection)
        .await
        .map_err(store_error)?;
    values.map(|values| replies(commands, values)).transpose()
}

#[async_trait]
impl Store for RedisStore {
    async fn batch(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Value> = pipeline(&commands)?
            .query_async(&mut self.inner.shared.clone())
            .await
            .map_err(store_error)?;
        replies(&commands, values)
    }

    async fn atomic(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        exec(&mut self.inner.shared.clone(), &commands)
            .await?
            .ok_or_else(|| StoreError::new("redis aborted a transaction nobody watched"))
    }

    async fn watch(
        &self,
        keys: Vec<String>,
        reads: Vec<Command>,
    ) -> Result<(Box<dyn Transaction>, Vec<Reply>), StoreError> {
        let mut connection = self.inner.dedicated().await?;
        // WATCH goes first, so that it protects the reads after it.
        let mut pipe = redis::pipe();
        if !keys.is_empty() {
            pipe.cmd("WATCH").arg(&keys).ignore();
        }
        for read in &reads {
            read.validate()?;
            add(&mut pipe, read);
        }
        let values: Vec<Value> = pipe
            .query_async(&mut connection)
            .await
            .map_err(store_error)?;
        let replies = replies(&reads, values)?;
        let transaction = RedisTransaction {
            inner: Arc::clone(&self.inner),
            connection: Some(connection),
        };
        Ok((Box::new(transaction), replies))
    }

    async fn ready(&self) -> Result<(), StoreError> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.inner.shared.clone())
            .await
            .map_err(store_error)
    }
}

/// Holds its dedicated connection until commit; dropped uncommitted, the
/// connection goes with it and so does its `WATCH`.
struct RedisTransaction {
    inner: Arc<Inner>,
    connection: Option<MultiplexedConnection>,
}

#[async_trait]
impl Transaction for RedisTransaction {
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
                .map_err(store_error)
        } else {
            exec(&mut connection, &commands).await
        };
        if outcome.is_ok() {
            self.inner.give_back(connection);
        }
        outcome
    }
}
