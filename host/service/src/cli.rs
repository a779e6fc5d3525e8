//! The command line: parsing, running one command, printing its outcome.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use dsession::store::{StoreConfig, TlsFiles};
use dsession::{Authenticator, Error, Policy, SessionManager, Settings};
use dsession_service::{
    CheckTokenResponse, ErrorBody, ErrorDetail, LoaderConfig, LoaderKind, OnLoaderError,
    RefreshedToken, ServeConfig, TokenList,
};
use serde::Serialize;
use serde_json::json;

/// Distributed session tokens on Redis, with a swappable WebAssembly policy.
#[derive(Debug, Parser)]
#[command(name = "dsession", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the token service (JSON API and forward-auth). Without a config
    /// file: memory store, built-in policy, http://127.0.0.1:7480.
    Serve(ServeArgs),
    /// Issue, check, refresh, list and revoke tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Inspect policy components.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Measure each operation beside same-run baselines (docs/PERFORMANCE.md).
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Issue a token for a user.
    Create {
        /// The user id.
        #[arg(long)]
        user: String,
        /// Lifetime in seconds; 0 means the default.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        ttl: i64,
        #[command(flatten)]
        common: Common,
    },
    /// Check a token; exits 1 when it is not valid.
    Check {
        /// The token.
        #[arg(long)]
        token: String,
        /// Also load the user's detail (cache, then loader), caching it for
        /// this many seconds (0: the default).
        #[arg(long, allow_negative_numbers = true)]
        user_ttl: Option<i64>,
        #[command(flatten)]
        common: Common,
    },
    /// Extend a live token; exits 1 when it is not live.
    Refresh {
        /// The token.
        #[arg(long)]
        token: String,
        /// New lifetime in seconds from now; 0 means the default.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        ttl: i64,
        #[command(flatten)]
        common: Common,
    },
    /// Revoke a token.
    Revoke {
        /// The token.
        #[arg(long)]
        token: String,
        #[command(flatten)]
        common: Common,
    },
    /// List a user's live tokens.
    List {
        /// The user id.
        #[arg(long)]
        user: String,
        #[command(flatten)]
        common: Common,
    },
    /// Revoke every token of a user.
    RevokeAll {
        /// The user id.
        #[arg(long)]
        user: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Load and validate a policy component and say what it exports and
    /// which settings (`[policy.config]` keys) it reads.
    Check {
        /// The component, a `.wasm` file, or a built-in policy's name.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// How logs are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `dsession serve`: a config file, overridden by `DSESSION_*` environment
/// variables, overridden by flags. The admin key comes only from the file
/// or `DSESSION_ADMIN_KEY`, so that it never shows in a process list.
#[derive(Debug, Args)]
struct ServeArgs {
    /// A TOML config file (see examples/dsession.toml).
    #[arg(long, env = "DSESSION_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "DSESSION_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    store: StoreArgs,
    /// A policy component (`.wasm` file), or a built-in policy by name:
    /// `default` (gosession's layout) or `hardened`.
    #[arg(long, env = "DSESSION_POLICY")]
    policy: Option<PathBuf>,
    /// Reload the policy when its file changes.
    #[arg(long, env = "DSESSION_WATCH_POLICY")]
    watch_policy: bool,
    #[command(flatten)]
    policy_config: PolicyConfigArgs,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    loader: LoaderArgs,
    /// Log format.
    #[arg(long, env = "DSESSION_LOG_FORMAT", value_enum, default_value_t)]
    log_format: LogFormat,
}

impl ServeArgs {
    fn config(self) -> anyhow::Result<ServeConfig> {
        let mut config = match &self.config {
            Some(path) => ServeConfig::from_file(path)?,
            None => ServeConfig::default(),
        };
        if let Ok(key) = std::env::var("DSESSION_ADMIN_KEY") {
            config.admin_key = Some(key);
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(store) = self.store.config() {
            config.store = store;
        }
        if let Some(path) = self.policy {
            config.policy.path = Some(path);
        }
        config.policy.watch |= self.watch_policy;
        config.policy.config.extend(self.policy_config.pairs);
        self.settings.apply(&mut config.settings);
        self.loader.apply(&mut config.loader)?;
        Ok(config)
    }
}

/// Which store: one Redis server, Redis behind sentinels, a Redis Cluster,
/// or (none given) the in-memory store.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// Redis URL, `redis://[user:password@]host:port/db`.
    #[arg(long, env = "DSESSION_REDIS_URL", conflicts_with_all = ["sentinel", "cluster"])]
    redis: Option<String>,
    /// A Redis Cluster through these seed nodes,
    /// `redis://host:port,redis://host:port,…` (`rediss://` for TLS); the
    /// ACL user and password come from DSESSION_REDIS_USERNAME and
    /// DSESSION_REDIS_PASSWORD. Needs a policy that keeps each user's keys
    /// in one slot, such as `--policy hardened`.
    #[arg(
        long,
        env = "DSESSION_CLUSTER_NODES",
        value_delimiter = ',',
        conflicts_with = "sentinel"
    )]
    cluster: Vec<String>,
    /// Redis behind these sentinels, `host:port,host:port,…`; passwords come
    /// from DSESSION_REDIS_PASSWORD and DSESSION_SENTINEL_PASSWORD.
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

    /// The store the flags name, if any.
    pub(crate) fn config(&self) -> Option<StoreConfig> {
        let tls = TlsFiles {
            ca_file: self.redis_ca_file.clone(),
            client_cert_file: self.redis_client_cert.clone(),
            client_key_file: self.redis_client_key.clone(),
        };
        if let Some(url) = &self.redis {
            return Some(StoreConfig::Redis {
                url: url.clone(),
                connect_timeout_ms: 1000,
                command_timeout_ms: 1000,
                tls,
            });
        }
        if !self.cluster.is_empty() {
            return Some(StoreConfig::Cluster {
                nodes: self.cluster.clone(),
                username: std::env::var("DSESSION_REDIS_USERNAME").ok(),
                password: std::env::var("DSESSION_REDIS_PASSWORD").ok(),
                connect_timeout_ms: 1000,
                command_timeout_ms: 1000,
                min_replicas_ack: self.min_replicas_ack,
                ack_timeout_ms: 1000,
                tls,
            });
        }
        let master_name = self.master_name.clone()?;
        (!self.sentinel.is_empty()).then(|| StoreConfig::Sentinel {
            sentinels: self.sentinel.clone(),
            master_name,
            username: None,
            password: std::env::var("DSESSION_REDIS_PASSWORD").ok(),
            sentinel_password: std::env::var("DSESSION_SENTINEL_PASSWORD").ok(),
            db: 0,
            connect_timeout_ms: 1000,
            command_timeout_ms: 1000,
            min_replicas_ack: self.min_replicas_ack,
            ack_timeout_ms: 1000,
            tls: self.redis_tls.then_some(tls),
        })
    }
}

