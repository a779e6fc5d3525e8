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
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..32)
        .map(|_| {
            let sessions = Arc::clone(&sessions);
            let next = Arc::clone(&next);
            let run = run.to_owned();
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= count as u64 {
                        return anyhow::Ok(());
                    }
                    sessions
                        .set_token(&format!("{run}-footprint-{n}"), 600)
                        .await?;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    let after = match redis_url {
        Some(url) => redis_used_memory(url).await?,
        None => rss_bytes().context("cannot read VmRSS")?,
    };
    let grown = after.saturating_sub(before);
    Ok(json!({
        "sessions": count,
        "measure": measure,
        "before_bytes": before,
        "after_bytes": after,
        "bytes_per_session": grown as f64 / count as f64,
    }))
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
