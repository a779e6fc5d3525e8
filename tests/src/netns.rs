//! A lab of separate hosts on one machine: network namespaces joined by a
//! bridge, with `nft` rules to partition them and to drop packets.
//!
//! Each [`Host`] is a namespace with one address on the lab's bridge,
//! which lives in a namespace of its own; the test's own process reaches
//! every host through one more link, at [`Lab::gateway`]. Partitions and
//! loss are `nft` rules in the hosts' namespaces, so traffic never leaves
//! the lab. Needs root, `ip` (iproute2) and `nft` (nftables).

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tempfile::TempDir;

use crate::server::LOG_FILE;
use crate::{START_TIMEOUT, poll_until};

/// Labs made by this process so far, to give each its own names and subnet.
static LABS: AtomicU32 = AtomicU32::new(0);

/// The port every lab Redis listens on, on its host's address.
pub const REDIS_PORT: u16 = 6379;

/// The port every lab sentinel listens on.
pub const SENTINEL_PORT: u16 = 26379;

/// Runs `program` with `args`; panics with its stderr when it fails.
fn run<I, S>(program: &str, args: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let output = Command::new(program)
        .args(&args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error} (is it installed?)"));
    assert!(
        output.status.success(),
        "{program} {} failed: {}",
        args.iter()
            .map(|arg| arg.as_ref().to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `ip` with `args`.
fn ip(args: &[&str]) {
    run("ip", args);
}

/// A namespace with one address on the lab's bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    name: String,
    namespace: String,
    address: Ipv4Addr,
}

impl Host {
    /// What the lab calls it, for tables and messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its address on the bridge.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// A command that runs `program` inside the host's namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(program);
        command
    }

    /// Applies an `nft` script in the host's namespace.
    fn nft(&self, script: &str) {
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run nft: apt-get install nftables");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "nft in {} failed: {}\n{script}",
            self.name,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Namespaces joined by a bridge; all removed on drop.
#[derive(Debug)]
pub struct Lab {
    /// Prefix of every namespace and link name of this lab.
    prefix: String,
    /// The first three octets of the lab's /24.
    subnet: [u8; 3],
    hub: String,
    hosts: Vec<Host>,
}

/// The nft table each host's rules live in.
const TABLE: &str = "lab";

impl Lab {
    /// A bridge in a namespace of its own, and a link to it from the test's
    /// process at [`Self::gateway`].
    pub fn new() -> Self {
        let serial = LABS.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        // Names at most 15 bytes: `d{pid % 10^6}{serial}` and a suffix.
        let prefix = format!("d{}{serial}", pid % 1_000_000);
        let subnet = [
            10,
            200 + u8::try_from(pid % 50).unwrap(),
            u8::try_from(serial % 250).unwrap(),
        ];
        let hub = format!("{prefix}hub");
        let lab = Self {
            prefix,
            subnet,
            hub,
            hosts: Vec::new(),
        };
        ip(&["netns", "add", &lab.hub]);
        lab.in_hub(&["link", "add", "bridge0", "type", "bridge"]);
        lab.in_hub(&["link", "set", "bridge0", "up"]);
        let outside = format!("{}g0", lab.prefix);
        let inside = format!("{}g1", lab.prefix);
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ]);
        ip(&["link", "set", &inside, "netns", &lab.hub]);
        lab.in_hub(&["link", "set", &inside, "master", "bridge0"]);
        lab.in_hub(&["link", "set", &inside, "up"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", lab.address(1)),
            "dev",
            &outside,
        ]);
        ip(&["link", "set", &outside, "up"]);
        lab
    }

    fn in_hub(&self, args: &[&str]) {
        let mut all = vec!["-n", self.hub.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    fn address(&self, last: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, last)
    }

    /// The test process's own address on the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        self.address(1)
    }

    /// A new host named `name`, with an empty nft table.
    pub fn host(&mut self, name: &str) -> Host {
        let index = self.hosts.len() + 2;
        let host = Host {
            name: name.to_owned(),
            namespace: format!("{}h{index}", self.prefix),
            address: self.address(u8::try_from(index).expect("at most 250 hosts")),
        };
        ip(&["netns", "add", &host.namespace]);
        let outside = format!("{}h{index}a", self.prefix);
        let inside = format!("{}h{index}b", self.prefix);
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ]);
        ip(&["link", "set", &outside, "netns", &self.hub]);
        self.in_hub(&["link", "set", &outside, "master", "bridge0"]);
        self.in_hub(&["link", "set", &outside, "up"]);
        ip(&["link", "set", &inside, "netns", &host.namespace]);
        let netns = |args: &[&str]| {
            let mut all = vec!["-n", host.namespace.as_str()];
            all.extend_from_slice(args);
            ip(&all);
        };
        netns(&[
            "addr",
            "add",
            &format!("{}/24", host.address),
            "dev",
            &inside,
        ]);
        netns(&["link", "set", &inside, "up"]);
        netns(&["link", "set", "lo", "up"]);
        host.nft(&format!(
            "table inet {TABLE} {{\n\
             chain input {{ type filter hook input priority 0; }}\n\
             chain output {{ type filter hook output priority 0; }}\n\
             }}"
        ));
        self.hosts.push(host.clone());
        host
    }

    /// Cuts every host of `side` off from every host of `other`, both ways,
    /// until [`Self::heal`].
    pub fn partition(&self, side: &[&Host], other: &[&Host]) {
        for host in side {
            let peers = other
                .iter()
                .map(|peer| peer.address.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            host.nft(&format!(
                "add rule inet {TABLE} input ip saddr {{ {peers} }} drop\n\
                 add rule inet {TABLE} output ip daddr {{ {peers} }} drop\n"
            ));
        }
    }

    /// Cuts `host` off from everyone, the test's process too.
    pub fn isolate(&self, host: &Host) {
        let others: Vec<&Host> = self.hosts.iter().filter(|peer| *peer != host).collect();
        self.partition(&[host], &others);
        host.nft(&format!(
            "add rule inet {TABLE} input ip saddr {} drop\n\
             add rule inet {TABLE} output ip daddr {} drop\n",
            self.gateway(),
            self.gateway()
        ));
    }

    /// Drops `percent` of the packets between `host` and each of `peers`,
    /// each way, at random.
    pub fn loss(&self, host: &Host, peers: &[&Host], percent: u8) {
        for peer in peers {
            host.nft(&format!(
                "add rule inet {TABLE} input ip saddr {peer} numgen random mod 100 < {percent} drop\n\
                 add rule inet {TABLE} output ip daddr {peer} numgen random mod 100 < {percent} drop\n",
                peer = peer.address
            ));
        }
    }

    /// Removes every partition and every loss.
    pub fn heal(&self) {
        for host in &self.hosts {
            host.nft(&format!(
                "flush chain inet {TABLE} input\nflush chain inet {TABLE} output\n"
            ));
        }
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Removing a namespace removes its end of each veth, and so the pair.
        for host in &self.hosts {
            let _ = Command::new("ip")
                .args(["netns", "del", &host.namespace])
                .status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.hub])
            .status();
    }
}

