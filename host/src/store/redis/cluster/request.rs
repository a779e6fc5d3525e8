//! The request pipeline: what a call sends to one slot's master, what the
//! replies mean, and how its tries follow the retry table until the
//! deadline.

use redis::{Pipeline, RedisError, Value};

use super::nodes::Nodes;
use super::retry::{Next, Retry, interruption, next_step};
use crate::store::redis::ack::ReplicaAck;
use crate::store::redis::codec::{Events, queue, replies};
use crate::store::redis::error::store_error;
use crate::store::{Command, Reply, StoreError};

/// What a call sends to one slot's master.
pub(super) struct Request<'a> {
    pub(super) commands: &'a [Command],
    /// Inside `MULTI`/`EXEC`.
    pub(super) transaction: bool,
    /// `WAIT` after `EXEC`.
    pub(super) ack: Option<ReplicaAck>,
}

/// The replies to a request; None when `EXEC` answered nil (a watched key
/// changed).
pub(super) type Answer = Option<Vec<Reply>>;

/// Why one try failed.
pub(super) enum Failure {
    /// Redis said so, or the connection did: the retry table decides.
    Redis(RedisError),
    /// Nothing to retry.
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// Answers `reads`, every one of them a read of `slot`, from the near cache
/// of the slot's master; None when they must go to Redis as any request
/// does: no near cache, a master that did not say at its last check that
/// it serves the slot, or a fill that met a redirection or a node that
/// could not serve. That cache is then flushed, and what the failure
/// taught about the slot's master kept, before the request that follows.
pub(super) async fn cached(
    nodes: &Nodes,
    slot: u16,
    reads: &[Command],
) -> Result<Option<Vec<Reply>>, StoreError> {
    // Not knowing the master, the request finds it, retrying as it must.
    let Ok(master) = nodes.master(slot).await else {
        return Ok(None);
    };
    let Some(cache) = nodes.near_cache(&master).await else {
        return Ok(None);
    };
    if !cache.serves(slot) {
        return Ok(None);
    }
    let error = match cache.near.batch(reads, Failure::Redis).await {
        Ok(replies) => return Ok(Some(replies)),
        Err(Failure::Store(error)) => return Err(error),
        Err(Failure::Redis(error)) => first_of_pipeline(error),
    };
    let next = next_step(&error, true);
    if next == Next::Fail {
        return Err(store_error(error).context(format!("slot {slot}")));
    }
    cache.interrupted(slot);
    match next {
        Next::Redirect {
            address,
            asking: false,
        } => nodes.learn(slot, &address),
        Next::Redirect { asking: true, .. } => {}
        Next::Later | Next::Fail => nodes.forget(slot),
    }
    Ok(None)
}

/// The first server error of a failed pipeline, which alone names the node
/// of a redirection; any other error as it is.
fn first_of_pipeline(error: RedisError) -> RedisError {
    if error.detail().is_some() {
        return error;
    }
    let first = error
        .clone()
        .into_server_errors()
        .and_then(|errors| errors.first().map(|(_, first)| first.clone()));
    match first {
        Some(first) => first.into(),
        None => error,
    }
}

impl Request<'_> {
    /// The pipeline, with `ASKING` first when a node asked for it, and how
    /// many replies it gets.
    pub(super) fn pipeline(
        &self,
        asking: bool,
        events: &Events,
    ) -> Result<(Pipeline, usize), StoreError> {
        let mut pipe = redis::pipe();
        let mut count = self.commands.len();
        if asking {
            pipe.cmd("ASKING");
            count += 1;
        }
        if self.transaction {
            pipe.cmd("MULTI");
            queue(&mut pipe, self.commands, false, events)?;
            pipe.cmd("EXEC");
            count += 2;
        } else {
            queue(&mut pipe, self.commands, false, events)?;
        }
        if let Some(ack) = self.ack {
            ack.queue(&mut pipe);
            count += 1;
        }
        Ok((pipe, count))
    }

