//! The wasm runtime policies run on: one engine with a pooling allocator,
//! the slots of its instance pool, and the thread that ticks its epochs.
//!
//! [`Runtime::shared`] is the process's default, made on first use. An
//! embedder that wants to size it, or to keep policies of separate parts
//! of a program apart, builds its own with [`Runtime::builder`] and hands
//! it to [`crate::Policy`] loading and to [`crate::SessionManagerBuilder::runtime`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::SetupError;
use crate::policy::Compiled;

/// The most instances of either kind a runtime takes: the pooling
/// allocator reserves address space and tables for each.
const MAX_COUNT: u32 = 1 << 16;

/// Sizes and timing of a [`Runtime`]; see [`Runtime::builder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeBuilder {
    max_instances: u32,
    max_idle_instances: u32,
    max_memory_bytes: usize,
    epoch_tick: Duration,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        Self {
            max_instances: 256,
            max_idle_instances: 256,
            max_memory_bytes: 256 << 20,
            epoch_tick: Duration::from_millis(10),
        }
    }
}

impl RuntimeBuilder {
    /// Policy calls that may run at once across every manager on this
    /// runtime; callers past it wait (up to [`crate::Limits::queue_timeout`]).
    /// Default 256, at most 65,536.
    pub fn max_instances(mut self, instances: u32) -> Self {
        self.max_instances = instances.clamp(1, MAX_COUNT);
        self
    }

    /// Warm instances kept idle across every manager, besides the running
    /// ones. Default 256, at most 65,536; 0 keeps none (every call
    /// instantiates).
    pub fn max_idle_instances(mut self, instances: u32) -> Self {
        self.max_idle_instances = instances.min(MAX_COUNT);
        self
    }

    /// The most linear memory any one instance may have; a manager's
    /// [`crate::Limits::memory_bytes`] is capped by it. Default 256 MiB.
    pub fn max_memory_bytes(mut self, bytes: usize) -> Self {
        self.max_memory_bytes = bytes;
        self
    }

    /// How often the epoch advances: the granularity of call time limits,
    /// and how often a busy policy yields to other tasks. Default 10 ms.
    pub fn epoch_tick(mut self, tick: Duration) -> Self {
        self.epoch_tick = tick.max(Duration::from_millis(1));
        self
    }

    /// Creates the engine and starts its epoch thread, which ends when the
    /// last clone of the runtime (and of every policy on it) is dropped.
    pub fn build(self) -> Result<Runtime, SetupError> {
        let mut pool = PoolingAllocationConfig::default();
        let instances = self.max_instances + self.max_idle_instances;
        // The setters cap both counts, so these products fit in a u32.
        // A component built by rustc holds a few core modules (the program
        // plus adapter shims), each its own core instance with tables. Only
        // running calls need a stack.
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 2)
            .total_tables(instances * 8)
            .total_stacks(self.max_instances)
            .max_memory_size(self.max_memory_bytes)
            // A new instance (fresh mode, or replacing a pooled one) dirties a
            // few pages of its slot; on release they are found with
            // PAGEMAP_SCAN (Linux 6.7+) and zeroed in place rather than
            // `madvise`d away and faulted back in: docs/PERFORMANCE.md.
            .linear_memory_keep_resident(64 << 10)
            .table_keep_resident(16 << 10)
            .pagemap_scan(Enabled::Auto);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)
            .map_err(|e| SetupError::Runtime(format!("cannot create the wasm engine: {e:#}")))?;
        let ticker = engine.weak();
        let tick = self.epoch_tick;
        std::thread::Builder::new()
            .name("dsession-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(tick);
                }
            })
            .map_err(|e| SetupError::Runtime(format!("cannot start the epoch thread: {e}")))?;
        Ok(Runtime(Arc::new(Shared {
            engine,
            slots: Arc::new(Semaphore::new(self.max_instances as usize)),
            idle: AtomicUsize::new(0),
            sizes: self,
            builtins: Default::default(),
        })))
    }
}

struct Shared {
    engine: Engine,
    /// One permit per running call.
    slots: Arc<Semaphore>,
    /// Idle instances across every manager's pool, at most
    /// `max_idle_instances`, so that running plus idle ones always fit in
    /// the pooling allocator.
    idle: AtomicUsize,
    sizes: RuntimeBuilder,
    /// The built-in policies, compiled on first use.
    builtins: [OnceLock<Compiled>; 2],
}

/// The wasm engine, its instance slots and its epoch ticker. Cloning is
/// cheap and shares them.
#[derive(Clone)]
pub struct Runtime(Arc<Shared>);

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("sizes", &self.0.sizes)
            .field("idle", &self.0.idle.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl PartialEq for Runtime {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Runtime {}

impl Runtime {
    /// Sizes for a runtime of one's own.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// The process's default runtime, built with [`RuntimeBuilder`]'s
    /// defaults on first use.
    pub fn shared() -> Result<Self, SetupError> {
        static SHARED: OnceLock<Runtime> = OnceLock::new();
        if let Some(runtime) = SHARED.get() {
            return Ok(runtime.clone());
        }
        let runtime = Self::builder().build()?;
        // Another thread may have won the race; keep one.
        Ok(SHARED.get_or_init(|| runtime).clone())
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.0.engine
    }

    pub(crate) fn slots(&self) -> &Arc<Semaphore> {
        &self.0.slots
    }

    pub(crate) fn max_memory_bytes(&self) -> usize {
        self.0.sizes.max_memory_bytes
    }

    /// Counts an instance as idle unless the runtime keeps enough already.
    pub(crate) fn admit_idle(&self) -> bool {
        let max = self.0.sizes.max_idle_instances as usize;
        if self.0.idle.fetch_add(1, Ordering::Relaxed) >= max {
            self.0.idle.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Counts `count` idle instances as gone.
    pub(crate) fn release_idle(&self, count: usize) {
        self.0.idle.fetch_sub(count, Ordering::Relaxed);
    }

    /// Built-in policy `index`, compiled on this runtime once.
    pub(crate) fn builtin(
        &self,
        index: usize,
        compile: impl FnOnce(&Engine) -> Result<Compiled, SetupError>,
    ) -> Result<Compiled, SetupError> {
        let slot = &self.0.builtins[index];
        if let Some(compiled) = slot.get() {
            return Ok(compiled.clone());
        }
        let compiled = compile(&self.0.engine)?;
        Ok(slot.get_or_init(|| compiled).clone())
    }
}
