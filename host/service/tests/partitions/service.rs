//! `dsession serve` inside a lab host, as its own process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use dsession_tests::netns::Host;
use tempfile::TempDir;

/// The port every lab dsession listens on.
const PORT: u16 = 7480;

/// The admin key of every lab dsession.
pub const ADMIN_KEY: &str = "lab-admin-key";

/// A `dsession serve` process in a lab host; killed on drop.
pub struct LabService {
    child: Child,
    address: SocketAddr,
    base: String,
    dir: TempDir,
}

impl LabService {
    /// Serves `store` (a `[store]` table's body, in TOML) with the built-in
    /// `policy` and `policy_config` (`key = "value"` lines) on `host`, and
    /// waits until it answers `/healthz`.
    pub fn start(host: &Host, store: &str, policy: &str, policy_config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "listen = \"{}:{PORT}\"\n\
             admin_key = \"{ADMIN_KEY}\"\n\
             [store]\n{store}\n\
             [policy]\npath = \"{policy}\"\ncompile_cache = false\n\
             [policy.config]\n{policy_config}\n",
            host.address()
        );
        let path = dir.path().join("dsession.toml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("dsession.log")).unwrap();
        let child = host
            .command(env!("CARGO_BIN_EXE_dsession"))
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "warn")
            .env_remove("DSESSION_REDIS_URL")
            .env_remove("DSESSION_POLICY")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run dsession serve");
        let mut service = Self {
            child,
            address: SocketAddr::from((host.address(), PORT)),
            base: format!("http://{}:{PORT}", host.address()),
            dir,
        };
        service.wait_healthy();
        service
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("dsession serve exited with {status}:\n{}", self.log());
            }
            if self.answers_health() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dsession serve did not answer:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether `GET /healthz` answers 200, over a plain HTTP/1.0 request.
    fn answers_health(&self) -> bool {
        let address = self.address;
        let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = String::new();
        stream.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").is_ok()
            && stream.read_to_string(&mut answer).is_ok()
            && answer.starts_with("HTTP/1.0 200") | answer.starts_with("HTTP/1.1 200")
    }

    /// `path` on this instance.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dsession.log")).unwrap_or_default()
    }
}

impl Drop for LabService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
