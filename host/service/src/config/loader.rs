//! `[loader]`: where user detail comes from, and how loads behave.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use dsession::loader::{HttpLoader, HttpLoaderConfig, SqlLoader, SqlLoaderConfig};
use dsession::{LoaderOptions, SessionManagerBuilder, UserLoader};

use super::LimitsConfig;

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

/// What a check that loads the user (forward-auth with `auth.load_user`,
/// `/v1/tokens/check` with `load_user`, `dsession token check --load-user`)
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
            ..LoaderOptions::default()
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
