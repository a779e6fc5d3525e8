//! What a Redis failure means to the store: an outage, corrupt data, a
//! full server, or a server that is gone; and URLs fit for messages.

use redis::{RedisError, ServerErrorKind};

use crate::error::SetupError;
use crate::store::StoreError;

/// A `RedisError` as the store reports it.
pub(super) fn store_error(error: RedisError) -> StoreError {
    if has_code(&error, "WRONGTYPE") {
        return StoreError::corrupt(format!("a key holds the wrong type of value: {error}"));
    }
    if is_out_of_memory(&error) {
        return StoreError::out_of_memory(format!(
            "redis is out of memory (used memory over maxmemory) and refused the command: {error}"
        ));
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

/// Whether Redis refused for memory: `OOM` alone or queued in `MULTI`, or
/// an `EXECABORT` that names it as its cause (Redis checks memory again at
/// `EXEC`, and then every queued command was accepted).
fn is_out_of_memory(error: &RedisError) -> bool {
    let aborted_for_memory = |code: &str, detail: Option<&str>| {
        code == "EXECABORT" && detail.is_some_and(|detail| detail.contains("because of: OOM "))
    };
    has_code(error, "OOM")
        || error
            .code()
            .is_some_and(|code| aborted_for_memory(code, error.detail()))
        || error.clone().into_server_errors().is_some_and(|errors| {
            errors
                .iter()
                .any(|(_, error)| aborted_for_memory(error.code(), error.details()))
        })
}

/// A store that could not be opened, its causes in the message.
pub(super) fn setup_error(error: anyhow::Error) -> SetupError {
    SetupError::Store(format!("{error:#}"))
}

/// Whether Redis answered the error `code`, alone or inside a pipeline.
fn has_code(error: &RedisError, code: &str) -> bool {
    error.code() == Some(code)
        || error
            .clone()
            .into_server_errors()
            .is_some_and(|errors| errors.iter().any(|(_, error)| error.code() == code))
}

/// Whether `error` says the connection or the server's role is gone: the
/// server died, hung, or was demoted to a replica.
pub(super) fn is_lost(error: &RedisError) -> bool {
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

/// The URL with its password replaced, for messages and logs.
pub(super) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Errors as the network and the server give them, for the family's tests.
#[cfg(test)]
pub(super) mod sample {
    use std::collections::VecDeque;
    use std::io;
    use std::sync::{Arc, Mutex};

    use redis::aio::ConnectionLike;
    use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value};

    /// The error a server answers with, written as on the wire:
    /// `"-MOVED 3999 127.0.0.1:6381"`.
    pub(in crate::store::redis) fn server_error(reply: &str) -> RedisError {
        redis::parse_redis_value(format!("{reply}\r\n").as_bytes())
            .unwrap()
            .extract_error()
            .unwrap_err()
    }

    /// An I/O failure of this kind.
    pub(in crate::store::redis) fn io_error(kind: io::ErrorKind) -> RedisError {
        io::Error::from(kind).into()
    }

    /// A failure the client reports itself.
    pub(in crate::store::redis) fn client_error(kind: ErrorKind) -> RedisError {
        (kind, "sample").into()
    }

    /// A connection that answers each request with the next of its
    /// answers, each reply written as on the wire (`"+OK"`, `"-OOM …"`,
    /// `":1"`).
    #[derive(Clone)]
    pub(in crate::store::redis) struct Answering(Arc<Mutex<VecDeque<Vec<Value>>>>);

    impl Answering {
        pub(in crate::store::redis) fn new(answers: &[&[&str]]) -> Self {
            let wire =
                |reply: &&str| redis::parse_redis_value(format!("{reply}\r\n").as_bytes()).unwrap();
            let answers = answers
                .iter()
                .map(|replies| replies.iter().map(wire).collect())
                .collect();
            Self(Arc::new(Mutex::new(answers)))
        }

        fn next(&self) -> Vec<Value> {
            self.0
                .lock()
                .unwrap()
                .pop_front()
                .expect("a request the test did not answer")
        }
    }

    impl ConnectionLike for Answering {
        fn req_packed_command<'a>(&'a mut self, _: &'a Cmd) -> RedisFuture<'a, Value> {
            let first = self.next().swap_remove(0);
            Box::pin(async move { Ok(first) })
        }

        fn req_packed_commands<'a>(
            &'a mut self,
            _: &'a Pipeline,
            offset: usize,
            count: usize,
        ) -> RedisFuture<'a, Vec<Value>> {
            let values = self.next().into_iter().skip(offset).take(count).collect();
            Box::pin(async move { Ok(values) })
        }

        fn get_db(&self) -> i64 {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::sample::{io_error, server_error};
    use super::*;

    #[test]
    fn wrong_type_is_corrupt_data_not_an_outage() {
        let error = store_error(server_error(
            "-WRONGTYPE Operation against a key holding the wrong kind",
        ));
        assert!(error.is_corrupt(), "{error}");
        assert!(error.message().starts_with("a key holds the wrong type"));
    }

    #[test]
    fn a_timeout_an_unreachable_server_and_a_refusal_are_outages() {
        let cases = [
            (io_error(io::ErrorKind::TimedOut), "redis timed out: "),
            (
                io_error(io::ErrorKind::ConnectionRefused),
                "redis unreachable: ",
            ),
            (
                io_error(io::ErrorKind::ConnectionReset),
                "redis unreachable: ",
            ),
            (
                server_error("-NOPERM no permission"),
                "redis refused the command: ",
            ),
            (
                server_error("-ERR syntax error"),
                "redis refused the command: ",
            ),
        ];
        for (error, prefix) in cases {
            let error = store_error(error);
            assert!(!error.is_corrupt(), "{error}");
            assert!(!error.is_out_of_memory(), "{error}");
            assert!(error.message().starts_with(prefix), "{error}");
        }
    }

    #[test]
    fn an_oom_refusal_is_out_of_memory_and_names_maxmemory() {
        let error = store_error(server_error(
            "-OOM command not allowed when used memory > 'maxmemory'.",
        ));
        assert!(error.is_out_of_memory(), "{error}");
        assert!(!error.is_corrupt(), "{error}");
        assert!(error.message().contains("out of memory"), "{error}");
        assert!(error.message().contains("maxmemory"), "{error}");
        let aborted = store_error(server_error(
            "-EXECABORT Transaction discarded because of previous errors.",
        ));
        assert!(!aborted.is_out_of_memory(), "an abort alone names no cause");
    }

    #[test]
    fn a_transaction_refused_for_memory_at_exec_is_out_of_memory() {
        // Every command was queued, then EXEC found the server full.
        let error = store_error(server_error(
            "-EXECABORT Transaction discarded because of: OOM command not allowed when used \
             memory > 'maxmemory'.",
        ));
        assert!(error.is_out_of_memory(), "{error}");
    }

    #[test]
    fn a_server_is_lost_when_unreachable_hung_or_demoted() {
        assert!(!is_lost(&server_error("-OOM command not allowed")));
        assert!(is_lost(&io_error(io::ErrorKind::ConnectionReset)));
        assert!(is_lost(&io_error(io::ErrorKind::ConnectionRefused)));
        assert!(is_lost(&io_error(io::ErrorKind::TimedOut)));
        assert!(is_lost(&server_error(
            "-READONLY You can't write against a read only replica."
        )));
        assert!(is_lost(&server_error(
            "-MASTERDOWN Link with MASTER is down"
        )));
        assert!(!is_lost(&server_error(
            "-WRONGTYPE Operation against a key"
        )));
        assert!(!is_lost(&server_error("-ERR unknown command")));
    }

    #[test]
    fn redacted_urls_hide_the_password_only() {
        assert_eq!(
            redact("redis://app:secret@127.0.0.1:6379/0"),
            "redis://app:***@127.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("not a url"), "not a url");
    }
}
