//! Every operation, written once and run on every store.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dsession::store::{Command, HashDeleteArgs, HashSetArgs, Reply, SetArgs, SetCondition};
use dsession::{Error, LoaderError, Settings, UserLoader};
use serde_json::json;

use crate::support::{Env, HEX32, assert_near, checked_user, now, on_every_store};

/// The tokens in a user's index, sorted.
async fn index_tokens(env: &Env, user: &str) -> Vec<String> {
    let index = env.hash(&format!("gosession-token_{user}")).await;
    index.into_iter().map(|(token, _)| token).collect()
}

/// A loader that counts its calls and returns `{"name": id}`.
fn counting_loader() -> (impl UserLoader, Arc<AtomicUsize>) {
    let loads = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&loads);
    let loader = move |id: String| {
        counter.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Some(json!({ "name": id }))))
    };
    (loader, loads)
}

async fn set_token_issues_a_token_that_checks_valid(env: Env) {
    let sessions = env.manager();
    let issued = sessions.set_token("alice", 60).await.unwrap();
    let (user, random) = issued.token.rsplit_once('_').unwrap();
    assert_eq!(user, "alice");
    assert_eq!(random.len(), 32);
    assert!(
        random
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_near(issued.token_expire_time, now() + 60, "expiry");

    let user = sessions
        .check_token(&issued.token)
        .await
        .unwrap()
        .expect("valid");
    assert_eq!(user.id, "alice");
    assert_eq!(user.token, issued.token);
    assert_near(user.token_remain_live_time, 60, "remaining");
    assert_near(user.token_expire_time, issued.token_expire_time, "expiry");
    assert_eq!(user.detail, None);
}

async fn tokens_are_never_reused(env: Env) {
    let sessions = env.manager();
    let mut tokens = std::collections::HashSet::new();
    for _ in 0..100 {
        assert!(tokens.insert(sessions.set_token("alice", 60).await.unwrap().token));
    }
    assert_eq!(sessions.list_user_token("alice").await.unwrap().len(), 100);
}

async fn ttl_zero_means_the_default_expiry(env: Env) {
    let sessions = env.manager_with(Settings {
        default_expire_seconds: 1234,
        ..Settings::default()
    });
    let issued = sessions.set_token("alice", 0).await.unwrap();
    assert_near(
        env.ttl(&format!("gosession-token_{}", issued.token)).await,
        1234,
        "token TTL",
    );
    assert_near(
        sessions.refresh_token(&issued.token, 0).await.unwrap(),
        now() + 1234,
        "refreshed expiry",
    );
}

async fn refresh_extends_a_live_token(env: Env) {
    let sessions = env.manager();
    let issued = sessions.set_token("alice", 10).await.unwrap();
    let expires = sessions.refresh_token(&issued.token, 1000).await.unwrap();
    assert_near(expires, now() + 1000, "new expiry");
    assert_near(
        env.ttl(&format!("gosession-token_{}", issued.token)).await,
        1000,
        "token TTL",
    );
    let index = env.hash("gosession-token_alice").await;
    assert_eq!(index, vec![(issued.token.clone(), expires.to_string())]);
    let user = sessions.check_token(&issued.token).await.unwrap().unwrap();
    assert_near(user.token_remain_live_time, 1000, "remaining");
}

async fn refresh_never_revives_a_revoked_token(env: Env) {
    let sessions = env.manager();
    let issued = sessions.set_token("alice", 60).await.unwrap();
    sessions.delete_token(&issued.token).await.unwrap();
    assert_eq!(
        sessions.refresh_token(&issued.token, 60).await,
        Err(Error::NotFound)
    );
    assert_eq!(sessions.check_token(&issued.token).await.unwrap(), None);
    assert!(env.hash("gosession-token_alice").await.is_empty());
}

async fn refresh_of_an_unknown_or_malformed_token_is_not_found(env: Env) {
    let sessions = env.manager();
    assert_eq!(
        sessions.refresh_token(&format!("alice_{HEX32}"), 60).await,
        Err(Error::NotFound)
    );
    assert_eq!(
        sessions.refresh_token("garbage", 60).await,
        Err(Error::NotFound)
    );
    assert!(matches!(
        sessions.refresh_token("", 60).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(env.hash("gosession-token_alice").await.is_empty());
}

async fn delete_token_is_idempotent(env: Env) {
    let sessions = env.manager();
    let issued = sessions.set_token("alice", 60).await.unwrap();
    sessions.delete_token(&issued.token).await.unwrap();
    sessions.delete_token(&issued.token).await.unwrap();
    sessions.delete_token("not-a-token").await.unwrap();
    assert!(matches!(
        sessions.delete_token("").await,
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(sessions.check_token(&issued.token).await.unwrap(), None);
    assert!(env.hash("gosession-token_alice").await.is_empty());
}

async fn check_of_a_dead_token_is_none_and_prunes_its_index_entry(env: Env) {
    let sessions = env.manager();
    let dead = sessions.set_token("alice", 60).await.unwrap();
    let live = sessions.set_token("alice", 60).await.unwrap();
    env.raw(vec![Command::Del(vec![format!(
        "gosession-token_{}",
        dead.token
    )])])
    .await;
    assert_eq!(sessions.check_token(&dead.token).await.unwrap(), None);
    let index = env.hash("gosession-token_alice").await;
    assert_eq!(index.len(), 1);
    assert_eq!(index[0].0, live.token);
}

async fn check_of_a_malformed_token_is_not_valid(env: Env) {
    let sessions = env.manager();
    for token in [
        "abc".to_owned(),
        "alice_xyz".to_owned(),
        format!("_{HEX32}"),
        format!("alice_{}", HEX32.to_uppercase()),
        format!("{}_{HEX32}", "x".repeat(300)),
        format!("alice_{HEX32}0"),
    ] {
        assert_eq!(sessions.check_token(&token).await.unwrap(), None, "{token}");
        assert_eq!(
            sessions
                .check_token_or_update_user(&token, 60)
                .await
                .unwrap(),
            None,
            "{token}"
        );
    }
    assert!(matches!(
        sessions.check_token("").await,
        Err(Error::InvalidArgument(_))
    ));
}

async fn check_token_or_update_user_loads_once_then_uses_the_cache(env: Env) {
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

    let plain = sessions.check_token(&issued.token).await.unwrap().unwrap();
    assert_eq!(plain.detail, None, "check-token does not load users");
}

async fn without_a_loader_detail_comes_only_from_the_cache(env: Env) {
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

async fn a_failing_loader_is_a_loader_error_never_not_valid(env: Env) {
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

async fn a_null_detail_from_the_loader_is_no_detail(env: Env) {
    let sessions = env
        .builder()
        .loader(|_: String| async { Ok::<_, LoaderError>(Some(serde_json::Value::Null)) })
        .build()
        .unwrap();
    let user = sessions.add_user("alice", 60).await.unwrap();
    assert_eq!(user.detail, None, "a null detail is no detail");
}

async fn list_user_token_lists_live_tokens_and_prunes_dead_entries(env: Env) {
    let sessions = env.manager();
    let mut tokens = Vec::new();
    for ttl in [100, 200, 300] {
        tokens.push(sessions.set_token("alice", ttl).await.unwrap().token);
    }
    sessions.set_token("bob", 100).await.unwrap();
    env.raw(vec![Command::Del(vec![format!(
        "gosession-token_{}",
        tokens[0]
    )])])
    .await;

    let listed = sessions.list_user_token("alice").await.unwrap();
    let mut expected = tokens[1..].to_vec();
    expected.sort();
    assert_eq!(
        listed.iter().map(|e| e.token.clone()).collect::<Vec<_>>(),
        expected
    );
    for entry in &listed {
        assert!(entry.token_remain_live_time > 100);
        assert_near(
            entry.token_expire_time,
            now() + entry.token_remain_live_time,
            "expiry",
        );
    }
    assert_eq!(
        env.hash("gosession-token_alice").await.len(),
        2,
        "the dead entry is pruned"
    );
    assert!(sessions.list_user_token("nobody").await.unwrap().is_empty());
}

async fn delete_user_token_revokes_every_token_of_that_user_only(env: Env) {
    let sessions = env.manager();
    let mut tokens = Vec::new();
    for _ in 0..5 {
        tokens.push(sessions.set_token("alice", 60).await.unwrap().token);
    }
    let bob = sessions.set_token("bob", 60).await.unwrap().token;
    sessions.delete_user_token("alice").await.unwrap();
    for token in &tokens {
        assert_eq!(sessions.check_token(token).await.unwrap(), None);
    }
    assert!(sessions.list_user_token("alice").await.unwrap().is_empty());
    assert!(env.hash("gosession-token_alice").await.is_empty());
    assert!(sessions.check_token(&bob).await.unwrap().is_some());
    sessions.delete_user_token("alice").await.unwrap();
}

async fn add_refresh_and_delete_user_manage_the_user_info_cache(env: Env) {
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

async fn without_a_loader_add_and_refresh_user_write_nothing_and_say_why(env: Env) {
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

async fn a_token_whose_index_entry_is_gone_is_not_valid_and_not_refreshed(env: Env) {
    let (loader, _) = counting_loader();
    let sessions = env.builder().loader(loader).build().unwrap();
    let issued = sessions.set_token("alice", 600).await.unwrap();
    let other = sessions.set_token("alice", 600).await.unwrap();
    // What a gosession login does to a longer-lived dsession token: it
    // shortens the index TTL, and the index then expires before the token.
    env.raw(vec![Command::HashDelete(HashDeleteArgs {
        key: "gosession-token_alice".into(),
        fields: vec![issued.token.clone()],
    })])
    .await;
    assert_eq!(sessions.check_token(&issued.token).await.unwrap(), None);
    assert_eq!(
        sessions
            .check_token_or_update_user(&issued.token, 60)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        sessions.refresh_token(&issued.token, 6000).await,
        Err(Error::NotFound)
    );
    assert_near(
        env.ttl(&format!("gosession-token_{}", issued.token)).await,
        600,
        "an unlisted token's TTL is not extended",
    );
    assert_eq!(index_tokens(&env, "alice").await, vec![other.token.clone()]);

    env.raw(vec![Command::Del(vec!["gosession-token_alice".into()])])
        .await;
    assert_eq!(sessions.check_token(&other.token).await.unwrap(), None);
    sessions.delete_user_token("alice").await.unwrap();
    for token in [&issued.token, &other.token] {
        assert_eq!(sessions.check_token(token).await.unwrap(), None);
    }
}

async fn tokens_of_long_user_ids_work_up_to_the_bound_and_longer_is_an_error(env: Env) {
    let sessions = env.manager();
    for len in [300, 1024] {
        let id = "u".repeat(len);
        let issued = sessions.set_token(&id, 60).await.unwrap();
        assert_eq!(
            sessions
                .check_token(&issued.token)
                .await
                .unwrap()
                .unwrap()
                .id,
            id
        );
        sessions.refresh_token(&issued.token, 120).await.unwrap();
        assert_eq!(sessions.list_user_token(&id).await.unwrap().len(), 1);
    }
    // A token gosession issued for a 300-byte e-mail address.
    let email = format!("{}@example.com", "f".repeat(288));
    let token = format!("{email}_{HEX32}");
    env.raw(vec![
        Command::Set(SetArgs {
            key: format!("gosession-token_{token}"),
            value: format!("gosession-user_{email}"),
            ttl_seconds: 60,
            condition: SetCondition::Always,
        }),
        Command::HashSet(HashSetArgs {
            key: format!("gosession-token_{email}"),
            fields: vec![(token.clone(), (now() + 60).to_string())],
        }),
    ])
    .await;
    assert_eq!(
        sessions.check_token(&token).await.unwrap().unwrap().id,
        email
    );

    let too_long = "u".repeat(1025);
    let forged = format!("{too_long}_{HEX32}");
    for outcome in [
        sessions.set_token(&too_long, 60).await.map(drop),
        sessions.check_token(&forged).await.map(drop),
        sessions
            .check_token_or_update_user(&forged, 60)
            .await
            .map(drop),
        sessions.refresh_token(&forged, 60).await.map(drop),
        sessions.delete_token(&forged).await,
        sessions.list_user_token(&too_long).await.map(drop),
    ] {
        match outcome {
            Err(Error::InvalidArgument(message)) => assert!(message.contains("1024"), "{message}"),
            other => panic!("expected invalid argument naming the bound, got {other:?}"),
        }
    }
}

async fn ids_a_header_cannot_carry_are_rejected_at_creation(env: Env) {
    let sessions = env.manager();
    for id in ["a\r\nb", "a\nb", "a\0b", " alice", "alice ", "alice\t"] {
        match sessions.set_token(id, 60).await {
            Err(Error::InvalidArgument(message)) => {
                assert!(message.contains("user id"), "{message}")
            }
            other => panic!("user id {id:?}: expected invalid argument, got {other:?}"),
        }
        assert!(env.hash(&format!("gosession-token_{id}")).await.is_empty());
    }
    let inner_space = sessions.set_token("józef kowalski", 60).await.unwrap();
    assert!(
        sessions
            .check_token(&inner_space.token)
            .await
            .unwrap()
            .is_some()
    );
}

async fn a_token_is_valid_until_its_key_expires_even_with_one_second_left(env: Env) {
    let sessions = env.manager();
    let issued = sessions.set_token("alice", 1).await.unwrap();
    let user = sessions
        .check_token(&issued.token)
        .await
        .unwrap()
        .expect("valid");
    assert!(user.token_remain_live_time <= 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(sessions.check_token(&issued.token).await.unwrap(), None);
}

async fn a_key_of_the_wrong_type_is_corrupt_data_not_an_outage(env: Env) {
    let sessions = env.manager();
    let issued = sessions.set_token("alice", 60).await.unwrap();
    env.raw(vec![
        Command::Del(vec!["gosession-token_alice".into()]),
        Command::Set(SetArgs {
            key: "gosession-token_alice".into(),
            value: "not a hash".into(),
            ttl_seconds: 0,
            condition: SetCondition::Always,
        }),
    ])
    .await;
    match sessions.check_token(&issued.token).await {
        Err(Error::Corrupt(message)) => assert!(message.contains("WRONGTYPE"), "{message}"),
        other => panic!("expected corrupt data, got {other:?}"),
    }
    env.store.ready().await.unwrap();
}

async fn user_ids_may_contain_underscores(env: Env) {
    let sessions = env.manager();
    let issued = sessions.set_token("a_b_c", 60).await.unwrap();
    assert!(issued.token.starts_with("a_b_c_"));
    assert_eq!(
        sessions
            .check_token(&issued.token)
            .await
            .unwrap()
            .unwrap()
            .id,
        "a_b_c"
    );
    assert_eq!(env.hash("gosession-token_a_b_c").await.len(), 1);
    assert_eq!(sessions.list_user_token("a_b_c").await.unwrap().len(), 1);
    assert!(sessions.list_user_token("a_b").await.unwrap().is_empty());
    sessions.delete_user_token("a_b_c").await.unwrap();
    assert_eq!(sessions.check_token(&issued.token).await.unwrap(), None);
}

async fn bad_input_gets_a_clear_error_and_writes_nothing(env: Env) {
    let sessions = env.manager();
    let long = "x".repeat(1025);
    let colliding = format!("bob_{HEX32}");
    for id in ["", long.as_str(), colliding.as_str()] {
        for outcome in [
            sessions.set_token(id, 60).await.map(drop),
            sessions.list_user_token(id).await.map(drop),
            sessions.delete_user_token(id).await,
            sessions.add_user(id, 60).await.map(drop),
            sessions.delete_user(id).await,
            sessions.refresh_user(&["ok".into(), id.into()], 60).await,
        ] {
            match outcome {
                Err(Error::InvalidArgument(message)) => {
                    assert!(message.contains("user id"), "{message}")
                }
                other => panic!("user id {id:?}: expected invalid argument, got {other:?}"),
            }
        }
    }
    let issued = sessions.set_token("alice", 60).await.unwrap();
    for outcome in [
        sessions.set_token("alice", -1).await.map(drop),
        sessions.set_token("alice", i64::MAX).await.map(drop),
        sessions.refresh_token(&issued.token, -5).await.map(drop),
        sessions
            .check_token_or_update_user(&issued.token, -1)
            .await
            .map(drop),
        sessions.add_user("alice", -1).await.map(drop),
    ] {
        match outcome {
            Err(Error::InvalidArgument(message)) => assert!(message.contains("ttl"), "{message}"),
            other => panic!("expected invalid argument, got {other:?}"),
        }
    }
    assert_eq!(env.hash("gosession-token_alice").await.len(), 1);
    assert_eq!(env.ttl("gosession-user_alice").await, -2);
    assert_eq!(
        env.ttl("gosession-user_ok").await,
        -2,
        "refresh-user checks every id first"
    );
    assert!(
        env.hash(&format!("gosession-token_{colliding}"))
            .await
            .is_empty()
    );
}

async fn bad_settings_are_an_invalid_argument(env: Env) {
    let sessions = env.manager_with(Settings {
        default_expire_seconds: 0,
        ..Settings::default()
    });
    assert!(matches!(
        sessions.set_token("alice", 60).await,
        Err(Error::InvalidArgument(_))
    ));
    let sessions = env.manager_with(Settings {
        token_key_prefix: String::new(),
        ..Settings::default()
    });
    assert!(matches!(
        sessions.check_token(&format!("a_{HEX32}")).await,
        Err(Error::InvalidArgument(_))
    ));
}

async fn single_mode_keeps_only_the_newest_token(env: Env) {
    let sessions = env.manager_with(Settings {
        single_mode: true,
        ..Settings::default()
    });
    let other = sessions.set_token("bob", 60).await.unwrap().token;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(sessions.set_token("alice", 60).await.unwrap().token);
    }
    for old in &tokens[..2] {
        assert_eq!(sessions.check_token(old).await.unwrap(), None);
    }
    assert!(sessions.check_token(&tokens[2]).await.unwrap().is_some());
    let listed = sessions.list_user_token("alice").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].token, tokens[2]);
    assert!(
        sessions.check_token(&other).await.unwrap().is_some(),
        "other users keep theirs"
    );
}

async fn an_expired_token_is_invalid_unlisted_and_pruned(env: Env) {
    let sessions = env.manager();
    let short = sessions.set_token("alice", 1).await.unwrap().token;
    let long = sessions.set_token("alice", 600).await.unwrap().token;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(sessions.check_token(&short).await.unwrap(), None);
    assert_eq!(
        sessions.refresh_token(&short, 60).await,
        Err(Error::NotFound)
    );
    let listed = sessions.list_user_token("alice").await.unwrap();
    assert_eq!(
        listed.iter().map(|e| e.token.as_str()).collect::<Vec<_>>(),
        vec![long.as_str()]
    );
    assert_eq!(index_tokens(&env, "alice").await, vec![long]);
}

async fn set_token_prunes_expired_entries_so_the_index_stays_small(env: Env) {
    let sessions = env.manager();
    for _ in 0..5 {
        sessions.set_token("alice", 1).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let fresh = sessions.set_token("alice", 60).await.unwrap().token;
    assert_eq!(index_tokens(&env, "alice").await, vec![fresh]);
}

async fn the_index_outlives_its_longest_token_and_never_shrinks(env: Env) {
    let sessions = env.manager();
    let thirty_days = 30 * 24 * 3600;
    sessions.set_token("alice", 60).await.unwrap();
    assert_near(
        env.ttl("gosession-token_alice").await,
        thirty_days,
        "index TTL",
    );
    let forty_days = 40 * 24 * 3600;
    let long = sessions.set_token("alice", forty_days).await.unwrap().token;
    assert_near(
        env.ttl("gosession-token_alice").await,
        forty_days,
        "index TTL",
    );
    sessions.set_token("alice", 60).await.unwrap();
    assert_near(
        env.ttl("gosession-token_alice").await,
        forty_days,
        "index TTL after a short token",
    );
    sessions.refresh_token(&long, 50 * 24 * 3600).await.unwrap();
    assert_near(
        env.ttl("gosession-token_alice").await,
        50 * 24 * 3600,
        "index TTL after refresh",
    );
}

async fn configured_prefixes_are_used_with_underscores_replaced(env: Env) {
    let sessions = env.manager_with(Settings {
        token_key_prefix: "my_tok".into(),
        user_key_prefix: "my_usr".into(),
        ..Settings::default()
    });
    let issued = sessions.set_token("alice", 60).await.unwrap();
    let value = env
        .raw(vec![Command::Get(format!("my-tok_{}", issued.token))])
        .await;
    assert_eq!(value, vec![Reply::Text("my-usr_alice".into())]);
    assert_eq!(env.hash("my-tok_alice").await.len(), 1);
    assert!(sessions.check_token(&issued.token).await.unwrap().is_some());
    assert_eq!(
        env.manager().check_token(&issued.token).await.unwrap(),
        None,
        "other prefixes see nothing"
    );
}

on_every_store!(
    set_token_issues_a_token_that_checks_valid,
    tokens_are_never_reused,
    ttl_zero_means_the_default_expiry,
    refresh_extends_a_live_token,
    refresh_never_revives_a_revoked_token,
    refresh_of_an_unknown_or_malformed_token_is_not_found,
    delete_token_is_idempotent,
    check_of_a_dead_token_is_none_and_prunes_its_index_entry,
    check_of_a_malformed_token_is_not_valid,
    check_token_or_update_user_loads_once_then_uses_the_cache,
    without_a_loader_detail_comes_only_from_the_cache,
    a_failing_loader_is_a_loader_error_never_not_valid,
    a_null_detail_from_the_loader_is_no_detail,
    list_user_token_lists_live_tokens_and_prunes_dead_entries,
    delete_user_token_revokes_every_token_of_that_user_only,
    add_refresh_and_delete_user_manage_the_user_info_cache,
    without_a_loader_add_and_refresh_user_write_nothing_and_say_why,
    a_token_whose_index_entry_is_gone_is_not_valid_and_not_refreshed,
    tokens_of_long_user_ids_work_up_to_the_bound_and_longer_is_an_error,
    ids_a_header_cannot_carry_are_rejected_at_creation,
    a_token_is_valid_until_its_key_expires_even_with_one_second_left,
    a_key_of_the_wrong_type_is_corrupt_data_not_an_outage,
    user_ids_may_contain_underscores,
    bad_input_gets_a_clear_error_and_writes_nothing,
    bad_settings_are_an_invalid_argument,
    single_mode_keeps_only_the_newest_token,
    an_expired_token_is_invalid_unlisted_and_pruned,
    set_token_prunes_expired_entries_so_the_index_stays_small,
    the_index_outlives_its_longest_token_and_never_shrinks,
    configured_prefixes_are_used_with_underscores_replaced,
);

/// The same behaviour on the hardened policy, where it fits: the tests
/// that read gosession's keys, its 32-hex tokens or listed tokens are the
/// default policy's alone (the hardened policy stores no token to list).
/// Its one hash tag per user lets it run on a Redis Cluster too.
mod hardened {
    use super::*;

    on_every_store!(
        tokens_are_never_reused,
        refresh_never_revives_a_revoked_token,
        refresh_of_an_unknown_or_malformed_token_is_not_found,
        delete_token_is_idempotent,
        check_of_a_malformed_token_is_not_valid,
        a_failing_loader_is_a_loader_error_never_not_valid,
        a_null_detail_from_the_loader_is_no_detail,
        delete_user_token_revokes_every_token_of_that_user_only,
        without_a_loader_add_and_refresh_user_write_nothing_and_say_why,
        ids_a_header_cannot_carry_are_rejected_at_creation,
        a_token_is_valid_until_its_key_expires_even_with_one_second_left;
        policy = crate::support::hardened_policy, cluster
    );
}
