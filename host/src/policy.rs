//! The wasm runtime: loads a policy component and runs calls in it.
//!
//! One [`Engine`] per process, with a pooling allocator and an epoch ticker.
//! A [`Policy`] is compiled and pre-instantiated once. A call runs in a warm
//! instance taken from its manager's [`pool`] (or, with
//! [`InstanceReuse::Fresh`], in a new one); an instance that trapped, ran
//! out of time or grew past a bound is never entered again, so a bad call
//! ends that call only.

mod pool;

use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker, Resource, ResourceTable, types::ComponentItem};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter,
    StoreLimits,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};

use crate::error::Error;
use crate::loader::UserLoader;
use crate::policy_config::{ConfigKey, DescribeIndices};
use crate::store::{self, Store};

pub(crate) use pool::{Call, Instances};

mod bindings {
    wasmtime::component::bindgen!({
        world: "policy",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:random": wasmtime_wasi::p2::bindings::random,
            "dsession:session/store.transaction": super::TransactionSlot,
        },
    });
}

use bindings::dsession::session::store as wit_store;
pub(crate) use bindings::dsession::session::types::{
    Error as WitError, IssuedToken as WitIssuedToken, Settings as WitSettings,
    TokenEntry as WitTokenEntry, User as WitUser, UserInfo as WitUserInfo,
};
use bindings::{Policy as PolicyBindings, PolicyIndices, PolicyPre};

/// The default policy, built from `guest/` by the build script.
const BUILTIN_POLICY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/dsession_policy.wasm"));

/// Instances that may run at once in this process; callers past that wait.
const MAX_INSTANCES: u32 = 256;
/// Warm instances kept idle across all managers, besides the running ones.
const MAX_IDLE_INSTANCES: u32 = 256;
/// The most linear memory any policy instance may have.
const MAX_MEMORY_BYTES: usize = 256 << 20;
/// How often the epoch advances: the granularity of call time limits.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Bytes of a policy's stderr kept to explain a trap.
const STDERR_CAPTURE: usize = 4096;

/// Per-call limits for a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time one call may take, store round trips included.
    pub call_timeout: Duration,
    /// Linear memory one call may use, at most 256 MiB.
    pub memory_bytes: usize,
    /// How long a call waits for a free instance slot before `Overloaded`.
    pub queue_timeout: Duration,
    /// Whether an instance serves more than one call.
    pub reuse: InstanceReuse,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(5),
            memory_bytes: 64 << 20,
            queue_timeout: Duration::from_secs(5),
            reuse: InstanceReuse::default(),
        }
    }
}

/// Whether a policy instance serves more than one call.
///
/// Either way a policy must not rely on state surviving from one call to
/// the next, nor on it being gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceReuse {
    /// A new instance for every call: nothing one call leaves in the
    /// instance's memory can reach another, at the cost of an instantiation
    /// per call.
    Fresh,
    /// Warm instances, each owned by one manager and its current policy,
    /// are reused. An instance is discarded, never entered again, after a
    /// trap, a time-out, a call that did not finish (its caller gave up), a
    /// write to stderr, a resource left open, linear memory past
    /// `max_memory_bytes`, or `max_calls` calls.
    Pooled {
        /// Calls one instance serves before it is replaced.
        max_calls: u32,
        /// Linear memory past which an instance is replaced after its call.
        max_memory_bytes: usize,
    },
}

impl Default for InstanceReuse {
    fn default() -> Self {
        Self::Pooled {
            max_calls: 10_000,
            max_memory_bytes: 8 << 20,
        }
    }
}

/// The process-wide engine and the slots of its instance pool.
struct Runtime {
    engine: Engine,
    /// One permit per running call.
    slots: Arc<Semaphore>,
    /// Idle instances across every manager's pool, at most
    /// `MAX_IDLE_INSTANCES`, so that running plus idle ones always fit in
    /// the pooling allocator.
    idle: AtomicUsize,
}

