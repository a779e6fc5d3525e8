//! Envoy's `ext_authz` as Envoy calls us, on real Redis: over HTTP, the
//! requests `examples/envoy.yaml` makes Envoy send, replayed as Envoy
//! forms them; over gRPC, `Check` from a client built from Envoy's
//! published protos (`envoy-types`), the client of Envoy itself.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use dsession::store::{RedisConfig, StoreConfig};
use dsession_service::ServeConfig;
use envoy_types::ext_authz::v3::pb::{
    CheckRequest, CheckResponse, HeaderAppendAction, HeaderValueOption, HttpResponse,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, attribute_context};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

use crate::support::RedisServer;
use crate::support::served::Served;
use crate::support::user_service::{Answer, UserService};

/// The service on `redis`, with time-outs short enough for an outage test.
fn on_redis(redis: &RedisServer) -> ServeConfig {
    ServeConfig {
        store: StoreConfig::Redis(RedisConfig {
            connect_timeout: Duration::from_millis(300),
            command_timeout: Duration::from_millis(300),
            ..RedisConfig::new(redis.url())
        }),
        ..ServeConfig::default()
    }
}

/// The text of an example config.
fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// What `examples/envoy.yaml` tells Envoy's HTTP `ext_authz`: the path
/// prefix, and the client headers it may send (`allowed_headers`'s exact
/// patterns).
fn envoy_http_settings() -> (String, Vec<String>) {
    let yaml = example("envoy.yaml");
    let prefix = yaml
        .lines()
        .find_map(|line| line.trim().strip_prefix("path_prefix:"))
        .expect("envoy.yaml sets path_prefix")
        .trim()
        .to_owned();
    let allowed = yaml
        .lines()
        .skip_while(|line| line.trim() != "allowed_headers:")
        .skip(1)
        .map(str::trim)
        .skip_while(|line| *line == "patterns:")
        .map_while(|line| line.strip_prefix("- exact:"))
        .map(|name| name.trim().to_owned())
        .collect();
    (prefix, allowed)
}

/// A request a client sends Envoy.
struct ClientRequest<'a> {
    method: Method,
    path: &'a str,
    headers: Vec<(&'a str, String)>,
}

impl<'a> ClientRequest<'a> {
    /// `method path` from a browser with `extra` headers, claiming to be
    /// mallory.
    fn new(method: Method, path: &'a str, extra: &[(&'a str, String)]) -> Self {
        let mut headers = vec![
            ("host", "app.example".to_owned()),
            ("user-agent", "Mozilla/5.0".to_owned()),
            ("accept", "*/*".to_owned()),
            ("x-user-id", "mallory".to_owned()),
        ];
        headers.extend_from_slice(extra);
        Self {
            method,
            path,
            headers,
        }
    }

    /// The authorization request Envoy's HTTP `ext_authz` makes of this
    /// one: the same method, the path after `prefix`, `Host` and
    /// `Authorization` and the `allowed` headers only, and
    /// `Content-Length: 0` (the body is not sent).
    fn as_envoy_sends(&self, prefix: &str, allowed: &[String]) -> Request<Empty<Bytes>> {
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(format!("{prefix}{}", self.path));
        for (name, value) in &self.headers {
            let always = ["host", "authorization"].contains(name);
            if always || allowed.iter().any(|allowed| allowed == name) {
                request = request.header(*name, value);
            }
        }
        request
            .header("content-length", "0")
            .body(Empty::new())
            .unwrap()
    }
}

