//! What to do when a try fails: follow a redirection, send again after a
//! pause, or give up. A command that may have reached a node before its
//! connection broke is sent again only when it just reads; tries stop at
//! the call's deadline.

use std::time::{Duration, Instant};

use redis::{ErrorKind, RedisError, ServerErrorKind, Value};

/// The first pause before a call is sent again; each pause doubles.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause between two tries of one call.
const LONGEST_PAUSE: Duration = Duration::from_millis(200);

/// The first reply saying a node cannot serve the slot now: a redirection,
/// or a slot being moved, a cluster without a master for it, a demoted or
/// loading node. Inside `MULTI` such a reply aborts the transaction, so
/// nothing was applied.
pub(super) fn interruption(values: &[Value]) -> Option<RedisError> {
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
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Send it to this node, `host:port`, with `ASKING` first if `asking`.
    Redirect { address: String, asking: bool },
    /// Nothing was applied; send it again after a pause.
    Later,
    /// Give up with this error.
    Fail,
}

/// The retry table: what `error` calls for, when sending the call again
/// is harmless only if `resend` (it only reads).
pub(super) fn next_step(error: &RedisError, resend: bool) -> Next {
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) address: Option<String>,
    /// The node is importing the slot and takes commands for it only after
    /// `ASKING`.
    pub(super) asking: bool,
}

/// The tries of one call: where the next goes, and how long to pause first.
pub(super) struct Retry {
    target: Target,
    pause: Duration,
    deadline: Instant,
}

impl Retry {
    /// A call that may try until `deadline`, first at the slot's master.
    pub(super) fn until(deadline: Instant) -> Self {
        Self {
            target: Target::default(),
            pause: FIRST_PAUSE,
            deadline,
        }
    }

    /// Where the next try goes.
    pub(super) fn target(&self) -> &Target {
        &self.target
    }

    /// Aims the next try after `next` (not [`Next::Fail`]): where a
    /// redirection points, or at the slot's master.
    pub(super) fn aim(&mut self, next: Next) {
        self.target = match next {
            Next::Redirect { address, asking } => Target {
                address: Some(address),
                asking,
            },
            Next::Later | Next::Fail => Target::default(),
        };
    }

