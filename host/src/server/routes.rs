//! The JSON API under `/v1`, the admin routes, and the probes.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AppError, AppState, ErrorBody};
use crate::UserLoader as _;
use crate::{TokenEntry, User, UserInfo};

/// A JSON body whose rejections (bad JSON, unknown fields, too large)
/// become errors in the service's shape.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

/// `POST /v1/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// The user to log in.
    pub user_id: String,
    /// Lifetime in seconds; 0 or absent means the default.
    #[serde(default)]
    pub ttl: i64,
}

/// A token just issued.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// The token.
    pub token: String,
    /// When it expires, as unix seconds.
    pub expires_at: i64,
}

/// `POST /v1/tokens/check`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckTokenRequest {
    /// The token.
    pub token: String,
    /// Also return the user's detail (user-info cache, then loader).
    #[serde(default)]
    pub load_user: bool,
    /// How long loaded detail is cached, in seconds; 0 means the default.
    #[serde(default)]
    pub user_ttl: i64,
}

/// The verdict on a token.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckTokenResponse {
    /// Whether the token is live.
    pub valid: bool,
    /// Its user, when valid.
    pub user: Option<User>,
}

/// `POST /v1/tokens/refresh`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshTokenRequest {
    /// The token.
    pub token: String,
    /// New lifetime from now, in seconds; 0 or absent means the default.
    #[serde(default)]
    pub ttl: i64,
}

/// A refreshed token's new expiry.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefreshedToken {
    /// When it now expires, as unix seconds.
    pub expires_at: i64,
}

/// `POST /v1/tokens/revoke`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeTokenRequest {
    /// The token.
    pub token: String,
}

/// A user's live tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    /// The tokens, sorted.
    pub tokens: Vec<TokenEntry>,
}

/// `PUT /v1/users/{id}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddUserRequest {
    /// How long the user-info entry lives, in seconds; 0 or absent means
    /// the default.
    #[serde(default)]
    pub ttl: i64,
}

/// `POST /v1/users/refresh`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshUsersRequest {
    /// The users whose user-info entries to reload.
    pub ids: Vec<String>,
    /// How long the entries live, in seconds; 0 or absent means the default.
    #[serde(default)]
    pub ttl: i64,
}

/// A policy reload that took effect.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reloaded {
    /// Always true.
    pub reloaded: bool,
    /// What the new policy exports.
    pub exports: Vec<String>,
}

/// A probe's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or why not.
    pub status: String,
}

/// Issues a token.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = CreateTokenRequest,
    security(("admin_key" = [])),
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), AppError> {
    let issued = state
        .call(
            "set_token",
            state.sessions().set_token(&request.user_id, request.ttl),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: issued.token,
            expires_at: issued.token_expire_time,
        }),
    ))
}

