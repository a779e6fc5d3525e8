//! Prometheus metrics: requests, and what the library reports through its
//! observer (operations, store errors, reloads, the user loader). Every
//! label comes from a closed set the library defines.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use axum::http::Method;

use dsession::ErrorKind;
use dsession::loader::LoadFailure;
use dsession::observe::{LoadOutcome, Observer, Operation, Outcome};
use dsession::store::{Flush, NearCacheCounts};

/// A method as a metric label: any token is a valid HTTP method, so one
/// that is not standard is counted as `other` rather than given a series.
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

/// The service's metrics, registered in a registry of their own.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    grpc_checks: IntCounterVec,
    grpc_check_seconds: Histogram,
    policy_calls: IntCounterVec,
    policy_seconds: HistogramVec,
    store_errors: IntCounter,
    reloads: IntCounter,
    reload_failures: IntCounter,
    loader_fallbacks: IntCounter,
    loader_calls: IntCounterVec,
    loader_errors: IntCounterVec,
    loader_seconds: Histogram,
    loader_coalesced_waits: IntCounter,
    loader_no_detail_hits: IntCounter,
    near_cache: NearCacheMetrics,
}

/// The store's near cache, read from its counters at each scrape.
#[derive(Debug, Clone)]
struct NearCacheMetrics {
    hits: IntCounter,
    misses: IntCounter,
    invalidations: IntCounter,
    flushes: IntCounterVec,
    evictions: IntCounter,
    entries: IntGauge,
    bytes: IntGauge,
    /// The counts at the last scrape, so that each adds what is new.
    last: Arc<Mutex<NearCacheCounts>>,
}

impl NearCacheMetrics {
    fn new(registry: &Registry) -> Self {
        let metrics = Self {
            hits: counter(
                registry,
                "dsession_near_cache_hits_total",
                "Store reads answered from the near cache.",
            ),
            misses: counter(
                registry,
                "dsession_near_cache_misses_total",
                "Store reads the near cache sent to Redis.",
            ),
            invalidations: counter(
                registry,
                "dsession_near_cache_invalidations_total",
                "Keys Redis invalidated in the near cache.",
            ),
            flushes: counter_vec(
                registry,
                "dsession_near_cache_flushes_total",
                "Times the near cache emptied itself, by reason (disconnected, silent, server, topology).",
                &["reason"],
            ),
            evictions: counter(
                registry,
                "dsession_near_cache_evictions_total",
                "Entries the near cache dropped to keep its bounds.",
            ),
            entries: gauge(
                registry,
                "dsession_near_cache_entries",
                "Entries in the near cache.",
            ),
            bytes: gauge(
                registry,
                "dsession_near_cache_bytes",
                "Bytes the near cache holds, estimated.",
            ),
            last: Arc::default(),
        };
        for reason in Flush::ALL {
            metrics.flushes.with_label_values(&[reason.label()]);
        }
        metrics
    }

    fn update(&self, now: &NearCacheCounts) {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let add = |counter: &IntCounter, now: u64, last: u64| {
            counter.inc_by(now.saturating_sub(last));
        };
        add(&self.hits, now.hits, last.hits);
        add(&self.misses, now.misses, last.misses);
        add(&self.invalidations, now.invalidations, last.invalidations);
        add(&self.evictions, now.evictions, last.evictions);
        for (index, reason) in Flush::ALL.iter().enumerate() {
            self.flushes
                .with_label_values(&[reason.label()])
                .inc_by(now.flushes[index].saturating_sub(last.flushes[index]));
        }
        self.entries
            .set(i64::try_from(now.entries).unwrap_or(i64::MAX));
        self.bytes.set(i64::try_from(now.bytes).unwrap_or(i64::MAX));
        *last = now.clone();
    }
}

const LOADER_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// What a gRPC `Check` answered: allowed, denied, or which failure
/// (`unavailable`: store, loader or no instance free; `internal`: the
/// policy failed or the data is corrupt).
pub(crate) const GRPC_CHECK_OUTCOMES: [&str; 4] = ["ok", "denied", "unavailable", "internal"];