/// A `redis-server` (or sentinel) inside a lab host, on its address; killed
/// on drop, and startable again with the same directory.
#[derive(Debug)]
pub struct LabRedis {
    host: Host,
    port: u16,
    child: Option<Child>,
    dir: TempDir,
    args: Vec<String>,
}

impl LabRedis {
    /// A Redis server on `host` with `extra` arguments (`--appendonly yes`,
    /// `--replicaof …`), once it answers.
    pub fn start(host: &Host, extra: &[&str]) -> Self {
        let port = REDIS_PORT.to_string();
        let mut args: Vec<String> = ["--port", &port, "--save", "", "--appendonly", "no"]
            .iter()
            .map(|arg| (*arg).to_owned())
            .collect();
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        Self::launch(host, REDIS_PORT, None, args)
    }

    /// A sentinel on `host` watching the master at `master` (quorum
    /// `quorum`), which it calls `name`.
    pub fn sentinel(host: &Host, name: &str, master: Ipv4Addr, quorum: u8) -> Self {
        let config = format!(
            "port {SENTINEL_PORT}\n\
             sentinel monitor {name} {master} {REDIS_PORT} {quorum}\n\
             sentinel down-after-milliseconds {name} 1000\n\
             sentinel failover-timeout {name} 5000\n\
             sentinel parallel-syncs {name} 1\n"
        );
        Self::launch(host, SENTINEL_PORT, Some(config), vec!["--sentinel".into()])
    }

    fn launch(host: &Host, port: u16, config: Option<String>, args: Vec<String>) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut all = Vec::new();
        if let Some(config) = config {
            let path = dir.path().join("sentinel.conf");
            std::fs::write(&path, config).unwrap();
            all.push(path.to_string_lossy().into_owned());
        }
        all.extend(args);
        all.extend([
            // The lab is its own network: clients come from other hosts.
            "--protected-mode".to_owned(),
            "no".to_owned(),
            "--bind".to_owned(),
            host.address.to_string(),
            "--dir".to_owned(),
            dir.path().to_string_lossy().into_owned(),
            "--logfile".to_owned(),
            dir.path().join(LOG_FILE).to_string_lossy().into_owned(),
        ]);
        let mut server = Self {
            host: host.clone(),
            port,
            child: None,
            dir,
            args: all,
        };
        server.restart();
        server
    }

    /// Starts it again, after [`Self::kill`], on the same address and with
    /// the same directory (its AOF and config), and waits until it answers.
    pub fn restart(&mut self) {
        let child = self
            .host
            .command("redis-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start redis-server: apt-get install redis-server");
        self.child = Some(child);
        poll_until(
            START_TIMEOUT,
            || {
                self.query::<String>(&redis::cmd("PING"))
                    .is_ok_and(|pong| pong == "PONG")
            },
            || format!("redis on {} did not start:\n{}", self.host.name, self.log()),
        );
    }

    /// `SIGKILL`s it: no shutdown, no last fsync.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The host it runs on.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// `address:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host.address, self.port)
    }

    /// `redis://address:port/0`.
    pub fn url(&self) -> String {
        format!("redis://{}/0", self.address())
    }

    /// One command over a fresh connection from the test's process, with
    /// short timeouts.
    pub fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> redis::RedisResult<T> {
        let client = redis::Client::open(format!("redis://{}", self.address()))?;
        let mut connection = client.get_connection_with_timeout(Duration::from_secs(1))?;
        connection.set_read_timeout(Some(Duration::from_secs(2)))?;
        command.query(&mut connection)
    }

    /// Its directory, where its AOF lives.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for LabRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
