//! Connections to one Redis server, for every Redis store: batches go over
//! one shared multiplexed connection; a `WATCH`, or a write that waits for
//! replicas (an atomic step that writes, a batch that issues or revokes),
//! takes a dedicated connection kept idle between uses. The
//! single-server store runs one [`Server`], the sentinel store one per
//! master it finds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, Pipeline, RedisError, Value};

use super::ack::ReplicaAck;
use super::codec::{
    Events, events_unwritten, issues_or_revokes, only_deletions, only_reads, queue, read_stream,
    replies, stream_events, text, written_keys,
};
use super::error::{is_lost, store_error};
use super::memory;
use super::near_cache::{Flush, NearCache};
use super::pool::Idle;
use crate::store::{
    Command, EventRange, MemoryPolicy, Reply, StoreError, StoredEvent, Transaction,
};

/// Connections to one server: `shared` carries batches, and each `WATCH` (or
/// write that waits for replicas) gets a dedicated connection, kept in a
/// small pool between uses.
pub(super) struct Server<C> {
    client: Client,
    shared: C,
    connection_config: AsyncConnectionConfig,
    idle: Idle<()>,
    /// Replicas that must acknowledge each atomic write, and each batch that
    /// issues or revokes, before it succeeds.
    ack: Option<ReplicaAck>,
    /// Set once a connection failed in a way that says the server is gone or
    /// no longer a master, so that whoever chose this server chooses again.
    lost: AtomicBool,
    /// Answers batches of reads from memory, when configured.
    near: Option<NearCache>,
    /// Where session events go.
    events: Events,
}

