//! `dsession serve` as a process: started, asked over HTTP, signalled,
//! and watching a policy file to swap; the example policies built by their
//! own scripts and swapped in and out of it under load.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dsession::Policy;

use super::{code, dsession, stderr, stdout, words, write_file};

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

/// Clients sending `GET /auth` at once during the swaps.
const CLIENTS: usize = 4;

/// Builds the policy of `examples/{example}` into `dir` with the example's
/// own `build.sh`, then checks it with `dsession policy check`: its
/// self-check passes and it lists each of `imports`. The component's path.
pub(super) fn build_example(dir: &tempfile::TempDir, example: &str, imports: &[&str]) -> PathBuf {
    let out = dir.path().join(format!("{example}.wasm"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(example)
        .join("build.sh");
    let started = Instant::now();
    let output = Command::new(&script)
        .arg(&out)
        .output()
        .expect("build.sh runs");
    assert!(
        output.status.success(),
        "{example}/build.sh failed:\n{}{}",
        stdout(&output),
        stderr(&output)
    );
    eprintln!(
        "{example}/build.sh: {:.1} s, {} bytes",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&out).unwrap().len()
    );

    let checked = dsession(&["policy", "check", &out.display().to_string()]);
    assert_eq!(code(&checked), 0, "{checked:?}");
    let text = stdout(&checked);
    assert!(
        text.contains("self-check with the default settings: passed"),
        "{text}"
    );
    for import in imports {
        assert!(text.contains(import), "no {import} in:\n{text}");
    }
    out
}

/// Waits for `ready` as long as compiling a large component may take on a
/// busy machine.
fn wait_long(mut ready: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !ready() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Puts `bytes` at `path` in one step, as a deployment would, so that the
/// watcher never reads half a file.
fn replace(path: &Path, bytes: &[u8]) {
    let next = path.with_extension("next");
    std::fs::write(&next, bytes).unwrap();
    std::fs::rename(&next, path).unwrap();
}

/// A token issued through the service's `POST /v1/tokens`, by the policy
/// it runs.
fn create_token(port: u16, user: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = format!("{{\"user_id\":\"{user}\"}}");
    write!(
        stream,
        "POST /v1/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 201"), "{response}");
    let created: serde_json::Value = serde_json::from_str(body).unwrap();
    created["token"].as_str().unwrap().to_owned()
}

/// One `GET /auth` on a kept-alive connection: its status.
fn check(connection: &mut BufReader<TcpStream>, token: &str) -> std::io::Result<u16> {
    // One write: pieces would wait on Nagle and the server's delayed ACK.
    let request =
        format!("GET /auth HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n");
    connection.get_mut().write_all(request.as_bytes())?;
    let mut line = String::new();
    connection.read_line(&mut line)?;
    let status = status_of(&line);
    let mut length = 0;
    loop {
        line.clear();
        if connection.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    connection.read_exact(&mut vec![0; length])?;
    Ok(status)
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

impl Tally {
    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::SeqCst);
        self.first_failure.lock().unwrap().get_or_insert(why);
    }
}

/// A client that checks `token` over one kept-alive connection (a new one
/// after a broken one) until `stop`.
fn client(port: u16, token: String, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let connect = || -> std::io::Result<BufReader<TcpStream>> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(BufReader::new(stream))
    };
    let mut connection = None;
    while !stop.load(Ordering::SeqCst) {
        let outcome = match connection.take() {
            Some(open) => Ok(open),
            None => connect(),
        }
        .and_then(|mut open| check(&mut open, &token).map(|status| (open, status)));
        match outcome {
            Ok((open, 200)) => {
                tally.ok.fetch_add(1, Ordering::SeqCst);
                connection = Some(open);
            }
            Ok((open, status)) => {
                tally.fail(format!("GET /auth answered {status}"));
                connection = Some(open);
            }
            Err(error) => tally.fail(format!("GET /auth failed: {error}")),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Serves `url`'s Redis on the Rust default policy, with warm instances of
/// up to `instance_memory_mib`, and swaps it to `component` (written in
/// `language`) and back while [`CLIENTS`] clients check a token of the
/// Rust policy's: no check fails, some run on `component`, and a token
/// `component` issued stays valid under the Rust policy.
pub(super) fn swaps_in_and_out_under_load(
    dir: &tempfile::TempDir,
    url: &str,
    component: &Path,
    language: &str,
    instance_memory_mib: u32,
) {
    let config = write_file(
        dir,
        "dsession.toml",
        format!("[limits]\npolicy_instance_max_memory_mib = {instance_memory_mib}\n"),
    );
    let config_arg = config.display().to_string();
    let (process, serving) = serve_watching(dir.path(), url, &["--config", &config_arg]);
    let port = process.port;
    // Both policies keep gosession's layout: a token of either is valid
    // under the other, so every check of this one must pass throughout.
    let token = issue(url, "default", "alice");
    assert_eq!(auth(&process, &token), 200);

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (token, tally, stop) = (token.clone(), Arc::clone(&tally), Arc::clone(&stop));
            std::thread::spawn(move || client(port, token, tally, stop))
        })
        .collect();

    let swapped = Instant::now();
    replace(&serving, &std::fs::read(component).unwrap());
    wait_long(
        || reloads(port) == 1,
        &format!("the {language} policy was not swapped in"),
    );
    eprintln!(
        "swap to {language}: {:.1} s",
        swapped.elapsed().as_secs_f64()
    );
    let before = tally.ok.load(Ordering::SeqCst);
    let issued_by_component = create_token(port, "bob");
    std::thread::sleep(Duration::from_secs(3));
    let on_component = tally.ok.load(Ordering::SeqCst) - before;

    let swapped = Instant::now();
    replace(&serving, Policy::builtin_component());
    wait_long(
        || reloads(port) == 2,
        "the Rust policy was not swapped back",
    );
    eprintln!(
        "swap back to Rust: {:.1} s",
        swapped.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }

    let ok = tally.ok.load(Ordering::SeqCst);
    let failed = tally.failed.load(Ordering::SeqCst);
    eprintln!("{ok} checks passed during the swaps, {on_component} of them in 3 s on {language}");
    assert_eq!(
        failed,
        0,
        "{failed} checks failed, the first: {:?}",
        tally.first_failure.lock().unwrap()
    );
    assert!(on_component > 0, "no check ran on the {language} policy");
    assert_eq!(
        auth(&process, &issued_by_component),
        200,
        "a token the {language} policy issued is valid under the Rust one"
    );
}
