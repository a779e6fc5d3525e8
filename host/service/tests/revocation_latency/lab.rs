//! One redis-server and two `dsession serve --near-cache` processes on it,
//! A and B, each its own process on a loopback port; the HTTP calls the
//! run makes on them, and a plain Redis client beside them.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dsession_tests::RedisServer;
use redis::aio::MultiplexedConnection;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;

/// The admin key of both instances.
const ADMIN_KEY: &str = "revocation-latency-admin-key";

/// The default policy's token key prefix (`{prefix}_{token}`, README and
/// guest/src/layout.rs): what another service deletes to revoke a token.
const TOKEN_KEY_PREFIX: &str = "gosession-token";

/// How long an instance may take to answer `/healthz` after it starts
/// (a debug build compiles the policy first).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one HTTP call may take before the run fails: far above what
/// loopback needs, so that only a hang reaches it.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A `dsession serve --near-cache` process; killed on drop, its log printed
/// if the test failed.
pub struct Service {
    name: &'static str,
    child: Child,
    base: String,
    dir: TempDir,
}

impl Service {
    /// Starts `dsession serve` with the near cache on `redis_url`, on a
    /// free loopback port, and waits until it answers `/healthz`.
    async fn start(name: &'static str, redis_url: &str, client: &Client) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = dsession_tests::free_port();
        let log = std::fs::File::create(dir.path().join("dsession.log")).unwrap();
        // Settings from the environment would change what is measured.
        let inherited = std::env::vars().filter(|(name, _)| name.starts_with("DSESSION_"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_dsession"));
        for (variable, _) in inherited {
            command.env_remove(variable);
        }
        let child = command
            .args(["serve", "--near-cache", "--no-compile-cache", "--redis"])
            .arg(redis_url)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("DSESSION_ADMIN_KEY", ADMIN_KEY)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run dsession serve");
        let mut service = Self {
            name,
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        };
        service.wait_healthy(client).await;
        service
    }

    async fn wait_healthy(&mut self, client: &Client) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited with {status}:\n{}", self.name, self.log());
            }
            let health = client.get(self.url("/healthz")).send().await;
            if health.is_ok_and(|response| response.status() == StatusCode::OK) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer /healthz in {START_TIMEOUT:?}:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dsession.log")).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.log());
        }
    }
}

/// What B answered one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200: the token is valid.
    Valid,
    /// 401: it is not.
    Refused,
    /// Anything else: another status with its error code, or no answer.
    Failed(String),
}

/// One check on B: when it was sent (before the request was written) and
/// answered (after the whole response was read), and what it answered.
#[derive(Debug, Clone)]
pub struct Check {
    pub sent: Instant,
    pub answered: Instant,
    pub answer: Answer,
}

/// Redis, A, B, the HTTP client the run calls them with and a plain Redis
/// connection of another service.
pub struct Lab {
    redis: RedisServer,
    a: Service,
    b: Service,
    client: Client,
    other: MultiplexedConnection,
}

impl Lab {
    pub async fn start() -> Self {
        let redis = RedisServer::start();
        let client = Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let a = Service::start("dsession A", &redis.url(), &client).await;
        let b = Service::start("dsession B", &redis.url(), &client).await;
        let other = redis.client().await;
        Self {
            redis,
            a,
            b,
            client,
            other,
        }
    }

