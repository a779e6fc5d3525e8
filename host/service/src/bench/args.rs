//! The flags of `dsession bench` and the operations it can measure.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use dsession::{Policy, SessionManager, SessionManagerBuilder};

use crate::flags::StoreArgs;

/// `dsession bench`: operations per second, p50 and p99 latency, errors,
/// store commands and round trips per operation, and the ratio to a
/// same-run baseline. Without --redis, --sentinel or --cluster it runs on the memory
/// store.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub(super) store: StoreArgs,
    /// Seconds each figure runs for.
    #[arg(long, default_value_t = 5.0)]
    pub(super) seconds: f64,
    /// Concurrent tasks; a list runs every figure at each.
    #[arg(long, value_delimiter = ',', default_value = "50")]
    pub(super) concurrency: Vec<usize>,
    /// Operations to measure (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub(super) ops: Vec<Op>,
    /// How policy instances are used: `pooled` (warm, reused) or `fresh`
    /// (a new one per call).
    #[arg(long, value_enum, default_value_t = Instances::Pooled)]
    pub(super) instances: Instances,
    /// Pooled instances: linear memory in MiB past which an instance is
    /// replaced after its call, as `limits.policy_instance_max_memory_mib`.
    /// A policy on an interpreter needs more (32 for componentize-py), or
    /// every call instantiates it.
    #[arg(long, default_value_t = dsession::InstanceReuse::DEFAULT_MAX_MEMORY_BYTES >> 20)]
    pub(super) policy_instance_max_memory_mib: usize,
    /// Also report the memory N live sessions take (host RSS on the memory
    /// store, `used_memory` on Redis).
    #[arg(long, default_value_t = 0)]
    pub(super) sessions: usize,
    /// A smoke run for CI: 0.2 s per figure. Its figures mean little.
    #[arg(long)]
    pub(super) quick: bool,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The policy: a built-in one by name (`default`, `hardened`) or a
    /// `.wasm` file.
    #[arg(long, default_value = "default")]
    pub(super) policy: PathBuf,
    /// A policy setting, `key=value`; repeat for more.
    #[arg(long = "policy-config", value_parser = crate::flags::parse_policy_config_pair)]
    pub(super) policy_config: Vec<(String, String)>,
}

impl BenchArgs {
    /// A manager builder with the policy and its settings the flags name.
    pub(super) fn builder(&self, policy: &Policy) -> SessionManagerBuilder {
        SessionManager::builder()
            .policy(policy.clone())
            .policy_config(self.policy_config.clone())
    }

    /// The operations to measure: those the flags name, or all.
    pub(super) fn ops(&self) -> &[Op] {
        if self.ops.is_empty() {
            &ALL_OPS
        } else {
            &self.ops
        }
    }
}

/// The operations the bench can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Op {
    /// check-token on a live token.
    Check,
    /// check-token-or-update-user with the user's detail in the cache.
    CheckUser,
    /// check-token-or-update-user on a cold cache: every call loads the
    /// user from the in-process loader and caches it (a delete-user before
    /// each call, outside the latency but inside ops/s, empties the cache).
    CheckUserCold,
    /// set-token for a new user each call.
    Set,
    /// set-token in single mode, one user per task.
    SetSingle,
    /// refresh-token on a live token.
    Refresh,
    /// list-user-token of a user with 10 live tokens.
    List,
    /// `GET /auth` with a valid token through the service.
    Auth,
    /// Envoy's gRPC `Check` with a valid token through the service.
    Grpc,
}

const ALL_OPS: [Op; 9] = [
    Op::Check,
    Op::CheckUser,
    Op::CheckUserCold,
    Op::Set,
    Op::SetSingle,
    Op::Refresh,
    Op::List,
    Op::Auth,
    Op::Grpc,
];

/// How policy instances are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Instances {
    Pooled,
    Fresh,
}

impl Instances {
    /// The name the flag takes and the report prints.
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Pooled => "pooled",
            Self::Fresh => "fresh",
        }
    }
}