const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let metric = Histogram::with_opts(opts).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let metric = HistogramVec::new(opts, labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let metrics = Self {
            requests: counter_vec(
                &registry,
                "dsession_http_requests_total",
                "HTTP requests by route, method and status.",
                &["route", "method", "status"],
            ),
            request_seconds: histogram_vec(
                &registry,
                "dsession_http_request_duration_seconds",
                "HTTP request latency by route.",
                &["route"],
            ),
            grpc_checks: counter_vec(
                &registry,
                "dsession_grpc_checks_total",
                "gRPC ext_authz checks by outcome (ok, denied, unavailable, internal).",
                &["outcome"],
            ),
            grpc_check_seconds: histogram(
                &registry,
                "dsession_grpc_check_duration_seconds",
                "gRPC ext_authz check latency.",
                LATENCY_BUCKETS,
            ),
            policy_calls: counter_vec(
                &registry,
                "dsession_policy_calls_total",
                "Policy calls by operation and outcome (ok or an error code).",
                &["operation", "outcome"],
            ),
            policy_seconds: histogram_vec(
                &registry,
                "dsession_policy_call_duration_seconds",
                "Policy call duration by operation, store round trips included.",
                &["operation"],
            ),
            store_errors: counter(
                &registry,
                "dsession_store_errors_total",
                "Operations that failed in the store.",
            ),
            reloads: counter(
                &registry,
                "dsession_policy_reloads_total",
                "Policy reloads that took effect.",
            ),
            reload_failures: counter(
                &registry,
                "dsession_policy_reload_failures_total",
                "Policy reloads rejected; the old policy kept serving.",
            ),
            loader_fallbacks: counter(
                &registry,
                "dsession_loader_fallbacks_total",
                "Checks answered without detail because the user loader failed (loader.on_error = no_detail).",
            ),
            loader_calls: counter_vec(
                &registry,
                "dsession_loader_calls_total",
                "User loader calls by outcome (detail, no_detail, error); coalesced waits and remembered answers excluded.",
                &["outcome"],
            ),
            loader_errors: counter_vec(
                &registry,
                "dsession_loader_errors_total",
                "Failed user loader calls by reason.",
                &["reason"],
            ),
            loader_seconds: histogram(
                &registry,
                "dsession_loader_call_duration_seconds",
                "User loader call duration, a retry included.",
                LOADER_BUCKETS,
            ),
            loader_coalesced_waits: counter(
                &registry,
                "dsession_loader_coalesced_waits_total",
                "Loads that waited for another load of the same user instead of calling the loader.",
            ),
            loader_no_detail_hits: counter(
                &registry,
                "dsession_loader_no_detail_hits_total",
                "Loads answered \"no detail\" from memory without calling the loader.",
            ),
            near_cache: NearCacheMetrics::new(&registry),
            registry,
        };
        // Every closed-set label shows from the start, at zero.
        for operation in Operation::ALL {
            for outcome in Outcome::ALL {
                metrics
                    .policy_calls
                    .with_label_values(&[operation.as_str(), outcome.label()]);
            }
        }
        for outcome in GRPC_CHECK_OUTCOMES {
            metrics.grpc_checks.with_label_values(&[outcome]);
        }
        for outcome in LoadOutcome::LABELS {
            metrics.loader_calls.with_label_values(&[outcome]);
        }
        for reason in LoadFailure::REASONS {
            metrics.loader_errors.with_label_values(&[reason]);
        }
        metrics
    }
}

impl Metrics {
    /// Records one HTTP request. Every label comes from a closed set: the
    /// route as matched, a known method or `other`, the status number.
    pub fn request(&self, route: &str, method: &Method, status: u16, started: Instant) {
        self.requests
            .with_label_values(&[route, method_label(method), &status.to_string()])
            .inc();
        self.request_seconds
            .with_label_values(&[route])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Records one gRPC `Check`; `outcome` is one of
    /// [`GRPC_CHECK_OUTCOMES`].
    pub(crate) fn grpc_check(&self, outcome: &'static str, started: Instant) {
        debug_assert!(GRPC_CHECK_OUTCOMES.contains(&outcome), "{outcome}");
        self.grpc_checks.with_label_values(&[outcome]).inc();
        self.grpc_check_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    /// Everything in Prometheus's text format.
    /// Takes in the near cache's counts, when the store has one; called
    /// before each [`Self::render`].
    pub fn near_cache(&self, counts: &NearCacheCounts) {
        self.near_cache.update(counts);
    }

    pub fn render(&self) -> String {
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("encoding to memory cannot fail");
        String::from_utf8(text).expect("Prometheus text is UTF-8")
    }
}

impl Observer for Metrics {
    fn operation(&self, operation: Operation, outcome: Outcome, elapsed: Duration) {
        if let Outcome::Failed(ErrorKind::Store | ErrorKind::StoreOutOfMemory) = outcome {
            self.store_errors.inc();
        }
        self.policy_calls
            .with_label_values(&[operation.as_str(), outcome.label()])
            .inc();
        self.policy_seconds
            .with_label_values(&[operation.as_str()])
            .observe(elapsed.as_secs_f64());
    }

    fn loader_call(&self, outcome: LoadOutcome, elapsed: Duration) {
        if let LoadOutcome::Error(reason) = outcome {
            self.loader_errors.with_label_values(&[reason]).inc();
        }
        self.loader_calls
            .with_label_values(&[outcome.label()])
            .inc();
        self.loader_seconds.observe(elapsed.as_secs_f64());
    }

    fn loader_coalesced_wait(&self) {
        self.loader_coalesced_waits.inc();
    }

    fn loader_no_detail_hit(&self) {
        self.loader_no_detail_hits.inc();
    }

    fn loader_fallback(&self) {
        self.loader_fallbacks.inc();
    }

    fn policy_reload(&self, accepted: bool) {
        if accepted {
            self.reloads.inc();
        } else {
            self.reload_failures.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_series() {
        let metrics = Metrics::default();
        for i in 0..100 {
            let method = Method::from_bytes(format!("M{i}").as_bytes()).unwrap();
            metrics.request("unmatched", &method, 404, Instant::now());
        }
        metrics.request("unmatched", &Method::GET, 404, Instant::now());
        let text = metrics.render();
        let series = text
            .lines()
            .filter(|line| line.starts_with("dsession_http_requests_total{"))
            .count();
        assert_eq!(series, 2, "{text}");
        assert!(text.contains(r#"method="other""#));
    }
}
