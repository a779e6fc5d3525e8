//! The admin console at `/admin`, in a real browser: `dsession serve` on
//! a real Redis with events on, driven by host/service/tests/console/browser.py
//! in headless Chromium (Debian's, through Playwright). The script logs in
//! with a wrong key and the right one, lists a user's three sessions on
//! three devices, revokes one (which `/auth` then refuses) and all, sees
//! their events arrive, and pages through a user's 10,000 sessions, each
//! page within a second. Those are written beforehand straight to Redis
//! in gosession's layout, as Go services sharing it would write them
//! (each with the metadata key dsession's default policy keeps beside).
//!
//! `DSESSION_SCREENSHOTS` names where the screenshots go (by default a
//! temporary directory; `scripts/console-screenshots` writes docs/console/),
//! `DSESSION_CONSOLE_SESSIONS` how many sessions the big user holds.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dsession_tests::RedisServer;
use dsession_tests::tools::tool;

const ADMIN_KEY: &str = "console-test-admin-key";

/// The user with many sessions.
const BIG_USER: &str = "bulk";

/// The browser the script drives.
const CHROMIUM: &str = "/usr/bin/chromium";

/// `dsession serve`, killed on drop.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_service(redis: &RedisServer, port: u16, log: &Path) -> Service {
    let log = std::fs::File::create(log).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_dsession"));
    for (variable, _) in std::env::vars().filter(|(name, _)| name.starts_with("DSESSION_")) {
        command.env_remove(variable);
    }
    let child = command
        .args(["serve", "--events", "--no-compile-cache", "--redis"])
        .arg(redis.url())
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("DSESSION_ADMIN_KEY", ADMIN_KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("run dsession serve");
    Service(child)
}

fn wait_healthy(service: &mut Service, port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = service.0.try_wait().unwrap() {
            panic!("dsession exited with {status}:\n{}", read(log));
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "dsession did not listen:\n{}",
            read(log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Writes `count` sessions of `user` in gosession's layout (README, "Redis
/// layout"): each token's key, its index entry, and the metadata key
/// beside it with a device, a user agent and an IP.
async fn write_sessions(redis: &RedisServer, user: &str, count: usize) {
    let mut connection = redis.client().await;
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let mut pipe = redis::pipe();
    for i in 0..count {
        let token = format!("{user}_{i:032x}");
        let meta = serde_json::json!({
            "device": format!("d{}", i % 5),
            "user_agent": "bulk-loader/1.0",
            "ip": format!("127.0.{}.{}", i / 250 % 250, i % 250 + 1),
        });
        pipe.cmd("SET")
            .arg(format!("gosession-token_{token}"))
            .arg(format!("gosession-user_{user}"))
            .arg("EX")
            .arg(3600)
            .ignore();
        pipe.cmd("SET")
            .arg(format!("gosession-token_{token}_{}", "0".repeat(32)))
            .arg(format!("{} {meta}", expiry - 3600))
            .arg("EX")
            .arg(3600)
            .ignore();
        pipe.cmd("HSET")
            .arg(format!("gosession-token_{user}"))
            .arg(&token)
            .arg(expiry)
            .ignore();
    }
    pipe.exec_async(&mut connection).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: install Debian's chromium (scripts/test does)"
    );
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("dsession.log");
    let port = dsession_tests::free_port();
    let mut service = start_service(&redis, port, &log);
    wait_healthy(&mut service, port, &log);
    let screenshots = std::env::var_os("DSESSION_SCREENSHOTS")
        .map_or_else(|| dir.path().join("screenshots"), Into::into);
    let sessions: usize = std::env::var("DSESSION_CONSOLE_SESSIONS").map_or(10_000, |count| {
        count
            .parse()
            .expect("DSESSION_CONSOLE_SESSIONS is a number")
    });
    write_sessions(&redis, BIG_USER, sessions).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/browser.py");
    let mut browser = Command::new(tool("python"));
    browser
        .arg(script)
        .env("DSESSION_URL", format!("http://127.0.0.1:{port}"))
        .env("DSESSION_ADMIN_KEY", ADMIN_KEY)
        .env("SCREENSHOTS", &screenshots)
        .env("BIG_USER", BIG_USER)
        .env("BIG_USER_SESSIONS", sessions.to_string())
        .env("CHROMIUM", CHROMIUM);
    let output =
        tokio::task::spawn_blocking(move || browser.output().expect("run the browser test"))
            .await
            .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{}\n--- dsession log ---\n{}",
        String::from_utf8_lossy(&output.stderr),
        read(&log)
    );
    for shot in ["login", "sessions", "events", "big-user"] {
        let path = screenshots.join(format!("{shot}.png"));
        assert!(path.is_file(), "{} was not taken", path.display());
    }
}
