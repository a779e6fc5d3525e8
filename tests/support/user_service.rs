//! A user service the HTTP loader's tests start: `GET /users/{id}`,
//! answering as told and remembering what it was sent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What the test user service answers.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// 200 with `{"id": …, "source": "http"}`, after a pause.
    Detail(Duration),
    NotFound,
    Status(u16),
    InvalidJson,
}

/// One request as the user service saw it.
#[derive(Debug, PartialEq, Eq)]
pub struct SeenRequest {
    pub target: String,
    pub authorization: Option<String>,
    pub api_version: Option<String>,
}

#[derive(Debug)]
pub struct Seen {
    answer: Mutex<Answer>,
    calls: AtomicUsize,
    pub requests: Mutex<Vec<SeenRequest>>,
}

async fn user_route(
    State(seen): State<Arc<Seen>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    seen.calls.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| {
        headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    seen.requests.lock().unwrap().push(SeenRequest {
        target: uri.to_string(),
        authorization: header("authorization"),
        api_version: header("x-api-version"),
    });
    let answer = *seen.answer.lock().unwrap();
    match answer {
        Answer::Detail(pause) => {
            tokio::time::sleep(pause).await;
            axum::Json(json!({ "id": id, "source": "http" })).into_response()
        }
        Answer::NotFound => StatusCode::NOT_FOUND.into_response(),
        Answer::Status(status) => StatusCode::from_u16(status).unwrap().into_response(),
        Answer::InvalidJson => (StatusCode::OK, "{\"id\": not json").into_response(),
    }
}

/// A user service on a loopback port: `GET /users/{id}`. Shut down on drop.
pub struct UserService {
    address: SocketAddr,
    pub seen: Arc<Seen>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl UserService {
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    pub async fn start_on(port: u16) -> Self {
        let seen = Arc::new(Seen {
            answer: Mutex::new(Answer::Detail(Duration::ZERO)),
            calls: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .route("/users/{id}", axum::routing::get(user_route))
            .with_state(Arc::clone(&seen));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let address = listener.local_addr().unwrap();
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await
                .unwrap();
        });
        Self {
            address,
            seen,
            shutdown: Some(shutdown),
        }
    }

    /// The URL template for the loader.
    pub fn template(&self) -> String {
        format!("http://{}/users/{{id}}", self.address)
    }

    pub fn answer(&self, answer: Answer) {
        *self.seen.answer.lock().unwrap() = answer;
    }

    pub fn calls(&self) -> usize {
        self.seen.calls.load(Ordering::SeqCst)
    }
}

impl Drop for UserService {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
