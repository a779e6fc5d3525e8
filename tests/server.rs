//! `dsession serve`'s routes: driven in-process with `oneshot`, and over a
//! real socket for hot swap under load.

use std::path::PathBuf;
use std::time::Duration;

use axum::http::{Method, StatusCode, header};
use base64::Engine as _;
use dsession::store::{
    ClusterConfig, Command, NearCacheConfig, RedisConfig, SentinelConfig, ServerSettings, SetArgs,
    SetCondition, StoreConfig, TlsFiles, TrackingMode,
};
use dsession_service::{AppState, Metrics, ServeConfig, app, build_state};
use serde_json::{Value, json};

use crate::support::http::{auth, error_code, error_message, post, send};
use crate::support::served::{Served, policy_file, raw, service, serving, token, with_admin_key};
use crate::support::{HEX32, RedisServer};

#[tokio::test]
async fn every_token_route_answers_with_its_documented_status() {
    let (app, _) = service(ServeConfig::default()).await;
    let created = post(
        &app,
        "/v1/tokens",
        json!({ "user_id": "alice", "ttl": 600 }),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let token = created.body["token"].as_str().unwrap().to_owned();
    assert!(created.body["token_expire_time"].as_i64().unwrap() > 0);

    let checked = post(&app, "/v1/tokens/check", json!({ "token": token })).await;
    assert_eq!(checked.status, StatusCode::OK);
    assert_eq!(checked.body["valid"], true);
    assert_eq!(checked.body["user"]["id"], "alice");
    let checked = post(
        &app,
        "/v1/tokens/check",
        json!({ "token": token, "load_user": true, "user_ttl": 60 }),
    )
    .await;
    assert_eq!(checked.body["user"]["detail"], Value::Null);

    let refreshed = post(
        &app,
        "/v1/tokens/refresh",
        json!({ "token": token, "ttl": 900 }),
    )
    .await;
    assert_eq!(refreshed.status, StatusCode::OK);
    assert!(
        refreshed.body["token_expire_time"].as_i64().unwrap()
            > created.body["token_expire_time"].as_i64().unwrap()
    );

    let listed = send(&app, Method::GET, "/v1/users/alice/tokens", &[], None).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["tokens"][0]["token"], token.as_str());

    let revoked = post(&app, "/v1/tokens/revoke", json!({ "token": token })).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let checked = post(&app, "/v1/tokens/check", json!({ "token": token })).await;
    assert_eq!(checked.body, json!({ "valid": false, "user": null }));
    let refreshed = post(&app, "/v1/tokens/refresh", json!({ "token": token })).await;
    assert_eq!(refreshed.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&refreshed), "not_found");

    let second = self::token(&app, "alice").await;
    let revoked = send(&app, Method::DELETE, "/v1/users/alice/tokens", &[], None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let checked = post(&app, "/v1/tokens/check", json!({ "token": second })).await;
    assert_eq!(checked.body["valid"], false);
}