/// The policy's own settings, read by it through `wasi:config/store`.
#[derive(Debug, Args)]
struct PolicyConfigArgs {
    /// A policy setting, `key=value`; repeat for more (in the environment,
    /// comma-separated). Overrides `[policy.config]` key by key.
    /// `dsession policy check` lists the keys a policy reads.
    #[arg(
        long = "policy-config",
        env = "DSESSION_POLICY_CONFIG",
        value_delimiter = ',',
        value_parser = dsession::parse_policy_config_pair
    )]
    pairs: Vec<(String, String)>,
}

/// gosession's configuration chain; each flag overrides the default (or,
/// for `serve`, the config file).
#[derive(Debug, Args)]
struct SettingsArgs {
    /// Prefix of token keys [default: gosession-token].
    #[arg(long, env = "DSESSION_TOKEN_KEY_PREFIX")]
    token_prefix: Option<String>,
    /// Prefix of user-info keys [default: gosession-user].
    #[arg(long, env = "DSESSION_USER_KEY_PREFIX")]
    user_prefix: Option<String>,
    /// Default token lifetime in seconds [default: 604800].
    #[arg(long, env = "DSESSION_DEFAULT_EXPIRE_SECONDS")]
    default_expire: Option<i64>,
    /// Single-login mode: a new token revokes the user's others.
    #[arg(long, env = "DSESSION_SINGLE_MODE")]
    single_mode: bool,
}

impl SettingsArgs {
    fn apply(&self, settings: &mut Settings) {
        if let Some(prefix) = &self.token_prefix {
            settings.token_key_prefix.clone_from(prefix);
        }
        if let Some(prefix) = &self.user_prefix {
            settings.user_key_prefix.clone_from(prefix);
        }
        if let Some(seconds) = self.default_expire {
            settings.default_expire_seconds = seconds;
        }
        settings.single_mode |= self.single_mode;
    }
}

