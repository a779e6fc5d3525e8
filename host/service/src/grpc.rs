//! Envoy's external authorization over gRPC:
//! `envoy.service.auth.v3.Authorization/Check` on `grpc_listen`, from the
//! protos the `envoy-types` crate publishes. Each check is the decision
//! `/auth` makes ([`forward_auth::decide`]), told in Envoy's messages:
//!
//! - a live token: status `OK` and an `OkHttpResponse` whose `headers` set
//!   `X-User-Id` (and `X-User-Detail`) over any the client sent;
//! - no token or a dead one: status `UNAUTHENTICATED` and a
//!   `DeniedHttpResponse` with `/auth`'s 401: its JSON body,
//!   `Content-Type` and `WWW-Authenticate`;
//! - nothing can be said (store, loader, policy): the call fails with
//!   gRPC `UNAVAILABLE` (or `INTERNAL`), which Envoy treats as an error of
//!   the authorization service, denied under `failure_mode_allow: false`.

use std::future::Future;
use std::time::Instant;

use anyhow::Context as _;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use dsession::ErrorBody;
use dsession::authenticator::{USER_DETAIL_HEADER, USER_ID_HEADER};
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderAppendAction, HeaderValue as EnvoyHeader, HeaderValueOption, HttpResponse, HttpStatus,
    HttpStatusCode, OkHttpResponse,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::google::rpc;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

use crate::AppState;
use crate::forward_auth::{self, Original, Verdict};

/// The identity headers forward-auth answers with, which a client must
/// never get to the upstream on its own.
const IDENTITY_HEADERS: [&str; 2] = [USER_ID_HEADER, USER_DETAIL_HEADER];

/// The `Authorization` service over the service's state.
struct ExtAuthz {
    state: AppState,
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let started = Instant::now();
        let http = request
            .get_ref()
            .attributes
            .as_ref()
            .and_then(|attributes| attributes.request.as_ref())
            .and_then(|request| request.http.as_ref());
        let headers = http.map(client_headers).unwrap_or_default();
        let original = Original {
            method: http.map_or("", |http| http.method.as_str()),
            uri: http.map_or("", |http| http.path.as_str()),
        };
        let decided =
            forward_auth::decide(self.state.authenticator(), &headers, original, None).await;
        let (answer, outcome) = match decided {
            Ok(Verdict::Allow(upstream)) => (Ok(allowed(&upstream)), "ok"),
            Ok(Verdict::Deny { presented }) => (Ok(denied(presented)), "denied"),
            Err(error) => {
                tracing::error!(code = error.code(), error = %error, "gRPC check failed");
                if error.is_unavailable() {
                    (
                        Err(Status::unavailable(error.public_message())),
                        "unavailable",
                    )
                } else {
                    (Err(Status::internal(error.public_message())), "internal")
                }
            }
        };
        self.state.0.metrics.grpc_check(outcome, started);
        answer.map(Response::new)
    }
}

/// The client's headers as Envoy sends them: the `headers` map (values
/// merged per name), or with `encode_raw_headers` the raw `header_map`.
/// Pseudo-headers and what is not a valid header are left out.
fn client_headers(http: &HttpRequest) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut add = |name: &str, value: &[u8]| {
        if name.starts_with(':') {
            return;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    };
    match &http.header_map {
        Some(raw) if !raw.headers.is_empty() => {
            for header in &raw.headers {
                let value = if header.raw_value.is_empty() {
                    header.value.as_bytes()
                } else {
                    &header.raw_value
                };
                add(&header.key, value);
            }
        }
        _ => {
            for (name, value) in &http.headers {
                add(name, value.as_bytes());
            }
        }
    }
    headers
}

/// `headers` as Envoy's header options, each overwriting a header of the
/// same name (`append_action` is explicit: Envoy's default for a message
/// without `append` changed between versions).
fn options(headers: &HeaderMap) -> Vec<HeaderValueOption> {
    headers
        .iter()
        .map(|(name, value)| HeaderValueOption {
            header: Some(EnvoyHeader {
                key: name.as_str().to_owned(),
                value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
                raw_value: Vec::new(),
            }),
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..HeaderValueOption::default()
        })
        .collect()
}

/// A gRPC status in a `CheckResponse`.
fn status(code: Code, message: &str) -> Option<rpc::Status> {
    Some(rpc::Status {
        code: code as i32,
        message: message.to_owned(),
        details: Vec::new(),
    })
}

/// `OK` with the upstream's identity headers. Envoy removes
/// `headers_to_remove` after it sets `headers`, so only the identity
/// headers not set are listed there; those set overwrite the client's.
fn allowed(upstream: &HeaderMap) -> CheckResponse {
    let headers_to_remove = IDENTITY_HEADERS
        .iter()
        .filter(|name| !upstream.contains_key(**name))
        .map(|name| (*name).to_owned())
        .collect();
    CheckResponse {
        status: status(Code::Ok, ""),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: options(upstream),
            headers_to_remove,
            ..OkHttpResponse::default()
        })),
        dynamic_metadata: None,
    }
}

/// `UNAUTHENTICATED` with `/auth`'s 401: its status, headers and body.
fn denied(presented: bool) -> CheckResponse {
    let body = ErrorBody::unauthenticated(presented);
    let message = body.error.message.clone();
    let response = body.response::<String>(StatusCode::UNAUTHORIZED);
    CheckResponse {
        status: status(Code::Unauthenticated, &message),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: HttpStatusCode::Unauthorized as i32,
            }),
            headers: options(response.headers()),
            body: response.into_body(),
        })),
        dynamic_metadata: None,
    }
}

/// Serves `Check` for `state` on `listener` until `shutdown` resolves;
/// checks in flight then get `limits.shutdown_timeout_ms` to finish.
pub async fn serve_grpc_on(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let deadline = state.0.connections.shutdown_timeout;
    let (closing, mut closed) = tokio::sync::watch::channel(false);
    // One service: no router, the generated server answers `UNIMPLEMENTED`
    // for any other method.
    let server = tonic::transport::Server::builder().serve_with_incoming_shutdown(
        AuthorizationServer::new(ExtAuthz { state }),
        TcpIncoming::from(listener).with_nodelay(Some(true)),
        async move {
            shutdown.await;
            closing.send_replace(true);
        },
    );
    let overdue = async move {
        let _ = closed.wait_for(|closed| *closed).await;
        tokio::time::sleep(deadline).await;
    };
    tokio::select! {
        served = server => served.context("the gRPC listener failed"),
        () = overdue => {
            tracing::warn!(?deadline, "shutdown deadline passed: closing the gRPC connections still open");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3::HeaderMap as RawHeaders;

    use super::*;

    #[test]
    fn client_headers_come_from_the_map_or_the_raw_list_without_pseudo_headers() {
        let mut http = HttpRequest::default();
        for (name, value) in [
            (":path", "/x"),
            ("authorization", "Bearer t"),
            ("bad name", "v"),
        ] {
            http.headers.insert(name.into(), value.into());
        }
        let headers = client_headers(&http);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["authorization"], "Bearer t");

        http.header_map = Some(RawHeaders {
            headers: vec![EnvoyHeader {
                key: "x-session-token".into(),
                value: String::new(),
                raw_value: "józef_t".as_bytes().to_vec(),
            }],
        });
        let headers = client_headers(&http);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["x-session-token"].as_bytes(), "józef_t".as_bytes());
    }
}
