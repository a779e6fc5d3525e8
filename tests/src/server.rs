//! One `redis-server` process owned by a test.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use crate::{START_TIMEOUT, free_port, poll_until, query};

/// Where a server writes its log, in its directory.
pub(crate) const LOG_FILE: &str = "redis.log";

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

    /// Spawns `redis-server` with `args` and waits until it answers.
    pub(crate) fn launch(dir: TempDir, port: u16, args: Vec<OsString>) -> Self {
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
