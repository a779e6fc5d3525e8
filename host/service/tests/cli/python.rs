//! The Python policy of `examples/policy-python`, as its author takes it
//! to production: built by its `build.sh` (componentize-py against `wit/`
//! alone), checked, put through the conformance kit in memory and on
//! Redis, and swapped into a running `dsession serve` from the Rust
//! default policy and back, under a small load of which no request fails.
//!
//! `build.sh` keeps its virtualenv in the user's cache directory, so only
//! the first run on a machine downloads componentize-py.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dsession::Policy;

use super::serving::{auth, issue, reloads, serve_watching, status_of};
use super::{code, dsession, passes_the_kit, stderr, stdout, write_file};

/// Clients sending `GET /auth` at once during the swaps.
const CLIENTS: usize = 4;

/// Builds the Python policy into `out` with the example's own script.
fn build(out: &Path) {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policy-python/build.sh");
    let started = Instant::now();
    let output = Command::new(&script)
        .arg(out)
        .output()
        .expect("build.sh runs");
    assert!(
        output.status.success(),
        "build.sh failed:\n{}{}",
        stdout(&output),
        stderr(&output)
    );
    eprintln!(
        "build.sh: {:.1} s, {} bytes",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(out).unwrap().len()
    );
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

#[test]
fn the_python_policy_builds_from_the_wit_alone_passes_the_kit_and_swaps_in_and_out_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let python = dir.path().join("policy-python.wasm");
    build(&python);
    let python_arg = python.display().to_string();

    let checked = dsession(&["policy", "check", &python_arg]);
    assert_eq!(code(&checked), 0, "{checked:?}");
    let text = stdout(&checked);
    assert!(
        text.contains("self-check with the default settings: passed"),
        "{text}"
    );
    // componentize-py imports the whole of WASI 0.2; the host links it all,
    // giving nothing through files and sockets.
    for import in [
        "wasi:filesystem/preopens@0.2",
        "wasi:sockets/tcp@0.2",
        "wasi:cli/environment@0.2",
        "dsession:session/store@0.3.0",
    ] {
        assert!(text.contains(import), "no {import} in:\n{text}");
    }

    let redis = passes_the_kit(
        &python_arg,
        "pass  single mode",
        &["--policy-instance-max-memory-mib", "32"],
    );
    let url = redis.url();

    // A service on the Rust default policy, with room for an interpreter's
    // instance to be reused.
    let config = write_file(
        &dir,
        "dsession.toml",
        "[limits]\npolicy_instance_max_memory_mib = 32\n",
    );
    let config_arg = config.display().to_string();
    let (process, serving) = serve_watching(dir.path(), &url, &["--config", &config_arg]);
    let port = process.port;
    // Both policies keep gosession's layout: a token of either is valid
    // under the other, so every check of this one must pass throughout.
    let token = issue(&url, "default", "alice");
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
    replace(&serving, &std::fs::read(&python).unwrap());
    wait_long(
        || reloads(port) == 1,
        "the Python policy was not swapped in",
    );
    eprintln!("swap to Python: {:.1} s", swapped.elapsed().as_secs_f64());
    let before = tally.ok.load(Ordering::SeqCst);
    let issued_by_python = create_token(port, "bob");
    std::thread::sleep(Duration::from_secs(3));
    let on_python = tally.ok.load(Ordering::SeqCst) - before;

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
    eprintln!("{ok} checks passed during the swaps, {on_python} of them in 3 s on Python");
    assert_eq!(
        failed,
        0,
        "{failed} checks failed, the first: {:?}",
        tally.first_failure.lock().unwrap()
    );
    assert!(on_python > 0, "no check ran on the Python policy");
    assert_eq!(
        auth(&process, &issued_by_python),
        200,
        "a token the Python policy issued is valid under the Rust one"
    );
}
