//! Session events are written in the same atomic step as the change they
//! record: with the connection to Redis cut again and again in the middle
//! of what dsession sends, every change and its event are found both or
//! neither.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dsession::store::{EventId, EventRange, RedisConfig, RedisStore};
use dsession::{Error, Policy, SessionAttributes, SessionManager, session_id};
use dsession_tests::proxy::LatencyProxy;
use sha2::{Digest, Sha256};

use crate::support::{RedisServer, hardened_policy};

/// Tasks racing, each one user's logins, refreshes and revocations.
const TASKS: usize = 50;

/// How long they race while the connection is cut.
const RACE: Duration = Duration::from_secs(4);

/// What one task saw answered.
#[derive(Default)]
struct Answers {
    /// Sessions whose login answered ok.
    issued: Vec<String>,
    /// Sessions whose refresh answered ok.
    refreshed: Vec<String>,
    /// Sessions whose revocation answered ok.
    revoked: Vec<String>,
    /// Calls that failed, each with a store error.
    failed: usize,
}

/// The policy raced, and its `[policy.config]`.
type Racer = (Option<Policy>, &'static [(&'static str, &'static str)]);

async fn manager((policy, config): &Racer, address: SocketAddr) -> SessionManager {
    let store = RedisStore::connect(RedisConfig::new(format!("redis://{address}")))
        .await
        .unwrap();
    let builder = SessionManager::builder()
        .store(store)
        .record_events(true)
        .policy_config(config.iter().copied());
    match policy {
        Some(policy) => builder.policy(policy.clone()),
        None => builder,
    }
    .build()
    .unwrap()
}

/// A failure of a call cut off: a store error, never a verdict.
fn cut_off(error: &Error) {
    assert!(
        matches!(error, Error::Store(_)),
        "a cut connection is a store error: {error:?}"
    );
}

/// The id of the session of `token`: of the name its user's listing
/// gives it, the token itself or, for the hardened policy, the digest of
/// its secret.
fn session_of(hardened: bool, token: &str) -> String {
    if !hardened {
        return session_id(token);
    }
    let (_, secret) = token.rsplit_once('_').unwrap();
    let digest: String = Sha256::digest(secret.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let (user, _) = token.rsplit_once('_').unwrap();
    session_id(&format!("sha256:{digest}:{user}"))
}

/// One user's calls until `stop`: log in, refresh, revoke, and now and
/// then revoke every session.
async fn race(
    sessions: SessionManager,
    hardened: bool,
    user: String,
    stop: Arc<AtomicBool>,
) -> Answers {
    let mut answers = Answers::default();
    let attributes = SessionAttributes {
        device: Some("phone".into()),
        ..SessionAttributes::default()
    };
    let mut round = 0;
    while !stop.load(Ordering::SeqCst) {
        round += 1;
        let issued = match sessions.set_token_with(&user, 600, &attributes).await {
            Ok(issued) => issued,
            Err(error) => {
                cut_off(&error);
                answers.failed += 1;
                continue;
            }
        };
        let session = session_of(hardened, &issued.token);
        answers.issued.push(session.clone());
        match sessions.refresh_token(&issued.token, 900).await {
            Ok(_) => answers.refreshed.push(session.clone()),
            Err(error) => {
                assert!(
                    matches!(error, Error::Store(_) | Error::NotFound),
                    "{error:?}"
                );
                answers.failed += 1;
            }
        }
        let revoked = match round % 7 {
            0 => sessions.delete_user_token(&user).await,
            _ => sessions.delete_token(&issued.token).await,
        };
        match revoked {
            Ok(()) if round % 7 != 0 => answers.revoked.push(session),
            Ok(()) => {}
            Err(error) => {
                cut_off(&error);
                answers.failed += 1;
            }
        }
    }
    answers
}

/// Races `TASKS` users through a proxy that cuts their connection in the
/// middle of a write every few milliseconds, then checks, straight on
/// Redis, that each change and its event went together.
async fn changes_and_their_events_go_together(policy: Racer) {
    let redis = RedisServer::start();
    let upstream: SocketAddr = format!("127.0.0.1:{}", redis.port()).parse().unwrap();
    let proxy = Arc::new(LatencyProxy::start(
        "127.0.0.1:0".parse().unwrap(),
        upstream,
    ));
    let sessions = manager(&policy, proxy.address()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let users: Vec<String> = (0..TASKS).map(|i| format!("racer-{i}")).collect();
    let tasks: Vec<_> = users
        .iter()
        .map(|user| {
            let racing = race(
                sessions.clone(),
                policy.0.is_some(),
                user.clone(),
                Arc::clone(&stop),
            );
            tokio::spawn(racing)
        })
        .collect();
    let cutter = {
        let (proxy, stop) = (Arc::clone(&proxy), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut cuts = 0;
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(15)).await;
                proxy.cut_mid_write();
                cuts += 1;
            }
            cuts
        })
    };
    let started = Instant::now();
    tokio::time::sleep(RACE).await;
    stop.store(true, Ordering::SeqCst);
    let cuts = cutter.await.unwrap();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let racing = started.elapsed();

    // Straight on Redis, past the proxy.
    let direct = manager(&policy, upstream).await;
    let events = direct
        .read_events(EventRange::After(EventId::ZERO, usize::MAX))
        .await
        .unwrap();
    // Where each (event, user, session) first stands in the stream: one
    // Redis, so one order.
    let mut recorded: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    for (at, event) in events.iter().enumerate() {
        let session = event.session.as_deref().unwrap_or("");
        recorded
            .entry((event.event.as_str(), event.user.as_str(), session))
            .or_insert(at);
    }
    let has = |kind: &str, user: &str, session: &str| recorded.contains_key(&(kind, user, session));
    let mut live = 0;
    for (user, answers) in users.iter().zip(&answers) {
        let calls = [
            ("login", &answers.issued),
            ("refresh", &answers.refreshed),
            ("revoke", &answers.revoked),
        ];
        for (kind, sessions) in calls {
            for session in sessions {
                assert!(
                    has(kind, user, session),
                    "a {kind} of {session} answered ok without its event"
                );
            }
        }
        let listed = direct.list_user_token(user).await.unwrap();
        for entry in &listed {
            live += 1;
            assert!(
                has("login", user, &entry.session_id),
                "{user}'s live session {} has no login event",
                entry.session_id
            );
            for ended in ["revoke", "evict"] {
                assert!(
                    !has(ended, user, &entry.session_id),
                    "{user}'s session {} is live after its {ended} event",
                    entry.session_id
                );
            }
        }
        let listed: BTreeSet<&str> = listed.iter().map(|e| e.session_id.as_str()).collect();
        let revoked_all: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.event == "revoke-all" && e.user == *user)
            .map(|(at, _)| at)
            .collect();
        for (&(kind, who, session), &at) in &recorded {
            if who != user {
                continue;
            }
            match kind {
                "login" => {
                    // Gone: revoked, or by a revoke-all recorded after it.
                    let gone = has("revoke", user, session)
                        || has("evict", user, session)
                        || revoked_all.iter().any(|&all| all > at);
                    assert!(
                        listed.contains(session) || gone,
                        "{user}'s session {session} has a login event, but is neither live nor revoked"
                    );
                }
                "refresh" => assert!(
                    has("login", user, session),
                    "a refresh of {session}, never issued"
                ),
                _ => {}
            }
        }
    }
    let failed: usize = answers.iter().map(|a| a.failed).sum();
    let issued: usize = answers.iter().map(|a| a.issued.len()).sum();
    let named = match &policy {
        (None, _) => "default".to_owned(),
        (Some(_), config) => format!("hardened {config:?}"),
    };
    println!(
        "{named}: {cuts} cuts in {racing:?}: {issued} logins answered ok, {failed} calls cut \
         off, {} events, {live} sessions live",
        events.len()
    );
    assert!(
        cuts > 100 && failed > 50,
        "the connection was cut often enough ({cuts}, {failed})"
    );
    assert!(
        issued >= TASKS,
        "calls went through between the cuts ({issued})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_policy_changes_and_their_events_are_both_or_neither_when_cut() {
    changes_and_their_events_go_together((None, &[])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardened_policy_changes_and_their_events_are_both_or_neither_when_cut() {
    changes_and_their_events_go_together((Some(hardened_policy()), &[])).await;
}

/// Each login past the device's limit evicts the oldest in its step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_and_their_events_are_both_or_neither_when_cut() {
    let limit = &[("max_sessions_per_device", "1")];
    changes_and_their_events_go_together((Some(hardened_policy()), limit)).await;
}
