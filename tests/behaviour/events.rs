//! Session events: each change recorded in the store's stream, on every
//! store, and nothing recorded unless asked.

use dsession::store::{EventId, EventRange};
use dsession::{SessionAttributes, SessionEvent, SessionManager, Settings};

use crate::support::Env;

fn device(name: &str) -> SessionAttributes {
    SessionAttributes {
        device: Some(name.into()),
        ..SessionAttributes::default()
    }
}

/// Every event in the store, oldest first.
async fn all_events(sessions: &SessionManager) -> Vec<SessionEvent> {
    sessions
        .read_events(EventRange::After(EventId::ZERO, usize::MAX))
        .await
        .unwrap()
}

/// `(event, user, session, device)` of each event.
fn summary(events: &[SessionEvent]) -> Vec<(&str, &str, Option<&str>, Option<&str>)> {
    events
        .iter()
        .map(|event| {
            (
                event.event.as_str(),
                event.user.as_str(),
                event.session.as_deref(),
                event.device.as_deref(),
            )
        })
        .collect()
}

/// The session id of the only session `user` holds.
async fn only_session(sessions: &SessionManager, user: &str) -> String {
    let listed = sessions.list_user_token(user).await.unwrap();
    let [entry] = listed.as_slice() else {
        panic!("{user} holds {listed:?}");
    };
    assert_eq!(entry.session_id, dsession::session_id(&entry.token));
    entry.session_id.clone()
}

pub(super) async fn each_change_is_recorded_as_an_event_naming_its_session(env: Env) {
    let sessions = env.builder().record_events(true).build().unwrap();
    assert!(sessions.records_events());
    let laptop = sessions
        .set_token_with("alice", 600, &device("laptop"))
        .await
        .unwrap();
    let laptop_id = only_session(&sessions, "alice").await;
    sessions.refresh_token(&laptop.token, 900).await.unwrap();
    assert!(sessions.check_token(&laptop.token).await.unwrap().is_some());
    sessions.delete_token(&laptop.token).await.unwrap();
    // On a cluster each user's events are in the stream of their slot, and
    // those of two users within one millisecond have no order.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let phone = sessions.set_token("bob", 600).await.unwrap();
    let phone_id = only_session(&sessions, "bob").await;
    sessions.delete_user_token("bob").await.unwrap();
    assert!(sessions.check_token(&phone.token).await.unwrap().is_none());

    let events = all_events(&sessions).await;
    assert_eq!(
        summary(&events),
        [
            ("login", "alice", Some(laptop_id.as_str()), Some("laptop")),
            ("refresh", "alice", Some(laptop_id.as_str()), None),
            ("revoke", "alice", Some(laptop_id.as_str()), None),
            ("login", "bob", Some(phone_id.as_str()), None),
            ("revoke-all", "bob", None, None),
        ],
        "a check records nothing; {events:?}"
    );
    for event in &events {
        assert!(!event.id.is_empty() && event.at > 0, "{event:?}");
        let text = serde_json::to_string(event).unwrap();
        assert!(
            !text.contains(&laptop.token) && !text.contains(&phone.token),
            "an event holds no token: {text}"
        );
    }
    let ids: Vec<EventId> = events
        .iter()
        .map(|e| EventId::parse(&e.id).unwrap())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    assert_eq!(events[0].at, ids[0].ms);

    // The latest, and those after an id, as the tail and the stream read them.
    let last_two = sessions.read_events(EventRange::Last(2)).await.unwrap();
    assert_eq!(last_two, events[3..]);
    let after = sessions
        .read_events(EventRange::After(ids[1], 2))
        .await
        .unwrap();
    assert_eq!(after, events[2..4]);
}

pub(super) async fn a_refresh_or_revoke_of_a_dead_token_records_what_happened(env: Env) {
    let sessions = env.builder().record_events(true).build().unwrap();
    let issued = sessions.set_token("carol", 600).await.unwrap();
    sessions.delete_token(&issued.token).await.unwrap();
    let before = all_events(&sessions).await.len();
    // Nothing to extend: no refresh is recorded.
    assert!(sessions.refresh_token(&issued.token, 60).await.is_err());
    assert_eq!(all_events(&sessions).await.len(), before);
    // A malformed token names no user and changes nothing.
    sessions.delete_token("not-a-token").await.unwrap();
    assert_eq!(all_events(&sessions).await.len(), before);
}

pub(super) async fn without_record_events_nothing_is_recorded(env: Env) {
    let sessions = env.manager();
    assert!(!sessions.records_events());
    let issued = sessions.set_token("dave", 600).await.unwrap();
    sessions.refresh_token(&issued.token, 60).await.unwrap();
    sessions.delete_token(&issued.token).await.unwrap();
    sessions.delete_user_token("dave").await.unwrap();
    assert_eq!(all_events(&sessions).await, []);
}

pub(super) async fn single_mode_records_the_eviction_of_each_older_token(env: Env) {
    let sessions = env
        .builder()
        .settings(Settings {
            single_mode: true,
            ..Settings::default()
        })
        .record_events(true)
        .build()
        .unwrap();
    sessions
        .set_token_with("erin", 600, &device("tv"))
        .await
        .unwrap();
    let first = only_session(&sessions, "erin").await;
    sessions.set_token("erin", 600).await.unwrap();
    let second = only_session(&sessions, "erin").await;
    let events = all_events(&sessions).await;
    assert_eq!(
        summary(&events[..1]),
        [("login", "erin", Some(first.as_str()), Some("tv"))]
    );
    // The second login and the eviction it made, in one step.
    let (logins, evictions): (Vec<_>, Vec<_>) =
        events[1..].iter().partition(|event| event.event == "login");
    assert_eq!(
        summary(&logins.into_iter().cloned().collect::<Vec<_>>()),
        [("login", "erin", Some(second.as_str()), None)]
    );
    let [evicted] = evictions.as_slice() else {
        panic!("one eviction: {events:?}");
    };
    assert_eq!(
        (evicted.event.as_str(), evicted.session.as_deref()),
        ("evict", Some(first.as_str()))
    );
    // The default policy says single mode; the hardened, its bound.
    let detail = evicted.detail.as_deref().unwrap_or_default();
    assert!(
        ["single mode", "max_sessions"].contains(&detail),
        "{detail}"
    );
}

pub(super) async fn events_of_many_users_are_read_as_one_stream_in_order(env: Env) {
    let sessions = env.builder().record_events(true).build().unwrap();
    // Users whose keys fall in many slots on a cluster.
    let users: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    for user in &users {
        sessions.set_token(user, 600).await.unwrap();
        // Events of two users within one millisecond have no order on a
        // cluster, where each is in the stream of its slot.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let events = all_events(&sessions).await;
    let logged_in: Vec<&str> = events.iter().map(|event| event.user.as_str()).collect();
    assert_eq!(logged_in, users, "in the order they were recorded");
    let latest = sessions.read_events(EventRange::Last(5)).await.unwrap();
    assert_eq!(latest, events[35..]);
}
