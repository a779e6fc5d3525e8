//! The flags and `DSESSION_*` variables that the commands opening a session
//! manager share (and the bench), and the one merge of them over a config file.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{ArgGroup, Args};
use dsession::Settings;
use dsession::store::{
    ClusterConfig, RedisConfig, SentinelConfig, ServerSettings, StoreConfig, TlsFiles,
};
use dsession_service::{LoaderConfig, LoaderKind, OnLoaderError, PolicyConfig, ServeConfig};

/// Where tokens live, how they are laid out, and where user detail comes
/// from: a config file, overridden by `DSESSION_*` environment variables,
/// overridden by flags (clap reads each flag's variable).
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// A TOML config file (see examples/dsession.toml); without --redis,
    /// --sentinel, --cluster nor a `[store]` in it, an empty in-memory store
    /// is used, which only suits trying things out.
    #[arg(long, env = "DSESSION_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
    /// A policy component (`.wasm` file), or a built-in policy by name:
    /// `default` (gosession's layout) or `hardened`.
    #[arg(long, env = "DSESSION_POLICY")]
    policy: Option<PathBuf>,
    #[command(flatten)]
    policy_config: PolicyConfigArgs,
    #[command(flatten)]
    compile_cache: CompileCacheArgs,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    loader: LoaderArgs,
    /// Record session events (`[events] enabled`): each login, refresh,
    /// revoke, revoke-all, eviction and rejected login, appended to a
    /// Redis Stream in the atomic step of its change.
    #[arg(long, env = "DSESSION_EVENTS")]
    events: bool,
}

impl ConfigArgs {
    /// The config file (or the defaults) with the variables and flags
    /// laid over it.
    pub(crate) fn config(&self) -> anyhow::Result<ServeConfig> {
        let mut config = match &self.config {
            Some(path) => ServeConfig::from_file(path)?,
            None => ServeConfig::default(),
        };
        if let Some(store) = self.store.config() {
            config.store = store;
        }
        self.store.apply_near_cache(&mut config.store)?;
        if let Some(path) = &self.policy {
            config.policy.path = Some(path.clone());
        }
        config
            .policy
            .config
            .extend(self.policy_config.pairs.iter().cloned());
        self.compile_cache.apply(&mut config.policy);
        self.settings.apply(&mut config.settings);
        self.loader.apply(&mut config.loader)?;
        config.events.enabled |= self.events;
        Ok(config)
    }
}

/// Which store: one Redis server, Redis behind sentinels, a Redis Cluster,
/// or (none given) the in-memory store; at most one of them.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("store").args(["redis", "cluster", "sentinel"])))]
pub(crate) struct StoreArgs {
    /// Redis URL, `redis://[user:password@]host:port/db`.
    #[arg(long, env = "DSESSION_REDIS_URL")]
    redis: Option<String>,
    /// A Redis Cluster through these seed nodes, `host:port,host:port,…` or
    /// `redis://host:port,…` (`rediss://` for TLS); the
    /// ACL user and password come from DSESSION_REDIS_USERNAME and
    /// DSESSION_REDIS_PASSWORD. Needs a policy that keeps each user's keys
    /// in one slot, such as `--policy hardened`.
    #[arg(long, env = "DSESSION_CLUSTER_NODES", value_delimiter = ',')]
    cluster: Vec<String>,
    /// Redis behind these sentinels, `host:port,host:port,…` (or
    /// `redis://host:port`); passwords come from DSESSION_REDIS_PASSWORD and
    /// DSESSION_SENTINEL_PASSWORD.
    #[arg(
        long,
        env = "DSESSION_SENTINELS",
        value_delimiter = ',',
        requires = "master_name"
    )]
    sentinel: Vec<String>,
    /// The name the sentinels monitor the master under.
    #[arg(long, env = "DSESSION_MASTER_NAME")]
    master_name: Option<String>,
    /// Sentinel and cluster modes: replicas that must acknowledge each
    /// issuing or revoking write (0: off).
    #[arg(long, env = "DSESSION_MIN_REPLICAS_ACK", default_value_t = 0)]
    min_replicas_ack: usize,
    /// Answer checks from memory, kept current by Redis's invalidations
    /// (`[store.near_cache]` with its defaults; see the README).
    #[arg(long, env = "DSESSION_NEAR_CACHE")]
    near_cache: bool,
    /// TLS to the sentinels and the master (with --redis and --cluster,
    /// rediss:// URLs turn TLS on).
    #[arg(long, env = "DSESSION_REDIS_TLS")]
    redis_tls: bool,
    /// The CA that signed the Redis servers' certificates (PEM); default:
    /// the system's roots.
    #[arg(long, env = "DSESSION_REDIS_CA_FILE")]
    redis_ca_file: Option<PathBuf>,
    /// A client certificate for Redis servers that require one (PEM).
    #[arg(
        long,
        env = "DSESSION_REDIS_CLIENT_CERT",
        requires = "redis_client_key"
    )]
    redis_client_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(
        long,
        env = "DSESSION_REDIS_CLIENT_KEY",
        requires = "redis_client_cert"
    )]
    redis_client_key: Option<PathBuf>,
}

