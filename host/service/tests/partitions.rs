//! Partitions and faults, the Jepsen way: Redis and `dsession serve` on
//! separate hosts (network namespaces), clients logging every operation,
//! a fault under load, a heal, and a checker of what was acknowledged.
//!
//! `scripts/partitions` runs every scenario (`DSESSION_PARTITIONS=all`);
//! without it this test runs the bounded subset CI runs. A comma-separated
//! list of words runs the scenarios whose names hold one. Each run prints
//! its row; the table and `N passed, N failed` come at the end. Needs root,
//! `ip` and `nft`. docs/RELIABILITY.md gives the guarantees.

#[path = "partitions/history.rs"]
mod history;
#[path = "partitions/load.rs"]
mod load;
#[path = "partitions/run.rs"]
mod run;
#[path = "partitions/service.rs"]
mod service;
#[path = "partitions/topology.rs"]
mod topology;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dsession_tests::netns::{Host, Lab, REDIS_PORT};
use dsession_tests::proxy::{LatencyProxy, Toxics};
use redis::Commands as _;
use tokio::runtime::Runtime;

use self::run::{Guarantee, HEADER, Phases, Require, Row, Run, Step};
use self::service::LabService;
use self::topology::{Cluster, Sentinels, Single};

/// The policy a run serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    Default,
    Hardened,
    /// The hardened policy with `max_sessions = 3`.
    Limited,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Hardened | Self::Limited => "hardened",
        }
    }

    fn config(self) -> &'static str {
        match self {
            Self::Default | Self::Hardened => "",
            Self::Limited => "max_sessions = \"3\"\n",
        }
    }

    fn limit(self) -> Option<usize> {
        (self == Self::Limited).then_some(3)
    }

    fn label(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Hardened => "hardened",
            Self::Limited => "hardened, max 3",
        }
    }

    fn serve(self, host: &Host, store: &str) -> LabService {
        LabService::start(host, store, self.name(), self.config())
    }
}

/// The settings that stop a partitioned master from acknowledging writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fence {
    /// Neither: Redis defaults, no durable writes.
    None,
    /// Redis's `min-replicas-to-write 1` and `min-replicas-max-lag 2` only.
    Redis,
    /// dsession's `min_replicas_ack = 1` only.
    Dsession,
    /// Both.
    Both,
}

impl Fence {
    fn redis_args(self) -> &'static [&'static str] {
        match self {
            Self::Redis | Self::Both => &[
                "--min-replicas-to-write",
                "1",
                "--min-replicas-max-lag",
                "2",
            ],
            Self::None | Self::Dsession => &[],
        }
    }

    fn min_replicas_ack(self) -> usize {
        usize::from(matches!(self, Self::Dsession | Self::Both))
    }

    fn label(self) -> &'static str {
        match self {
            Self::None => "no fencing",
            Self::Redis => "min-replicas-to-write only",
            Self::Dsession => "min_replicas_ack only",
            Self::Both => "min_replicas_ack + min-replicas-to-write",
        }
    }
}

/// How a scenario runs: given the runtime and its name, its row.
type Runner = Box<dyn Fn(&Runtime, String) -> Row>;

/// A scenario: its name, whether CI runs it, and how.
struct Scenario {
    name: String,
    ci: bool,
    run: Runner,
}

fn scenario(name: String, ci: bool, run: impl Fn(&Runtime, String) -> Row + 'static) -> Scenario {
    Scenario {
        name,
        ci,
        run: Box::new(run),
    }
}

/// The dsession host cut off from the master, but not from the sentinels:
/// no failover happens, and calls fail until the heal.
fn cut_from_master(runtime: &Runtime, name: String, policy: Policy, durable: bool) -> Row {
    let mut lab = Lab::new();
    let sentinels = Sentinels::start(&mut lab, &[]);
    let host = lab.host("dsession");
    let service = policy.serve(&host, &sentinels.store(usize::from(durable)));
    let master = sentinels.master().clone();
    Run {
        name,
        guarantee: Guarantee::Holds,
        requires: &[
            Require::NotReadyDuringFault,
            Require::ReadyAfterHeal,
            Require::EveryCallAnswered,
        ],
        limit: policy.limit(),
        phases: Phases::seconds(2, 5, 5),
    }
    .go(runtime, &[service.url("")], &mut |step| match step {
        Step::Fault => lab.partition(&[&host], &[&master]),
        Step::Heal => lab.heal(),
    })
}

