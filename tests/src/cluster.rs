//! A Redis Cluster of six nodes.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{POLL_INTERVAL, RedisServer, TestCertificates, free_port, poll_until, query};

/// The arguments of every cluster node: a node timeout of 1 s, so that a
/// failover takes seconds, and no wait before a diskless sync.
pub const CLUSTER_NODE_ARGS: [&str; 8] = [
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    "1000",
    "--repl-diskless-sync-delay",
    "0",
];

/// How long `redis-cli --cluster create` may take, and then a Redis
/// Cluster to agree on its slots and sync its replicas.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);

/// Three masters with one replica each, a Redis Cluster on free loopback
/// ports made by `redis-cli --cluster create`, each node a [`RedisServer`]
/// with its own directory and log; a node not answering for 1 s is
/// declared failed and its replica promoted.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// Ports of the nodes killed.
    killed: Vec<u16>,
    /// Each node's TLS port, when started with TLS.
    tls_ports: Vec<u16>,
}

impl RedisCluster {
    /// Starts the six nodes, joins them, and waits until every node says
    /// the cluster is ok and every replica has synced.
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// Like [`Self::start`], with TLS on a port of each node's own besides
    /// its plain one (which the fixture uses): clients, replication and the
    /// cluster bus all use TLS and need a certificate signed by the CA of
    /// `certificates`, and `CLUSTER SLOTS` names the TLS ports.
    pub fn start_tls(certificates: &TestCertificates) -> Self {
        Self::launch(Some(certificates))
    }

    fn launch(tls: Option<&TestCertificates>) -> Self {
        let file = |name: &str| -> String {
            tls.expect("TLS certificates")
                .path(name)
                .display()
                .to_string()
        };
        let mut tls_ports = Vec::new();
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                let mut args: Vec<String> = CLUSTER_NODE_ARGS.map(str::to_owned).into();
                // The bus port defaults to the client port + 10000, which
                // may be past 65535 or taken.
                args.extend(["--cluster-port".to_owned(), free_port().to_string()]);
                if let Some(certificates) = tls {
                    let port = free_port();
                    tls_ports.push(port);
                    args.extend(certificates.server_args(port));
                    args.extend(["--tls-cluster".to_owned(), "yes".to_owned()]);
                    args.extend(certificates.replication_args());
                }
                RedisServer::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .collect();
        let mut create = Command::new("redis-cli");
        let ports: Vec<u16> = match tls {
            Some(_) => {
                create.args(["--tls", "--cacert", &file("ca.crt")]);
                create.args(["--cert", &file("client.crt"), "--key", &file("client.key")]);
                tls_ports.clone()
            }
            None => nodes.iter().map(RedisServer::port).collect(),
        };
        create
            .args(["--cluster", "create"])
            .args(ports.iter().map(|port| format!("127.0.0.1:{port}")))
            .args(["--cluster-replicas", "1", "--cluster-yes"]);
        run_to_end(&mut create, "redis-cli --cluster create", CLUSTER_TIMEOUT);
        let cluster = Self {
            nodes,
            killed: Vec::new(),
            tls_ports,
        };
        cluster.wait_stable();
        cluster
    }

    /// The nodes, for commands on each (ACL users are per node).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Seed URLs of every node's TLS port, `rediss://127.0.0.1:port`; none
    /// without TLS.
    pub fn tls_urls(&self) -> Vec<String> {
        self.tls_ports
            .iter()
            .map(|port| format!("rediss://127.0.0.1:{port}"))
            .collect()
    }

    /// Waits until every live node says `cluster_state:ok`, knows every
    /// node, and every replica has synced with its master.
    pub fn wait_stable(&self) {
        for node in self.live() {
            poll_until(
                CLUSTER_TIMEOUT,
                || {
                    query::<String>(node.port(), redis::cmd("CLUSTER").arg("INFO"))
                        .is_some_and(|info| info.contains("cluster_state:ok"))
                },
                || {
                    format!(
                        "cluster node on port {} is not ok:\n{}",
                        node.port(),
                        node.log()
                    )
                },
            );
            let role: Option<Vec<redis::Value>> = query(node.port(), &redis::cmd("ROLE"));
            let replica = role
                .and_then(|role| role.into_iter().next())
                .and_then(|role| redis::from_redis_value::<String>(role).ok())
                .is_some_and(|role| role == "slave");
            if replica {
                node.wait_synced();
            }
        }
    }

