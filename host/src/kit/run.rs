//! What every case shares: the run's state and reports, cost budgets,
//! and the checks cases make of tokens.

use std::future::Future;

use super::rig::Rig;
use super::{CaseReport, Verdict};
use crate::error::Error;
use crate::manager::SessionManager;
use crate::store::Counts;

/// What an operation may spend, as the WIT's "Cost" lines (and
/// docs/WIT.md) state it: each measured call below names its own.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    round_trips: u64,
    commands: u64,
    /// Commands allowed per item (listed token, revoked token, user).
    per_item: u64,
}

pub(super) const fn budget(round_trips: u64, commands: u64, per_item: u64) -> Budget {
    Budget {
        round_trips,
        commands,
        per_item,
    }
}

/// A case's end short of passing: the text says what broke.
pub(super) type Broken = String;

pub(super) fn ensure(holds: bool, broken: impl FnOnce() -> String) -> Result<(), Broken> {
    if holds { Ok(()) } else { Err(broken()) }
}

pub(super) fn unexpected(what: &str, error: &Error) -> Broken {
    format!("{what} failed: {error}")
}

/// The cases' shared state: the rig and where reports go.
pub(super) struct Run<'a> {
    pub(super) rig: &'a Rig,
    pub(super) record: &'a mut dyn FnMut(CaseReport),
    pub(super) manager: SessionManager,
}

impl Run<'_> {
    pub(super) fn report(&mut self, name: &str, verdict: Verdict, detail: String) {
        (self.record)(CaseReport {
            name: name.to_owned(),
            verdict,
            detail,
        });
    }

    pub(super) fn end(&mut self, name: &str, outcome: Result<String, Broken>) {
        match outcome {
            Ok(detail) => self.report(name, Verdict::Pass, detail),
            Err(broken) => self.report(name, Verdict::Fail, broken),
        }
    }

    /// Runs one operation, counts what it sent, and reports it against
    /// `budget` (`items` of them) with `judge`'s verdict on its answer. The
    /// answer comes back when the judge took it, over budget or not, so
    /// that the cases after it can run.
    pub(super) async fn measured<T>(
        &mut self,
        name: &str,
        budget: Budget,
        items: u64,
        operation: impl Future<Output = crate::Result<T>>,
        judge: impl FnOnce(&T) -> Result<(), Broken>,
    ) -> Option<T> {
        self.rig.counts();
        let answer = operation.await;
        let spent = self.rig.counts();
        let judged = match &answer {
            Ok(answer) => judge(answer),
            Err(error) => Err(unexpected(name, error)),
        };
        let judged_well = judged.is_ok();
        self.end(name, judged.and_then(|()| within(budget, items, spent)));
        answer.ok().filter(|_| judged_well)
    }

    /// [`Self::measured`] for an operation whose answer is only "done".
    pub(super) async fn done(
        &mut self,
        name: &str,
        budget: Budget,
        items: u64,
        operation: impl Future<Output = crate::Result<()>>,
    ) -> bool {
        let answer = self.measured(name, budget, items, operation, |()| Ok(()));
        answer.await.is_some()
    }
}

/// `spent` against `budget`, as a report's detail.
pub(super) fn within(budget: Budget, items: u64, spent: Counts) -> Result<String, Broken> {
    let commands = budget.commands + budget.per_item * items;
    let line = format!(
        "{}, {} (budget {}, {commands})",
        plural(spent.round_trips, "round trip"),
        plural(spent.commands, "command"),
        budget.round_trips
    );
    ensure(
        spent.round_trips <= budget.round_trips && spent.commands <= commands,
        || format!("over budget: {line}"),
    )?;
    Ok(line)
}

pub(super) fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}

/// A token for `user`, valid `ttl` seconds.
pub(super) async fn login(
    manager: &SessionManager,
    user: &str,
    ttl: i64,
) -> Result<String, Broken> {
    match manager.set_token(user, ttl).await {
        Ok(issued) => Ok(issued.token),
        Err(error) => Err(unexpected(
            &format!("set-token with a TTL of {ttl} s"),
            &error,
        )),
    }
}

/// That `token` is valid, `when` as the error says.
pub(super) async fn still_valid(
    manager: &SessionManager,
    token: &str,
    when: &str,
) -> Result<(), Broken> {
    let checked = manager
        .check_token(token)
        .await
        .map_err(|e| unexpected(&format!("check-token {when}"), &e))?;
    ensure(checked.is_some(), || {
        format!("the token is not valid {when}")
    })
}

/// That none of `tokens` is valid or can be refreshed.
pub(super) async fn none_valid(
    manager: &SessionManager,
    tokens: &[String],
    why: &str,
) -> Result<String, Broken> {
    for token in tokens {
        let checked = manager
            .check_token(token)
            .await
            .map_err(|e| unexpected("check-token", &e))?;
        ensure(checked.is_none(), || format!("a token {why} is valid"))?;
        match manager.refresh_token(token, 600).await {
            Err(Error::NotFound) => {}
            Ok(_) => return Err(format!("a token {why} was refreshed")),
            Err(error) => return Err(unexpected("refresh-token", &error)),
        }
    }
    let count = u64::try_from(tokens.len()).unwrap_or(u64::MAX);
    Ok(format!(
        "{} {why}: not valid, not refreshable",
        plural(count, "token")
    ))
}
