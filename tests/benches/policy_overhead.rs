//! Per-call overhead of the wasm policy: `cargo bench -p dsession-tests`.
//!
//! Prints the median and p90 of each measurement in microseconds:
//! - `store`: the memory store running check-token's reads directly;
//! - `instantiate`: a policy call that touches no store (taking a warm
//!   instance, or making one when the pool is empty, argument passing and a
//!   trivial export), with the hostile test policy;
//! - `check-token`: the whole call on the memory store and on Redis, with
//!   the default policy and with the hardened one (idle expiry on, slid
//!   once per 180 s touch interval, which a run this short never reaches:
//!   each check reads alone).
//!
//! The policy's own work in check-token is what is left: check-token minus
//! instantiate minus store.

use std::time::{Duration, Instant};

use dsession::store::{Command, MemoryStore, RedisConfig, RedisStore, Store};
use dsession::{Policy, SessionManager};
use dsession_tests::RedisServer;

const SAMPLES: usize = 3000;
const WARMUP: usize = 300;

struct Summary {
    median: f64,
    p90: f64,
}

async fn measure<F, Fut>(mut f: F) -> Summary
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    for _ in 0..WARMUP {
        f().await;
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let started = Instant::now();
        f().await;
        samples.push(started.elapsed());
    }
    samples.sort();
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    Summary {
        median: micros(samples[SAMPLES / 2]),
        p90: micros(samples[SAMPLES * 9 / 10]),
    }
}

fn report(name: &str, summary: &Summary) {
    println!(
        "{name:<28} median {:>8.1} µs   p90 {:>8.1} µs",
        summary.median, summary.p90
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let memory = MemoryStore::new();
    let sessions = SessionManager::builder()
        .store(memory.clone())
        .build()
        .unwrap();
    let token = sessions.set_token("alice", 3600).await.unwrap().token;
    let key = format!("gosession-token_{token}");

    let store = measure(|| {
        let reads = vec![Command::Get(key.clone()), Command::Ttl(key.clone())];
        let memory = &memory;
        async move {
            memory.batch(reads).await.unwrap();
        }
    })
    .await;

    let hostile_path = concat!(env!("CARGO_MANIFEST_DIR"), "/guests/hostile.wasm");
    let trivial = SessionManager::builder()
        .policy(Policy::from_file(hostile_path).unwrap())
        .build()
        .unwrap();
    let instantiate = measure(|| async {
        trivial.set_token("fine", 60).await.unwrap();
    })
    .await;

    let check_memory = measure(|| async {
        assert!(sessions.check_token(&token).await.unwrap().is_some());
    })
    .await;

    let hardened = Policy::builtin_named("hardened").unwrap();
    let hardened_memory = SessionManager::builder()
        .policy(hardened.clone())
        .build()
        .unwrap();
    let hardened_token = hardened_memory
        .set_token("alice", 3600)
        .await
        .unwrap()
        .token;
    let check_hardened_memory = measure(|| async {
        let user = hardened_memory.check_token(&hardened_token).await.unwrap();
        assert!(user.is_some());
    })
    .await;

    let server = RedisServer::start();
    let redis = RedisStore::connect(RedisConfig::new(server.url()))
        .await
        .unwrap();
    let on_redis = SessionManager::builder().store(redis).build().unwrap();
    let redis_token = on_redis.set_token("alice", 3600).await.unwrap().token;
    let check_redis = measure(|| async {
        assert!(on_redis.check_token(&redis_token).await.unwrap().is_some());
    })
    .await;
    let hardened_redis = SessionManager::builder()
        .shared_store(on_redis.store().clone())
        .policy(hardened)
        .build()
        .unwrap();
    let hardened_redis_token = hardened_redis.set_token("alice", 3600).await.unwrap().token;
    let check_hardened_redis = measure(|| async {
        let user = hardened_redis.check_token(&hardened_redis_token).await;
        assert!(user.unwrap().is_some());
    })
    .await;

    println!("dsession policy overhead, {SAMPLES} samples each");
    report("store (memory, GET+TTL)", &store);
    report("instantiate + trivial call", &instantiate);
    report("check-token, memory store", &check_memory);
    report("check-token, redis store", &check_redis);
    report("hardened check, memory", &check_hardened_memory);
    report("hardened check, redis", &check_hardened_redis);
    let policy_work = check_memory.median - instantiate.median - store.median;
    println!(
        "policy work in check-token   ≈ {policy_work:.1} µs (check-token − instantiate − store, medians)"
    );
}
