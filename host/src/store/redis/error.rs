//! What a Redis failure means to the store: an outage, corrupt data, or a
//! server that is gone; and URLs fit for messages.

use redis::{RedisError, ServerErrorKind};

use crate::error::SetupError;
use crate::store::StoreError;

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

/// A store that could not be opened, its causes in the message.
pub(super) fn setup_error(error: anyhow::Error) -> SetupError {
    SetupError::Store(format!("{error:#}"))
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
    use std::io;

    use redis::{ErrorKind, RedisError};

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
            assert!(error.message().starts_with(prefix), "{error}");
        }
    }

    #[test]
    fn a_server_is_lost_when_unreachable_hung_or_demoted() {
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
