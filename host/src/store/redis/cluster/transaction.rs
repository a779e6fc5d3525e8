//! `WATCH` on a Redis Cluster: a dedicated connection to the master of the
//! transaction's one slot, held from the watch to the commit.
//!
//! When the slot moves between the watch and the commit, the node refuses
//! the commit and applies nothing; the commit then answers as if a watched
//! key had changed, so the policy reads again and reaches the slot's new
//! master.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionLike;
use redis::{Pipeline, Value};

use super::nodes::{Dedicated, Nodes};
use super::request::{Failure, Request};
use super::retry::{Next, Retry, interruption, next_step};
use super::slots::one_slot;
use crate::store::redis::codec::{Events, only_reads, queue, replies};
use crate::store::redis::error::store_error;
use crate::store::{Command, Reply, StoreError, Transaction};

/// The pause after a node refused a commit because of its slot's state.
const REFUSED_COMMIT_PAUSE: Duration = Duration::from_millis(20);

/// Watches `keys` on the master of their slot, then runs `reads` there,
/// following redirections until the deadline.
pub(super) async fn watch(
    nodes: &Arc<Nodes>,
    keys: Vec<String>,
    reads: Vec<Command>,
) -> Result<(Box<dyn Transaction>, Vec<Reply>), StoreError> {
    let slot = one_slot(
        "a transaction",
        keys.iter()
            .map(String::as_str)
            .chain(reads.iter().flat_map(Command::keys)),
    )?;
    let mut retry = Retry::until(nodes.deadline(None));
    loop {
        let asking = retry.target().asking;
        let (pipe, count) = pipeline(&keys, &reads, asking, nodes.events())?;
        let error = match nodes.on_dedicated(slot, retry.target(), &pipe, count).await {
            Ok((dedicated, values)) => match interruption(&values) {
                None => {
                    let replies = read_replies(&reads, values, asking)?;
                    let transaction = ClusterTransaction {
                        nodes: Arc::clone(nodes),
                        dedicated,
                        slot,
                        asking,
                    };
                    return Ok((Box::new(transaction), replies));
                }
                Some(error) => error,
            },
            Err(error) => error,
        };
        nodes.after_failure(slot, error, true, &mut retry).await?;
    }
}

/// The pipeline of a watch, and how many replies it gets: `WATCH` first,
/// so that it protects the reads after it; after an `ASK` each command
/// needs its own `ASKING`.
fn pipeline(
    keys: &[String],
    reads: &[Command],
    asking: bool,
    events: &Events,
) -> Result<(Pipeline, usize), StoreError> {
    let mut pipe = redis::pipe();
    let ask = |pipe: &mut Pipeline| {
        if asking {
            pipe.cmd("ASKING");
        }
    };
    ask(&mut pipe);
    pipe.cmd("WATCH").arg(keys);
    for read in reads {
        ask(&mut pipe);
        queue(&mut pipe, std::slice::from_ref(read), false, events)?;
    }
    Ok((pipe, (1 + usize::from(asking)) * (1 + reads.len())))
}

/// The replies to the reads of a watch, without those to `WATCH` and
/// `ASKING`.
fn read_replies(
    reads: &[Command],
    values: Vec<Value>,
    asking: bool,
) -> Result<Vec<Reply>, StoreError> {
    let per_command = 1 + usize::from(asking);
    let values = values
        .into_iter()
        .skip(per_command)
        .skip(usize::from(asking))
        .step_by(per_command)
        .map(Value::extract_error)
        .collect::<Result<Vec<_>, _>>()
        .map_err(store_error)?;
    replies(reads, values)
}

/// Holds its dedicated connection, with its `WATCH`, until commit.
struct ClusterTransaction {
    nodes: Arc<Nodes>,
    dedicated: Dedicated,
    slot: u16,
    /// The slot is being imported by this node, which takes commands for
    /// it only after `ASKING`.
    asking: bool,
}

