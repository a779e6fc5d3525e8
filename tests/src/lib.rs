//! Test fixtures shared by dsession's integration tests: real
//! `redis-server` processes on free loopback ports.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server may take to answer its first PING, and a replica to
/// sync.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a fixture's own connection may take to connect or to answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause between two polls of a server's state.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Where a server writes its log, in its directory.
const LOG_FILE: &str = "redis.log";

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().unwrap().port()
}

/// Calls `ready` until it holds; after `timeout`, panics with `failure()`.
fn poll_until(
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
    failure: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "{}", failure());
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// One command to the server on `port`, over a fresh connection with short
/// timeouts; None when it cannot be reached or refuses the command.
fn query<T: redis::FromRedisValue>(port: u16, command: &redis::Cmd) -> Option<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut connection = client.get_connection_with_timeout(QUERY_TIMEOUT).ok()?;
    connection.set_read_timeout(Some(QUERY_TIMEOUT)).ok()?;
    command.query(&mut connection).ok()
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A `redis-server` owned by a test: no persistence, a log in its own
/// temporary directory, killed on drop, its log printed if the test failed.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: TempDir,
    /// What it was started with, to start it again on the same port.
    args: Vec<OsString>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let mut args: Vec<OsString> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        args.push("--dir".into());
        args.push(dir.path().into());
        args.push("--logfile".into());
        args.push(dir.path().join(LOG_FILE).into());
        args.extend(extra.iter().map(OsString::from));
        Self::launch(dir, port, args)
    }

    /// Starts a sentinel that monitors the master on `master_port` as
    /// [`MASTER_NAME`], from a config file of its own (sentinels rewrite it);
    /// `tls` adds these lines (TLS settings) to it.
    fn start_sentinel(master_port: u16, tls: &str) -> Self {
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
        Self::launch(dir, port, vec![config.into(), "--sentinel".into()])
    }

    fn launch(dir: TempDir, port: u16, args: Vec<OsString>) -> Self {
        let mut server = Self {
            child: Self::spawn(&args),
            port,
            dir,
            args,
        };
        server.wait_ready();
        server
    }

    fn spawn(args: &[OsString]) -> Child {
        Command::new("redis-server")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start redis-server: is it installed? (apt-get install redis-server)")
    }

    fn wait_ready(&mut self) {
        let (port, log) = (self.port, self.log_path());
        let child = &mut self.child;
        poll_until(
            START_TIMEOUT,
            || {
                if let Some(status) = child.try_wait().expect("redis-server status") {
                    panic!(
                        "redis-server on port {port} exited with {status}:\n{}",
                        read_log(&log)
                    );
                }
                query::<String>(port, &redis::cmd("PING")).is_some()
            },
            || {
                format!(
                    "redis-server on port {port} did not start:\n{}",
                    read_log(&log)
                )
            },
        );
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        read_log(&self.log_path())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    /// A plain Redis client connection, independent of dsession.
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Kills the server and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port, with the same arguments
    /// (and, without persistence, no data), and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(&self.args);
        self.wait_ready();
    }

    /// Waits until this replica has synced with its master.
    /// Waits until this replica has synced with its master.
    pub fn wait_synced(&self) {
        poll_until(
            START_TIMEOUT,
            || {
                // ROLE on a replica: slave, master host, master port, link state, offset.
                let role: Option<Vec<redis::Value>> = query(self.port, &redis::cmd("ROLE"));
                role.and_then(|role| role.into_iter().nth(3))
                    .and_then(|state| redis::from_redis_value::<String>(state).ok())
                    .is_some_and(|state| state == "connected")
            },
            || {
                format!(
                    "replica on port {} did not sync:\n{}",
                    self.port,
                    self.log()
                )
            },
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- redis-server log (port {}) ---\n{}",
                self.port,
                self.log()
            );
        }
    }
}

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
            args.extend([
                "--tls-replication".to_owned(),
                "yes".to_owned(),
                "--tls-client-cert-file".to_owned(),
                certificates.path("client.crt").display().to_string(),
                "--tls-client-key-file".to_owned(),
                certificates.path("client.key").display().to_string(),
            ]);
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
                RedisServer::start_sentinel(monitored, &lines)
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
        let master = self.master_port();
        let index = (0..2)
            .find(|&index| !self.server_has_port(index, master))
            .expect("the cluster has a replica");
        self.servers[index].kill();
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

/// A CA, a certificate for a server on 127.0.0.1 and a client certificate,
/// all signed by that CA, plus a second CA that signed none of them; made by
/// `openssl` in a temporary directory.
#[derive(Debug)]
pub struct TestCertificates {
    dir: TempDir,
}

impl TestCertificates {
    /// Makes the certificates (RSA 2048, valid for two days).
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("cannot run openssl: is it installed? (apt-get install openssl)");
            assert!(
                output.status.success(),
                "openssl {args:?} failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        for ca in ["ca", "other-ca"] {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
                "-subj",
                &format!("/CN=dsession test {ca}"),
            ]);
        }
        // Extensions make them version 3 certificates, which rustls needs.
        for (name, extensions) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(dir.path().join(format!("{name}.ext")), extensions)
                .expect("write the extensions file");
        }
        for (name, subject) in [("server", "/CN=127.0.0.1"), ("client", "/CN=dsession")] {
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                subject,
            ]);
            let mut sign = vec![
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
            ]
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
            sign.extend(["-extfile".to_owned(), format!("{name}.ext")]);
            openssl(&sign.iter().map(String::as_str).collect::<Vec<_>>());
        }
        Self { dir }
    }

    /// A file of the set: `ca.crt`, `other-ca.crt`, `server.crt`,
    /// `server.key`, `client.crt` or `client.key`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `redis-server` arguments for TLS on `tls_port`, requiring a client
    /// certificate signed by the CA.
    pub fn server_args(&self, tls_port: u16) -> Vec<String> {
        let file = |name: &str| self.path(name).display().to_string();
        vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            file("server.crt"),
            "--tls-key-file".into(),
            file("server.key"),
            "--tls-ca-cert-file".into(),
            file("ca.crt"),
        ]
    }
}

/// How long a Redis Cluster may take to agree on its slots and sync its
/// replicas.
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
                let mut args: Vec<String> = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    "--repl-diskless-sync-delay",
                    "0",
                ]
                .map(str::to_owned)
                .into();
                // The bus port defaults to the client port + 10000, which
                // may be past 65535 or taken.
                args.extend(["--cluster-port".to_owned(), free_port().to_string()]);
                if let Some(certificates) = tls {
                    let port = free_port();
                    tls_ports.push(port);
                    args.extend(certificates.server_args(port));
                    args.extend([
                        "--tls-cluster".to_owned(),
                        "yes".to_owned(),
                        "--tls-replication".to_owned(),
                        "yes".to_owned(),
                        "--tls-client-cert-file".to_owned(),
                        file("client.crt"),
                        "--tls-client-key-file".to_owned(),
                        file("client.key"),
                    ]);
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
        let output = create
            .args(["--cluster", "create"])
            .args(ports.iter().map(|port| format!("127.0.0.1:{port}")))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("cannot run redis-cli: is it installed? (apt-get install redis-tools)");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
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
