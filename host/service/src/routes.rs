//! The JSON API under `/v1`, the admin routes, and the probes.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{IntoResponses, ToSchema};

use crate::strict_json::StrictValue;
use crate::{AppError, AppState, ErrorBody};
use dsession::UserLoader as _;
use dsession::store::Store;
use dsession::{IssuedToken, PageRequest, SessionAttributes, TokenPage, User, UserInfo};

/// A JSON object body, read as [`StrictValue`] does, whose rejections (bad
/// JSON, a duplicate key, not an object, unknown fields, too large, too
/// slow) become errors in the service's shape.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let read = Json::<StrictValue>::from_request(request, state);
        let Json(StrictValue(value)) = tokio::time::timeout(state.0.body_timeout, read)
            .await
            .map_err(|_| AppError::RequestTimeout)??;
        // serde reads a struct from an array too (`["alice",60]`): only an
        // object names its fields.
        if !value.is_object() {
            return Err(AppError::BadRequest(
                "the request body must be a JSON object".into(),
            ));
        }
        serde_json::from_value(value)
            .map(Self)
            .map_err(|e| AppError::BadRequest(format!("invalid request body: {e}")))
    }
}

/// A path parameter whose rejection (say, `%FF`, not UTF-8, or `%zz`, not
/// an escape) is an error in the service's shape.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // The decoder would keep `%zz` as it is: another id than was meant.
        let path = parts.uri.path().as_bytes();
        let escape = |at: usize| {
            path.get(at..at + 2)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
        };
        if let Some(at) = (0..path.len()).find(|&at| path[at] == b'%' && !escape(at + 1)) {
            return Err(AppError::BadRequest(format!(
                "the path holds a malformed percent-escape at byte {at}: `%` must be followed by two hex digits"
            )));
        }
        let Path(value) = Path::<String>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// A user id as the built-in policies take it, for the OpenAPI document
/// (never built): see [`UserId::DESCRIPTION`].
struct UserId;

impl UserId {
    const DESCRIPTION: &str = "A user id as the built-in policies take it: 1 to 1024 bytes of UTF-8, \
        no control character, no white space at either end, and for the default policy none ending \
        in `_` and 32 hex digits. Which ids are valid is policy-defined; other policies may take others.";
    /// A first and last character that is neither a control character
    /// (Unicode Cc) nor white space (Unicode White_Space), and none
    /// between that is a control character.
    const PATTERN: &str = concat!(
        r"^[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
        r"([^\x00-\x1f\x7f-\x9f]*",
        r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?$"
    );
}

impl utoipa::PartialSchema for UserId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(Self::DESCRIPTION))
            .min_length(Some(1))
            .max_length(Some(1024))
            .pattern(Some(Self::PATTERN))
            .into()
    }
}

impl ToSchema for UserId {}

/// The longest TTL, in seconds, the built-in policies take (ten years), as
/// the OpenAPI document states it.
const MAX_TTL_SECONDS: i64 = 315_360_000;

/// The errors every `/v1` route may answer besides its own, for the
/// OpenAPI document.
#[derive(IntoResponses)]
#[expect(dead_code, reason = "never built: it only lists responses")]
enum ApiErrors {
    #[response(status = 400)]
    BadRequest(ErrorBody),
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    #[response(
        status = 503,
        description = "The store is unavailable (store_error) or out of memory, refusing writes past Redis's maxmemory (store_out_of_memory); the loader is unavailable (loader_error); no policy instance came free (overloaded)"
    )]
    Unavailable(ErrorBody),
    #[response(
        status = 500,
        description = "The policy failed (policy_error: trapped, ran past its time or memory limit) or the store holds data it cannot read (corrupt_data)"
    )]
    Failed(ErrorBody),
}

