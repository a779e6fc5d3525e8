//! User ids, bad input, settings and prefixes.

use dsession::store::{Command, HashSetArgs, Reply, SetArgs, SetCondition};
use dsession::{Error, Settings};

use crate::support::{Env, HEX32, now, valid_user};

pub(super) async fn tokens_of_long_user_ids_work_up_to_the_bound_and_longer_is_an_error(env: Env) {
    let sessions = env.manager();
    for len in [300, 1024] {
        let id = "u".repeat(len);
        let issued = sessions.set_token(&id, 60).await.unwrap();
        assert_eq!(valid_user(&sessions, &issued.token).await.id, id);
        sessions.refresh_token(&issued.token, 120).await.unwrap();
        assert_eq!(sessions.list_user_token(&id).await.unwrap().len(), 1);
    }
    // A token gosession issued for a 300-byte e-mail address.
    let email = format!("{}@example.com", "f".repeat(288));
    let token = format!("{email}_{HEX32}");
    env.raw(vec![
        Command::Set(SetArgs {
            key: format!("gosession-token_{token}"),
            value: format!("gosession-user_{email}"),
            ttl_seconds: 60,
            condition: SetCondition::Always,
        }),
        Command::HashSet(HashSetArgs {
            key: format!("gosession-token_{email}"),
            fields: vec![(token.clone(), (now() + 60).to_string())],
        }),
    ])
    .await;
    assert_eq!(valid_user(&sessions, &token).await.id, email);

    let too_long = "u".repeat(1025);
    let forged = format!("{too_long}_{HEX32}");
    for outcome in [
        sessions.set_token(&too_long, 60).await.map(drop),
        sessions.check_token(&forged).await.map(drop),
        sessions
            .check_token_or_update_user(&forged, 60)
            .await
            .map(drop),
        sessions.refresh_token(&forged, 60).await.map(drop),
        sessions.delete_token(&forged).await,
        sessions.list_user_token(&too_long).await.map(drop),
    ] {
        match outcome {
            Err(Error::InvalidArgument(message)) => assert!(message.contains("1024"), "{message}"),
            other => panic!("expected invalid argument naming the bound, got {other:?}"),
        }
    }
}

pub(super) async fn ids_a_header_cannot_carry_are_rejected_at_creation(env: Env) {
    let sessions = env.manager();
    for id in ["a\r\nb", "a\nb", "a\0b", " alice", "alice ", "alice\t"] {
        match sessions.set_token(id, 60).await {
            Err(Error::InvalidArgument(message)) => {
                assert!(message.contains("user id"), "{message}")
            }
            other => panic!("user id {id:?}: expected invalid argument, got {other:?}"),
        }
        assert!(env.hash(&format!("gosession-token_{id}")).await.is_empty());
    }
    let inner_space = sessions.set_token("józef kowalski", 60).await.unwrap();
    assert!(
        sessions
            .check_token(&inner_space.token)
            .await
            .unwrap()
            .is_some()
    );
}

pub(super) async fn a_key_of_the_wrong_type_is_corrupt_data_not_an_outage(env: Env) {
    let sessions = env.manager();
    let issued = sessions.set_token("alice", 60).await.unwrap();
    env.raw(vec![
        Command::Del(vec!["gosession-token_alice".into()]),
        Command::Set(SetArgs {
            key: "gosession-token_alice".into(),
            value: "not a hash".into(),
            ttl_seconds: 0,
            condition: SetCondition::Always,
        }),
    ])
    .await;
    match sessions.check_token(&issued.token).await {
        Err(Error::Corrupt(message)) => assert!(message.contains("WRONGTYPE"), "{message}"),
        other => panic!("expected corrupt data, got {other:?}"),
    }
    env.store.ready().await.unwrap();
}

