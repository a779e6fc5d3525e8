//! The admin key guarding `/v1` and `/admin`, and forward-auth for gateways.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dsession::authenticator::bearer;
use dsession::{Authentication, Authenticator};
use subtle::ConstantTimeEq as _;

use crate::{AppError, AppState};

/// Lets a request through only with `Authorization: Bearer <admin key>`,
/// compared in constant time; open when no key is configured (loopback
/// only, as `serve` enforces).
pub async fn require_admin_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(key) = &state.0.admin_key {
        let presented = bearer(request.headers()).unwrap_or("");
        if !bool::from(presented.as_bytes().ct_eq(key.as_bytes())) {
            return AppError::Unauthorized.into_response();
        }
    }
    next.run(request).await
}

/// `GET /auth`: 200 with `X-User-Id` (and `X-User-Detail` when configured)
/// for a valid token, else 401 with `WWW-Authenticate: Bearer`. A store
/// failure is a 503, never a 401.
#[utoipa::path(
    method(get, head, post, put, delete, patch, options, trace),
    path = "/auth",
    tag = "forward-auth",
    security(("session_bearer" = []), ("session_header" = []), ("session_cookie" = [])),
    description = "Takes any method, as gateways forward the original request's. The token comes from `Authorization: Bearer`, `X-Session-Token` or the session cookie (percent-decoded), read as UTF-8. `X-User-Id` is the user id's UTF-8 bytes with every byte that is not visible ASCII, and `%` and `,`, percent-encoded as `%XX`.",
    responses(
        (status = 200, description = "Valid token; headers X-User-Id and, if configured, X-User-Detail"),
        (status = 401, description = "No valid token", body = crate::ErrorBody),
        (status = 500, description = "The policy failed (policy_error) or the store holds data it cannot read (corrupt_data)", body = crate::ErrorBody),
        (status = 503, description = "The store or the user loader is unavailable", body = crate::ErrorBody),
    )
)]
pub async fn forward_auth(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    match state.authenticator().authenticate(&headers).await? {
        Authentication::Valid(user) => {
            let mut response = StatusCode::OK.into_response();
            response
                .headers_mut()
                .extend(Authenticator::upstream_headers(&user));
            Ok(response)
        }
        Authentication::Missing => Err(AppError::InvalidToken { presented: false }),
        Authentication::Rejected => Err(AppError::InvalidToken { presented: true }),
    }
}
