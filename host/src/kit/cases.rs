//! The cases, in the order they run:
//!
//! 1. `self-check`: the settings pass, the store is read, the probe token
//!    is not valid.
//! 2. One case per operation, in the order a session lives: it answers as
//!    the WIT says and keeps to its cost budget.
//! 3. `revoked token`, `expired token`: never valid again.
//! 4. `refresh-revoke race`: 100 refresh/revoke pairs at once; every token
//!    revoked stays revoked.
//! 5. `idempotent revoke`; `pages`: list-user-token page by page lists
//!    every token once, and refuses a cursor it did not make; which of a
//!    login's attributes the policy keeps is reported.
//! 6. `malformed and foreign tokens`: not valid, never an error.
//! 7. `loader failure`, `store outage`: errors, never "not valid", and
//!    nothing lost.
//! 8. `single mode`, `max sessions`: exact under 50 racing logins, where
//!    the self-check says the policy keeps them.

use std::collections::BTreeSet;

use super::CaseReport;
use super::operations::{every_attribute, operations, self_check};
use super::races::{max_sessions, refresh_revoke_race, single_mode};
use super::rig::{Loader, Rig};
use super::run::{Broken, Run, ensure, login, none_valid, still_valid, unexpected};
use crate::error::Error;
use crate::types::{PageRequest, SelfCheck};

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
    let outcome = pages(&run, &check).await;
    run.end("pages", outcome);
    let outcome = malformed(&run, &check).await;
    run.end("malformed and foreign tokens", outcome);
    let outcome = loader_failure(&run).await;
    run.end("loader failure", outcome);
    let outcome = store_outage(&run).await;
    run.end("store outage", outcome);
    single_mode(&mut run).await;
    max_sessions(&mut run, &check).await;
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

/// Tokens listed two at a time: each once, none left out, and a cursor the
/// policy did not make refused. Five tokens, or as many as the policy's
/// session bound keeps.
async fn pages(run: &Run<'_>, check: &SelfCheck) -> Result<String, Broken> {
    let bound = check.max_sessions.map_or(usize::MAX, |max| max as usize);
    let tokens = bound.min(5);
    let manager = &run.manager;
    let user = run.rig.user("paged");
    let mut issued = BTreeSet::new();
    for _ in 0..tokens {
        let token = manager
            .set_token_with(&user, 600, &every_attribute())
            .await
            .map_err(|e| unexpected("set-token", &e))?;
        issued.insert(token.token);
    }
    let mut listed = Vec::new();
    let mut page = PageRequest {
        cursor: None,
        limit: 2,
    };
    let mut pages = 0;
    loop {
        let got = manager
            .list_user_token_page(&user, &page)
            .await
            .map_err(|e| unexpected(&format!("list-user-token page {}", pages + 1), &e))?;
        pages += 1;
        ensure(got.tokens.len() <= 2, || {
            format!(
                "page {pages} lists {} tokens, past its limit of 2",
                got.tokens.len()
            )
        })?;
        listed.extend(got.tokens);
        match got.next_cursor {
            Some(cursor) if pages <= tokens => page.cursor = Some(cursor),
            Some(_) => return Err(format!("{pages} pages of 2 and still a next cursor")),
            None => break,
        }
    }
    let names: BTreeSet<&str> = listed.iter().map(|entry| entry.token.as_str()).collect();
    ensure(names.len() == listed.len(), || {
        "a token is listed on two pages".into()
    })?;
    ensure(listed.len() == tokens, || {
        format!(
            "the pages list {} tokens, not the {tokens} issued",
            listed.len()
        )
    })?;
    let foreign = PageRequest {
        cursor: Some("not a cursor this policy made".into()),
        limit: 2,
    };
    match manager.list_user_token_page(&user, &foreign).await {
        Err(Error::InvalidArgument(_)) => {}
        Ok(_) => return Err("a foreign cursor was read".into()),
        Err(error) => return Err(unexpected("list-user-token with a foreign cursor", &error)),
    }
    let given = every_attribute();
    let first = &listed[0].attributes;
    let kept: Vec<&str> = [
        (
            "device",
            first.device.is_some() && first.device == given.device,
        ),
        ("user agent", first.user_agent == given.user_agent),
        ("ip", first.ip == given.ip),
        ("labels", first.labels == given.labels),
        ("created-at", listed[0].created_at.is_some()),
        ("last-seen", listed[0].last_seen.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, kept)| kept.then_some(name))
    .collect();
    let kept = match kept.is_empty() {
        true => "none".to_owned(),
        false => kept.join(", "),
    };
    Ok(format!(
        "{tokens} tokens on {pages} pages of 2, each once; a foreign cursor is refused; keeps: {kept}"
    ))
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
