//! What a policy instance runs against: its state (the manager's store
//! and loader, a sandboxed WASI context, the memory limiter), the host's
//! side of the `store` and `user-loader` imports, the linker that joins a
//! component to them, and the instance itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::UpdateDeadline;
use wasmtime::component::{Component, HasSelf, InstancePre, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};

use super::convert;
use super::describe::{CONTRACT_VERSION, other_contract_version, unprovided};
use super::limits::Limiter;
use crate::error::{Error, SetupError};
use crate::loader::UserLoader;
use crate::store::{self, Store};
use crate::wit::{
    self, PolicyDescription, PolicyDescriptionIndices, PolicyIndices, WitAttributes, WitError,
    token_manage,
};

/// Bytes of a policy's stderr kept to explain a trap.
const STDERR_CAPTURE: usize = 4096;

/// A wasm store holding one instance's state.
pub(crate) type PolicyStore = wasmtime::Store<CallState>;

/// What a call of an export gives: a trap, or the policy's own answer.
pub(crate) type Returned<T> = wasmtime::Result<Result<T, WitError>>;

/// What a policy's imports are bound to: its manager's store and loader,
/// and the operator's `[policy.config]` for `wasi:config/store`.
#[derive(Clone)]
pub(crate) struct Imports {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) loader: Option<Arc<dyn UserLoader>>,
    pub(crate) config: Arc<WasiConfigVariables>,
}

/// What an instance can reach: its manager's store and loader, and a WASI
/// context ([`sandbox`]) that offers clocks and randomness but no files,
/// sockets or environment. Built once per instance.
pub(crate) struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    stderr: MemoryOutputPipe,
    store: Arc<dyn Store>,
    loader: Option<Arc<dyn UserLoader>>,
    /// When the running call must stop; set as each call starts.
    deadline: Instant,
    /// Whether the last store failure the running call was handed was a
    /// refusal for memory; see [`Instance::error`].
    out_of_memory: bool,
    /// Whether the running call had an atomic step or a commit that writes
    /// succeed: with durable writes the store confirmed with it that
    /// replicas hold everything the master held; see
    /// [`CallState::wrote_atomically`].
    wrote_atomically: bool,
    /// The operator's `[policy.config]`, read through `wasi:config/store`.
    config: Arc<WasiConfigVariables>,
    /// The client of the request the running call serves, for `client`;
    /// set for a check only, cleared as each call starts.
    client: Option<WitAttributes>,
}

impl CallState {
    /// The state of a new instance on `store` and `loader`, whose linear
    /// memory may grow to `memory_bytes`.
    pub(crate) fn new(imports: Imports, memory_bytes: usize) -> Self {
        let Imports {
            store,
            loader,
            config,
        } = imports;
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        Self {
            wasi: sandbox(stderr.clone()),
            table: ResourceTable::new(),
            limiter: Limiter::new(memory_bytes),
            stderr,
            store,
            loader,
            deadline: Instant::now(),
            out_of_memory: false,
            wrote_atomically: false,
            config,
            client: None,
        }
    }

    /// The client of the request the running call serves (`client.current`).
    pub(crate) fn set_client(&mut self, client: Option<WitAttributes>) {
        self.client = client;
    }

    /// A store answer as the guest gets it, noting whether a failure was a
    /// refusal for memory.
    fn answer<T>(&mut self, answer: Result<T, store::StoreError>) -> Result<T, WitError> {
        answer.map_err(|error| {
            self.out_of_memory = error.is_out_of_memory();
            WitError::from(error)
        })
    }
}

/// The WASI context of an instance. Every WASI 0.2 interface is linked,
/// since toolchains other than rustc (componentize-py, ComponentizeJS)
/// import them all, but only clocks and randomness give anything: no
/// preopened directory, no environment variable, no argument, an empty
/// stdin, stdout discarded, stderr kept in `stderr`, and no network (TCP,
/// UDP and name lookup refused, every socket address denied). Each of these
/// is also wasmtime-wasi's default; saying so here keeps a change of
/// default from opening anything.
fn sandbox(stderr: MemoryOutputPipe) -> WasiCtx {
    WasiCtx::builder()
        .stdin(tokio::io::empty())
        .stdout(tokio::io::empty())
        .stderr(stderr)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .build()
}

