//! Durable writes: `WAIT` after a write, in the same round trip, until
//! enough replicas acknowledged it.
//!
//! `WAIT` counts the replicas that acknowledged the connection's last
//! write that reached the replication stream. A write that changes nothing
//! (deleting a token already gone) reaches no stream, so `WAIT` would count
//! acknowledgements of older writes, even from replicas cut off since: a
//! master on the losing side of a partition would confirm a revoke that
//! its replicas, promoted meanwhile, never saw. One server's stores
//! therefore `PUBLISH` (to [`OFFSET_CHANNEL`], which nobody needs to read)
//! before `WAIT`: Redis replicates every `PUBLISH` outside a cluster, so
//! `WAIT` then counts only replicas that have everything up to now.

use std::time::Duration;

use redis::{Pipeline, Value};

use crate::store::StoreError;

/// How many replicas must acknowledge a write, and how long to wait for them.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReplicaAck {
    pub(super) replicas: usize,
    pub(super) timeout: Duration,
}

/// The channel of the `PUBLISH` that moves a connection's replication
/// offset to the master's current one before `WAIT`.
pub(super) const OFFSET_CHANNEL: &str = "dsession:replication-offset";

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

    /// How much longer than a plain round trip a durable write may take.
    pub(super) fn wait(ack: Option<Self>) -> Duration {
        ack.map_or(Duration::ZERO, |ack| ack.timeout)
    }

    /// Adds `WAIT` to `pipe`; its reply is the one [`ReplicaAck::check`] reads.
    pub(super) fn queue(self, pipe: &mut Pipeline) {
        pipe.cmd("WAIT")
            .arg(self.replicas)
            .arg(u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX));
    }

    /// Adds a `PUBLISH` that reaches the replication stream, then `WAIT`:
    /// enough replicas must have every write of the master so far. The
    /// `PUBLISH` has no reply among the pipeline's; `WAIT`'s is the last.
    pub(super) fn queue_current(self, pipe: &mut Pipeline) {
        pipe.cmd("PUBLISH").arg(OFFSET_CHANNEL).arg("").ignore();
        self.queue(pipe);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn two_replicas() -> ReplicaAck {
        ReplicaAck::configured(2, Duration::from_millis(50))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn no_replicas_means_no_durable_writes_and_a_zero_timeout_is_refused() {
        assert!(ReplicaAck::configured(0, Duration::ZERO).unwrap().is_none());
        assert_eq!(ReplicaAck::wait(None), Duration::ZERO);
        let error = ReplicaAck::configured(1, Duration::ZERO).unwrap_err();
        assert_eq!(error.to_string(), "ack_timeout must be at least 1 ms");
        assert_eq!(
            ReplicaAck::wait(Some(two_replicas())),
            Duration::from_millis(50)
        );
    }

    #[test]
    fn wait_names_the_replicas_and_the_timeout_in_milliseconds() {
        let mut pipe = redis::pipe();
        two_replicas().queue(&mut pipe);
        assert_eq!(
            pipe.get_packed_pipeline(),
            redis::cmd("WAIT").arg(2).arg(50).get_packed_command()
        );
    }

    #[test]
    fn a_publish_before_wait_moves_the_offset_to_the_masters() {
        let mut pipe = redis::pipe();
        two_replicas().queue_current(&mut pipe);
        let expected = [
            redis::cmd("PUBLISH")
                .arg(OFFSET_CHANNEL)
                .arg("")
                .get_packed_command(),
            redis::cmd("WAIT").arg(2).arg(50).get_packed_command(),
        ]
        .concat();
        assert_eq!(pipe.get_packed_pipeline(), expected);
    }

    #[test]
    fn too_few_acknowledgements_fail_the_write() {
        let ack = two_replicas();
        assert!(ack.check(Some(Value::Int(2))).is_ok());
        assert!(ack.check(Some(Value::Int(3))).is_ok());
        let error = ack.check(Some(Value::Int(1))).unwrap_err();
        assert!(
            error.message().starts_with("only 1 of 2 replicas"),
            "{error}"
        );
        let error = ack.check(None).unwrap_err();
        assert_eq!(error.message(), "unexpected redis reply None to WAIT");
    }
}
