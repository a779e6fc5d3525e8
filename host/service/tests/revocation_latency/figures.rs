//! What one revocation measured, and the table of a run's revocations:
//! latency percentiles beside the counts of stale answers and errors.

use std::collections::BTreeMap;
use std::time::Duration;

/// How a token was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoker {
    /// `POST /v1/tokens/revoke` on A.
    ApiOnA,
    /// A plain `DEL` of the token key by another Redis client.
    DelByAnother,
}

impl Revoker {
    pub fn label(self) -> &'static str {
        match self {
            Self::ApiOnA => "A's API",
            Self::DelByAnother => "`DEL` by another client",
        }
    }
}

/// One revocation, as B answered the checks after it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub revoker: Revoker,
    /// Whether B's connections to Redis were killed just before.
    pub killed: bool,
    /// From the revoke's answer to B's first 401.
    pub latency: Duration,
    /// How long B took to answer the last check, a 401 after it knew: the
    /// floor under `latency`, one round trip of a refused check.
    pub refused_check: Duration,
    /// Checks B answered valid once it had heard of the revocation.
    pub violations: usize,
    /// Checks B answered valid before it could have heard.
    pub stale: usize,
    /// What B answered the checks it answered neither 200 nor 401.
    pub errors: Vec<String>,
}

/// Header of [`row`]'s table.
pub const HEADER: &str = "| run | revoked by | revocations | p50 | p99 | max | mean | one 401 check, p50 | valid after B heard | valid before B heard | errors |\n\
                          |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

/// The table row of `samples`, labelled `run` and `revoked_by`.
pub fn row(run: &str, revoked_by: &str, samples: &[&Sample]) -> String {
    let sorted = |of: fn(&Sample) -> Duration| {
        let mut durations: Vec<Duration> = samples.iter().map(|sample| of(sample)).collect();
        durations.sort_unstable();
        durations
    };
    let latencies = sorted(|sample| sample.latency);
    let total: Duration = latencies.iter().sum();
    let mean = total / u32::try_from(latencies.len().max(1)).unwrap();
    let sum = |count: fn(&Sample) -> usize| samples.iter().map(|s| count(s)).sum::<usize>();
    format!(
        "| {run} | {revoked_by} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        latencies.len(),
        millis(percentile(&latencies, 50)),
        millis(percentile(&latencies, 99)),
        millis(latencies.last().copied().unwrap_or_default()),
        millis(mean),
        millis(percentile(&sorted(|sample| sample.refused_check), 50)),
        sum(|sample| sample.violations),
        sum(|sample| sample.stale),
        sum(|sample| sample.errors.len()),
    )
}

/// The errors of `samples`, each with how often B answered it.
pub fn errors(samples: &[Sample]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for error in samples.iter().flat_map(|sample| &sample.errors) {
        *counts.entry(error.as_str()).or_default() += 1;
    }
    counts
}

/// The nearest-rank `percent`th percentile of `sorted`.
fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn millis(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1e3)
}

#[test]
fn percentiles_are_nearest_rank() {
    let sorted: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
    assert_eq!(percentile(&sorted, 50), Duration::from_millis(100));
    assert_eq!(percentile(&sorted, 99), Duration::from_millis(198));
    assert_eq!(percentile(&sorted[..1], 99), Duration::from_millis(1));
}
