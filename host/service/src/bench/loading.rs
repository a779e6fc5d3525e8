//! What the policy costs before and beside its calls: the component's
//! size, its first load (compiled, and written to a compile cache of the
//! run's own), its next load (from that cache), and the linear memory of
//! a warm instance once the figures have run.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use dsession::{InstanceStats, Policy, Runtime};
use serde_json::{Value, json};

/// The policy the run measures, and what loading it cost.
pub(super) struct Loading {
    pub(super) policy: Policy,
    bytes: usize,
    compile: Duration,
    /// None when the second load did not come from the cache.
    cached: Option<Duration>,
}

impl Loading {
    /// Loads the policy `path` names (a built-in one or a file) twice on a
    /// runtime whose compile cache is a fresh directory named after `run`.
    pub(super) fn measure(path: &Path, run: &str) -> anyhow::Result<Self> {
        let component = match path.to_str().and_then(Policy::builtin_named_component) {
            Some(builtin) => builtin.to_vec(),
            None => std::fs::read(path)
                .with_context(|| format!("cannot read policy {}", path.display()))?,
        };
        let cache = std::env::temp_dir().join(format!("dsession-{run}-compiled"));
        let measured = Self::load_twice(&component, &cache);
        let _ = std::fs::remove_dir_all(&cache);
        measured
    }

    fn load_twice(component: &[u8], cache: &Path) -> anyhow::Result<Self> {
        let runtime = Runtime::builder().compile_cache(cache).build()?;
        let started = Instant::now();
        runtime.policy_from_bytes(component)?;
        let compile = started.elapsed();
        let started = Instant::now();
        let policy = runtime.policy_from_bytes(component)?;
        let load = started.elapsed();
        let hit = runtime
            .compile_cache_stats()
            .is_some_and(|stats| stats.hits > 0);
        Ok(Self {
            policy,
            bytes: component.len(),
            compile,
            cached: hit.then_some(load),
        })
    }

    /// The figures, with the instances of the run's managers in `idle`.
    pub(super) fn report(&self, idle: &[InstanceStats]) -> Value {
        let instances: usize = idle.iter().map(|stats| stats.idle).sum();
        let memory = idle.iter().map(|stats| stats.max_memory_bytes).max();
        json!({
            "component_bytes": self.bytes,
            "compile_seconds": self.compile.as_secs_f64(),
            "cached_load_seconds": self.cached.map(|load| load.as_secs_f64()),
            "idle_instances": instances,
            "instance_memory_bytes": memory,
        })
    }
}

/// The text line of [`Loading::report`]'s figures.
pub(super) fn text(loading: &Value) -> String {
    let seconds = |key: &str| loading[key].as_f64().unwrap_or(0.0);
    let cached = match loading["cached_load_seconds"].as_f64() {
        Some(load) => format!("next load {:.0} ms (from that cache)", load * 1e3),
        None => "next load not from the cache (it could not be written)".to_owned(),
    };
    let memory = match loading["instance_memory_bytes"].as_f64() {
        Some(bytes) if loading["idle_instances"].as_u64() > Some(0) => format!(
            "{:.1} MiB of linear memory in the largest of {} warm instances",
            bytes / f64::from(1 << 20),
            loading["idle_instances"]
        ),
        _ => "no warm instance was kept".to_owned(),
    };
    format!(
        "policy: {:.0} kB component; first load {:.2} s (compiled, written to a compile cache), \
         {cached}; {memory}",
        loading["component_bytes"].as_f64().unwrap_or(0.0) / 1e3,
        seconds("compile_seconds"),
    )
}
