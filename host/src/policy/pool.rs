//! Instances of one policy for one manager, and the call that borrows one.
//!
//! Instantiating a component and tearing its memory down again costs far
//! more than a check-token's own work, so a call takes a warm instance from
//! its manager's pool and gives it back when it returns normally. Anything
//! that leaves the instance in doubt discards it instead.

use std::sync::{Arc, Mutex, MutexGuard};

use super::engine::Engine;
use super::host::{CallState, Compiled, Exports, Imports, Instance, PolicyStore, Returned};
use super::limits::{InstanceReuse, Limits};
use crate::error::Error;
use crate::wit::token_manage;

/// An instance and the calls it has served.
struct Pooled {
    instance: Instance,
    calls: u32,
}

/// A manager's warm instances of its current policy; see
/// [`crate::SessionManager::policy_instances`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceStats {
    /// Instances idle now, ready for the next call.
    pub idle: usize,
    /// The most linear memory any idle instance holds: what one instance
    /// of this policy costs once it has served calls.
    pub max_memory_bytes: usize,
}

/// The warm instances of one policy for one manager. A policy swap makes a
/// new pool; instances of the old one are never handed out again.
pub(crate) struct Instances {
    engine: Arc<Engine>,
    compiled: Compiled,
    limits: Limits,
    imports: Imports,
    idle: Mutex<Vec<Pooled>>,
}

impl Instances {
    /// No instance yet: the first call makes one.
    pub(crate) fn new(
        engine: Arc<Engine>,
        compiled: Compiled,
        limits: Limits,
        imports: Imports,
    ) -> Self {
        Self {
            engine,
            compiled,
            limits,
            imports,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `export` in a warm instance, or a new one, within a slot of the
    /// runtime. A trap becomes [`Error::Policy`] and discards the instance,
    /// as does a caller giving up mid-call (the future dropped); the
    /// policy's own errors become their [`Error`] case.
    pub(crate) async fn call<T>(
        &self,
        export: impl AsyncFnOnce(&Exports, &mut PolicyStore) -> Returned<T>,
    ) -> Result<T, Error> {
        // Declared before the instance: the instance goes before its slot
        // frees.
        let _slot = self.engine.slot(self.limits.queue_timeout).await?;
        let mut pooled = match self.take() {
            Some(pooled) => pooled,
            None => self.instantiate().await?,
        };
        pooled.instance.begin(self.limits.call_timeout);
        let (exports, store) = pooled.instance.parts();
        match export(exports, store).await {
            Ok(answer) => {
                pooled.calls += 1;
                let answer = answer.map_err(|error| pooled.instance.error(error));
                self.give_back(pooled);
                answer
            }
            Err(trap) => Err(self.trapped(&pooled.instance, &trap)),
        }
    }

    /// [`Self::call`] for an export of `token-manage`.
    pub(crate) async fn token_manage<T>(
        &self,
        export: impl AsyncFnOnce(&token_manage::Guest, &mut PolicyStore) -> Returned<T>,
    ) -> Result<T, Error> {
        self.call(async |exports, store| export(exports.token_manage(), store).await)
            .await
    }

    /// Why the call failed, with what the instance wrote to stderr.
    fn trapped(&self, instance: &Instance, trap: &wasmtime::Error) -> Error {
        let reason = match trap.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => format!(
                "the policy ran past its time limit of {:?}",
                self.limits.call_timeout
            ),
            _ => format!("the policy trapped: {trap:#}"),
        };
        let stderr = instance.stderr();
        Error::Policy(if stderr.is_empty() {
            reason
        } else {
            format!("{reason}; its stderr: {stderr}")
        })
    }

    /// The idle instances now.
    pub(crate) fn stats(&self) -> InstanceStats {
        let idle = self.idle();
        InstanceStats {
            idle: idle.len(),
            max_memory_bytes: idle
                .iter()
                .map(|pooled| pooled.instance.memory_bytes())
                .max()
                .unwrap_or(0),
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Pooled>> {
        // Pushing or popping cannot leave the list half-changed.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle instance: its pages are the likeliest
    /// to be in cache.
    fn take(&self) -> Option<Pooled> {
        if matches!(self.limits.reuse, InstanceReuse::Fresh) {
            return None;
        }
        let pooled = self.idle().pop()?;
        self.engine.release_idle(1);
        Some(pooled)
    }

    /// Keeps `pooled` for another call if it is still in a known state and
    /// within its bounds; otherwise it is dropped.
    fn give_back(&self, pooled: Pooled) {
        let InstanceReuse::Pooled {
            max_calls,
            max_memory_bytes,
        } = self.limits.reuse
        else {
            return;
        };
        let reusable = pooled.calls < max_calls
            && pooled.instance.memory_bytes() <= max_memory_bytes
            // A trap's message quotes stderr, which must be that call's only.
            && pooled.instance.is_clean();
        if reusable && self.engine.admit_idle() {
            self.idle().push(pooled);
        }
    }

    async fn instantiate(&self) -> Result<Pooled, Error> {
        let state = CallState::new(
            self.imports.clone(),
            self.limits.memory_bytes.min(self.engine.max_memory_bytes()),
        );
        let instance = self
            .compiled
            .instantiate(state, self.limits.call_timeout)
            .await
            .map_err(|e| Error::Policy(format!("cannot instantiate the policy: {e:#}")))?;
        Ok(Pooled { instance, calls: 0 })
    }
}

impl Drop for Instances {
    fn drop(&mut self) {
        let idle = self.idle.get_mut().unwrap_or_else(|p| p.into_inner()).len();
        self.engine.release_idle(idle);
    }
}