/// Sends `request` on a fresh HTTP/1.1 connection to `port`: the status,
/// the headers and the body.
async fn send(port: u16, request: Request<Empty<Bytes>>) -> (StatusCode, HeaderMap, Bytes) {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_http_ext_authz_is_answered_for_every_method_and_path_it_sends() {
    let (prefix, allowed) = envoy_http_settings();
    assert_eq!(prefix, "/auth");
    for name in ["authorization", "cookie", "x-session-token"] {
        assert!(allowed.iter().any(|allowed| allowed == name), "{allowed:?}");
    }
    let mut redis = RedisServer::start();
    let served = Served::start(on_redis(&redis)).await;
    let client = reqwest::Client::new();
    let token = served.create_token(&client, "alice").await;
    let ask =
        |request: ClientRequest<'_>| send(served.port(), request.as_envoy_sends(&prefix, &allowed));

    let methods = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ];
    let bearer = ("authorization", format!("Bearer {token}"));
    for method in &methods {
        for path in ["/", "/api/orders?id=7", "/auth", "/a/b/c/"] {
            let body = ("content-length", "12".to_owned());
            let request = ClientRequest::new(method.clone(), path, &[bearer.clone(), body]);
            let (status, headers, _) = ask(request).await;
            assert_eq!(status, StatusCode::OK, "{method} {path}");
            assert_eq!(headers["x-user-id"], "alice", "{method} {path}");
        }
        let (status, headers, body) = ask(ClientRequest::new(method.clone(), "/api", &[])).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method}");
        assert_eq!(headers["www-authenticate"], "Bearer");
        assert!(!headers.contains_key("x-user-id"));
        if *method != Method::HEAD {
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"]["code"], "unauthenticated", "{method}");
        }
    }
    for extra in [
        ("cookie", format!("theme=dark; dsession_token={token}")),
        ("x-session-token", token.clone()),
    ] {
        let request = ClientRequest::new(Method::GET, "/", std::slice::from_ref(&extra));
        let (status, headers, _) = ask(request).await;
        assert_eq!(status, StatusCode::OK, "{extra:?}");
        assert_eq!(headers["x-user-id"], "alice");
    }

    client
        .post(served.url("/v1/tokens/revoke"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    let revoked = ClientRequest::new(Method::GET, "/", std::slice::from_ref(&bearer));
    let (status, _, body) = ask(revoked).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["message"], "the session token is not valid");

    redis.kill();
    let outage = ClientRequest::new(Method::POST, "/api/orders", &[bearer]);
    let (status, _, body) = ask(outage).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "store_error");
}

/// A `CheckRequest` as Envoy makes it for `GET /api/orders` with
/// `headers`: pseudo-headers and the client's headers in one map.
fn check_request(headers: &[(&str, &str)]) -> CheckRequest {
    let mut http = attribute_context::HttpRequest {
        method: "GET".into(),
        path: "/api/orders".into(),
        host: "app.example".into(),
        scheme: "http".into(),
        protocol: "HTTP/1.1".into(),
        ..attribute_context::HttpRequest::default()
    };
    for (name, value) in [
        (":authority", "app.example"),
        (":method", "GET"),
        (":path", "/api/orders"),
        ("user-agent", "Mozilla/5.0"),
    ]
    .iter()
    .chain(headers)
    {
        http.headers.insert((*name).into(), (*value).into());
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(http),
                ..attribute_context::Request::default()
            }),
            ..AttributeContext::default()
        }),
    }
}

/// A client of the service's gRPC listener.
async fn grpc_client(served: &Served) -> AuthorizationClient<Channel> {
    AuthorizationClient::connect(served.grpc_url())
        .await
        .unwrap()
}

/// The headers of an `OkHttpResponse` as (name, value), each checked to
/// overwrite the client's header of that name.
fn ok_headers(response: &CheckResponse) -> (Vec<(String, String)>, Vec<String>) {
    assert_eq!(response.status.as_ref().unwrap().code, Code::Ok as i32);
    let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
        panic!("not an OK response: {response:?}");
    };
    (pairs(&ok.headers), ok.headers_to_remove.clone())
}

/// Header options as (name, value), each checked to overwrite.
fn pairs(options: &[HeaderValueOption]) -> Vec<(String, String)> {
    options
        .iter()
        .map(|option| {
            assert_eq!(
                option.append_action,
                HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                "{option:?}"
            );
            let header = option.header.as_ref().unwrap();
            (header.key.clone(), header.value.clone())
        })
        .collect()
}

/// A denied response's gRPC code, HTTP status, headers and body.
fn denial(response: &CheckResponse) -> (i32, u32, Vec<(String, String)>, String) {
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        panic!("not a denial: {response:?}");
    };
    let status = denied.status.as_ref().unwrap().code as u32;
    (
        response.status.as_ref().unwrap().code,
        status,
        pairs(&denied.headers),
        denied.body.clone(),
    )
}

