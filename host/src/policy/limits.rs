//! What one call and one instance may use: the [`Limits`] a manager gives
//! its policy, whether instances are reused, and the [`Limiter`] that
//! holds an instance to them.

use std::time::Duration;

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

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
        /// Calls one instance serves before it is replaced. Default 10,000.
        max_calls: u32,
        /// Linear memory past which an instance is replaced after its call.
        /// Default 8 MiB, well above what a policy built by rustc grows to.
        /// A policy on an interpreter starts above it (componentize-py's
        /// at about 13 MiB) and needs more, or it is instantiated anew for
        /// every call; the service's `limits.policy_instance_max_memory_mib`.
        max_memory_bytes: usize,
    },
}

impl InstanceReuse {
    /// The default [`InstanceReuse::Pooled`] `max_calls`.
    pub const DEFAULT_MAX_CALLS: u32 = 10_000;
    /// The default [`InstanceReuse::Pooled`] `max_memory_bytes`: 8 MiB.
    pub const DEFAULT_MAX_MEMORY_BYTES: usize = 8 << 20;
}

impl Default for InstanceReuse {
    fn default() -> Self {
        Self::Pooled {
            max_calls: Self::DEFAULT_MAX_CALLS,
            max_memory_bytes: Self::DEFAULT_MAX_MEMORY_BYTES,
        }
    }
}

/// The per-call memory limit, plus how much linear memory the instance
/// holds in all, to decide whether it is still worth reusing.
pub(crate) struct Limiter {
    limits: StoreLimits,
    memory_bytes: usize,
}

impl Limiter {
    /// A limiter that lets linear memory grow to `memory_bytes` and traps
    /// a growth past it.
    pub(crate) fn new(memory_bytes: usize) -> Self {
        Self {
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            memory_bytes: 0,
        }
    }

    /// The linear memory the instance has grown to.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }
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