impl StoreArgs {
    /// The Redis URL, when the flags name one server.
    pub(crate) fn redis_url(&self) -> Option<&str> {
        self.redis.as_deref()
    }

    /// Turns the near cache on in `store` when `--near-cache` says so; an
    /// error for the memory store, which has no Redis to cache.
    pub(crate) fn apply_near_cache(&self, store: &mut StoreConfig) -> anyhow::Result<()> {
        if !self.near_cache {
            return Ok(());
        }
        let Some(near_cache) = store.near_cache_mut() else {
            anyhow::bail!(
                "--near-cache needs a Redis store (--redis, --sentinel or --cluster, or a \
                 [store] in the config file)"
            );
        };
        near_cache.enabled = true;
        Ok(())
    }

    /// The store the flags name, if any, with the near cache on when
    /// `--near-cache` says so.
    pub(crate) fn config(&self) -> Option<StoreConfig> {
        let mut store = self.named()?;
        if let Some(near_cache) = store.near_cache_mut() {
            near_cache.enabled |= self.near_cache;
        }
        Some(store)
    }

    /// The store the flags name, if any.
    fn named(&self) -> Option<StoreConfig> {
        let tls = TlsFiles {
            ca_file: self.redis_ca_file.clone(),
            client_cert_file: self.redis_client_cert.clone(),
            client_key_file: self.redis_client_key.clone(),
        };
        if let Some(url) = &self.redis {
            return Some(StoreConfig::Redis(RedisConfig {
                tls,
                ..RedisConfig::new(url)
            }));
        }
        if !self.cluster.is_empty() {
            return Some(StoreConfig::Cluster(ClusterConfig {
                server: ServerSettings {
                    username: std::env::var("DSESSION_REDIS_USERNAME").ok(),
                    password: std::env::var("DSESSION_REDIS_PASSWORD").ok(),
                    min_replicas_ack: self.min_replicas_ack,
                    ..ServerSettings::default()
                },
                tls,
                ..ClusterConfig::new(self.cluster.clone())
            }));
        }
        let master_name = self.master_name.clone()?;
        (!self.sentinel.is_empty()).then(|| {
            StoreConfig::Sentinel(SentinelConfig {
                sentinel_password: std::env::var("DSESSION_SENTINEL_PASSWORD").ok(),
                server: ServerSettings {
                    password: std::env::var("DSESSION_REDIS_PASSWORD").ok(),
                    min_replicas_ack: self.min_replicas_ack,
                    ..ServerSettings::default()
                },
                tls: self.redis_tls.then_some(tls),
                ..SentinelConfig::new(self.sentinel.clone(), master_name)
            })
        })
    }
}

