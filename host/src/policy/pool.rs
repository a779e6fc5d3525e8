//! Instances of one policy for one manager, and the call that borrows one.
//!
//! Instantiating a component and tearing its memory down again costs far
//! more than a check-token's own work, so a call takes a warm instance from
//! its manager's pool and gives it back when it returns normally. Anything
//! that leaves the instance in doubt discards it instead.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::{
    CallState, InstanceReuse, Limiter, Limits, Policy, PolicyBindings, STDERR_CAPTURE, WitError,
};
use wasmtime_wasi_config::WasiConfigVariables;

use crate::error::Error;
use crate::loader::UserLoader;
use crate::policy_config::{DescribeIndices, WitConfigKey};
use crate::store::Store;
use crate::wit::token_manage::Guest;

/// An instantiated policy with its own wasm store.
struct Instance {
    store: wasmtime::Store<CallState>,
    bindings: PolicyBindings,
    /// Kept to load optional exports such as `describe`.
    instance: wasmtime::component::Instance,
    calls: u32,
}

/// The warm instances of one policy for one manager. A policy swap makes a
/// new pool; instances of the old one are never handed out again.
pub(crate) struct Instances {
    policy: Policy,
    limits: Limits,
    store: Arc<dyn Store>,
    loader: Option<Arc<dyn UserLoader>>,
    config: Arc<WasiConfigVariables>,
    idle: Mutex<Vec<Instance>>,
}

