//! A reverse proxy that lets only requests with a live dsession token
//! through to its upstream, telling the upstream who the user is.
//!
//! ```sh
//! dsession-gateway --listen 127.0.0.1:8080 --upstream http://127.0.0.1:3000 \
//!     --redis redis://127.0.0.1:6379/0
//! ```
//!
//! The session check is the tower layer; the rest is proxying. It prints
//! `listening on <address>` once it accepts connections.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::uri::{PathAndQuery, Uri};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use dsession::store::{RedisConfig, RedisStore};
use dsession::tower::RequireSessionLayer;
use dsession::{Authenticated, Authenticator, SessionManager};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone)]
struct Upstream {
    base: Uri,
    client: Client<HttpConnector, Body>,
}

/// Sends the request on to the upstream with the user's headers; a client
/// cannot forge them, they are replaced.
async fn proxy(
    State(upstream): State<Upstream>,
    Authenticated(user): Authenticated,
    mut request: Request,
) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", PathAndQuery::as_str);
    let Ok(uri) = format!(
        "{}{}",
        upstream.base.to_string().trim_end_matches('/'),
        path
    )
    .parse() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    for name in [dsession::USER_ID_HEADER, dsession::USER_DETAIL_HEADER] {
        headers.remove(HeaderName::from_static(name));
    }
    headers.extend(Authenticator::upstream_headers(&user));
    match upstream.client.request(request).await {
        Ok(response) => response.map(Body::new),
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

fn flag(args: &[String], name: &str) -> Result<String, Error> {
    args.iter()
        .position(|arg| arg == name)
        .and_then(|at| args.get(at + 1))
        .cloned()
        .ok_or_else(|| format!("missing {name}").into())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let listen: SocketAddr = flag(&args, "--listen")?.parse()?;
    let upstream = Upstream {
        base: flag(&args, "--upstream")?.parse()?,
        client: Client::builder(TokioExecutor::new()).build_http(),
    };
    let store = RedisStore::connect(RedisConfig::new(flag(&args, "--redis")?)).await?;

    // Protecting the routes: the manager, the layer, done.
    let sessions = SessionManager::builder()
        .store(store)
        .build_checked()
        .await?;
    let app = Router::new()
        .fallback(proxy)
        .with_state(upstream)
        .layer(RequireSessionLayer::new(Authenticator::new(sessions)));

    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
