//! The service's configuration: a TOML file, then `DSESSION_*` environment
//! variables, then flags (the last two merged by the CLI), and the session
//! manager and authenticator it describes.

mod limits;
mod loader;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use serde::{Deserialize, Deserializer};

use dsession::observe::Observer;
use dsession::store::{DEFAULT_EVENTS_MAX_LEN, EventStream, StoreConfig};
use dsession::{Authenticator, Policy, Runtime, SessionManager, Settings};

pub use self::limits::LimitsConfig;
pub use self::loader::{LoaderConfig, LoaderKind, OnLoaderError};

/// Config keys renamed, as (table, old key, new key): the old keys are read
/// as the new ones, with a warning, until the next release.
const RENAMED_KEYS: [(&str, &str, &str); 2] = [
    ("auth", "user_ttl_seconds", "user_ttl"),
    ("auth", "refresh_on_check_seconds", "sliding_expiry"),
];

/// Everything `dsession serve` needs; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Where to listen; a non-loopback address needs `admin_key`.
    pub listen: SocketAddr,
    /// Where to serve Envoy's external authorization over gRPC
    /// (`envoy.service.auth.v3.Authorization/Check`); absent, it is not
    /// served. It answers token checks only, so any address may be given
    /// without `admin_key`.
    pub grpc_listen: Option<SocketAddr>,
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
    /// How `/auth` and the gRPC `Check` answer gateways.
    pub auth: AuthConfig,
    /// Request and policy limits.
    pub limits: LimitsConfig,
    /// Session events (`[events]`).
    pub events: EventsConfig,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7480)),
            grpc_listen: None,
            admin_key: None,
            store: StoreConfig::default(),
            settings: Settings::default(),
            policy: PolicyConfig::default(),
            loader: LoaderConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            events: EventsConfig::default(),
        }
    }
}

/// Session events: with `enabled`, the policy appends each login, refresh,
/// revoke, revoke-all, eviction and rejected login to a Redis Stream in
/// the atomic step of the change (on a cluster, one stream per slot).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Record events; off by default.
    pub enabled: bool,
    /// The stream's key (`dsession-events`); on a cluster, each slot's
    /// stream is this key and a hash tag of the slot.
    pub stream: String,
    /// About how many events a stream keeps (`XADD … MAXLEN ~`).
    pub max_len: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        let stream = EventStream::default();
        Self {
            enabled: false,
            stream: stream.key,
            max_len: DEFAULT_EVENTS_MAX_LEN,
        }
    }
}

impl EventsConfig {
    /// The stream, checked.
    pub fn stream(&self) -> anyhow::Result<EventStream> {
        let stream = EventStream {
            key: self.stream.clone(),
            max_len: self.max_len,
        };
        stream.validate().map_err(anyhow::Error::msg)?;
        Ok(stream)
    }
}

/// Which policy runs, and where compiled policies are kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
    /// Keep compiled policies on disk, so that the next start or reload
    /// of the same component skips the compile (for a policy on an
    /// interpreter, tens of seconds). On by default.
    pub compile_cache: bool,
    /// Where: by default `$XDG_CACHE_HOME/dsession/compiled`, or
    /// `$HOME/.cache/dsession/compiled`. What is there is loaded as
    /// machine code: only the service's user may write it.
    pub compile_cache_dir: Option<PathBuf>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            path: None,
            watch: false,
            config: BTreeMap::new(),
            compile_cache: true,
            compile_cache_dir: None,
        }
    }
}

