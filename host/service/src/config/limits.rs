//! `[limits]`: request, connection and policy limits.

use std::time::Duration;

use serde::Deserialize;

use dsession::{InstanceReuse, Limits};

/// Request, connection and policy limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// The largest request body, in bytes (413 past it, from the
    /// `Content-Length` header alone when it says so).
    pub body_bytes: usize,
    /// How long a request body may take to arrive, in milliseconds (408
    /// past it).
    pub body_timeout_ms: u64,
    /// How long a client may take to send a request's headers, in
    /// milliseconds, also while a kept-alive connection waits for its next
    /// request; the connection is closed past it (slowloris).
    pub header_read_timeout_ms: u64,
    /// How long a connection may go without a byte read or written, in
    /// milliseconds, before it is closed.
    pub idle_timeout_ms: u64,
    /// Connections served at once; more wait in the listen backlog. Absent:
    /// what the process's open-file limit allows, at most 16384.
    pub max_connections: Option<usize>,
    /// On SIGTERM, how long requests in flight may take to finish, in
    /// milliseconds; connections still open then are closed.
    pub shutdown_timeout_ms: u64,
    /// Wall-clock time one policy call may take, in milliseconds.
    pub policy_call_timeout_ms: u64,
    /// Linear memory one policy call may use, in MiB.
    pub policy_memory_mib: usize,
    /// A new policy instance for every call instead of warm reused ones.
    pub policy_fresh_instances: bool,
    /// Calls one reused policy instance serves before it is replaced.
    pub policy_instance_max_calls: u32,
    /// Linear memory, in MiB, past which a reused policy instance is
    /// replaced after its call. A policy on an interpreter (componentize-py
    /// starts at about 13 MiB) needs more than the default, or it is
    /// instantiated anew for every call.
    pub policy_instance_max_memory_mib: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            body_bytes: 64 * 1024,
            body_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: None,
            shutdown_timeout_ms: 10_000,
            policy_call_timeout_ms: u64::try_from(limits.call_timeout.as_millis())
                .unwrap_or(u64::MAX),
            policy_memory_mib: limits.memory_bytes >> 20,
            policy_fresh_instances: matches!(limits.reuse, InstanceReuse::Fresh),
            policy_instance_max_calls: InstanceReuse::DEFAULT_MAX_CALLS,
            policy_instance_max_memory_mib: InstanceReuse::DEFAULT_MAX_MEMORY_BYTES >> 20,
        }
    }
}

impl LimitsConfig {
    /// The policy limits these settings describe.
    pub fn policy_limits(&self) -> Limits {
        let defaults = Limits::default();
        let reuse = if self.policy_fresh_instances {
            InstanceReuse::Fresh
        } else {
            InstanceReuse::Pooled {
                max_calls: self.policy_instance_max_calls,
                max_memory_bytes: self.policy_instance_max_memory_mib << 20,
            }
        };
        Limits {
            call_timeout: Duration::from_millis(self.policy_call_timeout_ms),
            memory_bytes: self.policy_memory_mib << 20,
            reuse,
            ..defaults
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reuse_bounds_reach_the_policy_limits_and_default_to_the_library_s() {
        assert_eq!(LimitsConfig::default().policy_limits(), Limits::default());
        let config: LimitsConfig =
            toml::from_str("policy_instance_max_memory_mib = 32\npolicy_instance_max_calls = 7")
                .unwrap();
        assert_eq!(
            config.policy_limits().reuse,
            InstanceReuse::Pooled {
                max_calls: 7,
                max_memory_bytes: 32 << 20
            }
        );
        let fresh: LimitsConfig = toml::from_str("policy_fresh_instances = true").unwrap();
        assert_eq!(fresh.policy_limits().reuse, InstanceReuse::Fresh);
    }
}