    fn live(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes
            .iter()
            .filter(|node| !self.killed.contains(&node.port()))
    }

    /// Seed URLs of every node, `redis://127.0.0.1:port`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("redis://127.0.0.1:{}", node.port()))
            .collect()
    }

    /// The ports of the masters serving slots now, as a live node sees it.
    pub fn master_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .slot_ranges()
            .into_iter()
            .map(|(_, _, port)| port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The port of the master serving `slot`, as a live node sees it.
    pub fn master_of(&self, slot: u16) -> u16 {
        self.slot_ranges()
            .into_iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, port)| port)
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// `CLUSTER SLOTS` as (first slot, last slot, master port).
    fn slot_ranges(&self) -> Vec<(u16, u16, u16)> {
        let ranges: Vec<Vec<redis::Value>> = self
            .live()
            .find_map(|node| query(node.port(), redis::cmd("CLUSTER").arg("SLOTS")))
            .expect("no cluster node answers CLUSTER SLOTS");
        let number = |value: &redis::Value| -> u16 {
            redis::from_redis_value(value.clone()).expect("a number in CLUSTER SLOTS")
        };
        ranges
            .into_iter()
            .map(|fields| {
                let master: Vec<redis::Value> =
                    redis::from_redis_value(fields[2].clone()).expect("a node in CLUSTER SLOTS");
                (number(&fields[0]), number(&fields[1]), number(&master[1]))
            })
            .collect()
    }

    /// Kills the node on `port` (a master: its replica takes over once the
    /// others declare it failed).
    pub fn kill(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|node| node.port() == port)
            .expect("a node of the cluster")
            .kill();
        self.killed.push(port);
    }

    /// Moves `slot` with its keys from its master to the master on `to`,
    /// as `redis-cli --cluster reshard` does: `SETSLOT IMPORTING` and
    /// `MIGRATING`, `MIGRATE` of `batch` keys at a time, then `SETSLOT
    /// NODE` on every master.
    pub fn migrate_slot(&self, slot: u16, to: u16, batch: usize) {
        let from = self.master_of(slot);
        assert_ne!(from, to, "slot {slot} is on port {to} already");
        let id = |port: u16| -> String {
            query(port, redis::cmd("CLUSTER").arg("MYID")).expect("CLUSTER MYID")
        };
        let (from_id, to_id) = (id(from), id(to));
        let run = |port: u16, command: &redis::Cmd| {
            let done: Option<redis::Value> = query(port, command);
            assert!(done.is_some(), "{command:?} failed on port {port}");
        };
        run(
            to,
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("IMPORTING")
                .arg(&from_id),
        );
        run(
            from,
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("MIGRATING")
                .arg(&to_id),
        );
        loop {
            let keys: Vec<String> = query(
                from,
                redis::cmd("CLUSTER")
                    .arg("GETKEYSINSLOT")
                    .arg(slot)
                    .arg(batch),
            )
            .expect("CLUSTER GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            run(
                from,
                redis::cmd("MIGRATE")
                    .arg("127.0.0.1")
                    .arg(to)
                    .arg("")
                    .arg(0)
                    .arg(5000)
                    .arg("KEYS")
                    .arg(&keys),
            );
        }
        for port in [to, from].into_iter().chain(
            self.master_ports()
                .into_iter()
                .filter(|p| ![to, from].contains(p)),
        ) {
            run(
                port,
                redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(slot)
                    .arg("NODE")
                    .arg(&to_id),
            );
        }
    }
}

/// Runs `command`, called `what` in messages, to its end, killing it past
/// `timeout`; panics with its output when it fails or does not end in time.
fn run_to_end(command: &mut Command, what: &str, timeout: Duration) {
    let mut log = tempfile::tempfile().expect("a temporary file");
    let mut child = command
        .stdout(log.try_clone().expect("a second handle on the log"))
        .stderr(log.try_clone().expect("a second handle on the log"))
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {what}: {error} (is redis-tools installed?)"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the state of a child process") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    let mut output = String::new();
    log.seek(SeekFrom::Start(0))
        .and_then(|_| log.read_to_string(&mut output))
        .expect("the output of a child process");
    match status {
        Some(status) => assert!(status.success(), "{what} failed ({status}):\n{output}"),
        None => panic!("{what} did not end within {timeout:?}:\n{output}"),
    }
}
