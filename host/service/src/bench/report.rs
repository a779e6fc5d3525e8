//! The figures and the report: a table for people, JSON for machines.

use std::time::Duration;

use serde_json::{Value, json};

use super::args::Instances;
use super::baselines::Target;

/// One figure: a target at a concurrency.
pub(super) struct Figure {
    pub(super) target: Target,
    pub(super) concurrency: usize,
    pub(super) ops: u64,
    pub(super) seconds: f64,
    pub(super) p50: Duration,
    pub(super) p99: Duration,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
    /// The commands as Redis sees them (`dsession::store::Counts::redis_commands`).
    pub(super) commands: u64,
    pub(super) round_trips: u64,
    /// Allocations while the figure ran, every thread's.
    pub(super) allocations: u64,
    /// The near cache's hits and misses while the figure ran, if it has one.
    pub(super) near_cache: Option<(u64, u64)>,
}

impl Figure {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.seconds
    }

    fn per_op(&self, count: u64) -> f64 {
        count as f64 / (self.ops + self.errors).max(1) as f64
    }

    /// Hits out of the near cache's reads, when it has one and read.
    fn hit_rate(&self) -> Option<f64> {
        let (hits, misses) = self.near_cache?;
        (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64)
    }
}

/// Everything one run measured.
pub(super) struct Report {
    pub(super) store: &'static str,
    /// The policy as the flag named it.
    pub(super) policy: String,
    pub(super) instances: Instances,
    /// Pooled instances: the linear memory past which one is replaced.
    pub(super) instance_max_memory_mib: Option<usize>,
    pub(super) seconds: f64,
    /// What the policy cost to load and to keep (`loading::Loading::report`).
    pub(super) loading: Value,
    pub(super) figures: Vec<Figure>,
    pub(super) footprint: Option<Value>,
}

impl Report {
    fn baseline_of(&self, figure: &Figure) -> Option<&Figure> {
        self.find(figure.target.baseline()?, figure.concurrency)
    }

    fn own_of(&self, figure: &Figure) -> Option<&Figure> {
        self.find(figure.target.own()?, figure.concurrency)
    }

    fn find(&self, target: Target, concurrency: usize) -> Option<&Figure> {
        self.figures
            .iter()
            .find(|other| other.target == target && other.concurrency == concurrency)
    }

    pub(super) fn json(&self) -> Value {
        let figures: Vec<Value> = self
            .figures
            .iter()
            .map(|figure| {
                let baseline = self.baseline_of(figure);
                let own = self.own_of(figure);
                json!({
                    "name": figure.target.name(),
                    "concurrency": figure.concurrency,
                    "ops": figure.ops,
                    "seconds": figure.seconds,
                    "ops_per_second": figure.rate(),
                    "p50_us": figure.p50.as_secs_f64() * 1e6,
                    "p99_us": figure.p99.as_secs_f64() * 1e6,
                    "errors": figure.errors,
                    "first_error": figure.first_error,
                    "commands_per_op": figure.per_op(figure.commands),
                    "round_trips_per_op": figure.per_op(figure.round_trips),
                    "baseline": baseline.map(|b| b.target.name()),
                    "ratio": baseline.map(|b| figure.rate() / b.rate()),
                    "own_batch_ratio": own.map(|b| figure.rate() / b.rate()),
                    "allocations_per_op": figure.per_op(figure.allocations),
                    "near_cache_hit_rate": figure.hit_rate(),
                })
            })
            .collect();
        json!({
            "machine": machine(),
            "store": self.store,
            "policy": self.policy,
            "instances": self.instances.name(),
            "instance_max_memory_mib": self.instance_max_memory_mib,
            "seconds_per_figure": self.seconds,
            "policy_loading": self.loading,
            "figures": figures,
            "footprint": self.footprint,
        })
    }