/// Checks a token, with the user's detail if asked.
#[utoipa::path(post, path = "/v1/tokens/check", tag = "tokens", request_body = CheckTokenRequest,
    security(("admin_key" = [])),
    responses((status = 200, body = CheckTokenResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn check_token(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CheckTokenRequest>,
) -> Result<Json<CheckTokenResponse>, AppError> {
    let user_ttl = request.load_user.then_some(request.user_ttl);
    let user = state.check(&request.token, user_ttl).await?;
    Ok(Json(CheckTokenResponse {
        valid: user.is_some(),
        user,
    }))
}

/// Extends a live token.
#[utoipa::path(post, path = "/v1/tokens/refresh", tag = "tokens", request_body = RefreshTokenRequest,
    security(("admin_key" = [])),
    responses((status = 200, body = RefreshedToken), (status = 404, description = "Not live", body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn refresh_token(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<RefreshTokenRequest>,
) -> Result<Json<RefreshedToken>, AppError> {
    let expires_at = state
        .call(
            "refresh_token",
            state.sessions().refresh_token(&request.token, request.ttl),
        )
        .await?;
    Ok(Json(RefreshedToken { expires_at }))
}

/// Revokes a token; revoking a dead one is fine.
#[utoipa::path(post, path = "/v1/tokens/revoke", tag = "tokens", request_body = RevokeTokenRequest,
    security(("admin_key" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<RevokeTokenRequest>,
) -> Result<StatusCode, AppError> {
    state
        .call(
            "delete_token",
            state.sessions().delete_token(&request.token),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists a user's live tokens.
#[utoipa::path(get, path = "/v1/users/{id}/tokens", tag = "users", params(("id" = String, Path, description = "User id")),
    security(("admin_key" = [])),
    responses((status = 200, body = TokenList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn list_user_tokens(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TokenList>, AppError> {
    let tokens = state
        .call("list_user_token", state.sessions().list_user_token(&id))
        .await?;
    Ok(Json(TokenList { tokens }))
}

/// Revokes every token of a user.
#[utoipa::path(delete, path = "/v1/users/{id}/tokens", tag = "users", params(("id" = String, Path, description = "User id")),
    security(("admin_key" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn revoke_user_tokens(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    state
        .call("delete_user_token", state.sessions().delete_user_token(&id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Loads a user into the user-info cache.
#[utoipa::path(put, path = "/v1/users/{id}", tag = "users", params(("id" = String, Path, description = "User id")),
    request_body = AddUserRequest, security(("admin_key" = [])),
    responses((status = 200, body = UserInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn add_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<AddUserRequest>,
) -> Result<Json<UserInfo>, AppError> {
    let user = state
        .call("add_user", state.sessions().add_user(&id, request.ttl))
        .await?;
    Ok(Json(user))
}

/// Removes a user's user-info cache entry.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "users", params(("id" = String, Path, description = "User id")),
    security(("admin_key" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn delete_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    state
        .call("delete_user", state.sessions().delete_user(&id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reloads the user-info cache of several users.
#[utoipa::path(post, path = "/v1/users/refresh", tag = "users", request_body = RefreshUsersRequest,
    security(("admin_key" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn refresh_users(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<RefreshUsersRequest>,
) -> Result<StatusCode, AppError> {
    state
        .call(
            "refresh_user",
            state.sessions().refresh_user(&request.ids, request.ttl),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Recompiles the configured policy file and swaps it in; on failure the
/// old policy keeps serving.
#[utoipa::path(post, path = "/admin/policy/reload", tag = "admin", security(("admin_key" = [])),
    responses((status = 200, body = Reloaded), (status = 400, description = "Rejected; the old policy serves on", body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn reload_policy(State(state): State<AppState>) -> Result<Json<Reloaded>, AppError> {
    let exports = state.reload_policy().await?;
    Ok(Json(Reloaded {
        reloaded: true,
        exports,
    }))
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = "probes", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the store takes requests, and so does the loader's source
/// when `loader.readyz` is set.
#[utoipa::path(get, path = "/readyz", tag = "probes",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let not_ready = |status: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: status.into(),
            }),
        )
    };
    if let Err(error) = state.sessions().store().ready().await {
        tracing::warn!(%error, "not ready: the store is unavailable");
        return not_ready("the session store is unavailable");
    }
    if state.0.loader_readyz
        && let Some(loader) = state.sessions().loader()
        && let Err(error) = loader.ready().await
    {
        tracing::warn!(%error, "not ready: the user loader is unavailable");
        return not_ready("the user loader is unavailable");
    }
    (
        StatusCode::OK,
        Json(Health {
            status: "ok".into(),
        }),
    )
}

/// Prometheus metrics in text format.
#[utoipa::path(get, path = "/metrics", tag = "probes", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.0.metrics.render(),
    )
        .into_response()
}

/// This API as an OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "probes", responses((status = 200, content_type = "application/json")))]
pub async fn openapi_json() -> Response {
    Json(super::openapi()).into_response()
}