fn runtime() -> anyhow::Result<&'static Runtime> {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let mut pool = PoolingAllocationConfig::default();
    let instances = MAX_INSTANCES + MAX_IDLE_INSTANCES;
    // A component built by rustc holds a few core modules (the program
    // plus adapter shims), each its own core instance with tables. Only
    // running calls need a stack.
    pool.total_component_instances(instances)
        .total_core_instances(instances * 8)
        .total_memories(instances * 2)
        .total_tables(instances * 8)
        .total_stacks(MAX_INSTANCES)
        .max_memory_size(MAX_MEMORY_BYTES)
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
    let engine = anyhow_result(Engine::new(&config)).context("cannot create the wasm engine")?;
    let ticker = engine.weak();
    std::thread::Builder::new()
        .name("dsession-epoch".into())
        .spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .context("cannot start the epoch thread")?;
    let runtime = Runtime {
        engine,
        slots: Arc::new(Semaphore::new(MAX_INSTANCES as usize)),
        idle: AtomicUsize::new(0),
    };
    // Another thread may have won the race; either engine works, keep one.
    Ok(RUNTIME.get_or_init(|| runtime))
}

/// A transaction as the guest holds it; emptied by `commit`.
pub struct TransactionSlot(Option<Box<dyn store::Transaction>>);

/// What an instance can reach: its manager's store and loader, and a WASI
/// context that offers clocks and randomness but no files, sockets or
/// environment. Built once per instance.
pub(crate) struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    stderr: MemoryOutputPipe,
    store: Arc<dyn Store>,
    loader: Option<Arc<dyn UserLoader>>,
    /// When the running call must stop; set as each call starts.
    deadline: Instant,
    /// The operator's `[policy.config]`, read through `wasi:config/store`.
    config: Arc<WasiConfigVariables>,
}

/// The per-call memory limit, plus how much linear memory the instance
/// holds in all, to decide whether it is still worth reusing.
struct Limiter {
    limits: StoreLimits,
    memory_bytes: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_bytes += desired.saturating_sub(current);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl From<wit_store::SetCondition> for store::SetCondition {
    fn from(condition: wit_store::SetCondition) -> Self {
        match condition {
            wit_store::SetCondition::Always => Self::Always,
            wit_store::SetCondition::IfAbsent => Self::IfAbsent,
            wit_store::SetCondition::IfPresent => Self::IfPresent,
        }
    }
}

impl From<wit_store::ExpireCondition> for store::ExpireCondition {
    fn from(condition: wit_store::ExpireCondition) -> Self {
        match condition {
            wit_store::ExpireCondition::Always => Self::Always,
            wit_store::ExpireCondition::IfNone => Self::IfNone,
            wit_store::ExpireCondition::IfLater => Self::IfLater,
        }
    }
}

impl From<wit_store::Command> for store::Command {
    fn from(command: wit_store::Command) -> Self {
        use wit_store::Command as W;
        match command {
            W::Get(key) => Self::Get(key),
            W::Set(args) => Self::Set {
                key: args.key,
                value: args.value,
                ttl_seconds: args.ttl_seconds,
                condition: args.condition.into(),
            },
            W::Del(keys) => Self::Del(keys),
            W::Exists(keys) => Self::Exists(keys),
            W::Ttl(key) => Self::Ttl(key),
            W::Expire(args) => Self::Expire {
                key: args.key,
                seconds: args.seconds,
                condition: args.condition.into(),
            },
            W::HashSet(args) => Self::HashSet {
                key: args.key,
                fields: args.fields,
            },
            W::HashDelete(args) => Self::HashDelete {
                key: args.key,
                fields: args.fields,
            },
            W::HashGetAll(key) => Self::HashGetAll(key),
            W::HashExists(args) => Self::HashExists {
                key: args.key,
                field: args.field,
            },
            W::GetExpire(args) => Self::GetExpire {
                key: args.key,
                seconds: args.seconds,
            },
            W::HashGet(args) => Self::HashGet {
                key: args.key,
                field: args.field,
            },
        }
    }
}

impl From<store::Reply> for wit_store::Reply {
    fn from(reply: store::Reply) -> Self {
        match reply {
            store::Reply::Nil => Self::Nil,
            store::Reply::Ok => Self::Ok,
            store::Reply::Integer(n) => Self::Integer(n),
            store::Reply::Text(text) => Self::Text(text),
            store::Reply::Pairs(pairs) => Self::Pairs(pairs),
        }
    }
}

fn commands(commands: Vec<wit_store::Command>) -> Vec<store::Command> {
    commands.into_iter().map(Into::into).collect()
}

fn replies(replies: Vec<store::Reply>) -> Vec<wit_store::Reply> {
    replies.into_iter().map(Into::into).collect()
}

fn wit_store_error(error: store::StoreError) -> WitError {
    if error.is_corrupt() {
        WitError::Corrupt(error.to_string())
    } else {
        WitError::Store(error.to_string())
    }
}

impl bindings::dsession::session::types::Host for CallState {}

impl wit_store::Host for CallState {
    async fn batch(
        &mut self,
        commands_: Vec<wit_store::Command>,
    ) -> wasmtime::Result<Result<Vec<wit_store::Reply>, WitError>> {
        let result = self.store.batch(commands(commands_)).await;
        Ok(result.map(replies).map_err(wit_store_error))
    }

