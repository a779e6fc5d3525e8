//! The hardened policy's own promises: nothing usable at rest, idle and
//! absolute expiry, at most N sessions, O(1) revoke-all, its settings, and
//! hot swaps between it and the default policy and under load.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::StatusCode;
use dsession::store::{EventId, EventRange, MemoryStore, Tap};
use dsession::{Error, Policy, SessionAttributes, SessionManager, Settings};
use dsession_service::ServeConfig;
use serde_json::json;

use crate::support::http::{auth, error_message, post};
use crate::support::served::{Served, policy_file, service, serving, token};
use crate::support::{Env, Kind, hardened_policy, on_every_store};

/// A manager on `env`'s store running the hardened policy with `config`.
fn hardened(env: &Env, config: &[(&str, &str)]) -> SessionManager {
    env.builder()
        .policy(hardened_policy())
        .policy_config(config.iter().copied())
        .build()
        .unwrap()
}

async fn valid(sessions: &SessionManager, token: &str) -> bool {
    sessions.check_token(token).await.unwrap().is_some()
}

#[tokio::test]
async fn a_redis_dump_holds_no_token_and_no_secret() {
    let env = Env::new(Kind::Redis).await;
    let sessions = env
        .builder()
        .policy(hardened_policy())
        .loader(|id: String| async move { Ok(Some(json!({ "name": id }))) })
        .build()
        .unwrap();
    let mut tokens = Vec::new();
    for user in ["alice", "alice", "b{o}b"] {
        let issued = sessions.set_token(user, 600).await.unwrap();
        assert!(
            sessions
                .check_token_or_update_user(&issued.token, 60)
                .await
                .unwrap()
                .is_some()
        );
        sessions.refresh_token(&issued.token, 300).await.unwrap();
        tokens.push(issued.token);
    }
    assert_eq!(sessions.list_user_token("alice").await.unwrap().len(), 2);

    let mut redis = env.redis.as_ref().unwrap().client().await;
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let mut dump = String::new();
    for key in &keys {
        let kind: String = ::redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut redis)
            .await
            .unwrap();
        let value = match kind.as_str() {
            "string" => ::redis::cmd("GET")
                .arg(key)
                .query_async::<String>(&mut redis)
                .await
                .unwrap(),
            "hash" => ::redis::cmd("HGETALL")
                .arg(key)
                .query_async::<Vec<String>>(&mut redis)
                .await
                .unwrap()
                .join("\n"),
            other => panic!("unexpected {other} at {key}"),
        };
        dump.push_str(&format!("{key}\n{value}\n"));
        // One hash tag per user: a Redis Cluster slot holds all of a user's keys.
        assert!(
            key.starts_with("dsession:{alice}:") || key.starts_with("dsession:{b%7Bo%7Db}:"),
            "{key}"
        );
    }
    for token in &tokens {
        let secret = token.rsplit_once('_').unwrap().1;
        assert_eq!(secret.len(), 64);
        assert!(!dump.contains(secret), "a secret is in the dump:\n{dump}");
    }
}

/// A manager on `env`'s store running the hardened policy with `config`,
/// and the tap that counts its store calls.
fn tapped(env: &Env, config: &[(&str, &str)]) -> (Tap, SessionManager) {
    let tap = Tap::shared(Arc::clone(&env.store));
    let sessions = SessionManager::builder()
        .store(tap.clone())
        .policy(hardened_policy())
        .policy_config(config.iter().copied())
        .build()
        .unwrap();
    (tap, sessions)
}

async fn with_no_touch_interval_each_check_slides_the_idle_expiry(env: Env) {
    let config = [
        ("idle_timeout_seconds", "2"),
        ("touch_interval_seconds", "0"),
    ];
    let (tap, sessions) = tapped(&env, &config);
    let issued = sessions.set_token("alice", 600).await.unwrap();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        tap.counters().take();
        let user = sessions.check_token(&issued.token).await.unwrap();
        assert_eq!(user.unwrap().token_remain_live_time, 2, "the idle timeout");
        assert_eq!(
            tap.counters().take().round_trips,
            2,
            "the read, then the slide"
        );
    }
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert!(!valid(&sessions, &issued.token).await, "unused for 3 s");
    assert!(sessions.list_user_token("alice").await.unwrap().is_empty());
}

