//! Reaching Redis: plain TCP or TLS (as managed Redis and Valkey services
//! require: the CA to trust and, for servers that ask for one, a client
//! certificate), node addresses, and the default timeouts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, IntoConnectionInfo, RedisConnectionInfo,
    RedisError, TlsCertificates,
};
use serde::{Deserialize, Deserializer};

/// How long connecting to Redis, a round trip, and a durable write's wait
/// for its replicas may each take unless configured: 1 s. The one default
/// of every Redis store and of the `*_timeout_ms` keys of [`StoreConfig`].
///
/// [`StoreConfig`]: crate::store::StoreConfig
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;

/// [`DEFAULT_TIMEOUT_MS`] as a duration.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_millis(DEFAULT_TIMEOUT_MS);

/// [`DEFAULT_TIMEOUT`], for a `*_timeout_ms` key left out.
pub(super) fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

/// A `*_timeout_ms` key: milliseconds, as a duration.
pub(super) fn millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_millis)
}

/// Connections that take at most `connect` to open and `response` per round
/// trip.
pub(super) fn timeouts(connect: Duration, response: Duration) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect))
        .set_response_timeout(Some(response))
}

/// Which certificates a TLS connection to Redis uses; every file is PEM.
/// Without a CA file the system's trusted roots are used.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsFiles {
    /// The CA that signed the servers' certificates.
    pub ca_file: Option<PathBuf>,
    /// A client certificate, for servers that require one (mutual TLS).
    pub client_cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    pub client_key_file: Option<PathBuf>,
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

impl TlsFiles {
    /// The certificates these files name, read now so that a missing file
    /// fails at startup.
    pub(super) fn certificates(&self) -> anyhow::Result<TlsCertificates> {
        let client_tls = match (&self.client_cert_file, &self.client_key_file) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read(cert, "client certificate")?,
                client_key: read(key, "client key")?,
            }),
            (None, None) => None,
            _ => anyhow::bail!(
                "a client certificate needs both client_cert_file and client_key_file"
            ),
        };
        let root_cert = self
            .ca_file
            .as_deref()
            .map(|path| read(path, "CA file"))
            .transpose()?;
        // rustls needs one process-wide crypto provider; ring is the one
        // built in. Another part of the process may have installed one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(TlsCertificates {
            client_tls,
            root_cert,
        })
    }
}

/// The host and port of `host:port` or `[v6 address]:port`, as Redis names
/// its nodes and the sentinels their masters.
pub(super) fn host_and_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host, port.parse().ok()?))
}

/// How a cluster node or a sentinel may be named, for the error that
/// refuses another name.
pub(super) const ADDRESS_FORMS: &str = "host:port or redis://host:port";

/// The host and port of a sentinel named `host:port` or `redis://host:port`
/// (a trailing `/` allowed; no user, database or other scheme: TLS comes
/// from `[store.tls]`).
pub(super) fn sentinel_address(address: &str) -> Option<(&str, u16)> {
    let bare = match address.strip_prefix("redis://") {
        Some(rest) => rest.strip_suffix('/').unwrap_or(rest),
        None => address,
    };
    if bare.contains(['@', '/']) {
        return None;
    }
    host_and_port(bare)
}

/// A cluster node's URL for redis-rs: `host:port` is
/// `redis://host:port`; a `redis://` or `rediss://` URL is kept. None for
/// anything else.
pub(super) fn node_url(node: &str) -> Option<String> {
    if node.starts_with("redis://") || node.starts_with("rediss://") {
        Some(node.to_owned())
    } else if !node.contains(['@', '/']) && host_and_port(node).is_some() {
        Some(format!("redis://{node}"))
    } else {
        None
    }
}