    pub(super) fn text(&self) -> String {
        use std::fmt::Write as _;
        let machine = machine();
        let bound = self
            .instance_max_memory_mib
            .map(|mib| format!(" (replaced past {mib} MiB)"))
            .unwrap_or_default();
        let mut out = format!(
            "dsession bench: {} store, {} policy, {} instances{bound}, {:.1} s per figure, {} cores ({})\n",
            self.store,
            self.policy,
            self.instances.name(),
            self.seconds,
            machine["cores"],
            machine["cpu"].as_str().unwrap_or("")
        );
        let _ = writeln!(out, "{}", super::loading::text(&self.loading));
        let _ = writeln!(
            out,
            "{:>5}  {:<38} {:>10} {:>9} {:>9} {:>7} {:>7} {:>6} {:>8} {:>6} {:>7} {:>5}",
            "tasks",
            "figure",
            "ops/s",
            "p50 µs",
            "p99 µs",
            "errors",
            "cmd/op",
            "rt/op",
            "alloc/op",
            "hit%",
            "ratio",
            "own"
        );
        for figure in &self.figures {
            let ratio = self
                .baseline_of(figure)
                .map(|baseline| format!("{:.0}%", 100.0 * figure.rate() / baseline.rate()))
                .unwrap_or_default();
            let own = self
                .own_of(figure)
                .map(|own| format!("{:.0}%", 100.0 * figure.rate() / own.rate()))
                .unwrap_or_default();
            let hits = figure
                .hit_rate()
                .map(|rate| format!("{:.1}", 100.0 * rate))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{:>5}  {:<38} {:>10.0} {:>9.1} {:>9.1} {:>7} {:>7.2} {:>6.2} {:>8.1} {:>6} {:>7} {:>5}",
                figure.concurrency,
                figure.target.name(),
                figure.rate(),
                figure.p50.as_secs_f64() * 1e6,
                figure.p99.as_secs_f64() * 1e6,
                figure.errors,
                figure.per_op(figure.commands),
                figure.per_op(figure.round_trips),
                figure.per_op(figure.allocations),
                hits,
                ratio,
                own
            );
            if let Some(error) = &figure.first_error {
                let _ = writeln!(out, "       first error: {error}");
            }
        }
        let _ = writeln!(
            out,
            "cmd/op: store commands per operation as Redis sees them, MULTI/EXEC and \
             WATCH/UNWATCH included; rt/op: round trips to the store (dsession::store::Tap)"
        );
        let _ = writeln!(
            out,
            "ratio: ops/s against the baseline above it at the same concurrency \
             (GET for checks and lists, SET for writes, /healthz for /auth and Check; \
             these baselines always go to Redis, never to the near cache)"
        );
        let _ = writeln!(
            out,
            "own: ops/s against the operation's own commands, recorded from one call and sent \
             raw through the same client; alloc/op: allocations per operation, every thread's \
             (the counting allocator); hit%: near cache hits out of its reads"
        );
        if let Some(footprint) = &self.footprint {
            let _ = writeln!(
                out,
                "{} live sessions: {:.0} bytes each ({}: {} → {} bytes)",
                footprint["sessions"],
                footprint["bytes_per_session"].as_f64().unwrap_or(0.0),
                footprint["measure"].as_str().unwrap_or(""),
                footprint["before_bytes"],
                footprint["after_bytes"],
            );
            let near_cache = &footprint["near_cache"];
            if !near_cache.is_null() {
                let _ = writeln!(
                    out,
                    "near cache, every session checked: {} entries; {:.0} bytes of RSS per session \
                     here ({} estimated in all), {:.0} bytes per session in Redis's tracking table",
                    near_cache["entries"],
                    near_cache["rss_bytes_per_session"].as_f64().unwrap_or(0.0),
                    near_cache["estimated_bytes"],
                    near_cache["redis_tracking_bytes_per_session"]
                        .as_f64()
                        .unwrap_or(0.0),
                );
            }
        }
        out
    }
}

/// The machine, as far as the figures depend on it.
fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    json!({ "cpu": cpu, "cores": cores, "os": std::env::consts::OS, "arch": std::env::consts::ARCH })
}