    /// A token for `user`, issued by A through `POST /v1/tokens`.
    pub async fn issue(&self, user: &str) -> String {
        let response = self
            .client
            .post(self.a.url("/v1/tokens"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({ "user_id": user, "ttl": 3600 }))
            .send()
            .await
            .expect("A answers POST /v1/tokens");
        assert_eq!(response.status(), StatusCode::CREATED, "issuing on A");
        let issued: Value = response.json().await.unwrap();
        issued["token"].as_str().unwrap().to_owned()
    }

    /// Revokes `token` through A's `POST /v1/tokens/revoke`.
    pub async fn revoke_on_a(&self, token: &str) {
        let response = self
            .client
            .post(self.a.url("/v1/tokens/revoke"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({ "token": token }))
            .send()
            .await
            .expect("A answers POST /v1/tokens/revoke");
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "revoking on A");
    }

    /// Revokes `token` as another service would: a `DEL` of its key.
    pub async fn delete_token_key(&mut self, token: &str) {
        let deleted: i64 = redis::cmd("DEL")
            .arg(format!("{TOKEN_KEY_PREFIX}_{token}"))
            .query_async(&mut self.other)
            .await
            .unwrap();
        assert_eq!(deleted, 1, "the token key was not there to delete");
    }

    /// `GET /auth` on B with `token`.
    pub async fn check_on_b(&self, token: &str) -> Check {
        let sent = Instant::now();
        let answer = match self
            .client
            .get(self.b.url("/auth"))
            .bearer_auth(token)
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status();
                // Read to the end, so that the connection is kept for the next check.
                let body = response.bytes().await.unwrap_or_default();
                match status {
                    StatusCode::OK => Answer::Valid,
                    StatusCode::UNAUTHORIZED => Answer::Refused,
                    status => {
                        let body: Value = serde_json::from_slice(&body).unwrap_or_default();
                        let code = body["error"]["code"].as_str().unwrap_or("no error code");
                        Answer::Failed(format!("{} {code}", status.as_u16()))
                    }
                }
            }
            Err(error) => Answer::Failed(format!("no answer: {error}")),
        };
        Check {
            sent,
            answered: Instant::now(),
            answer,
        }
    }

    /// Calls of Redis's `GET` so far, from `INFO commandstats`.
    pub async fn redis_gets(&mut self) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.other)
            .await
            .unwrap();
        info.lines()
            .find_map(|line| line.strip_prefix("cmdstat_get:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |calls| calls.parse().unwrap())
    }

    /// Kills every connection B holds to Redis with `CLIENT KILL ID`, its
    /// tracking connection among them: how many.
    pub async fn kill_connections_of_b(&mut self) -> usize {
        let ports = local_ports_to(self.b.child.id(), self.redis.port());
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut self.other)
            .await
            .unwrap();
        let of_b: Vec<ClientEntry> = list
            .lines()
            .map(ClientEntry::parse)
            .filter(|client| ports.contains(&client.port))
            .collect();
        assert!(
            of_b.iter().any(|client| client.tracking),
            "no tracking connection of B (local ports {ports:?}) in CLIENT LIST:\n{list}"
        );
        for client in &of_b {
            let killed: i64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(client.id)
                .query_async(&mut self.other)
                .await
                .unwrap();
            assert_eq!(killed, 1, "CLIENT KILL ID {} killed {killed}", client.id);
        }
        of_b.len()
    }

    /// B's log so far, for a failure's message.
    pub fn log_of_b(&self) -> String {
        self.b.log()
    }
}

/// One line of `CLIENT LIST`: the client's id, its port on 127.0.0.1 and
/// whether it has `CLIENT TRACKING` on (flag `t`).
struct ClientEntry {
    id: u64,
    port: u16,
    tracking: bool,
}

impl ClientEntry {
    fn parse(line: &str) -> Self {
        let field = |name: &str| {
            line.split(' ')
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("no {name} in CLIENT LIST line {line}"))
        };
        Self {
            id: field("id").parse().unwrap(),
            port: field("addr").rsplit(':').next().unwrap().parse().unwrap(),
            tracking: field("flags").contains('t'),
        }
    }
}

/// The local ports of process `pid`'s TCP connections to `port` on
/// loopback: its socket inodes from `/proc/PID/fd`, matched in
/// `/proc/net/tcp`.
fn local_ports_to(pid: u32, port: u16) -> HashSet<u16> {
    let inodes: HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.ok()?.path()).ok()?;
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port_of = |address: &str| u16::from_str_radix(address.rsplit(':').next()?, 16).ok();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // sl, local address, remote address, state, …, inode (the tenth).
            let fields: Vec<&str> = line.split_whitespace().collect();
            let inode: u64 = fields.get(9)?.parse().ok()?;
            (inodes.contains(&inode) && port_of(fields.get(2)?)? == port)
                .then(|| port_of(fields[1]))
                .flatten()
        })
        .collect()
}
