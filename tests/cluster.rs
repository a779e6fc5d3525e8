//! Redis Cluster: three masters and three replicas started by the tests.
//! Slots and their limits, a policy whose layout does not fit refused at
//! start, a master killed under load, a slot moved under load.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dsession::store::{
    ClusterConfig, ClusterStore, Command, Reply, ServerSettings, SetArgs, SetCondition,
    StoreConfig, key_slot,
};
use dsession::{Error, Policy, SessionManager, Settings, SlotLayoutError, check_slot_layout};
use dsession_service::{ServeConfig, build_state};

use dsession_tests::TestCertificates;

use crate::support::failover::{
    Failover, Load, Seen, WORKERS, assert_nothing_lost, first_success, revoked_tokens,
};
use crate::support::{
    Env, Kind, RedisCluster, add_acl_user, assert_names_both_address_forms, cluster_config,
    hardened_policy, tls_client_files,
};

/// How long a failover may take, from killing a master to the first call
/// that succeeds on its slots: 1 s until the others declare it failed, then
/// the replica's election.
const FAILOVER_LIMIT: Duration = Duration::from_secs(15);

fn set(key: &str, value: &str) -> Command {
    Command::Set(SetArgs {
        key: key.into(),
        value: value.into(),
        ttl_seconds: 600,
        condition: SetCondition::Always,
    })
}

/// A user whose keys the hardened policy puts in a slot served by the
/// master on `port` (its keys carry the hash tag `{id}`).
fn user_on(cluster: &RedisCluster, port: u16, name: &str) -> String {
    (0..)
        .map(|i| format!("{name}{i}"))
        .find(|user| cluster.master_of(key_slot(user)) == port)
        .unwrap()
}