#[tokio::test]
async fn user_routes_manage_the_user_info_cache() {
    let sessions = dsession::SessionManager::builder()
        .loader(|_: String| std::future::ready(Ok(None)))
        .build()
        .unwrap();
    let state = AppState::new(sessions, &ServeConfig::default(), Metrics::default());
    let app = app(state.clone());
    let added = send(
        &app,
        Method::PUT,
        "/v1/users/bob",
        &[],
        Some(r#"{"ttl":60}"#),
    )
    .await;
    assert_eq!(added.status, StatusCode::OK);
    assert_eq!(added.body, json!({ "id": "bob", "detail": null }));
    let cached = raw(&state, vec![Command::Ttl("gosession-user_bob".into())]).await;
    assert_eq!(cached, vec![dsession::store::Reply::Integer(60)]);

    let refreshed = post(
        &app,
        "/v1/users/refresh",
        json!({ "ids": ["bob", "carol"], "ttl": 30 }),
    )
    .await;
    assert_eq!(refreshed.status, StatusCode::NO_CONTENT);
    let deleted = send(&app, Method::DELETE, "/v1/users/bob", &[], None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let bad = send(
        &app,
        Method::PUT,
        &format!("/v1/users/bob_{HEX32}"),
        &[],
        Some("{}"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&bad), "invalid_argument");
}

#[tokio::test]
async fn probes_metrics_and_openapi_need_no_key() {
    let (app, _) = service(with_admin_key("s3cret")).await;
    let health = send(&app, Method::GET, "/healthz", &[], None).await;
    assert_eq!(
        (health.status, health.body),
        (StatusCode::OK, json!({ "status": "ok" }))
    );
    let ready = send(&app, Method::GET, "/readyz", &[], None).await;
    assert_eq!(ready.status, StatusCode::OK);
    let denied = auth(&app, &[]).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);

    let metrics = send(&app, Method::GET, "/metrics", &[], None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.body.as_str().unwrap();
    for name in [
        "dsession_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1",
        "dsession_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }

    let document = send(&app, Method::GET, "/openapi.json", &[], None).await;
    assert_eq!(document.body["openapi"], "3.1.0");
    let paths = document.body["paths"].as_object().unwrap();
    for path in [
        "/v1/tokens",
        "/v1/tokens/check",
        "/v1/tokens/refresh",
        "/v1/tokens/revoke",
        "/v1/users/{id}/tokens",
        "/v1/users/{id}",
        "/v1/users/refresh",
        "/admin/policy/reload",
        "/auth",
        "/auth/{path}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
}

#[tokio::test]
async fn the_admin_routes_need_the_admin_key() {
    let (app, _) = service(with_admin_key("s3cret")).await;
    let body = r#"{"user_id":"alice"}"#;
    for headers in [
        &[][..],
        &[("authorization", "Bearer wrong")][..],
        &[("authorization", "s3cret")][..],
    ] {
        let denied = send(&app, Method::POST, "/v1/tokens", headers, Some(body)).await;
        assert_eq!(denied.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(denied.headers[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(error_code(&denied), "unauthorized");
    }
    let denied = send(&app, Method::POST, "/admin/policy/reload", &[], None).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    let admin = [("authorization", "Bearer s3cret")];
    let allowed = send(&app, Method::POST, "/v1/tokens", &admin, Some(body)).await;
    assert_eq!(allowed.status, StatusCode::CREATED);
}

#[tokio::test]
async fn bad_bodies_get_clear_errors() {
    let config = ServeConfig {
        limits: dsession_service::LimitsConfig {
            body_bytes: 1024,
            ..Default::default()
        },
        ..ServeConfig::default()
    };
    let (app, _) = service(config).await;
    let syntax = send(&app, Method::POST, "/v1/tokens", &[], Some("{not json")).await;
    assert_eq!(syntax.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&syntax), "invalid_argument");

    let unknown = post(
        &app,
        "/v1/tokens",
        json!({ "user_id": "alice", "ttl": 5, "admin": true }),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(error_message(&unknown).contains("unknown field `admin`"));

    let missing = post(&app, "/v1/tokens", json!({ "ttl": 5 })).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);

    let text = [("content-type", "text/plain")];
    let plain = send(&app, Method::POST, "/v1/tokens", &text, None).await;
    assert_eq!(plain.status, StatusCode::BAD_REQUEST);

    let huge = json!({ "user_id": "x".repeat(4096) }).to_string();
    let too_large = send(&app, Method::POST, "/v1/tokens", &[], Some(&huge)).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&too_large), "payload_too_large");

    let negative = post(&app, "/v1/tokens", json!({ "user_id": "alice", "ttl": -1 })).await;
    assert_eq!(negative.status, StatusCode::BAD_REQUEST);
    assert!(error_message(&negative).contains("ttl"));

    let nowhere = send(&app, Method::GET, "/v1/nothing", &[], None).await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&nowhere), "route_not_found");
}

#[tokio::test]
async fn forward_auth_takes_the_token_from_bearer_header_or_cookie() {
    let (app, _) = service(ServeConfig::default()).await;
    let token = token(&app, "a_b").await;
    let cookie = format!("theme=dark; dsession_token={token}");
    let bearer = format!("Bearer {token}");
    for headers in [
        [("authorization", bearer.as_str())],
        [("x-session-token", token.as_str())],
        [("cookie", cookie.as_str())],
    ] {
        let allowed = auth(&app, &headers).await;
        assert_eq!(allowed.status, StatusCode::OK, "{headers:?}");
        assert_eq!(allowed.headers["x-user-id"], "a_b");
        assert!(!allowed.headers.contains_key("x-user-detail"));
    }

    for headers in [
        &[][..],
        &[("authorization", "Bearer garbage")][..],
        &[("x-session-token", "")][..],
        &[("cookie", "dsession_token=alice_0123")][..],
    ] {
        let denied = auth(&app, headers).await;
        assert_eq!(denied.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(denied.headers[header::WWW_AUTHENTICATE], "Bearer");
        assert!(!denied.headers.contains_key("x-user-id"));
    }

    post(&app, "/v1/tokens/revoke", json!({ "token": token })).await;
    let revoked = auth(&app, &[("authorization", bearer.as_str())]).await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn forward_auth_sends_the_user_detail_when_configured() {
    let mut config = ServeConfig::default();
    config.auth.load_user = true;
    let (app, state) = service(config).await;
    let token = token(&app, "alice").await;
    raw(
        &state,
        vec![Command::Set(SetArgs {
            key: "gosession-user_alice".into(),
            value: r#"{"id":"alice","detail":{"name":"Ann Ö","roles":["admin"]}}"#.into(),
            ttl_seconds: 60,
            condition: SetCondition::Always,
        })],
    )
    .await;
    let allowed = auth(&app, &[("x-session-token", &token)]).await;
    assert_eq!(allowed.status, StatusCode::OK);
    let encoded = allowed.headers["x-user-detail"].to_str().unwrap();
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .unwrap();
    let detail: Value = serde_json::from_slice(&decoded).unwrap();
    assert_eq!(detail, json!({ "name": "Ann Ö", "roles": ["admin"] }));
}

#[tokio::test]
async fn sliding_expiry_extends_a_token_on_each_check() {
    let mut config = ServeConfig::default();
    config.auth.sliding_expiry = Some(5000);
    let (app, _) = service(config).await;
    let token = token(&app, "alice").await;
    assert_eq!(
        auth(&app, &[("x-session-token", &token)]).await.status,
        StatusCode::OK
    );
    let checked = post(&app, "/v1/tokens/check", json!({ "token": token })).await;
    let remaining = checked.body["user"]["token_remain_live_time"]
        .as_i64()
        .unwrap();
    assert!((4998..=5000).contains(&remaining), "{remaining}");
}

#[tokio::test]
async fn a_store_outage_is_503_never_401() {
    let mut redis = RedisServer::start();
    let config = ServeConfig {
        store: StoreConfig::Redis(RedisConfig {
            connect_timeout: Duration::from_millis(300),
            command_timeout: Duration::from_millis(300),
            ..RedisConfig::new(redis.url())
        }),
        ..ServeConfig::default()
    };
    let (app, _) = service(config).await;
    let token = token(&app, "alice").await;
    redis.kill();
    let outage = auth(&app, &[("x-session-token", &token)]).await;
    assert_eq!(outage.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&outage), "store_error");
    assert_eq!(
        outage.body["error"]["message"],
        "the session store is unavailable"
    );
    let ready = send(&app, Method::GET, "/readyz", &[], None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let created = post(&app, "/v1/tokens", json!({ "user_id": "bob" })).await;
    assert_eq!(created.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn serve_refuses_a_non_loopback_address_without_an_admin_key() {
    let config = ServeConfig {
        listen: "0.0.0.0:7480".parse().unwrap(),
        ..ServeConfig::default()
    };
    let error = config.validate().unwrap_err().to_string();
    assert!(
        error.contains("refusing to listen on 0.0.0.0:7480 without an admin key"),
        "{error}"
    );
    let keyed = ServeConfig {
        admin_key: Some("k".into()),
        ..config
    };
    keyed.validate().unwrap();
}

#[tokio::test]
async fn settings_the_policy_rejects_stop_startup() {
    let mut config = ServeConfig::default();
    config.settings.token_key_prefix = String::new();
    let error = format!("{:#}", build_state(&config).await.unwrap_err());
    assert!(
        error.contains("the policy rejects the settings: token key prefix must not be empty"),
        "{error}"
    );
}

#[test]
fn the_example_config_is_the_default_config() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/dsession.toml");
    assert_eq!(
        ServeConfig::from_file(&example).unwrap(),
        ServeConfig::default()
    );
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.toml");
    std::fs::write(
        &typo,
        "[store]\nkind = \"redis\"\nurl = \"redis://x\"\ntimeout = 5\n",
    )
    .unwrap();
    let error = format!("{:#}", ServeConfig::from_file(&typo).unwrap_err());
    assert!(error.contains("unknown field `timeout`"), "{error}");
}

#[test]
fn a_sentinel_store_is_configured_in_the_config_file() {
    let config: ServeConfig = toml::from_str(
        "[store]\nkind = \"sentinel\"\nsentinels = [\"127.0.0.1:26379\"]\nmaster_name = \"mymaster\"\nmin_replicas_ack = 1\n",
    )
    .unwrap();
    let mut expected = SentinelConfig::new(vec!["127.0.0.1:26379".into()], "mymaster");
    expected.server.min_replicas_ack = 1;
    match config.store {
        StoreConfig::Sentinel(config) => assert_eq!(config, expected),
        other => panic!("expected a sentinel store, got {other:?}"),
    }
}

/// `[store]` from `text`.
fn store_table(text: &str) -> Result<StoreConfig, toml::de::Error> {
    toml::from_str::<ServeConfig>(&format!("[store]\n{text}")).map(|config| config.store)
}

#[test]
fn every_key_of_the_sentinel_and_cluster_tables_is_read_and_a_misspelt_one_refused() {
    let server = ServerSettings {
        username: Some("dsession".into()),
        password: Some("pw".into()),
        connect_timeout: Duration::from_millis(200),
        command_timeout: Duration::from_millis(300),
        min_replicas_ack: 2,
        ack_timeout: Duration::from_millis(400),
        near_cache: NearCacheConfig {
            enabled: true,
            max_entries: 500,
            max_bytes: 1 << 20,
            mode: TrackingMode::Broadcast,
            prefixes: vec!["dsession:".into()],
            max_stale: Duration::from_millis(250),
        },
        // Not a key of the table: `[events]` names the stream.
        events: dsession::store::EventStream::default(),
    };
    let shared = "username = \"dsession\"\npassword = \"pw\"\nconnect_timeout_ms = 200\n\
                  command_timeout_ms = 300\nmin_replicas_ack = 2\nack_timeout_ms = 400\n";
    let near_cache = "[store.near_cache]\nenabled = true\nmax_entries = 500\n\
                      max_bytes = 1048576\nmode = \"broadcast\"\nprefixes = [\"dsession:\"]\n\
                      max_stale_ms = 250\n";
    let tls = TlsFiles {
        ca_file: Some("ca.crt".into()),
        ..TlsFiles::default()
    };
    let sentinel = format!(
        "kind = \"sentinel\"\nsentinels = [\"s:26379\"]\nmaster_name = \"m\"\n\
         sentinel_password = \"spw\"\ndb = 3\n{shared}[store.tls]\nca_file = \"ca.crt\"\n{near_cache}"
    );
    assert_eq!(
        store_table(&sentinel).unwrap(),
        StoreConfig::Sentinel(SentinelConfig {
            sentinel_password: Some("spw".into()),
            db: 3,
            server: server.clone(),
            tls: Some(tls.clone()),
            ..SentinelConfig::new(vec!["s:26379".into()], "m")
        })
    );
    let cluster = format!(
        "kind = \"cluster\"\nnodes = [\"redis://n:7000\"]\n{shared}[store.tls]\nca_file = \"ca.crt\"\n{near_cache}"
    );
    assert_eq!(
        store_table(&cluster).unwrap(),
        StoreConfig::Cluster(ClusterConfig {
            server,
            tls,
            ..ClusterConfig::new(vec!["redis://n:7000".into()])
        })
    );
    for table in [
        "kind = \"sentinel\"\nsentinels = []\nmaster_name = \"m\"\npasword = \"pw\"\n",
        "kind = \"sentinel\"\nsentinels = []\nmaster_name = \"m\"\nnodes = []\n",
        "kind = \"cluster\"\nnodes = []\nack_timeout = 5\n",
        "kind = \"cluster\"\nnodes = []\ndb = 1\n",
        "kind = \"redis\"\nurl = \"redis://x\"\n[store.near_cache]\nenabled = true\nentries = 5\n",
    ] {
        let error = store_table(table).unwrap_err().to_string();
        assert!(error.contains("unknown field"), "{table}: {error}");
    }
}

#[tokio::test]
async fn a_broken_policy_file_is_rejected_and_the_old_policy_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = policy_file(&dir, "default");
    let (app, _) = service(serving(&path, &[])).await;
    let token = token(&app, "alice").await;

    let reloaded = post(&app, "/admin/policy/reload", json!({})).await;
    assert_eq!(reloaded.status, StatusCode::OK);
    assert!(
        reloaded.body["exports"][0]
            .as_str()
            .unwrap()
            .contains("token-manage")
    );

    std::fs::write(&path, b"not a component").unwrap();
    let rejected = send(&app, Method::POST, "/admin/policy/reload", &[], None).await;
    assert_eq!(rejected.status, StatusCode::BAD_REQUEST);
    assert!(error_message(&rejected).contains("the old one keeps serving"));
    assert_eq!(
        auth(&app, &[("x-session-token", &token)]).await.status,
        StatusCode::OK
    );

    let metrics = send(&app, Method::GET, "/metrics", &[], None).await;
    let text = metrics.body.as_str().unwrap();
    assert!(text.contains("dsession_policy_reloads_total 1"), "{text}");
    assert!(
        text.contains("dsession_policy_reload_failures_total 1"),
        "{text}"
    );

    let (builtin, _) = service(ServeConfig::default()).await;
    let nothing = send(&builtin, Method::POST, "/admin/policy/reload", &[], None).await;
    assert_eq!(nothing.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_under_load_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(serving(&policy_file(&dir, "default"), &[])).await;
    let client = reqwest::Client::new();
    let token = served.create_token(&client, "alice").await;

    let (ok, failed) = served.auth_during_reloads(&client, &token, 10, || {}).await;
    let metrics = client
        .get(served.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("dsession_policy_reloads_total 10"),
        "{metrics}"
    );
    println!("hot swap: {ok} requests served during 10 swaps");
    assert_eq!(failed, 0);
    assert!(ok > 0);
}

#[tokio::test]
async fn sessions_are_listed_with_their_attributes_a_page_at_a_time() {
    let mut config = ServeConfig::default();
    config.policy.path = Some("hardened".into());
    config
        .policy
        .config
        .insert("max_sessions_per_device".into(), "3".into());
    config
        .policy
        .config
        .insert("on_limit".into(), "reject_new".into());
    let (app, _) = service(config).await;
    let attributes = json!({
        "device": "phone",
        "user_agent": "Mozilla/5.0 (Android 15)",
        "ip": "::ffff:198.51.100.7",
        "labels": { "app": "shop" },
    });
    for _ in 0..3 {
        let body = json!({ "user_id": "alice", "ttl": 600, "attributes": attributes });
        let created = post(&app, "/v1/tokens", body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    }
    let body = json!({ "user_id": "alice", "attributes": { "device": "phone" } });
    let refused = post(&app, "/v1/tokens", body).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(error_code(&refused), "conflict");
    assert!(
        error_message(&refused).contains("max_sessions_per_device"),
        "{}",
        error_message(&refused)
    );

    let first = send(
        &app,
        Method::GET,
        "/v1/users/alice/tokens?limit=2",
        &[],
        None,
    )
    .await;
    assert_eq!(first.status, StatusCode::OK);
    let tokens = first.body["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert_eq!(
        tokens[0]["attributes"],
        json!({
            "device": "phone",
            "user_agent": "Mozilla/5.0 (Android 15)",
            "ip": "198.51.100.7",
            "labels": { "app": "shop" },
        })
    );
    assert!(tokens[0]["created_at"].as_i64().unwrap() > 0);
    assert!(tokens[0]["last_seen"].as_i64().unwrap() > 0);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let escaped: String = url_escape(cursor);
    let uri = format!("/v1/users/alice/tokens?limit=2&cursor={escaped}");
    let second = send(&app, Method::GET, &uri, &[], None).await;
    assert_eq!(second.body["tokens"].as_array().unwrap().len(), 1);
    assert_eq!(second.body["next_cursor"], Value::Null);
    assert_ne!(second.body["tokens"][0]["token"], tokens[0]["token"]);
    assert_ne!(second.body["tokens"][0]["token"], tokens[1]["token"]);

    for (query, word) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=two", "limit"),
        ("cursor=nope", "cursor"),
        ("colour=blue", "colour"),
    ] {
        let uri = format!("/v1/users/alice/tokens?{query}");
        let bad = send(&app, Method::GET, &uri, &[], None).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            error_message(&bad).contains(word),
            "{query}: {:?}",
            bad.body
        );
    }
    let secret = "x".repeat(600);
    let body = json!({ "user_id": "bob", "attributes": { "user_agent": secret } });
    let oversized = post(&app, "/v1/tokens", body).await;
    assert_eq!(oversized.status, StatusCode::BAD_REQUEST);
    assert!(error_message(&oversized).contains("user_agent"));
    assert!(!error_message(&oversized).contains("xxxx"));
    let body = json!({ "user_id": "bob", "attributes": { "colour": "blue" } });
    let unknown = post(&app, "/v1/tokens", body).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
}

/// `text` percent-escaped for a query string.
fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