/// `POST /v1/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// The user to log in.
    #[schema(value_type = UserId)]
    pub user_id: String,
    /// Lifetime in seconds; 0 or absent means the default.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 315360000)]
    pub ttl: i64,
    /// Where the login comes from, kept with the session and listed with
    /// it; each field optional and bounded.
    #[serde(default, deserialize_with = "object")]
    pub attributes: SessionAttributes,
}

/// A struct read from a JSON object alone: serde would take an array of
/// its fields in order too.
fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    use serde::de::Error as _;
    let object = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
    serde_json::from_value(serde_json::Value::Object(object)).map_err(D::Error::custom)
}

/// `POST /v1/tokens/check`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckTokenRequest {
    /// The token, at most 1057 bytes.
    #[schema(min_length = 1)]
    pub token: String,
    /// Also return the user's detail (user-info cache, then loader).
    #[serde(default)]
    pub load_user: bool,
    /// How long loaded detail is cached, in seconds; 0 means the default.
    /// Checked also when `load_user` is false.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 315360000)]
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
    /// The token, at most 1057 bytes.
    #[schema(min_length = 1)]
    pub token: String,
    /// New lifetime from now, in seconds; 0 or absent means the default.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 315360000)]
    pub ttl: i64,
}

/// A refreshed token's new expiry.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefreshedToken {
    /// When it now expires, as unix seconds; -1 when it never does.
    pub token_expire_time: i64,
}

/// `POST /v1/tokens/revoke`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeTokenRequest {
    /// The token, at most 1057 bytes.
    #[schema(min_length = 1)]
    pub token: String,
}

/// The tokens a page of `GET /v1/users/{id}/tokens` lists when the
/// request names no `limit`.
pub const DEFAULT_PAGE_LIMIT: u32 = 100;
/// The most tokens one page lists.
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// The query of `GET /v1/users/{id}/tokens`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The `next_cursor` of the page before; absent for the first page.
    /// The built-in policies' cursors are a whole number and lowercase hex
    /// digits; any of that form names a place in the list.
    #[param(pattern = r"^-?[0-9]{1,18} [0-9a-f]{1,64}$")]
    pub cursor: Option<String>,
    /// The most tokens on the page, 1 to 1000; absent means 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

impl PageQuery {
    fn page(self) -> Result<PageRequest, AppError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
        if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
            return Err(AppError::BadRequest(format!(
                "limit must be between 1 and {MAX_PAGE_LIMIT}, got {limit}"
            )));
        }
        Ok(PageRequest {
            cursor: self.cursor,
            limit,
        })
    }
}

/// A query string whose rejection is an error in the service's shape.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|e| AppError::BadRequest(format!("invalid query: {}", e.body_text())))?;
        Ok(Self(value))
    }
}

/// `PUT /v1/users/{id}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddUserRequest {
    /// How long the user-info entry lives, in seconds; 0 or absent means
    /// the default.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 315360000)]
    pub ttl: i64,
}

/// `POST /v1/users/refresh`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshUsersRequest {
    /// The users whose user-info entries to reload.
    #[schema(value_type = Vec<UserId>)]
    pub ids: Vec<String>,
    /// How long the entries live, in seconds; 0 or absent means the default.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 315360000)]
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
    /// What an operator should fix although the service is ready: a Redis
    /// whose `maxmemory-policy` can evict sessions, or one whose policy
    /// could not be read. Left out when there is none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Health {
    fn new(status: impl Into<String>) -> Self {
        Self {
            status: status.into(),
            warnings: Vec::new(),
        }
    }
}

