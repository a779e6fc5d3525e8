//! One `redis-server` process owned by a test.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use tempfile::TempDir;

use crate::{POLL_INTERVAL, START_TIMEOUT, free_port, poll_until, query};

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
        // A port found free may be taken before the server binds it (by
        // another test's server, or as a client's local port): try again
        // on fresh ports, the cluster bus port too.
        for attempt in 1.. {
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
            args.extend(with_fresh_bus_port(extra, attempt));
            let mut server = Self {
                child: Self::spawn(&args),
                port,
                dir,
                args,
            };
            match server.ready() {
                Ok(()) => return server,
                Err(failure) if attempt < PORT_ATTEMPTS && failure.contains(PORT_TAKEN) => {}
                Err(failure) => panic!("{failure}"),
            }
        }
        unreachable!("the attempts are counted up to PORT_ATTEMPTS")
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
        if let Err(failure) = self.ready() {
            panic!("{failure}");
        }
    }

    /// Waits until the server answers; why not, with its log, when it
    /// exits or does not answer in time.
    fn ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("redis-server status") {
                return Err(format!(
                    "redis-server on port {} exited with {status}:\n{}",
                    self.port,
                    self.log()
                ));
            }
            if query::<String>(self.port, &redis::cmd("PING")).is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "redis-server on port {} did not start:\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
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

    /// Stops the process (`SIGSTOP`) until [`Self::resume`]: its
    /// connections stay open but nothing answers, as on a host that hangs.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused process run again (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill {signal} redis-server failed");
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

/// How often [`RedisServer::start_with`] tries fresh ports.
const PORT_ATTEMPTS: u32 = 5;

/// What redis-server logs when a port it was given is taken.
const PORT_TAKEN: &str = "Address already in use";

/// `extra`, with the value of a `--cluster-port` replaced by a fresh free
/// port after the first attempt.
fn with_fresh_bus_port(extra: &[&str], attempt: u32) -> Vec<OsString> {
    let mut args: Vec<OsString> = extra.iter().map(OsString::from).collect();
    if attempt > 1
        && let Some(at) = extra.iter().position(|arg| *arg == "--cluster-port")
        && let Some(value) = args.get_mut(at + 1)
    {
        *value = free_port().to_string().into();
    }
    args
}