impl CallState {
    /// Whether the running call had an atomic step or a commit that writes
    /// succeed. With durable writes its `WAIT` covered every write the
    /// master held, so a revocation needs no confirmation of its own.
    pub(crate) fn wrote_atomically(&self) -> bool {
        self.wrote_atomically
    }

    /// Whether `commands` write, for [`Self::wrote_atomically`].
    fn writes(commands: &[store::Command]) -> bool {
        commands.iter().any(|command| !command.is_read())
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

/// A transaction as the guest holds it; emptied by `commit`.
struct TransactionSlot(Option<Box<dyn store::Transaction>>);

/// The table entry behind the guest's handle: the generated resource type
/// has no values, so the table holds the slot under the handle's number.
fn slot(handle: &Resource<wit::store::Transaction>) -> Resource<TransactionSlot> {
    if handle.owned() {
        Resource::new_own(handle.rep())
    } else {
        Resource::new_borrow(handle.rep())
    }
}

impl wit::types::Host for CallState {}

impl wit::store::Host for CallState {
    async fn batch(
        &mut self,
        commands: Vec<store::Command>,
    ) -> wasmtime::Result<Result<Vec<store::Reply>, WitError>> {
        let answer = self.store.batch(commands).await;
        Ok(self.answer(answer))
    }

    async fn atomic(
        &mut self,
        commands: Vec<store::Command>,
    ) -> wasmtime::Result<Result<Vec<store::Reply>, WitError>> {
        let writes = Self::writes(&commands);
        let answer = self.store.atomic(commands).await;
        self.wrote_atomically |= writes && answer.is_ok();
        Ok(self.answer(answer))
    }

    async fn watch(
        &mut self,
        keys: Vec<String>,
        reads: Vec<store::Command>,
    ) -> Returned<(Resource<wit::store::Transaction>, Vec<store::Reply>)> {
        let answer = self.store.watch(keys, reads).await;
        match self.answer(answer) {
            Ok((transaction, read)) => {
                let held = self.table.push(TransactionSlot(Some(transaction)))?;
                Ok(Ok((Resource::new_own(held.rep()), read)))
            }
            Err(error) => Ok(Err(error)),
        }
    }
}

impl wit::store::HostTransaction for CallState {
    async fn commit(
        &mut self,
        transaction: Resource<wit::store::Transaction>,
        commands: Vec<store::Command>,
    ) -> Returned<Option<Vec<store::Reply>>> {
        let Some(transaction) = self.table.get_mut(&slot(&transaction))?.0.take() else {
            return Ok(Err(WitError::Store("transaction already committed".into())));
        };
        let writes = Self::writes(&commands);
        let answer = transaction.commit(commands).await;
        self.wrote_atomically |= writes && matches!(answer, Ok(Some(_)));
        Ok(self.answer(answer))
    }

    async fn drop(
        &mut self,
        transaction: Resource<wit::store::Transaction>,
    ) -> wasmtime::Result<()> {
        self.table.delete(slot(&transaction))?;
        Ok(())
    }
}

impl wit::client::Host for CallState {
    async fn current(&mut self) -> wasmtime::Result<Option<WitAttributes>> {
        Ok(self.client.clone())
    }
}

impl wit::user_loader::Host for CallState {
    async fn load(&mut self, user_id: String) -> wasmtime::Result<Result<Option<String>, String>> {
        Ok(match &self.loader {
            Some(loader) => convert::loaded(loader.load(&user_id).await),
            None => Ok(None),
        })
    }
}

/// What [`linker`] gives a component, for the error that names an import
/// it does not.
fn host_provides() -> String {
    format!(
        "WASI 0.2.12, which any 0.2.x import matches (wasi:io, wasi:clocks, wasi:random, \
         wasi:cli, wasi:filesystem, wasi:sockets; no files, environment or network are \
         reachable through them), wasi:config/store@0.2.0-rc.1, and dsession:session/types, \
         store, user-loader and client @{CONTRACT_VERSION}"
    )
}

/// All of WASI 0.2 (in the [`sandbox`], clocks and randomness are all a
/// policy gets from it), `wasi:config/store`, and the host's `store` and
/// `user-loader`.
fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<CallState>> {
    type Host = HasSelf<CallState>;
    let mut linker = Linker::<CallState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wit::types::add_to_linker::<_, Host>(&mut linker, |s| s)?;
    wit::store::add_to_linker::<_, Host>(&mut linker, |s| s)?;
    wit::user_loader::add_to_linker::<_, Host>(&mut linker, |s| s)?;
    wit::client::add_to_linker::<_, Host>(&mut linker, |s| s)?;
    // Always provided, so that a policy may read settings or not.
    wasmtime_wasi_config::add_to_linker(&mut linker, |s| WasiConfig::from(&*s.config))?;
    Ok(linker)
}

/// A component compiled and linked on one engine.
#[derive(Clone)]
pub(crate) struct Compiled {
    component: Component,
    pre: InstancePre<CallState>,
    indices: PolicyIndices,
    /// Set when the component exports `describe`.
    describe: Option<PolicyDescriptionIndices>,
}

impl Compiled {
    /// Compiles a policy component and checks it against the `policy`
    /// world: it may import only what the host provides and must export
    /// `token-manage` with the right types.
    pub(crate) fn new(engine: &wasmtime::Engine, bytes: &[u8]) -> Result<Self, SetupError> {
        let failed = |what: &str, e: wasmtime::Error| SetupError::Policy(format!("{what}: {e:#}"));
        let component =
            Component::new(engine, bytes).map_err(|e| failed("not a valid wasm component", e))?;
        if let Some(version) = other_contract_version(&component) {
            return Err(SetupError::Policy(format!(
                "the component is a policy for dsession:session@{version}, but this host loads \
                 dsession:session@{}: rebuild it on this release's dsession-policy-sdk (the \
                 contract now has self-check, which the host calls before a policy serves)",
                CONTRACT_VERSION
            )));
        }
        let linker = linker(engine).map_err(|e| failed("cannot link the host interfaces", e))?;
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            let missing = unprovided(&linker, &component);
            if missing.is_empty() {
                return failed(
                    "the component imports something the host does not provide",
                    e,
                );
            }
            let list: Vec<String> = missing.iter().map(|m| format!("\n  {m}")).collect();
            SetupError::Policy(format!(
                "the component imports something the host does not provide:{}\nthis host \
                 provides {}",
                list.concat(),
                host_provides()
            ))
        })?;
        let describe = PolicyDescriptionIndices::new(&pre).ok();
        let indices = PolicyIndices::new(&pre)
            .map_err(|e| failed("the component does not export the policy world", e))?;
        Ok(Self {
            component,
            pre,
            indices,
            describe,
        })
    }