impl<C> Server<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// `shared` must be a connection to `client`'s server; dedicated
    /// connections are opened with `connection_config`, and so is `near`'s
    /// tracking connection.
    pub(super) fn new(
        client: Client,
        shared: C,
        connection_config: AsyncConnectionConfig,
        ack: Option<ReplicaAck>,
        near: Option<NearCache>,
        events: Events,
    ) -> Self {
        Self {
            client,
            shared,
            connection_config,
            idle: Idle::default(),
            ack,
            lost: AtomicBool::new(false),
            near,
            events,
        }
    }

    /// Reads the session-event stream on the shared connection.
    pub(super) async fn read_events(
        &self,
        range: EventRange,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let value: Value = read_stream(&self.events.stream().key, range)
            .query_async(&mut self.shared.clone())
            .await
            .map_err(|error| self.failed(error))?;
        stream_events(value)
    }

    /// Where the server is.
    pub(super) fn address(&self) -> &ConnectionAddr {
        self.client.get_connection_info().addr()
    }

    /// Whether a failure said the server is gone or demoted.
    pub(super) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Records that the server is gone or demoted; its idle connections
    /// and its near cache go too.
    pub(super) fn mark_lost(&self) {
        self.lost.store(true, Ordering::SeqCst);
        self.idle.clear(&());
        if let Some(near) = &self.near {
            near.flush(Flush::Topology);
        }
    }

    /// Forgets the near cache's entries of the keys `commands` write.
    fn forget_written(&self, commands: &[Command]) {
        if let Some(near) = &self.near {
            near.forget(written_keys(commands));
        }
    }

    fn failed(&self, error: RedisError) -> StoreError {
        if is_lost(&error) {
            self.mark_lost();
        }
        store_error(error)
    }

    /// The acknowledgement `commands` need: none unless one of them writes.
    fn acknowledgement(&self, commands: &[Command]) -> Option<ReplicaAck> {
        self.ack.filter(|_| !only_reads(commands))
    }

    async fn new_connection(&self) -> Result<MultiplexedConnection, RedisError> {
        self.client
            .get_multiplexed_async_connection_with_config(&self.connection_config)
            .await
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

    /// How the server makes room once full.
    pub(super) async fn memory_policy(&self) -> Result<MemoryPolicy, StoreError> {
        let reply: Value = memory::config_get()
            .query_async(&mut self.shared.clone())
            .await
            .map_err(|error| memory::unreadable(self.failed(error)))?;
        memory::parse(self.address().to_string(), reply)
    }

    /// The first element of `ROLE` on the shared connection.
    pub(super) async fn role(&self) -> Result<String, StoreError> {
        role(&mut self.shared.clone())
            .await
            .map_err(|error| self.failed(error))
    }

    /// A dedicated connection: an idle one, or a new one.
    async fn dedicated(&self) -> Result<MultiplexedConnection, StoreError> {
        match self.idle.take(&()) {
            Some(connection) => Ok(connection),
            None => self
                .new_connection()
                .await
                .map_err(|error| self.failed(error)),
        }
    }

    /// Runs `commands` in order as one pipeline; one that issues or revokes
    /// waits for replicas when writes are durable. With the near cache, a
    /// batch of reads is answered there.
    pub(super) async fn batch(&self, commands: &[Command]) -> Result<Vec<Reply>, StoreError> {
        if let Some(near) = &self.near
            && !commands.is_empty()
            && only_reads(commands)
        {
            return near.batch(commands, |error| self.failed(error)).await;
        }
        let ack = self.ack.filter(|_| issues_or_revokes(commands));
        self.forget_written(commands);
        let outcome = self.pipeline(commands, ack).await;
        self.forget_written(commands);
        outcome
    }

    /// Runs `commands` in order as one pipeline; with `ack`, `WAIT` follows
    /// in the same round trip, on a dedicated connection.
    async fn pipeline(
        &self,
        commands: &[Command],
        ack: Option<ReplicaAck>,
    ) -> Result<Vec<Reply>, StoreError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        queue(&mut pipe, commands, false, &self.events)?;
        let Some(ack) = ack else {
            let values: Vec<Value> = pipe
                .query_async(&mut self.shared.clone())
                .await
                .map_err(|error| self.failed(error))?;
            return replies(commands, values);
        };
        ack.queue_current(&mut pipe);
        let values = self.send_acknowledged(&pipe, ack).await?;
        replies(commands, values)
    }

    /// Sends `pipe`, which ends with `ack`'s `WAIT`, on a dedicated
    /// connection; the replies before `WAIT`'s, once enough replicas have
    /// the writes.
    async fn send_acknowledged(
        &self,
        pipe: &Pipeline,
        ack: ReplicaAck,
    ) -> Result<Vec<Value>, StoreError> {
        let mut connection = self.dedicated().await?;
        let mut values: Vec<Value> = pipe
            .query_async(&mut connection)
            .await
            .map_err(|error| self.failed(error))?;
        self.idle.give_back((), connection);
        let acknowledged = values.pop();
        self.acknowledged(ack, acknowledged)?;
        Ok(values)
    }

    /// With durable writes, `PUBLISH` and `WAIT` alone: enough replicas
    /// must have every write of the master so far.
    pub(super) async fn confirm_writes(&self) -> Result<(), StoreError> {
        let Some(ack) = self.ack else {
            return Ok(());
        };
        let mut pipe = redis::pipe();
        ack.queue_current(&mut pipe);
        self.send_acknowledged(&pipe, ack).await.map(drop)
    }

    /// Whether the replicas acknowledged a write, as `WAIT` answered.
    fn acknowledged(&self, ack: ReplicaAck, answer: Option<Value>) -> Result<(), StoreError> {
        ack.check(answer).inspect_err(|_| {
            // A master that lost its replicas may be cut off from a
            // failover that promoted one of them.
            self.mark_lost();
        })
    }

    /// Runs `commands` atomically on the shared connection; when a full
    /// Redis refuses them and they only delete, in order as a pipeline.
    pub(super) async fn atomic(&self, commands: &[Command]) -> Result<Vec<Reply>, StoreError> {
        self.forget_written(commands);
        let outcome = self.atomic_uncached(commands).await;
        self.forget_written(commands);
        outcome
    }

    async fn atomic_uncached(&self, commands: &[Command]) -> Result<Vec<Reply>, StoreError> {
        let executed = match self.acknowledgement(commands) {
            // WAIT holds up every later command on its connection until the
            // replicas answer, so it must not hold up the shared one.
            Some(_) => {
                let mut connection = self.dedicated().await?;
                let executed = self.exec(&mut connection, commands).await;
                if executed.is_ok() {
                    self.idle.give_back((), connection);
                }
                executed
            }
            None => self.exec(&mut self.shared.clone(), commands).await,
        };
        match executed {
            // Nothing ran; deletions alone may run outside MULTI, where a
            // full Redis takes them, so that a policy can still revoke.
            Err(refused) if refused.is_out_of_memory() => {
                let Some(deletions) = only_deletions(commands) else {
                    return Err(refused);
                };
                let replies = self
                    .pipeline(&deletions, self.acknowledgement(&deletions))
                    .await?;
                Ok(events_unwritten(commands, replies))
            }
            executed => executed?
                .ok_or_else(|| StoreError::new("redis aborted a transaction nobody watched")),
        }
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
        queue(&mut pipe, reads, false, &self.events)?;
        let (connection, values) = match self.idle.take(&()) {
            Some(mut connection) => match pipe.query_async(&mut connection).await {
                // An idle connection may have died with an earlier server
                // process; WATCH and reads write nothing, so sending them
                // again on a fresh connection is safe.
                Err(error) if is_lost(&error) => {
                    self.idle.clear(&());
                    self.watch_on_new_connection(&pipe).await?
                }
                outcome => (connection, outcome.map_err(|error| self.failed(error))?),
            },
            None => self.watch_on_new_connection(&pipe).await?,
        };
        let replies = replies(reads, values)?;
        let transaction = RedisTransaction {
            server: Arc::clone(self),
            connection,
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
        queue(&mut pipe, commands, true, &self.events)?;
        pipe.cmd("EXEC");
        if let Some(ack) = ack {
            ack.queue_current(&mut pipe);
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
        if let Some(ack) = ack {
            self.acknowledged(ack, acknowledged)?;
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
    connection: MultiplexedConnection,
}

#[async_trait]
impl<C> Transaction for RedisTransaction<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn commit(
        self: Box<Self>,
        commands: Vec<Command>,
    ) -> Result<Option<Vec<Reply>>, StoreError> {
        let mut connection = self.connection;
        self.server.forget_written(&commands);
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
        self.server.forget_written(&commands);
        if outcome.is_ok() {
            self.server.idle.give_back((), connection);
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use redis::{AsyncConnectionConfig, Client};

    use super::*;
    use crate::store::HashSetArgs;
    use crate::store::redis::error::sample::Answering;

    const OOM: &str = "-OOM command not allowed when used memory > 'maxmemory'.";
    const ABORTED: &str = "-EXECABORT Transaction discarded because of previous errors.";

    fn server(answers: &[&[&'static str]]) -> Server<Answering> {
        let client = Client::open("redis://127.0.0.1:1").unwrap();
        Server::new(
            client,
            Answering::new(answers),
            AsyncConnectionConfig::new(),
            None,
            None,
            Events::single(crate::store::EventStream::default()),
        )
    }

    fn hset() -> Command {
        Command::HashSet(HashSetArgs {
            key: "h".into(),
            fields: vec![("f".into(), "v".into())],
        })
    }

    #[tokio::test]
    async fn multi_refused_for_memory_is_out_of_memory() {
        // Redis 7 refuses every command queued in MULTI once it is full.
        let full = server(&[&["+OK", OOM, OOM, ABORTED]]);
        let error = full
            .atomic(&[Command::Del(vec!["k".into()]), hset()])
            .await
            .unwrap_err();
        assert!(error.is_out_of_memory(), "{error}");
        assert!(!full.is_lost());
    }

    #[tokio::test]
    async fn deletions_refused_in_multi_for_memory_run_as_a_pipeline() {
        let full = server(&[&["+OK", OOM, OOM, ABORTED], &[":1", ":1"]]);
        let deletions = [
            Command::Del(vec!["k".into()]),
            Command::HashDelete(crate::store::HashDeleteArgs {
                key: "h".into(),
                fields: vec!["f".into()],
            }),
        ];
        let replies = full.atomic(&deletions).await.unwrap();
        assert_eq!(replies, [Reply::Integer(1), Reply::Integer(1)]);
    }

    #[tokio::test]
    async fn a_pipeline_with_one_command_refused_for_memory_is_out_of_memory() {
        let full = server(&[&[":1", OOM]]);
        let error = full
            .batch(&[Command::Del(vec!["k".into()]), hset()])
            .await
            .unwrap_err();
        assert!(error.is_out_of_memory(), "{error}");
    }
}