impl PolicyConfig {
    /// The compile cache's directory, or None when it is off or no
    /// directory can be named (no `compile_cache_dir`, `XDG_CACHE_HOME`
    /// nor `HOME`).
    pub fn compile_cache_dir(&self) -> Option<PathBuf> {
        if !self.compile_cache {
            return None;
        }
        let var = |name| std::env::var_os(name).filter(|value| !value.is_empty());
        self.compile_cache_dir.clone().or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".cache")))
                .map(|cache| cache.join("dsession").join("compiled"))
        })
    }

    /// The runtime policies are loaded on, with the default sizes and the
    /// compile cache: one per cache directory in a process. A cache that
    /// cannot be used (a directory that cannot be made) is warned of and
    /// left out.
    pub fn runtime(&self) -> anyhow::Result<Runtime> {
        static RUNTIMES: Mutex<Vec<(Option<PathBuf>, Runtime)>> = Mutex::new(Vec::new());
        let dir = self.compile_cache_dir();
        let mut runtimes = RUNTIMES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, runtime)) = runtimes.iter().find(|(cached, _)| *cached == dir) {
            return Ok(runtime.clone());
        }
        let runtime = match &dir {
            None => Runtime::shared()?,
            Some(path) => Runtime::builder()
                .compile_cache(path)
                .build()
                .or_else(|error| {
                    tracing::warn!(%error, "compiling policies without a cache");
                    Runtime::shared()
                })?,
        };
        runtimes.push((dir, runtime.clone()));
        Ok(runtime)
    }

    /// The policy `path` names, or the default, on [`Self::runtime`].
    pub fn load(&self) -> anyhow::Result<Policy> {
        let runtime = self.runtime()?;
        Ok(match &self.path {
            Some(path) => runtime.load_policy(path)?,
            None => runtime.builtin_policy("default")?,
        })
    }
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

/// How `GET /auth` answers gateways.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The cookie that may carry the token.
    pub cookie: String,
    /// Load the user's detail with each check and send it in
    /// `X-User-Detail` (base64url of its JSON).
    pub load_user: bool,
    /// How long loaded user detail is cached, in seconds (0: the default).
    pub user_ttl: i64,
    /// Sliding expiry: extend a valid token to this many seconds on each
    /// check. Absent: tokens keep their expiry.
    pub sliding_expiry: Option<i64>,
    /// The gateways (addresses or networks, `10.0.0.0/8`) whose
    /// `X-Real-IP`, `X-Forwarded-For` and `User-Agent` name the client of
    /// a forward-auth check; the policy may keep them as the session's
    /// latest (the hardened policy does, in its throttled touch). Empty,
    /// the default: no client is recorded.
    pub trusted_proxies: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            cookie: "dsession_token".into(),
            load_user: false,
            user_ttl: 0,
            sliding_expiry: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl ServeConfig {
    /// Reads a TOML file; unknown keys are errors, renamed ones are read
    /// under their new names with a logged warning.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        let (config, renamed) =
            parse(&text).with_context(|| format!("invalid config {}", path.display()))?;
        for (old, new) in renamed {
            tracing::warn!(
                config = %path.display(),
                "config key {old} is deprecated and will be refused by the next release; rename it {new}"
            );
        }
        Ok(config)
    }

    /// The session manager this config describes, checked as `serve`
    /// checks it at start: the store connected, the policy loaded, the
    /// loader attached, the settings (and on a cluster the slot layout)
    /// accepted by the policy. `observer`, if any, sees every operation.
    pub async fn open(
        &self,
        observer: Option<Arc<dyn Observer>>,
    ) -> anyhow::Result<SessionManager> {
        self.loader.validate(&self.limits)?;
        let store = self.store.open_with_events(&self.events.stream()?).await?;
        let policy = self.policy.load()?;
        let mut builder = SessionManager::builder()
            .shared_store(store)
            .policy(policy)
            .record_events(self.events.enabled)
            .settings(self.settings.clone())
            .policy_config(self.policy.config.clone())
            .limits(self.limits.policy_limits());
        if let Some(observer) = observer {
            builder = builder.observer(observer);
        }
        self.loader
            .attach(builder)?
            .build_checked()
            .await
            .context("cannot set up the session manager")
    }

    /// How `GET /auth` and `/v1/tokens/check` check tokens with `sessions`:
    /// `[auth]`, and `loader.on_error`.
    pub fn authenticator(&self, sessions: SessionManager) -> Authenticator {
        let auth = &self.auth;
        let mut authenticator = Authenticator::new(sessions).with_cookie(auth.cookie.clone());
        if auth.load_user {
            authenticator = authenticator.with_load_user(auth.user_ttl);
        }
        if let Some(seconds) = auth.sliding_expiry {
            authenticator = authenticator.with_sliding_expiry(seconds);
        }
        if self.loader.on_error == OnLoaderError::NoDetail {
            authenticator = authenticator.without_detail_on_loader_error();
        }
        authenticator
    }

    /// `[auth] trusted_proxies`, read.
    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<crate::client::Network>> {
        self.auth
            .trusted_proxies
            .iter()
            .map(|text| {
                crate::client::Network::parse(text)
                    .map_err(|error| anyhow::anyhow!("auth.trusted_proxies: {error}"))
            })
            .collect()
    }

    /// The admin key without the white space a file or `echo` leaves around
    /// it: clients' keys are trimmed too, so an untrimmed one locks them out.
    pub fn admin_key(&self) -> Option<&str> {
        self.admin_key.as_deref().map(str::trim)
    }

    /// Rejects what cannot be served safely: an open admin API on a
    /// non-loopback address, an empty admin key, a useless limit. The
    /// loader's config is checked by [`Self::open`], which every command
    /// that builds a manager goes through.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.trusted_proxies()?;
        self.events.stream()?;
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
            (
                "limits.policy_call_timeout_ms",
                limits.policy_call_timeout_ms,
            ),
            ("limits.policy_memory_mib", limits.policy_memory_mib as u64),
            (
                "limits.policy_instance_max_calls",
                u64::from(limits.policy_instance_max_calls),
            ),
            (
                "limits.policy_instance_max_memory_mib",
                limits.policy_instance_max_memory_mib as u64,
            ),
        ] {
            anyhow::ensure!(value > 0, "{name} must be positive");
        }
        if let Some(seconds) = self.auth.sliding_expiry {
            anyhow::ensure!(seconds > 0, "auth.sliding_expiry must be positive");
        }
        Ok(())
    }
}