    /// How long to wait before the next try, as of `now`: nothing before a
    /// redirected one; before one at the slot's master a pause that doubles
    /// each time. None when the pause would pass the deadline.
    pub(super) fn pause(&mut self, now: Instant) -> Option<Duration> {
        if now + self.pause > self.deadline {
            return None;
        }
        if self.target.address.is_some() {
            return Some(Duration::ZERO);
        }
        let pause = self.pause;
        self.pause = (pause * 2).min(LONGEST_PAUSE);
        Some(pause)
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;
    use crate::store::redis::error::sample::{client_error, io_error, server_error};

    const NODE: &str = "127.0.0.1:7001";

    fn redirect(asking: bool) -> Next {
        Next::Redirect {
            address: NODE.into(),
            asking,
        }
    }

    /// The table, for a call that writes and for one that only reads.
    fn both(error: &RedisError) -> (Next, Next) {
        (next_step(error, false), next_step(error, true))
    }

    #[test]
    fn moved_redirects_to_the_named_node() {
        let error = server_error(&format!("-MOVED 3999 {NODE}"));
        assert_eq!(both(&error), (redirect(false), redirect(false)));
    }

    #[test]
    fn ask_redirects_to_the_named_node_with_asking() {
        let error = server_error(&format!("-ASK 3999 {NODE}"));
        assert_eq!(both(&error), (redirect(true), redirect(true)));
    }

    #[test]
    fn a_redirect_without_a_node_is_tried_later() {
        assert_eq!(
            both(&server_error("-MOVED 3999")),
            (Next::Later, Next::Later)
        );
    }

    #[test]
    fn a_node_that_cannot_serve_the_slot_now_is_tried_later_even_for_writes() {
        let errors = [
            "-TRYAGAIN Multiple keys request during rehashing of slot",
            "-CLUSTERDOWN The cluster is down",
            "-MASTERDOWN Link with MASTER is down",
            "-LOADING Redis is loading the dataset in memory",
            "-READONLY You can't write against a read only replica.",
        ];
        for error in errors {
            assert_eq!(
                both(&server_error(error)),
                (Next::Later, Next::Later),
                "{error}"
            );
        }
        let unknown_node = client_error(ErrorKind::ClusterConnectionNotFound);
        assert_eq!(both(&unknown_node), (Next::Later, Next::Later));
    }

    #[test]
    fn a_refused_connection_applied_nothing_and_is_tried_later() {
        let error = io_error(io::ErrorKind::ConnectionRefused);
        assert_eq!(both(&error), (Next::Later, Next::Later));
    }

    #[test]
    fn a_broken_connection_or_a_timeout_may_have_applied_a_write_so_only_reads_are_sent_again() {
        let errors = [
            io_error(io::ErrorKind::ConnectionReset),
            io_error(io::ErrorKind::BrokenPipe),
            io_error(io::ErrorKind::UnexpectedEof),
            io_error(io::ErrorKind::TimedOut),
            io_error(io::ErrorKind::Other),
            client_error(ErrorKind::Io),
        ];
        for error in errors {
            assert_eq!(both(&error), (Next::Fail, Next::Later), "{error}");
        }
    }

    #[test]
    fn a_refused_command_fails_at_once() {
        let errors = [
            server_error("-WRONGTYPE Operation against a key holding the wrong kind of value"),
            server_error("-CROSSSLOT Keys in request don't hash to the same slot"),
            server_error("-NOPERM this user has no permissions"),
            server_error("-ERR unknown command"),
            server_error("-EXECABORT Transaction discarded because of previous errors."),
            client_error(ErrorKind::UnexpectedReturnType),
            client_error(ErrorKind::AuthenticationFailed),
        ];
        for error in errors {
            assert_eq!(both(&error), (Next::Fail, Next::Fail), "{error}");
        }
    }

    #[test]
    fn the_first_interrupting_reply_counts_and_a_command_error_does_not_interrupt() {
        let moved = redis::parse_redis_value(format!("-MOVED 1 {NODE}\r\n").as_bytes()).unwrap();
        let ask = redis::parse_redis_value(b"-ASK 1 10.0.0.9:7000\r\n").unwrap();
        let wrong_type = redis::parse_redis_value(b"-WRONGTYPE Operation\r\n").unwrap();
        let interrupted = interruption(&[Value::Okay, wrong_type.clone(), moved, ask]).unwrap();
        assert_eq!(interrupted.redirect_node(), Some((NODE, 1)));
        assert!(interruption(&[Value::Okay, wrong_type, Value::Nil]).is_none());
        for code in [
            "TRYAGAIN",
            "CLUSTERDOWN",
            "MASTERDOWN",
            "LOADING",
            "READONLY",
        ] {
            let value = redis::parse_redis_value(format!("-{code} now\r\n").as_bytes()).unwrap();
            assert!(interruption(&[value]).is_some(), "{code}");
        }
    }

    #[test]
    fn a_redirection_aims_at_its_node_and_a_later_try_at_the_master() {
        let mut retry = Retry::until(Instant::now() + Duration::from_secs(1));
        assert_eq!(retry.target(), &Target::default());
        retry.aim(redirect(true));
        assert_eq!(
            retry.target(),
            &Target {
                address: Some(NODE.into()),
                asking: true
            }
        );
        retry.aim(Next::Later);
        assert_eq!(retry.target(), &Target::default());
    }

    #[test]
    fn pauses_double_up_to_the_longest_and_a_redirection_goes_at_once() {
        let now = Instant::now();
        let mut retry = Retry::until(now + Duration::from_secs(10));
        let pauses: Vec<Duration> = (0..7).map(|_| retry.pause(now).unwrap()).collect();
        let expected = [10, 20, 40, 80, 160, 200, 200].map(Duration::from_millis);
        assert_eq!(pauses, expected);
        retry.aim(redirect(false));
        assert_eq!(retry.pause(now), Some(Duration::ZERO));
        assert_eq!(
            retry.pause(now),
            Some(Duration::ZERO),
            "a redirection does not grow the pause"
        );
        retry.aim(Next::Later);
        assert_eq!(retry.pause(now), Some(Duration::from_millis(200)));
    }

    #[test]
    fn no_try_is_made_past_the_deadline() {
        let now = Instant::now();
        let mut retry = Retry::until(now + Duration::from_millis(15));
        assert_eq!(retry.pause(now), Some(Duration::from_millis(10)));
        assert_eq!(
            retry.pause(now),
            None,
            "a 20 ms pause would pass the deadline"
        );
        retry.aim(redirect(false));
        assert_eq!(retry.pause(now + Duration::from_millis(30)), None);
    }
}