    /// The replies: None when `EXEC` answered nil (a watched key changed).
    /// A redirection or a node that cannot serve now is the error
    /// [`interruption`] finds.
    pub(super) fn replies(&self, asking: bool, mut values: Vec<Value>) -> Result<Answer, Failure> {
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
                // EXECABORT: a queued command's refusal (OOM on a full
                // node) is the cause to report.
                Some(Value::ServerError(aborted)) => {
                    let cause = values.into_iter().find_map(|value| match value {
                        Value::ServerError(error) => Some(error),
                        _ => None,
                    });
                    return Err(Failure::Redis(cause.unwrap_or(aborted).into()));
                }
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
        let executed = executed
            .into_iter()
            .map(Value::extract_error)
            .collect::<Result<Vec<_>, _>>()
            .map_err(Failure::Redis)?;
        let replies = replies(self.commands, executed).map_err(Failure::Store)?;
        if let Some(ack) = self.ack {
            ack.check(acknowledged).map_err(Failure::Store)?;
        }
        Ok(Some(replies))
    }

    /// Runs the request on the master of `slot`, following redirections
    /// and sending it again while nothing can have been applied (or, with
    /// `resend`, while it only reads), until the deadline. A durable write
    /// goes over a dedicated connection, so that its `WAIT` holds up no
    /// other call.
    pub(super) async fn run(
        &self,
        nodes: &Nodes,
        slot: u16,
        resend: bool,
    ) -> Result<Answer, StoreError> {
        let mut retry = Retry::until(nodes.deadline(self.ack));
        loop {
            let target = retry.target();
            let (pipe, count) = self.pipeline(target.asking, nodes.events())?;
            let sent = if self.ack.is_some() {
                nodes.send_dedicated(slot, target, &pipe, count).await
            } else {
                nodes.send_shared(slot, target, pipe, count).await
            };
            let error = match sent
                .map_err(Failure::Redis)
                .and_then(|values| self.replies(target.asking, values))
            {
                Ok(answer) => return Ok(answer),
                Err(Failure::Store(error)) => return Err(error),
                Err(Failure::Redis(error)) => error,
            };
            nodes.after_failure(slot, error, resend, &mut retry).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::redis::codec::NO_EVENTS;
    use crate::store::{SetArgs, SetCondition};

    fn set(key: &str) -> Command {
        Command::Set(SetArgs {
            key: key.into(),
            value: "v".into(),
            ttl_seconds: 0,
            condition: SetCondition::Always,
        })
    }

    fn ack() -> Option<ReplicaAck> {
        ReplicaAck::configured(1, Duration::from_millis(5)).unwrap()
    }

    /// `commands` inside `MULTI`/`EXEC`, then `WAIT` with `ack`.
    fn transaction(commands: &[Command], ack: Option<ReplicaAck>) -> Request<'_> {
        Request {
            commands,
            transaction: true,
            ack,
        }
    }

    /// `commands` as they are, waiting for no replica.
    fn plain(commands: &[Command]) -> Request<'_> {
        Request {
            commands,
            transaction: false,
            ack: None,
        }
    }

    fn wire(reply: &str) -> Value {
        redis::parse_redis_value(format!("{reply}\r\n").as_bytes()).unwrap()
    }

    #[test]
    fn a_durable_transaction_after_ask_is_asking_multi_commands_exec_wait() {
        let commands = [set("{u}a"), Command::Get("{u}b".into())];
        let request = transaction(&commands, ack());
        let (pipe, count) = request.pipeline(true, &NO_EVENTS).unwrap();
        let mut expected = redis::pipe();
        expected.cmd("ASKING").cmd("MULTI");
        queue(&mut expected, &commands, false, &NO_EVENTS).unwrap();
        expected.cmd("EXEC").cmd("WAIT").arg(1).arg(5);
        assert_eq!(pipe.get_packed_pipeline(), expected.get_packed_pipeline());
        assert_eq!(count, 6);

        assert_eq!(plain(&commands).pipeline(false, &NO_EVENTS).unwrap().1, 2);
    }