/// A config file's text, and the renamed keys it used, as (old, new).
fn parse(text: &str) -> anyhow::Result<(ServeConfig, Vec<(String, String)>)> {
    let mut table: toml::Table = toml::from_str(text)?;
    let mut renamed = Vec::new();
    for (section, old, new) in RENAMED_KEYS {
        let Some(toml::Value::Table(keys)) = table.get_mut(section) else {
            continue;
        };
        let Some(value) = keys.remove(old) else {
            continue;
        };
        anyhow::ensure!(
            !keys.contains_key(new),
            "{section}.{old} is the former name of {section}.{new}: give only {section}.{new}"
        );
        keys.insert(new.to_owned(), value);
        renamed.push((format!("{section}.{old}"), format!("{section}.{new}")));
    }
    // Without renamed keys the text itself is read, so errors keep their
    // line and column.
    let config = if renamed.is_empty() {
        toml::from_str(text)?
    } else {
        toml::Value::Table(table).try_into()?
    };
    Ok((config, renamed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamed_auth_keys_are_still_read_and_reported() {
        let (config, renamed) =
            parse("[auth]\nuser_ttl_seconds = 60\nrefresh_on_check_seconds = 900\n").unwrap();
        assert_eq!(config.auth.user_ttl, 60);
        assert_eq!(config.auth.sliding_expiry, Some(900));
        assert_eq!(
            renamed,
            [
                ("auth.user_ttl_seconds".into(), "auth.user_ttl".into()),
                (
                    "auth.refresh_on_check_seconds".into(),
                    "auth.sliding_expiry".into()
                ),
            ]
        );
        let (_, renamed) = parse("[auth]\nuser_ttl = 60\n").unwrap();
        assert!(renamed.is_empty());
    }

    #[test]
    fn an_old_key_beside_its_new_name_is_refused() {
        let error = parse("[auth]\nuser_ttl_seconds = 60\nuser_ttl = 30\n").unwrap_err();
        assert!(
            error.to_string().contains("give only auth.user_ttl"),
            "{error}"
        );
    }
}
