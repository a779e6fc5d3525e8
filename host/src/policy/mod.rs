//! The policy runtime: components loaded and checked against the `policy`
//! world, and the [`Runtime`] whose instances run them.
//!
//! A [`Policy`] is compiled and pre-instantiated once. A call runs in a warm
//! instance taken from its manager's [`pool`] (or, with
//! [`InstanceReuse::Fresh`], in a new one); an instance that trapped, ran
//! out of time or grew past a bound is never entered again, so a bad call
//! ends that call only.
//!
//! The rooms, each using only those listed before it: [`limits`] (what a
//! call may use), [`describe`] (a policy's own settings), [`convert`]
//! (WIT types to the library's), [`host`] (the instance state, the
//! host's imports, the linker, the compiled component), [`engine`] (the
//! wasm engine and its slots), [`pool`] (warm instances and the one
//! `call`), this module (policies, built-ins, the runtime), and
//! [`slot_layout`] (the Redis Cluster check, which runs a policy).

pub(crate) mod convert;
pub(crate) mod describe;
mod engine;
pub(crate) mod host;
pub(crate) mod limits;
pub(crate) mod pool;
#[cfg(feature = "redis")]
pub(crate) mod slot_layout;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use self::describe::ConfigKey;
pub use self::engine::CompileCacheStats;
use self::engine::{Engine, MAX_COUNT};
use self::host::{Compiled, Imports};
use self::limits::{InstanceReuse, Limits};
use self::pool::Instances;
use crate::error::{Error, SetupError};
use crate::loader::UserLoader;
use crate::store::{MemoryStore, Store};

/// A policy built into the library: component bytes from
/// `dsession-builtin-policies`, which holds them built and checked in.
struct Builtin {
    name: &'static str,
    component: &'static [u8],
}

/// The default policy: gosession's layout.
const DEFAULT: Builtin = Builtin {
    name: "default",
    component: dsession_builtin_policies::DEFAULT,
};

/// Every built-in policy.
const BUILTINS: [Builtin; 2] = [
    DEFAULT,
    Builtin {
        name: "hardened",
        component: dsession_builtin_policies::HARDENED,
    },
];

/// The names [`Policy::builtin_named`] knows: `default` (gosession's
/// layout) and `hardened` (hashed tokens, idle and absolute expiry, at most
/// N sessions per user, O(1) revoke-all, one hash tag per user).
pub const BUILTIN_POLICIES: [&str; BUILTINS.len()] = {
    let mut names = [""; BUILTINS.len()];
    let mut i = 0;
    while i < BUILTINS.len() {
        names[i] = BUILTINS[i].name;
        i += 1;
    }
    names
};

/// A compiled, validated policy component on a [`Runtime`]. Cloning it is
/// cheap.
#[derive(Clone)]
pub struct Policy {
    compiled: Compiled,
    runtime: Runtime,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").finish_non_exhaustive()
    }
}

impl Policy {
    /// The default policy, gosession's layout, on the shared runtime.
    /// Compiled once per runtime.
    pub fn builtin() -> Result<Self, SetupError> {
        Self::builtin_named(DEFAULT.name)
    }

    /// The built-in policy's component, e.g. to write it to a file and
    /// start a custom policy from it.
    pub fn builtin_component() -> &'static [u8] {
        DEFAULT.component
    }

    /// A built-in policy by name (see [`BUILTIN_POLICIES`]) on the shared
    /// runtime; each is compiled once per runtime.
    pub fn builtin_named(name: &str) -> Result<Self, SetupError> {
        Runtime::shared()?.builtin_policy(name)
    }

    /// A built-in policy's component by name, e.g. to write it to a file
    /// and swap it in by reloading.
    pub fn builtin_named_component(name: &str) -> Option<&'static [u8]> {
        BUILTINS
            .iter()
            .find(|builtin| builtin.name == name)
            .map(|builtin| builtin.component)
    }

    /// The built-in policy when `path` is one of [`BUILTIN_POLICIES`],
    /// else the component in that file (write `./hardened` for a file of
    /// that name), on the shared runtime.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, SetupError> {
        Runtime::shared()?.load_policy(path)
    }

    /// Loads a policy component from a `.wasm` file on the shared runtime.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SetupError> {
        Runtime::shared()?.policy_from_file(path)
    }

    /// Compiles a policy component on the shared runtime and checks it
    /// against the `policy` world: it may import only what the host
    /// provides and must export `token-manage` with the right types.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SetupError> {
        Runtime::shared()?.policy_from_bytes(bytes)
    }

    /// The runtime the policy was compiled on, whose instances run it.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// What the component exports, as `interface: function, …` lines.
    pub fn describe_exports(&self) -> Vec<String> {
        describe::exports(self.compiled.component())
    }

    /// What the component imports.
    pub fn describe_imports(&self) -> Vec<String> {
        describe::imports(self.compiled.component())
    }

    /// The settings the policy reads through `wasi:config/store`, as it
    /// describes them; None when it exports no `describe` interface.
    pub async fn config_keys(&self) -> Result<Option<Vec<ConfigKey>>, Error> {
        if !self.compiled.describes() {
            return Ok(None);
        }
        let fresh = Limits {
            reuse: InstanceReuse::Fresh,
            ..Limits::default()
        };
        let instances = self.instances(fresh, Arc::new(MemoryStore::new()), None, &BTreeMap::new());
        let keys = instances
            .call(async |exports, store| match exports.describe(store)? {
                Some(described) => described
                    .dsession_session_describe()
                    .call_config_keys(store)
                    .await
                    .map(Ok),
                None => Ok(Ok(Vec::new())),
            })
            .await?;
        Ok(Some(keys.into_iter().map(ConfigKey::from).collect()))
    }

    /// A pool of instances of this policy, none made yet, that run on
    /// `store` and `loader` and read `config` through `wasi:config`.
    pub(crate) fn instances(
        &self,
        limits: Limits,
        store: Arc<dyn Store>,
        loader: Option<Arc<dyn UserLoader>>,
        config: &BTreeMap<String, String>,
    ) -> Instances {
        Instances::new(
            Arc::clone(&self.runtime.0.engine),
            self.compiled.clone(),
            limits,
            Imports {
                store,
                loader,
                config: describe::variables(config),
            },
        )
    }
}

