//! `dsession serve` as a process: started, asked over HTTP, signalled,
//! and watching a policy file to swap.

use std::path::{Path, PathBuf};
use std::process::Command;

use dsession::Policy;

use super::{code, dsession, words};

/// A `dsession serve` process, killed on drop.
pub(super) struct ServeProcess {
    pub(super) child: std::process::Child,
    pub(super) port: u16,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over a fresh connection: (status, body).
pub(super) fn http(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = status_of(&response);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

pub(super) fn serve(args: &[&str], envs: &[(&str, String)], port: u16) -> ServeProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_dsession"))
        .arg("serve")
        .args(args)
        .env_remove("DSESSION_REDIS_URL")
        .env_remove("DSESSION_POLICY")
        .env_remove("DSESSION_LISTEN")
        .env_remove("DSESSION_GRPC_LISTEN")
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run dsession serve");
    let process = ServeProcess { child, port };
    wait_for(
        || matches!(http(port, "GET", "/healthz"), Ok((200, _))),
        "dsession serve did not start",
    );
    process
}

pub(super) fn wait_for(mut ready: impl FnMut() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub(super) fn reloads(port: u16) -> u64 {
    let (_, metrics) = http(port, "GET", "/metrics").unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("dsession_policy_reloads_total "))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// One request with `headers`: its status.
pub(super) fn status(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    status_of(&response)
}

/// A token for `user` issued by `policy` on `url`'s Redis, as another
/// service would issue it.
pub(super) fn issue(url: &str, policy: &str, user: &str) -> String {
    let created = dsession(&words(&format!(
        "token create --user {user} --redis {url} --policy {policy} --json"
    )));
    assert_eq!(code(&created), 0, "{created:?}");
    let created: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    created["token"].as_str().unwrap().to_owned()
}

pub(super) fn auth(process: &ServeProcess, token: &str) -> u16 {
    let bearer = format!("Bearer {token}");
    status(process.port, "GET", "/auth", &[("Authorization", &bearer)])
}

pub(super) fn signal(process: &ServeProcess, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(process.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// `dsession serve` on `url`'s Redis with `extra` flags, watching the
/// policy file `dir/serving.wasm`, which starts as the built-in default
/// policy: the process and the file to swap a policy into.
pub(super) fn serve_watching(dir: &Path, url: &str, extra: &[&str]) -> (ServeProcess, PathBuf) {
    let serving = dir.join("serving.wasm");
    std::fs::write(&serving, Policy::builtin_component()).unwrap();
    let serving_arg = serving.display().to_string();
    let port = dsession_tests::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = extra.to_vec();
    args.extend([
        "--listen",
        &listen,
        "--redis",
        url,
        "--policy",
        &serving_arg,
    ]);
    args.push("--watch-policy");
    (serve(&args, &[], port), serving)
}

/// The status code of an HTTP response's status line; 0 when it has none.
pub(super) fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}
