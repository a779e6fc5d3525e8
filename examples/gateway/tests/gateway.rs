//! Runs the example gateway binary against real Redis and a real upstream.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use axum::Router;
use axum::http::HeaderMap;
use dsession::SessionManager;
use dsession::store::{RedisConfig, RedisStore};
use dsession_tests::RedisServer;

/// The gateway process, killed when dropped.
struct Gateway {
    child: Child,
    address: String,
}

impl Gateway {
    fn start(upstream: &str, redis: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dsession-gateway"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                upstream,
                "--redis",
                redis,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the gateway said {line:?}"))
            .to_owned();
        Self { child, address }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An upstream that answers with the user id the gateway told it.
async fn upstream() -> String {
    let app = Router::new().fallback(|headers: HeaderMap| async move {
        headers
            .get("x-user-id")
            .map_or("nobody".to_owned(), |id| id.to_str().unwrap().to_owned())
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

#[tokio::test]
async fn the_gateway_passes_live_sessions_and_refuses_the_rest() {
    let mut redis = RedisServer::start();
    let upstream = upstream().await;
    let gateway = Gateway::start(&upstream, &redis.url());
    let sessions = SessionManager::builder()
        .store(
            RedisStore::connect(RedisConfig::new(redis.url()))
                .await
                .unwrap(),
        )
        .build()
        .unwrap();
    let token = sessions.set_token("alice", 600).await.unwrap().token;
    let client = reqwest::Client::new();
    let url = format!("http://{}/orders?page=2", gateway.address);

    let valid = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(valid.status(), 200);
    assert_eq!(
        valid.text().await.unwrap(),
        "alice",
        "the upstream sees the user"
    );

    let forged = client
        .get(&url)
        .header("x-user-id", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.status(),
        401,
        "no token: 401, whatever the headers say"
    );
    assert_eq!(forged.headers()["www-authenticate"], "Bearer");

    sessions.delete_token(&token).await.unwrap();
    let revoked = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(revoked.status(), 401);

    let live = sessions.set_token("bob", 600).await.unwrap().token;
    redis.kill();
    let outage = client.get(&url).bearer_auth(&live).send().await.unwrap();
    assert_eq!(outage.status(), 503, "an outage is not a logout");
    let body: serde_json::Value = outage.json().await.unwrap();
    assert_eq!(body["error"]["code"], "store_error");
}
