//! Failover: Redis Sentinel promoting a replica under load, sentinels that
//! cannot help, and a single Redis server that goes away and comes back.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dsession::store::{SentinelConfig, SentinelStore, Store};
use dsession::{Error, SessionManager, Settings};

use crate::support::failover::{
    Failover, Load, Seen, assert_nothing_lost, first_success, revoked_tokens,
};
use crate::support::{
    Env, Kind, MASTER_NAME, RedisServer, SentinelCluster, assert_names_both_address_forms,
    free_port, redis_store, sentinel_config,
};

/// How long a failover may take, from killing the master to the first call
/// that succeeds: 1 s until the sentinels call the master down, then an
/// election and a promotion.
const FAILOVER_LIMIT: Duration = Duration::from_secs(10);

/// A store on `cluster` whose writes wait for one replica's
/// acknowledgement, for `ack_timeout` when given.
async fn durable_store(cluster: &SentinelCluster, ack_timeout: Option<Duration>) -> SentinelStore {
    let mut config = sentinel_config(cluster);
    config.server.min_replicas_ack = 1;
    if let Some(ack_timeout) = ack_timeout {
        config.server.ack_timeout = ack_timeout;
    }
    SentinelStore::connect(config).await.unwrap()
}

fn assert_store_error<T: Debug>(what: &str, outcome: dsession::Result<T>) {
    assert!(
        matches!(outcome, Err(Error::Store(_))),
        "{what} while redis is down gave {outcome:?}, not a store error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failover_under_load_keeps_every_acknowledged_token_and_revocation() {
    let mut env = Env::new(Kind::Sentinel).await;
    let cluster = env.sentinel.as_mut().unwrap();
    // Writes acknowledged by the replica are the ones promised to survive;
    // once it is promoted no replica is left, so this store cannot write
    // again, and recovery is measured on the env's store, which needs no
    // acknowledgement.
    let durable = durable_store(cluster, Some(Duration::from_millis(500))).await;
    let durable = Arc::new(SessionManager::builder().store(durable).build().unwrap());

    let revoked = revoked_tokens(&durable, 20).await;
    let load = Load::start(Arc::clone(&durable), 100).await;
    let killed = Instant::now();
    let old_master = cluster.kill_master();

    let sessions = env.manager();
    let recovery = first_success(&sessions, "probe", killed, FAILOVER_LIMIT).await;
    let load = load.stop().await;

    let new_master = env.sentinel.as_ref().unwrap().master_port();
    assert_ne!(
        new_master, old_master,
        "the sentinels did not promote the replica"
    );
    env.store.ready().await.unwrap();
    let failover = Failover::new(old_master, new_master, recovery);
    assert_nothing_lost(&durable, &load, &revoked, "failover", failover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_failover_moves_the_store_to_the_promoted_replica() {
    let env = Env::new(Kind::Sentinel).await;
    let cluster = env.sentinel.as_ref().unwrap();
    // Acknowledged by the replica, so the promoted replica has it.
    let durable = durable_store(cluster, None).await;
    let before = SessionManager::builder()
        .store(durable)
        .build()
        .unwrap()
        .set_token("alice", 600)
        .await
        .unwrap()
        .token;
    // The sentinels make the demoted master a replica only seconds later,
    // so the rest goes through a store that waits for no replica.
    let store = SentinelStore::connect(sentinel_config(cluster))
        .await
        .unwrap();
    let sessions = SessionManager::builder()
        .store(store.clone())
        .build()
        .unwrap();
    let old_master = cluster.master_port();

    cluster.force_failover();
    // The old master keeps taking writes until the sentinels demote it,
    // seconds later; the store must leave it as soon as they name another.
    let deadline = Instant::now() + FAILOVER_LIMIT;
    let errors = Seen::default();
    let new_master = loop {
        if let Err(error) = sessions.check_token(&before).await {
            assert!(matches!(error, Error::Store(_)), "check-token: {error:?}");
            errors.record(&error);
        }
        let master = cluster.master_port();
        if master != old_master && store.master_address() == Some(format!("127.0.0.1:{master}")) {
            break master;
        }
        assert!(
            Instant::now() < deadline,
            "the store did not follow the sentinels within {FAILOVER_LIMIT:?}; now on {:?}; \
             errors:\n{errors}",
            store.master_address()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    errors.print("errors seen during the forced failover");

    let after = sessions.set_token("bob", 600).await.unwrap().token;
    assert_eq!(
        store.master_address(),
        Some(format!("127.0.0.1:{new_master}"))
    );
    assert!(sessions.check_token(&before).await.unwrap().is_some());
    assert!(sessions.check_token(&after).await.unwrap().is_some());
    store.ready().await.unwrap();
}

/// Why `store` is not ready, once it says so within `limit`.
async fn not_ready_within(store: &SentinelStore, limit: Duration, what: &str) -> String {
    let deadline = Instant::now() + limit;
    loop {
        match store.ready().await {
            Err(error) => return error.to_string(),
            Ok(()) => {
                assert!(Instant::now() < deadline, "still ready {what}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_writes_that_no_replica_can_acknowledge_make_the_store_not_ready() {
    let mut env = Env::new(Kind::Sentinel).await;
    let cluster = env.sentinel.as_mut().unwrap();
    let durable = durable_store(cluster, Some(Duration::from_millis(200))).await;
    durable.ready().await.unwrap();
    cluster.kill_replica();
    let reason = not_ready_within(&durable, FAILOVER_LIMIT, "without a replica").await;
    assert!(reason.contains("min_replicas_ack is 1"), "{reason}");
    let sessions = SessionManager::builder().store(durable).build().unwrap();
    assert_store_error("a durable set-token", sessions.set_token("alice", 60).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_that_changes_nothing_is_not_confirmed_by_a_replica_that_stopped_answering() {
    let env = Env::new(Kind::Sentinel).await;
    let cluster = env.sentinel.as_ref().unwrap();
    let durable = durable_store(cluster, Some(Duration::from_millis(200))).await;
    let sessions = SessionManager::builder().store(durable).build().unwrap();
    let token = sessions.set_token("alice", 600).await.unwrap().token;
    // The replica hangs with its link open: the master still counts it,
    // with the offset it acknowledged last. On a master cut off by a
    // partition, the token may already be gone (by a write that was never
    // acknowledged, so never promised); deleting it again changes nothing
    // and reaches no replication stream.
    sessions.delete_token(&token).await.unwrap();
    cluster.replica().pause();
    let again = sessions.delete_token(&token).await;
    let revoke_all = sessions.delete_user_token("alice").await;
    cluster.replica().resume();
    assert_store_error("a revoke no replica confirmed", again);
    assert_store_error("a revoke-all no replica confirmed", revoke_all);
    sessions.delete_token(&token).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_the_sentinels_do_not_know_makes_durable_writes_not_ready() {
    let env = Env::new(Kind::Sentinel).await;
    let cluster = env.sentinel.as_ref().unwrap();
    let durable = durable_store(cluster, None).await;
    durable.ready().await.unwrap();
    // A replica hidden from the sentinels could take the acknowledgements
    // while they promote the other, lagging one.
    let master_port = cluster.master_port().to_string();
    let hidden = RedisServer::start_with(&[
        "--replicaof",
        "127.0.0.1",
        &master_port,
        "--replica-announced",
        "no",
    ]);
    hidden.wait_synced();
    // The master lists a replica in `ROLE` once it is online, a moment after
    // the replica reports its link up.
    let reason = not_ready_within(&durable, Duration::from_secs(10), "with a hidden replica").await;
    assert!(
        reason.contains(&format!("127.0.0.1:{}", hidden.port()))
            && reason.contains("not yet known to the sentinels"),
        "{reason}"
    );
    // Once the sentinels learn of it (they read the master's INFO every
    // 10 s), the store is ready again.
    let mut client = hidden.client().await;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("replica-announced")
        .arg("yes")
        .query_async::<()>(&mut client)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(25);
    while let Err(error) = durable.ready().await {
        assert!(Instant::now() < deadline, "never ready again: {error}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn with_every_sentinel_down_connect_names_each_sentinel_tried() {
    let sentinels: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let error = SentinelStore::connect(SentinelConfig::new(sentinels.clone(), "mymaster"))
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("no sentinel reachable"), "{message}");
    for sentinel in &sentinels {
        assert!(message.contains(sentinel.as_str()), "{message}");
    }
}

#[tokio::test]
async fn a_master_name_the_sentinels_do_not_know_is_a_clear_error() {
    let env = Env::new(Kind::Sentinel).await;
    let cluster = env.sentinel.as_ref().unwrap();
    let error = SentinelStore::connect(SentinelConfig {
        master_name: "nosuchmaster".into(),
        ..sentinel_config(cluster)
    })
    .await
    .unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains("the sentinels do not know a redis master named \"nosuchmaster\""),
        "{message}"
    );
}

#[tokio::test]
async fn sentinels_may_be_named_as_redis_urls_and_a_malformed_one_names_both_forms() {
    let env = Env::new(Kind::Sentinel).await;
    let cluster = env.sentinel.as_ref().unwrap();
    let urls = cluster
        .sentinel_addresses()
        .iter()
        .map(|address| format!("redis://{address}"))
        .collect();
    let store = SentinelStore::connect(SentinelConfig::new(urls, MASTER_NAME))
        .await
        .unwrap();
    store.ready().await.unwrap();

    for malformed in ["127.0.0.1", "redis://127.0.0.1", "http://127.0.0.1:26379"] {
        let error =
            SentinelStore::connect(SentinelConfig::new(vec![malformed.into()], MASTER_NAME))
                .await
                .unwrap_err();
        assert_names_both_address_forms(&error, malformed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_server_fails_calls_with_store_errors_then_serves_again() {
    let mut server = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(redis_store(&server).await);
    let sessions = SessionManager::builder()
        .shared_store(Arc::clone(&store))
        .build()
        .unwrap();
    let single = SessionManager::builder()
        .shared_store(Arc::clone(&store))
        .settings(Settings {
            single_mode: true,
            ..Settings::default()
        })
        .build()
        .unwrap();
    let token = sessions.set_token("alice", 600).await.unwrap().token;
    single.set_token("bob", 600).await.unwrap();

    server.kill();
    // Twice: the first failure and the ones after it go different ways
    // through the reconnect logic.
    for _ in 0..2 {
        assert_store_error("set-token", sessions.set_token("alice", 600).await);
        assert_store_error("single-mode set-token", single.set_token("bob", 600).await);
        assert_store_error("check-token", sessions.check_token(&token).await);
        assert_store_error("refresh-token", sessions.refresh_token(&token, 600).await);
        assert_store_error("delete-token", sessions.delete_token(&token).await);
        assert_store_error("list-user-token", sessions.list_user_token("alice").await);
        assert_store_error(
            "delete-user-token",
            sessions.delete_user_token("alice").await,
        );
        assert!(store.ready().await.is_err(), "ready while redis is down");
    }

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.ready().await.is_err() {
        assert!(Instant::now() < deadline, "redis did not come back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let token = sessions.set_token("alice", 600).await.unwrap().token;
    assert!(sessions.check_token(&token).await.unwrap().is_some());
    sessions.refresh_token(&token, 600).await.unwrap();
    let bob = single.set_token("bob", 600).await.unwrap().token;
    assert_eq!(single.list_user_token("bob").await.unwrap()[0].token, bob);
    sessions.delete_token(&token).await.unwrap();
    assert_eq!(sessions.check_token(&token).await.unwrap(), None);
    sessions.delete_user_token("bob").await.unwrap();
}