/// Split brain: the master and one sentinel (and a dsession instance)
/// apart from the replicas, the two other sentinels and another dsession
/// instance, which promote a replica; then healed, when the old master
/// becomes a replica and drops what it took meanwhile.
fn split_brain(runtime: &Runtime, name: String, policy: Policy, fence: Fence) -> Row {
    let mut lab = Lab::new();
    let sentinels = Sentinels::start(&mut lab, fence.redis_args());
    let majority_host = lab.host("dsession-b");
    let minority_host = lab.host("dsession-a");
    let store = sentinels.store(fence.min_replicas_ack());
    let majority = policy.serve(&majority_host, &store);
    let minority = policy.serve(&minority_host, &store);
    let hosts = |servers: &[dsession_tests::netns::LabRedis]| -> Vec<Host> {
        servers.iter().map(|server| server.host().clone()).collect()
    };
    let (data, watchers) = (hosts(&sentinels.servers), hosts(&sentinels.sentinels));
    let guarantee = if fence.min_replicas_ack() > 0 {
        Guarantee::Holds
    } else {
        Guarantee::Shown
    };
    let old_master = data[0].address().to_string();
    let row = Run {
        name,
        guarantee,
        requires: &[Require::EveryCallAnswered],
        limit: policy.limit(),
        phases: Phases::seconds(2, 8, 10),
    }
    .go(
        runtime,
        &[majority.url(""), minority.url("")],
        &mut |step| match step {
            Step::Fault => lab.partition(
                &[&data[0], &watchers[0], &minority_host],
                &[
                    &data[1],
                    &data[2],
                    &watchers[1],
                    &watchers[2],
                    &majority_host,
                ],
            ),
            Step::Heal => lab.heal(),
        },
    );
    let promoted = sentinels.master_seen_by(1);
    assert_ne!(
        promoted.as_deref(),
        Some(old_master.as_str()),
        "the majority did not fail over"
    );
    row
}

/// A cluster master partitioned from its replica and from the other
/// masters until the cluster fails it over; the dsession host still
/// reaches it.
fn cluster_master(runtime: &Runtime, name: String, durable: bool) -> Row {
    let mut lab = Lab::new();
    let cluster = Cluster::start(&mut lab);
    let host = lab.host("dsession");
    let policy = Policy::Limited;
    let service = policy.serve(&host, &cluster.store(usize::from(durable)));
    let (master, _) = cluster.master_and_replica();
    let isolated = cluster.nodes[master].host().clone();
    let others: Vec<Host> = cluster
        .nodes
        .iter()
        .filter(|node| *node.host() != isolated)
        .map(|node| node.host().clone())
        .collect();
    Run {
        name,
        guarantee: if durable {
            Guarantee::Holds
        } else {
            Guarantee::Shown
        },
        requires: &[Require::EveryCallAnswered],
        limit: policy.limit(),
        phases: Phases::seconds(2, 8, 10),
    }
    .go(runtime, &[service.url("")], &mut |step| match step {
        Step::Fault => lab.partition(&[&isolated], &others.iter().collect::<Vec<_>>()),
        Step::Heal => lab.heal(),
    })
}

/// A run of a link between dsession and Redis that works, badly: every
/// call must still be answered in time, and no check may call a valid
/// token invalid.
fn degraded_link(name: String, policy: Policy) -> Run<'static> {
    Run {
        name,
        guarantee: Guarantee::Holds,
        requires: &[
            Require::EveryCallAnswered,
            Require::NoFalseInvalid,
            Require::ReadyAfterHeal,
        ],
        limit: policy.limit(),
        phases: Phases::seconds(2, 8, 4),
    }
}

/// 5% of the packets between dsession and Redis dropped, each way.
fn loss(runtime: &Runtime, name: String, policy: Policy) -> Row {
    let mut lab = Lab::new();
    let single = Single::start(&mut lab, &[]);
    let host = lab.host("dsession");
    let service = policy.serve(&host, &Single::store(&single.redis.url()));
    let redis = single.redis.host().clone();
    degraded_link(name, policy).go(runtime, &[service.url("")], &mut |step| match step {
        Step::Fault => lab.loss(&host, &[&redis], 5),
        Step::Heal => lab.heal(),
    })
}

