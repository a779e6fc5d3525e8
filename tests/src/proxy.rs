//! A TCP proxy that delays, stalls and cuts what it forwards, in the
//! manner of toxiproxy, for links where the kernel's netem is missing.
//!
//! Each direction of each connection is read by one thread and written by
//! another; a chunk read at `t` is written at `t + delay + jitter`, never
//! before an earlier chunk, so that the byte stream stays in order.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What the proxy does to the bytes it forwards now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Toxics {
    /// Added to every chunk, each way.
    pub delay: Duration,
    /// Up to this much more, at random, on each chunk.
    pub jitter: Duration,
    /// Holds every byte (the connections stay open) while set.
    pub stalled: bool,
}

#[derive(Debug, Default)]
struct Shared {
    toxics: Mutex<Toxics>,
    /// Every open stream, both ends, to cut them.
    streams: Mutex<Vec<TcpStream>>,
    stopped: AtomicBool,
    /// Cut every connection in the middle of the next chunk a client sends.
    cut_mid_write: AtomicBool,
    /// State of the jitter's xorshift generator.
    random: AtomicU64,
}

impl Shared {
    fn toxics(&self) -> Toxics {
        *self.toxics.lock().unwrap()
    }

    /// A random duration below `bound`.
    fn jitter(&self, bound: Duration) -> Duration {
        if bound.is_zero() {
            return Duration::ZERO;
        }
        let mut x = self.random.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random.store(x, Ordering::Relaxed);
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(x % nanos)
    }
}

/// A proxy listening on `address`, forwarding to one upstream; stopped on
/// drop, which also closes its connections.
#[derive(Debug)]
pub struct LatencyProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
}

impl LatencyProxy {
    /// Listens on `bind` (port 0 for a free one) and forwards each
    /// connection to `upstream`, untouched until [`Self::set`].
    pub fn start(bind: SocketAddr, upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind(bind).expect("bind the proxy");
        let address = listener.local_addr().unwrap();
        let seed = u64::from(std::process::id()) << 32 | u64::from(address.port()) | 1;
        let shared = Arc::new(Shared {
            random: AtomicU64::new(seed),
            ..Shared::default()
        });
        let accepting = Arc::clone(&shared);
        thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(1))
                else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut streams = accepting.streams.lock().unwrap();
                    streams.extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                }
                pipe(
                    &accepting,
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    true,
                );
                pipe(&accepting, server, client, false);
            }
        });
        Self { address, shared }
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Applies `toxics` from now on, to open connections too.
    pub fn set(&self, toxics: Toxics) {
        *self.shared.toxics.lock().unwrap() = toxics;
    }

    /// Closes every open connection, as a lost link would; new ones are
    /// accepted again.
    pub fn cut(&self) {
        self.shared.cut();
    }

    /// Forwards only the first half of the next chunk a client sends, then
    /// closes every open connection: a pipeline (a `MULTI` … `EXEC`
    /// among them) reaches the server cut off in its middle.
    pub fn cut_mid_write(&self) {
        self.shared.cut_mid_write.store(true, Ordering::SeqCst);
    }
}

impl Shared {
    fn cut(&self) {
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the accepting thread so that it sees the stop.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_millis(100));
    }
}

/// Forwards `from` to `to` with the proxy's toxics, on two threads;
/// `upstream` for the client's side, toward the server.
fn pipe(shared: &Arc<Shared>, mut from: TcpStream, mut to: TcpStream, upstream: bool) {
    let (chunks, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    let reading = Arc::clone(shared);
    thread::spawn(move || {
        let mut buffer = vec![0; 64 * 1024];
        let mut last = Instant::now();
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    let toxics = reading.toxics();
                    let at = Instant::now() + toxics.delay + reading.jitter(toxics.jitter);
                    last = last.max(at);
                    if chunks.send((last, buffer[..read].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let writing = Arc::clone(shared);
    thread::spawn(move || {
        for (at, chunk) in due {
            while writing.toxics().stalled && !writing.stopped.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(5));
            }
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            if upstream && writing.cut_mid_write.swap(false, Ordering::SeqCst) {
                let _ = to.write_all(&chunk[..chunk.len() / 2]);
                let _ = to.flush();
                writing.cut();
                break;
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
