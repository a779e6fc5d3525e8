//! The conformance kit: the contract every policy keeps, as the WIT states
//! it, run against one policy on one store.
//!
//! [`Kit::run`] goes through the cases one by one (see [`cases`] for the
//! list) and reports each as it ends: every operation round-trips within
//! its cost budget, a revoked or expired token is never valid again (also
//! under racing refresh/revoke pairs), revoke is idempotent, a malformed
//! or foreign token is "not valid", a loader failure and a store outage
//! are errors, and single mode and `max_sessions`, where the policy's
//! self-check says it keeps them, are exact under racing logins.
//!
//! The kit assumes no key name and no token form: it talks to the policy
//! only through the token API, learns a probe token and the session limits
//! from `self-check`, and keeps its users apart by a run id. It runs on the
//! in-memory store unless given another; on a shared Redis it writes only
//! its own users' keys and revokes them at the end.
//!
//! ```no_run
//! # async fn run() -> Result<(), dsession::SetupError> {
//! let policy = dsession::Policy::from_file("target/wasm32-wasip2/release/my_policy.wasm")?;
//! let report = dsession::kit::Kit::new(policy)
//!     .run(|case| println!("{case}"))
//!     .await;
//! assert!(report.passed(), "{} cases failed", report.failures().count());
//! # Ok(())
//! # }
//! ```

mod cases;
mod operations;
mod races;
mod rig;
mod run;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::policy::Policy;
use crate::policy::limits::Limits;
use crate::store::{MemoryStore, Store};

/// How a case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The policy kept the contract.
    Pass,
    /// The policy broke it; the detail says how.
    Fail,
    /// The case does not apply to this policy (a limit it does not keep).
    Skip,
}

/// One case of the kit and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseReport {
    /// The case, e.g. `set-token` or `refresh-revoke race`.
    pub name: String,
    /// Its outcome.
    pub verdict: Verdict,
    /// What was measured, or what went wrong, or why it was skipped.
    pub detail: String,
}

impl fmt::Display for CaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        };
        write!(f, "{verdict}  {}: {}", self.name, self.detail)
    }
}

/// Every case of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KitReport {
    /// The cases in the order they ran.
    pub cases: Vec<CaseReport>,
}

impl KitReport {
    /// Whether no case failed.
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }

    /// The cases that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CaseReport> {
        self.cases
            .iter()
            .filter(|case| case.verdict == Verdict::Fail)
    }
}

/// The conformance kit for one policy: on the in-memory store unless
/// [`Kit::store`] names another, with the policy settings of
/// [`Kit::policy_setting`] (none by default) and the default [`Limits`]
/// unless [`Kit::limits`] gives others.
#[derive(Debug)]
pub struct Kit {
    policy: Policy,
    store: Backing,
    policy_config: BTreeMap<String, String>,
    limits: Limits,
}

/// The store a kit runs on.
struct Backing(Arc<dyn Store>);

impl fmt::Debug for Backing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Store")
    }
}

impl Kit {
    /// The kit for `policy`, on a fresh in-memory store.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            store: Backing(Arc::new(MemoryStore::new())),
            policy_config: BTreeMap::new(),
            limits: Limits::default(),
        }
    }

    /// Runs on `store` instead, e.g. a [`crate::store::RedisStore`].
    pub fn store(self, store: impl Store) -> Self {
        self.shared_store(Arc::new(store))
    }

    /// Runs on a shared `store` instead.
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Backing(store);
        self
    }

    /// One of the policy's own settings (`[policy.config]`), e.g.
    /// `max_sessions` = `3` for the hardened policy, whose limit the kit
    /// then checks.
    pub fn policy_setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.policy_config.insert(key.into(), value.into());
        self
    }

    /// The limits of every manager the kit makes, e.g. a reuse bound above
    /// the instance memory of a policy on an interpreter, which would
    /// otherwise be instantiated anew for every call.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Runs every case, handing each to `each` as it ends, and then
    /// revokes what the run issued.
    pub async fn run(&self, mut each: impl FnMut(&CaseReport)) -> KitReport {
        let rig = rig::Rig::new(
            &self.policy,
            &self.store.0,
            &self.policy_config,
            self.limits,
        );
        let mut report = KitReport::default();
        cases::run(&rig, &mut |case| {
            each(&case);
            report.cases.push(case);
        })
        .await;
        rig.clean_up().await;
        report
    }
}