/// `GET /auth` with `headers`: status and body, to compare with `Check`.
async fn http_auth(served: &Served, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = reqwest::Client::new().get(served.url("/auth"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_check_allows_denies_and_fails_as_forward_auth_does() {
    let mut redis = RedisServer::start();
    let served = Served::start_with_grpc(on_redis(&redis)).await;
    let mut grpc = grpc_client(&served).await;
    let token = served.create_token(&reqwest::Client::new(), "a_b").await;
    let bearer = format!("Bearer {token}");
    let cookie = format!("theme=dark; dsession_token={token}");

    for presented in [
        ("authorization", bearer.as_str()),
        ("x-session-token", token.as_str()),
        ("cookie", cookie.as_str()),
    ] {
        let forged = [
            presented,
            ("x-user-id", "mallory"),
            ("x-user-detail", "e30"),
        ];
        let response = grpc.check(check_request(&forged)).await.unwrap();
        let (headers, removed) = ok_headers(response.get_ref());
        assert_eq!(
            headers,
            [("x-user-id".to_owned(), "a_b".to_owned())],
            "{presented:?}"
        );
        assert_eq!(removed, ["x-user-detail"]);
    }

    let malformed = [("authorization", "Bearer alice_not-a-token")];
    for headers in [&[][..], &malformed[..], &[("x-session-token", "")][..]] {
        let response = grpc.check(check_request(headers)).await.unwrap();
        let (code, status, sent, body) = denial(response.get_ref());
        assert_eq!(code, Code::Unauthenticated as i32, "{headers:?}");
        assert_eq!(status, 401);
        assert!(
            sent.contains(&("www-authenticate".into(), "Bearer".into())),
            "{sent:?}"
        );
        assert!(sent.contains(&("content-type".into(), "application/json".into())));
        assert_eq!(
            http_auth(&served, headers).await,
            (401, body),
            "{headers:?}"
        );
    }

    reqwest::Client::new()
        .post(served.url("/v1/tokens/revoke"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    let revoked = [("authorization", bearer.as_str())];
    let response = grpc.check(check_request(&revoked)).await.unwrap();
    let (_, status, _, body) = denial(response.get_ref());
    assert_eq!(status, 401);
    assert!(body.contains("the session token is not valid"), "{body}");

    let live = served.create_token(&reqwest::Client::new(), "bob").await;
    redis.kill();
    let bearer = format!("Bearer {live}");
    let failed = grpc
        .check(check_request(&[("authorization", &bearer)]))
        .await
        .unwrap_err();
    assert_eq!(failed.code(), Code::Unavailable, "{failed:?}");
    assert_eq!(failed.message(), "the session store is unavailable");
    let (status, body) = http_auth(&served, &[("authorization", &bearer)]).await;
    assert_eq!(status, 503, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_check_sends_the_user_detail_and_a_loader_outage_is_unavailable() {
    let redis = RedisServer::start();
    let users = UserService::start().await;
    let mut config = on_redis(&redis);
    config.loader.kind = dsession_service::LoaderKind::Http;
    config.loader.url = Some(users.template());
    config.auth.load_user = true;
    let served = Served::start_with_grpc(config).await;
    let mut grpc = grpc_client(&served).await;
    let client = reqwest::Client::new();

    let alice = format!("Bearer {}", served.create_token(&client, "alice").await);
    let response = grpc
        .check(check_request(&[("authorization", &alice)]))
        .await
        .unwrap();
    let (headers, removed) = ok_headers(response.get_ref());
    let detail = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({ "id": "alice", "source": "http" }).to_string());
    assert_eq!(
        headers,
        [
            ("x-user-id".to_owned(), "alice".to_owned()),
            ("x-user-detail".to_owned(), detail)
        ]
    );
    assert!(removed.is_empty(), "{removed:?}");

    users.answer(Answer::Status(500));
    let bob = format!("Bearer {}", served.create_token(&client, "bob").await);
    let failed = grpc
        .check(check_request(&[("authorization", &bob)]))
        .await
        .unwrap_err();
    assert_eq!(failed.code(), Code::Unavailable, "{failed:?}");
    assert_eq!(failed.message(), "the user loader is unavailable");

    let metrics = client
        .get(served.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "dsession_grpc_checks_total{outcome=\"ok\"} 1",
        "dsession_grpc_checks_total{outcome=\"unavailable\"} 1",
        "dsession_grpc_checks_total{outcome=\"denied\"} 0",
    ] {
        assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
    }
}
