//! A policy component: loaded, checked against the `policy` world, and
//! run in instances of a [`Runtime`].
//!
//! A [`Policy`] is compiled and pre-instantiated once. A call runs in a warm
//! instance taken from its manager's [`pool`] (or, with
//! [`InstanceReuse::Fresh`], in a new one); an instance that trapped, ran
//! out of time or grew past a bound is never entered again, so a bad call
//! ends that call only.

mod pool;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, Resource, ResourceTable, types::ComponentItem};
use wasmtime::{Engine, ResourceLimiter, StoreLimits};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};

use crate::error::{Error, SetupError};
use crate::loader::UserLoader;
use crate::policy_config::{ConfigKey, DescribeIndices};
use crate::runtime::Runtime;
use crate::store::{self, Store};

pub(crate) use pool::{Call, Instances};

use crate::wit::store as wit_store;
pub(crate) use crate::wit::types::{
    Error as WitError, IssuedToken as WitIssuedToken, Settings as WitSettings,
    TokenEntry as WitTokenEntry, User as WitUser, UserInfo as WitUserInfo,
};
use crate::wit::{Policy as PolicyBindings, PolicyIndices, PolicyPre};

/// The default policy, built from `guest/` by the build script.
pub(crate) const BUILTIN_POLICY: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/dsession_policy.wasm"));

/// Bytes of a policy's stderr kept to explain a trap.
const STDERR_CAPTURE: usize = 4096;

/// Per-call limits for a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time one call may take, store round trips included.
    pub call_timeout: Duration,
    /// Linear memory one call may use, at most the runtime's
    /// [`crate::RuntimeBuilder::max_memory_bytes`].
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

/// A transaction as the guest holds it; emptied by `commit`.
struct TransactionSlot(Option<Box<dyn store::Transaction>>);

/// The table entry behind the guest's handle: the generated resource type
/// has no values, so the table holds the slot under the handle's number.
fn slot(handle: &Resource<wit_store::Transaction>) -> Resource<TransactionSlot> {
    if handle.owned() {
        Resource::new_own(handle.rep())
    } else {
        Resource::new_borrow(handle.rep())
    }
}

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

fn wit_store_error(error: store::StoreError) -> WitError {
    if error.is_corrupt() {
        WitError::Corrupt(error.to_string())
    } else {
        WitError::Store(error.to_string())
    }
}

impl crate::wit::types::Host for CallState {}

impl wit_store::Host for CallState {
    async fn batch(
        &mut self,
        commands: Vec<wit_store::Command>,
    ) -> wasmtime::Result<Result<Vec<wit_store::Reply>, WitError>> {
        Ok(self.store.batch(commands).await.map_err(wit_store_error))
    }

    async fn atomic(
        &mut self,
        commands: Vec<wit_store::Command>,
    ) -> wasmtime::Result<Result<Vec<wit_store::Reply>, WitError>> {
        Ok(self.store.atomic(commands).await.map_err(wit_store_error))
    }

    async fn watch(
        &mut self,
        keys: Vec<String>,
        reads: Vec<wit_store::Command>,
    ) -> wasmtime::Result<Result<(Resource<wit_store::Transaction>, Vec<wit_store::Reply>), WitError>>
    {
        match self.store.watch(keys, reads).await {
            Ok((transaction, read)) => {
                let held = self.table.push(TransactionSlot(Some(transaction)))?;
                Ok(Ok((Resource::new_own(held.rep()), read)))
            }
            Err(error) => Ok(Err(wit_store_error(error))),
        }
    }
}

impl wit_store::HostTransaction for CallState {
    async fn commit(
        &mut self,
        transaction: Resource<wit_store::Transaction>,
        commands: Vec<wit_store::Command>,
    ) -> wasmtime::Result<Result<Option<Vec<wit_store::Reply>>, WitError>> {
        let Some(transaction) = self.table.get_mut(&slot(&transaction))?.0.take() else {
            return Ok(Err(WitError::Store("transaction already committed".into())));
        };
        Ok(transaction.commit(commands).await.map_err(wit_store_error))
    }

    async fn drop(
        &mut self,
        transaction: Resource<wit_store::Transaction>,
    ) -> wasmtime::Result<()> {
        self.table.delete(slot(&transaction))?;
        Ok(())
    }
}

impl crate::wit::user_loader::Host for CallState {
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

/// WASI (clocks and randomness are all a policy gets) plus the host's
/// `store` and `user-loader`.
fn linker(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    type Host = wasmtime::component::HasSelf<CallState>;
    let mut linker = Linker::<CallState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    crate::wit::types::add_to_linker::<_, Host>(&mut linker, |s| s)?;
    wit_store::add_to_linker::<_, Host>(&mut linker, |s| s)?;
    crate::wit::user_loader::add_to_linker::<_, Host>(&mut linker, |s| s)?;
    // Always provided, so that a policy may read settings or not.
    wasmtime_wasi_config::add_to_linker(&mut linker, |s| WasiConfig::from(&*s.config))?;
    Ok(linker)
}

/// A component compiled and linked on one engine.
#[derive(Clone)]
pub(crate) struct Compiled {
    component: Component,
    pre: PolicyPre<CallState>,
    indices: PolicyIndices,
    /// Set when the component exports `describe`.
    describe: Option<DescribeIndices>,
}

impl Compiled {
    /// Compiles a policy component and checks it against the `policy`
    /// world: it may import only what the host provides and must export
    /// `token-manage` with the right types.
    pub(crate) fn new(engine: &Engine, bytes: &[u8]) -> Result<Self, SetupError> {
        let failed = |what: &str, e: wasmtime::Error| SetupError::Policy(format!("{what}: {e:#}"));
        let component =
            Component::new(engine, bytes).map_err(|e| failed("not a valid wasm component", e))?;
        let linker = linker(engine).map_err(|e| failed("cannot link the host interfaces", e))?;
        let instance_pre = linker.instantiate_pre(&component).map_err(|e| {
            failed(
                "the component imports something the host does not provide",
                e,
            )
        })?;
        let describe = DescribeIndices::new(&instance_pre).ok();
        let indices = PolicyIndices::new(&instance_pre)
            .map_err(|e| failed("the component does not export the policy world", e))?;
        let pre = PolicyPre::new(instance_pre)
            .map_err(|e| failed("the component does not export the policy world", e))?;
        Ok(Self {
            component,
            pre,
            indices,
            describe,
        })
    }
}

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
        Self::builtin_named("default")
    }

    /// The built-in policy's component, e.g. to write it to a file and
    /// start a custom policy from it.
    pub fn builtin_component() -> &'static [u8] {
        BUILTIN_POLICY
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

    pub(crate) fn new(compiled: Compiled, runtime: Runtime) -> Self {
        Self { compiled, runtime }
    }

    /// What the component exports, as `interface: function, …` lines.
    pub fn describe_exports(&self) -> Vec<String> {
        let component = &self.compiled.component;
        let engine = component.engine();
        component
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
        let Some(describe) = &self.compiled.describe else {
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
        let component = &self.compiled.component;
        let engine = component.engine();
        component
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_owned())
            .collect()
    }
}

impl Runtime {
    /// Compiles a policy component on this runtime; see [`Policy::from_bytes`].
    pub fn policy_from_bytes(&self, bytes: &[u8]) -> Result<Policy, SetupError> {
        Ok(Policy::new(
            Compiled::new(self.engine(), bytes)?,
            self.clone(),
        ))
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
