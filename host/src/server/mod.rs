//! `dsession serve`: the token service for gateways.
//!
//! [`app`] builds the router (tests drive it directly); [`serve`] builds
//! the state from a [`ServeConfig`], listens, reloads the policy on SIGHUP
//! or file change, and shuts down gracefully.

mod auth;
mod config;
mod connections;
mod error;
mod metrics;
mod openapi;
mod routes;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{any, get, post, put};
use tokio::net::TcpListener;

pub use self::config::{
    AuthConfig, LimitsConfig, LoaderConfig, LoaderKind, OnLoaderError, PolicyConfig, ServeConfig,
};
pub use self::connections::ConnectionLimits;
pub use self::error::{AppError, ErrorBody, ErrorDetail};
pub use self::metrics::Metrics;
pub use self::openapi::openapi;

use crate::{Error, Limits, Policy, SessionManager, Settings};

/// What every request handler shares. Cloning it is cheap.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

struct Shared {
    sessions: SessionManager,
    admin_key: Option<String>,
    auth: AuthConfig,
    loader_on_error: OnLoaderError,
    loader_readyz: bool,
    metrics: Metrics,
    policy_path: Option<PathBuf>,
    settings: Settings,
    policy_config: BTreeMap<String, String>,
    policy_limits: Limits,
    body_limit: usize,
    body_timeout: Duration,
    connections: ConnectionLimits,
    reloading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("policy_path", &self.0.policy_path)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State for `sessions` with the parts of `config` the routes use.
    pub fn new(sessions: SessionManager, config: &ServeConfig) -> Self {
        let limits = &config.limits;
        let metrics = Metrics::default();
        if let Some(loader) = sessions.loader() {
            metrics.include_loader(loader.metrics());
        }
        Self(Arc::new(Shared {
            sessions,
            admin_key: config.admin_key().map(str::to_owned),
            auth: config.auth.clone(),
            loader_on_error: config.loader.on_error,
            loader_readyz: config.loader.readyz,
            metrics,
            policy_path: config.policy.path.clone(),
            settings: config.settings.clone(),
            policy_config: config.policy.config.clone(),
            policy_limits: limits.policy_limits(),
            body_limit: limits.body_bytes,
            body_timeout: Duration::from_millis(limits.body_timeout_ms),
            connections: ConnectionLimits {
                header_read_timeout: Duration::from_millis(limits.header_read_timeout_ms),
                idle_timeout: Duration::from_millis(limits.idle_timeout_ms),
                max_connections: limits
                    .max_connections
                    .unwrap_or_else(connections::default_max_connections),
                shutdown_timeout: Duration::from_millis(limits.shutdown_timeout_ms),
            },
            reloading: tokio::sync::Mutex::new(()),
        }))
    }

    /// The session manager.
    pub fn sessions(&self) -> &SessionManager {
        &self.0.sessions
    }

    /// Runs one policy call and records it in the metrics.
    async fn call<T>(
        &self,
        operation: &str,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let outcome = call.await;
        self.0.metrics.policy_call(operation, started, outcome)
    }

    /// check-token, or with `user_ttl` check-token-or-update-user.
    async fn check(
        &self,
        token: &str,
        user_ttl: Option<i64>,
    ) -> Result<Option<crate::User>, Error> {
        let sessions = &self.0.sessions;
        match user_ttl {
            Some(ttl) => {
                let loaded = self
                    .call(
                        "check_token_or_update_user",
                        sessions.check_token_or_update_user(token, ttl),
                    )
                    .await;
                match loaded {
                    // A plain check answers without detail and caches
                    // nothing, so the failure is not remembered as "no
                    // detail".
                    Err(Error::Loader(reason))
                        if self.0.loader_on_error == OnLoaderError::NoDetail =>
                    {
                        tracing::warn!(%reason, "the user loader failed; answering without detail");
                        self.0.metrics.loader_fallback();
                        self.call("check_token", sessions.check_token(token)).await
                    }
                    loaded => loaded,
                }
            }
            None => self.call("check_token", sessions.check_token(token)).await,
        }
    }

    /// `policy` once it has taken this service's settings on the store in
    /// use: the one check that startup, SIGHUP, the admin route and the
    /// file watch all run.
    async fn accepts(&self, policy: Policy) -> anyhow::Result<Policy> {
        check_policy(
            policy,
            Arc::clone(self.0.sessions.store()),
            &self.0.settings,
            &self.0.policy_config,
            self.0.policy_limits,
        )
        .await
    }

    /// Compiles and validates the policy file, then swaps it in; calls in
    /// flight finish on the old policy. On failure the old policy keeps
    /// serving. Returns what the new policy exports.
    pub async fn reload_policy(&self) -> Result<Vec<String>, AppError> {
        let Some(path) = self.0.policy_path.clone() else {
            return Err(AppError::BadRequest(
                "no policy file is configured: the built-in policy has nothing to reload".into(),
            ));
        };
        let _one_at_a_time = self.0.reloading.lock().await;
        let loaded = tokio::task::spawn_blocking(move || Policy::load(&path))
            .await
            .map_err(|e| Error::Policy(format!("the policy compiler failed: {e}")))?;
        let loaded = match loaded {
            Ok(policy) => self.accepts(policy).await,
            Err(error) => Err(error),
        };
        match loaded {
            Ok(policy) => {
                let exports = policy.describe_exports();
                self.0.sessions.swap_policy(policy);
                self.0.metrics.reload(true);
                tracing::info!(path = ?self.0.policy_path, "policy reloaded");
                Ok(exports)
            }
            Err(error) => {
                self.0.metrics.reload(false);
                tracing::error!(path = ?self.0.policy_path, error = format!("{error:#}"), "policy reload rejected; the old policy keeps serving");
                Err(AppError::BadRequest(format!(
                    "policy rejected, the old one keeps serving: {error:#}"
                )))
            }
        }
    }
}

