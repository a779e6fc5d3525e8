//! The service's configuration: a TOML file, then `DSESSION_*` environment
//! variables, then flags (the last two merged by the CLI).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Deserializer};

use dsession::loader::{HttpLoader, HttpLoaderConfig, SqlLoader, SqlLoaderConfig};
use dsession::store::StoreConfig;
use dsession::{InstanceReuse, Limits, LoaderOptions, SessionManagerBuilder, Settings, UserLoader};

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

/// Where user detail comes from, and how loads behave. Which fields apply
/// depends on `kind`; a field that does not apply is an error.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoaderConfig {
    /// `none` (detail only from the user-info cache), `http`, `postgres`
    /// or `mysql`.
    pub kind: LoaderKind,
    /// `http`: the URL template, `{id}` standing for the percent-encoded
    /// user id. `postgres`, `mysql`: the database URL.
    pub url: Option<String>,
    /// `postgres`, `mysql`: the query; its one parameter is the user id.
    pub query: Option<String>,
    /// `http`: extra request headers.
    pub headers: BTreeMap<String, String>,
    /// `http`: the environment variable holding a token sent as
    /// `Authorization: Bearer`.
    pub bearer_token_env: Option<String>,
    /// `http`: a URL that answers 2xx when the user service is up, for
    /// `/readyz`; without it, readiness means its host accepts connections.
    pub ready_url: Option<String>,
    /// `postgres`, `mysql`: the most connections the pool opens.
    pub max_connections: u32,
    /// The longest one load may take, in milliseconds; it must be below
    /// `limits.policy_call_timeout_ms`, which counts the load too.
    pub timeout_ms: u64,
    /// How long "this user has no detail" is remembered, in milliseconds;
    /// 0 turns it off.
    pub no_detail_cache_ms: u64,
    /// What a check that loads the user answers when the loader fails.
    pub on_error: OnLoaderError,
    /// Whether `/readyz` also needs the loader's source to be up.
    pub readyz: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        let options = LoaderOptions::default();
        Self {
            kind: LoaderKind::None,
            url: None,
            query: None,
            headers: BTreeMap::new(),
            bearer_token_env: None,
            ready_url: None,
            max_connections: 4,
            timeout_ms: millis(options.timeout),
            no_detail_cache_ms: millis(options.no_detail_ttl),
            on_error: OnLoaderError::Fail,
            readyz: false,
        }
    }
}

impl std::fmt::Debug for LoaderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs may carry passwords and headers keys: neither is logged.
        f.debug_struct("LoaderConfig")
            .field("kind", &self.kind)
            .field("timeout_ms", &self.timeout_ms)
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The kinds of user loader the service can run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LoaderKind {
    /// No loader.
    #[default]
    None,
    /// `GET` a URL made from a template.
    Http,
    /// A query on PostgreSQL.
    Postgres,
    /// A query on MySQL or MariaDB.
    Mysql,
}

impl LoaderKind {
    /// The kind as the config file spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Http => "http",
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
        }
    }
}

/// What a check that loads the user (forward-auth with `load_user`,
/// `/v1/tokens/check` with `load_user`, `dsession token check --user-ttl`)
/// answers when the loader fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum OnLoaderError {
    /// A loader error: 503, nothing said about the token.
    #[default]
    Fail,
    /// The token's verdict without detail; nothing is cached.
    #[value(name = "no_detail")]
    NoDetail,
}

impl LoaderConfig {
    /// The coalescing front's options.
    pub fn options(&self) -> LoaderOptions {
        LoaderOptions {
            timeout: Duration::from_millis(self.timeout_ms),
            no_detail_ttl: Duration::from_millis(self.no_detail_cache_ms),
        }
    }

    /// Rejects a config that cannot work: a missing URL or query, a field
    /// of another kind, a timeout the policy call would cut short.
    pub fn validate(&self, limits: &LimitsConfig) -> anyhow::Result<()> {
        let kind = self.kind;
        let needs = |present: bool, field: &str| {
            anyhow::ensure!(
                present,
                "loader.{field} is required for loader kind {}",
                kind.name()
            );
            Ok(())
        };
        let forbids = |present: bool, field: &str| {
            anyhow::ensure!(
                !present,
                "loader.{field} does not apply to loader kind {}",
                kind.name()
            );
            Ok(())
        };
        let http = kind == LoaderKind::Http;
        let sql = matches!(kind, LoaderKind::Postgres | LoaderKind::Mysql);
        if kind == LoaderKind::None {
            forbids(self.url.is_some(), "url")?;
            forbids(self.readyz, "readyz")?;
        } else {
            needs(self.url.is_some(), "url")?;
        }
        if sql {
            needs(self.query.is_some(), "query")?;
            anyhow::ensure!(
                self.max_connections > 0,
                "loader.max_connections must be positive"
            );
        } else {
            forbids(self.query.is_some(), "query")?;
        }
        if !http {
            forbids(!self.headers.is_empty(), "headers")?;
            forbids(self.bearer_token_env.is_some(), "bearer_token_env")?;
            forbids(self.ready_url.is_some(), "ready_url")?;
        }
        anyhow::ensure!(self.timeout_ms > 0, "loader.timeout_ms must be positive");
        anyhow::ensure!(
            self.timeout_ms < limits.policy_call_timeout_ms,
            "loader.timeout_ms ({}) must be below limits.policy_call_timeout_ms ({}), which counts the load too",
            self.timeout_ms,
            limits.policy_call_timeout_ms
        );
        Ok(())
    }

