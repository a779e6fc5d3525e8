//! The user-info cache and the loader that fills it.

use std::sync::atomic::Ordering;

use dsession::store::{Command, Reply, SetArgs, SetCondition};
use dsession::{Error, LoaderError};
use serde_json::json;

use super::counting_loader;
use crate::support::{Env, assert_near, checked_user, valid_user};

pub(super) async fn check_token_or_update_user_loads_once_then_uses_the_cache(env: Env) {
    let (loader, loads) = counting_loader();
    let sessions = env.builder().loader(loader).build().unwrap();
    let issued = sessions.set_token("alice", 60).await.unwrap();

    let user = checked_user(&sessions, &issued.token, 300).await;
    assert_eq!(user.detail, Some(json!({ "name": "alice" })));
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_near(env.ttl("gosession-user_alice").await, 300, "user-info TTL");

    let again = checked_user(&sessions, &issued.token, 300).await;
    assert_eq!(again.detail, user.detail);
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "the second check is served by the cache"
    );

    let plain = valid_user(&sessions, &issued.token).await;
    assert_eq!(plain.detail, None, "check-token does not load users");
}

pub(super) async fn without_a_loader_detail_comes_only_from_the_cache(env: Env) {
    let sessions = env.manager();
    let issued = sessions.set_token("alice", 60).await.unwrap();
    let user = checked_user(&sessions, &issued.token, 60).await;
    assert_eq!(user.detail, None);
    env.raw(vec![Command::Set(SetArgs {
        key: "gosession-user_alice".into(),
        value: r#"{"id":"alice","detail":{"a":1}}"#.into(),
        ttl_seconds: 60,
        condition: SetCondition::Always,
    })])
    .await;
    let user = checked_user(&sessions, &issued.token, 60).await;
    assert_eq!(user.detail, Some(json!({ "a": 1 })));
}

pub(super) async fn a_failing_loader_is_a_loader_error_never_not_valid(env: Env) {
    let sessions = env
        .builder()
        .loader(|_: String| async {
            Err::<Option<serde_json::Value>, LoaderError>("database down".into())
        })
        .build()
        .unwrap();
    let issued = sessions.set_token("alice", 60).await.unwrap();
    match sessions.check_token_or_update_user(&issued.token, 60).await {
        Err(Error::Loader(message)) => assert!(message.contains("database down"), "{message}"),
        other => panic!("expected a loader error, got {other:?}"),
    }
    assert!(matches!(
        sessions.add_user("alice", 60).await,
        Err(Error::Loader(_))
    ));
    assert!(sessions.check_token(&issued.token).await.unwrap().is_some());
}

pub(super) async fn a_null_detail_from_the_loader_is_no_detail(env: Env) {
    let sessions = env
        .builder()
        .loader(|_: String| async { Ok::<_, LoaderError>(Some(serde_json::Value::Null)) })
        .build()
        .unwrap();
    let user = sessions.add_user("alice", 60).await.unwrap();
    assert_eq!(user.detail, None, "a null detail is no detail");
}

pub(super) async fn add_refresh_and_delete_user_manage_the_user_info_cache(env: Env) {
    let (loader, loads) = counting_loader();
    let sessions = env.builder().loader(loader).build().unwrap();
    let user = sessions.add_user("bob", 100).await.unwrap();
    assert_eq!(user.id, "bob");
    assert_eq!(user.detail, Some(json!({ "name": "bob" })));
    let cached = env
        .raw(vec![Command::Get("gosession-user_bob".into())])
        .await;
    assert_eq!(
        cached,
        vec![Reply::Text(
            r#"{"id":"bob","detail":{"name":"bob"}}"#.into()
        )]
    );
    assert_near(env.ttl("gosession-user_bob").await, 100, "user-info TTL");

    sessions
        .refresh_user(&["bob".into(), "carol".into()], 50)
        .await
        .unwrap();
    assert_eq!(loads.load(Ordering::SeqCst), 3);
    assert_near(env.ttl("gosession-user_bob").await, 50, "refreshed TTL");
    assert_near(env.ttl("gosession-user_carol").await, 50, "refreshed TTL");

    sessions.delete_user("bob").await.unwrap();
    assert_eq!(env.ttl("gosession-user_bob").await, -2);
    sessions.delete_user("bob").await.unwrap();
}

pub(super) async fn without_a_loader_add_and_refresh_user_write_nothing_and_say_why(env: Env) {
    let go_cached = r#"{"id":"dave","detail":{"from":"go","name":"dave"}}"#;
    env.raw(vec![Command::Set(SetArgs {
        key: "gosession-user_dave".into(),
        value: go_cached.into(),
        ttl_seconds: 0,
        condition: SetCondition::Always,
    })])
    .await;
    let sessions = env.manager();
    for outcome in [
        sessions.add_user("dave", 0).await.map(drop),
        sessions.add_user("erin", 60).await.map(drop),
        sessions.refresh_user(&["dave".into()], 60).await,
    ] {
        match outcome {
            Err(Error::InvalidArgument(message)) => {
                assert!(message.contains("no user loader"), "{message}")
            }
            other => panic!("expected invalid argument naming the loader, got {other:?}"),
        }
    }
    let cached = env
        .raw(vec![
            Command::Get("gosession-user_dave".into()),
            Command::Get("gosession-user_erin".into()),
        ])
        .await;
    assert_eq!(cached, vec![Reply::Text(go_cached.into()), Reply::Nil]);
    assert_eq!(env.ttl("gosession-user_dave").await, -1);
}