pub(super) async fn user_ids_may_contain_underscores(env: Env) {
    let sessions = env.manager();
    let issued = sessions.set_token("a_b_c", 60).await.unwrap();
    assert!(issued.token.starts_with("a_b_c_"));
    assert_eq!(valid_user(&sessions, &issued.token).await.id, "a_b_c");
    assert_eq!(env.hash("gosession-token_a_b_c").await.len(), 1);
    assert_eq!(sessions.list_user_token("a_b_c").await.unwrap().len(), 1);
    assert!(sessions.list_user_token("a_b").await.unwrap().is_empty());
    sessions.delete_user_token("a_b_c").await.unwrap();
    assert_eq!(sessions.check_token(&issued.token).await.unwrap(), None);
}

pub(super) async fn bad_input_gets_a_clear_error_and_writes_nothing(env: Env) {
    let sessions = env.manager();
    let long = "x".repeat(1025);
    let colliding = format!("bob_{HEX32}");
    for id in ["", long.as_str(), colliding.as_str()] {
        for outcome in [
            sessions.set_token(id, 60).await.map(drop),
            sessions.list_user_token(id).await.map(drop),
            sessions.delete_user_token(id).await,
            sessions.add_user(id, 60).await.map(drop),
            sessions.delete_user(id).await,
            sessions.refresh_user(&["ok".into(), id.into()], 60).await,
        ] {
            match outcome {
                Err(Error::InvalidArgument(message)) => {
                    assert!(message.contains("user id"), "{message}")
                }
                other => panic!("user id {id:?}: expected invalid argument, got {other:?}"),
            }
        }
    }
    let issued = sessions.set_token("alice", 60).await.unwrap();
    for outcome in [
        sessions.set_token("alice", -1).await.map(drop),
        sessions.set_token("alice", i64::MAX).await.map(drop),
        sessions.refresh_token(&issued.token, -5).await.map(drop),
        sessions
            .check_token_or_update_user(&issued.token, -1)
            .await
            .map(drop),
        sessions.add_user("alice", -1).await.map(drop),
    ] {
        match outcome {
            Err(Error::InvalidArgument(message)) => assert!(message.contains("ttl"), "{message}"),
            other => panic!("expected invalid argument, got {other:?}"),
        }
    }
    assert_eq!(env.hash("gosession-token_alice").await.len(), 1);
    assert_eq!(env.ttl("gosession-user_alice").await, -2);
    assert_eq!(
        env.ttl("gosession-user_ok").await,
        -2,
        "refresh-user checks every id first"
    );
    assert!(
        env.hash(&format!("gosession-token_{colliding}"))
            .await
            .is_empty()
    );
}

pub(super) async fn bad_settings_are_an_invalid_argument(env: Env) {
    let sessions = env.manager_with(Settings {
        default_expire_seconds: 0,
        ..Settings::default()
    });
    assert!(matches!(
        sessions.set_token("alice", 60).await,
        Err(Error::InvalidArgument(_))
    ));
    let sessions = env.manager_with(Settings {
        token_key_prefix: String::new(),
        ..Settings::default()
    });
    assert!(matches!(
        sessions.check_token(&format!("a_{HEX32}")).await,
        Err(Error::InvalidArgument(_))
    ));
}

pub(super) async fn configured_prefixes_are_used_with_underscores_replaced(env: Env) {
    let sessions = env.manager_with(Settings {
        token_key_prefix: "my_tok".into(),
        user_key_prefix: "my_usr".into(),
        ..Settings::default()
    });
    let issued = sessions.set_token("alice", 60).await.unwrap();
    let value = env
        .raw(vec![Command::Get(format!("my-tok_{}", issued.token))])
        .await;
    assert_eq!(value, vec![Reply::Text("my-usr_alice".into())]);
    assert_eq!(env.hash("my-tok_alice").await.len(), 1);
    assert!(sessions.check_token(&issued.token).await.unwrap().is_some());
    assert_eq!(
        env.manager().check_token(&issued.token).await.unwrap(),
        None,
        "other prefixes see nothing"
    );
}
