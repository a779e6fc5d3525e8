//! The operator's routes of `dsession serve` over a real socket: the
//! session events as server-sent events, what policy serves, the console's
//! files, and the client a trusted gateway's `/auth` names.

use std::time::{Duration, Instant};

use dsession::store::{RedisConfig, StoreConfig};
use dsession_service::ServeConfig;
use serde_json::{Value, json};

use crate::support::RedisServer;
use crate::support::served::{Served, policy_file, serving};

const KEY: &str = "admin-routes-key";

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn keyed(config: ServeConfig) -> ServeConfig {
    ServeConfig {
        admin_key: Some(KEY.into()),
        ..config
    }
}

fn on_redis(mut config: ServeConfig, redis: &RedisServer) -> ServeConfig {
    config.store = StoreConfig::Redis(RedisConfig::new(redis.url()));
    config
}

async fn get(served: &Served, path: &str) -> reqwest::Response {
    client()
        .get(served.url(path))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
}

async fn create(served: &Served, body: Value) -> Value {
    let response = client()
        .post(served.url("/v1/tokens"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// Reads server-sent events from `response` until `count` `event: session`
/// events came, or a few seconds passed; their ids and JSON.
async fn session_events(response: &mut reqwest::Response, count: usize) -> Vec<(String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = String::new();
    let mut events = Vec::new();
    while events.len() < count && Instant::now() < deadline {
        let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(5), response.chunk())
            .await
            .unwrap_or(Ok(None))
        else {
            break;
        };
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .map(str::to_owned)
            };
            if field("event: ").as_deref() == Some("session") {
                let data = serde_json::from_str(&field("data: ").unwrap()).unwrap();
                events.push((field("id: ").unwrap(), data));
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_events_stream_to_the_admin_as_they_happen() {
    let redis = RedisServer::start();
    let mut config = on_redis(keyed(ServeConfig::default()), &redis);
    config.events.enabled = true;
    let served = Served::start(config).await;

    let unkeyed = client().get(served.url("/v1/events")).send().await.unwrap();
    assert_eq!(unkeyed.status(), 401);
    let body: Value = unkeyed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    let first = create(
        &served,
        json!({ "user_id": "alice", "attributes": { "device": "tv" } }),
    )
    .await;
    let mut stream = get(&served, "/v1/events").await;
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let before = session_events(&mut stream, 1).await;
    assert_eq!(before.len(), 1, "the latest event comes first");
    assert_eq!(before[0].1["event"], "login");
    assert_eq!(before[0].1["device"], "tv");
    let token = first["token"].as_str().unwrap();
    assert_eq!(
        before[0].1["session"].as_str(),
        Some(dsession::session_id(token).as_str())
    );

    // Live: a revocation arrives on the open stream.
    let revoked = client()
        .post(served.url("/v1/tokens/revoke"))
        .bearer_auth(KEY)
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    let live = session_events(&mut stream, 1).await;
    assert_eq!(live.len(), 1, "the revoke arrived live");
    assert_eq!(live[0].1["event"], "revoke");
    assert!(
        !serde_json::to_string(&live).unwrap().contains(token),
        "no event shows a token"
    );

    // A reconnecting client resumes after the last id it saw.
    create(&served, json!({ "user_id": "bob" })).await;
    let mut resumed = client()
        .get(served.url("/v1/events"))
        .bearer_auth(KEY)
        .header("Last-Event-ID", &before[0].0)
        .send()
        .await
        .unwrap();
    let after = session_events(&mut resumed, 2).await;
    let kinds: Vec<(&str, &str)> = after
        .iter()
        .map(|(_, e)| (e["event"].as_str().unwrap(), e["user"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("revoke", "alice"), ("login", "bob")]);
    let mut none = get(&served, "/v1/events?last=0").await;
    assert_eq!(none.status(), 200);
    assert_eq!(
        session_events(&mut none, 1).await.len(),
        0,
        "none before, none since"
    );

    for bad in [
        "/v1/events?last=5000",
        "/v1/events?after=yesterday",
        "/v1/events?since=1",
    ] {
        let response = get(&served, bad).await;
        assert_eq!(response.status(), 400, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_argument", "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_route_says_what_serves_and_the_console_is_served_under_a_strict_csp() {
    let dir = tempfile::tempdir().unwrap();
    let config = keyed(serving(
        &policy_file(&dir, "hardened"),
        &[("max_sessions", "3")],
    ));
    let served = Served::start(config).await;
    let policy: Value = get(&served, "/v1/policy").await.json().await.unwrap();
    assert_eq!(policy["name"], "policy.wasm");
    assert!(policy["path"].as_str().unwrap().ends_with("/policy.wasm"));
    assert_eq!(policy["config"]["max_sessions"], "3");
    assert_eq!(policy["events"], false);
    assert!(policy["last_reload"].is_null());
    let keys = policy["config_keys"].as_array().unwrap();
    assert!(
        keys.iter().any(|key| key["name"] == "idle_timeout_seconds"),
        "{keys:?}"
    );
    let reloaded = client()
        .post(served.url("/admin/policy/reload"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(reloaded.status(), 200);
    let policy: Value = get(&served, "/v1/policy").await.json().await.unwrap();
    assert_eq!(policy["last_reload"]["ok"], true);

    // A session the hardened policy lists by name is revoked by that name,
    // as the console does.
    let token = create(&served, json!({ "user_id": "erin" })).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let [session] = &listed(&served, "erin").await[..] else {
        panic!("one session")
    };
    let name = session["token"].as_str().unwrap();
    let secret = token.rsplit_once('_').unwrap().1;
    assert!(
        name.starts_with("sha256:") && !name.contains(secret),
        "{name}"
    );
    let revoked = client()
        .post(served.url("/v1/tokens/revoke"))
        .bearer_auth(KEY)
        .json(&json!({ "token": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    assert!(listed(&served, "erin").await.is_empty());
    let checked = client()
        .get(served.url("/auth"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(checked.status(), 401);

    for (path, content_type) in [
        ("/admin", "text/html"),
        ("/admin/console.js", "text/javascript"),
        ("/admin/console.css", "text/css"),
        ("/admin/favicon.svg", "image/svg+xml"),
    ] {
        // The files need no key: the page asks for it, and sends it from
        // memory with each call.
        let response = client().get(served.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type)
        );
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
        assert!(!csp.contains("unsafe"), "{csp}");
    }
    let page = client()
        .get(served.url("/admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !page.contains("<script>") && !page.contains(" on"),
        "no inline script"
    );
    let missing = client()
        .get(served.url("/admin/secrets.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let open = Served::start(ServeConfig::default()).await;
    let closed = client().get(open.url("/admin")).send().await.unwrap();
    assert_eq!(closed.status(), 403, "no admin key, no console");
    let body: Value = closed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "console_closed");
}

/// The sessions of `user` as the API lists them.
async fn listed(served: &Served, user: &str) -> Vec<Value> {
    let page: Value = get(served, &format!("/v1/users/{user}/tokens"))
        .await
        .json()
        .await
        .unwrap();
    page["tokens"].as_array().unwrap().clone()
}

async fn auth_from_gateway(served: &Served, token: &str) -> u16 {
    client()
        .get(served.url("/auth"))
        .bearer_auth(token)
        .header("X-Forwarded-For", "203.0.113.50, 10.0.0.7")
        .header("User-Agent", "Gateway-Client/2.0")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_records_the_client_a_trusted_gateway_names_in_the_hardened_touch() {
    let dir = tempfile::tempdir().unwrap();
    let hardened = [
        ("idle_timeout_seconds", "60"),
        ("touch_interval_seconds", "1"),
    ];
    let start = |trusted: &[&str]| {
        let mut config = keyed(serving(&policy_file(&dir, "hardened"), &hardened));
        config.auth.trusted_proxies = trusted.iter().map(|&t| t.to_owned()).collect();
        Served::start(config)
    };
    let login = json!({
        "user_id": "alice",
        "attributes": { "device": "laptop", "ip": "192.0.2.1", "user_agent": "Login/1.0" }
    });

    // Trusted: the loopback gateway and the proxy in its network.
    let served = start(&["127.0.0.1", "10.0.0.0/8"]).await;
    let token = create(&served, login.clone()).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(auth_from_gateway(&served, &token).await, 200);
    let [session] = &listed(&served, "alice").await[..] else {
        panic!("one session")
    };
    assert_eq!(
        session["attributes"]["ip"], "192.0.2.1",
        "no touch was due, so nothing was written"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(auth_from_gateway(&served, &token).await, 200);
    let [session] = &listed(&served, "alice").await[..] else {
        panic!("one session")
    };
    let attributes = &session["attributes"];
    assert_eq!(attributes["ip"], "203.0.113.50", "{session}");
    assert_eq!(attributes["user_agent"], "Gateway-Client/2.0");
    assert_eq!(attributes["device"], "laptop", "the login's device stays");
    assert!(session["last_seen"].as_i64() >= session["created_at"].as_i64());

    // Untrusted: the peer is not among the proxies, so nothing is believed.
    let served = start(&["10.0.0.0/8"]).await;
    let token = create(&served, login).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(auth_from_gateway(&served, &token).await, 200);
    let [session] = &listed(&served, "alice").await[..] else {
        panic!("one session")
    };
    assert_eq!(session["attributes"]["ip"], "192.0.2.1");
    assert_eq!(session["attributes"]["user_agent"], "Login/1.0");
}

#[test]
fn a_trusted_proxy_that_is_no_address_is_refused_at_start() {
    let mut config = ServeConfig::default();
    config.auth.trusted_proxies = vec!["10.0.0.0/40".into()];
    let error = config.validate().unwrap_err().to_string();
    assert!(
        error.contains("auth.trusted_proxies") && error.contains("10.0.0.0/40"),
        "{error}"
    );
    let mut config = ServeConfig::default();
    config.events.stream = "events{a}".into();
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("events stream")
    );
}