    /// The component, to list what it imports and exports.
    pub(crate) fn component(&self) -> &Component {
        &self.component
    }

    /// Whether the component exports `describe`.
    pub(crate) fn describes(&self) -> bool {
        self.describe.is_some()
    }

    /// A new instance with `state`, whose instantiation may run `timeout`.
    /// Every tick of the engine's epoch, a running call yields to the
    /// executor (a busy policy never starves other tasks) and is stopped
    /// once past its deadline.
    pub(crate) async fn instantiate(
        &self,
        state: CallState,
        timeout: Duration,
    ) -> wasmtime::Result<Instance> {
        let mut store = wasmtime::Store::new(self.component.engine(), state);
        store.data_mut().deadline = Instant::now() + timeout;
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|store| {
            Ok(if Instant::now() >= store.data().deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        store.set_epoch_deadline(1);
        let instance = self.pre.instantiate_async(&mut store).await?;
        let policy = self.indices.load(&mut store, &instance)?;
        Ok(Instance {
            store,
            exports: Exports {
                policy,
                instance,
                describe: self.describe.clone(),
            },
        })
    }
}

/// What an instance exports.
pub(crate) struct Exports {
    policy: wit::Policy,
    instance: wasmtime::component::Instance,
    /// Where `describe` is, when the component exports it; looked up in an
    /// instance only when asked, since only `dsession policy check` asks.
    describe: Option<PolicyDescriptionIndices>,
}

impl Exports {
    /// The token API.
    pub(crate) fn token_manage(&self) -> &token_manage::Guest {
        self.policy.dsession_session_token_manage()
    }

    /// The optional `describe` interface, looked up in `store`.
    pub(crate) fn describe(
        &self,
        store: &mut PolicyStore,
    ) -> wasmtime::Result<Option<PolicyDescription>> {
        self.describe
            .as_ref()
            .map(|indices| indices.load(store, &self.instance))
            .transpose()
    }
}

/// An instantiated policy in its own wasm store.
pub(crate) struct Instance {
    store: PolicyStore,
    exports: Exports,
}

impl Instance {
    /// Readies the instance for a call that may run `timeout`.
    pub(crate) fn begin(&mut self, timeout: Duration) {
        let state = self.store.data_mut();
        state.deadline = Instant::now() + timeout;
        state.out_of_memory = false;
        state.wrote_atomically = false;
        state.client = None;
        self.store.set_epoch_deadline(1);
    }

    /// The library's error for what the call returned. The WIT has one
    /// `store` case for every store failure, so a policy hands a full
    /// store's refusal back as it got it; the host knows which failure it
    /// handed over last, and a store error after a refusal for memory is
    /// [`Error::StoreOutOfMemory`]. No policy needs to tell them apart, and
    /// none parses a message.
    pub(crate) fn error(&self, error: WitError) -> Error {
        match error {
            WitError::Store(message) if self.store.data().out_of_memory => {
                Error::StoreOutOfMemory(message)
            }
            error => Error::from(error),
        }
    }

    /// The exports to call and the store to call them in.
    pub(crate) fn parts(&mut self) -> (&Exports, &mut PolicyStore) {
        (&self.exports, &mut self.store)
    }

    /// The linear memory the instance has grown to.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.store.data().limiter.memory_bytes()
    }

    /// Whether the instance holds no resource and wrote nothing to stderr,
    /// so that nothing of its last call can reach the next one.
    pub(crate) fn is_clean(&self) -> bool {
        let state = self.store.data();
        state.table.is_empty() && state.stderr.contents().is_empty()
    }

    /// What the instance wrote to stderr, trimmed.
    pub(crate) fn stderr(&self) -> String {
        let stderr = self.store.data().stderr.contents();
        String::from_utf8_lossy(&stderr).trim().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use wasmtime_wasi::cli::WasiCliView as _;
    use wasmtime_wasi::filesystem::WasiFilesystemView as _;
    use wasmtime_wasi::p2::bindings::cli::environment::Host as _;
    use wasmtime_wasi::p2::bindings::filesystem::preopens::Host as _;
    use wasmtime_wasi::p2::bindings::sockets::instance_network::Host as _;
    use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::Host as _;
    use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpAddressFamily};
    use wasmtime_wasi::p2::bindings::sockets::tcp_create_socket::Host as _;
    use wasmtime_wasi::p2::bindings::sockets::udp_create_socket::Host as _;
    use wasmtime_wasi::sockets::WasiSocketsView as _;

    use super::*;
    use crate::policy::describe;
    use crate::store::MemoryStore;

    fn state() -> CallState {
        let imports = Imports {
            store: Arc::new(MemoryStore::new()),
            loader: None,
            config: describe::variables(&BTreeMap::new()),
        };
        CallState::new(imports, 1 << 20)
    }

    #[tokio::test]
    async fn the_wasi_context_gives_no_files_environment_or_network() {
        let mut state = state();
        assert!(state.filesystem().get_directories().unwrap().is_empty());
        let mut cli = state.cli();
        assert!(cli.get_environment().unwrap().is_empty());
        assert!(cli.get_arguments().unwrap().is_empty());
        assert_eq!(cli.initial_cwd().unwrap(), None);

        let mut sockets = state.sockets();
        for family in [IpAddressFamily::Ipv4, IpAddressFamily::Ipv6] {
            let tcp = sockets.create_tcp_socket(family).map(drop).unwrap_err();
            assert_eq!(tcp.downcast().unwrap(), ErrorCode::AccessDenied);
            let udp = sockets
                .create_udp_socket(family)
                .await
                .map(drop)
                .unwrap_err();
            assert_eq!(udp.downcast().unwrap(), ErrorCode::AccessDenied);
        }
        let network = sockets.instance_network().unwrap();
        let lookup = sockets
            .resolve_addresses(network, "localhost".into())
            .map(drop)
            .unwrap_err();
        assert_eq!(
            lookup.downcast().unwrap(),
            ErrorCode::PermanentResolverFailure
        );
    }
}
