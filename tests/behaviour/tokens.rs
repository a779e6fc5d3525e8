//! Issuing, checking, refreshing, listing and revoking tokens.

use std::collections::{BTreeMap, BTreeSet};

use dsession::store::{Command, HashDeleteArgs};
use dsession::{Error, PageRequest, SessionAttributes, Settings};

use super::{counting_loader, index_tokens};
use crate::support::{Env, HEX32, assert_near, now, valid_user};

pub(super) async fn set_token_issues_a_token_that_checks_valid(env: Env) {
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

    let user = valid_user(&sessions, &issued.token).await;
    assert_eq!(user.id, "alice");
    assert_eq!(user.token, issued.token);
    assert_near(user.token_remain_live_time, 60, "remaining");
    assert_near(user.token_expire_time, issued.token_expire_time, "expiry");
    assert_eq!(user.detail, None);
}

pub(super) async fn tokens_are_never_reused(env: Env) {
    let sessions = env.manager();
    let mut tokens = std::collections::HashSet::new();
    for _ in 0..100 {
        assert!(tokens.insert(sessions.set_token("alice", 60).await.unwrap().token));
    }
    assert_eq!(sessions.list_user_token("alice").await.unwrap().len(), 100);
}

pub(super) async fn ttl_zero_means_the_default_expiry(env: Env) {
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

pub(super) async fn refresh_extends_a_live_token(env: Env) {
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
    let user = valid_user(&sessions, &issued.token).await;
    assert_near(user.token_remain_live_time, 1000, "remaining");
}

pub(super) async fn refresh_never_revives_a_revoked_token(env: Env) {
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

pub(super) async fn refresh_of_an_unknown_or_malformed_token_is_not_found(env: Env) {
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

pub(super) async fn delete_token_is_idempotent(env: Env) {
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

pub(super) async fn check_of_a_dead_token_is_none_and_prunes_its_index_entry(env: Env) {
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

pub(super) async fn check_of_a_malformed_token_is_not_valid(env: Env) {
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

pub(super) async fn list_user_token_lists_live_tokens_and_prunes_dead_entries(env: Env) {
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
    // Newest first: the default policy, which records no issue time,
    // orders by expiry, latest first.
    let expected: Vec<String> = tokens[1..].iter().rev().cloned().collect();
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

pub(super) async fn delete_user_token_revokes_every_token_of_that_user_only(env: Env) {
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

pub(super) async fn a_token_whose_index_entry_is_gone_is_not_valid_and_not_refreshed(env: Env) {
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

pub(super) async fn single_mode_keeps_only_the_newest_token(env: Env) {
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

fn laptop() -> SessionAttributes {
    SessionAttributes {
        device: Some("alice's laptop".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0".into()),
        ip: Some("2001:DB8:0:0:0:0:0:1".into()),
        labels: BTreeMap::from([
            ("app".into(), "web".into()),
            ("region".into(), "eu-1".into()),
        ]),
    }
}

pub(super) async fn attributes_given_at_login_are_listed_with_the_session(env: Env) {
    let sessions = env.manager();
    let before = now();
    let issued = sessions
        .set_token_with("alice", 600, &laptop())
        .await
        .unwrap();
    sessions.set_token("alice", 300).await.unwrap();
    valid_user(&sessions, &issued.token).await;
    let listed = sessions.list_user_token("alice").await.unwrap();
    assert_eq!(listed.len(), 2);
    let (with, without): (Vec<_>, Vec<_>) = listed
        .iter()
        .partition(|entry| entry.attributes.device.is_some());
    let ([with], [without]) = (with.as_slice(), without.as_slice()) else {
        panic!("{listed:?}");
    };
    let expected = SessionAttributes {
        ip: Some("2001:db8::1".into()),
        ..laptop()
    };
    assert_eq!(with.attributes, expected, "the IP in canonical form");
    let created = with.created_at.expect("a login with attributes records it");
    assert!((before..=now()).contains(&created), "{created}");
    if let Some(seen) = with.last_seen {
        assert!((created..=now()).contains(&seen), "{seen}");
    }
    assert!(without.attributes.is_empty(), "{without:?}");
    // Revoked, its attributes go with it.
    sessions.delete_token(&issued.token).await.unwrap();
    let listed = sessions.list_user_token("alice").await.unwrap();
    assert!(listed.iter().all(|entry| entry.attributes.is_empty()));
}

pub(super) async fn attributes_past_their_bounds_are_refused_by_field_and_write_nothing(env: Env) {
    let sessions = env.manager();
    let secret_agent = format!("agent-{}", "s".repeat(600));
    let cases = [
        (
            SessionAttributes {
                user_agent: Some(secret_agent.clone()),
                ..laptop()
            },
            "user_agent",
        ),
        (
            SessionAttributes {
                ip: Some("10.0.0.300".into()),
                ..laptop()
            },
            "ip",
        ),
        (
            SessionAttributes {
                device: Some("d".repeat(65)),
                ..laptop()
            },
            "device",
        ),
        (
            SessionAttributes {
                labels: BTreeMap::from([("no spaces".into(), "v".into())]),
                ..laptop()
            },
            "label",
        ),
    ];
    for (attributes, field) in cases {
        let Err(Error::InvalidArgument(message)) =
            sessions.set_token_with("alice", 600, &attributes).await
        else {
            panic!("{field} past its bound was taken");
        };
        assert!(message.contains(field), "{message}");
        assert!(
            !message.contains("ssss"),
            "the value is never echoed: {message}"
        );
    }
    assert!(sessions.list_user_token("alice").await.unwrap().is_empty());
}

pub(super) async fn many_sessions_are_listed_page_by_page_newest_first_each_once(env: Env) {
    let sessions = env.manager();
    // Lifetimes grow with each login, so that newest first is one order for
    // both policies: by issue time, and by expiry.
    for n in 0..25 {
        sessions
            .set_token_with("alice", 600 + n * 10, &laptop())
            .await
            .unwrap();
    }
    let mut page = PageRequest {
        cursor: None,
        limit: 10,
    };
    let mut pages = Vec::new();
    let mut seen = BTreeSet::new();
    loop {
        let got = sessions.list_user_token_page("alice", &page).await.unwrap();
        pages.push(got.tokens.len());
        for entry in &got.tokens {
            assert_eq!(entry.attributes.device, laptop().device);
        }
        let expiries: Vec<i64> = got.tokens.iter().map(|e| e.token_expire_time).collect();
        assert!(expiries.windows(2).all(|w| w[0] >= w[1]), "{expiries:?}");
        for entry in got.tokens {
            assert!(seen.insert(entry.token), "a token listed twice");
        }
        page.cursor = got.next_cursor;
        if page.cursor.is_none() {
            break;
        }
    }
    assert_eq!(pages, [10, 10, 5]);
    assert_eq!(seen.len(), 25, "none left out");
    let every = sessions.list_user_token("alice").await.unwrap();
    let names: BTreeSet<String> = every.into_iter().map(|e| e.token).collect();
    assert_eq!(names, seen, "one page of all lists the same");
    let foreign = PageRequest {
        cursor: Some("alice_0".into()),
        limit: 10,
    };
    assert!(matches!(
        sessions.list_user_token_page("alice", &foreign).await,
        Err(Error::InvalidArgument(_))
    ));
}
