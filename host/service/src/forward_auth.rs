//! The admin key guarding `/v1` and `/admin`, and forward-auth for
//! gateways: one decision ([`decide`]), answered over HTTP here and over
//! gRPC by [`crate::grpc`].

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dsession::authenticator::bearer;
use dsession::{Authentication, Authenticator, SessionAttributes};
use subtle::ConstantTimeEq as _;

use crate::{AppError, AppState};

/// Headers in which gateways that call `/auth` itself pass on the URI the
/// client asked for: Caddy and Traefik send `X-Forwarded-Uri`, the nginx
/// example sets `X-Original-URI`.
const ORIGINAL_URI_HEADERS: [&str; 2] = ["x-forwarded-uri", "x-original-uri"];
/// Headers in which such gateways pass on the client's method.
const ORIGINAL_METHOD_HEADERS: [&str; 2] = ["x-forwarded-method", "x-original-method"];

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

/// The request a gateway asks about, as the client sent it to the
/// gateway: its method and its URI (path and query). Empty when the
/// gateway did not say.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Original<'a> {
    /// The client's method.
    pub(crate) method: &'a str,
    /// The client's path and query.
    pub(crate) uri: &'a str,
}

/// What forward-auth answers one request, over HTTP or gRPC.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// A live token: the headers the upstream receives
    /// ([`Authenticator::upstream_headers`]).
    Allow(HeaderMap),
    /// No live token; whether a token was presented at all.
    Deny {
        /// Whether the request carried a token.
        presented: bool,
    },
}

/// Checks the token `headers` present, as [`Authenticator::authenticate`]
/// reads it, and logs the outcome beside the `original` request. An error
/// means nothing can be said (the store, the loader or the policy failed):
/// an outage, never a denial.
pub(crate) async fn decide(
    authenticator: &Authenticator,
    headers: &HeaderMap,
    original: Original<'_>,
    client: Option<&SessionAttributes>,
) -> Result<Verdict, dsession::Error> {
    let (verdict, outcome) = match authenticator.authenticate_from(headers, client).await {
        Ok(Authentication::Valid(user)) => (
            Verdict::Allow(Authenticator::upstream_headers(&user)),
            "valid",
        ),
        Ok(Authentication::Missing) => (Verdict::Deny { presented: false }, "missing"),
        Ok(Authentication::Rejected) => (Verdict::Deny { presented: true }, "rejected"),
        Err(error) => {
            tracing::debug!(
                original_method = original.method,
                original_uri = original.uri,
                outcome = error.code(),
                "forward-auth"
            );
            return Err(error);
        }
    };
    tracing::debug!(
        original_method = original.method,
        original_uri = original.uri,
        outcome,
        "forward-auth"
    );
    Ok(verdict)
}

/// The client's request as an HTTP call to forward-auth tells it: Envoy's
/// `path_prefix: /auth` puts the client's path (and query) after `/auth`
/// and keeps its method; gateways that call `/auth` itself name them in
/// headers ([`ORIGINAL_URI_HEADERS`], [`ORIGINAL_METHOD_HEADERS`]).
fn original<'a>(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap) -> Original<'a> {
    let named = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| headers.get(*name)?.to_str().ok())
    };
    let prefixed = uri
        .path_and_query()
        .map_or("", |target| target.as_str())
        .strip_prefix("/auth")
        .filter(|rest| rest.starts_with('/'));
    Original {
        method: named(&ORIGINAL_METHOD_HEADERS).unwrap_or(method.as_str()),
        uri: prefixed
            .or_else(|| named(&ORIGINAL_URI_HEADERS))
            .unwrap_or(""),
    }
}

