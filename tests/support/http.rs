//! Requests to an in-process app, driven with `oneshot`.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

/// Sends `request` to `app`: the status, the headers and the body.
pub async fn oneshot(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

/// An answer whose body is read as JSON (as a JSON string when it is
/// not JSON; null when empty).
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

/// A request with `headers`, and `body` as JSON when given.
pub async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Body::from(body.unwrap_or("").to_owned()))
        .unwrap();
    let (status, headers, bytes) = oneshot(app, request).await;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Response {
        status,
        headers,
        body,
    }
}

/// `POST uri` with a JSON body.
pub async fn post(app: &Router, uri: &str, body: Value) -> Response {
    send(app, Method::POST, uri, &[], Some(&body.to_string())).await
}

/// `GET /auth` with `headers`.
pub async fn auth(app: &Router, headers: &[(&str, &str)]) -> Response {
    send(app, Method::GET, "/auth", headers, None).await
}

/// A GET, with the token as `Authorization: Bearer` when given: status,
/// headers and body text.
pub async fn get(app: &Router, uri: &str, token: Option<&str>) -> (StatusCode, HeaderMap, String) {
    let mut request = Request::builder().uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let (status, headers, body) = oneshot(app, request.body(Body::empty()).unwrap()).await;
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// A body an error code is read from: a [`Response`]'s, or a body's text.
pub trait ErrorBody {
    fn json(&self) -> Value;
}

impl ErrorBody for Response {
    fn json(&self) -> Value {
        self.body.clone()
    }
}

impl ErrorBody for String {
    fn json(&self) -> Value {
        serde_json::from_str(self).unwrap()
    }
}

/// The `error.message` of a [`Response`]'s error body.
pub fn error_message(response: &Response) -> &str {
    response.body["error"]["message"].as_str().unwrap()
}

/// The `error.code` of an error body.
pub fn error_code(body: &impl ErrorBody) -> String {
    let body = body.json();
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body:?}"))
        .to_owned()
}
