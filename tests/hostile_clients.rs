//! Regressions from running the service beside gosession and against odd
//! input and hostile clients: headers, cookies, error shapes, metrics,
//! slow and idle connections, shutdown, reload validation.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use dsession::store::{Command, Reply, SetArgs, SetCondition};
use dsession_service::{LimitsConfig, ServeConfig, app};
use serde_json::json;

use crate::support::HEX32;
use crate::support::http::{auth, error_code, error_message, oneshot, post, send};
use crate::support::served::{Served, policy_file, raw, service, serving, token, with_admin_key};

/// What `X-User-Id` percent-encodes, as the README documents it.
const X_USER_ID: &percent_encoding::AsciiSet =
    &percent_encoding::CONTROLS.add(b' ').add(b'%').add(b',');

/// `GET /auth` with header values given as raw bytes, as a gateway forwards
/// them; the status and `X-User-Id`.
async fn auth_raw(app: &axum::Router, headers: &[(&str, &[u8])]) -> (StatusCode, Option<String>) {
    let mut request = Request::builder().method(Method::GET).uri("/auth");
    for (name, value) in headers {
        request = request.header(*name, HeaderValue::from_bytes(value).unwrap());
    }
    let (status, headers, _) = oneshot(app, request.body(Body::empty()).unwrap()).await;
    let user = headers
        .get("x-user-id")
        .map(|value| value.to_str().unwrap().to_owned());
    (status, user)
}

#[tokio::test]
async fn without_a_loader_put_user_answers_400_and_keeps_gosessions_detail() {
    let (app, state) = service(ServeConfig::default()).await;
    let go_cached = r#"{"id":"dave","detail":{"from":"go","name":"dave"}}"#;
    raw(
        &state,
        vec![Command::Set(SetArgs {
            key: "gosession-user_dave".into(),
            value: go_cached.into(),
            ttl_seconds: 0,
            condition: SetCondition::Always,
        })],
    )
    .await;
    let put = send(&app, Method::PUT, "/v1/users/dave", &[], Some("{}")).await;
    assert_eq!(put.status, StatusCode::BAD_REQUEST);
    assert!(
        error_message(&put).contains("no user loader"),
        "{:?}",
        put.body
    );
    let refreshed = post(&app, "/v1/users/refresh", json!({ "ids": ["dave"] })).await;
    assert_eq!(refreshed.status, StatusCode::BAD_REQUEST);
    let cached = raw(&state, vec![Command::Get("gosession-user_dave".into())]).await;
    assert_eq!(cached, vec![Reply::Text(go_cached.into())]);
}

