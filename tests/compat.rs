//! gosession compatibility both ways, read and written with a plain Redis
//! client on a real server.

use std::collections::HashMap;

use dsession::LoaderError;
use redis::AsyncCommands;
use serde_json::json;

use crate::support::{Env, Kind, assert_near, checked_user, now};

#[tokio::test]
async fn set_token_and_add_user_write_gosessions_layout_exactly() {
    let env = Env::new(Kind::Redis).await;
    let mut redis = env.redis.as_ref().unwrap().client().await;
    let sessions = env
        .builder()
        .loader(|id: String| async move {
            Ok::<_, LoaderError>(Some(json!({ "name": id, "roles": ["admin"] })))
        })
        .build()
        .unwrap();

    let issued = sessions.set_token("alice", 3600).await.unwrap();
    let token_key = format!("gosession-token_{}", issued.token);
    let value: String = redis.get(&token_key).await.unwrap();
    assert_eq!(value, "gosession-user_alice");
    let ttl: i64 = redis.ttl(&token_key).await.unwrap();
    assert_near(ttl, 3600, "token TTL");

    let kind: String = redis::cmd("TYPE")
        .arg("gosession-token_alice")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(kind, "hash");
    let index: HashMap<String, String> = redis.hgetall("gosession-token_alice").await.unwrap();
    assert_eq!(
        index,
        HashMap::from([(issued.token.clone(), issued.token_expire_time.to_string())])
    );
    assert_near(issued.token_expire_time, now() + 3600, "index expiry value");
    let index_ttl: i64 = redis.ttl("gosession-token_alice").await.unwrap();
    assert_near(index_ttl, 30 * 24 * 3600, "index TTL");

    sessions.add_user("alice", 500).await.unwrap();
    let info: String = redis.get("gosession-user_alice").await.unwrap();
    assert_eq!(
        info,
        r#"{"id":"alice","detail":{"name":"alice","roles":["admin"]}}"#
    );
    let info_ttl: i64 = redis.ttl("gosession-user_alice").await.unwrap();
    assert_near(info_ttl, 500, "user-info TTL");

    let mut keys: Vec<String> = redis.keys("*").await.unwrap();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "gosession-token_alice".to_owned(),
            token_key,
            "gosession-user_alice".into()
        ]
    );
}

#[tokio::test]
async fn data_written_by_gosession_is_accepted() {
    let env = Env::new(Kind::Redis).await;
    let mut redis = env.redis.as_ref().unwrap().client().await;
    // What gosession's SetToken and AddUser write, by hand.
    let token = "bob_5f2b1c0e9a7d4c3b8e6f1a2d3c4b5a69";
    let token_key = format!("gosession-token_{token}");
    let expires = now() + 3600;
    let _: () = redis
        .set_ex(&token_key, "gosession-user_bob", 3600)
        .await
        .unwrap();
    let _: () = redis
        .hset("gosession-token_bob", token, expires)
        .await
        .unwrap();
    let _: () = redis
        .expire("gosession-token_bob", 30 * 24 * 3600)
        .await
        .unwrap();
    let _: () = redis
        .set_ex(
            "gosession-user_bob",
            r#"{"id":"bob","detail":{"role":"admin"}}"#,
            3600,
        )
        .await
        .unwrap();
    let sessions = env
        .builder()
        .loader(|id: String| async move {
            Err::<Option<serde_json::Value>, LoaderError>(format!("cache miss for {id}").into())
        })
        .build()
        .unwrap();

    let user = sessions
        .check_token(token)
        .await
        .unwrap()
        .expect("gosession token is valid");
    assert_eq!(user.id, "bob");
    assert_near(user.token_expire_time, expires, "expiry");
    let user = checked_user(&sessions, token, 60).await;
    assert_eq!(
        user.detail,
        Some(json!({ "role": "admin" })),
        "served from gosession's cache entry"
    );

    let listed = sessions.list_user_token("bob").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].token, token);

    let refreshed = sessions.refresh_token(token, 7200).await.unwrap();
    let ttl: i64 = redis.ttl(&token_key).await.unwrap();
    assert_near(ttl, 7200, "refreshed TTL");
    let recorded: String = redis.hget("gosession-token_bob", token).await.unwrap();
    assert_eq!(recorded, refreshed.to_string());

    sessions.delete_token(token).await.unwrap();
    let exists: bool = redis.exists(&token_key).await.unwrap();
    assert!(!exists);
    let index: HashMap<String, String> = redis.hgetall("gosession-token_bob").await.unwrap();
    assert!(index.is_empty());
}

#[tokio::test]
async fn a_token_key_naming_another_user_is_reported_not_trusted() {
    let env = Env::new(Kind::Redis).await;
    let mut redis = env.redis.as_ref().unwrap().client().await;
    let token = "bob_5f2b1c0e9a7d4c3b8e6f1a2d3c4b5a69";
    let _: () = redis
        .set_ex(
            format!("gosession-token_{token}"),
            "gosession-user_mallory",
            60,
        )
        .await
        .unwrap();
    let outcome = env.manager().check_token(token).await;
    assert!(
        matches!(outcome, Err(dsession::Error::Corrupt(_))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_login_with_attributes_writes_gosessions_keys_as_before_and_one_more_it_ignores() {
    let env = Env::new(Kind::Redis).await;
    let mut redis = env.redis.as_ref().unwrap().client().await;
    let sessions = env.builder().build().unwrap();
    let attributes = dsession::SessionAttributes {
        device: Some("laptop".into()),
        ip: Some("192.0.2.7".into()),
        ..Default::default()
    };
    let issued = sessions
        .set_token_with("alice", 3600, &attributes)
        .await
        .unwrap();
    let token_key = format!("gosession-token_{}", issued.token);
    let value: String = redis.get(&token_key).await.unwrap();
    assert_eq!(value, "gosession-user_alice");
    let index: HashMap<String, String> = redis.hgetall("gosession-token_alice").await.unwrap();
    assert_eq!(
        index,
        HashMap::from([(issued.token.clone(), issued.token_expire_time.to_string())])
    );
    let meta_key = format!("{token_key}_{}", "0".repeat(32));
    let meta: String = redis.get(&meta_key).await.unwrap();
    let (created, json) = meta.split_once(' ').unwrap();
    assert_near(created.parse().unwrap(), now(), "issue time");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(json).unwrap(),
        json!({ "device": "laptop", "ip": "192.0.2.7" })
    );
    let meta_ttl: i64 = redis.ttl(&meta_key).await.unwrap();
    assert_near(meta_ttl, 3600, "metadata TTL");

    // gosession's DeleteToken removes its two keys alone; dsession then
    // finds the token dead and lists nothing.
    let _: () = redis.del(&token_key).await.unwrap();
    let _: () = redis
        .hdel("gosession-token_alice", &issued.token)
        .await
        .unwrap();
    assert!(sessions.check_token(&issued.token).await.unwrap().is_none());
    assert!(sessions.list_user_token("alice").await.unwrap().is_empty());
    let mut keys: Vec<String> = redis.keys("*").await.unwrap();
    keys.sort();
    assert_eq!(keys, [meta_key], "left to expire with the token's TTL");
}