/// Where compiled policies are kept (`[policy] compile_cache`,
/// `compile_cache_dir`).
#[derive(Debug, Default, Args)]
pub(crate) struct CompileCacheArgs {
    /// Keep compiled policies in DIR instead of the default
    /// (`$XDG_CACHE_HOME/dsession/compiled` or `~/.cache/dsession/compiled`).
    #[arg(long, env = "DSESSION_COMPILE_CACHE_DIR", value_name = "DIR")]
    compile_cache_dir: Option<PathBuf>,
    /// Compile the policy on every start and reload, keeping nothing on disk.
    #[arg(long, env = "DSESSION_NO_COMPILE_CACHE")]
    no_compile_cache: bool,
}

impl CompileCacheArgs {
    /// Lays the flags over `policy`.
    pub(crate) fn apply(&self, policy: &mut PolicyConfig) {
        if let Some(dir) = &self.compile_cache_dir {
            policy.compile_cache_dir = Some(dir.clone());
        }
        if self.no_compile_cache {
            policy.compile_cache = false;
        }
    }

    /// The default policy config with the flags laid over it.
    pub(crate) fn policy_config(&self) -> PolicyConfig {
        let mut policy = PolicyConfig::default();
        self.apply(&mut policy);
        policy
    }
}

/// The policy's own settings, read by it through `wasi:config/store`.
#[derive(Debug, Args)]
pub(crate) struct PolicyConfigArgs {
    /// A policy setting, `key=value`; repeat for more (in the environment,
    /// comma-separated). Overrides `[policy.config]` key by key.
    /// `dsession policy check` lists the keys a policy reads.
    #[arg(
        long = "policy-config",
        env = "DSESSION_POLICY_CONFIG",
        value_delimiter = ',',
        value_parser = parse_policy_config_pair
    )]
    pub(crate) pairs: Vec<(String, String)>,
}

/// gosession's configuration chain, `[settings]`, each flag named as its
/// key; each overrides the default (or the config file).
#[derive(Debug, Args)]
pub(crate) struct SettingsArgs {
    /// Prefix of token keys [default: gosession-token].
    #[arg(long, env = "DSESSION_TOKEN_KEY_PREFIX")]
    token_key_prefix: Option<String>,
    /// Prefix of user-info keys [default: gosession-user].
    #[arg(long, env = "DSESSION_USER_KEY_PREFIX")]
    user_key_prefix: Option<String>,
    /// Default token lifetime in seconds [default: 604800].
    #[arg(long, env = "DSESSION_DEFAULT_EXPIRE_SECONDS")]
    default_expire_seconds: Option<i64>,
    /// Single-login mode: a new token revokes the user's others.
    #[arg(long, env = "DSESSION_SINGLE_MODE")]
    single_mode: bool,
    /// The former name of --token-key-prefix.
    #[arg(
        long = "token-prefix",
        hide = true,
        conflicts_with = "token_key_prefix"
    )]
    token_prefix: Option<String>,
    /// The former name of --user-key-prefix.
    #[arg(long = "user-prefix", hide = true, conflicts_with = "user_key_prefix")]
    user_prefix: Option<String>,
    /// The former name of --default-expire-seconds.
    #[arg(
        long = "default-expire",
        hide = true,
        conflicts_with = "default_expire_seconds"
    )]
    default_expire: Option<i64>,
}

/// Warns that flag `old` is now `new`; the old name works until the next
/// release.
fn renamed_flag<T>(old: &str, new: &str, value: Option<T>) -> Option<T> {
    if value.is_some() {
        tracing::warn!(
            "flag --{old} is deprecated and will be refused by the next release; use --{new}"
        );
    }
    value
}

impl SettingsArgs {
    fn apply(&self, settings: &mut Settings) {
        let token_key_prefix = self.token_key_prefix.as_ref().or(renamed_flag(
            "token-prefix",
            "token-key-prefix",
            self.token_prefix.as_ref(),
        ));
        let user_key_prefix = self.user_key_prefix.as_ref().or(renamed_flag(
            "user-prefix",
            "user-key-prefix",
            self.user_prefix.as_ref(),
        ));
        let default_expire_seconds = self.default_expire_seconds.or(renamed_flag(
            "default-expire",
            "default-expire-seconds",
            self.default_expire,
        ));
        if let Some(prefix) = token_key_prefix {
            settings.token_key_prefix.clone_from(prefix);
        }
        if let Some(prefix) = user_key_prefix {
            settings.user_key_prefix.clone_from(prefix);
        }
        if let Some(seconds) = default_expire_seconds {
            settings.default_expire_seconds = seconds;
        }
        settings.single_mode |= self.single_mode;
    }
}

