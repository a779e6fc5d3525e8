//! The admin key guarding `/v1` and `/admin`, and forward-auth for gateways.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use subtle::ConstantTimeEq as _;

use super::{AppError, AppState};
use crate::Error;

/// `X-Session-Token`: a token for clients that cannot set `Authorization`.
pub const SESSION_TOKEN_HEADER: &str = "x-session-token";
/// The user id of a valid token, for the upstream.
pub const USER_ID_HEADER: &str = "x-user-id";
/// The user's detail, base64url (no padding) of its JSON.
pub const USER_DETAIL_HEADER: &str = "x-user-detail";

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// The token a request presents: `Authorization: Bearer`, then
/// `X-Session-Token`, then the session cookie.
fn presented_token<'a>(headers: &'a HeaderMap, cookie_name: &str) -> Option<&'a str> {
    bearer(headers)
        .or_else(|| headers.get(SESSION_TOKEN_HEADER)?.to_str().ok())
        .or_else(|| cookie(headers, cookie_name))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// The token cut to its user and first hex digits, for logs.
pub fn redact(token: &str) -> String {
    match token.rsplit_once('_') {
        Some((user, random)) => format!("{user}_{}…", random.get(..4).unwrap_or("")),
        None => "<malformed>".into(),
    }
}

/// A user id as a header value: as it is when it is visible ASCII,
/// percent-encoded otherwise.
fn header_safe(user_id: &str) -> HeaderValue {
    let plain = user_id.bytes().all(|b| b.is_ascii_graphic() && b != b'%');
    let text = if plain {
        user_id.to_owned()
    } else {
        user_id
            .bytes()
            .map(|b| {
                if b.is_ascii_graphic() && b != b'%' {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    HeaderValue::from_str(&text).expect("visible ASCII is a valid header value")
}

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
    get,
    path = "/auth",
    tag = "forward-auth",
    responses(
        (status = 200, description = "Valid token; headers X-User-Id and, if configured, X-User-Detail"),
        (status = 401, description = "No valid token", body = super::ErrorBody),
        (status = 503, description = "The store is unavailable", body = super::ErrorBody),
    )
)]
pub async fn forward_auth(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let config = &state.0.auth;
    let Some(token) = presented_token(&headers, &config.cookie) else {
        return Err(AppError::InvalidToken { presented: false });
    };
    let user_ttl = config.load_user.then_some(config.user_ttl_seconds);
    let user = match state.check(token, user_ttl).await {
        Ok(Some(user)) => user,
        Ok(None) | Err(Error::InvalidArgument(_)) => {
            tracing::debug!(token = redact(token), "forward-auth rejected a token");
            return Err(AppError::InvalidToken { presented: true });
        }
        Err(error) => return Err(error.into()),
    };
    if let Some(seconds) = config.refresh_on_check_seconds {
        match state
            .call(
                "refresh_token",
                state.sessions().refresh_token(token, seconds),
            )
            .await
        {
            Ok(_) => {}
            Err(Error::NotFound) => return Err(AppError::InvalidToken { presented: true }),
            Err(error) => return Err(error.into()),
        }
    }
    let mut response = StatusCode::OK.into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(USER_ID_HEADER, header_safe(&user.id));
    // Only check-token-or-update-user (load_user) returns detail.
    if let Some(detail) = user.detail {
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(detail.to_string());
        response_headers.insert(
            USER_DETAIL_HEADER,
            HeaderValue::from_str(&encoded).expect("base64 is a valid header value"),
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_bearer_then_header_then_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; dsession_token=from-cookie"),
        );
        assert_eq!(
            presented_token(&headers, "dsession_token"),
            Some("from-cookie")
        );
        headers.insert(
            SESSION_TOKEN_HEADER,
            HeaderValue::from_static("from-header"),
        );
        assert_eq!(
            presented_token(&headers, "dsession_token"),
            Some("from-header")
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer from-bearer"),
        );
        assert_eq!(
            presented_token(&headers, "dsession_token"),
            Some("from-bearer")
        );
        assert_eq!(presented_token(&HeaderMap::new(), "dsession_token"), None);
    }

    #[test]
    fn user_ids_become_header_safe() {
        assert_eq!(header_safe("alice_b"), "alice_b");
        assert_eq!(header_safe("a b%é"), "a%20b%25%C3%A9");
    }

    #[test]
    fn logs_see_only_a_token_prefix() {
        assert_eq!(
            redact("alice_0123456789abcdef0123456789abcdef"),
            "alice_0123…"
        );
        assert_eq!(redact("garbage"), "<malformed>");
    }
}
