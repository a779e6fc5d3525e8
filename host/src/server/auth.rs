//! The admin key guarding `/v1` and `/admin`, and forward-auth for gateways.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use subtle::ConstantTimeEq as _;

use super::{AppError, AppState};
use crate::Error;

/// `X-Session-Token`: a token for clients that cannot set `Authorization`.
pub const SESSION_TOKEN_HEADER: &str = "x-session-token";
/// The user id of a valid token, for the upstream.
pub const USER_ID_HEADER: &str = "x-user-id";
/// The user's detail, base64url (no padding) of its JSON.
pub const USER_DETAIL_HEADER: &str = "x-user-detail";

/// A header's value as UTF-8: tokens of non-ASCII user ids travel as raw
/// UTF-8 bytes, which `HeaderValue::to_str` refuses.
fn utf8(value: &HeaderValue) -> Option<&str> {
    std::str::from_utf8(value.as_bytes()).ok()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = utf8(headers.get(header::AUTHORIZATION)?)?;
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

/// The value of cookie `name`, percent-decoded. Each `name=value` pair is
/// read on its own, so a neighbour that is not UTF-8 spoils nothing.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let split = pair.iter().position(|&b| b == b'=')?;
            let (key, value) = (pair[..split].trim_ascii(), &pair[split + 1..]);
            (key == name.as_bytes()).then_some(value.trim_ascii())
        })
        .find_map(|value| {
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            let decoded: Vec<u8> = percent_encoding::percent_decode(value).collect();
            String::from_utf8(decoded).ok()
        })
}

/// The token a request presents: `Authorization: Bearer`, then
/// `X-Session-Token`, then the session cookie.
fn presented_token(headers: &HeaderMap, cookie_name: &str) -> Option<String> {
    bearer(headers)
        .or_else(|| utf8(headers.get(SESSION_TOKEN_HEADER)?))
        .map(str::to_owned)
        .or_else(|| cookie(headers, cookie_name))
        .map(|token| token.trim().to_owned())
        .filter(|token| !token.is_empty())
}

/// The token cut to its user and first hex digits, for logs.
pub fn redact(token: &str) -> String {
    match token.rsplit_once('_') {
        Some((user, random)) => format!("{user}_{}…", random.get(..4).unwrap_or("")),
        None => "<malformed>".into(),
    }
}

/// Bytes of a user id that `X-User-Id` percent-encodes: all but visible
/// ASCII, and `%` and `,` (an upstream that splits list headers at commas
/// must not read two users).
const USER_ID_ENCODED: &AsciiSet = &CONTROLS.add(b' ').add(b'%').add(b',');

/// A user id as a header value: its UTF-8 bytes, with every byte that is
/// not visible ASCII, and `%` and `,`, percent-encoded as `%XX`.
fn header_safe(user_id: &str) -> HeaderValue {
    let text = utf8_percent_encode(user_id, USER_ID_ENCODED).to_string();
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
    method(get, head, post, put, delete, patch, options),
    path = "/auth",
    tag = "forward-auth",
    description = "Takes any method, as gateways forward the original request's. The token comes from `Authorization: Bearer`, `X-Session-Token` or the session cookie (percent-decoded), read as UTF-8. `X-User-Id` is the user id's UTF-8 bytes with every byte that is not visible ASCII, and `%` and `,`, percent-encoded as `%XX`.",
    responses(
        (status = 200, description = "Valid token; headers X-User-Id and, if configured, X-User-Detail"),
        (status = 401, description = "No valid token", body = super::ErrorBody),
        (status = 500, description = "The policy failed (policy_error) or the store holds data it cannot read (corrupt_data)", body = super::ErrorBody),
        (status = 503, description = "The store or the user loader is unavailable", body = super::ErrorBody),
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
    let token = token.as_str();
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
    use axum::http::HeaderName;

    #[test]
    fn the_token_comes_from_bearer_then_header_then_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; dsession_token=from-cookie"),
        );
        assert_eq!(
            presented_token(&headers, "dsession_token").as_deref(),
            Some("from-cookie")
        );
        headers.insert(
            SESSION_TOKEN_HEADER,
            HeaderValue::from_static("from-header"),
        );
        assert_eq!(
            presented_token(&headers, "dsession_token").as_deref(),
            Some("from-header")
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer from-bearer"),
        );
        assert_eq!(
            presented_token(&headers, "dsession_token").as_deref(),
            Some("from-bearer")
        );
        assert_eq!(presented_token(&HeaderMap::new(), "dsession_token"), None);
    }

    #[test]
    fn tokens_of_non_ascii_users_are_read_from_every_place() {
        let token = "józef_0123456789abcdef0123456789abcdef";
        let raw = HeaderValue::from_bytes(token.as_bytes()).unwrap();
        for (name, value) in [
            (
                header::AUTHORIZATION,
                HeaderValue::from_bytes(format!("Bearer {token}").as_bytes()).unwrap(),
            ),
            (HeaderName::from_static(SESSION_TOKEN_HEADER), raw.clone()),
            (
                header::COOKIE,
                HeaderValue::from_bytes(format!("dsession_token={token}").as_bytes()).unwrap(),
            ),
            (
                header::COOKIE,
                HeaderValue::from_static(
                    "dsession_token=j%C3%B3zef_0123456789abcdef0123456789abcdef",
                ),
            ),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(name.clone(), value);
            assert_eq!(
                presented_token(&headers, "dsession_token").as_deref(),
                Some(token),
                "from {name}"
            );
        }
    }

    #[test]
    fn a_non_ascii_neighbour_cookie_does_not_hide_the_session_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_bytes("lang=é; dsession_token=T".as_bytes()).unwrap(),
        );
        assert_eq!(
            presented_token(&headers, "dsession_token").as_deref(),
            Some("T")
        );
        headers.insert(
            header::COOKIE,
            HeaderValue::from_bytes(b"bad=\xff\xfe;dsession_token=\"U\"").unwrap(),
        );
        assert_eq!(
            presented_token(&headers, "dsession_token").as_deref(),
            Some("U")
        );
    }

    #[test]
    fn user_ids_become_header_safe() {
        assert_eq!(header_safe("alice_b"), "alice_b");
        assert_eq!(header_safe("a b%é"), "a%20b%25%C3%A9");
        assert_eq!(header_safe("admin, bob"), "admin%2C%20bob");
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
