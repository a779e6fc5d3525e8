//! `dsession serve` under test: in-process for `oneshot`, or on a real
//! socket; and policy files to serve and swap.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::http::StatusCode;
use dsession::Policy;
use dsession::store::{Command, Reply};
use dsession_service::{AppState, ServeConfig, app, build_state};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::http::post;

/// The service's routes for `config`, in-process, and its state.
pub async fn service(config: ServeConfig) -> (Router, AppState) {
    let state = build_state(&config).await.unwrap();
    (app(state.clone()), state)
}

/// The default config with `key` as the admin key.
pub fn with_admin_key(key: &str) -> ServeConfig {
    ServeConfig {
        admin_key: Some(key.into()),
        ..ServeConfig::default()
    }
}

/// Issues a token for `user`, for 600 s, through the service's manager.
pub async fn issue(state: &AppState, user: &str) -> String {
    state.sessions().set_token(user, 600).await.unwrap().token
}

/// Runs raw commands against the service's store, as another service
/// would.
pub async fn raw(state: &AppState, commands: Vec<Command>) -> Vec<Reply> {
    state.sessions().store().batch(commands).await.unwrap()
}

/// Issues a token for `user` through the in-process `app`.
pub async fn token(app: &Router, user: &str) -> String {
    let created = post(app, "/v1/tokens", json!({ "user_id": user, "ttl": 600 })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    created.body["token"].as_str().unwrap().to_owned()
}

/// Writes the built-in policy `name` to `dir/policy.wasm`, over what is
/// there.
pub fn policy_file(dir: &TempDir, name: &str) -> PathBuf {
    let path = dir.path().join("policy.wasm");
    std::fs::write(&path, Policy::builtin_named_component(name).unwrap()).unwrap();
    path
}

/// The default config, serving the policy in the file at `path` with
/// `policy_config`.
pub fn serving(path: &Path, policy_config: &[(&str, &str)]) -> ServeConfig {
    let mut config = ServeConfig::default();
    config.policy.path = Some(path.to_owned());
    for (key, value) in policy_config {
        config.policy.config.insert((*key).into(), (*value).into());
    }
    config
}

/// The service on a real socket, on a free loopback port, and with
/// [`Self::start_with_grpc`] its gRPC `ext_authz` on another; shut down
/// gracefully on drop.
pub struct Served {
    address: SocketAddr,
    grpc: Option<SocketAddr>,
    _shutdown: watch::Sender<()>,
}

/// Resolves when `shutdown` is dropped.
async fn dropped(mut shutdown: watch::Receiver<()>) {
    let _ = shutdown.changed().await;
}

impl Served {
    pub async fn start(config: ServeConfig) -> Self {
        Self::launch(config, false).await
    }

    /// The service with its gRPC listener too.
    pub async fn start_with_grpc(config: ServeConfig) -> Self {
        Self::launch(config, true).await
    }

    async fn launch(config: ServeConfig, grpc: bool) -> Self {
        let state = build_state(&config).await.unwrap();
        let (shutdown, stopped) = watch::channel(());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(dsession_service::serve_on(
            listener,
            state.clone(),
            dropped(stopped.clone()),
        ));
        let grpc = if grpc {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            tokio::spawn(dsession_service::serve_grpc_on(
                listener,
                state,
                dropped(stopped),
            ));
            Some(address)
        } else {
            None
        };
        Self {
            address,
            grpc,
            _shutdown: shutdown,
        }
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The gRPC listener's URL, for a tonic channel.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc.expect("started with gRPC"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Issues a token over HTTP.
    pub async fn create_token(&self, client: &reqwest::Client, user: &str) -> String {
        let created: Value = client
            .post(self.url("/v1/tokens"))
            .json(&json!({ "user_id": user }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        created["token"].as_str().unwrap().to_owned()
    }

    /// `GET /auth` with `token` from 4 tasks while `reloads` policy reloads
    /// go through the admin route, `before_each` running before each;
    /// returns how many requests were answered 200 and how many were not.
    pub async fn auth_during_reloads(
        &self,
        client: &reqwest::Client,
        token: &str,
        reloads: usize,
        mut before_each: impl FnMut(),
    ) -> (usize, usize) {
        let done = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let (client, url, token) = (client.clone(), self.url("/auth"), token.to_owned());
                let (done, ok, failed) = (Arc::clone(&done), Arc::clone(&ok), Arc::clone(&failed));
                tokio::spawn(async move {
                    while !done.load(Ordering::SeqCst) {
                        let response = client.get(&url).bearer_auth(&token).send().await;
                        let counter = match response {
                            Ok(response) if response.status() == reqwest::StatusCode::OK => &ok,
                            _ => &failed,
                        };
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for _ in 0..reloads {
            before_each();
            let reloaded = client
                .post(self.url("/admin/policy/reload"))
                .send()
                .await
                .unwrap();
            assert_eq!(reloaded.status(), reqwest::StatusCode::OK);
        }
        done.store(true, Ordering::SeqCst);
        for task in clients {
            task.await.unwrap();
        }
        (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst))
    }
}
