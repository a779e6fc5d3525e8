//! The wasm engine policies run on: a pooling allocator sized for the
//! runtime's instances, the compile cache if any, the slots that bound the
//! calls running at once, the count of idle instances, and the thread that
//! ticks the epoch.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{
    Cache, CacheConfig, Config, Enabled, InstanceAllocationStrategy, PoolingAllocationConfig,
};

use crate::error::{Error, SetupError};

/// The most instances of either kind a runtime takes: the pooling
/// allocator reserves address space and tables for each.
pub(crate) const MAX_COUNT: u32 = 1 << 16;

/// The engine and the bounds every manager on it shares.
pub(crate) struct Engine {
    wasm: wasmtime::Engine,
    /// One permit per running call.
    slots: Arc<Semaphore>,
    /// Idle instances across every manager's pool, at most `max_idle`, so
    /// that running plus idle ones always fit in the pooling allocator.
    idle: AtomicUsize,
    max_idle: usize,
    max_memory_bytes: usize,
    /// The compile cache the engine reads and writes, kept for its counts.
    cache: Option<Cache>,
}

/// What a runtime's compile cache has served; see
/// [`crate::Runtime::compile_cache_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileCacheStats {
    /// Components loaded from the cache instead of compiled.
    pub hits: usize,
    /// Components compiled and written to the cache.
    pub misses: usize,
}

impl Engine {
    /// Creates the engine for `max_instances` running and
    /// `max_idle_instances` idle instances (each at most [`MAX_COUNT`]) of
    /// at most `max_memory_bytes`, compiling through the cache in
    /// `compile_cache` if one is named, and starts its epoch thread, which
    /// ends when the last clone of the wasm engine is dropped.
    pub(crate) fn start(
        max_instances: u32,
        max_idle_instances: u32,
        max_memory_bytes: usize,
        epoch_tick: Duration,
        compile_cache: Option<&Path>,
    ) -> Result<Self, SetupError> {
        let mut pool = PoolingAllocationConfig::default();
        let instances = max_instances + max_idle_instances;
        // Both counts are capped, so these products fit in a u32.
        // A component built by rustc holds a few core modules (the program
        // plus adapter shims), each its own core instance with tables. A
        // store keeps the fiber stack of its last call for the next one, so
        // an idle instance holds a stack as a running one does.
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 2)
            .total_tables(instances * 8)
            .total_stacks(instances)
            .max_memory_size(max_memory_bytes)
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
        let cache = compile_cache.map(open_cache).transpose()?;
        config.cache(cache.clone());
        let wasm = wasmtime::Engine::new(&config)
            .map_err(|e| SetupError::Runtime(format!("cannot create the wasm engine: {e:#}")))?;
        let ticker = wasm.weak();
        std::thread::Builder::new()
            .name("dsession-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(epoch_tick);
                }
            })
            .map_err(|e| SetupError::Runtime(format!("cannot start the epoch thread: {e}")))?;
        Ok(Self {
            wasm,
            slots: Arc::new(Semaphore::new(max_instances as usize)),
            idle: AtomicUsize::new(0),
            max_idle: max_idle_instances as usize,
            max_memory_bytes,
            cache,
        })
    }

    /// Loads of the compile cache so far, if there is one.
    pub(crate) fn compile_cache_stats(&self) -> Option<CompileCacheStats> {
        self.cache.as_ref().map(|cache| CompileCacheStats {
            hits: cache.cache_hits(),
            misses: cache.cache_misses(),
        })
    }

    /// The wasm engine, to compile components on.
    pub(crate) fn wasm(&self) -> &wasmtime::Engine {
        &self.wasm
    }

    /// The most linear memory any one instance may have.
    pub(crate) fn max_memory_bytes(&self) -> usize {
        self.max_memory_bytes
    }

    /// A slot for one running call, waiting up to `queue_timeout` for one
    /// to come free.
    pub(crate) async fn slot(
        &self,
        queue_timeout: Duration,
    ) -> Result<OwnedSemaphorePermit, Error> {
        if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(slot);
        }
        tokio::time::timeout(queue_timeout, Arc::clone(&self.slots).acquire_owned())
            .await
            .map_err(|_| {
                Error::Overloaded(format!(
                    "no policy instance came free within {queue_timeout:?}"
                ))
            })?
            .map_err(|_| Error::Overloaded("the policy runtime is shutting down".into()))
    }

    /// Idle instances across every manager now.
    pub(crate) fn idle(&self) -> usize {
        self.idle.load(Ordering::Relaxed)
    }

    /// Counts an instance as idle unless the engine keeps enough already.
    pub(crate) fn admit_idle(&self) -> bool {
        if self.idle.fetch_add(1, Ordering::Relaxed) >= self.max_idle {
            self.idle.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Counts `count` idle instances as gone.
    pub(crate) fn release_idle(&self, count: usize) {
        self.idle.fetch_sub(count, Ordering::Relaxed);
    }
}

/// wasmtime's compile cache in `dir`, made if missing. Its files are
/// compressed and named by a hash of the component, the wasmtime version
/// and the engine's settings; its worker thread trims the directory past
/// its default bounds (65,536 files, 512 MiB).
fn open_cache(dir: &Path) -> Result<Cache, SetupError> {
    let failed = |e: &dyn std::fmt::Display| {
        SetupError::Runtime(format!(
            "cannot use {} as the compile cache: {e}",
            dir.display()
        ))
    };
    let dir = std::path::absolute(dir).map_err(|e| failed(&e))?;
    let mut config = CacheConfig::new();
    config.with_directory(dir);
    Cache::new(config).map_err(|e| failed(&format!("{e:#}")))
}
