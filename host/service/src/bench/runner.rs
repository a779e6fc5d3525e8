//! Runs one figure: tasks prepare their keys and tokens, start together,
//! call their target until the time is up, and count what they did.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use dsession::SessionManager;
use dsession::store::{Call, Store as _, Tap};

use super::allocations;
use super::args::Op;
use super::baselines::{Baseline, Target, replay};
use super::grpc::Grpc;
use super::http::Http;
use super::report::Figure;

/// Lifetime of the tokens the bench issues: long enough to outlive a run.
const TOKEN_TTL: i64 = 3600;
/// Lifetime of tokens issued by the set-token figures, which pile up.
const SHORT_TTL: i64 = 120;
/// Tokens of the user that list-user-token lists.
const LISTED_TOKENS: usize = 10;

/// What every task of a figure shares.
pub(super) struct Bench {
    /// Starts every user id of this run, so that a run on a Redis that
    /// earlier runs filled meets only users of its own.
    pub(super) run: String,
    pub(super) store: Tap,
    /// The store without its near cache, for the GET, GET+TTL and SET
    /// baselines; a tap of its own either way.
    pub(super) raw: Tap,
    /// Records what `recorded` and `recorded_single` send, one operation
    /// at a time (`recording`).
    pub(super) recorder: Tap,
    pub(super) recording: tokio::sync::Mutex<()>,
    pub(super) recorded: SessionManager,
    pub(super) recorded_single: SessionManager,
    /// With the near cache on, a manager on `raw`, for the uncached check.
    pub(super) uncached: Option<SessionManager>,
    pub(super) sessions: SessionManager,
    pub(super) single: SessionManager,
    pub(super) service: Option<SocketAddr>,
    pub(super) grpc: Option<SocketAddr>,
}

/// One task's keys, tokens and connection, made before the clock starts.
struct Task {
    token: String,
    user: String,
    key: String,
    http: Option<Http>,
    grpc: Option<Grpc>,
    /// What one call of the operation sent, for its own-batch baseline.
    calls: Vec<Call>,
}

/// What one task measured.
#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

impl Bench {
    /// Prepares task `index` of figure number `figure`: each figure's users
    /// are its own, so a set-token user is new at every call.
    async fn task(&self, target: Target, figure: usize, index: usize) -> anyhow::Result<Task> {
        let mut task = Task {
            token: String::new(),
            user: format!("{}-{figure}-{index}", self.run),
            key: format!("dsession-bench:{index}"),
            http: None,
            grpc: None,
            calls: Vec::new(),
        };
        let sessions = &self.sessions;
        let prepared = match target {
            Target::Own(op) => Target::Op(op),
            Target::UncachedCheck => Target::Op(Op::Check),
            target => target,
        };
        match prepared {
            Target::Op(
                Op::Check | Op::CheckUser | Op::CheckUserCold | Op::Refresh | Op::Auth | Op::Grpc,
            ) => {
                task.token = sessions.set_token(&task.user, TOKEN_TTL).await?.token;
                if target == Target::Op(Op::CheckUser) {
                    sessions
                        .check_token_or_update_user(&task.token, TOKEN_TTL)
                        .await?;
                }
            }
            Target::Op(Op::List) => {
                sessions.delete_user_token(&task.user).await?;
                for _ in 0..LISTED_TOKENS {
                    sessions.set_token(&task.user, TOKEN_TTL).await?;
                }
            }
            Target::Store(Baseline::Get | Baseline::GetTtl) => {
                Baseline::prepare(&self.raw, &task.key, &task.user, TOKEN_TTL).await?;
            }
            Target::Op(Op::Set | Op::SetSingle)
            | Target::Store(Baseline::Set)
            | Target::Own(_)
            | Target::UncachedCheck
            | Target::Healthz => {}
        }
        if let Target::Own(op) = target {
            task.calls = self.record(op, &mut task).await?;
        }
        if matches!(target, Target::Op(Op::Auth) | Target::Healthz) {
            let address = self.service.context("the service is not running")?;
            let path = if target == Target::Healthz {
                "/healthz"
            } else {
                "/auth"
            };
            task.http = Some(Http::connect(address, path, &task.token).await?);
        }
        if target == Target::Op(Op::Grpc) {
            let address = self.grpc.context("the gRPC listener is not running")?;
            task.grpc = Some(Grpc::connect(address, &task.token).await?);
        }
        Ok(task)
    }

