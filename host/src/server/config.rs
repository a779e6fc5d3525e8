//! The service's configuration: a TOML file, then `DSESSION_*` environment
//! variables, then flags (the last two merged by the CLI).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Deserializer};

use crate::store::StoreConfig;
use crate::{Limits, Settings};

/// Everything `dsession serve` needs; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Where to listen; a non-loopback address needs `admin_key`.
    pub listen: SocketAddr,
    /// Bearer key for `/v1/*` and `/admin/*`. Without it those routes are
    /// open, which `serve` allows only on a loopback address.
    pub admin_key: Option<String>,
    /// Where tokens live.
    pub store: StoreConfig,
    /// Prefixes, default expiry, single mode.
    pub settings: Settings,
    /// Which policy runs.
    pub policy: PolicyConfig,
    /// Where user detail comes from.
    pub loader: LoaderConfig,
    /// How `GET /auth` answers gateways.
    pub auth: AuthConfig,
    /// Request and policy limits.
    pub limits: LimitsConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7480)),
            admin_key: None,
            store: StoreConfig::default(),
            settings: Settings::default(),
            policy: PolicyConfig::default(),
            loader: LoaderConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
        }
    }
}

/// Which policy runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// A policy component, or the name of a built-in policy (`default`,
    /// `hardened`); absent means `default`. Reloading a built-in policy
    /// changes nothing.
    pub path: Option<PathBuf>,
    /// Reload the policy when the file changes (besides SIGHUP and
    /// `POST /admin/policy/reload`).
    pub watch: bool,
    /// The policy's own settings (`[policy.config]`), read by the policy
    /// through `wasi:config/store`. Values may be written as strings,
    /// numbers or booleans; the policy gets their text.
    #[serde(deserialize_with = "config_values")]
    pub config: BTreeMap<String, String>,
}

/// A `[policy.config]` table: every value a scalar, kept as its text.
fn config_values<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let table = BTreeMap::<String, toml::Value>::deserialize(deserializer)?;
    table
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(text) => text,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "policy.config.{key} must be a string, number or boolean, not {}",
                        other.type_str()
                    )));
                }
            };
            Ok((key, text))
        })
        .collect()
}

/// Where user detail comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoaderConfig {
    /// `none`: detail only from the user-info cache.
    pub kind: LoaderKind,
}

/// The kinds of user loader the service can run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoaderKind {
    /// No loader.
    #[default]
    None,
}

/// How `GET /auth` answers gateways.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The cookie that may carry the token.
    pub cookie: String,
    /// Send the user's detail in `X-User-Detail` (base64url of its JSON).
    pub load_user: bool,
    /// How long loaded user detail is cached, in seconds (0: the default).
    pub user_ttl_seconds: i64,
    /// Sliding expiry: extend a valid token to this many seconds on each
    /// check. Absent: tokens keep their expiry.
    pub refresh_on_check_seconds: Option<i64>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            cookie: "dsession_token".into(),
            load_user: false,
            user_ttl_seconds: 0,
            refresh_on_check_seconds: None,
        }
    }
}

/// Request, connection and policy limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// The largest request body, in bytes (413 past it, from the
    /// `Content-Length` header alone when it says so).
    pub body_bytes: usize,
    /// How long a request body may take to arrive, in milliseconds (408
    /// past it).
    pub body_timeout_ms: u64,
    /// How long a client may take to send a request's headers, in
    /// milliseconds, also while a kept-alive connection waits for its next
    /// request; the connection is closed past it (slowloris).
    pub header_read_timeout_ms: u64,
    /// How long a connection may go without a byte read or written, in
    /// milliseconds, before it is closed.
    pub idle_timeout_ms: u64,
    /// Connections served at once; more wait in the listen backlog. Absent:
    /// what the process's open-file limit allows, at most 16384.
    pub max_connections: Option<usize>,
    /// On SIGTERM, how long requests in flight may take to finish, in
    /// milliseconds; connections still open then are closed.
    pub shutdown_timeout_ms: u64,
    /// Wall-clock time one policy call may take, in milliseconds.
    pub policy_call_timeout_ms: u64,
    /// Linear memory one policy call may use, in MiB.
    pub policy_memory_mib: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            body_bytes: 64 * 1024,
            body_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: None,
            shutdown_timeout_ms: 10_000,
            policy_call_timeout_ms: u64::try_from(limits.call_timeout.as_millis())
                .unwrap_or(u64::MAX),
            policy_memory_mib: limits.memory_bytes >> 20,
        }
    }
}

impl LimitsConfig {
    /// The policy limits these settings describe.
    pub fn policy_limits(&self) -> Limits {
        Limits {
            call_timeout: Duration::from_millis(self.policy_call_timeout_ms),
            memory_bytes: self.policy_memory_mib << 20,
            ..Limits::default()
        }
    }
}

impl ServeConfig {
    /// Reads a TOML file; unknown keys are errors.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))
    }

    /// The admin key without the white space a file or `echo` leaves around
    /// it: clients' keys are trimmed too, so an untrimmed one locks them out.
    pub fn admin_key(&self) -> Option<&str> {
        self.admin_key.as_deref().map(str::trim)
    }

    /// Rejects what cannot be served safely: an open admin API on a
    /// non-loopback address, an empty admin key, a useless limit.
    pub fn validate(&self) -> anyhow::Result<()> {
        match self.admin_key() {
            Some("") => anyhow::bail!("admin_key must not be empty"),
            None if !self.listen.ip().is_loopback() => anyhow::bail!(
                "refusing to listen on {} without an admin key: set admin_key in the config or DSESSION_ADMIN_KEY",
                self.listen
            ),
            _ => {}
        }
        let limits = &self.limits;
        for (name, value) in [
            ("limits.body_bytes", limits.body_bytes as u64),
            ("limits.body_timeout_ms", limits.body_timeout_ms),
            (
                "limits.header_read_timeout_ms",
                limits.header_read_timeout_ms,
            ),
            ("limits.idle_timeout_ms", limits.idle_timeout_ms),
            ("limits.shutdown_timeout_ms", limits.shutdown_timeout_ms),
            (
                "limits.max_connections",
                limits.max_connections.map_or(1, |n| n as u64),
            ),
        ] {
            anyhow::ensure!(value > 0, "{name} must be positive");
        }
        anyhow::ensure!(
            self.limits.policy_call_timeout_ms > 0,
            "limits.policy_call_timeout_ms must be positive"
        );
        anyhow::ensure!(
            self.limits.policy_memory_mib > 0,
            "limits.policy_memory_mib must be positive"
        );
        if let Some(seconds) = self.auth.refresh_on_check_seconds {
            anyhow::ensure!(
                seconds > 0,
                "auth.refresh_on_check_seconds must be positive"
            );
        }
        Ok(())
    }
}
