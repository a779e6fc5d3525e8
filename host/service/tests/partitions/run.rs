//! One scenario's run: load, fault, heal, the final read, and its row of
//! the table.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use super::history::{self, Kind, Op, Outcome, Verdict};
use super::load::{self, Load, Probe};

/// How long each phase of a run lasts.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// Load before the fault.
    pub warm: Duration,
    /// The fault under load.
    pub fault: Duration,
    /// Load after the heal, for recovery.
    pub after: Duration,
}

impl Phases {
    pub const fn seconds(warm: u64, fault: u64, after: u64) -> Self {
        Self {
            warm: Duration::from_secs(warm),
            fault: Duration::from_secs(fault),
            after: Duration::from_secs(after),
        }
    }
}

/// What a scenario does at each turn of its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Fault,
    Heal,
}

/// What a scenario promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarantee {
    /// Nothing acknowledged is lost and nothing revoked comes back.
    Holds,
    /// Sessions may end early (acknowledged logins lost), but nothing
    /// revoked comes back and no limit is exceeded.
    FailsClosed,
    /// The settings that do not give a guarantee, run to show what they
    /// lose: figures only.
    Shown,
}

impl Guarantee {
    fn label(self) -> &'static str {
        match self {
            Self::Holds => "0 lost, 0 revived",
            Self::FailsClosed => "0 revived",
            Self::Shown => "none (shown)",
        }
    }
}

/// A requirement of one scenario beyond its guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Require {
    /// Every call answered in time: a success or the documented JSON error.
    EveryCallAnswered,
    /// No check called a token invalid that the history says is valid.
    NoFalseInvalid,
    /// `/readyz` of the first instance said not ready during the fault.
    NotReadyDuringFault,
    /// `/readyz` of the first instance was ready again after the heal.
    ReadyAfterHeal,
    /// Every revoke and revoke-all during the fault was acknowledged.
    RevocationsSucceed,
    /// `/readyz` warned that Redis may evict sessions.
    ReadyzWarnsOfEviction,
}

/// The table's row for one run.
#[derive(Debug)]
pub struct Row {
    pub name: String,
    pub guarantee: Guarantee,
    pub verdict: Verdict,
    /// From the heal to the first acknowledged login on every instance.
    pub recovery: Option<Duration>,
    /// The share of the first instance's probes during the fault that said
    /// not ready.
    pub not_ready: f64,
    pub failures: Vec<String>,
}

impl Row {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The errors, most frequent first, shortened for the table.
    pub fn errors(&self) -> String {
        let mut errors: Vec<(&String, &usize)> = self.verdict.errors.iter().collect();
        errors.sort_by(|a, b| b.1.cmp(a.1));
        let mut text = String::new();
        for (kind, count) in errors.into_iter().take(3) {
            let _ = write!(
                text,
                "{}{count}× {kind}",
                if text.is_empty() { "" } else { "; " }
            );
        }
        if text.is_empty() { "none".into() } else { text }
    }

    /// The row as a Markdown table line.
    pub fn line(&self) -> String {
        let verdict = &self.verdict;
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s | {} | {:.0}% | {} |",
            self.name,
            self.guarantee.label(),
            verdict.acknowledged,
            verdict.lost,
            verdict.revived,
            verdict.indeterminate,
            verdict.unknown,
            self.errors(),
            verdict.slowest.as_secs_f64(),
            self.recovery.map_or("none".into(), |recovery| format!(
                "{:.1} s",
                recovery.as_secs_f64()
            )),
            self.not_ready * 100.0,
            if self.passed() {
                "passed".into()
            } else {
                format!("FAILED: {}", self.failures.join("; "))
            }
        )
    }
}

/// The header of the table [`Row::line`] writes.
pub const HEADER: &str = "| scenario | guarantee | acknowledged | lost | revived | indeterminate | \
                          unknown | errors | slowest call | recovery | not ready | result |\n\
                          |---|---|---|---|---|---|---|---|---|---|---|---|";

/// Runs load against the instances at `bases` (the first is the one read
/// at the end and probed for readiness), calls `step` for the fault and the
/// heal, and judges the history.
pub struct Run<'a> {
    pub name: String,
    pub guarantee: Guarantee,
    pub requires: &'a [Require],
    pub limit: Option<usize>,
    pub phases: Phases,
}

