//! The cases, in the order they run:
//!
//! 1. `self-check`: the settings pass, the store is read, the probe token
//!    is not valid.
//! 2. One case per operation, in the order a session lives: it answers as
//!    the WIT says and keeps to its cost budget.
//! 3. `revoked token`, `expired token`: never valid again.
//! 4. `refresh-revoke race`: 100 refresh/revoke pairs at once; every token
//!    revoked stays revoked.
//! 5. `idempotent revoke`.
//! 6. `malformed and foreign tokens`: not valid, never an error.
//! 7. `loader failure`, `store outage`: errors, never "not valid", and
//!    nothing lost.
//! 8. `single mode`, `max sessions`: exact under 50 racing logins, where
//!    the self-check says the policy keeps them.

use std::collections::BTreeSet;
use std::future::Future;

use super::rig::{Loader, Rig, detail_of};
use super::{CaseReport, Verdict};
use crate::error::Error;
use crate::manager::SessionManager;
use crate::store::Counts;
use crate::types::SelfCheck;

/// Tokens refreshed and revoked at once in the race.
const RACING_PAIRS: usize = 100;
/// Logins of one user at once in the single-mode and max-sessions cases.
const RACING_LOGINS: usize = 50;

/// What an operation may spend, as the WIT's "Cost" lines (and
/// docs/WIT.md) state it: each measured call below names its own.
#[derive(Debug, Clone, Copy)]
struct Budget {
    round_trips: u64,
    commands: u64,
    /// Commands allowed per item (listed token, revoked token, user).
    per_item: u64,
}

const fn budget(round_trips: u64, commands: u64, per_item: u64) -> Budget {
    Budget {
        round_trips,
        commands,
        per_item,
    }
}

/// A case's end short of passing: the text says what broke.
type Broken = String;

fn ensure(holds: bool, broken: impl FnOnce() -> String) -> Result<(), Broken> {
    if holds { Ok(()) } else { Err(broken()) }
}

fn unexpected(what: &str, error: &Error) -> Broken {
    format!("{what} failed: {error}")
}

/// The cases' shared state: the rig and where reports go.
struct Run<'a> {
    rig: &'a Rig,
    record: &'a mut dyn FnMut(CaseReport),
    manager: SessionManager,
}

