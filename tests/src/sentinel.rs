//! A master, its replica and three sentinels.

use std::collections::HashMap;
use std::time::Duration;

use crate::server::LOG_FILE;
use crate::{RedisServer, TestCertificates, free_port, poll_until, query};

/// The name a [`SentinelCluster`]'s sentinels know its master by.
pub const MASTER_NAME: &str = "mymaster";

/// How long sentinels may take to find the master, its replica and each
/// other (they greet each other every 2 s).
const SENTINEL_TIMEOUT: Duration = Duration::from_secs(20);

/// A master, one replica and three sentinels (quorum 2) on free loopback
/// ports, each a [`RedisServer`] with its own directory and log; the
/// sentinels declare a master down after 1 s.
#[derive(Debug)]
pub struct SentinelCluster {
    sentinels: Vec<RedisServer>,
    /// The master first, then the replica; a failover swaps their roles.
    servers: Vec<RedisServer>,
    /// With TLS, the TLS port of each sentinel, then of each server.
    tls_ports: Vec<u16>,
}

impl SentinelCluster {
    /// Starts the cluster and waits until the replica has synced and every
    /// sentinel knows the master, the replica and the two other sentinels.
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// Like [`Self::start`], with TLS on a port of each server's own
    /// besides its plain one (which the fixture uses): clients, replication
    /// and the sentinels' links use TLS and need a certificate signed by the
    /// CA of `certificates`; the sentinels and [`Self::master_port`] name
    /// TLS ports.
    pub fn start_tls(certificates: &TestCertificates) -> Self {
        Self::launch(Some(certificates))
    }

    fn launch(tls: Option<&TestCertificates>) -> Self {
        let tls_ports: Vec<u16> =
            tls.map_or_else(Vec::new, |_| (0..5).map(|_| free_port()).collect());
        // Sentinels first, then the master, then the replica.
        let tls_args = |index: usize| -> Vec<String> {
            let Some(certificates) = tls else {
                return Vec::new();
            };
            let mut args = certificates.server_args(tls_ports[index]);
            args.extend(certificates.replication_args());
            args
        };
        let start = |index: usize, extra: &[&str]| {
            let mut args: Vec<String> = extra.iter().map(|arg| (*arg).to_owned()).collect();
            args.extend(tls_args(index));
            RedisServer::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>())
        };
        // Without it a diskless sync waits 5 s for more replicas; the
        // replica needs it too, for when it is promoted.
        let no_sync_delay = ["--repl-diskless-sync-delay", "0"];
        let master = start(3, &no_sync_delay);
        let monitored = if tls.is_some() {
            tls_ports[3]
        } else {
            master.port()
        };
        let replica = start(
            4,
            &[
                &no_sync_delay[..],
                &["--replicaof", "127.0.0.1", &monitored.to_string()],
            ]
            .concat(),
        );
        replica.wait_synced();
        let sentinels = (0..3)
            .map(|index| {
                // A sentinel reads its TLS settings from its config file.
                let args = tls_args(index);
                let lines: String = args
                    .chunks(2)
                    .map(|pair| format!("{} {}\n", pair[0].trim_start_matches("--"), pair[1]))
                    .collect();
                start_sentinel(monitored, &lines)
            })
            .collect();
        let cluster = Self {
            sentinels,
            servers: vec![master, replica],
            tls_ports,
        };
        cluster.wait_monitored();
        cluster
    }

    /// Whether `port` is one of the ports of the server at `index`.
    fn server_has_port(&self, index: usize, port: u16) -> bool {
        self.servers[index].port() == port || self.tls_ports.get(3 + index) == Some(&port)
    }

    fn wait_monitored(&self) {
        for sentinel in &self.sentinels {
            poll_until(
                SENTINEL_TIMEOUT,
                || {
                    let master: Option<HashMap<String, String>> = query(
                        sentinel.port(),
                        redis::cmd("SENTINEL").arg("master").arg(MASTER_NAME),
                    );
                    let replicas: Option<Vec<redis::Value>> = query(
                        sentinel.port(),
                        redis::cmd("SENTINEL").arg("replicas").arg(MASTER_NAME),
                    );
                    let others =
                        master.and_then(|master| master.get("num-other-sentinels").cloned());
                    others.as_deref() == Some("2") && replicas.is_some_and(|r| !r.is_empty())
                },
                || {
                    format!(
                        "sentinel on port {} did not see the master, its replica and the \
                         other sentinels:\n{}",
                        sentinel.port(),
                        sentinel.log()
                    )
                },
            );
        }
    }

    /// The sentinels, as `127.0.0.1:port` (their TLS ports, with TLS).
    pub fn sentinel_addresses(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .enumerate()
            .map(|(index, sentinel)| {
                let port = self
                    .tls_ports
                    .get(index)
                    .copied()
                    .unwrap_or(sentinel.port());
                format!("127.0.0.1:{port}")
            })
            .collect()
    }

    /// The port of the master, as the first sentinel that answers names it
    /// (its TLS port, with TLS).
    pub fn master_port(&self) -> u16 {
        self.sentinels
            .iter()
            .find_map(|sentinel| {
                query::<(String, u16)>(
                    sentinel.port(),
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(MASTER_NAME),
                )
            })
            .expect("no sentinel names the master")
            .1
    }

    /// Asks a sentinel to fail over now, while the master is still up: the
    /// replica is promoted and the old master becomes its replica.
    pub fn force_failover(&self) {
        let done: Option<String> = query(
            self.sentinels[0].port(),
            redis::cmd("SENTINEL").arg("failover").arg(MASTER_NAME),
        );
        assert!(done.is_some(), "SENTINEL FAILOVER was refused");
    }

    /// Kills the replica (the server that is not the master now).
    pub fn kill_replica(&mut self) {
        let index = self.replica_index();
        self.servers[index].kill();
    }

    /// The replica: the server that is not the master now.
    pub fn replica(&self) -> &RedisServer {
        &self.servers[self.replica_index()]
    }

    fn replica_index(&self) -> usize {
        let master = self.master_port();
        (0..2)
            .find(|&index| !self.server_has_port(index, master))
            .expect("the cluster has a replica")
    }

    /// Kills the current master and returns the port it listened on.
    pub fn kill_master(&mut self) -> u16 {
        let port = self.master_port();
        let index = (0..2)
            .find(|&index| self.server_has_port(index, port))
            .expect("the master is one of the cluster's servers");
        self.servers[index].kill();
        port
    }
}

/// Starts a sentinel that monitors the master on `master_port` as
/// [`MASTER_NAME`], from a config file of its own (sentinels rewrite it);
/// `tls` adds these lines (TLS settings) to it.
fn start_sentinel(master_port: u16, tls: &str) -> RedisServer {
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_port();
    let config = dir.path().join("sentinel.conf");
    let mut text = format!(
        "port {port}\n\
         bind 127.0.0.1\n\
         dir \"{dir}\"\n\
         logfile \"{log}\"\n\
         sentinel resolve-hostnames no\n\
         sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
         sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
         sentinel failover-timeout {MASTER_NAME} 3000\n\
         sentinel parallel-syncs {MASTER_NAME} 1\n",
        dir = dir.path().display(),
        log = dir.path().join(LOG_FILE).display(),
    );
    text.push_str(tls);
    std::fs::write(&config, text).expect("write sentinel.conf");
    RedisServer::launch(dir, port, vec![config.into(), "--sentinel".into()])
}
