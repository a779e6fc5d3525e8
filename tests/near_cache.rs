//! The near cache's rules, each against a real Redis: expiry from the
//! key's deadline, a flush on every connection change, this process's
//! writes and every other client's seen, only batches of reads cached,
//! bounded memory; and checks that stay right under racing writers. Then
//! the same rules on a Redis Cluster, and a flush when a slot moves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use dsession::SessionManager;
use dsession::store::{
    ClusterStore, Command, Flush, NearCacheConfig, NearCacheCounts, RedisConfig, RedisStore, Reply,
    SetArgs, SetCondition, Store, StoreConfig, TrackingMode, key_slot,
};
use dsession_service::ServeConfig;

use crate::support::http::{self, auth};
use crate::support::served::{service, token};
use crate::support::{RedisCluster, RedisServer, cluster_config};

/// How long an invalidation may take to arrive in these tests: far more
/// than loopback needs, so that a miss means it never came.
const ARRIVAL: Duration = Duration::from_secs(2);

async fn cached(server: &RedisServer, near_cache: NearCacheConfig) -> RedisStore {
    RedisStore::connect(RedisConfig::new(server.url()).with_near_cache(near_cache))
        .await
        .unwrap()
}

async fn store(server: &RedisServer) -> RedisStore {
    cached(server, NearCacheConfig::enabled()).await
}

fn counts(store: &impl Store) -> NearCacheCounts {
    store.near_cache().expect("the near cache is on")
}

fn flushes(store: &impl Store, why: Flush) -> u64 {
    let index = Flush::ALL.iter().position(|&reason| reason == why).unwrap();
    counts(store).flushes[index]
}

async fn get(store: &impl Store, key: &str) -> Reply {
    store
        .batch(vec![Command::Get(key.into())])
        .await
        .unwrap()
        .remove(0)
}

fn text(value: &str) -> Reply {
    Reply::Text(value.into())
}

fn set(key: &str, value: &str) -> Command {
    Command::Set(SetArgs {
        key: key.into(),
        value: value.into(),
        ttl_seconds: 0,
        condition: SetCondition::Always,
    })
}

async fn redis_set(server: &RedisServer, key: &str, value: &str) {
    let _: () = ::redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut server.client().await)
        .await
        .unwrap();
}