/// Forward-auth over HTTP, for `/auth` and every path under it, from
/// `peer`.
async fn answer(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Result<Response, AppError> {
    let peer = peer.map(|Extension(ConnectInfo(peer))| peer.ip());
    let client = crate::client::client(headers, peer, &state.0.trusted_proxies);
    match decide(
        state.authenticator(),
        headers,
        original(method, uri, headers),
        client.as_ref(),
    )
    .await?
    {
        Verdict::Allow(upstream) => {
            let mut response = StatusCode::OK.into_response();
            response.headers_mut().extend(upstream);
            Ok(response)
        }
        Verdict::Deny { presented } => Err(AppError::InvalidToken { presented }),
    }
}

/// `GET /auth`: 200 with `X-User-Id` (and `X-User-Detail` when configured)
/// for a valid token, else 401 with `WWW-Authenticate: Bearer`. A store
/// failure is a 503, never a 401.
#[utoipa::path(
    method(get, head, post, put, delete, patch, options, trace),
    path = "/auth",
    tag = "forward-auth",
    security(("session_bearer" = []), ("session_header" = []), ("session_cookie" = [])),
    description = "Takes any method, as gateways forward the original request's. The token comes from `Authorization: Bearer`, `X-Session-Token` or the session cookie (percent-decoded), read as UTF-8. `X-User-Id` is the user id's UTF-8 bytes with every byte that is not visible ASCII, and `%` and `,`, percent-encoded as `%XX`. The client's URI and method, when the gateway sends them in `X-Forwarded-Uri` (or `X-Original-URI`) and `X-Forwarded-Method`, are logged with the outcome.",
    responses(
        (status = 200, description = "Valid token; headers X-User-Id and, if configured, X-User-Detail"),
        (status = 401, description = "No valid token", body = crate::ErrorBody),
        (status = 500, description = "The policy failed (policy_error) or the store holds data it cannot read (corrupt_data)", body = crate::ErrorBody),
        (status = 503, description = "The store or the user loader is unavailable", body = crate::ErrorBody),
    )
)]
pub async fn forward_auth(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Result<Response, AppError> {
    answer(&state, &method, &uri, &headers, peer).await
}

/// `/auth/{path}`: forward-auth for Envoy's HTTP `ext_authz`, whose
/// `path_prefix: /auth` sends the client's request here with its method
/// and its path after `/auth`. Answers as `/auth` does.
#[utoipa::path(
    method(get, head, post, put, delete, patch, options, trace),
    path = "/auth/{path}",
    tag = "forward-auth",
    security(("session_bearer" = []), ("session_header" = []), ("session_cookie" = [])),
    params(("path" = String, Path, description = "The client's path after its leading `/`, as Envoy's `path_prefix: /auth` appends it; it may hold `/` and a query, and may be empty (`/auth/`).")),
    description = "Envoy's HTTP `ext_authz` with `path_prefix: /auth`: the client's method, `/auth` followed by the client's path, the allowed headers and `Content-Length: 0`. Answers as `/auth` does; the client's method and path are logged with the outcome.",
    responses(
        (status = 200, description = "Valid token; headers X-User-Id and, if configured, X-User-Detail"),
        (status = 401, description = "No valid token", body = crate::ErrorBody),
        (status = 500, description = "The policy failed (policy_error) or the store holds data it cannot read (corrupt_data)", body = crate::ErrorBody),
        (status = 503, description = "The store or the user loader is unavailable", body = crate::ErrorBody),
    )
)]
pub async fn forward_auth_prefixed(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Result<Response, AppError> {
    answer(&state, &method, &uri, &headers, peer).await
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn the_original_request_comes_from_the_prefixed_path_then_the_headers() {
        let mut headers = HeaderMap::new();
        let post = Method::POST;
        let envoy: Uri = "/auth/api/orders?id=7".parse().unwrap();
        let seen = original(&post, &envoy, &headers);
        assert_eq!((seen.method, seen.uri), ("POST", "/api/orders?id=7"));
        let root: Uri = "/auth/".parse().unwrap();
        assert_eq!(original(&post, &root, &headers).uri, "/");

        let exact: Uri = "/auth".parse().unwrap();
        assert_eq!(original(&Method::GET, &exact, &headers).uri, "");
        headers.insert("x-original-uri", HeaderValue::from_static("/from-nginx"));
        assert_eq!(original(&Method::GET, &exact, &headers).uri, "/from-nginx");
        headers.insert("x-forwarded-uri", HeaderValue::from_static("/from-caddy"));
        headers.insert("x-forwarded-method", HeaderValue::from_static("DELETE"));
        let seen = original(&Method::GET, &exact, &headers);
        assert_eq!((seen.method, seen.uri), ("DELETE", "/from-caddy"));
        let unrelated: Uri = "/authority".parse().unwrap();
        assert_eq!(
            original(&Method::GET, &unrelated, &headers).uri,
            "/from-caddy"
        );
    }
}