#[async_trait]
impl Transaction for ClusterTransaction {
    /// Never answered by the near cache; the keys it writes are forgotten
    /// there before it is sent and again before it returns.
    async fn commit(
        self: Box<Self>,
        commands: Vec<Command>,
    ) -> Result<Option<Vec<Reply>>, StoreError> {
        let nodes = Arc::clone(&self.nodes);
        nodes.forget_written(&commands);
        let outcome = self.commit_uncached(&commands).await;
        nodes.forget_written(&commands);
        outcome
    }
}

impl ClusterTransaction {
    async fn commit_uncached(
        self: Box<Self>,
        commands: &[Command],
    ) -> Result<Option<Vec<Reply>>, StoreError> {
        let mut dedicated = self.dedicated;
        if commands.is_empty() {
            // UNWATCH ends the WATCH as an empty EXEC would.
            redis::cmd("UNWATCH")
                .query_async::<()>(&mut dedicated.connection)
                .await
                .map_err(store_error)?;
            self.nodes.give_back(dedicated);
            return Ok(Some(Vec::new()));
        }
        for command in commands {
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
        let writes = !only_reads(commands);
        let request = Request {
            commands,
            transaction: true,
            ack: self.nodes.ack().filter(|_| writes),
        };
        let (pipe, count) = request.pipeline(self.asking, self.nodes.events())?;
        let values = dedicated
            .connection
            .req_packed_commands(&pipe, 0, count)
            .await
            .map_err(store_error)?;
        match request.replies(self.asking, values) {
            Ok(answer) => {
                self.nodes.give_back(dedicated);
                Ok(answer)
            }
            Err(Failure::Store(error)) => Err(error),
            Err(Failure::Redis(error)) => match next_step(&error, false) {
                // The slot moved or cannot be served now: the node refused
                // the whole transaction, as when a watched key changes. The
                // pause keeps the policy's retries from racing through a
                // slot migration, which refuses new keys until it ends.
                Next::Redirect { .. } | Next::Later => {
                    self.nodes.forget(self.slot);
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
    use crate::store::redis::codec::NO_EVENTS;

    fn reads() -> Vec<Command> {
        vec![Command::Get("{u}a".into()), Command::Ttl("{u}b".into())]
    }

    #[test]
    fn after_ask_each_command_of_a_watch_has_its_asking() {
        let keys = vec!["{u}a".to_owned()];
        let (pipe, count) = pipeline(&keys, &reads(), true, &NO_EVENTS).unwrap();
        let mut expected = redis::pipe();
        expected.cmd("ASKING").cmd("WATCH").arg(&keys);
        for read in reads() {
            expected.cmd("ASKING");
            queue(&mut expected, &[read], false, &NO_EVENTS).unwrap();
        }
        assert_eq!(pipe.get_packed_pipeline(), expected.get_packed_pipeline());
        assert_eq!(count, 6);
        assert_eq!(pipeline(&keys, &reads(), false, &NO_EVENTS).unwrap().1, 3);
    }

    #[test]
    fn the_replies_of_a_watch_are_those_to_its_reads() {
        let bulk = Value::BulkString(b"v".to_vec());
        let plain = vec![Value::Okay, bulk.clone(), Value::Int(-2)];
        let expected = [Reply::Text("v".into()), Reply::Integer(-2)];
        assert_eq!(read_replies(&reads(), plain, false).unwrap(), expected);
        let asked = vec![
            Value::Okay,
            Value::Okay,
            Value::Okay,
            bulk,
            Value::Okay,
            Value::Int(-2),
        ];
        assert_eq!(read_replies(&reads(), asked, true).unwrap(), expected);
        let wrong_type = redis::parse_redis_value(b"-WRONGTYPE Operation\r\n").unwrap();
        let error = read_replies(
            &reads(),
            vec![Value::Okay, wrong_type, Value::Int(1)],
            false,
        )
        .unwrap_err();
        assert!(error.is_corrupt(), "{error}");
    }
}
