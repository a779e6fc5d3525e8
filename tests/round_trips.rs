//! Round trips to Redis per operation, counted at the store.

use std::sync::atomic::Ordering;

use dsession::SessionManager;
use dsession::store::Tap;
use serde_json::json;

use crate::support::{RedisServer, checked_user, redis_store};

#[tokio::test]
async fn check_token_costs_one_round_trip_with_or_without_a_cached_user() {
    let server = RedisServer::start();
    let tap = Tap::new(redis_store(&server).await);
    let round_trips = &tap.counters().round_trips;
    let sessions = SessionManager::builder()
        .store(tap.clone())
        .loader(|_: String| async { Ok(Some(json!({ "plan": "pro" }))) })
        .build()
        .unwrap();
    let issued = sessions.set_token("alice", 60).await.unwrap();
    assert_eq!(round_trips.swap(0, Ordering::SeqCst), 1, "set-token");

    sessions.check_token(&issued.token).await.unwrap().unwrap();
    assert_eq!(round_trips.swap(0, Ordering::SeqCst), 1, "check-token");

    let user = checked_user(&sessions, &issued.token, 60).await;
    assert_eq!(user.detail, Some(json!({ "plan": "pro" })));
    assert_eq!(
        round_trips.swap(0, Ordering::SeqCst),
        2,
        "check-token-or-update-user, user not cached: read, then cache"
    );

    checked_user(&sessions, &issued.token, 60).await;
    assert_eq!(
        round_trips.swap(0, Ordering::SeqCst),
        1,
        "check-token-or-update-user, user cached"
    );

    sessions.refresh_token(&issued.token, 60).await.unwrap();
    assert_eq!(
        round_trips.swap(0, Ordering::SeqCst),
        2,
        "refresh-token: is it listed, then extend it"
    );
    sessions.delete_token(&issued.token).await.unwrap();
    assert_eq!(round_trips.swap(0, Ordering::SeqCst), 1, "delete-token");
}

#[tokio::test]
async fn a_check_sends_redis_only_one_get_one_ttl_and_one_hexists() {
    let server = RedisServer::start();
    let sessions = SessionManager::builder()
        .store(redis_store(&server).await)
        .build()
        .unwrap();
    let issued = sessions.set_token("alice", 60).await.unwrap();
    let mut redis = server.client().await;
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut redis)
        .await
        .unwrap();
    for _ in 0..10 {
        sessions.check_token(&issued.token).await.unwrap().unwrap();
    }
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut redis)
        .await
        .unwrap();
    let calls = |command: &str| -> u64 {
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    assert_eq!(calls("get"), 10, "{stats}");
    assert_eq!(calls("ttl"), 10, "{stats}");
    assert_eq!(calls("hexists"), 10, "{stats}");
    assert_eq!(
        calls("hdel") + calls("hset") + calls("multi") + calls("watch"),
        0,
        "{stats}"
    );
}