/// Counts and logs every request by its route (never its raw path).
async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state.0.metrics.request(&route, &method, status, started);
    tracing::debug!(
        method = %method,
        route,
        status,
        micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    response
}

/// Answers 413 from a `Content-Length` past the limit alone, before a
/// byte of the body is read.
async fn refuse_oversized_bodies(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    let limit = state.0.body_limit;
    match declared {
        Some(length) if length > limit as u64 => {
            AppError::PayloadTooLarge(format!("the body is {length} bytes; the limit is {limit}"))
                .into_response()
        }
        _ => next.run(request).await,
    }
}

/// The service's routes.
pub fn app(state: AppState) -> Router {
    let admin = Router::new()
        .route("/v1/tokens", post(routes::create_token))
        .route("/v1/tokens/check", post(routes::check_token))
        .route("/v1/tokens/refresh", post(routes::refresh_token))
        .route("/v1/tokens/revoke", post(routes::revoke_token))
        .route(
            "/v1/users/{id}/tokens",
            get(routes::list_user_tokens).delete(routes::revoke_user_tokens),
        )
        .route(
            "/v1/users/{id}",
            put(routes::add_user).delete(routes::delete_user),
        )
        .route("/v1/users/refresh", post(routes::refresh_users))
        .route("/admin/policy/reload", post(routes::reload_policy))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin_key,
        ));
    Router::new()
        .merge(admin)
        .route("/auth", any(auth::forward_auth))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(routes::openapi_json))
        .fallback(|| async { AppError::RouteNotFound })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(state.0.body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_oversized_bodies,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Builds the state a config describes: connects the store, loads the
/// policy, and checks that the policy accepts the settings.
pub async fn build_state(config: &ServeConfig) -> anyhow::Result<AppState> {
    config.validate()?;
    let store = config.store.open().await?;
    let policy = match &config.policy.path {
        Some(path) => Policy::load(path)?,
        None => Policy::builtin()?,
    };
    let limits = config.limits.policy_limits();
    let policy = check_policy(
        policy,
        Arc::clone(&store),
        &config.settings,
        &config.policy.config,
        limits,
    )
    .await?;
    let builder = SessionManager::builder()
        .shared_store(store)
        .policy(policy)
        .settings(config.settings.clone())
        .policy_config(config.policy.config.clone())
        .limits(limits);
    let sessions = config.loader.attach(builder)?.build()?;
    Ok(AppState::new(sessions, config))
}

/// Returns `policy` once a call shows it takes `settings` and
/// `policy_config`: the policy checks both on every call, so a bad setting
/// or a policy that refuses them fails here rather than on each request.
/// On a Redis Cluster, its atomic steps and transactions must also keep to
/// one slot ([`crate::check_slot_layout`]).
async fn check_policy(
    policy: Policy,
    store: Arc<dyn crate::store::Store>,
    settings: &Settings,
    policy_config: &BTreeMap<String, String>,
    limits: Limits,
) -> anyhow::Result<Policy> {
    let sharded = store.is_sharded();
    let trial = SessionManager::builder()
        .shared_store(store)
        .policy(policy.clone())
        .settings(settings.clone())
        .policy_config(policy_config.clone())
        .limits(limits)
        .build()?;
    // A well-formed token nobody holds.
    let probe = "dsession-startup-check_00000000000000000000000000000000";
    match trial.check_token(probe).await {
        Err(Error::InvalidArgument(reason)) => {
            anyhow::bail!("the policy rejects the settings: {reason}")
        }
        Err(error) => Err(error).context("the first call to the policy failed"),
        Ok(_) if sharded => {
            crate::check_slot_layout(&policy, settings, policy_config).await?;
            Ok(policy)
        }
        Ok(_) => Ok(policy),
    }
}

/// Reloads the policy whenever its file's modification time changes.
fn watch_policy_file(state: AppState, path: PathBuf) {
    let modified = |path: &PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    tokio::spawn(async move {
        let mut last: Option<SystemTime> = modified(&path);
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticks.tick().await;
            let now = modified(&path);
            if now.is_some() && now != last {
                last = now;
                // A failed reload is logged and counted; the old policy serves on.
                let _ = state.reload_policy().await;
            }
        }
    });
}

/// Reloads the policy on SIGHUP.
fn reload_on_sighup(state: AppState) -> anyhow::Result<()> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the policy");
            let _ = state.reload_policy().await;
        }
    });
    Ok(())
}

/// Serves `state` on `listener` until `shutdown` resolves; requests in
/// flight then get `limits.shutdown_timeout_ms` to finish.
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limits = state.0.connections.clone();
    connections::serve(listener, app(state), limits, shutdown).await;
    Ok(())
}

/// Runs the service described by `config` until `shutdown` resolves.
pub async fn serve(
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = build_state(&config).await?;
    reload_on_sighup(state.clone())?;
    if let (true, Some(path)) = (config.policy.watch, &config.policy.path) {
        watch_policy_file(state.clone(), path.clone());
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(address = %listener.local_addr()?, store = config.store.kind(), "dsession listening");
    serve_on(listener, state, shutdown).await
}