async fn checks_within_the_touch_interval_only_read_and_idle_expiry_keeps_to_it(env: Env) {
    let config = [
        ("idle_timeout_seconds", "4"),
        ("touch_interval_seconds", "2"),
    ];
    let (tap, sessions) = tapped(&env, &config);
    let issued = sessions.set_token("alice", 600).await.unwrap();
    let check = || async {
        tap.counters().take();
        let user = sessions.check_token(&issued.token).await.unwrap().unwrap();
        let counts = tap.counters().take();
        (
            user.token_remain_live_time,
            counts.round_trips,
            counts.commands,
        )
    };
    // GET, TTL and HGET in one round trip: a slide now would add under 2 s.
    assert_eq!(check().await, (4, 1, 3), "just issued");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (left, round_trips, commands) = check().await;
    assert!((3..=4).contains(&left), "{left}");
    assert_eq!((round_trips, commands), (1, 3), "0.5 s after");
    // 1.5 s left of 4: the slide adds 2 s or more, and takes one SET XX.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(check().await, (4, 2, 4), "2.5 s after");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (left, round_trips, _) = check().await;
    assert!((3..=4).contains(&left), "{left}");
    assert_eq!(round_trips, 1);

    // Unused since that check, whose key the touch 0.5 s before left with
    // 3.5 s: it expires within [idle - interval, idle] = [2 s, 4 s] of it.
    // Listing reads the key's TTL without sliding it.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(sessions.list_user_token("alice").await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(2400)).await;
    assert!(sessions.list_user_token("alice").await.unwrap().is_empty());
    assert!(!valid(&sessions, &issued.token).await, "unused for 4.2 s");
}

