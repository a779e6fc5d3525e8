//! User loaders against real sources: an HTTP user service the test
//! starts, and the PostgreSQL and MariaDB servers of this machine (see
//! scripts/prereqs.sh). Each SQL test works in a table of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use dsession::loader::{HttpLoader, HttpLoaderConfig, SqlLoader, SqlLoaderConfig};
use dsession::store::{Command, RedisConfig, Reply, StoreConfig};
use dsession::{Error, LoaderError, LoaderOptions, SessionManager, UserLoader};
use dsession_service::{LoaderConfig, LoaderKind, OnLoaderError, ServeConfig, app, build_state};
use serde_json::{Value, json};

use crate::support::databases::{Database, UsersTable, mysql_url, postgres_url};
use crate::support::http::get;
use crate::support::served::{Served, issue, raw};
use crate::support::user_service::{Answer, SeenRequest, UserService};
use crate::support::{Env, Kind, RedisServer, free_port};

fn http_config(template: String) -> LoaderConfig {
    LoaderConfig {
        kind: LoaderKind::Http,
        url: Some(template),
        ..LoaderConfig::default()
    }
}

fn http_loader(template: String, timeout: Duration) -> Arc<dyn UserLoader> {
    Arc::new(
        HttpLoader::new(HttpLoaderConfig {
            timeout,
            ..HttpLoaderConfig::new(template)
        })
        .unwrap(),
    )
}

fn manager(env: &Env, loader: Arc<dyn UserLoader>, options: LoaderOptions) -> SessionManager {
    env.builder()
        .shared_loader(loader)
        .loader_options(options)
        .build()
        .unwrap()
}

fn loader_error(outcome: Result<Option<dsession::User>, Error>) -> String {
    match outcome {
        Err(Error::Loader(message)) => message,
        other => panic!("expected a loader error, got {other:?}"),
    }
}

fn detail_header(headers: &HeaderMap) -> Option<Value> {
    let encoded = headers.get("x-user-detail")?.to_str().unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .unwrap();
    Some(serde_json::from_slice(&json).unwrap())
}

