//! TLS for the Redis stores, as managed Redis and Valkey services require:
//! the CA to trust and, for servers that ask for one, a client certificate.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use redis::{ClientTlsConfig, IntoConnectionInfo, RedisConnectionInfo, TlsCertificates};
use serde::Deserialize;

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

/// Opens clients with or without TLS, as configured, for hosts learned at
/// run time (sentinels, and the masters they name).
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
    ) -> Result<redis::Client, redis::RedisError> {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        match &self.tls {
            None => redis::Client::open(
                format!("redis://{host}:{port}")
                    .into_connection_info()?
                    .set_redis_settings(settings.clone()),
            ),
            Some(certificates) => redis::Client::build_with_tls(
                format!("rediss://{host}:{port}")
                    .into_connection_info()?
                    .set_redis_settings(settings.clone()),
                certificates.clone(),
            ),
        }
    }
}
