//! `dsession serve`: the token service for gateways, built on the
//! `dsession` library's public API.
//!
//! [`app`] builds the router (tests drive it directly); [`serve`] builds
//! the state from a [`ServeConfig`], listens (and, with `grpc_listen`,
//! serves Envoy's gRPC `ext_authz` beside it), reloads the policy on
//! SIGHUP or file change, and shuts down gracefully.

mod admin;
mod client;
mod config;
mod connections;
mod error;
mod forward_auth;
mod grpc;
mod metrics;
mod openapi;
mod routes;
mod strict_json;

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
pub use self::error::AppError;
pub use self::grpc::serve_grpc_on;
pub use self::metrics::Metrics;
pub use self::openapi::openapi;
pub use self::routes::{CheckTokenResponse, RefreshedToken};
pub use dsession::{ErrorBody, ErrorDetail};

use dsession::{Authenticator, SessionManager};

/// What every request handler shares. Cloning it is cheap.
#[derive(Clone)]
pub struct AppState(Arc<RouteContext>);

/// The authenticator, the admin key, the metrics and the limits the
/// routes and the accept loop read.
struct RouteContext {
    authenticator: Authenticator,
    admin_key: Option<String>,
    loader_readyz: bool,
    metrics: Metrics,
    policy_path: Option<PathBuf>,
    policy_config: std::collections::BTreeMap<String, String>,
    policy_history: admin::PolicyHistory,
    trusted_proxies: Vec<client::Network>,
    body_limit: usize,
    body_timeout: Duration,
    connections: ConnectionLimits,
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
    /// `metrics` count every operation when `sessions` was built with them
    /// as its observer (as [`build_state`] does); otherwise only requests.
    pub fn new(sessions: SessionManager, config: &ServeConfig, metrics: Metrics) -> Self {
        let limits = &config.limits;
        Self(Arc::new(RouteContext {
            authenticator: config.authenticator(sessions),
            admin_key: config.admin_key().map(str::to_owned),
            loader_readyz: config.loader.readyz,
            metrics,
            policy_path: config.policy.path.clone(),
            policy_config: config.policy.config.clone(),
            policy_history: admin::PolicyHistory::new(),
            trusted_proxies: config.trusted_proxies().unwrap_or_default(),
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
        }))
    }

    /// The session manager.
    pub fn sessions(&self) -> &SessionManager {
        self.0.authenticator.sessions()
    }

    /// How `GET /auth` and `/v1/tokens/check` check tokens.
    pub fn authenticator(&self) -> &Authenticator {
        &self.0.authenticator
    }

    /// Compiles and validates the policy file, then swaps it in; calls in
    /// flight finish on the old policy. On failure the old policy keeps
    /// serving. Returns what the new policy exports.
    pub async fn reload_policy(&self) -> Result<Vec<String>, AppError> {
        let Some(path) = &self.0.policy_path else {
            return Err(AppError::BadRequest(
                "no policy file is configured: the built-in policy has nothing to reload".into(),
            ));
        };
        match self.sessions().reload_policy_from(path).await {
            Ok(policy) => {
                tracing::info!(?path, "policy reloaded");
                self.0.policy_history.reloaded(Ok(()));
                Ok(policy.describe_exports())
            }
            Err(error) => {
                tracing::error!(?path, %error, "policy reload rejected; the old policy keeps serving");
                self.0.policy_history.reloaded(Err(error.to_string()));
                Err(AppError::BadRequest(format!(
                    "policy rejected, the old one keeps serving: {error}"
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
        .route("/v1/policy", get(admin::policy_info))
        .route("/v1/events", get(admin::events))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            forward_auth::require_admin_key,
        ));
    Router::new()
        .merge(admin)
        .route("/auth", any(forward_auth::forward_auth))
        // A catch-all never matches an empty rest: `/auth/` is Envoy's call
        // for the client's `/`.
        .route("/auth/", any(forward_auth::forward_auth_prefixed))
        .route("/auth/{*path}", any(forward_auth::forward_auth_prefixed))
        .route("/admin", get(admin::console_page))
        .route("/admin/{file}", get(admin::console_asset))
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

/// Builds the state a config describes ([`ServeConfig::open`]), its
/// metrics observing every operation.
pub async fn build_state(config: &ServeConfig) -> anyhow::Result<AppState> {
    config.validate()?;
    let metrics = Metrics::default();
    let sessions = config.open(Some(Arc::new(metrics.clone()))).await?;
    Ok(AppState::new(sessions, config, metrics))
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

/// Runs the service described by `config` until `shutdown` resolves: HTTP
/// on `listen` and, when `grpc_listen` is set, gRPC `ext_authz` there; both
/// stop together.
pub async fn serve(
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = build_state(&config).await?;
    for warning in routes::memory_warnings(state.sessions().store().as_ref()).await {
        tracing::warn!("the session store can lose sessions: {warning}");
    }
    reload_on_sighup(state.clone())?;
    if let (true, Some(path)) = (config.policy.watch, &config.policy.path) {
        watch_policy_file(state.clone(), path.clone());
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let Some(grpc_listen) = config.grpc_listen else {
        tracing::info!(address = %listener.local_addr()?, store = config.store.kind(), "dsession listening");
        return serve_on(listener, state, shutdown).await;
    };
    let grpc = TcpListener::bind(grpc_listen)
        .await
        .with_context(|| format!("cannot listen for gRPC on {grpc_listen}"))?;
    tracing::info!(
        address = %listener.local_addr()?,
        grpc = %grpc.local_addr()?,
        store = config.store.kind(),
        "dsession listening"
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        stop.send_replace(true);
    });
    let stopping = move || {
        let mut stopped = stopped.clone();
        async move {
            // A dropped sender stops the listeners too.
            let _ = stopped.wait_for(|stopped| *stopped).await;
        }
    };
    tokio::try_join!(
        serve_on(listener, state.clone(), stopping()),
        serve_grpc_on(grpc, state, stopping()),
    )?;
    Ok(())
}