/// Reads `key` through `store` until it answers `expected`, within
/// [`ARRIVAL`]; panics with what it answered last otherwise.
async fn until_seen(store: &impl Store, key: &str, expected: &Reply) {
    let start = Instant::now();
    loop {
        let answer = get(store, key).await;
        if answer == *expected {
            return;
        }
        assert!(
            start.elapsed() < ARRIVAL,
            "still {answer:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits until `store`'s cache has flushed for `why` more than `before` times.
async fn until_flushed(store: &impl Store, why: Flush, before: u64) {
    let start = Instant::now();
    while flushes(store, why) <= before {
        assert!(start.elapsed() < ARRIVAL, "no {why:?} flush");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn a_repeated_read_is_answered_from_memory() {
    let server = RedisServer::start();
    let store = store(&server).await;
    redis_set(&server, "k", "v").await;
    assert_eq!(get(&store, "k").await, text("v"));
    let before = counts(&store);
    for _ in 0..10 {
        assert_eq!(get(&store, "k").await, text("v"));
    }
    let after = counts(&store);
    assert_eq!(after.hits - before.hits, 10, "{after:?}");
    assert_eq!(after.misses, before.misses);
    // Redis saw one read of the key: the first.
    let info: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut server.client().await)
        .await
        .unwrap();
    let gets = info
        .lines()
        .find(|line| line.starts_with("cmdstat_get:"))
        .unwrap();
    assert!(gets.starts_with("cmdstat_get:calls=1,"), "{gets}");
}

/// Redis deletes an expired key lazily, and with active expiry off it
/// sends no invalidation until something reads the key: only the deadline
/// the cache keeps stops it from serving the value.
#[tokio::test]
async fn an_entry_is_never_served_past_its_keys_expiry_and_ttl_counts_down() {
    let server = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let mut redis = server.client().await;
    let _: () = ::redis::cmd("DEBUG")
        .arg("SET-ACTIVE-EXPIRE")
        .arg(0)
        .query_async(&mut redis)
        .await
        .unwrap();
    let store = store(&server).await;
    let _: () = ::redis::cmd("SET")
        .arg("short")
        .arg("v")
        .arg("PX")
        .arg(1600)
        .query_async(&mut redis)
        .await
        .unwrap();
    let reads = || vec![Command::Get("short".into()), Command::Ttl("short".into())];
    assert_eq!(
        store.batch(reads()).await.unwrap(),
        [text("v"), Reply::Integer(2)]
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let hits = counts(&store).hits;
    // 900 ms left: TTL rounds as Redis does, from the deadline kept.
    assert_eq!(
        store.batch(reads()).await.unwrap(),
        [text("v"), Reply::Integer(1)]
    );
    assert_eq!(counts(&store).hits, hits + 2, "answered from memory");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        store.batch(reads()).await.unwrap(),
        [Reply::Nil, Reply::Integer(-2)],
        "served past the key's expiry"
    );
}

#[tokio::test]
async fn this_process_reads_its_own_writes_at_once() {
    let server = RedisServer::start();
    let store = store(&server).await;
    for round in 0..300 {
        let value = round.to_string();
        store.batch(vec![set("mine", &value)]).await.unwrap();
        assert_eq!(get(&store, "mine").await, text(&value), "round {round}");
        assert_eq!(get(&store, "mine").await, text(&value), "round {round}");
        let atomic = Command::Del(vec!["mine".into()]);
        store.atomic(vec![atomic]).await.unwrap();
        assert_eq!(get(&store, "mine").await, Reply::Nil, "round {round}");
    }
}

#[tokio::test]
async fn writes_by_any_other_client_are_seen() {
    let server = RedisServer::start();
    let store = store(&server).await;
    let other = cached(&server, NearCacheConfig::default()).await;
    redis_set(&server, "k", "first").await;
    assert_eq!(get(&store, "k").await, text("first"));

    // Another dsession.
    other.batch(vec![set("k", "second")]).await.unwrap();
    until_seen(&store, "k", &text("second")).await;
    // A gosession, or any client, with a plain SET.
    redis_set(&server, "k", "third").await;
    until_seen(&store, "k", &text("third")).await;
    // An operator with redis-cli.
    let deleted = std::process::Command::new("redis-cli")
        .args(["-p", &server.port().to_string(), "DEL", "k"])
        .output()
        .unwrap();
    assert!(deleted.status.success());
    until_seen(&store, "k", &Reply::Nil).await;
    assert!(counts(&store).invalidations >= 3, "{:?}", counts(&store));
}

#[tokio::test]
async fn broadcast_mode_hears_of_writes_under_its_prefixes() {
    let server = RedisServer::start();
    let store = cached(
        &server,
        NearCacheConfig {
            mode: TrackingMode::Broadcast,
            prefixes: vec!["dsession:".into()],
            ..NearCacheConfig::enabled()
        },
    )
    .await;
    redis_set(&server, "dsession:k", "first").await;
    assert_eq!(get(&store, "dsession:k").await, text("first"));
    redis_set(&server, "dsession:k", "second").await;
    until_seen(&store, "dsession:k", &text("second")).await;
}

#[tokio::test]
async fn a_killed_tracking_connection_flushes_before_the_next_answer() {
    let server = RedisServer::start();
    let store = store(&server).await;
    redis_set(&server, "k", "before").await;
    assert_eq!(get(&store, "k").await, text("before"));
    let before = flushes(&store, Flush::Disconnected);
    let _: () = ::redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut server.client().await)
        .await
        .unwrap();
    until_flushed(&store, Flush::Disconnected, before).await;
    // Written while no connection tracked the key: no invalidation came.
    redis_set(&server, "k", "after").await;
    assert_eq!(get(&store, "k").await, text("after"));
    // The new connection tracks again.
    redis_set(&server, "k", "later").await;
    until_seen(&store, "k", &text("later")).await;
}

#[tokio::test]
async fn a_restarted_server_empties_the_cache() {
    let mut server = RedisServer::start();
    let store = store(&server).await;
    redis_set(&server, "k", "before").await;
    assert_eq!(get(&store, "k").await, text("before"));
    let before = flushes(&store, Flush::Disconnected);
    server.restart();
    until_flushed(&store, Flush::Disconnected, before).await;
    // The new process holds nothing: the answer comes from it.
    let start = Instant::now();
    loop {
        match store.batch(vec![Command::Get("k".into())]).await {
            Ok(replies) => {
                assert_eq!(replies, [Reply::Nil]);
                break;
            }
            Err(error) => assert!(start.elapsed() < ARRIVAL, "{error}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn flushall_empties_the_cache() {
    let server = RedisServer::start();
    let store = store(&server).await;
    redis_set(&server, "k", "v").await;
    assert_eq!(get(&store, "k").await, text("v"));
    let before = flushes(&store, Flush::Server);
    let _: () = ::redis::cmd("FLUSHALL")
        .query_async(&mut server.client().await)
        .await
        .unwrap();
    until_flushed(&store, Flush::Server, before).await;
    assert_eq!(get(&store, "k").await, Reply::Nil);
}

/// A server that hangs keeps its connections open and sends nothing: past
/// `max_stale` no answer comes from memory, so a read fails with a store
/// error rather than answer what may have changed.
#[tokio::test]
async fn a_silent_server_stops_the_hits_within_max_stale() {
    let server = RedisServer::start();
    let store = cached(
        &server,
        NearCacheConfig {
            max_stale: Duration::from_millis(200),
            ..NearCacheConfig::enabled()
        },
    )
    .await;
    redis_set(&server, "k", "v").await;
    assert_eq!(get(&store, "k").await, text("v"));
    server.pause();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let hits = counts(&store).hits;
    let read = store.batch(vec![Command::Get("k".into())]).await;
    server.resume();
    assert!(read.is_err(), "answered {read:?} while the server hung");
    assert_eq!(counts(&store).hits, hits);
    let start = Instant::now();
    while store.batch(vec![Command::Get("k".into())]).await.is_err() {
        assert!(start.elapsed() < ARRIVAL, "no answer after the resume");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(get(&store, "k").await, text("v"));
}

#[tokio::test]
async fn atomic_steps_transactions_and_writing_batches_always_go_to_redis() {
    let server = RedisServer::start();
    let store = store(&server).await;
    redis_set(&server, "k", "v").await;
    assert_eq!(get(&store, "k").await, text("v"));
    let before = counts(&store);
    let read = || vec![Command::Get("k".into())];
    assert_eq!(store.atomic(read()).await.unwrap(), [text("v")]);
    let (transaction, replies) = store.watch(vec!["k".into()], read()).await.unwrap();
    assert_eq!(replies, [text("v")]);
    transaction.commit(Vec::new()).await.unwrap();
    let mixed = vec![Command::Get("k".into()), set("other", "x")];
    assert_eq!(store.batch(mixed).await.unwrap(), [text("v"), Reply::Ok]);
    let after = counts(&store);
    assert_eq!((after.hits, after.misses), (before.hits, before.misses));
}

#[tokio::test]
async fn entries_and_bytes_stay_within_their_bounds() {
    let server = RedisServer::start();
    let store = cached(
        &server,
        NearCacheConfig {
            max_entries: 10,
            ..NearCacheConfig::enabled()
        },
    )
    .await;
    for key in 0..50 {
        get(&store, &format!("k{key}")).await;
    }
    let counts_now = counts(&store);
    assert_eq!(counts_now.entries, 10, "{counts_now:?}");
    assert_eq!(counts_now.evictions, 40);

    let small = cached(
        &server,
        NearCacheConfig {
            max_bytes: 64 << 10,
            ..NearCacheConfig::enabled()
        },
    )
    .await;
    let value = "x".repeat(1000);
    for key in 0..200 {
        redis_set(&server, &format!("big{key}"), &value).await;
        get(&small, &format!("big{key}")).await;
    }
    let counts_now = counts(&small);
    assert!(counts_now.bytes <= 64 << 10, "{counts_now:?}");
    assert!(counts_now.entries < 200 && counts_now.evictions > 0);
}

/// Readers race a writer of increasing versions: no reader ever sees a
/// version older than one it saw, and once the writer stops every reader
/// reads the last version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_readers_never_go_back_in_time() {
    let server = RedisServer::start();
    let store = Arc::new(store(&server).await);
    redis_set(&server, "version", "0").await;
    const LAST: u64 = 2000;
    let writer = {
        let url = server.url();
        tokio::spawn(async move {
            let mut redis = ::redis::Client::open(url)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            for version in 1..=LAST {
                let _: () = ::redis::cmd("SET")
                    .arg("version")
                    .arg(version)
                    .query_async(&mut redis)
                    .await
                    .unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut seen = 0;
                while seen < LAST {
                    let Reply::Text(version) = get(store.as_ref(), "version").await else {
                        panic!("no version");
                    };
                    let version: u64 = version.parse().unwrap();
                    assert!(version >= seen, "read {version} after {seen}");
                    seen = version;
                }
            })
        })
        .collect();
    writer.await.unwrap();
    tokio::time::timeout(ARRIVAL * 5, futures_util::future::try_join_all(readers))
        .await
        .expect("every reader reaches the last version")
        .unwrap();
    assert!(counts(store.as_ref()).hits > 0);
}

/// A session revoked by another instance is refused by the cached one
/// within the time its invalidation takes to arrive.
#[tokio::test]
async fn a_session_revoked_elsewhere_is_refused() {
    let server = RedisServer::start();
    let cached_sessions = SessionManager::builder()
        .store(store(&server).await)
        .build()
        .unwrap();
    let other = SessionManager::builder()
        .store(cached(&server, NearCacheConfig::default()).await)
        .build()
        .unwrap();
    let issued = other.set_token("alice", 600).await.unwrap();
    for _ in 0..3 {
        assert!(
            cached_sessions
                .check_token(&issued.token)
                .await
                .unwrap()
                .is_some()
        );
    }
    other.delete_token(&issued.token).await.unwrap();
    let start = Instant::now();
    while cached_sessions
        .check_token(&issued.token)
        .await
        .unwrap()
        .is_some()
    {
        assert!(start.elapsed() < ARRIVAL, "still valid after the revoke");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// `GET /auth` answered from the near cache shows in `/metrics`, with
/// every flush reason listed from the start.
#[tokio::test]
async fn the_service_reports_the_near_cache_in_its_metrics() {
    let server = RedisServer::start();
    let config = ServeConfig {
        store: StoreConfig::Redis(
            RedisConfig::new(server.url()).with_near_cache(NearCacheConfig::enabled()),
        ),
        ..ServeConfig::default()
    };
    let (app, _) = service(config).await;
    let token = token(&app, "alice").await;
    let bearer = format!("Bearer {token}");
    for _ in 0..5 {
        let checked = auth(&app, &[("authorization", &bearer)]).await;
        assert_eq!(checked.status, StatusCode::OK);
    }
    let (status, _, text) = http::get(&app, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let value = |name: &str| -> u64 {
        let line = text
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    // Each check reads its keys in one batch: the first misses, the rest hit.
    assert!(value("dsession_near_cache_hits_total ") >= 4, "{text}");
    assert!(value("dsession_near_cache_misses_total ") >= 1);
    assert!(value("dsession_near_cache_entries ") >= 1);
    for reason in Flush::ALL {
        let series = format!(
            "dsession_near_cache_flushes_total{{reason=\"{}\"}} ",
            reason.label()
        );
        assert_eq!(value(&series), 0, "{series}");
    }
}

// Redis Cluster: one cache per master, each with its own tracking connection.

async fn cluster_store(cluster: &RedisCluster, near_cache: NearCacheConfig) -> ClusterStore {
    let mut config = cluster_config(cluster);
    config.server.near_cache = near_cache;
    ClusterStore::connect(config).await.unwrap()
}

/// One key in a slot of each master.
fn key_on_each_master(cluster: &RedisCluster) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    let mut masters = Vec::new();
    for i in 0.. {
        let key = format!("near{i}");
        let master = cluster.master_of(key_slot(&key));
        if !masters.contains(&master) {
            masters.push(master);
            keys.push(key);
        }
        if masters.len() == cluster.master_ports().len() {
            return keys;
        }
    }
    unreachable!("the keys are endless")
}

fn gets(keys: &[String]) -> Vec<Command> {
    keys.iter().map(|key| Command::Get(key.clone())).collect()
}

fn sets(keys: &[String], value: &str) -> Vec<Command> {
    keys.iter().map(|key| set(key, value)).collect()
}

/// `SET` straight on the master of `key`'s slot, as any client may.
async fn master_set(cluster: &RedisCluster, key: &str, value: &str) {
    let port = cluster.master_of(key_slot(key));
    let url = format!("redis://127.0.0.1:{port}");
    let mut master = ::redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = ::redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut master)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_repeated_reads_are_hits_on_every_master_and_writes_elsewhere_are_seen() {
    let cluster = RedisCluster::start();
    let store = cluster_store(&cluster, NearCacheConfig::enabled()).await;
    let other = cluster_store(&cluster, NearCacheConfig::default()).await;
    assert_eq!(other.near_cache(), None);
    let keys = key_on_each_master(&cluster);
    other.batch(sets(&keys, "first")).await.unwrap();
    let first = vec![text("first"); keys.len()];
    assert_eq!(store.batch(gets(&keys)).await.unwrap(), first);
    let before = counts(&store);
    for _ in 0..5 {
        assert_eq!(store.batch(gets(&keys)).await.unwrap(), first);
    }
    let after = counts(&store);
    assert_eq!(after.hits - before.hits, 5 * keys.len() as u64, "{after:?}");
    assert_eq!(after.misses, before.misses);
    assert_eq!(after.entries, keys.len() as u64, "{after:?}");

    // Another dsession, through the cluster.
    other.batch(sets(&keys, "second")).await.unwrap();
    for key in &keys {
        until_seen(&store, key, &text("second")).await;
    }
    // Any client, on each master.
    for key in &keys {
        master_set(&cluster, key, "third").await;
        until_seen(&store, key, &text("third")).await;
    }
    assert!(
        counts(&store).invalidations >= 2 * keys.len() as u64,
        "{:?}",
        counts(&store)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_this_process_reads_its_own_writes_at_once() {
    let cluster = RedisCluster::start();
    let store = cluster_store(&cluster, NearCacheConfig::enabled()).await;
    let keys = key_on_each_master(&cluster);
    for round in 0..100 {
        let value = round.to_string();
        let expected = vec![text(&value); keys.len()];
        store.batch(sets(&keys, &value)).await.unwrap();
        assert_eq!(
            store.batch(gets(&keys)).await.unwrap(),
            expected,
            "round {round}"
        );
        assert_eq!(
            store.batch(gets(&keys)).await.unwrap(),
            expected,
            "round {round}"
        );
        for key in &keys {
            store
                .atomic(vec![Command::Del(vec![key.clone()])])
                .await
                .unwrap();
        }
        let gone = vec![Reply::Nil; keys.len()];
        assert_eq!(
            store.batch(gets(&keys)).await.unwrap(),
            gone,
            "round {round}"
        );
        let key = &keys[round % keys.len()];
        let (transaction, _) = store
            .watch(vec![key.clone()], vec![Command::Get(key.clone())])
            .await
            .unwrap();
        let committed = transaction.commit(vec![set(key, &value)]).await.unwrap();
        assert_eq!(committed, Some(vec![Reply::Ok]));
        assert_eq!(get(&store, key).await, text(&value), "round {round}");
    }
    assert!(counts(&store).hits > 0, "{:?}", counts(&store));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_atomic_steps_transactions_and_writing_batches_always_go_to_redis() {
    let cluster = RedisCluster::start();
    let store = cluster_store(&cluster, NearCacheConfig::enabled()).await;
    let keys = key_on_each_master(&cluster);
    store.batch(sets(&keys, "v")).await.unwrap();
    assert_eq!(store.batch(gets(&keys)).await.unwrap().len(), keys.len());
    let before = counts(&store);
    for key in &keys {
        let read = || vec![Command::Get(key.clone())];
        assert_eq!(store.atomic(read()).await.unwrap(), [text("v")]);
        let (transaction, replies) = store.watch(vec![key.clone()], read()).await.unwrap();
        assert_eq!(replies, [text("v")]);
        transaction.commit(Vec::new()).await.unwrap();
    }
    let mut mixed = gets(&keys);
    mixed.push(set("other", "x"));
    let replies = store.batch(mixed).await.unwrap();
    assert_eq!(replies.last(), Some(&Reply::Ok));
    let after = counts(&store);
    assert_eq!((after.hits, after.misses), (before.hits, before.misses));
}

/// Redis invalidates a key a migration takes away, but not a key that did
/// not exist when it was read: only the master's word that it no longer
/// serves the slot flushes that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_moved_slot_flushes_and_writes_on_its_new_master_are_seen() {
    let cluster = RedisCluster::start();
    let store = cluster_store(&cluster, NearCacheConfig::enabled()).await;
    let other = cluster_store(&cluster, NearCacheConfig::default()).await;
    let (kept, missing) = ("{moving}kept", "{moving}missing");
    let reads = || vec![Command::Get(missing.into()), Command::Get(kept.into())];
    other.batch(vec![set(kept, "before")]).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            store.batch(reads()).await.unwrap(),
            [Reply::Nil, text("before")]
        );
    }
    assert_eq!(counts(&store).hits, 2);
    let slot = key_slot("moving");
    let from = cluster.master_of(slot);
    let to = *cluster
        .master_ports()
        .iter()
        .find(|&&port| port != from)
        .unwrap();
    let before = flushes(&store, Flush::Topology);
    cluster.migrate_slot(slot, to, 10);
    until_flushed(&store, Flush::Topology, before).await;

    other
        .batch(vec![set(missing, "now"), set(kept, "after")])
        .await
        .unwrap();
    until_seen(&store, missing, &text("now")).await;
    until_seen(&store, kept, &text("after")).await;
    // The new master's cache serves the slot, and hears of its writes.
    let start = Instant::now();
    let hits = counts(&store).hits;
    while counts(&store).hits == hits {
        assert!(start.elapsed() < ARRIVAL, "no hit after the move");
        assert_eq!(
            store.batch(reads()).await.unwrap(),
            [text("now"), text("after")]
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    master_set(&cluster, missing, "later").await;
    until_seen(&store, missing, &text("later")).await;
    assert_eq!(cluster.master_of(slot), to);
}

/// Killing a master closes its tracking connection: its cache is flushed
/// before the promoted replica answers, and what is written there is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_killed_master_empties_its_cache_and_the_promoted_replica_is_read() {
    let mut cluster = RedisCluster::start();
    let store = cluster_store(&cluster, NearCacheConfig::enabled()).await;
    let other = cluster_store(&cluster, NearCacheConfig::default()).await;
    let key = "{failing}k";
    other.batch(vec![set(key, "before")]).await.unwrap();
    assert_eq!(get(&store, key).await, text("before"));
    assert_eq!(get(&store, key).await, text("before"));
    let before = flushes(&store, Flush::Disconnected);
    let victim = cluster.master_of(key_slot(key));
    cluster.kill(victim);
    until_flushed(&store, Flush::Disconnected, before).await;

    // A failover takes seconds: the node timeout, then an election. With
    // the victim dead, a write that succeeds went to the promoted replica.
    let start = Instant::now();
    loop {
        if other.batch(vec![set(key, "after")]).await.is_ok() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "no failover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    until_seen(&store, key, &text("after")).await;
}
