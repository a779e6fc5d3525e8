//! Prometheus metrics: requests, policy calls, store errors, reloads, and
//! the user loader's.

use std::time::Instant;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

use axum::http::Method;

use crate::Error;
use crate::loader::LoaderMetrics;

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
    policy_calls: IntCounterVec,
    policy_seconds: HistogramVec,
    store_errors: IntCounter,
    reloads: IntCounter,
    reload_failures: IntCounter,
    loader_fallbacks: IntCounter,
}

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

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let metric = HistogramVec::new(opts, labels).expect("valid metric");
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
        Self {
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
            registry,
        }
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

    /// Records one policy call and passes its outcome on.
    pub fn policy_call<T>(
        &self,
        operation: &str,
        started: Instant,
        outcome: Result<T, Error>,
    ) -> Result<T, Error> {
        let label = match &outcome {
            Ok(_) => "ok",
            Err(error) => error.code(),
        };
        if matches!(outcome, Err(Error::Store(_))) {
            self.store_errors.inc();
        }
        self.policy_calls
            .with_label_values(&[operation, label])
            .inc();
        self.policy_seconds
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        outcome
    }

    /// Shows the loader's calls, latency, errors and coalesced waits too.
    pub fn include_loader(&self, loader: &LoaderMetrics) {
        loader
            .register(&self.registry)
            .expect("loader metrics are registered once");
    }

    /// Records a check answered without detail because the loader failed.
    pub fn loader_fallback(&self) {
        self.loader_fallbacks.inc();
    }

    /// Records a policy reload.
    pub fn reload(&self, succeeded: bool) {
        if succeeded {
            self.reloads.inc();
        } else {
            self.reload_failures.inc();
        }
    }

    /// Everything in Prometheus's text format.
    pub fn render(&self) -> String {
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("encoding to memory cannot fail");
        String::from_utf8(text).expect("Prometheus text is UTF-8")
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
