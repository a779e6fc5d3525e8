//! The self-check, and each operation once in the order a session lives,
//! against its cost budget.

use super::rig::detail_of;
use super::run::{Run, budget, ensure, none_valid, now, unexpected};
use crate::types::{SelfCheck, SessionAttributes};

/// A login's every attribute, at their bounds' middle: what the kit's
/// first login says of itself.
pub(super) fn every_attribute() -> SessionAttributes {
    SessionAttributes {
        device: Some("kit laptop".into()),
        user_agent: Some("dsession-policy-kit/1 (conformance)".into()),
        ip: Some("192.0.2.7".into()),
        labels: [("kit".to_owned(), "conformance".to_owned())].into(),
    }
}

pub(super) async fn self_check(run: &mut Run<'_>) -> Option<SelfCheck> {
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
pub(super) async fn operations(run: &mut Run<'_>) {
    let manager = run.manager.clone();
    let user = run.rig.user("alice");
    let Some(issued) = run
        .measured(
            "set-token",
            budget(2, 10, 0),
            0,
            manager.set_token_with(&user, 600, &every_attribute()),
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
        budget(2, 4, 3),
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