fn serve_config(cluster: &RedisCluster, policy: Option<&str>) -> ServeConfig {
    let mut config = ServeConfig {
        store: StoreConfig::Cluster(cluster_config(cluster)),
        ..ServeConfig::default()
    };
    config.policy.path = policy.map(Into::into);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_policy_is_refused_at_start_saying_why_and_which_policy_to_use() {
    let cluster = RedisCluster::start();
    let refused = build_state(&serve_config(&cluster, None))
        .await
        .unwrap_err();
    let message = format!("{refused:#}");
    assert!(
        message.contains("cannot run on a Redis Cluster")
            && message.contains("keys for one user fall in different slots")
            && message.contains("--policy hardened"),
        "{message}"
    );
    assert!(message.contains(" in slot "), "names the slots: {message}");

    let state = build_state(&serve_config(&cluster, Some("hardened")))
        .await
        .unwrap();
    let issued = state.sessions().set_token("alice", 60).await.unwrap();
    assert!(
        state
            .sessions()
            .check_token(&issued.token)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn the_layout_check_refuses_the_default_policy_in_both_modes_and_takes_the_hardened_one() {
    let config = BTreeMap::new();
    for single_mode in [false, true] {
        let settings = Settings {
            single_mode,
            ..Settings::default()
        };
        let refused = check_slot_layout(&Policy::builtin().unwrap(), &settings, &config).await;
        match refused {
            Err(SlotLayoutError::CrossSlot(cross)) => {
                assert_eq!(cross.operation, "set-token");
                let slots: Vec<u16> = cross.keys.iter().map(|(_, slot)| *slot).collect();
                assert!(slots.windows(2).any(|w| w[0] != w[1]), "{cross:?}");
            }
            other => panic!("single mode {single_mode}: {other:?}"),
        }
        check_slot_layout(&hardened_policy(), &settings, &config)
            .await
            .unwrap();
    }
    let limited = BTreeMap::from([("max_sessions".to_owned(), "2".to_owned())]);
    check_slot_layout(&hardened_policy(), &Settings::default(), &limited)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomic_steps_and_transactions_over_two_slots_fail_naming_the_slots_and_apply_nothing() {
    let env = Env::new(Kind::Cluster).await;
    let store = &env.store;
    let (a, b) = ("{alice}:a", "{bob}:b");
    let slots = |message: &str| {
        message.contains(&format!("\"{a}\" in slot {}", key_slot(a)))
            && message.contains(&format!("\"{b}\" in slot {}", key_slot(b)))
    };

    let refused = store.atomic(vec![set(a, "1"), set(b, "1")]).await;
    let message = refused.unwrap_err().to_string();
    assert!(slots(&message), "{message}");

    let refused = store
        .watch(vec![a.into()], vec![Command::Get(b.into())])
        .await;
    let message = refused.err().unwrap().to_string();
    assert!(slots(&message), "{message}");

    let (transaction, _) = store
        .watch(vec![a.into()], vec![Command::Get(a.into())])
        .await
        .unwrap();
    let refused = transaction.commit(vec![set(a, "1"), set(b, "1")]).await;
    let message = refused.unwrap_err().to_string();
    assert!(slots(&message), "{message}");

    let read = store
        .batch(vec![Command::Exists(vec![a.into(), b.into()])])
        .await
        .unwrap();
    assert_eq!(read, [Reply::Integer(0)], "nothing was applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_spans_slots_keeps_each_keys_order_and_adds_up_split_counts() {
    let env = Env::new(Kind::Cluster).await;
    let keys: Vec<String> = (0..20).map(|i| format!("key{i}")).collect();
    let masters: std::collections::BTreeSet<u16> = {
        let cluster = env.cluster.as_ref().unwrap();
        keys.iter()
            .map(|key| cluster.master_of(key_slot(key)))
            .collect()
    };
    assert_eq!(masters.len(), 3, "the keys reach every master");

    let mut commands = Vec::new();
    for key in &keys {
        commands.push(set(key, "first"));
        commands.push(Command::Get(key.clone()));
        commands.push(set(key, "second"));
        commands.push(Command::Get(key.clone()));
    }
    let replies = env.store.batch(commands).await.unwrap();
    for (i, reply) in replies.iter().enumerate() {
        let expected = match i % 4 {
            1 => Reply::Text("first".into()),
            3 => Reply::Text("second".into()),
            _ => Reply::Ok,
        };
        assert_eq!(*reply, expected, "reply #{i}");
    }
    let counted = env
        .store
        .batch(vec![
            Command::Exists(keys.clone()),
            Command::Del(keys[..10].to_vec()),
            Command::Exists(keys.clone()),
        ])
        .await
        .unwrap();
    assert_eq!(
        counted,
        [Reply::Integer(20), Reply::Integer(10), Reply::Integer(10)]
    );
}

#[tokio::test]
async fn the_config_file_names_a_cluster_by_its_seed_nodes() {
    let cluster = RedisCluster::start();
    let nodes: Vec<String> = cluster
        .urls()
        .iter()
        .take(2)
        .map(|url| format!("{url:?}"))
        .collect();
    let text = format!(
        "kind = \"cluster\"\nnodes = [{}]\nmin_replicas_ack = 1\n",
        nodes.join(", ")
    );
    let config: StoreConfig = toml::from_str(&text).unwrap();
    assert_eq!(config.kind(), "cluster");
    let store = config.open().await.unwrap();
    assert!(store.is_sharded());
    // Ready once every master's replica is known around the cluster, which
    // gossip spreads within seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(error) = store.ready().await {
        assert!(error.message().contains("min_replicas_ack is 1"), "{error}");
        assert!(Instant::now() < deadline, "never ready: {error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn seed_nodes_may_be_host_port_or_urls_and_a_malformed_one_names_both_forms() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let bare = urls[0].trim_start_matches("redis://").to_owned();
    let text = format!("kind = \"cluster\"\nnodes = [{bare:?}, {:?}]\n", urls[1]);
    let config: StoreConfig = toml::from_str(&text).unwrap();
    let store = config.open().await.unwrap();
    let replies = store
        .batch(vec![set("{seeds}a", "1"), Command::Get("{seeds}a".into())])
        .await
        .unwrap();
    assert_eq!(replies, [Reply::Ok, Reply::Text("1".into())]);

    for malformed in ["127.0.0.1", "127.0.0.1:port", "http://127.0.0.1:7000"] {
        let error = ClusterStore::connect(ClusterConfig::new(vec![malformed.into()]))
            .await
            .unwrap_err();
        assert_names_both_address_forms(&error, malformed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_killed_under_load_fails_over_and_durable_writes_lose_no_token() {
    let mut env = Env::new(Kind::Cluster).await.with_policy(hardened_policy());
    let cluster = env.cluster.as_mut().unwrap();
    // Writes acknowledged by a replica are the ones promised to survive.
    // The promoted replica has no replica of its own, so durable writes to
    // its slots fail from then on; recovery is measured on the env's
    // store, which waits for no replica.
    let mut durable = cluster_config(cluster);
    durable.server.min_replicas_ack = 1;
    durable.server.ack_timeout = Duration::from_millis(500);
    let durable = ClusterStore::connect(durable).await.unwrap();
    let durable = Arc::new(
        SessionManager::builder()
            .store(durable)
            .policy(hardened_policy())
            .build()
            .unwrap(),
    );
    let victim = cluster.master_of(key_slot("user0"));
    let probe_user = user_on(cluster, victim, "probe");

    let revoked = revoked_tokens(&durable, 20).await;
    let load = Load::start(Arc::clone(&durable), 200).await;
    let killed = Instant::now();
    cluster.kill(victim);

    let sessions = env.manager();
    let recovery = first_success(&sessions, &probe_user, killed, FAILOVER_LIMIT).await;
    let load = load.stop().await;

    let cluster = env.cluster.as_ref().unwrap();
    let promoted = cluster.master_of(key_slot("user0"));
    assert_ne!(promoted, victim, "the cluster did not promote the replica");
    cluster.wait_stable();
    env.store.ready().await.unwrap();
    let failover = Failover::new(victim, promoted, recovery);
    assert_nothing_lost(&sessions, &load, &revoked, "cluster failover", failover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_migrating_under_load_fails_no_call() {
    let env = Env::new(Kind::Cluster).await.with_policy(hardened_policy());
    let cluster = env.cluster.as_ref().unwrap();
    let sessions = Arc::new(env.manager());
    let slot = key_slot("alice");
    let from = cluster.master_of(slot);
    let to = *cluster
        .master_ports()
        .iter()
        .find(|&&port| port != from)
        .unwrap();
    // Tokens of alice, and of users elsewhere, checked before, during and
    // after the move.
    let mut tokens = Vec::new();
    for user in ["alice", "bob", "carol"] {
        for _ in 0..20 {
            tokens.push(sessions.set_token(user, 600).await.unwrap().token);
        }
    }
    let tokens = Arc::new(tokens);

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Seen::default());
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (sessions, stop, calls, errors, tokens) = (
                Arc::clone(&sessions),
                Arc::clone(&stop),
                Arc::clone(&calls),
                Arc::clone(&errors),
                Arc::clone(&tokens),
            );
            tokio::spawn(async move {
                let user = if worker % 2 == 0 { "alice" } else { "bob" };
                let mut round = 0;
                while !stop.load(Ordering::SeqCst) {
                    round += 1;
                    let token = &tokens[(worker * 7 + round) % tokens.len()];
                    let outcome = async {
                        let issued = sessions.set_token(user, 600).await?;
                        must_be_valid(sessions.check_token(&issued.token).await?)?;
                        must_be_valid(sessions.check_token(token).await?)?;
                        sessions.refresh_token(&issued.token, 600).await?;
                        sessions.delete_token(&issued.token).await?;
                        Ok::<_, Error>(())
                    };
                    calls.fetch_add(5, Ordering::SeqCst);
                    if let Err(error) = outcome.await {
                        errors.record(&error);
                    }
                }
            })
        })
        .collect();

    while calls.load(Ordering::SeqCst) < 500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = calls.load(Ordering::SeqCst);
    let started = Instant::now();
    // Two keys at a time, so that the slot is half-moved for a while.
    cluster.migrate_slot(slot, to, 2);
    let moved = started.elapsed();
    let during = calls.load(Ordering::SeqCst) - before;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }

    assert_eq!(cluster.master_of(slot), to);
    eprintln!(
        "slot {slot} moved from port {from} to {to} in {moved:?}; {during} calls during the \
         move, {} in all",
        calls.load(Ordering::SeqCst)
    );
    assert_eq!(errors.count(), 0, "failed calls:\n{errors}");
    for token in tokens.iter() {
        assert!(sessions.check_token(token).await.unwrap().is_some());
    }
}

/// A token that must be valid, as an error the worker counts.
fn must_be_valid(user: Option<dsession::User>) -> Result<(), Error> {
    user.map(|_| ()).ok_or(Error::NotFound)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_serves_over_tls_as_an_acl_user_and_a_wrong_ca_is_a_clear_error() {
    let certificates = TestCertificates::generate();
    let cluster = RedisCluster::start_tls(&certificates);
    // ACL users live on each node; this one reaches the hardened layout only.
    for node in cluster.nodes() {
        add_acl_user(&mut node.client().await, &["dsession:*"]).await;
    }
    let config = |ca: &str| ClusterConfig {
        server: ServerSettings {
            username: Some("dsession".into()),
            password: Some("s3cret".into()),
            ..ServerSettings::default()
        },
        tls: tls_client_files(&certificates, ca),
        ..ClusterConfig::new(cluster.tls_urls())
    };
    let store = ClusterStore::connect(config("ca.crt")).await.unwrap();
    let sessions = SessionManager::builder()
        .store(store)
        .policy(hardened_policy())
        .build()
        .unwrap();
    let users = ["alice", "bob", "carol", "dave"];
    let mut tokens = Vec::new();
    for user in users {
        tokens.push(sessions.set_token(user, 60).await.unwrap().token);
    }
    for token in &tokens {
        assert!(sessions.check_token(token).await.unwrap().is_some());
        sessions.refresh_token(token, 120).await.unwrap();
    }
    for user in users {
        assert_eq!(sessions.list_user_token(user).await.unwrap().len(), 1);
        sessions.delete_user_token(user).await.unwrap();
    }
    for token in &tokens {
        assert_eq!(sessions.check_token(token).await.unwrap(), None);
    }

    let refused = ClusterStore::connect(config("other-ca.crt"))
        .await
        .unwrap_err();
    let message = format!("{refused:#}");
    assert!(
        message.contains("cannot connect") && message.contains("certificate"),
        "{message}"
    );
}