    /// The loader this config describes; None for kind `none`. Connects
    /// nothing yet: a source that is down makes loader errors, not a
    /// failed start.
    pub fn open(&self) -> anyhow::Result<Option<Arc<dyn UserLoader>>> {
        let url = || {
            self.url.clone().with_context(|| {
                format!(
                    "loader.url is required for loader kind {}",
                    self.kind.name()
                )
            })
        };
        let timeout = Duration::from_millis(self.timeout_ms);
        let sql = || -> anyhow::Result<SqlLoaderConfig> {
            Ok(SqlLoaderConfig {
                max_connections: self.max_connections,
                timeout,
                ..SqlLoaderConfig::new(
                    url()?,
                    self.query.clone().with_context(|| {
                        format!(
                            "loader.query is required for loader kind {}",
                            self.kind.name()
                        )
                    })?,
                )
            })
        };
        let loader: Arc<dyn UserLoader> = match self.kind {
            LoaderKind::None => return Ok(None),
            LoaderKind::Http => {
                let bearer_token = match &self.bearer_token_env {
                    Some(variable) => Some(std::env::var(variable).with_context(|| {
                        format!("loader.bearer_token_env names {variable}, which is not set")
                    })?),
                    None => None,
                };
                Arc::new(HttpLoader::new(HttpLoaderConfig {
                    headers: self
                        .headers
                        .iter()
                        .map(|(name, value)| (name.clone(), value.clone()))
                        .collect(),
                    bearer_token,
                    timeout,
                    ready_url: self.ready_url.clone(),
                    ..HttpLoaderConfig::new(url()?)
                })?)
            }
            LoaderKind::Postgres => Arc::new(SqlLoader::postgres(sql()?)?),
            LoaderKind::Mysql => Arc::new(SqlLoader::mysql(sql()?)?),
        };
        Ok(Some(loader))
    }

    /// Adds the loader this config describes to `builder`, with its
    /// options; kind `none` leaves the builder as it is.
    pub fn attach(&self, builder: SessionManagerBuilder) -> anyhow::Result<SessionManagerBuilder> {
        Ok(match self.open()? {
            Some(loader) => builder.shared_loader(loader).loader_options(self.options()),
            None => builder,
        })
    }
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
    /// A new policy instance for every call instead of warm reused ones.
    pub policy_fresh_instances: bool,
    /// Calls one reused policy instance serves before it is replaced.
    pub policy_instance_max_calls: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let limits = Limits::default();
        let max_calls = match limits.reuse {
            InstanceReuse::Pooled { max_calls, .. } => max_calls,
            InstanceReuse::Fresh => 1,
        };
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
            policy_fresh_instances: matches!(limits.reuse, InstanceReuse::Fresh),
            policy_instance_max_calls: max_calls,
        }
    }
}

impl LimitsConfig {
    /// The policy limits these settings describe.
    pub fn policy_limits(&self) -> Limits {
        let defaults = Limits::default();
        let reuse = match defaults.reuse {
            InstanceReuse::Pooled {
                max_memory_bytes, ..
            } if !self.policy_fresh_instances => InstanceReuse::Pooled {
                max_calls: self.policy_instance_max_calls,
                max_memory_bytes,
            },
            _ => InstanceReuse::Fresh,
        };
        Limits {
            call_timeout: Duration::from_millis(self.policy_call_timeout_ms),
            memory_bytes: self.policy_memory_mib << 20,
            reuse,
            ..defaults
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
        anyhow::ensure!(
            self.limits.policy_instance_max_calls > 0,
            "limits.policy_instance_max_calls must be positive"
        );
        self.loader.validate(&self.limits)?;
        if let Some(seconds) = self.auth.refresh_on_check_seconds {
            anyhow::ensure!(
                seconds > 0,
                "auth.refresh_on_check_seconds must be positive"
            );
        }
        Ok(())
    }
}