/// 200 ms added each way between dsession and Redis, with up to 50 ms of
/// jitter, through the latency proxy.
fn latency(runtime: &Runtime, name: String, policy: Policy) -> Row {
    let mut lab = Lab::new();
    let single = Single::start(&mut lab, &[]);
    let proxy = LatencyProxy::start(
        SocketAddr::from((lab.gateway(), 0)),
        SocketAddr::from((single.redis.host().address(), REDIS_PORT)),
    );
    let host = lab.host("dsession");
    let service = policy.serve(
        &host,
        &Single::store(&format!("redis://{}/0", proxy.address())),
    );
    degraded_link(name, policy).go(runtime, &[service.url("")], &mut |step| {
        proxy.set(match step {
            Step::Fault => Toxics {
                delay: Duration::from_millis(200),
                jitter: Duration::from_millis(50),
                stalled: false,
            },
            Step::Heal => Toxics::default(),
        });
    })
}

/// Redis `SIGKILL`ed under load and started again on its directory.
fn kill(
    runtime: &Runtime,
    name: String,
    policy: Policy,
    persistence: &[&str],
    guarantee: Guarantee,
) -> Row {
    let mut lab = Lab::new();
    let mut single = Single::start(&mut lab, persistence);
    let host = lab.host("dsession");
    let service = policy.serve(&host, &Single::store(&single.redis.url()));
    Run {
        name,
        guarantee,
        requires: &[Require::EveryCallAnswered, Require::ReadyAfterHeal],
        limit: policy.limit(),
        phases: Phases::seconds(3, 1, 5),
    }
    .go(runtime, &[service.url("")], &mut |step| match step {
        Step::Fault => single.redis.kill(),
        Step::Heal => single.redis.restart(),
    })
}

/// How much memory the full-Redis runs allow.
const MAXMEMORY: &str = "16mb";

/// Writes 10 kB values under `junk:` keys, as another application sharing
/// the Redis would, until Redis refuses one or `limit` bytes are written.
fn fill(redis: &dsession_tests::netns::LabRedis, limit: usize) -> usize {
    let value = vec![b'x'; 10_000];
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_connection().unwrap();
    let mut written = 0;
    while written < limit {
        let key = format!("junk:{written}");
        if redis::cmd("SET")
            .arg(&key)
            .arg(&value)
            .query::<()>(&mut connection)
            .is_err()
        {
            break;
        }
        written += value.len();
    }
    written
}

/// Deletes what [`fill`] wrote.
fn unfill(redis: &dsession_tests::netns::LabRedis) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_connection().unwrap();
    let keys: Vec<String> = connection
        .scan_match("junk:*")
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for chunk in keys.chunks(500) {
        let _: () = redis::cmd("DEL").arg(chunk).query(&mut connection).unwrap();
    }
}

/// Redis at its `maxmemory` with `eviction`, filled by another writer under
/// load, then emptied of that writer's keys.
fn full(runtime: &Runtime, name: String, policy: Policy, eviction: &str) -> Row {
    let mut lab = Lab::new();
    let single = Single::start(
        &mut lab,
        &["--maxmemory", MAXMEMORY, "--maxmemory-policy", eviction],
    );
    let host = lab.host("dsession");
    let service = policy.serve(&host, &Single::store(&single.redis.url()));
    let (guarantee, requires): (Guarantee, &[Require]) = if eviction == "noeviction" {
        (
            Guarantee::Holds,
            &[
                Require::RevocationsSucceed,
                Require::EveryCallAnswered,
                Require::ReadyAfterHeal,
            ],
        )
    } else {
        (
            Guarantee::FailsClosed,
            &[Require::ReadyzWarnsOfEviction, Require::EveryCallAnswered],
        )
    };
    Run {
        name,
        guarantee,
        requires,
        limit: policy.limit(),
        phases: Phases::seconds(3, 6, 4),
    }
    .go(runtime, &[service.url("")], &mut |step| match step {
        Step::Fault => {
            fill(&single.redis, 64 << 20);
        }
        Step::Heal => unfill(&single.redis),
    })
}