/// Sizes, timing and the compile cache of a [`Runtime`]; see
/// [`Runtime::builder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeBuilder {
    max_instances: u32,
    max_idle_instances: u32,
    max_memory_bytes: usize,
    epoch_tick: Duration,
    compile_cache: Option<PathBuf>,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        Self {
            max_instances: 256,
            max_idle_instances: 256,
            max_memory_bytes: 256 << 20,
            epoch_tick: Duration::from_millis(10),
            compile_cache: None,
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

    /// Keeps each compiled component in `dir` (made if missing; a relative
    /// path is taken from the current directory), so that the next runtime
    /// with the same wasmtime and settings loads it in a fraction of the
    /// compile time: once per machine rather than once per process. Off by
    /// default. What is in `dir` is loaded as machine code, so it must be
    /// writable only by this process's user, like the binary itself. A file
    /// that does not match is compiled again and replaced.
    pub fn compile_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.compile_cache = Some(dir.into());
        self
    }

    /// Creates the engine and starts its epoch thread, which ends when the
    /// last clone of the runtime (and of every policy on it) is dropped.
    pub fn build(self) -> Result<Runtime, SetupError> {
        let engine = Engine::start(
            self.max_instances,
            self.max_idle_instances,
            self.max_memory_bytes,
            self.epoch_tick,
            self.compile_cache.as_deref(),
        )?;
        Ok(Runtime(Arc::new(Shared {
            engine: Arc::new(engine),
            sizes: self,
            builtins: Default::default(),
        })))
    }
}

struct Shared {
    engine: Arc<Engine>,
    sizes: RuntimeBuilder,
    /// The built-in policies, each compiled on first use.
    builtins: [OnceLock<Compiled>; BUILTINS.len()],
}

/// The wasm runtime policies run on: one engine with a pooling allocator,
/// the slots of its instance pool, and the thread that ticks its epochs.
///
/// [`Runtime::shared`] is the process's default, made on first use. An
/// embedder that wants to size it, or to keep policies of separate parts
/// of a program apart, builds its own with [`Runtime::builder`] and hands
/// it to [`Policy`] loading and to [`crate::SessionManagerBuilder::runtime`].
/// Cloning is cheap and shares it all.
#[derive(Clone)]
pub struct Runtime(Arc<Shared>);

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("sizes", &self.0.sizes)
            .field("idle", &self.0.engine.idle())
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

    /// Loads of the compile cache so far, if the runtime has one.
    pub fn compile_cache_stats(&self) -> Option<CompileCacheStats> {
        self.0.engine.compile_cache_stats()
    }

    /// Compiles a policy component on this runtime; see [`Policy::from_bytes`].
    pub fn policy_from_bytes(&self, bytes: &[u8]) -> Result<Policy, SetupError> {
        Ok(Policy {
            compiled: Compiled::new(self.0.engine.wasm(), bytes)?,
            runtime: self.clone(),
        })
    }

    /// Loads a policy component from a `.wasm` file on this runtime.
    pub fn policy_from_file(&self, path: impl AsRef<Path>) -> Result<Policy, SetupError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| {
            SetupError::Policy(format!("cannot read policy {}: {e}", path.display()))
        })?;
        self.policy_from_bytes(&bytes).map_err(|e| {
            SetupError::Policy(format!("policy {} does not load: {e}", path.display()))
        })
    }

    /// A built-in policy by name (see [`BUILTIN_POLICIES`]), compiled on
    /// this runtime once.
    pub fn builtin_policy(&self, name: &str) -> Result<Policy, SetupError> {
        let index = BUILTINS
            .iter()
            .position(|builtin| builtin.name == name)
            .ok_or_else(|| {
                SetupError::Policy(format!(
                    "no built-in policy is named {name:?}; there are {}",
                    BUILTIN_POLICIES.join(" and ")
                ))
            })?;
        let slot = &self.0.builtins[index];
        let compiled = match slot.get() {
            Some(compiled) => compiled.clone(),
            None => {
                let compiled = Compiled::new(self.0.engine.wasm(), BUILTINS[index].component)
                    .map_err(|e| {
                        SetupError::Policy(format!("the built-in {name} policy does not load: {e}"))
                    })?;
                slot.get_or_init(|| compiled).clone()
            }
        };
        Ok(Policy {
            compiled,
            runtime: self.clone(),
        })
    }

    /// A built-in policy when `path` is one of [`BUILTIN_POLICIES`], else
    /// the component in that file; see [`Policy::load`].
    pub fn load_policy(&self, path: impl AsRef<Path>) -> Result<Policy, SetupError> {
        let path = path.as_ref();
        match path.to_str() {
            Some(name) if BUILTIN_POLICIES.contains(&name) => self.builtin_policy(name),
            _ => self.policy_from_file(path),
        }
    }
}
