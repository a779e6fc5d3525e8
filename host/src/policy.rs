//! The wasm runtime: loads a policy component and runs one call in it.
//!
//! One [`Engine`] per process, with a pooling allocator and an epoch ticker.
//! A [`Policy`] is compiled and pre-instantiated once; every call gets a
//! fresh [`wasmtime::Store`] and instance, so a trap, a time-out or a
//! memory blow-up ends that call only.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{Component, Linker, Resource, ResourceTable, types::ComponentItem};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, StoreLimits,
    StoreLimitsBuilder, UpdateDeadline,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};

use crate::error::Error;
use crate::loader::UserLoader;
use crate::policy_config::{ConfigKey, DescribeIndices};
use crate::store::{self, Store};

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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(5),
            memory_bytes: 64 << 20,
            queue_timeout: Duration::from_secs(5),
        }
    }
}

/// The process-wide engine and the slots of its instance pool.
struct Runtime {
    engine: Engine,
    slots: Arc<Semaphore>,
}

fn runtime() -> anyhow::Result<&'static Runtime> {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let mut pool = PoolingAllocationConfig::default();
    // A component built by rustc holds a few core modules (the program
    // plus adapter shims), each its own core instance with tables.
    pool.total_component_instances(MAX_INSTANCES)
        .total_core_instances(MAX_INSTANCES * 8)
        .total_memories(MAX_INSTANCES * 2)
        .total_tables(MAX_INSTANCES * 8)
        .total_stacks(MAX_INSTANCES)
        .max_memory_size(MAX_MEMORY_BYTES);
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
    };
    // Another thread may have won the race; either engine works, keep one.
    Ok(RUNTIME.get_or_init(|| runtime))
}

/// A transaction as the guest holds it; emptied by `commit`.
pub struct TransactionSlot(Option<Box<dyn store::Transaction>>);

/// What one call can reach: the store, the loader, and a WASI context that
/// offers clocks and randomness but no files, sockets or environment.
pub(crate) struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    stderr: MemoryOutputPipe,
    store: Arc<dyn Store>,
    loader: Option<Arc<dyn UserLoader>>,
    /// The operator's `[policy.config]`, read through `wasi:config/store`.
    config: Arc<WasiConfigVariables>,
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
        let mut call = Call::start(
            self,
            &Limits::default(),
            Arc::new(store::MemoryStore::new()),
            None,
            Arc::default(),
        )
        .await?;
        let described = anyhow_result(describe.load(&mut call.store, &call.instance))
            .map_err(|e| Error::Policy(format!("cannot load the describe export: {e:#}")))?;
        let keys = described
            .dsession_session_describe()
            .call_config_keys(&mut call.store)
            .await;
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

/// One call's instance, ready to run one export.
pub(crate) struct Call {
    store: wasmtime::Store<CallState>,
    bindings: PolicyBindings,
    instance: wasmtime::component::Instance,
    timeout: Duration,
    _slot: OwnedSemaphorePermit,
}

impl Call {
    /// Instantiates `policy` for one call.
    pub(crate) async fn start(
        policy: &Policy,
        limits: &Limits,
        store: Arc<dyn Store>,
        loader: Option<Arc<dyn UserLoader>>,
        config: Arc<WasiConfigVariables>,
    ) -> Result<Self, Error> {
        let runtime = runtime().map_err(|e| Error::Policy(format!("{e:#}")))?;
        let slot = tokio::time::timeout(
            limits.queue_timeout,
            Arc::clone(&runtime.slots).acquire_owned(),
        )
        .await
        .map_err(|_| {
            Error::Overloaded(format!(
                "no policy instance came free within {:?}",
                limits.queue_timeout
            ))
        })?
        .map_err(|_| Error::Overloaded("the policy runtime is shutting down".into()))?;
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        let state = CallState {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes.min(MAX_MEMORY_BYTES))
                .trap_on_grow_failure(true)
                .build(),
            stderr,
            store,
            loader,
            config,
        };
        let mut wasm_store = wasmtime::Store::new(&runtime.engine, state);
        wasm_store.limiter(|state| &mut state.limits);
        // Every tick, a running policy yields to the executor (a busy policy
        // never starves other tasks) and is stopped once past its time.
        let deadline = Instant::now() + limits.call_timeout;
        wasm_store.set_epoch_deadline(1);
        wasm_store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        let instantiated = async {
            let instance = policy
                .pre
                .instance_pre()
                .instantiate_async(&mut wasm_store)
                .await?;
            let bindings = policy.indices.load(&mut wasm_store, &instance)?;
            Ok::<_, wasmtime::Error>((instance, bindings))
        };
        let (instance, bindings) = instantiated
            .await
            .map_err(|e| Error::Policy(format!("cannot instantiate the policy: {e:#}")))?;
        Ok(Self {
            store: wasm_store,
            bindings,
            instance,
            timeout: limits.call_timeout,
            _slot: slot,
        })
    }

    /// The export to call and the store to call it in.
    pub(crate) fn parts(
        &mut self,
    ) -> (
        &bindings::exports::dsession::session::token_manage::Guest,
        &mut wasmtime::Store<CallState>,
    ) {
        (
            self.bindings.dsession_session_token_manage(),
            &mut self.store,
        )
    }

    /// Maps what the call returned: traps become [`Error::Policy`], the
    /// policy's own errors their [`Error`] case.
    pub(crate) fn finish<T>(
        self,
        outcome: wasmtime::Result<Result<T, WitError>>,
    ) -> Result<T, Error> {
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(error.into()),
            Err(trap) => {
                let reason = match trap.downcast_ref::<wasmtime::Trap>() {
                    Some(wasmtime::Trap::Interrupt) => {
                        format!("the policy ran past its time limit of {:?}", self.timeout)
                    }
                    _ => format!("the policy trapped: {trap:#}"),
                };
                let stderr = self.store.data().stderr.contents();
                let stderr = String::from_utf8_lossy(&stderr);
                let stderr = stderr.trim();
                Err(Error::Policy(if stderr.is_empty() {
                    reason
                } else {
                    format!("{reason}; its stderr: {stderr}")
                }))
            }
        }
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