/// The user loader: each flag overrides the config file's `[loader]`
/// (see examples/dsession.toml and the README's "User loaders").
#[derive(Debug, Args)]
struct LoaderArgs {
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

/// Where tokens live, how they are laid out, and where user detail comes
/// from: the same settings as `serve`, from its config file, overridden by
/// flags.
#[derive(Debug, Args)]
struct Common {
    /// `serve`'s TOML config file: its store, settings, policy, loader and
    /// limits apply.
    #[arg(long, env = "DSESSION_CONFIG")]
    config: Option<PathBuf>,
    /// Without --redis, --sentinel or --cluster an empty in-memory store is used,
    /// which only suits trying things out.
    #[command(flatten)]
    store: StoreArgs,
    /// A policy component (`.wasm` file), or a built-in policy by name:
    /// `default` or `hardened`.
    #[arg(long, env = "DSESSION_POLICY")]
    policy: Option<PathBuf>,
    #[command(flatten)]
    policy_config: PolicyConfigArgs,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    loader: LoaderArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl Common {
    fn config(&self) -> anyhow::Result<ServeConfig> {
        let mut config = match &self.config {
            Some(path) => ServeConfig::from_file(path)?,
            None => ServeConfig::default(),
        };
        if let Some(store) = self.store.config() {
            config.store = store;
        }
        if let Some(path) = &self.policy {
            config.policy.path = Some(path.clone());
        }
        config
            .policy
            .config
            .extend(self.policy_config.pairs.iter().cloned());
        self.settings.apply(&mut config.settings);
        self.loader.apply(&mut config.loader)?;
        config.loader.validate(&config.limits)?;
        Ok(config)
    }

    /// The manager, checked as the service's is at start (the settings,
    /// and on a cluster the slot layout), with the checks the service's
    /// `/v1/tokens/check` makes.
    async fn authenticator(&self) -> anyhow::Result<Authenticator> {
        let config = self.config()?;
        let store = config.store.open().await?;
        let policy = match &config.policy.path {
            Some(path) => Policy::load(path)?,
            None => Policy::builtin()?,
        };
        let builder = SessionManager::builder()
            .settings(config.settings.clone())
            .limits(config.limits.policy_limits())
            .policy_config(config.policy.config.clone())
            .shared_store(store)
            .policy(policy);
        let manager = config
            .loader
            .attach(builder)?
            .build_checked()
            .await
            .context("cannot set up the session manager")?;
        let authenticator = Authenticator::new(manager);
        Ok(match config.loader.on_error {
            OnLoaderError::NoDetail => authenticator.without_detail_on_loader_error(),
            OnLoaderError::Fail => authenticator,
        })
    }

    async fn manager(&self) -> anyhow::Result<SessionManager> {
        Ok(self.authenticator().await?.sessions().clone())
    }
}

/// Logs go to stderr; `RUST_LOG` picks the level (default: info for the
/// service, warnings for one-off commands).
pub fn init_logging(cli: &Cli) {
    let (default_level, format) = match &cli.command {
        Command::Serve(args) => ("info", args.log_format),
        _ => ("warn", LogFormat::Text),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

async fn run_serve(args: ServeArgs) -> ExitCode {
    let outcome = match args.config() {
        Ok(config) => dsession_service::serve(config, shutdown_signal()).await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// What a command produced: text for people, JSON for programs, and
/// whether the answer was "yes".
struct Output {
    text: String,
    json: serde_json::Value,
    success: bool,
}

impl Output {
    fn yes(text: impl Into<String>, json: serde_json::Value) -> Self {
        Self {
            text: text.into(),
            json,
            success: true,
        }
    }

    fn no(text: impl Into<String>, json: serde_json::Value) -> Self {
        Self {
            success: false,
            ..Self::yes(text, json)
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

fn expiry(expire_time: i64) -> String {
    if expire_time < 0 {
        "never expires".into()
    } else {
        format!("expires at {expire_time} (in {} s)", expire_time - now())
    }
}

/// `value` as the HTTP API shows the same thing.
fn shape(value: impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).expect("API types serialize")
}

async fn run_token(command: TokenCommand) -> anyhow::Result<Result<Output, Error>> {
    Ok(match command {
        TokenCommand::Create { user, ttl, common } => {
            let issued = common.manager().await?.set_token(&user, ttl).await;
            issued.map(|issued| {
                let text = format!("{}\n{}", issued.token, expiry(issued.token_expire_time));
                Output::yes(text, shape(issued))
            })
        }
        TokenCommand::Check {
            token,
            user_ttl,
            common,
        } => {
            let authenticator = common.authenticator().await?;
            authenticator.check(&token, user_ttl).await.map(|user| {
                let text = match &user {
                    Some(user) => {
                        let detail = user
                            .detail
                            .as_ref()
                            .map(|detail| format!("\ndetail: {detail}"))
                            .unwrap_or_default();
                        format!(
                            "valid: user {}, {}{detail}",
                            user.id,
                            expiry(user.token_expire_time)
                        )
                    }
                    None => "not valid".to_owned(),
                };
                let valid = user.is_some();
                let json = shape(CheckTokenResponse { valid, user });
                if valid {
                    Output::yes(text, json)
                } else {
                    Output::no(text, json)
                }
            })
        }
        TokenCommand::Refresh { token, ttl, common } => {
            match common.manager().await?.refresh_token(&token, ttl).await {
                Ok(token_expire_time) => Ok(Output::yes(
                    format!("refreshed, {}", expiry(token_expire_time)),
                    shape(RefreshedToken { token_expire_time }),
                )),
                Err(error @ Error::NotFound) => Ok(Output::no(
                    "not live: nothing refreshed",
                    error_json(error.code(), &error.to_string()),
                )),
                Err(error) => Err(error),
            }
        }
        TokenCommand::Revoke { token, common } => common
            .manager()
            .await?
            .delete_token(&token)
            .await
            .map(|()| Output::yes("revoked", json!({ "revoked": true }))),
        TokenCommand::List { user, common } => common
            .manager()
            .await?
            .list_user_token(&user)
            .await
            .map(|tokens| {
                let text = if tokens.is_empty() {
                    format!("user {user} has no live tokens")
                } else {
                    tokens
                        .iter()
                        .map(|entry| {
                            let created = entry
                                .created_at
                                .map(|at| format!(", issued at {at}"))
                                .unwrap_or_default();
                            format!(
                                "{}  {}{created}",
                                entry.token,
                                expiry(entry.token_expire_time)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                Output::yes(text, shape(TokenList { tokens }))
            }),
        TokenCommand::RevokeAll { user, common } => common
            .manager()
            .await?
            .delete_user_token(&user)
            .await
            .map(|()| {
                Output::yes(
                    format!("revoked every token of user {user}"),
                    json!({ "revoked": true }),
                )
            }),
    })
}

async fn run_policy(command: PolicyCommand) -> anyhow::Result<Output> {
    let PolicyCommand::Check { file, .. } = command;
    let policy = Policy::load(&file)?;
    let exports = policy.describe_exports();
    let imports = policy.describe_imports();
    let config_keys = policy
        .config_keys()
        .await
        .context("the policy's describe export failed")?;
    let keys_text = match &config_keys {
        None => "(the policy does not describe its settings)".to_owned(),
        Some(keys) if keys.is_empty() => "(none)".to_owned(),
        Some(keys) => keys
            .iter()
            .map(|key| {
                let default = key
                    .default
                    .as_deref()
                    .map_or_else(|| "no default".to_owned(), |d| format!("default {d:?}"));
                format!("{} ({default}): {}", key.name, key.description)
            })
            .collect::<Vec<_>>()
            .join("\n  "),
    };
    let text = format!(
        "{} is a valid dsession policy\nexports:\n  {}\nimports:\n  {}\nconfig keys:\n  {keys_text}",
        file.display(),
        exports.join("\n  "),
        imports.join("\n  "),
    );
    let json_value = json!({
        "valid": true,
        "exports": exports,
        "imports": imports,
        "config_keys": config_keys,
    });
    Ok(Output::yes(text, json_value))
}

fn print(output: &Output, as_json: bool) -> ExitCode {
    if as_json {
        println!("{}", output.json);
    } else {
        println!("{}", output.text);
    }
    if output.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn wants_json(command: &Command) -> bool {
    match command {
        Command::Token(
            TokenCommand::Create { common, .. }
            | TokenCommand::Check { common, .. }
            | TokenCommand::Refresh { common, .. }
            | TokenCommand::Revoke { common, .. }
            | TokenCommand::List { common, .. }
            | TokenCommand::RevokeAll { common, .. },
        ) => common.json,
        Command::Policy(PolicyCommand::Check { json, .. }) => *json,
        Command::Bench(args) => args.json,
        Command::Serve(_) => false,
    }
}

/// An error in the HTTP API's shape.
fn error_json(code: &str, message: &str) -> serde_json::Value {
    json!(ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message: message.to_owned(),
        },
    })
}

fn fail(code: &str, message: &str, as_json: bool) -> ExitCode {
    if as_json {
        println!("{}", error_json(code, message));
    } else {
        eprintln!("error: {message}");
    }
    ExitCode::from(2)
}

/// Runs one command: exit 0 on success, 1 for a "no" (not valid, not
/// live), 2 for an error.
pub async fn run(cli: Cli) -> ExitCode {
    let as_json = wants_json(&cli.command);
    let outcome = match cli.command {
        Command::Serve(args) => return run_serve(args).await,
        Command::Token(command) => run_token(command).await,
        Command::Policy(command) => run_policy(command).await.map(Ok),
        Command::Bench(args) => {
            return match crate::bench::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail("setup", &format!("{error:#}"), as_json),
            };
        }
    };
    match outcome {
        Ok(Ok(output)) => print(&output, as_json),
        Ok(Err(error)) => fail(error.code(), &error.to_string(), as_json),
        Err(setup) => fail("setup", &format!("{setup:#}"), as_json),
    }
}