#[tokio::test]
async fn the_http_loader_sends_the_encoded_id_and_headers_and_reads_statuses() {
    let service = UserService::start().await;
    let loader = HttpLoader::new(HttpLoaderConfig {
        headers: vec![("X-Api-Version".into(), "2".into())],
        bearer_token: Some("s3cret".into()),
        ..HttpLoaderConfig::new(service.template())
    })
    .unwrap();

    let detail = loader.load("alice smith/1?").await.unwrap();
    assert_eq!(
        detail,
        Some(json!({ "id": "alice smith/1?", "source": "http" }))
    );
    assert_eq!(
        service.seen.requests.lock().unwrap()[0],
        SeenRequest {
            target: "/users/alice%20smith%2F1%3F".to_owned(),
            authorization: Some("Bearer s3cret".to_owned()),
            api_version: Some("2".to_owned()),
        }
    );

    service.answer(Answer::NotFound);
    assert_eq!(loader.load("bob").await.unwrap(), None, "404 is no detail");

    service.answer(Answer::Status(500));
    let error = loader.load("carol").await.unwrap_err().to_string();
    assert!(
        error.contains("HTTP 500") && error.contains("\"carol\""),
        "{error}"
    );
    service.answer(Answer::Status(401));
    let error = loader.load("carol").await.unwrap_err().to_string();
    assert!(error.contains("HTTP 401"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_loads_users_over_http_and_a_failure_is_503_or_no_detail_as_configured() {
    let service = UserService::start().await;
    let mut config = ServeConfig {
        loader: http_config(service.template()),
        ..ServeConfig::default()
    };
    config.auth.load_user = true;
    let state = build_state(&config).await.unwrap();
    let app = app(state.clone());
    let alice = issue(&state, "alice").await;

    let (status, headers, _) = get(&app, "/auth", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        detail_header(&headers),
        Some(json!({ "id": "alice", "source": "http" }))
    );

    service.answer(Answer::Status(500));
    let bob = issue(&state, "bob").await;
    let (status, _, body) = get(&app, "/auth", Some(&bob)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("loader_error"), "{body}");

    let (_, _, metrics) = get(&app, "/metrics", None).await;
    for line in [
        "dsession_loader_calls_total{outcome=\"detail\"} 1",
        "dsession_loader_calls_total{outcome=\"error\"} 1",
        "dsession_loader_errors_total{reason=\"status\"} 1",
        "dsession_loader_coalesced_waits_total 0",
        "dsession_loader_call_duration_seconds_count 2",
    ] {
        assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
    }

    // A service that answers "valid, no detail" when the loader fails.
    config.loader.on_error = OnLoaderError::NoDetail;
    let lenient = build_state(&config).await.unwrap();
    let lenient_app = dsession_service::app(lenient.clone());
    let carol = issue(&lenient, "carol").await;
    let (status, headers, _) = get(&lenient_app, "/auth", Some(&carol)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-user-id"], "carol");
    assert_eq!(detail_header(&headers), None);
    let cached = raw(&lenient, vec![Command::Get("gosession-user_carol".into())]).await;
    assert_eq!(cached, vec![Reply::Nil], "a failure is not cached");
    let (_, _, metrics) = get(&lenient_app, "/metrics", None).await;
    assert!(
        metrics.contains("dsession_loader_fallbacks_total 1"),
        "{metrics}"
    );

    service.answer(Answer::Detail(Duration::ZERO));
    let (_, headers, _) = get(&lenient_app, "/auth", Some(&carol)).await;
    assert_eq!(
        detail_header(&headers),
        Some(json!({ "id": "carol", "source": "http" }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_that_is_down_gives_clear_errors_and_the_service_recovers() {
    let port = free_port();
    let mut config = ServeConfig {
        loader: LoaderConfig {
            readyz: true,
            ..http_config(format!("http://127.0.0.1:{port}/users/{{id}}"))
        },
        ..ServeConfig::default()
    };
    config.auth.load_user = true;
    let state = build_state(&config)
        .await
        .expect("the service starts while its loader is down");
    let app = app(state.clone());
    let token = issue(&state, "alice").await;

    let message = loader_error(
        state
            .sessions()
            .check_token_or_update_user(&token, 60)
            .await,
    );
    assert!(
        message.contains("cannot reach the user source") && message.contains(&port.to_string()),
        "{message}"
    );
    let (status, _, body) = get(&app, "/auth", Some(&token)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("the user loader is unavailable"), "{body}");
    let (status, _, body) = get(&app, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("the user loader is unavailable"), "{body}");

    let _service = UserService::start_on(port).await;
    let (status, headers, _) = get(&app, "/auth", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        detail_header(&headers),
        Some(json!({ "id": "alice", "source": "http" }))
    );
    let (status, _, _) = get(&app, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_from_the_loader_is_a_clear_error_naming_the_user_and_nothing_is_cached() {
    let env = Env::new(Kind::Redis).await;
    let service = UserService::start().await;
    service.answer(Answer::InvalidJson);
    let sessions = manager(
        &env,
        http_loader(service.template(), Duration::from_secs(1)),
        LoaderOptions::default(),
    );
    let token = sessions.set_token("mallory", 600).await.unwrap().token;

    let message = loader_error(sessions.check_token_or_update_user(&token, 60).await);
    assert!(
        message.contains("\"mallory\"") && message.contains("not valid JSON"),
        "{message}"
    );
    assert_eq!(
        env.raw(vec![Command::Get("gosession-user_mallory".into())])
            .await,
        vec![Reply::Nil],
        "nothing is cached"
    );

    service.answer(Answer::Detail(Duration::ZERO));
    let user = sessions
        .check_token_or_update_user(&token, 60)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        user.detail,
        Some(json!({ "id": "mallory", "source": "http" }))
    );
    assert_eq!(service.calls(), 2, "the failure was not remembered");
}

/// Runs `check` and says how long it took.
async fn timed<T>(check: impl std::future::Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let outcome = check.await;
    (outcome, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_loader_past_its_timeout_is_a_loader_error_not_a_hung_request() {
    let env = Env::new(Kind::Memory).await;
    let timeout = Duration::from_millis(300);
    let options = LoaderOptions {
        timeout,
        ..LoaderOptions::default()
    };
    let service = UserService::start().await;
    service.answer(Answer::Detail(Duration::from_secs(10)));
    let never = |_: String| std::future::pending::<Result<Option<Value>, LoaderError>>();
    let postgres = SqlLoader::postgres(SqlLoaderConfig {
        timeout,
        ..SqlLoaderConfig::new(postgres_url(), "SELECT pg_sleep(10)::text || $1")
    })
    .unwrap();
    let mysql = SqlLoader::mysql(SqlLoaderConfig {
        timeout,
        ..SqlLoaderConfig::new(mysql_url(), "SELECT SLEEP(10) + LENGTH(?)")
    })
    .unwrap();
    let loaders: [(&str, Arc<dyn UserLoader>); 4] = [
        ("http", http_loader(service.template(), timeout)),
        ("closure", Arc::new(never)),
        ("postgres", Arc::new(postgres)),
        ("mysql", Arc::new(mysql)),
    ];
    for (kind, loader) in loaders {
        let sessions = manager(&env, loader, options);
        let token = sessions.set_token("slowpoke", 600).await.unwrap().token;
        let (outcome, took) = timed(sessions.check_token_or_update_user(&token, 60)).await;
        let message = match outcome {
            Err(Error::Loader(message)) => message,
            other => panic!("{kind}: expected a loader error, got {other:?}"),
        };
        assert!(message.contains("\"slowpoke\""), "{kind}: {message}");
        // Far below the source's 10 s, with room for a loaded machine.
        assert!(took < Duration::from_secs(5), "{kind} took {took:?}");
    }
}

/// A loader that counts its calls and answers only once the gate opens.
fn gated_loader(gate: Arc<tokio::sync::Semaphore>) -> (Arc<dyn UserLoader>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let loader = move |id: String| {
        counter.fetch_add(1, Ordering::SeqCst);
        let gate = Arc::clone(&gate);
        async move {
            let _open = gate.acquire().await.unwrap();
            Ok::<_, LoaderError>(Some(json!({ "id": id })))
        }
    };
    (Arc::new(loader), calls)
}

/// Checks one token `times` times at once, loading the user.
async fn concurrent_checks(
    sessions: &Arc<SessionManager>,
    token: &str,
    times: usize,
) -> Vec<Option<Value>> {
    let checks: Vec<_> = (0..times)
        .map(|_| {
            let sessions = Arc::clone(sessions);
            let token = token.to_owned();
            tokio::spawn(async move {
                sessions
                    .check_token_or_update_user(&token, 600)
                    .await
                    .unwrap()
                    .expect("the token is valid")
                    .detail
            })
        })
        .collect();
    let mut details = Vec::new();
    for check in checks {
        details.push(check.await.unwrap());
    }
    details
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_of_one_uncached_user_make_one_loader_call() {
    let env = Env::new(Kind::Redis).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (loader, calls) = gated_loader(Arc::clone(&gate));
    let sessions = Arc::new(manager(&env, loader, LoaderOptions::default()));
    let token = sessions.set_token("popular", 600).await.unwrap().token;

    let checks = {
        let sessions = Arc::clone(&sessions);
        tokio::spawn(async move { concurrent_checks(&sessions, &token, 100).await })
    };
    // The load stays open until the 99 others wait on it, or 10 s passed.
    let waits = || sessions.loader().unwrap().metrics().coalesced_waits();
    let deadline = Instant::now() + Duration::from_secs(10);
    while waits() < 99 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gate.add_permits(1000);
    let details = checks.await.unwrap();

    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(waits(), 99);
    assert!(
        details
            .iter()
            .all(|detail| detail == &Some(json!({ "id": "popular" })))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_over_http_of_one_uncached_user_make_one_call_to_a_200_ms_loader_every_run() {
    let redis = RedisServer::start();
    let service = UserService::start().await;
    service.answer(Answer::Detail(Duration::from_millis(200)));
    let served = Served::start(ServeConfig {
        store: StoreConfig::Redis(RedisConfig::new(redis.url())),
        loader: http_config(service.template()),
        ..ServeConfig::default()
    })
    .await;
    let client = reqwest::Client::new();
    for run in 0..20 {
        let user = format!("popular-{run}");
        let token = served.create_token(&client, &user).await;
        let before = service.calls();
        // Spread over 300 ms, as clients arrive: some read the cache while
        // the first load's answer is being written there.
        let checks: Vec<_> = (0..100)
            .map(|i| {
                let request = client
                    .post(served.url("/v1/tokens/check"))
                    .json(&json!({ "token": token, "load_user": true }));
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(3 * i)).await;
                    let checked: Value = request.send().await.unwrap().json().await.unwrap();
                    checked["user"]["detail"]["id"].clone()
                })
            })
            .collect();
        for check in checks {
            assert_eq!(check.await.unwrap(), json!(user), "run {run}");
        }
        assert_eq!(service.calls() - before, 1, "loader calls in run {run}");
    }
}

async fn sql_loader_reads_a_json_column_or_makes_an_object_of_columns(database: Database) {
    let table = UsersTable::create(database, 0).await;
    let p = table.parameter();

    let json_column = table.loader(&format!("SELECT detail FROM {{table}} WHERE id = {p}"));
    assert_eq!(
        json_column.load("alice").await.unwrap(),
        Some(json!({ "plan": "pro" }))
    );
    assert_eq!(
        json_column.load("nobody").await.unwrap(),
        None,
        "no row is no detail"
    );

    let columns = table.loader(&format!(
        "SELECT id, name, age, admin FROM {{table}} WHERE id = {p}"
    ));
    assert_eq!(
        columns.load("alice").await.unwrap(),
        Some(json!({ "id": "alice", "name": "Alice", "age": 30, "admin": true }))
    );

    let text_column = table.loader(&format!("SELECT note FROM {{table}} WHERE id = {p}"));
    let error = text_column.load("alice").await.unwrap_err().to_string();
    assert!(
        error.contains("\"alice\"") && error.contains("not valid JSON"),
        "{error}"
    );

    let bad_query = table.loader(&format!("SELECT nope FROM {{table}} WHERE id = {p}"));
    let error = bad_query.load("alice").await.unwrap_err().to_string();
    assert!(error.contains("the user query failed"), "{error}");
}

#[tokio::test]
async fn the_postgres_loader_reads_a_json_column_or_makes_an_object_of_columns() {
    sql_loader_reads_a_json_column_or_makes_an_object_of_columns(Database::Postgres).await;
}

#[tokio::test]
async fn the_mysql_loader_reads_a_json_column_or_makes_an_object_of_columns() {
    sql_loader_reads_a_json_column_or_makes_an_object_of_columns(Database::MySql).await;
}

#[tokio::test]
async fn an_sql_loader_whose_database_is_down_says_so() {
    let port = free_port();
    let loaders = [
        SqlLoader::postgres(SqlLoaderConfig::new(
            format!("postgres://postgres@127.0.0.1:{port}/test"),
            "SELECT $1",
        ))
        .unwrap(),
        SqlLoader::mysql(SqlLoaderConfig::new(
            format!("mysql://root@127.0.0.1:{port}/test"),
            "SELECT ?",
        ))
        .unwrap(),
    ];
    for loader in loaders {
        let error = loader.load("alice").await.unwrap_err().to_string();
        assert!(error.contains("no database connection"), "{error}");
        assert!(loader.ready().await.is_err());
    }
}

/// The middle of some durations.
fn median(mut durations: Vec<Duration>) -> Duration {
    durations.sort();
    durations[durations.len() / 2]
}

/// Figures for the closing note of issue 10, printed (run with
/// `--nocapture`) rather than asserted: loader calls made by 100
/// concurrent checks of one uncached user, and the latency of
/// check-token-or-update-user for an uncached and a cached user, on a
/// real Redis, for every loader kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_loader_calls_and_latency_per_kind() {
    const USERS: usize = 30;
    let env = Env::new(Kind::Redis).await;
    let service = UserService::start().await;
    let postgres = UsersTable::create(Database::Postgres, USERS).await;
    let mysql = UsersTable::create(Database::MySql, USERS).await;
    let closure = |id: String| async move { Ok::<_, LoaderError>(Some(json!({ "id": id }))) };
    let loaders: [(&str, Arc<dyn UserLoader>); 4] = [
        ("closure", Arc::new(closure)),
        (
            "http",
            http_loader(service.template(), Duration::from_secs(1)),
        ),
        (
            "postgres",
            Arc::new(postgres.loader("SELECT detail FROM {table} WHERE id = $1")),
        ),
        (
            "mysql",
            Arc::new(mysql.loader("SELECT detail FROM {table} WHERE id = ?")),
        ),
    ];
    let mut report = vec![format!(
        "{:<9} {:>26} {:>16} {:>14}",
        "loader", "calls / 100 concurrent", "uncached (med)", "cached (med)"
    )];
    for (kind, loader) in loaders {
        let sessions = Arc::new(manager(&env, loader, LoaderOptions::default()));
        let user = format!("user{}", USERS - 1);
        let token = sessions.set_token(&user, 600).await.unwrap().token;
        let details = concurrent_checks(&sessions, &token, 100).await;
        assert!(details.iter().all(Option::is_some), "{kind}: {details:?}");
        let calls = sessions.loader().unwrap().metrics().calls();

        let mut uncached = Vec::new();
        let mut cached = Vec::new();
        for user in 0..USERS - 1 {
            let token = sessions
                .set_token(&format!("user{user}"), 600)
                .await
                .unwrap()
                .token;
            for times in [&mut uncached, &mut cached] {
                let (user, took) = timed(sessions.check_token_or_update_user(&token, 600)).await;
                assert!(user.unwrap().unwrap().detail.is_some(), "{kind}");
                times.push(took);
            }
        }
        report.push(format!(
            "{kind:<9} {calls:>26} {:>16?} {:>14?}",
            median(uncached),
            median(cached)
        ));
        env.raw(vec![Command::Del(
            (0..USERS)
                .map(|user| format!("gosession-user_user{user}"))
                .collect(),
        )])
        .await;
    }
    println!("{}", report.join("\n"));
}