impl Instances {
    pub(crate) fn new(
        policy: Policy,
        limits: Limits,
        store: Arc<dyn Store>,
        loader: Option<Arc<dyn UserLoader>>,
        config: Arc<WasiConfigVariables>,
    ) -> Self {
        Self {
            policy,
            limits,
            store,
            loader,
            config,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The policy these instances run.
    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        // Pushing or popping cannot leave the list half-changed.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle instance: its pages are the likeliest
    /// to be in cache.
    fn take(&self) -> Option<Instance> {
        if matches!(self.limits.reuse, InstanceReuse::Fresh) {
            return None;
        }
        let instance = self.idle().pop()?;
        self.policy.runtime.release_idle(1);
        Some(instance)
    }

    /// Keeps `instance` for another call if it is still in a known state
    /// and within its bounds; otherwise it is dropped.
    fn give_back(&self, instance: Instance) {
        let InstanceReuse::Pooled {
            max_calls,
            max_memory_bytes,
        } = self.limits.reuse
        else {
            return;
        };
        let state = instance.store.data();
        let reusable = instance.calls < max_calls
            && state.limiter.memory_bytes <= max_memory_bytes
            && state.table.is_empty()
            // A trap's message quotes stderr, which must be that call's only.
            && state.stderr.contents().is_empty();
        if !reusable {
            return;
        }
        if self.policy.runtime.admit_idle() {
            self.idle().push(instance);
        }
    }

    async fn instantiate(&self) -> Result<Instance, Error> {
        let runtime = &self.policy.runtime;
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let state = CallState {
            wasi: WasiCtx::builder().stderr(stderr.clone()).build(),
            table: ResourceTable::new(),
            limiter: Limiter {
                limits: StoreLimitsBuilder::new()
                    .memory_size(self.limits.memory_bytes.min(runtime.max_memory_bytes()))
                    .trap_on_grow_failure(true)
                    .build(),
                memory_bytes: 0,
            },
            stderr,
            store: Arc::clone(&self.store),
            loader: self.loader.clone(),
            deadline: Instant::now() + self.limits.call_timeout,
            config: Arc::clone(&self.config),
        };
        let mut store = wasmtime::Store::new(runtime.engine(), state);
        store.limiter(|state| &mut state.limiter);
        // Every tick, a running policy yields to the executor (a busy policy
        // never starves other tasks) and is stopped once past its time.
        store.epoch_deadline_callback(|store| {
            Ok(if Instant::now() >= store.data().deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        store.set_epoch_deadline(1);
        let instantiated = async {
            let instance = self
                .policy
                .compiled
                .pre
                .instance_pre()
                .instantiate_async(&mut store)
                .await?;
            let bindings = self.policy.compiled.indices.load(&mut store, &instance)?;
            Ok::<_, wasmtime::Error>((instance, bindings))
        };
        let (instance, bindings) = instantiated
            .await
            .map_err(|e| Error::Policy(format!("cannot instantiate the policy: {e:#}")))?;
        Ok(Instance {
            store,
            bindings,
            instance,
            calls: 0,
        })
    }
}

impl Drop for Instances {
    fn drop(&mut self) {
        let idle = self.idle.get_mut().unwrap_or_else(|p| p.into_inner()).len();
        self.policy.runtime.release_idle(idle);
    }
}

/// One call's instance, ready to run one export. Dropped before
/// [`Call::finish`] (the caller gave up mid-call), its instance is
/// discarded.
pub(crate) struct Call {
    // Declared before the slot: the instance goes before its slot frees.
    instance: Option<Instance>,
    pool: Arc<Instances>,
    _slot: OwnedSemaphorePermit,
}

impl Call {
    /// Takes a warm instance of `pool`, or makes one, for one call.
    pub(crate) async fn start(pool: Arc<Instances>) -> Result<Self, Error> {
        let slots = pool.policy.runtime.slots();
        let slot = match Arc::clone(slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                let queue_timeout = pool.limits.queue_timeout;
                tokio::time::timeout(queue_timeout, Arc::clone(slots).acquire_owned())
                    .await
                    .map_err(|_| {
                        Error::Overloaded(format!(
                            "no policy instance came free within {queue_timeout:?}"
                        ))
                    })?
                    .map_err(|_| Error::Overloaded("the policy runtime is shutting down".into()))?
            }
        };
        let mut instance = match pool.take() {
            Some(instance) => instance,
            None => pool.instantiate().await?,
        };
        instance.store.data_mut().deadline = Instant::now() + pool.limits.call_timeout;
        instance.store.set_epoch_deadline(1);
        Ok(Self {
            instance: Some(instance),
            pool,
            _slot: slot,
        })
    }

    /// The export to call and the store to call it in.
    pub(crate) fn parts(&mut self) -> (&Guest, &mut wasmtime::Store<CallState>) {
        let instance = self
            .instance
            .as_mut()
            .expect("a call holds its instance until it finishes");
        (
            instance.bindings.dsession_session_token_manage(),
            &mut instance.store,
        )
    }

    /// Calls the optional `describe` export: the settings the policy reads.
    pub(crate) async fn config_keys(
        &mut self,
        describe: &DescribeIndices,
    ) -> wasmtime::Result<Vec<WitConfigKey>> {
        let instance = self
            .instance
            .as_mut()
            .expect("a call holds its instance until it finishes");
        let described = describe.load(&mut instance.store, &instance.instance)?;
        described
            .dsession_session_describe()
            .call_config_keys(&mut instance.store)
            .await
    }

    /// Maps what the call returned: traps become [`Error::Policy`], the
    /// policy's own errors their [`Error`] case. The instance goes back to
    /// the pool unless it trapped.
    pub(crate) fn finish<T>(
        mut self,
        outcome: wasmtime::Result<Result<T, WitError>>,
    ) -> Result<T, Error> {
        let mut instance = self
            .instance
            .take()
            .expect("a call holds its instance until it finishes");
        let trap = match outcome {
            Ok(result) => {
                instance.calls += 1;
                self.pool.give_back(instance);
                return result.map_err(Error::from);
            }
            Err(trap) => trap,
        };
        let reason = match trap.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => format!(
                "the policy ran past its time limit of {:?}",
                self.pool.limits.call_timeout
            ),
            _ => format!("the policy trapped: {trap:#}"),
        };
        let stderr = instance.store.data().stderr.contents();
        let stderr = String::from_utf8_lossy(&stderr);
        let stderr = stderr.trim();
        Err(Error::Policy(if stderr.is_empty() {
            reason
        } else {
            format!("{reason}; its stderr: {stderr}")
        }))
    }
}