    #[test]
    fn exec_gives_the_replies_or_none_when_a_watched_key_changed() {
        let commands = [set("{u}a"), Command::Get("{u}b".into())];
        let request = transaction(&commands, None);
        let queued = || Value::SimpleString("QUEUED".into());
        let values = vec![
            Value::Okay,
            queued(),
            queued(),
            Value::Array(vec![Value::Okay, Value::Nil]),
        ];
        let Ok(answer) = request.replies(false, values) else {
            panic!("the transaction failed");
        };
        assert_eq!(answer, Some(vec![Reply::Ok, Reply::Nil]));
        let aborted = vec![Value::Okay, queued(), queued(), Value::Nil];
        assert!(matches!(request.replies(false, aborted), Ok(None)));
    }

    #[test]
    fn a_redirection_inside_a_transaction_is_a_redis_failure_to_retry() {
        let commands = [set("{u}a")];
        let request = transaction(&commands, None);
        let values = vec![
            Value::Okay,
            wire("-MOVED 42 10.0.0.2:7001"),
            wire("-EXECABORT Transaction discarded because of previous errors."),
        ];
        match request.replies(false, values) {
            Err(Failure::Redis(error)) => {
                assert_eq!(error.redirect_node(), Some(("10.0.0.2:7001", 42)));
            }
            _ => panic!("a MOVED must be retried"),
        }
    }

    #[test]
    fn a_command_error_fails_the_call_and_wrong_type_is_corrupt() {
        let commands = [Command::Get("{u}a".into())];
        let request = plain(&commands);
        let values = vec![wire("-WRONGTYPE Operation against a key")];
        match request.replies(false, values) {
            Err(Failure::Redis(error)) => {
                assert_eq!(next_step(&error, true), Next::Fail);
                assert!(store_error(error).is_corrupt());
            }
            _ => panic!("WRONGTYPE must fail the call"),
        }
    }

    #[tokio::test]
    async fn a_near_cache_fill_refused_with_moved_names_the_node_to_learn() {
        use crate::store::redis::error::sample::{Answering, io_error};

        let mut pipe = redis::pipe();
        pipe.cmd("PTTL").arg("{u}a").cmd("GET").arg("{u}a");
        let mut node = Answering::new(&[&["-MOVED 42 10.0.0.2:7001", "-MOVED 42 10.0.0.2:7001"]]);
        let refused = pipe.query_async::<Vec<Value>>(&mut node).await.unwrap_err();
        let error = first_of_pipeline(refused);
        assert_eq!(error.redirect_node(), Some(("10.0.0.2:7001", 42)));
        assert_eq!(
            next_step(&error, true),
            Next::Redirect {
                address: "10.0.0.2:7001".into(),
                asking: false
            }
        );
        let broken = first_of_pipeline(io_error(std::io::ErrorKind::ConnectionReset));
        assert_eq!(next_step(&broken, true), Next::Later);
    }

    #[test]
    fn a_transaction_refused_for_memory_reports_the_oom_not_the_abort() {
        let commands = [set("{u}a"), Command::Del(vec!["{u}b".into()])];
        let request = transaction(&commands, None);
        let oom = || wire("-OOM command not allowed when used memory > 'maxmemory'.");
        let values = vec![
            Value::Okay,
            oom(),
            oom(),
            wire("-EXECABORT Transaction discarded because of previous errors."),
        ];
        match request.replies(false, values) {
            Err(Failure::Redis(error)) => {
                assert_eq!(next_step(&error, false), Next::Fail);
                assert!(store_error(error).is_out_of_memory());
            }
            _ => panic!("an OOM must fail the call"),
        }
    }

    #[test]
    fn too_few_acknowledgements_fail_a_durable_write_after_it_applied() {
        let commands = [set("{u}a")];
        let request = transaction(&commands, ack());
        let values = vec![
            Value::Okay,
            Value::SimpleString("QUEUED".into()),
            Value::Array(vec![Value::Okay]),
            Value::Int(0),
        ];
        match request.replies(false, values) {
            Err(Failure::Store(error)) => {
                assert!(
                    error.message().starts_with("only 0 of 1 replicas"),
                    "{error}"
                );
            }
            _ => panic!("a missing acknowledgement must fail the write"),
        }
    }
}