/// What an operator should know of how the store makes room once full:
/// each master that can evict session keys, or that its setting could
/// not be read (a managed Redis may refuse `CONFIG`); none when every
/// master keeps `noeviction` or has no memory limit.
pub(crate) async fn memory_warnings(store: &dyn Store) -> Vec<String> {
    match store.memory_policies().await {
        Ok(policies) => policies
            .iter()
            .filter(|policy| policy.evicts())
            .map(|policy| {
                format!(
                    "{policy}: once full it evicts keys, and each evicted session key logs a \
                     user out; volatile-* policies evict sessions too, since every session key \
                     has a TTL. Set maxmemory-policy noeviction: a full Redis then refuses \
                     logins (store_out_of_memory) and still revokes"
                )
            })
            .collect(),
        Err(error) => vec![format!(
            "the session store's maxmemory-policy is unknown ({error}): make sure it is \
             noeviction, since any other policy evicts session keys once Redis is full, \
             logging users out"
        )],
    }
}

/// Issues a token.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = CreateTokenRequest,
    security(("admin_key" = [])),
    responses((status = 201, body = IssuedToken),
        (status = 409, description = "Racing logins kept winning (conflict; retrying is safe), or the login would pass a session limit the policy keeps by refusing (the message names the limit)", body = ErrorBody),
        (status = 413, body = ErrorBody), ApiErrors))]
pub async fn create_token(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateTokenRequest>,
) -> Result<(StatusCode, Json<IssuedToken>), AppError> {
    let issued = state
        .sessions()
        .set_token_with(&request.user_id, request.ttl, &request.attributes)
        .await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// Checks a token, with the user's detail if asked.
#[utoipa::path(post, path = "/v1/tokens/check", tag = "tokens", request_body = CheckTokenRequest,
    security(("admin_key" = [])),
    responses((status = 200, body = CheckTokenResponse), ApiErrors))]
pub async fn check_token(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CheckTokenRequest>,
) -> Result<Json<CheckTokenResponse>, AppError> {
    // The policy sees user_ttl only when it loads: the bounds are checked
    // here, so that a request is refused or taken whatever load_user says.
    if !(0..=MAX_TTL_SECONDS).contains(&request.user_ttl) {
        return Err(AppError::BadRequest(format!(
            "user_ttl must be between 0 and {MAX_TTL_SECONDS} seconds, got {}",
            request.user_ttl
        )));
    }
    let user_ttl = request.load_user.then_some(request.user_ttl);
    let user = state
        .authenticator()
        .check(&request.token, user_ttl)
        .await?;
    Ok(Json(CheckTokenResponse {
        valid: user.is_some(),
        user,
    }))
}

/// Extends a live token.
#[utoipa::path(post, path = "/v1/tokens/refresh", tag = "tokens", request_body = RefreshTokenRequest,
    security(("admin_key" = [])),
    responses((status = 200, body = RefreshedToken), (status = 404, description = "Not live", body = ErrorBody), ApiErrors))]
pub async fn refresh_token(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<RefreshTokenRequest>,
) -> Result<Json<RefreshedToken>, AppError> {
    let token_expire_time = state
        .sessions()
        .refresh_token(&request.token, request.ttl)
        .await?;
    Ok(Json(RefreshedToken { token_expire_time }))
}

/// Revokes a token; revoking a dead one is fine.
#[utoipa::path(post, path = "/v1/tokens/revoke", tag = "tokens", request_body = RevokeTokenRequest,
    security(("admin_key" = [])),
    responses((status = 204), ApiErrors))]
pub async fn revoke_token(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<RevokeTokenRequest>,
) -> Result<StatusCode, AppError> {
    state.sessions().delete_token(&request.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists a page of a user's live tokens, newest first, with what each
/// login said of where it came from.
#[utoipa::path(get, path = "/v1/users/{id}/tokens", tag = "users",
    params(("id" = UserId, Path, description = "User id"), PageQuery),
    security(("admin_key" = [])),
    responses((status = 200, body = TokenPage), ApiErrors))]
pub async fn list_user_tokens(
    State(state): State<AppState>,
    PathParam(id): PathParam,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<TokenPage>, AppError> {
    let page = query.page()?;
    Ok(Json(
        state.sessions().list_user_token_page(&id, &page).await?,
    ))
}

/// Revokes every token of a user.
#[utoipa::path(delete, path = "/v1/users/{id}/tokens", tag = "users", params(("id" = UserId, Path, description = "User id")),
    security(("admin_key" = [])),
    responses((status = 204), ApiErrors))]
