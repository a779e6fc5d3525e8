//! The lab's layouts: one Redis server; a master, two replicas and three
//! sentinels; a Redis Cluster of three masters and three replicas. Each
//! Redis process and each dsession instance on a host of its own.

use std::time::Duration;

use dsession_tests::CLUSTER_NODE_ARGS;
use dsession_tests::netns::{Host, Lab, LabRedis, REDIS_PORT, SENTINEL_PORT};

/// The name the sentinels know the master by.
pub const MASTER_NAME: &str = "mymaster";

/// How long a layout may take to settle: replicas synced, sentinels
/// acquainted, the cluster ok.
const SETTLE: Duration = Duration::from_secs(30);

/// Polls `ready` every 50 ms until it holds; panics with `what` after
/// [`SETTLE`].
pub fn settle(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + SETTLE;
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not settle"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `INFO` section `section` of `server` as `field:value` lines.
pub fn info(server: &LabRedis, section: &str) -> String {
    server
        .query::<String>(redis::cmd("INFO").arg(section))
        .unwrap_or_default()
}

/// One `field:value` of an `INFO` answer.
pub fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|value| value.trim().to_owned())
}

/// One Redis server.
pub struct Single {
    pub redis: LabRedis,
}

impl Single {
    pub fn start(lab: &mut Lab, extra: &[&str]) -> Self {
        let host = lab.host("redis");
        Self {
            redis: LabRedis::start(&host, extra),
        }
    }

    /// The `[store]` table for it, at `url` (the server's own, or a proxy's).
    pub fn store(url: &str) -> String {
        format!("kind = \"redis\"\nurl = \"{url}\"\n")
    }
}

/// A master, two replicas, three sentinels with quorum 2.
pub struct Sentinels {
    /// The master first; roles change with failovers.
    pub servers: Vec<LabRedis>,
    pub sentinels: Vec<LabRedis>,
}

impl Sentinels {
    /// `extra` goes to each data node, replicas too (any may be promoted).
    pub fn start(lab: &mut Lab, extra: &[&str]) -> Self {
        let mut base = vec!["--repl-diskless-sync-delay", "0"];
        base.extend_from_slice(extra);
        let master_host = lab.host("master");
        let master = LabRedis::start(&master_host, &base);
        let master_address = master_host.address().to_string();
        let port = REDIS_PORT.to_string();
        let mut servers = vec![master];
        for name in ["replica-1", "replica-2"] {
            let host = lab.host(name);
            let mut args = base.clone();
            args.extend(["--replicaof", &master_address, &port]);
            servers.push(LabRedis::start(&host, &args));
        }
        settle("replication", || {
            info_field(&info(&servers[0], "replication"), "connected_slaves").as_deref()
                == Some("2")
                && servers[1..].iter().all(|replica| {
                    info_field(&info(replica, "replication"), "master_link_status").as_deref()
                        == Some("up")
                })
        });
        let sentinels: Vec<LabRedis> = (1..=3)
            .map(|index| {
                let host = lab.host(&format!("sentinel-{index}"));
                LabRedis::sentinel(&host, MASTER_NAME, master_host.address(), 2)
            })
            .collect();
        let known = |sentinel: &LabRedis, what: &str| {
            sentinel
                .query::<Vec<redis::Value>>(redis::cmd("SENTINEL").arg(what).arg(MASTER_NAME))
                .map_or(0, |list| list.len())
        };
        settle("the sentinels", || {
            sentinels.iter().all(|sentinel| {
                known(sentinel, "replicas") == 2 && known(sentinel, "sentinels") == 2
            })
        });
        Self { servers, sentinels }
    }

    pub fn master(&self) -> &Host {
        self.servers[0].host()
    }

    /// The `[store]` table for the sentinels, with `min_replicas_ack`.
    pub fn store(&self, min_replicas_ack: usize) -> String {
        let sentinels = self
            .sentinels
            .iter()
            .map(|sentinel| format!("\"{}:{SENTINEL_PORT}\"", sentinel.host().address()))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "kind = \"sentinel\"\nsentinels = [{sentinels}]\nmaster_name = \"{MASTER_NAME}\"\n\
             min_replicas_ack = {min_replicas_ack}\nack_timeout_ms = 500\n"
        )
    }

    /// Where the sentinels that `sentinel` can reach see the master now.
    pub fn master_seen_by(&self, sentinel: usize) -> Option<String> {
        self.sentinels[sentinel]
            .query::<Vec<String>>(
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(MASTER_NAME),
            )
            .ok()
            .and_then(|address| address.into_iter().next())
    }
}

/// Three masters, each with one replica.
pub struct Cluster {
    pub nodes: Vec<LabRedis>,
}

impl Cluster {
    pub fn start(lab: &mut Lab) -> Self {
        let nodes: Vec<LabRedis> = (1..=6)
            .map(|index| {
                let host = lab.host(&format!("node-{index}"));
                LabRedis::start(&host, &CLUSTER_NODE_ARGS)
            })
            .collect();
        let output = std::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(LabRedis::address))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Self { nodes };
        settle("the cluster", || {
            cluster.nodes.iter().all(|node| {
                node.query::<String>(redis::cmd("CLUSTER").arg("INFO"))
                    .is_ok_and(|info| info_field(&info, "cluster_state").as_deref() == Some("ok"))
            }) && cluster.nodes.iter().all(|node| {
                let info = info(node, "replication");
                info_field(&info, "role").as_deref() == Some("master")
                    || info_field(&info, "master_link_status").as_deref() == Some("up")
            })
        });
        cluster
    }

    /// The index of a master, and of its replica.
    pub fn master_and_replica(&self) -> (usize, usize) {
        let replica = self
            .nodes
            .iter()
            .position(|node| {
                info_field(&info(node, "replication"), "role").as_deref() == Some("slave")
            })
            .expect("a replica");
        let master_address = info_field(&info(&self.nodes[replica], "replication"), "master_host")
            .expect("the replica's master");
        let master = self
            .nodes
            .iter()
            .position(|node| node.host().address().to_string() == master_address)
            .expect("the master among the nodes");
        (master, replica)
    }

    /// The `[store]` table for the cluster, with `min_replicas_ack`.
    pub fn store(&self, min_replicas_ack: usize) -> String {
        let nodes = self
            .nodes
            .iter()
            .map(|node| format!("\"redis://{}\"", node.address()))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "kind = \"cluster\"\nnodes = [{nodes}]\nmin_replicas_ack = {min_replicas_ack}\n\
             ack_timeout_ms = 500\n"
        )
    }
}