/// `host:port`, with an IPv6 host in brackets: the reverse of
/// [`host_and_port`].
pub(super) fn address(host: &str, port: impl std::fmt::Display) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Opens clients with or without TLS, as configured, for hosts learned at
/// run time (sentinels, the masters they name, the nodes of a cluster).
#[derive(Clone)]
pub(super) struct Connector {
    tls: Option<TlsCertificates>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Connector {
    pub(super) fn new(tls: Option<&TlsFiles>) -> anyhow::Result<Self> {
        Ok(Self {
            tls: tls.map(TlsFiles::certificates).transpose()?,
        })
    }

    /// A client for `host:port` with `settings` (user, password, db).
    pub(super) fn client(
        &self,
        host: &str,
        port: u16,
        settings: &RedisConnectionInfo,
    ) -> Result<Client, RedisError> {
        let address = address(host, port);
        match &self.tls {
            None => Client::open(
                format!("redis://{address}")
                    .into_connection_info()?
                    .set_redis_settings(settings.clone()),
            ),
            Some(certificates) => Client::build_with_tls(
                format!("rediss://{address}")
                    .into_connection_info()?
                    .set_redis_settings(settings.clone()),
                certificates.clone(),
            ),
        }
    }
}

/// Opens connections to servers learned at run time (the masters the
/// sentinels name, the nodes of a cluster): TLS or not, as configured, with
/// one user, password and database, and one set of timeouts.
pub(super) struct Dialer {
    connector: Connector,
    settings: RedisConnectionInfo,
    timeouts: AsyncConnectionConfig,
}

impl Dialer {
    /// Connections through `connector`, as the user in `settings`, with
    /// `timeouts`.
    pub(super) fn new(
        connector: Connector,
        settings: RedisConnectionInfo,
        timeouts: AsyncConnectionConfig,
    ) -> Self {
        Self {
            connector,
            settings,
            timeouts,
        }
    }

    /// A client for `host:port`.
    pub(super) fn client(&self, host: &str, port: u16) -> Result<Client, RedisError> {
        self.connector.client(host, port, &self.settings)
    }

    /// A new connection through `client`.
    pub(super) async fn connect(
        &self,
        client: &Client,
    ) -> Result<MultiplexedConnection, RedisError> {
        client
            .get_multiplexed_async_connection_with_config(&self.timeouts)
            .await
    }

    /// The timeouts of each connection.
    pub(super) fn timeouts(&self) -> &AsyncConnectionConfig {
        &self.timeouts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_and_write_ipv4_names_and_bracketed_ipv6() {
        assert_eq!(host_and_port("127.0.0.1:6379"), Some(("127.0.0.1", 6379)));
        assert_eq!(
            host_and_port("redis.internal:7000"),
            Some(("redis.internal", 7000))
        );
        assert_eq!(host_and_port("[::1]:6379"), Some(("::1", 6379)));
        assert_eq!(host_and_port("127.0.0.1"), None);
        assert_eq!(host_and_port("127.0.0.1:port"), None);
        assert_eq!(address("::1", 6379), "[::1]:6379");
        assert_eq!(
            sentinel_address("redis://[::1]:26379/"),
            Some(("::1", 26379))
        );
        assert_eq!(
            sentinel_address("127.0.0.1:26379"),
            Some(("127.0.0.1", 26379))
        );
        assert_eq!(sentinel_address("redis://u@127.0.0.1:26379"), None);
        assert_eq!(sentinel_address("rediss://127.0.0.1:26379"), None);
        assert_eq!(
            node_url("127.0.0.1:7000").unwrap(),
            "redis://127.0.0.1:7000"
        );
        assert_eq!(node_url("rediss://h:7000").unwrap(), "rediss://h:7000");
        assert_eq!(node_url("http://h:7000"), None);
        assert_eq!(address("127.0.0.1", 6379), "127.0.0.1:6379");
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let files = TlsFiles {
            client_cert_file: Some("client.pem".into()),
            ..TlsFiles::default()
        };
        let error = files.certificates().unwrap_err();
        assert!(error.to_string().contains("needs both"), "{error}");
    }
}