pub async fn revoke_user_tokens(
    State(state): State<AppState>,
    PathParam(id): PathParam,
) -> Result<StatusCode, AppError> {
    state.sessions().delete_user_token(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Loads a user into the user-info cache; without a user loader, 400.
#[utoipa::path(put, path = "/v1/users/{id}", tag = "users", params(("id" = UserId, Path, description = "User id")),
    request_body = AddUserRequest, security(("admin_key" = [])),
    responses((status = 200, body = UserInfo),
        (status = 400, description = "Invalid argument, or no user loader is configured (invalid_argument)", body = ErrorBody),
        ApiErrors))]
pub async fn add_user(
    State(state): State<AppState>,
    PathParam(id): PathParam,
    JsonBody(request): JsonBody<AddUserRequest>,
) -> Result<Json<UserInfo>, AppError> {
    let user = state.sessions().add_user(&id, request.ttl).await?;
    Ok(Json(user))
}

/// Removes a user's user-info cache entry.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "users", params(("id" = UserId, Path, description = "User id")),
    security(("admin_key" = [])),
    responses((status = 204), ApiErrors))]
pub async fn delete_user(
    State(state): State<AppState>,
    PathParam(id): PathParam,
) -> Result<StatusCode, AppError> {
    state.sessions().delete_user(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reloads the user-info cache of several users; without a user loader,
/// 400.
#[utoipa::path(post, path = "/v1/users/refresh", tag = "users", request_body = RefreshUsersRequest,
    security(("admin_key" = [])),
    responses((status = 204),
        (status = 400, description = "Invalid argument, or no user loader is configured (invalid_argument)", body = ErrorBody),
        ApiErrors))]
pub async fn refresh_users(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<RefreshUsersRequest>,
) -> Result<StatusCode, AppError> {
    state
        .sessions()
        .refresh_user(&request.ids, request.ttl)
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
    Json(Health::new("ok"))
}

/// Readiness: the store takes requests (in sentinel mode with durable
/// writes: they can be acknowledged as configured), and so does the
/// loader's source when `loader.readyz` is set. The reason when not. A
/// ready service lists in `warnings` what it found wrong all the same: a
/// Redis that can evict sessions (a `maxmemory-policy` other than
/// `noeviction`), or one whose policy could not be read.
#[utoipa::path(get, path = "/readyz", tag = "probes",
    responses((status = 200, description = "Ready; `warnings` when the store can evict sessions or its policy is unknown", body = Health),
        (status = 503, body = Health)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let not_ready = |status: String| (StatusCode::SERVICE_UNAVAILABLE, Json(Health::new(status)));
    if let Err(error) = state.sessions().store().ready().await {
        tracing::warn!(%error, "not ready: the session store");
        return not_ready(format!("the session store is not ready: {error}"));
    }
    if state.0.loader_readyz
        && let Some(loader) = state.sessions().loader()
        && let Err(error) = loader.ready().await
    {
        tracing::warn!(%error, "not ready: the user loader");
        return not_ready(format!("the user loader is unavailable: {error}"));
    }
    let health = Health {
        warnings: memory_warnings(state.sessions().store().as_ref()).await,
        ..Health::new("ok")
    };
    (StatusCode::OK, Json(health))
}

/// Prometheus metrics in text format.
#[utoipa::path(get, path = "/metrics", tag = "probes", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    if let Some(counts) = state.sessions().store().near_cache() {
        state.0.metrics.near_cache(&counts);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.0.metrics.render(),
    )
        .into_response()
}

/// This API as an OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "probes", responses((status = 200, content_type = "application/json")))]
pub async fn openapi_json() -> Response {
    Json(crate::openapi()).into_response()
}