async fn no_check_keeps_a_token_past_its_absolute_lifetime(env: Env) {
    let sessions = hardened(&env, &[("idle_timeout_seconds", "2")]);
    let issued = sessions.set_token("alice", 3).await.unwrap();
    let mut last_valid = None;
    for step in 0..9 {
        if valid(&sessions, &issued.token).await {
            last_valid = Some(step);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Checked every 500 ms, so never idle; the 3 s lifetime still ends it.
    let last_valid = last_valid.expect("valid at first");
    assert!(
        (3..=6).contains(&last_valid),
        "valid until step {last_valid}"
    );
    assert!(!valid(&sessions, &issued.token).await);
    assert_eq!(
        sessions.refresh_token(&issued.token, 600).await,
        Err(Error::NotFound)
    );
}

async fn refresh_never_extends_past_the_absolute_lifetime(env: Env) {
    let sessions = hardened(&env, &[]);
    let issued = sessions.set_token("alice", 100).await.unwrap();
    let refreshed = sessions.refresh_token(&issued.token, 10_000).await.unwrap();
    assert!(refreshed <= issued.token_expire_time, "{refreshed}");
    let user = sessions.check_token(&issued.token).await.unwrap().unwrap();
    assert!(user.token_expire_time <= issued.token_expire_time);
}

async fn a_login_beyond_max_sessions_evicts_the_oldest(env: Env) {
    let sessions = hardened(&env, &[("max_sessions", "3")]);
    let mut tokens = Vec::new();
    for _ in 0..5 {
        tokens.push(sessions.set_token("alice", 600).await.unwrap().token);
    }
    for (i, token) in tokens.iter().enumerate() {
        assert_eq!(valid(&sessions, token).await, i >= 2, "token #{i}");
    }
    let listed = sessions.list_user_token("alice").await.unwrap();
    assert_eq!(listed.len(), 3);
    for entry in &listed {
        let created = entry.created_at.expect("the hardened policy records it");
        assert!((crate::support::now() - created).abs() <= 5, "{entry:?}");
        assert!(entry.token.starts_with("sha256:"), "no token is listed");
    }
    // A revoked session frees its slot: the next login evicts nobody.
    sessions.delete_token(&tokens[2]).await.unwrap();
    let newest = sessions.set_token("alice", 600).await.unwrap().token;
    for token in [&tokens[3], &tokens[4], &newest] {
        assert!(valid(&sessions, token).await);
    }
}

async fn fifty_racing_logins_leave_exactly_max_sessions_live(env: Env) {
    for (max, settings) in [
        ("3", Settings::default()),
        (
            "0",
            Settings {
                single_mode: true,
                ..Settings::default()
            },
        ),
    ] {
        let sessions = Arc::new(
            env.builder()
                .policy(hardened_policy())
                .settings(settings)
                .policy_config([("max_sessions", max)])
                .build()
                .unwrap(),
        );
        let user = format!("racer-{max}");
        let logins: Vec<_> = (0..50)
            .map(|_| {
                let (sessions, user) = (Arc::clone(&sessions), user.clone());
                tokio::spawn(async move { sessions.set_token(&user, 600).await.unwrap().token })
            })
            .collect();
        let mut tokens = Vec::with_capacity(logins.len());
        for login in logins {
            tokens.push(login.await.unwrap());
        }
        let mut live = 0;
        for token in &tokens {
            live += usize::from(valid(&sessions, token).await);
        }
        let expected = if max == "3" { 3 } else { 1 };
        assert_eq!(live, expected, "max_sessions {max}");
        assert_eq!(
            sessions.list_user_token(&user).await.unwrap().len(),
            expected
        );
    }
}

async fn a_policy_config_value_changes_the_layout_and_a_bad_one_is_refused(env: Env) {
    let sessions = hardened(&env, &[("key_prefix", "shop")]);
    let issued = sessions.set_token("alice", 60).await.unwrap();
    let index = env.hash("shop:{alice}:idx").await;
    assert_eq!(index.len(), 2, "one session and the epoch: {index:?}");
    assert!(env.hash("dsession:{alice}:idx").await.is_empty());
    assert!(valid(&sessions, &issued.token).await);

    for bad in [
        ("max_sessions", "lots"),
        ("colour", "blue"),
        ("key_prefix", "a}"),
        ("touch_interval_seconds", "1800"),
        ("on_limit", "sometimes"),
        ("max_sessions_per_device", "-1"),
    ] {
        let refused = hardened(&env, &[bad]);
        assert!(
            matches!(
                refused.check_token(&issued.token).await,
                Err(Error::InvalidArgument(_))
            ),
            "{bad:?}"
        );
        assert!(matches!(
            refused.set_token("alice", 60).await,
            Err(Error::InvalidArgument(_))
        ));
    }
}

on_every_store!(
    with_no_touch_interval_each_check_slides_the_idle_expiry,
    checks_within_the_touch_interval_only_read_and_idle_expiry_keeps_to_it,
    no_check_keeps_a_token_past_its_absolute_lifetime,
    refresh_never_extends_past_the_absolute_lifetime,
    a_login_beyond_max_sessions_evicts_the_oldest,
    fifty_racing_logins_leave_exactly_max_sessions_live,
    a_policy_config_value_changes_the_layout_and_a_bad_one_is_refused,
    fifty_racing_logins_on_one_device_leave_exactly_its_limit_and_spare_other_devices,
    fifty_racing_logins_past_a_reject_new_limit_are_refused_by_name_and_exact,
    a_label_of_device_limits_replaces_the_per_device_limit,
    racing_logins_record_each_eviction_and_each_refusal_as_an_event;
    policy = crate::support::hardened_policy, cluster
);

fn on(device: &str) -> SessionAttributes {
    SessionAttributes {
        device: Some(device.to_owned()),
        ..SessionAttributes::default()
    }
}

/// `logins` racing logins of `user` on `device`: the tokens issued, and
/// the refusals' messages.
async fn race_logins(
    sessions: &Arc<SessionManager>,
    user: &str,
    device: &str,
    logins: usize,
) -> (Vec<String>, Vec<String>) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..logins {
        let (sessions, user, device) = (Arc::clone(sessions), user.to_owned(), on(device));
        tasks.spawn(async move { sessions.set_token_with(&user, 600, &device).await });
    }
    let (mut tokens, mut refused) = (Vec::new(), Vec::new());
    while let Some(login) = tasks.join_next().await {
        match login.unwrap() {
            Ok(issued) => tokens.push(issued.token),
            Err(Error::Conflict(message)) => refused.push(message),
            Err(error) => panic!("a racing login failed: {error}"),
        }
    }
    (tokens, refused)
}

async fn live_on(sessions: &SessionManager, user: &str, device: &str) -> usize {
    sessions
        .list_user_token(user)
        .await
        .unwrap()
        .iter()
        .filter(|entry| entry.attributes.device.as_deref() == Some(device))
        .count()
}

async fn fifty_racing_logins_on_one_device_leave_exactly_its_limit_and_spare_other_devices(
    env: Env,
) {
    let sessions = Arc::new(hardened(&env, &[("max_sessions_per_device", "2")]));
    let laptop = sessions
        .set_token_with("alice", 600, &on("laptop"))
        .await
        .unwrap()
        .token;
    let unlabelled = sessions.set_token("alice", 600).await.unwrap().token;
    let (tokens, refused) = race_logins(&sessions, "alice", "phone", 50).await;
    assert!(refused.is_empty(), "{refused:?}");
    let mut live = 0;
    for token in &tokens {
        live += usize::from(valid(&sessions, token).await);
    }
    assert_eq!(live, 2, "the phone keeps its limit");
    assert_eq!(live_on(&sessions, "alice", "phone").await, 2);
    assert!(valid(&sessions, &laptop).await, "another device is spared");
    assert!(
        valid(&sessions, &unlabelled).await,
        "no device, no device limit"
    );
    assert_eq!(sessions.list_user_token("alice").await.unwrap().len(), 4);
}

async fn fifty_racing_logins_past_a_reject_new_limit_are_refused_by_name_and_exact(env: Env) {
    let config = [
        ("max_sessions_per_device", "3"),
        ("max_sessions", "5"),
        ("on_limit", "reject_new"),
    ];
    let sessions = Arc::new(hardened(&env, &config));
    let (tokens, refused) = race_logins(&sessions, "bob", "phone", 50).await;
    assert_eq!((tokens.len(), refused.len()), (3, 47));
    assert!(
        refused
            .iter()
            .all(|message| message.contains("max_sessions_per_device")),
        "{refused:?}"
    );
    for token in &tokens {
        assert!(
            valid(&sessions, token).await,
            "an accepted login stays valid"
        );
    }
    // The user-wide bound refuses by name too, once other devices fill it.
    let (tablet, _) = race_logins(&sessions, "bob", "tablet", 2).await;
    assert_eq!(tablet.len(), 2);
    let Err(Error::Conflict(message)) = sessions.set_token_with("bob", 600, &on("tv")).await else {
        panic!("a sixth session was let in");
    };
    assert!(message.contains("max_sessions"), "{message}");
    assert_eq!(sessions.list_user_token("bob").await.unwrap().len(), 5);
    // A revoked session frees its slot.
    sessions.delete_token(&tokens[0]).await.unwrap();
    sessions
        .set_token_with("bob", 600, &on("phone"))
        .await
        .unwrap();
}

async fn a_label_of_device_limits_replaces_the_per_device_limit(env: Env) {
    let config = [
        ("max_sessions_per_device", "2"),
        ("device_limits", "tv=1, kiosk=0"),
    ];
    let sessions = hardened(&env, &config);
    let mut tv = Vec::new();
    for _ in 0..3 {
        tv.push(
            sessions
                .set_token_with("carol", 600, &on("tv"))
                .await
                .unwrap()
                .token,
        );
        sessions
            .set_token_with("carol", 600, &on("phone"))
            .await
            .unwrap();
        sessions
            .set_token_with("carol", 600, &on("kiosk"))
            .await
            .unwrap();
    }
    assert!(!valid(&sessions, &tv[1]).await && valid(&sessions, &tv[2]).await);
    assert_eq!(live_on(&sessions, "carol", "tv").await, 1);
    assert_eq!(live_on(&sessions, "carol", "phone").await, 2);
    assert_eq!(
        live_on(&sessions, "carol", "kiosk").await,
        3,
        "0 is no limit"
    );
    for bad in ["tv", "tv=x", "=2", "tv=1,tv=2"] {
        let refused = env
            .builder()
            .policy(hardened_policy())
            .policy_config([("device_limits", bad)])
            .build()
            .unwrap()
            .self_check()
            .await;
        assert!(matches!(refused, Err(Error::InvalidArgument(_))), "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_all_of_ten_thousand_tokens_is_one_write() {
    let tap = Tap::new(MemoryStore::new());
    let (round_trips, commands) = (&tap.counters().round_trips, &tap.counters().commands);
    let sessions = SessionManager::builder()
        .store(tap.clone())
        .policy(hardened_policy())
        .build()
        .unwrap();
    let mut tokens = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        tokens.push(sessions.set_token("alice", 600).await.unwrap().token);
    }
    let bob = sessions.set_token("bob", 600).await.unwrap().token;
    round_trips.store(0, Ordering::SeqCst);
    commands.store(0, Ordering::SeqCst);
    sessions.delete_user_token("alice").await.unwrap();
    assert_eq!(round_trips.load(Ordering::SeqCst), 1);
    assert_eq!(commands.load(Ordering::SeqCst), 1, "one DEL of the index");
    for token in tokens.iter().step_by(97).chain(tokens.last()) {
        assert!(!valid(&sessions, token).await);
    }
    assert!(valid(&sessions, &bob).await);
    let after = sessions.set_token("alice", 600).await.unwrap().token;
    assert!(valid(&sessions, &after).await, "a login after revoke-all");
}

#[tokio::test]
async fn a_check_with_a_cached_user_is_one_round_trip() {
    let tap = Tap::new(MemoryStore::new());
    let round_trips = &tap.counters().round_trips;
    let sessions = SessionManager::builder()
        .store(tap.clone())
        .policy(hardened_policy())
        .loader(|id: String| async move { Ok(Some(json!({ "name": id }))) })
        .build()
        .unwrap();
    let issued = sessions.set_token("alice", 600).await.unwrap();
    sessions.add_user("alice", 600).await.unwrap();
    round_trips.store(0, Ordering::SeqCst);
    let user = sessions
        .check_token_or_update_user(&issued.token, 600)
        .await
        .unwrap();
    assert_eq!(user.unwrap().detail, Some(json!({ "name": "alice" })));
    assert!(valid(&sessions, &issued.token).await);
    assert_eq!(round_trips.load(Ordering::SeqCst), 2, "one per check");
}

#[tokio::test]
async fn the_hardened_policy_describes_the_keys_it_reads() {
    let keys = hardened_policy().config_keys().await.unwrap().unwrap();
    let names: Vec<&str> = keys.iter().map(|key| key.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "key_prefix",
            "idle_timeout_seconds",
            "touch_interval_seconds",
            "max_sessions",
            "max_sessions_per_device",
            "device_limits",
            "on_limit"
        ]
    );
    // The touch interval's default follows the idle timeout: no single one.
    let defaults: Vec<Option<&str>> = keys.iter().map(|key| key.default.as_deref()).collect();
    assert_eq!(
        defaults,
        [
            Some("dsession"),
            Some("1800"),
            None,
            Some("0"),
            Some("0"),
            Some(""),
            Some("evict_oldest")
        ]
    );
    assert!(
        keys[2]
            .description
            .contains("a tenth of idle_timeout_seconds")
    );
    assert_eq!(
        Policy::builtin().unwrap().config_keys().await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_hot_swap_between_the_policies_keeps_each_policys_tokens_apart() {
    let dir = tempfile::tempdir().unwrap();
    let config = serving(&policy_file(&dir, "default"), &[("max_sessions", "2")]);
    let (app, _) = service(config).await;
    let status = |token: String| {
        let app = app.clone();
        async move { auth(&app, &[("x-session-token", &token)]).await.status }
    };
    let old = token(&app, "alice").await;

    policy_file(&dir, "hardened");
    assert_eq!(
        post(&app, "/admin/policy/reload", json!({})).await.status,
        StatusCode::OK
    );
    // The hardened policy neither reads the default layout nor accepts
    // its 32-hex tokens: users log in again.
    assert_eq!(status(old.clone()).await, StatusCode::UNAUTHORIZED);
    let new = token(&app, "alice").await;
    assert_eq!(new.rsplit_once('_').unwrap().1.len(), 64);
    assert_eq!(status(new.clone()).await, StatusCode::OK);

    policy_file(&dir, "default");
    assert_eq!(
        post(&app, "/admin/policy/reload", json!({})).await.status,
        StatusCode::OK
    );
    // The layouts never overlap: swapping back finds the old tokens live.
    assert_eq!(status(old).await, StatusCode::OK);
    assert_eq!(status(new).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_swap_to_a_policy_that_rejects_the_settings_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // The default policy ignores its config; the hardened one refuses this.
    let config = serving(&policy_file(&dir, "default"), &[("max_sessions", "lots")]);
    let (app, _) = service(config).await;
    let old = token(&app, "alice").await;

    policy_file(&dir, "hardened");
    let refused = post(&app, "/admin/policy/reload", json!({})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let message = error_message(&refused);
    assert!(message.contains("max_sessions"), "{message}");
    assert_eq!(
        auth(&app, &[("x-session-token", &old)]).await.status,
        StatusCode::OK,
        "the default policy keeps serving"
    );
}

#[tokio::test]
async fn a_builtin_policy_is_chosen_by_name() {
    let mut config = ServeConfig::default();
    config.policy.path = Some("hardened".into());
    let (app, _) = service(config).await;
    let issued = token(&app, "alice").await;
    assert_eq!(issued.rsplit_once('_').unwrap().1.len(), 64);
    assert!(Policy::load("no-such-policy.wasm").is_err());
    assert!(Policy::builtin_named("strict").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_hot_swaps_of_the_hardened_policy_under_load_fail_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = serving(&policy_file(&dir, "hardened"), &[("max_sessions", "3")]);
    let served = Served::start(config).await;
    let client = reqwest::Client::new();
    let token = served.create_token(&client, "alice").await;

    let (ok, failed) = served
        .auth_during_reloads(&client, &token, 10, || {
            policy_file(&dir, "hardened");
        })
        .await;
    assert_eq!(failed, 0);
    assert!(ok > 0);
}

#[test]
fn policy_config_values_in_toml_reach_the_policy_as_text() {
    let config: ServeConfig = toml::from_str(
        "[policy]\npath = \"hardened\"\n[policy.config]\nmax_sessions = 5\nkey_prefix = \"shop\"\nflag = true\n",
    )
    .unwrap();
    let pairs: Vec<(&str, &str)> = config
        .policy
        .config
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("flag", "true"),
            ("key_prefix", "shop"),
            ("max_sessions", "5")
        ]
    );
    let nested = toml::from_str::<ServeConfig>("[policy.config]\nlimits = { a = 1 }\n");
    let message = nested.unwrap_err().to_string();
    assert!(message.contains("policy.config.limits"), "{message}");
}

/// The events of `user`, as (event, session, device, detail).
async fn events_of(
    sessions: &SessionManager,
    user: &str,
) -> Vec<(String, Option<String>, Option<String>, Option<String>)> {
    let all = sessions
        .read_events(EventRange::After(EventId::ZERO, usize::MAX))
        .await
        .unwrap();
    all.into_iter()
        .filter(|event| event.user == user)
        .map(|event| (event.event, event.session, event.device, event.detail))
        .collect()
}

async fn racing_logins_record_each_eviction_and_each_refusal_as_an_event(env: Env) {
    let evicting = Arc::new(
        env.builder()
            .policy(hardened_policy())
            .policy_config([("max_sessions_per_device", "2")])
            .record_events(true)
            .build()
            .unwrap(),
    );
    let (tokens, refused) = race_logins(&evicting, "carol", "phone", 50).await;
    assert!(refused.is_empty(), "{refused:?}");
    let events = events_of(&evicting, "carol").await;
    let logins: Vec<_> = events.iter().filter(|e| e.0 == "login").collect();
    let evictions: Vec<_> = events.iter().filter(|e| e.0 == "evict").collect();
    assert_eq!((logins.len(), evictions.len()), (50, 48), "{events:?}");
    assert!(evictions.iter().all(|e| {
        e.2.as_deref() == Some("phone") && e.3.as_deref() == Some("max_sessions_per_device")
    }));
    // Exactly the sessions no eviction names are live.
    let evicted: BTreeSet<_> = evictions.iter().map(|e| e.1.clone().unwrap()).collect();
    let live: BTreeSet<_> = evicting
        .list_user_token("carol")
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.session_id)
        .collect();
    let issued: BTreeSet<_> = logins.iter().map(|e| e.1.clone().unwrap()).collect();
    assert_eq!(live.len(), 2);
    assert_eq!(
        issued
            .difference(&evicted)
            .cloned()
            .collect::<BTreeSet<_>>(),
        live
    );
    assert_eq!(tokens.len(), 50);

    let rejecting = Arc::new(
        env.builder()
            .policy(hardened_policy())
            .policy_config([("max_sessions_per_device", "3"), ("on_limit", "reject_new")])
            .record_events(true)
            .build()
            .unwrap(),
    );
    let (tokens, refused) = race_logins(&rejecting, "dan", "tv", 50).await;
    assert_eq!((tokens.len(), refused.len()), (3, 47));
    let events = events_of(&rejecting, "dan").await;
    let count = |kind: &str| events.iter().filter(|e| e.0 == kind).count();
    assert_eq!(
        (count("login"), count("reject"), count("evict")),
        (3, 47, 0)
    );
    assert!(events.iter().filter(|e| e.0 == "reject").all(|e| {
        e.1.is_none()
            && e.2.as_deref() == Some("tv")
            && e.3
                .as_deref()
                .is_some_and(|detail| detail.contains("max_sessions_per_device"))
    }));
}