    async fn atomic(
        &mut self,
        commands_: Vec<wit_store::Command>,
    ) -> wasmtime::Result<Result<Vec<wit_store::Reply>, WitError>> {
        let result = self.store.atomic(commands(commands_)).await;
        Ok(result.map(replies).map_err(wit_store_error))
    }

    async fn watch(
        &mut self,
        keys: Vec<String>,
        reads: Vec<wit_store::Command>,
    ) -> wasmtime::Result<Result<(Resource<TransactionSlot>, Vec<wit_store::Reply>), WitError>>
    {
        match self.store.watch(keys, commands(reads)).await {
            Ok((transaction, read)) => {
                let handle = self.table.push(TransactionSlot(Some(transaction)))?;
                Ok(Ok((handle, replies(read))))
            }
            Err(error) => Ok(Err(wit_store_error(error))),
        }
    }
}

impl wit_store::HostTransaction for CallState {
    async fn commit(
        &mut self,
        transaction: Resource<TransactionSlot>,
        commands_: Vec<wit_store::Command>,
    ) -> wasmtime::Result<Result<Option<Vec<wit_store::Reply>>, WitError>> {
        let Some(transaction) = self.table.get_mut(&transaction)?.0.take() else {
            return Ok(Err(WitError::Store("transaction already committed".into())));
        };
        let result = transaction.commit(commands(commands_)).await;
        Ok(result
            .map(|done| done.map(replies))
            .map_err(wit_store_error))
    }

    async fn drop(&mut self, transaction: Resource<TransactionSlot>) -> wasmtime::Result<()> {
        self.table.delete(transaction)?;
        Ok(())
    }
}

impl bindings::dsession::session::user_loader::Host for CallState {
    async fn load(&mut self, user_id: String) -> wasmtime::Result<Result<Option<String>, String>> {
        let Some(loader) = &self.loader else {
            return Ok(Ok(None));
        };
        Ok(match loader.load(&user_id).await {
            Ok(detail) => Ok(detail.map(|detail| detail.to_string())),
            Err(error) => Err(error.to_string()),
        })
    }
}

fn anyhow_result<T>(result: wasmtime::Result<T>) -> anyhow::Result<T> {
    result.map_err(anyhow::Error::from)
}

/// WASI (clocks and randomness are all a policy gets) plus the host's
/// `store` and `user-loader`.
fn linker(engine: &Engine) -> anyhow::Result<Linker<CallState>> {
    type Host = wasmtime::component::HasSelf<CallState>;
    let mut linker = Linker::<CallState>::new(engine);
    anyhow_result(wasmtime_wasi::p2::add_to_linker_async(&mut linker))?;
    anyhow_result(
        bindings::dsession::session::types::add_to_linker::<_, Host>(&mut linker, |s| s),
    )?;
    anyhow_result(wit_store::add_to_linker::<_, Host>(&mut linker, |s| s))?;
    anyhow_result(bindings::dsession::session::user_loader::add_to_linker::<
        _,
        Host,
    >(&mut linker, |s| s))?;
    // Always provided, so that a policy may read settings or not.
    anyhow_result(wasmtime_wasi_config::add_to_linker(&mut linker, |s| {
        WasiConfig::from(&*s.config)
    }))?;
    Ok(linker)
}

/// A compiled, validated policy component. Cloning it is cheap.
#[derive(Clone)]
pub struct Policy {
    component: Component,
    pre: PolicyPre<CallState>,
    indices: PolicyIndices,
    /// Set when the component exports `describe`.
    describe: Option<DescribeIndices>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").finish_non_exhaustive()
    }
}

