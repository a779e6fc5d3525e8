//! Concurrency properties, tested with many tasks at once.

use std::sync::Arc;

use dsession::store::{Command, Reply};
use dsession::{Error, Settings};

use crate::support::{Env, listed, on_every_store};

async fn single_mode_leaves_exactly_one_valid_token_when_50_logins_race(env: Env) {
    let sessions = Arc::new(env.manager_with(Settings {
        single_mode: true,
        ..Settings::default()
    }));
    for round in 0..20 {
        let user = format!("user{round}");
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let sessions = Arc::clone(&sessions);
                let user = user.clone();
                tokio::spawn(async move { sessions.set_token(&user, 600).await })
            })
            .collect();
        let mut tokens = Vec::new();
        for task in tasks {
            tokens.push(task.await.unwrap().unwrap().token);
        }
        let mut valid = Vec::new();
        for token in &tokens {
            if sessions.check_token(token).await.unwrap().is_some() {
                valid.push(token.clone());
            }
        }
        assert_eq!(valid.len(), 1, "round {round}: valid tokens {valid:?}");
        let listed = sessions.list_user_token(&user).await.unwrap();
        assert_eq!(listed.len(), 1, "round {round}");
        assert_eq!(listed[0].token, valid[0]);
    }
}

async fn refresh_racing_delete_revives_no_token(env: Env) {
    let sessions = Arc::new(env.manager());
    let mut tokens = Vec::new();
    for i in 0..100 {
        tokens.push(
            sessions
                .set_token(&format!("user{}", i % 10), 600)
                .await
                .unwrap()
                .token,
        );
    }
    let mut tasks = Vec::new();
    for token in &tokens {
        for refresh_first in [true, false] {
            let sessions = Arc::clone(&sessions);
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                if refresh_first {
                    match sessions.refresh_token(&token, 3600).await {
                        Ok(_) | Err(Error::NotFound) => {}
                        Err(other) => panic!("refresh failed: {other}"),
                    }
                } else {
                    sessions.delete_token(&token).await.unwrap();
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    for token in &tokens {
        assert_eq!(
            sessions.check_token(token).await.unwrap(),
            None,
            "{token} came back"
        );
        assert_eq!(
            sessions.refresh_token(token, 60).await,
            Err(Error::NotFound)
        );
    }
    let keys: Vec<Command> = tokens
        .iter()
        .map(|token| Command::Exists(vec![format!("gosession-token_{token}")]))
        .collect();
    assert!(
        env.raw(keys)
            .await
            .iter()
            .all(|reply| *reply == Reply::Integer(0))
    );
    for user in 0..10 {
        assert!(
            sessions
                .list_user_token(&format!("user{user}"))
                .await
                .unwrap()
                .is_empty()
        );
    }
}

async fn concurrent_logins_without_single_mode_all_stay_valid(env: Env) {
    let sessions = Arc::new(env.manager());
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let sessions = Arc::clone(&sessions);
            tokio::spawn(async move { sessions.set_token("alice", 600).await.unwrap().token })
        })
        .collect();
    let mut tokens = Vec::new();
    for task in tasks {
        tokens.push(task.await.unwrap());
    }
    tokens.sort();
    let listed = listed(&sessions, "alice").await;
    assert_eq!(listed, tokens);
}

on_every_store!(
    single_mode_leaves_exactly_one_valid_token_when_50_logins_race,
    refresh_racing_delete_revives_no_token,
    concurrent_logins_without_single_mode_all_stay_valid,
);