#[tokio::test]
async fn tokens_of_non_ascii_users_pass_forward_auth_from_every_place() {
    let (app, _) = service(ServeConfig::default()).await;
    for user in ["é", "józef", "admin, bob"] {
        let token = token(&app, user).await;
        let encoded: String =
            percent_encoding::utf8_percent_encode(&token, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let bearer = format!("Bearer {token}");
        let raw_cookie = format!("lang=é; dsession_token={token}");
        let encoded_cookie = format!("dsession_token={encoded}; theme=dark");
        for headers in [
            vec![("authorization", bearer.as_bytes())],
            vec![("x-session-token", token.as_bytes())],
            vec![("cookie", raw_cookie.as_bytes())],
            vec![("cookie", encoded_cookie.as_bytes())],
        ] {
            let (status, user_id) = auth_raw(&app, &headers).await;
            assert_eq!(status, StatusCode::OK, "{user} by {:?}", headers[0].0);
            let expected = percent_encoding::utf8_percent_encode(user, X_USER_ID).to_string();
            assert_eq!(user_id.as_deref(), Some(expected.as_str()));
        }
    }
    let (_, user_id) = auth_raw(
        &app,
        &[(
            "x-session-token",
            token(&app, "admin, bob").await.as_bytes(),
        )],
    )
    .await;
    assert_eq!(user_id.as_deref(), Some("admin%2C%20bob"));
}

#[tokio::test]
async fn a_non_ascii_cookie_beside_the_session_cookie_is_ignored() {
    let (app, _) = service(ServeConfig::default()).await;
    let token = token(&app, "alice").await;
    for cookie in [
        format!("lang=é; dsession_token={token}"),
        format!("lang=e; dsession_token={token}"),
    ] {
        let (status, _) = auth_raw(&app, &[("cookie", cookie.as_bytes())]).await;
        assert_eq!(status, StatusCode::OK, "{cookie}");
    }
    let mut latin1 = b"lang=\xe9; dsession_token=".to_vec();
    latin1.extend_from_slice(token.as_bytes());
    assert_eq!(
        auth_raw(&app, &[("cookie", &latin1)]).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn ids_that_could_never_pass_forward_auth_are_refused_at_creation() {
    let (app, _) = service(ServeConfig::default()).await;
    for id in ["a\r\nb", "a\nb", "a\u{0}b", " alice", "alice "] {
        let created = post(&app, "/v1/tokens", json!({ "user_id": id })).await;
        assert_eq!(created.status, StatusCode::BAD_REQUEST, "{id:?}");
        assert!(
            error_message(&created).contains("user id"),
            "{:?}",
            created.body
        );
    }
    let long = "l".repeat(300);
    let token = token(&app, &long).await;
    let checked = post(&app, "/v1/tokens/check", json!({ "token": token })).await;
    assert_eq!(checked.body["valid"], true);
    assert_eq!(
        auth(&app, &[("x-session-token", &token)]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn made_up_methods_do_not_grow_the_metrics() {
    let (app, _) = service(ServeConfig::default()).await;
    for i in 0..500 {
        let method = Method::from_bytes(format!("X{i}").as_bytes()).unwrap();
        let response = send(&app, method, "/auth", &[], None).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    }
    let metrics = send(&app, Method::GET, "/metrics", &[], None).await;
    let text = metrics.body.as_str().unwrap();
    let series = text
        .lines()
        .filter(|line| line.starts_with("dsession_http_requests_total{"))
        .count();
    assert!(series <= 2, "{series} series:\n{text}");
    assert!(
        text.contains(
            r#"dsession_http_requests_total{method="other",route="/auth",status="401"} 500"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn every_error_has_the_documented_json_shape() {
    let (app, _) = service(ServeConfig::default()).await;
    let bad_path = send(&app, Method::GET, "/v1/users/%FF/tokens", &[], None).await;
    assert_eq!(bad_path.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&bad_path), "invalid_argument");
    let wrong_method = send(&app, Method::GET, "/v1/tokens", &[], None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(&wrong_method), "method_not_allowed");
    assert_eq!(wrong_method.headers[header::ALLOW], "POST");

    for array in [json!(["alice", 60]), json!("alice"), json!(null)] {
        let created = post(&app, "/v1/tokens", array.clone()).await;
        assert_eq!(created.status, StatusCode::BAD_REQUEST, "{array}");
        assert_eq!(error_code(&created), "invalid_argument");
    }
    let not_object = post(&app, "/v1/tokens/check", json!([format!("a_{HEX32}")])).await;
    assert_eq!(not_object.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_json_body_with_a_duplicate_key_is_refused_on_every_route() {
    let (app, _) = service(ServeConfig::default()).await;
    let token = token(&app, "alice").await;
    let routes = [
        (
            Method::POST,
            "/v1/tokens",
            r#"{"user_id":"a","user_id":"b"}"#.to_owned(),
        ),
        (
            Method::POST,
            "/v1/tokens",
            r#"{"user_id":"a","ttl":60,"ttl":600}"#.to_owned(),
        ),
        (
            Method::POST,
            "/v1/tokens/check",
            format!(r#"{{"token":"{token}","token":"{token}"}}"#),
        ),
        (
            Method::POST,
            "/v1/tokens/refresh",
            format!(r#"{{"token":"{token}","ttl":1,"ttl":2}}"#),
        ),
        (
            Method::POST,
            "/v1/tokens/revoke",
            format!(r#"{{"token":"x","token":"{token}"}}"#),
        ),
        (
            Method::PUT,
            "/v1/users/alice",
            r#"{"ttl":1,"ttl":2}"#.to_owned(),
        ),
        (
            Method::POST,
            "/v1/users/refresh",
            r#"{"ids":["a"],"ids":["b"]}"#.to_owned(),
        ),
    ];
    for (method, uri, body) in routes {
        let answer = send(&app, method.clone(), uri, &[], Some(&body)).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{method} {uri} {body}"
        );
        assert_eq!(error_code(&answer), "invalid_argument");
        assert!(
            error_message(&answer).contains("duplicate field"),
            "{}",
            error_message(&answer)
        );
    }
    let checked = post(&app, "/v1/tokens/check", json!({ "token": token })).await;
    assert_eq!(checked.body["valid"], true, "the revoke above was refused");
}

#[tokio::test]
async fn requests_schemathesis_found_are_answered_as_the_schema_says() {
    let (app, _) = service(ServeConfig::default()).await;
    let created = send(
        &app,
        Method::POST,
        "/v1/tokens",
        &[],
        Some(r#"{"user_id":"a","ttl":6810.0}"#),
    )
    .await;
    assert_eq!(
        created.status,
        StatusCode::CREATED,
        "an integral float is an integer"
    );
    let fractional = send(
        &app,
        Method::POST,
        "/v1/tokens",
        &[],
        Some(r#"{"user_id":"a","ttl":1.5}"#),
    )
    .await;
    assert_eq!(fractional.status, StatusCode::BAD_REQUEST);
    let token = created.body["token"].as_str().unwrap();
    for load_user in [false, true] {
        let checked = post(
            &app,
            "/v1/tokens/check",
            json!({ "token": token, "load_user": load_user, "user_ttl": -1 }),
        )
        .await;
        assert_eq!(
            checked.status,
            StatusCode::BAD_REQUEST,
            "load_user {load_user}"
        );
        assert!(
            error_message(&checked).contains("user_ttl"),
            "{:?}",
            checked.body
        );
    }
    let escaped = send(&app, Method::GET, "/v1/users/%zz/tokens", &[], None).await;
    assert_eq!(escaped.status, StatusCode::BAD_REQUEST);
    assert!(error_message(&escaped).contains("percent-escape"));
    let empty = post(&app, "/v1/tokens/check", json!({ "token": "" })).await;
    assert_eq!(
        empty.status,
        StatusCode::BAD_REQUEST,
        "README: an empty token is invalid-argument"
    );
    let malformed = post(&app, "/v1/tokens/check", json!({ "token": "not a token" })).await;
    assert_eq!(malformed.body, json!({ "valid": false, "user": null }));
}

#[tokio::test]
async fn the_openapi_document_states_what_the_server_enforces() {
    let (app, _) = service(ServeConfig::default()).await;
    let document = send(&app, Method::GET, "/openapi.json", &[], None)
        .await
        .body;
    let schemas = &document["components"]["schemas"];
    let create = &schemas["CreateTokenRequest"]["properties"];
    assert_eq!(create["user_id"]["$ref"], "#/components/schemas/UserId");
    assert_eq!(schemas["UserId"]["minLength"], 1);
    assert!(schemas["UserId"]["pattern"].is_string());
    assert_eq!(create["ttl"]["minimum"], 0);
    assert_eq!(create["ttl"]["maximum"], 315360000);
    let auth = document["paths"]["/auth"].as_object().unwrap();
    for method in [
        "get", "head", "post", "put", "delete", "patch", "options", "trace",
    ] {
        assert!(auth.contains_key(method), "/auth lacks {method}");
    }
    let responses = &document["paths"]["/v1/tokens/check"]["post"]["responses"];
    assert!(
        responses["500"]["description"]
            .as_str()
            .unwrap()
            .contains("policy_error")
    );
}

#[tokio::test]
async fn a_huge_content_length_is_refused_from_the_header_alone() {
    let served = Served::start(ServeConfig::default()).await;
    let port = served.port();
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(
                b"POST /v1/tokens HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                  content-length: 10000000000\r\n\r\n{",
            )
            .unwrap();
        let mut answer = vec![0; 1024];
        let n = stream.read(&mut answer).unwrap();
        String::from_utf8_lossy(&answer[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
}

/// What a client read of its oversized request: the status and the body,
/// or the error it met instead.
type Answer = Result<(u16, String), String>;

/// A client sending an oversized body to the port.
type OversizedClient = fn(u16, usize) -> Answer;

/// `POST /v1/tokens` with a body of `bytes` bytes from Python's `urllib`.
fn oversized_from_urllib(port: u16, bytes: usize) -> Answer {
    let script = "import sys, urllib.request, urllib.error\n\
        request = urllib.request.Request(sys.argv[1], data=b'x' * int(sys.argv[2]),\n\
            headers={'content-type': 'application/json'})\n\
        try:\n    answer = urllib.request.urlopen(request)\n\
        except urllib.error.HTTPError as error:\n    answer = error\n\
        except Exception as error:\n    sys.exit(repr(error))\n\
        print(answer.status)\nprint(answer.read().decode())\n";
    let output = std::process::Command::new("python3")
        .args(["-c", script, &format!("http://127.0.0.1:{port}/v1/tokens")])
        .arg(bytes.to_string())
        .output()
        .expect("python3 runs");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (status, body) = stdout.split_once('\n').ok_or_else(|| stdout.clone())?;
    Ok((status.parse().map_err(|_| stdout.clone())?, body.to_owned()))
}

/// The same with curl, its body from a file.
fn oversized_from_curl(port: u16, bytes: usize) -> Answer {
    let dir = tempfile::tempdir().unwrap();
    let (body, answer) = (dir.path().join("body.json"), dir.path().join("answer"));
    std::fs::write(&body, vec![b'x'; bytes]).unwrap();
    let output = std::process::Command::new("curl")
        .args([
            "-sS",
            "-w",
            "%{http_code}",
            "-H",
            "content-type: application/json",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg("-o")
        .arg(&answer)
        .arg(format!("http://127.0.0.1:{port}/v1/tokens"))
        .output()
        .expect("curl runs");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let status = String::from_utf8_lossy(&output.stdout).into_owned();
    Ok((
        status.parse().map_err(|_| status.clone())?,
        std::fs::read_to_string(answer).unwrap_or_default(),
    ))
}

/// The same from a client that writes the whole request before it reads.
fn oversized_sent_whole(port: u16, bytes: usize) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "POST /v1/tokens HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         connection: close\r\ncontent-length: {bytes}\r\n\r\n"
    )
    .into_bytes();
    request.resize(request.len() + bytes, b'x');
    stream
        .write_all(&request)
        .map_err(|error| format!("write: {error}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|error| format!("read: {error}"))?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split(' ').nth(1).and_then(|code| code.parse().ok());
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned());
    status.zip(body).ok_or(answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_reads_the_413_of_a_body_over_the_limit() {
    let served = Served::start(ServeConfig::default()).await;
    let port = served.port();
    let clients: [(&str, OversizedClient); 3] = [
        ("urllib", oversized_from_urllib),
        ("curl", oversized_from_curl),
        ("a client that sends it all first", oversized_sent_whole),
    ];
    for (client, send) in clients {
        for bytes in [3_000_000, 3_000_000, 3_000_000, 10_000_000, 10_000_000] {
            let answer = tokio::task::spawn_blocking(move || send(port, bytes))
                .await
                .unwrap();
            assert!(
                matches!(&answer, Ok((413, body)) if body.contains("payload_too_large")),
                "{client}, {bytes} bytes: {answer:?}"
            );
        }
    }
}

#[tokio::test]
async fn an_admin_key_with_a_trailing_newline_still_opens_the_admin_api() {
    let (app, _) = service(with_admin_key("s3cret\n")).await;
    let allowed = send(
        &app,
        Method::POST,
        "/v1/tokens",
        &[("authorization", "Bearer s3cret")],
        Some(r#"{"user_id":"alice"}"#),
    )
    .await;
    assert_eq!(allowed.status, StatusCode::CREATED);
}

#[tokio::test]
async fn reload_refuses_a_policy_that_startup_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let path = policy_file(&dir, "default");
    let config = serving(&path, &[]);
    let (app, _) = service(config.clone()).await;
    let token = token(&app, "alice").await;

    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/guests/hostile.wasm"),
        &path,
    )
    .unwrap();
    let startup = dsession_service::build_state(&config).await.unwrap_err();
    let rejected = send(&app, Method::POST, "/admin/policy/reload", &[], None).await;
    assert_eq!(rejected.status, StatusCode::BAD_REQUEST);
    let message = error_message(&rejected);
    assert!(
        message.contains("the policy rejects the settings"),
        "reload: {message}; startup: {startup:#}"
    );
    assert!(format!("{startup:#}").contains("the policy rejects the settings"));
    assert_eq!(
        auth(&app, &[("x-session-token", &token)]).await.status,
        StatusCode::OK
    );
}

/// Connections that send nothing, or a byte now and then, while the test
/// asks `/healthz` on a fresh connection.
fn open_idle(port: u16, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect()
}

/// A request whose headers promise a body that never comes.
fn half_sent_request(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(
            b"POST /v1/tokens HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{",
        )
        .unwrap();
    stream
}

fn healthz(port: u16) -> (u16, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, started.elapsed())
}

/// Whether the server closed `stream` (a read sees end of file or a reset).
fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut byte = [0; 64];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) => {
                return error.kind() != std::io::ErrorKind::WouldBlock
                    && error.kind() != std::io::ErrorKind::TimedOut;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_quickly_with_2000_idle_sockets_held_open() {
    let served = Served::start(ServeConfig::default()).await;
    let port = served.port();
    let (status, took) = tokio::task::spawn_blocking(move || {
        let idle = open_idle(port, 2000);
        std::thread::sleep(Duration::from_millis(200));
        let answer = healthz(port);
        drop(idle);
        answer
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(took < Duration::from_millis(50), "/healthz took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_excess_connections_are_timed_out_and_capped() {
    let config = ServeConfig {
        limits: LimitsConfig {
            header_read_timeout_ms: 500,
            idle_timeout_ms: 1000,
            max_connections: Some(4),
            body_timeout_ms: 500,
            ..LimitsConfig::default()
        },
        ..ServeConfig::default()
    };
    let served = Served::start(config).await;
    let port = served.port();
    tokio::task::spawn_blocking(move || {
        // Slowloris: a header byte at a time is cut off at the header
        // read time-out.
        let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
        let started = Instant::now();
        let mut cut = false;
        while started.elapsed() < Duration::from_secs(3) {
            if slow.write_all(b"x").is_err()
                || closed_by_server(&mut slow, Duration::from_millis(100))
            {
                cut = true;
                break;
            }
        }
        assert!(cut, "a slowloris client was never cut off");

        // A body that never arrives: 408 in the documented shape.
        let mut stalled = half_sent_request(port);
        stalled
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = vec![0; 1024];
        let n = stalled.read(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("request_timeout"), "{answer}");

        // At the cap, a new client waits; once idle connections time out
        // it is served.
        let idle = open_idle(port, 4);
        let (status, took) = healthz(port);
        assert_eq!(status, 200);
        assert!(
            took >= Duration::from_millis(300),
            "served past the cap after {took:?}"
        );
        drop(idle);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_within_its_deadline_despite_a_half_sent_request() {
    let config = ServeConfig {
        limits: LimitsConfig {
            shutdown_timeout_ms: 500,
            ..LimitsConfig::default()
        },
        ..ServeConfig::default()
    };
    let state = dsession_service::build_state(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dsession_service::serve_on(listener, state, async {
        let _ = stopped.await;
    }));
    let mut half = tokio::task::spawn_blocking(move || half_sent_request(port))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve_on outlived its shutdown deadline")
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(
        tokio::task::spawn_blocking(move || closed_by_server(&mut half, Duration::from_secs(2)))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn policy_failures_are_documented_500s() {
    let sessions = dsession::SessionManager::builder()
        .policy(crate::support::hostile_policy())
        .limits(crate::support::tight_limits())
        .build()
        .unwrap();
    let app = app(dsession_service::AppState::new(
        sessions,
        &ServeConfig::default(),
        dsession_service::Metrics::default(),
    ));
    let trapped = post(&app, "/v1/tokens", json!({ "user_id": "panic" })).await;
    assert_eq!(trapped.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(error_code(&trapped), "policy_error");
    let message = error_message(&trapped);
    assert!(message.contains("policy failed"), "{message}");
}
