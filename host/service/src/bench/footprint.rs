//! `--sessions N`: the memory N live sessions take, on a store of their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use dsession::store::{MemoryStore, Store};
use dsession::{Limits, Policy};
use serde_json::{Value, json};

use super::args::BenchArgs;

/// Memory per live session: issues `count` tokens, one per user, on a
/// store of their own, and compares memory before and after.
pub(super) async fn footprint(
    args: &BenchArgs,
    run: &str,
    policy: &Policy,
    count: usize,
    limits: Limits,
) -> anyhow::Result<Value> {
    let redis_url = args.store.redis_url();
    let (store, measure): (Arc<dyn Store>, &str) = match (args.store.config(), redis_url) {
        (None, _) => (Arc::new(MemoryStore::new()), "host RSS"),
        (Some(config), Some(_)) => (config.open().await?, "redis used_memory"),
        (Some(_), None) => anyhow::bail!("--sessions needs the memory store or --redis"),
    };
    let before = match redis_url {
        Some(url) => redis_used_memory(url).await?,
        None => rss_bytes().context("cannot read VmRSS")?,
    };
    let sessions = Arc::new(
        args.builder(policy)
            .shared_store(store)
            .limits(limits)
            .build()?,
    );
    let tokens = Arc::new(std::sync::Mutex::new(Vec::with_capacity(count)));
    let run = run.to_owned();
    each_of(count, {
        let (sessions, tokens) = (Arc::clone(&sessions), Arc::clone(&tokens));
        move |n| {
            let (sessions, tokens, user) = (
                Arc::clone(&sessions),
                Arc::clone(&tokens),
                format!("{run}-footprint-{n}"),
            );
            async move {
                let issued = sessions.set_token(&user, 600).await?;
                tokens.lock().expect("no panic holds it").push(issued.token);
                anyhow::Ok(())
            }
        }
    })
    .await?;
    let after = match redis_url {
        Some(url) => redis_used_memory(url).await?,
        None => rss_bytes().context("cannot read VmRSS")?,
    };
    let grown = after.saturating_sub(before);
    let mut footprint = json!({
        "sessions": count,
        "measure": measure,
        "before_bytes": before,
        "after_bytes": after,
        "bytes_per_session": grown as f64 / count as f64,
    });
    if let (Some(url), Some(_)) = (redis_url, sessions.store().near_cache()) {
        footprint["near_cache"] = near_cache_footprint(url, &sessions, tokens).await?;
    }
    Ok(footprint)
}

/// What the near cache costs once every session was checked: this
/// process's RSS, and Redis's tracking table (`used_memory`).
async fn near_cache_footprint(
    url: &str,
    sessions: &Arc<dsession::SessionManager>,
    tokens: Arc<std::sync::Mutex<Vec<String>>>,
) -> anyhow::Result<Value> {
    let tokens = Arc::new(std::mem::take(
        &mut *tokens.lock().expect("no panic holds it"),
    ));
    let (rss_before, redis_before) = (
        rss_bytes().context("cannot read VmRSS")?,
        redis_used_memory(url).await?,
    );
    each_of(tokens.len(), {
        let (sessions, tokens) = (Arc::clone(sessions), Arc::clone(&tokens));
        move |n| {
            let (sessions, tokens) = (Arc::clone(&sessions), Arc::clone(&tokens));
            async move {
                let token = &tokens[usize::try_from(n).expect("an index")];
                anyhow::ensure!(
                    sessions.check_token(token).await?.is_some(),
                    "a live token checked invalid"
                );
                anyhow::Ok(())
            }
        }
    })
    .await?;
    let counts = sessions
        .store()
        .near_cache()
        .context("the near cache went")?;
    let (rss_after, redis_after) = (
        rss_bytes().context("cannot read VmRSS")?,
        redis_used_memory(url).await?,
    );
    let cached = tokens.len() as f64;
    Ok(json!({
        "entries": counts.entries,
        "estimated_bytes": counts.bytes,
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "rss_bytes_per_session": rss_after.saturating_sub(rss_before) as f64 / cached,
        "redis_tracking_bytes_per_session": redis_after.saturating_sub(redis_before) as f64 / cached,
    }))
}

/// Runs `call(n)` for every n below `count`, 32 at a time.
async fn each_of<F, Fut>(count: usize, call: F) -> anyhow::Result<()>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..32)
        .map(|_| {
            let (next, call) = (Arc::clone(&next), call.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= count as u64 {
                        return anyhow::Ok(());
                    }
                    call(n).await?;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(())
}

/// Resident memory of this process, in bytes.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// `used_memory` of the Redis server at `url`.
async fn redis_used_memory(url: &str) -> anyhow::Result<u64> {
    let client = redis::Client::open(url).context("invalid redis URL")?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut connection)
        .await?;
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|n| n.trim().parse().ok())
        .context("INFO memory has no used_memory")
}