impl Run<'_> {
    pub fn go(self, runtime: &Runtime, bases: &[String], step: &mut dyn FnMut(Step)) -> Row {
        let load = Load::start(runtime, bases, 8, 1000);
        std::thread::sleep(self.phases.warm);
        step(Step::Fault);
        let fault_at = Instant::now();
        std::thread::sleep(self.phases.fault);
        step(Step::Heal);
        let heal_at = Instant::now();
        std::thread::sleep(self.phases.after);
        let (history, probes) = load.stop(runtime);
        let valid = load::validity(runtime, &bases[0], &history, Duration::from_secs(30));
        self.judge(&history, &probes, valid, bases.len(), (fault_at, heal_at))
    }

    fn judge(
        self,
        history: &[Op],
        probes: &[Probe],
        valid: Result<HashMap<String, bool>, String>,
        nodes: usize,
        (fault_at, heal_at): (Instant, Instant),
    ) -> Row {
        let mut failures = Vec::new();
        let verdict = match valid {
            Ok(valid) => history::check(history, &valid, self.limit),
            Err(why) => {
                failures.push(format!("the final read failed: {why}"));
                Verdict::default()
            }
        };
        if self.guarantee == Guarantee::Holds && verdict.lost > 0 {
            failures.push(format!("{} acknowledged logins lost", verdict.lost));
        }
        if self.guarantee != Guarantee::Shown {
            if verdict.revived > 0 {
                failures.push(format!("{} revoked tokens valid again", verdict.revived));
            }
            if verdict.over_limit > 0 {
                failures.push(format!(
                    "{} users over the session limit",
                    verdict.over_limit
                ));
            }
        }
        let recovery = recovery(history, nodes, heal_at);
        if recovery.is_none() {
            failures.push("an instance never acknowledged a login after the heal".into());
        }
        let during: Vec<&Probe> = probes
            .iter()
            .filter(|probe| probe.node == 0 && probe.at >= fault_at && probe.at < heal_at)
            .collect();
        let not_ready = if during.is_empty() {
            0.0
        } else {
            during.iter().filter(|probe| !probe.ready).count() as f64 / during.len() as f64
        };
        for require in self.requires {
            if let Some(failure) = unmet(
                *require,
                history,
                probes,
                &verdict,
                &during,
                (fault_at, heal_at),
            ) {
                failures.push(failure);
            }
        }
        Row {
            name: self.name,
            guarantee: self.guarantee,
            verdict,
            recovery,
            not_ready,
            failures,
        }
    }
}

/// From `heal_at` until every one of `nodes` acknowledged a login invoked
/// after it.
fn recovery(history: &[Op], nodes: usize, heal_at: Instant) -> Option<Duration> {
    (0..nodes)
        .map(|node| {
            history
                .iter()
                .filter(|op| {
                    op.node == node
                        && op.kind == Kind::Login
                        && op.invoke >= heal_at
                        && matches!(op.outcome, Outcome::Ok { .. })
                })
                .map(|op| op.complete - heal_at)
                .min()
        })
        .try_fold(Duration::ZERO, |longest, first| Some(longest.max(first?)))
}

/// Why `require` does not hold, if it does not.
fn unmet(
    require: Require,
    history: &[Op],
    probes: &[Probe],
    verdict: &Verdict,
    during: &[&Probe],
    (fault_at, heal_at): (Instant, Instant),
) -> Option<String> {
    match require {
        Require::EveryCallAnswered => (verdict.unknown > 0).then(|| {
            format!(
                "{} calls unanswered in time or without the JSON error",
                verdict.unknown
            )
        }),
        Require::NoFalseInvalid => (verdict.false_invalid > 0).then(|| {
            format!(
                "{} checks called a valid token invalid",
                verdict.false_invalid
            )
        }),
        Require::NotReadyDuringFault => during
            .iter()
            .all(|probe| probe.ready)
            .then(|| "/readyz stayed ready during the fault".into()),
        Require::ReadyAfterHeal => {
            let last = probes.iter().rev().find(|probe| probe.node == 0);
            (!last.is_some_and(|probe| probe.ready))
                .then(|| "/readyz was not ready at the end".into())
        }
        Require::RevocationsSucceed => {
            let refused = history
                .iter()
                .filter(|op| {
                    matches!(op.kind, Kind::Revoke | Kind::RevokeAll)
                        && op.invoke >= fault_at
                        && op.complete <= heal_at
                        && !matches!(op.outcome, Outcome::Ok { .. })
                })
                .count();
            (refused > 0).then(|| format!("{refused} revocations refused during the fault"))
        }
        Require::ReadyzWarnsOfEviction => (!probes.iter().any(|probe| {
            probe
                .body
                .as_ref()
                .is_some_and(|body| body.to_string().contains("maxmemory-policy"))
        }))
        .then(|| "/readyz never warned of the eviction policy".into()),
    }
}