    /// What one call of `op` on `task` sends to the store, in order.
    async fn record(&self, op: Op, task: &mut Task) -> anyhow::Result<Vec<Call>> {
        let _alone = self.recording.lock().await;
        self.recorder.take_calls();
        let recorded = &self.recorded;
        match op {
            Op::Check => drop(recorded.check_token(&task.token).await?),
            Op::CheckUser => drop(
                recorded
                    .check_token_or_update_user(&task.token, TOKEN_TTL)
                    .await?,
            ),
            Op::Set => drop(
                recorded
                    .set_token(&format!("{}-recorded", task.user), SHORT_TTL)
                    .await?,
            ),
            Op::SetSingle => drop(
                self.recorded_single
                    .set_token(&task.user, SHORT_TTL)
                    .await?,
            ),
            Op::Refresh => drop(recorded.refresh_token(&task.token, TOKEN_TTL).await?),
            Op::List => drop(recorded.list_user_token(&task.user).await?),
            other => anyhow::bail!("{other:?} has no own-batch baseline"),
        }
        Ok(self.recorder.take_calls())
    }

    /// The tap that `target` goes through.
    pub(super) fn tap(&self, target: Target) -> &Tap {
        match target {
            Target::Store(_) | Target::UncachedCheck => &self.raw,
            _ => &self.store,
        }
    }

    /// Runs `target` once; the error says what went wrong. Returns how long
    /// the measured part took.
    async fn once(&self, target: Target, task: &mut Task, call: u64) -> Result<Duration, String> {
        let sessions = &self.sessions;
        let failed = |e: dsession::Error| e.to_string();
        let mut started = Instant::now();
        match target {
            Target::Op(Op::Check) => match sessions.check_token(&task.token).await {
                Ok(Some(_)) => {}
                Ok(None) => return Err("a live token checked as not valid".into()),
                Err(e) => return Err(failed(e)),
            },
            Target::Op(Op::CheckUser | Op::CheckUserCold) => {
                if target == Target::Op(Op::CheckUserCold) {
                    sessions.delete_user(&task.user).await.map_err(failed)?;
                    started = Instant::now();
                }
                match sessions
                    .check_token_or_update_user(&task.token, TOKEN_TTL)
                    .await
                {
                    Ok(Some(user)) if user.detail.is_some() => {}
                    Ok(other) => return Err(format!("unexpected answer {other:?}")),
                    Err(e) => return Err(failed(e)),
                }
            }
            Target::Op(Op::Set) => {
                let user = format!("{}-{call}", task.user);
                sessions.set_token(&user, SHORT_TTL).await.map_err(failed)?;
            }
            Target::Op(Op::SetSingle) => {
                self.single
                    .set_token(&task.user, SHORT_TTL)
                    .await
                    .map_err(failed)?;
            }
            Target::Op(Op::Refresh) => {
                sessions
                    .refresh_token(&task.token, TOKEN_TTL)
                    .await
                    .map_err(failed)?;
            }
            Target::Op(Op::List) => {
                let listed = sessions.list_user_token(&task.user).await.map_err(failed)?;
                if listed.len() != LISTED_TOKENS {
                    return Err(format!("listed {} tokens", listed.len()));
                }
            }
            Target::Op(Op::Auth) | Target::Healthz => {
                let http = task.http.as_mut().ok_or("no connection")?;
                let status = http.get().await.map_err(|e| e.to_string())?;
                if status != 200 {
                    return Err(format!("HTTP status {status}"));
                }
            }
            Target::Op(Op::Grpc) => {
                let grpc = task.grpc.as_mut().ok_or("no gRPC channel")?;
                let code = grpc.check().await.map_err(|e| e.to_string())?;
                if code != 0 {
                    return Err(format!("Check answered status {code}"));
                }
            }
            Target::Store(baseline) => {
                baseline
                    .once(&self.raw, &task.key, &task.user, SHORT_TTL)
                    .await?;
            }
            Target::Own(_) => replay(&self.store, &task.calls).await?,
            Target::UncachedCheck => {
                let uncached = self.uncached.as_ref().ok_or("no uncached manager")?;
                match uncached.check_token(&task.token).await {
                    Ok(Some(_)) => {}
                    Ok(None) => return Err("a live token checked as not valid".into()),
                    Err(e) => return Err(failed(e)),
                }
            }
        }
        Ok(started.elapsed())
    }
}

