//! Tokens expiring, and the index of a user's tokens outliving them.

use std::time::Duration;

use dsession::Error;

use super::index_tokens;
use crate::support::{Env, assert_near, valid_user};

pub(super) async fn a_token_is_valid_until_its_key_expires_even_with_one_second_left(env: Env) {
    let sessions = env.manager();
    // Two seconds, checked until one is left: a policy that keeps its
    // deadline in whole seconds (the hardened) gives a token issued late in
    // its second less than its TTL, never more, so a 1 s token may have
    // ended before its first check.
    let issued = sessions.set_token("alice", 2).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let user = valid_user(&sessions, &issued.token).await;
        if user.token_remain_live_time <= 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{user:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(sessions.check_token(&issued.token).await.unwrap(), None);
}

pub(super) async fn an_expired_token_is_invalid_unlisted_and_pruned(env: Env) {
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

pub(super) async fn set_token_prunes_expired_entries_so_the_index_stays_small(env: Env) {
    let sessions = env.manager();
    for _ in 0..5 {
        sessions.set_token("alice", 1).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let fresh = sessions.set_token("alice", 60).await.unwrap().token;
    assert_eq!(index_tokens(&env, "alice").await, vec![fresh]);
}

pub(super) async fn the_index_outlives_its_longest_token_and_never_shrinks(env: Env) {
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