impl Policy {
    /// The default policy: gosession's layout. Compiled once per process.
    pub fn builtin() -> anyhow::Result<Self> {
        static BUILTIN: OnceLock<Policy> = OnceLock::new();
        if let Some(policy) = BUILTIN.get() {
            return Ok(policy.clone());
        }
        let policy =
            Self::from_bytes(BUILTIN_POLICY).context("the built-in policy does not load")?;
        Ok(BUILTIN.get_or_init(|| policy).clone())
    }

    /// The built-in policy's component, e.g. to write it to a file and
    /// start a custom policy from it.
    pub fn builtin_component() -> &'static [u8] {
        BUILTIN_POLICY
    }

    /// Loads a policy component from a `.wasm` file.
    pub fn from_file(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read policy {}", path.display()))?;
        Self::from_bytes(&bytes).with_context(|| format!("policy {} does not load", path.display()))
    }

    /// Compiles a policy component and checks it against the `policy` world:
    /// it may import only what the host provides and must export
    /// `token-manage` with the right types.
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        let engine = &runtime()?.engine;
        let component =
            anyhow_result(Component::new(engine, bytes)).context("not a valid wasm component")?;
        let linker = linker(engine).context("cannot link the host interfaces")?;
        let instance_pre = anyhow_result(linker.instantiate_pre(&component))
            .context("the component imports something the host does not provide")?;
        let describe = DescribeIndices::new(&instance_pre).ok();
        let indices = anyhow_result(PolicyIndices::new(&instance_pre))
            .context("the component does not export the policy world")?;
        let pre = anyhow_result(PolicyPre::new(instance_pre))
            .context("the component does not export the policy world")?;
        Ok(Self {
            component,
            pre,
            indices,
            describe,
        })
    }

    /// What the component exports, as `interface: function, …` lines.
    pub fn describe_exports(&self) -> Vec<String> {
        let engine = self.component.engine();
        self.component
            .component_type()
            .exports(engine)
            .map(|(name, item)| match item.ty {
                ComponentItem::ComponentInstance(instance) => {
                    let functions: Vec<&str> = instance
                        .exports(engine)
                        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
                        .map(|(name, _)| name)
                        .collect();
                    format!("{name}: {}", functions.join(", "))
                }
                _ => name.to_owned(),
            })
            .collect()
    }

    /// The settings the policy reads through `wasi:config/store`, as it
    /// describes them; None when it exports no `describe` interface.
    pub async fn config_keys(&self) -> Result<Option<Vec<ConfigKey>>, Error> {
        let Some(describe) = &self.describe else {
            return Ok(None);
        };
        let instances = Instances::new(
            self.clone(),
            Limits {
                reuse: InstanceReuse::Fresh,
                ..Limits::default()
            },
            Arc::new(store::MemoryStore::new()),
            None,
            Arc::default(),
        );
        let mut call = Call::start(Arc::new(instances)).await?;
        let keys = call.config_keys(describe).await;
        call.finish(keys.map(Ok))
            .map(|keys| Some(keys.into_iter().map(ConfigKey::from).collect()))
    }

    /// What the component imports.
    pub fn describe_imports(&self) -> Vec<String> {
        let engine = self.component.engine();
        self.component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            .collect()
    }
}

impl From<WitError> for Error {
    fn from(error: WitError) -> Self {
        match error {
            WitError::InvalidArgument(message) => Self::InvalidArgument(message),
            WitError::NotFound => Self::NotFound,
            WitError::Store(message) => Self::Store(message),
            WitError::Loader(message) => Self::Loader(message),
            WitError::Conflict(message) => Self::Conflict(message),
            WitError::Corrupt(message) => Self::Corrupt(message),
        }
    }
}