impl Run<'_> {
    fn report(&mut self, name: &str, verdict: Verdict, detail: String) {
        (self.record)(CaseReport {
            name: name.to_owned(),
            verdict,
            detail,
        });
    }

    fn end(&mut self, name: &str, outcome: Result<String, Broken>) {
        match outcome {
            Ok(detail) => self.report(name, Verdict::Pass, detail),
            Err(broken) => self.report(name, Verdict::Fail, broken),
        }
    }

    /// Runs one operation, counts what it sent, and reports it against
    /// `budget` (`items` of them) with `judge`'s verdict on its answer. The
    /// answer comes back when the judge took it, over budget or not, so
    /// that the cases after it can run.
    async fn measured<T>(
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
    async fn done(
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
fn within(budget: Budget, items: u64, spent: Counts) -> Result<String, Broken> {
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

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Runs every case on `rig`, handing each report to `record`.
pub(super) async fn run(rig: &Rig, record: &mut dyn FnMut(CaseReport)) {
    let manager = rig.manager(Rig::settings(false), Loader::Answers);
    let mut run = Run {
        rig,
        record,
        manager,
    };
    let Some(check) = self_check(&mut run).await else {
        return;
    };
    operations(&mut run).await;
    let outcome = revoked(&run).await;
    run.end("revoked token", outcome);
    let outcome = expired(&run).await;
    run.end("expired token", outcome);
    let outcome = refresh_revoke_race(&run).await;
    run.end("refresh-revoke race", outcome);
    let outcome = idempotent_revoke(&run).await;
    run.end("idempotent revoke", outcome);
    let outcome = malformed(&run, &check).await;
    run.end("malformed and foreign tokens", outcome);
    let outcome = loader_failure(&run).await;
    run.end("loader failure", outcome);
    let outcome = store_outage(&run).await;
    run.end("store outage", outcome);
    single_mode(&mut run).await;
    max_sessions(&mut run, &check).await;
}

async fn self_check(run: &mut Run<'_>) -> Option<SelfCheck> {
    let manager = run.manager.clone();
    let check = run
        .measured(
            "self-check",
            budget(2, 6, 0),
            0,
            manager.self_check(),
            |_| Ok(()),
        )
        .await?;
    // `measured` passed it within budget; a self-check that never reached
    // the store could not have shown the store is there.
    let outcome = async {
        let probe = manager
            .check_token(&check.probe_token)
            .await
            .map_err(|e| unexpected("check-token of the probe token", &e))?;
        ensure(probe.is_none(), || {
            format!("the probe token {:?} is valid", check.probe_token)
        })?;
        Ok(format!(
            "probe token {:?} is not valid; single mode {}; max sessions {}",
            check.probe_token,
            if check.single_mode { "on" } else { "off" },
            check
                .max_sessions
                .map_or_else(|| "unbounded".to_owned(), |max| max.to_string())
        ))
    }
    .await;
    let passed = outcome.is_ok();
    run.end("self-check probe", outcome);
    passed.then_some(check)
}

/// Each operation once, in the order a session lives.
async fn operations(run: &mut Run<'_>) {
    let manager = run.manager.clone();
    let user = run.rig.user("alice");
    let Some(issued) = run
        .measured(
            "set-token",
            budget(2, 8, 0),
            0,
            manager.set_token(&user, 600),
            |issued| ensure(!issued.token.is_empty(), || "an empty token".into()),
        )
        .await
    else {
        return;
    };
    let token = issued.token;
    let is_alice = |user_id: &str, detail: Option<&serde_json::Value>| {
        ensure(user_id == user, || {
            format!("the token's user is {user_id:?}, not {user:?}")
        })?;
        ensure(detail == Some(&detail_of(&user)), || {
            format!("the user's detail is {detail:?}, not the loader's")
        })
    };
    run.measured(
        "check-token",
        budget(1, 4, 0),
        0,
        manager.check_token(&token),
        |checked| match checked {
            Some(found) => {
                ensure(found.id == user, || {
                    format!("the token's user is {:?}", found.id)
                })?;
                ensure(
                    found.token_remain_live_time > 0 && found.token_remain_live_time <= 600,
                    || format!("{}s left of 600", found.token_remain_live_time),
                )
            }
            None => Err("a token just issued is not valid".into()),
        },
    )
    .await;
    let loaded = |found: &Option<crate::types::User>| match found {
        Some(found) => is_alice(&found.id, found.detail.as_ref()),
        None => Err("a token just issued is not valid".into()),
    };
    // The first check loads the user; the second finds it cached.
    for (name, cost) in [
        ("check-token-or-update-user (loading)", budget(2, 6, 0)),
        ("check-token-or-update-user (cached)", budget(1, 5, 0)),
    ] {
        let checked = manager.check_token_or_update_user(&token, 60);
        run.measured(name, cost, 0, checked, loaded).await;
    }
    let asked = now();
    run.measured(
        "refresh-token",
        budget(2, 8, 0),
        0,
        manager.refresh_token(&token, 1200),
        // A policy may cap a refresh at an absolute deadline.
        |expiry| {
            ensure(*expiry > asked && *expiry <= now() + 1201, || {
                format!("expiry {expiry} is not within 1200 s from now ({asked})")
            })
        },
    )
    .await;
    run.measured(
        "list-user-token",
        budget(2, 4, 2),
        1,
        manager.list_user_token(&user),
        // An entry names the token in the policy's own way (the hardened
        // policy by its digest), so only the count is compared.
        |entries| {
            ensure(entries.len() == 1, || {
                format!("lists {} tokens, not the one issued", entries.len())
            })
        },
    )
    .await;
    run.measured(
        "add-user",
        budget(1, 2, 0),
        0,
        manager.add_user(&user, 60),
        |info| is_alice(&info.id, info.detail.as_ref()),
    )
    .await;
    run.done(
        "refresh-user",
        budget(1, 0, 1),
        1,
        manager.refresh_user(std::slice::from_ref(&user), 60),
    )
    .await;
    run.done(
        "delete-user",
        budget(1, 2, 0),
        0,
        manager.delete_user(&user),
    )
    .await;
    run.done(
        "delete-token",
        budget(1, 4, 0),
        0,
        manager.delete_token(&token),
    )
    .await;
    let mut tokens = Vec::new();
    for _ in 0..2 {
        match manager.set_token(&user, 600).await {
            Ok(issued) => tokens.push(issued.token),
            Err(error) => {
                run.end("delete-user-token", Err(unexpected("set-token", &error)));
                return;
            }
        }
    }
    if run
        .done(
            "delete-user-token",
            budget(2, 6, 1),
            2,
            manager.delete_user_token(&user),
        )
        .await
    {
        let outcome = none_valid(&manager, &tokens, "revoked by delete-user-token").await;
        run.end("delete-user-token revokes all", outcome);
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}

/// A token for `user`, valid `ttl` seconds.
async fn login(manager: &SessionManager, user: &str, ttl: i64) -> Result<String, Broken> {
    match manager.set_token(user, ttl).await {
        Ok(issued) => Ok(issued.token),
        Err(error) => Err(unexpected(
            &format!("set-token with a TTL of {ttl} s"),
            &error,
        )),
    }
}

/// That `token` is valid, `when` as the error says.
async fn still_valid(manager: &SessionManager, token: &str, when: &str) -> Result<(), Broken> {
    let checked = manager
        .check_token(token)
        .await
        .map_err(|e| unexpected(&format!("check-token {when}"), &e))?;
    ensure(checked.is_some(), || {
        format!("the token is not valid {when}")
    })
}

/// That none of `tokens` is valid or can be refreshed.
async fn none_valid(
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

async fn revoked(run: &Run<'_>) -> Result<String, Broken> {
    let manager = &run.manager;
    let user = run.rig.user("revoked");
    let token = login(manager, &user, 600).await?;
    manager
        .delete_token(&token)
        .await
        .map_err(|e| unexpected("delete-token", &e))?;
    none_valid(manager, &[token], "revoked").await
}

async fn expired(run: &Run<'_>) -> Result<String, Broken> {
    let manager = &run.manager;
    let user = run.rig.user("expired");
    let token = login(manager, &user, 1).await?;
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    none_valid(manager, &[token], "past its 1 s TTL").await
}

async fn refresh_revoke_race(run: &Run<'_>) -> Result<String, Broken> {
    let manager = &run.manager;
    let mut issued = Vec::with_capacity(RACING_PAIRS);
    for i in 0..RACING_PAIRS {
        let user = run.rig.user(&format!("race-{i}"));
        let token = login(manager, &user, 600).await?;
        issued.push((user, token));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (_, token) in &issued {
        let (refresher, revoker) = (manager.clone(), manager.clone());
        let (first, second) = (token.clone(), token.clone());
        tasks.spawn(async move {
            (
                "refresh",
                refresher.refresh_token(&first, 600).await.map(drop),
            )
        });
        tasks.spawn(async move { ("revoke", revoker.delete_token(&second).await) });
    }
    let (mut refreshed, mut too_late) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(|e| format!("a racing task panicked: {e}"))? {
            ("refresh", Ok(())) => refreshed += 1,
            ("refresh", Err(Error::NotFound)) => too_late += 1,
            (what, Err(error)) => return Err(unexpected(what, &error)),
            (_, Ok(())) => {}
        }
    }
    let tokens: Vec<String> = issued.iter().map(|(_, token)| token.clone()).collect();
    none_valid(manager, &tokens, "revoked in the race").await?;
    for (user, _) in &issued {
        let listed = manager
            .list_user_token(user)
            .await
            .map_err(|e| unexpected("list-user-token", &e))?;
        ensure(listed.is_empty(), || {
            "list-user-token still lists a token revoked in the race".into()
        })?;
    }
    Ok(format!(
        "{RACING_PAIRS} pairs: {refreshed} refreshes won, {too_late} came too late; \
         every token stays revoked and unlisted"
    ))
}

async fn idempotent_revoke(run: &Run<'_>) -> Result<String, Broken> {
    let manager = &run.manager;
    let user = run.rig.user("idempotent");
    let token = login(manager, &user, 600).await?;
    for round in ["first", "second"] {
        manager
            .delete_token(&token)
            .await
            .map_err(|e| unexpected(&format!("the {round} delete-token"), &e))?;
        manager
            .delete_user_token(&user)
            .await
            .map_err(|e| unexpected(&format!("the {round} delete-user-token"), &e))?;
        manager
            .delete_user(&user)
            .await
            .map_err(|e| unexpected(&format!("the {round} delete-user"), &e))?;
    }
    let never = run.rig.user("never-logged-in");
    manager
        .delete_user_token(&never)
        .await
        .map_err(|e| unexpected("delete-user-token of a user without tokens", &e))?;
    Ok("delete-token, delete-user-token and delete-user twice each: ok".into())
}

async fn malformed(run: &Run<'_>, check: &SelfCheck) -> Result<String, Broken> {
    let manager = &run.manager;
    let user = run.rig.user("foreign");
    let live = login(manager, &user, 600).await?;
    let mut flipped = live.clone();
    let last = flipped.pop().unwrap_or('0');
    flipped.push(if last == 'a' { 'b' } else { 'a' });
    let shortened = live[..live.len() - live.chars().last().map_or(0, char::len_utf8)].to_owned();
    let candidates: BTreeSet<String> = [
        "x".to_owned(),
        "not a token".to_owned(),
        "_".to_owned(),
        "🙂_🙂".to_owned(),
        format!("{live}0"),
        flipped,
        shortened,
        format!("{user}_{}", "0".repeat(32)),
        format!("{user}_{}", "0".repeat(64)),
        format!("{}x", check.probe_token),
    ]
    .into_iter()
    .filter(|candidate| candidate != &live)
    .collect();
    for token in &candidates {
        let checked = manager
            .check_token(token)
            .await
            .map_err(|e| format!("check-token of {token:?} is an error, not \"not valid\": {e}"))?;
        ensure(checked.is_none(), || format!("{token:?} is valid"))?;
        let with_user = manager
            .check_token_or_update_user(token, 60)
            .await
            .map_err(|e| {
                format!(
                    "check-token-or-update-user of {token:?} is an error, not \"not valid\": {e}"
                )
            })?;
        ensure(with_user.is_none(), || {
            format!("{token:?} is valid with its user")
        })?;
        match manager.refresh_token(token, 600).await {
            Err(Error::NotFound) => {}
            Ok(_) => return Err(format!("{token:?} was refreshed")),
            Err(error) => return Err(unexpected(&format!("refresh-token of {token:?}"), &error)),
        }
        manager
            .delete_token(token)
            .await
            .map_err(|e| unexpected(&format!("delete-token of {token:?}"), &e))?;
    }
    match manager.check_token("").await {
        Err(Error::InvalidArgument(_)) => {}
        other => {
            return Err(format!(
                "check-token of \"\" gave {other:?}, not invalid-argument"
            ));
        }
    }
    still_valid(manager, &live, "once its look-alikes were revoked").await?;
    Ok(format!(
        "{} look-alike tokens: not valid, not refreshable, revoked without error; \
         the real one still valid; \"\" is invalid-argument",
        candidates.len()
    ))
}

async fn loader_failure(run: &Run<'_>) -> Result<String, Broken> {
    let failing = run.rig.manager(Rig::settings(false), Loader::Fails);
    let user = run.rig.user("unloadable");
    let token = login(&failing, &user, 600).await?;
    let is_loader = |what: &str, outcome: Result<(), Error>| match outcome {
        Err(Error::Loader(_)) => Ok(()),
        Ok(()) => Err(format!("{what} succeeded though the loader failed")),
        Err(error) => Err(format!("{what} gave {error}, not a loader error")),
    };
    is_loader(
        "check-token-or-update-user",
        failing
            .check_token_or_update_user(&token, 60)
            .await
            .map(drop),
    )?;
    is_loader("add-user", failing.add_user(&user, 60).await.map(drop))?;
    is_loader(
        "refresh-user",
        failing.refresh_user(std::slice::from_ref(&user), 60).await,
    )?;
    still_valid(&failing, &token, "after the loader failed").await?;
    Ok(
        "check-token-or-update-user, add-user and refresh-user are loader errors; \
        the token stays valid"
            .into(),
    )
}

async fn store_outage(run: &Run<'_>) -> Result<String, Broken> {
    let manager = &run.manager;
    let user = run.rig.user("outage");
    let token = login(manager, &user, 600).await?;
    let down = run.rig.unreachable();
    let ids = [user.clone()];
    let outcomes: [(&str, Result<(), Error>); 10] = [
        ("check-token", down.check_token(&token).await.map(drop)),
        (
            "check-token-or-update-user",
            down.check_token_or_update_user(&token, 60).await.map(drop),
        ),
        ("set-token", down.set_token(&user, 600).await.map(drop)),
        (
            "refresh-token",
            down.refresh_token(&token, 600).await.map(drop),
        ),
        ("delete-token", down.delete_token(&token).await),
        (
            "list-user-token",
            down.list_user_token(&user).await.map(drop),
        ),
        ("delete-user-token", down.delete_user_token(&user).await),
        ("add-user", down.add_user(&user, 60).await.map(drop)),
        ("refresh-user", down.refresh_user(&ids, 60).await),
        ("delete-user", down.delete_user(&user).await),
    ];
    for (what, outcome) in outcomes {
        match outcome {
            Err(Error::Store(_)) => {}
            Ok(()) => return Err(format!("{what} succeeded with the store down")),
            Err(error) => return Err(format!("{what} gave {error}, not a store error")),
        }
    }
    still_valid(manager, &token, "on the store that answers").await?;
    Ok(
        "every operation is a store error when the store cannot be reached; the \
        token is valid on the store that answers"
            .into(),
    )
}

/// Logins of one user at once on `manager`: the tokens issued, and how
/// many lost to concurrent writers (conflict) and gave up.
async fn racing_logins(
    manager: &SessionManager,
    user: &str,
) -> Result<(Vec<String>, usize), Broken> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..RACING_LOGINS {
        let (manager, user) = (manager.clone(), user.to_owned());
        tasks.spawn(async move { manager.set_token(&user, 600).await });
    }
    let (mut tokens, mut conflicts) = (Vec::new(), 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(|e| format!("a racing login panicked: {e}"))? {
            Ok(issued) => tokens.push(issued.token),
            Err(Error::Conflict(_)) => conflicts += 1,
            Err(error) => return Err(unexpected("set-token", &error)),
        }
    }
    Ok((tokens, conflicts))
}

/// How many of `tokens` are valid, once `user`'s list shows as many.
async fn live_after_race(
    manager: &SessionManager,
    user: &str,
    tokens: &[String],
) -> Result<usize, Broken> {
    let mut valid = 0;
    for token in tokens {
        let checked = manager
            .check_token(token)
            .await
            .map_err(|e| unexpected("check-token", &e))?;
        valid += usize::from(checked.is_some());
    }
    let listed = manager
        .list_user_token(user)
        .await
        .map_err(|e| unexpected("list-user-token", &e))?
        .len();
    ensure(listed == valid, || {
        format!("list-user-token lists {listed} tokens, but {valid} are valid")
    })?;
    Ok(valid)
}

async fn single_mode(run: &mut Run<'_>) {
    const NAME: &str = "single mode";
    let single = run.rig.manager(Rig::settings(true), Loader::Answers);
    match single.self_check().await {
        Ok(check) if check.single_mode => {}
        Ok(_) => {
            let why = "the policy's self-check says it does not keep single mode".into();
            return run.report(NAME, Verdict::Skip, why);
        }
        Err(Error::InvalidArgument(why)) => {
            let why = format!("the policy does not take single mode: {why}");
            return run.report(NAME, Verdict::Skip, why);
        }
        Err(error) => return run.end(NAME, Err(unexpected("self-check in single mode", &error))),
    }
    let user = run.rig.user("single");
    let outcome = async {
        let (tokens, conflicts) = racing_logins(&single, &user).await?;
        ensure(!tokens.is_empty(), || "every racing login gave up".into())?;
        let live = live_after_race(&single, &user, &tokens).await?;
        ensure(live == 1, || {
            format!(
                "{live} of the {} tokens issued are valid, not 1",
                tokens.len()
            )
        })?;
        Ok(format!(
            "{RACING_LOGINS} racing logins: {} issued, {conflicts} gave up, exactly 1 valid",
            tokens.len()
        ))
    }
    .await;
    run.end(NAME, outcome);
}

async fn max_sessions(run: &mut Run<'_>, check: &SelfCheck) {
    const NAME: &str = "max sessions";
    let Some(max) = check.max_sessions else {
        let why = "the policy sets no bound under this config".into();
        return run.report(NAME, Verdict::Skip, why);
    };
    let user = run.rig.user("bounded");
    let manager = run.manager.clone();
    let outcome = async {
        let (tokens, conflicts) = racing_logins(&manager, &user).await?;
        let expected = tokens.len().min(max as usize);
        let live = live_after_race(&manager, &user, &tokens).await?;
        ensure(live == expected, || {
            format!(
                "{live} of the {} tokens issued are valid, not {expected} (max sessions {max})",
                tokens.len()
            )
        })?;
        Ok(format!(
            "{RACING_LOGINS} racing logins: {} issued, {conflicts} gave up, exactly {expected} \
             valid (max sessions {max})",
            tokens.len()
        ))
    }
    .await;
    run.end(NAME, outcome);
}