fn scenarios() -> Vec<Scenario> {
    let mut all = Vec::new();
    for policy in [Policy::Default, Policy::Hardened] {
        for durable in [false, true] {
            let name = format!(
                "dsession cut from the master ({}, durable {})",
                policy.label(),
                if durable { "on" } else { "off" }
            );
            all.push(scenario(
                name,
                policy == Policy::Default && durable,
                move |runtime, name| cut_from_master(runtime, name, policy, durable),
            ));
        }
    }
    for (policy, fence) in [
        (Policy::Default, Fence::None),
        (Policy::Default, Fence::Redis),
        (Policy::Default, Fence::Dsession),
        (Policy::Default, Fence::Both),
        (Policy::Limited, Fence::None),
        (Policy::Limited, Fence::Both),
    ] {
        let name = format!("split brain ({}, {})", policy.label(), fence.label());
        let ci = policy == Policy::Default && fence == Fence::Both;
        all.push(scenario(name, ci, move |runtime, name| {
            split_brain(runtime, name, policy, fence)
        }));
    }
    for durable in [false, true] {
        let name = format!(
            "cluster master cut off (hardened, max 3, durable {})",
            if durable { "on" } else { "off" }
        );
        all.push(scenario(name, false, move |runtime, name| {
            cluster_master(runtime, name, durable)
        }));
    }
    for policy in [Policy::Default, Policy::Hardened] {
        all.push(scenario(
            format!("5% loss ({})", policy.label()),
            policy == Policy::Default,
            move |runtime, name| loss(runtime, name, policy),
        ));
        all.push(scenario(
            format!("200 ms latency, 50 ms jitter ({})", policy.label()),
            policy == Policy::Hardened,
            move |runtime, name| latency(runtime, name, policy),
        ));
    }
    let persistences: [(&str, &[&str], Guarantee); 3] = [
        ("appendonly no", &[], Guarantee::Shown),
        (
            "appendfsync everysec",
            &["--appendonly", "yes", "--appendfsync", "everysec"],
            Guarantee::Holds,
        ),
        (
            "appendfsync always",
            &["--appendonly", "yes", "--appendfsync", "always"],
            Guarantee::Holds,
        ),
    ];
    for (label, persistence, guarantee) in persistences {
        for policy in [Policy::Default, Policy::Hardened] {
            let name = format!("SIGKILL and restart, {label} ({})", policy.label());
            let ci = policy == Policy::Default && label == "appendfsync always";
            all.push(scenario(name, ci, move |runtime, name| {
                kill(runtime, name, policy, persistence, guarantee)
            }));
        }
    }
    for (policy, eviction) in [
        (Policy::Default, "noeviction"),
        (Policy::Limited, "noeviction"),
        (Policy::Default, "allkeys-lru"),
        (Policy::Default, "volatile-lru"),
    ] {
        let name = format!("full Redis, {eviction} ({})", policy.label());
        let ci = policy == Policy::Limited;
        all.push(scenario(name, ci, move |runtime, name| {
            full(runtime, name, policy, eviction)
        }));
    }
    all
}

/// The scenarios `DSESSION_PARTITIONS` selects.
fn selected() -> Vec<Scenario> {
    let selection = std::env::var("DSESSION_PARTITIONS").unwrap_or_default();
    let all = scenarios();
    match selection.as_str() {
        "" | "ci" => all.into_iter().filter(|scenario| scenario.ci).collect(),
        "all" => all,
        words => {
            let words: Vec<&str> = words.split(',').map(str::trim).collect();
            all.into_iter()
                .filter(|scenario| words.iter().any(|word| scenario.name.contains(word)))
                .collect()
        }
    }
}

#[test]
fn partitions_and_faults() {
    assert!(
        std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| output.stdout == b"0\n"),
        "the fault lab makes network namespaces, which needs root"
    );
    let scenarios = selected();
    assert!(
        !scenarios.is_empty(),
        "DSESSION_PARTITIONS selects no scenario"
    );
    let runtime = Runtime::new().unwrap();
    let started = Instant::now();
    let mut rows = Vec::new();
    for scenario in scenarios {
        let row = (scenario.run)(&runtime, scenario.name);
        println!("{}", row.line());
        rows.push(row);
    }
    let passed = rows.iter().filter(|row| row.passed()).count();
    println!("\n{HEADER}");
    for row in &rows {
        println!("{}", row.line());
    }
    println!("\nin {:.0} s", started.elapsed().as_secs_f64());
    println!("{passed} passed, {} failed", rows.len() - passed);
    assert_eq!(passed, rows.len(), "scenarios failed: see the table");
}
