//! The cases that race: refreshes against revokes, and logins of one
//! user under single mode and a session bound.

use super::Verdict;
use super::rig::{Loader, Rig};
use super::run::{Broken, Run, ensure, login, none_valid, unexpected};
use crate::error::Error;
use crate::manager::SessionManager;
use crate::types::SelfCheck;

/// Tokens refreshed and revoked at once in the race.
const RACING_PAIRS: usize = 100;
/// Logins of one user at once in the single-mode and max-sessions cases.
const RACING_LOGINS: usize = 50;

pub(super) async fn refresh_revoke_race(run: &Run<'_>) -> Result<String, Broken> {
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
            let refreshed = refresher.refresh_token(&first, 600).await.map(drop);
            ("refresh", first, refreshed)
        });
        tasks.spawn(async move {
            let revoked = revoker.delete_token(&second).await;
            ("revoke", second, revoked)
        });
    }
    let (mut refreshed, mut too_late) = (0, 0);
    // Calls the store did not answer in time (a slow policy on a loaded
    // machine): their outcome is unknown, which breaks no rule, so the
    // revokes among them are made again before the check.
    let (mut unknown, mut revoke_again) = (Vec::new(), Vec::new());
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(|e| format!("a racing task panicked: {e}"))? {
            ("refresh", _, Ok(())) => refreshed += 1,
            ("refresh", _, Err(Error::NotFound)) => too_late += 1,
            (what, token, Err(error)) if error.is_unavailable() => {
                if what == "revoke" {
                    revoke_again.push(token);
                }
                unknown.push(error);
            }
            (what, _, Err(error)) => return Err(unexpected(what, &error)),
            (_, _, Ok(())) => {}
        }
    }
    ensure(unknown.len() <= RACING_PAIRS / 2, || {
        format!(
            "{} of {} racing calls could not reach the store, too many for the race to \
             show anything; the first: {}",
            unknown.len(),
            2 * RACING_PAIRS,
            unknown[0]
        )
    })?;
    for token in &revoke_again {
        manager
            .delete_token(token)
            .await
            .map_err(|e| unexpected("revoke after an unknown outcome", &e))?;
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
    let unknown = match unknown.len() {
        0 => String::new(),
        count => format!(" ({count} calls timed out, their outcome unknown)"),
    };
    Ok(format!(
        "{RACING_PAIRS} pairs: {refreshed} refreshes won, {too_late} came too late{unknown}; \
         every token stays revoked and unlisted"
    ))
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

pub(super) async fn single_mode(run: &mut Run<'_>) {
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

pub(super) async fn max_sessions(run: &mut Run<'_>, check: &SelfCheck) {
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
