//! The accept loop: a cap on connections, header-read and idle time-outs,
//! a lingering close, and a graceful shutdown with a deadline, so that idle
//! or slow clients can neither exhaust descriptors nor hold the process up.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt as _;

/// Descriptors kept back from the connection cap for Redis, loaders and
/// policy files.
const RESERVED_DESCRIPTORS: u64 = 64;
/// The default cap, however many descriptors the process may open.
const DEFAULT_MAX_CONNECTIONS: u64 = 16_384;
/// The most a closing connection reads and discards of what the client is
/// still sending.
const LINGER_BYTES: usize = 64 * 1024 * 1024;
/// The longest a closing connection reads what the client is still sending.
const LINGER_TIME: Duration = Duration::from_secs(5);

/// How connections are accepted, timed out and closed.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Time to send a request's headers, also between kept-alive requests.
    pub header_read_timeout: Duration,
    /// Time a connection may go without a byte either way.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Time requests in flight get to finish after shutdown begins.
    pub shutdown_timeout: Duration,
}

/// The default connection cap: raises the open-file limit to its hard
/// limit, then leaves room for the descriptors that are not connections.
pub fn default_max_connections() -> usize {
    let soft = rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft))
        .unwrap_or(1024);
    let cap = soft
        .saturating_sub(RESERVED_DESCRIPTORS)
        .clamp(16, DEFAULT_MAX_CONNECTIONS);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets
/// requests in flight finish for up to `limits.shutdown_timeout` and closes
/// what is still open.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closed) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // At the cap, stop accepting: new clients wait in the backlog until
        // a connection ends or times out, rather than failing `accept`.
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, or a connection reset before
                    // accept: back off briefly instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            limits.clone(),
            closed.clone(),
            slot,
        ));
    }
    drop(listener);
    closing.send_replace(true);
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            deadline = ?limits.shutdown_timeout,
            "shutdown deadline passed: closing the connections still open"
        );
        connections.shutdown().await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    mut closed: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let activity = Activity::new();
    let io = TokioIo::new(Tracked {
        stream,
        activity: Arc::clone(&activity),
        linger: None,
    });
    // Forward-auth believes a client's forwarded address only from a
    // trusted peer.
    let service =
        TowerToHyperService::new(router.map_request(move |request: Request<Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        }));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection = http.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        let idle_until = activity.last() + limits.idle_timeout;
        tokio::select! {
            _ = connection.as_mut() => return,
            changed = closed.changed(), if !closing => {
                closing = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep_until(idle_until) => {
                if activity.last().elapsed() >= limits.idle_timeout {
                    tracing::debug!("closing an idle connection");
                    return;
                }
            }
        }
    }
}

/// When a connection last moved a byte, as milliseconds since it opened.
#[derive(Debug)]
struct Activity {
    opened: Instant,
    last_millis: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            last_millis: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let millis = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_millis.store(millis, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_millis.load(Ordering::Relaxed))
    }
}

/// A TCP stream that records when it last read or wrote, and closes as
/// nginx's `lingering_close` does.
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
    /// Set once the write side is shut down.
    linger: Option<Linger>,
}

/// What a closing connection may still read and discard, and until when.
struct Linger {
    left: usize,
    until: Pin<Box<tokio::time::Sleep>>,
}

impl Tracked {
    /// Reads and discards what the client still sends until it closes, for
    /// at most [`LINGER_BYTES`] and [`LINGER_TIME`]. A response sent before
    /// the request was read whole (a 413 from `Content-Length`) would
    /// otherwise be lost: closing a socket with unread bytes sends a reset,
    /// and a client still writing its body never reads the answer.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let linger = self.linger.get_or_insert_with(|| Linger {
            left: LINGER_BYTES,
            until: Box::pin(tokio::time::sleep(LINGER_TIME)),
        });
        let mut discard = [0; 8192];
        loop {
            if linger.until.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut discard);
            match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(()))
                    if !buf.filled().is_empty() && buf.filled().len() < linger.left =>
                {
                    linger.left -= buf.filled().len();
                }
                // End of file, a reset, or enough read.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.linger.is_none() {
            // The answer is out: the client sees its end, then the rest of
            // what it sends is drained.
            std::task::ready!(Pin::new(&mut self.stream).poll_shutdown(cx))?;
        }
        self.poll_linger(cx)
    }
}