/// Measures `target` with `concurrency` tasks for `duration`.
pub(super) async fn measure(
    bench: &Arc<Bench>,
    figure: usize,
    target: Target,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Figure> {
    let label = format!("{} × {concurrency}", target.name());
    // Tasks prepare, the counters are cleared, then all start at once.
    let prepared = Arc::new(tokio::sync::Barrier::new(concurrency + 1));
    let go = Arc::new(tokio::sync::Barrier::new(concurrency + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let mut counters = Vec::with_capacity(concurrency);
    let mut tasks = Vec::with_capacity(concurrency);
    for index in 0..concurrency {
        let bench = Arc::clone(bench);
        let prepared = Arc::clone(&prepared);
        let go = Arc::clone(&go);
        let stop = Arc::clone(&stop);
        let done = Arc::new(AtomicU64::new(0));
        counters.push(Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            let task = bench.task(target, figure, index).await;
            prepared.wait().await;
            go.wait().await;
            let mut task = task?;
            let mut tally = Tally::default();
            let mut call = 0;
            while !stop.load(Ordering::Relaxed) {
                call += 1;
                // On the memory store nothing awaits for real: without a
                // yield now and then the tasks would starve the clock and
                // the service; a yield per call would measure tokio.
                if call % 16 == 0 {
                    tokio::task::yield_now().await;
                }
                match bench.once(target, &mut task, call).await {
                    Ok(took) => {
                        let nanos = u32::try_from(took.as_nanos()).unwrap_or(u32::MAX);
                        tally.latencies.push(nanos);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        tally.errors += 1;
                        tally.first_error.get_or_insert(error);
                    }
                }
            }
            anyhow::Ok(tally)
        }));
    }
    prepared.wait().await;
    let tap = bench.tap(target);
    tap.counters().take();
    let near_cache = tap.near_cache();
    allocations::start();
    go.wait().await;
    let started = Instant::now();
    let tick = Duration::from_millis(250);
    while started.elapsed() < duration {
        tokio::time::sleep(tick.min(duration.saturating_sub(started.elapsed()))).await;
        let ops: u64 = counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        progress(&format!(
            "bench: {label}: {:.1}/{:.1} s, {ops} ops",
            started.elapsed().as_secs_f64(),
            duration.as_secs_f64()
        ));
    }
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut allocated = None;
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        // The tasks stop within one call each: the first to end bounds the
        // count, before the tallies are merged (which allocates).
        let tally = task
            .await
            .context("a bench task panicked")?
            .with_context(|| format!("cannot prepare {label}"))?;
        allocated.get_or_insert_with(allocations::stop);
        latencies.extend(tally.latencies);
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
    }
    let seconds = started.elapsed().as_secs_f64();
    let allocations = allocated.unwrap_or_else(allocations::stop);
    let counts = tap.counters().take();
    let near_cache = near_cache
        .zip(tap.near_cache())
        .map(|(before, after)| (after.hits - before.hits, after.misses - before.misses));
    latencies.sort_unstable();
    Ok(Figure {
        target,
        concurrency,
        ops: latencies.len() as u64,
        seconds,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        errors,
        first_error,
        commands: counts.redis_commands(),
        round_trips: counts.round_trips,
        allocations,
        near_cache,
    })
}

fn percentile(sorted: &[u32], fraction: f64) -> Duration {
    let Some(last) = sorted.len().checked_sub(1) else {
        return Duration::ZERO;
    };
    let index = ((last as f64) * fraction).round() as usize;
    Duration::from_nanos(u64::from(sorted[index.min(last)]))
}

/// One line of progress on stderr, over the last one on a terminal.
pub(super) fn progress(line: &str) {
    use std::io::Write as _;
    let mut stderr = std::io::stderr();
    if std::io::IsTerminal::is_terminal(&stderr) {
        let _ = write!(stderr, "\r\x1b[2K{line}");
    } else {
        let _ = writeln!(stderr, "{line}");
    }
    let _ = stderr.flush();
}