/// The user loader: each flag overrides the config file's `[loader]`
/// (see examples/dsession.toml and the README's "User loaders").
#[derive(Debug, Args)]
pub(crate) struct LoaderArgs {
    /// Where user detail comes from when the user-info cache has none.
    #[arg(long = "loader", env = "DSESSION_LOADER", value_enum)]
    kind: Option<LoaderKind>,
    /// http: the URL template, `{id}` standing for the percent-encoded
    /// user id; postgres, mysql: the database URL.
    #[arg(long = "loader-url", env = "DSESSION_LOADER_URL")]
    url: Option<String>,
    /// postgres, mysql: the query; its one parameter is the user id.
    #[arg(long = "loader-query", env = "DSESSION_LOADER_QUERY")]
    query: Option<String>,
    /// http: an extra request header; repeat for several.
    #[arg(long = "loader-header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// http: the environment variable holding a token sent as
    /// `Authorization: Bearer`.
    #[arg(
        long = "loader-bearer-token-env",
        env = "DSESSION_LOADER_BEARER_TOKEN_ENV",
        value_name = "VARIABLE"
    )]
    bearer_token_env: Option<String>,
    /// The longest one load may take, in milliseconds [default: 2000].
    #[arg(long = "loader-timeout-ms", env = "DSESSION_LOADER_TIMEOUT_MS")]
    timeout_ms: Option<u64>,
    /// How long "user has no detail" is remembered, in milliseconds; 0
    /// turns it off [default: 5000].
    #[arg(
        long = "loader-no-detail-cache-ms",
        env = "DSESSION_LOADER_NO_DETAIL_CACHE_MS"
    )]
    no_detail_cache_ms: Option<u64>,
    /// What a check that loads the user answers when the loader fails
    /// [default: fail].
    #[arg(long = "loader-on-error", env = "DSESSION_LOADER_ON_ERROR", value_enum)]
    on_error: Option<OnLoaderError>,
}

impl LoaderArgs {
    fn apply(&self, loader: &mut LoaderConfig) -> anyhow::Result<()> {
        if let Some(kind) = self.kind {
            loader.kind = kind;
        }
        if let Some(url) = &self.url {
            loader.url = Some(url.clone());
        }
        if let Some(query) = &self.query {
            loader.query = Some(query.clone());
        }
        for header in &self.headers {
            let (name, value) = header
                .split_once(':')
                .with_context(|| format!("--loader-header {header:?} is not `Name: value`"))?;
            loader
                .headers
                .insert(name.trim().to_owned(), value.trim().to_owned());
        }
        if let Some(variable) = &self.bearer_token_env {
            loader.bearer_token_env = Some(variable.clone());
        }
        if let Some(ms) = self.timeout_ms {
            loader.timeout_ms = ms;
        }
        if let Some(ms) = self.no_detail_cache_ms {
            loader.no_detail_cache_ms = ms;
        }
        if let Some(on_error) = self.on_error {
            loader.on_error = on_error;
        }
        Ok(())
    }
}

/// Splits a `key=value` flag; the value may hold `=`, the key may not be
/// empty.
pub(crate) fn parse_policy_config_pair(pair: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected key=value, got {pair:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_policy_config_pair as parse;

    #[test]
    fn pairs_split_at_the_first_equals_sign() {
        assert_eq!(parse("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse(" a =1"), Ok(("a".into(), "1".into())));
        assert_eq!(parse("a="), Ok(("a".into(), String::new())));
        assert!(parse("=1").is_err());
        assert!(parse("a").is_err());
    }
}
