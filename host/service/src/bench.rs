//! `dsession bench`: what each token operation costs through the embedding
//! API, beside baselines measured in the same run through the same store
//! client at the same concurrency, so that the ratios hold on any machine.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use clap::{Args, ValueEnum};
use dsession::store::{Command, MemoryStore, Reply, SetCondition, Store, StoreError, Transaction};
use dsession::{InstanceReuse, Limits, Policy, SessionManager, SessionManagerBuilder, Settings};
use dsession_service::{AppState, Metrics, ServeConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::cli::StoreArgs;

/// Lifetime of the tokens the bench issues: long enough to outlive a run.
const TOKEN_TTL: i64 = 3600;
/// Lifetime of tokens issued by the set-token figures, which pile up.
const SHORT_TTL: i64 = 120;
/// Tokens of the user that list-user-token lists.
const LISTED_TOKENS: usize = 10;

/// `dsession bench`: operations per second, p50 and p99 latency, errors,
/// store commands and round trips per operation, and the ratio to a
/// same-run baseline. Without --redis, --sentinel or --cluster it runs on the memory
/// store.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Seconds each figure runs for.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Concurrent tasks; a list runs every figure at each.
    #[arg(long, value_delimiter = ',', default_value = "50")]
    concurrency: Vec<usize>,
    /// Operations to measure (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    ops: Vec<Op>,
    /// How policy instances are used: `pooled` (warm, reused) or `fresh`
    /// (a new one per call).
    #[arg(long, value_enum, default_value_t = Instances::Pooled)]
    instances: Instances,
    /// Also report the memory N live sessions take (host RSS on the memory
    /// store, `used_memory` on Redis).
    #[arg(long, default_value_t = 0)]
    sessions: usize,
    /// A smoke run for CI: 0.2 s per figure. Its figures mean little.
    #[arg(long)]
    quick: bool,
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The policy: a built-in one by name (`default`, `hardened`) or a
    /// `.wasm` file.
    #[arg(long, default_value = "default")]
    policy: PathBuf,
    /// A policy setting, `key=value`; repeat for more.
    #[arg(long = "policy-config", value_parser = crate::cli::parse_policy_config_pair)]
    policy_config: Vec<(String, String)>,
}

impl BenchArgs {
    /// A manager builder with the policy and its settings the flags name.
    fn builder(&self, policy: &Policy) -> SessionManagerBuilder {
        SessionManager::builder()
            .policy(policy.clone())
            .policy_config(self.policy_config.clone())
    }
}

/// The operations the bench can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Op {
    /// check-token on a live token.
    Check,
    /// check-token-or-update-user with the user's detail in the cache.
    CheckUser,
    /// check-token-or-update-user on a cold cache: every call loads the
    /// user from the in-process loader and caches it (a delete-user before
    /// each call, outside the latency but inside ops/s, empties the cache).
    CheckUserCold,
    /// set-token for a new user each call.
    Set,
    /// set-token in single mode, one user per task.
    SetSingle,
    /// refresh-token on a live token.
    Refresh,
    /// list-user-token of a user with 10 live tokens.
    List,
    /// `GET /auth` with a valid token through the service.
    Auth,
}

const ALL_OPS: [Op; 8] = [
    Op::Check,
    Op::CheckUser,
    Op::CheckUserCold,
    Op::Set,
    Op::SetSingle,
    Op::Refresh,
    Op::List,
    Op::Auth,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Instances {
    Pooled,
    Fresh,
}

/// What one figure measures: an operation or a baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Op(Op),
    /// `GET` of one key.
    Get,
    /// `GET` and `TTL` of one key in one pipeline, as check-token sends.
    GetTtl,
    /// `SET key value EX ttl`.
    Set,
    /// `GET /healthz` through the service.
    Healthz,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Self::Op(Op::Check) => "check-token",
            Self::Op(Op::CheckUser) => "check-token-or-update-user, cached",
            Self::Op(Op::CheckUserCold) => "check-token-or-update-user, cold",
            Self::Op(Op::Set) => "set-token",
            Self::Op(Op::SetSingle) => "set-token, single mode",
            Self::Op(Op::Refresh) => "refresh-token",
            Self::Op(Op::List) => "list-user-token (10 tokens)",
            Self::Op(Op::Auth) => "GET /auth",
            Self::Get => "baseline: GET",
            Self::GetTtl => "baseline: GET+TTL pipelined",
            Self::Set => "baseline: SET",
            Self::Healthz => "baseline: GET /healthz",
        }
    }

    /// The baseline an operation is compared with.
    fn baseline(self) -> Option<Self> {
        match self {
            Self::Op(Op::Check | Op::CheckUser | Op::CheckUserCold | Op::List) => Some(Self::Get),
            Self::Op(Op::Set | Op::SetSingle | Op::Refresh) => Some(Self::Set),
            Self::Op(Op::Auth) => Some(Self::Healthz),
            Self::Get | Self::GetTtl | Self::Set | Self::Healthz => None,
        }
    }
}

/// Counts what reaches the store, as Redis would see it: `MULTI`/`EXEC`
/// and `WATCH` count as commands, each method call as one round trip.
struct Counting {
    inner: Arc<dyn Store>,
    commands: Arc<AtomicU64>,
    round_trips: Arc<AtomicU64>,
}

impl Counting {
    fn record(&self, commands: usize) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        self.commands.fetch_add(commands as u64, Ordering::Relaxed);
    }

    fn take(&self) -> (u64, u64) {
        (
            self.commands.swap(0, Ordering::Relaxed),
            self.round_trips.swap(0, Ordering::Relaxed),
        )
    }
}

struct CountingTransaction {
    inner: Box<dyn Transaction>,
    commands: Arc<AtomicU64>,
    round_trips: Arc<AtomicU64>,
}

#[async_trait]
impl Transaction for CountingTransaction {
    async fn commit(
        self: Box<Self>,
        commands: Vec<Command>,
    ) -> Result<Option<Vec<Reply>>, StoreError> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        // An empty commit is an UNWATCH; otherwise MULTI … EXEC.
        let sent = if commands.is_empty() {
            1
        } else {
            commands.len() + 2
        };
        self.commands.fetch_add(sent as u64, Ordering::Relaxed);
        self.inner.commit(commands).await
    }
}

#[async_trait]
impl Store for Counting {
    async fn batch(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        self.record(commands.len());
        self.inner.batch(commands).await
    }

    async fn atomic(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        self.record(commands.len() + 2);
        self.inner.atomic(commands).await
    }

    async fn watch(
        &self,
        keys: Vec<String>,
        reads: Vec<Command>,
    ) -> Result<(Box<dyn Transaction>, Vec<Reply>), StoreError> {
        self.record(reads.len() + usize::from(!keys.is_empty()));
        let (inner, replies) = self.inner.watch(keys, reads).await?;
        let transaction = CountingTransaction {
            inner,
            commands: Arc::clone(&self.commands),
            round_trips: Arc::clone(&self.round_trips),
        };
        Ok((Box::new(transaction), replies))
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.inner.ready().await
    }
}

/// What every task of a figure shares.
struct Bench {
    /// Starts every user id of this run, so that a run on a Redis that
    /// earlier runs filled meets only users of its own.
    run: String,
    store: Arc<Counting>,
    sessions: SessionManager,
    single: SessionManager,
    service: Option<std::net::SocketAddr>,
}

/// One task's keys, tokens and connection, made before the clock starts.
struct Task {
    token: String,
    user: String,
    key: String,
    http: Option<Http>,
}

/// `bench-` and 8 hex digits that differ from run to run.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!("bench-{:08x}", nanos ^ std::process::id().rotate_left(16))
}

fn user_detail(user_id: &str) -> Value {
    json!({ "name": user_id, "plan": "pro", "roles": ["reader", "writer"] })
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
        };
        let sessions = &self.sessions;
        match target {
            Target::Op(Op::Check | Op::CheckUser | Op::CheckUserCold | Op::Refresh | Op::Auth) => {
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
            Target::Op(Op::Set | Op::SetSingle) | Target::Set => {}
            Target::Get | Target::GetTtl => {
                // As long as a token key's value, `{user_prefix}_{user_id}`.
                let value = format!("gosession-user_{}", task.user);
                self.store
                    .inner
                    .batch(vec![set(&task.key, value, TOKEN_TTL)])
                    .await?;
            }
            Target::Healthz => {}
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
        Ok(task)
    }

    /// Runs `target` once; the error says what went wrong. Returns how long
    /// the measured part took.
    async fn once(&self, target: Target, task: &mut Task, call: u64) -> Result<Duration, String> {
        let sessions = &self.sessions;
        let failed = |e: dsession::Error| e.to_string();
        let store = &self.store;
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
            Target::Get => {
                let replies = store
                    .batch(vec![Command::Get(task.key.clone())])
                    .await
                    .map_err(|e| e.to_string())?;
                if !matches!(replies.first(), Some(Reply::Text(_))) {
                    return Err(format!("GET answered {replies:?}"));
                }
            }
            Target::GetTtl => {
                store
                    .batch(vec![
                        Command::Get(task.key.clone()),
                        Command::Ttl(task.key.clone()),
                    ])
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Target::Set => {
                let value = format!("gosession-user_{}", task.user);
                store
                    .batch(vec![set(&task.key, value, SHORT_TTL)])
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(started.elapsed())
    }
}

fn set(key: &str, value: String, ttl_seconds: i64) -> Command {
    Command::Set {
        key: key.to_owned(),
        value,
        ttl_seconds,
        condition: SetCondition::Always,
    }
}

/// A keep-alive HTTP/1.1 connection that sends one prepared `GET`: as
/// little client as possible, so that the figure is the service's.
struct Http {
    stream: BufReader<TcpStream>,
    request: Vec<u8>,
    line: String,
    body: Vec<u8>,
}

impl Http {
    async fn connect(
        address: std::net::SocketAddr,
        path: &str,
        token: &str,
    ) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(address)
            .await
            .context("cannot connect to the service")?;
        stream.set_nodelay(true)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {token}\r\n\r\n"
        );
        Ok(Self {
            stream: BufReader::new(stream),
            request: request.into_bytes(),
            line: String::new(),
            body: Vec::new(),
        })
    }

    /// Sends the request and reads the whole response; returns its status.
    async fn get(&mut self) -> std::io::Result<u16> {
        let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        self.stream.get_mut().write_all(&self.request).await?;
        let mut status = None;
        let mut length = 0;
        loop {
            self.line.clear();
            if self.stream.read_line(&mut self.line).await? == 0 {
                return Err(invalid("the service closed the connection"));
            }
            let line = self.line.trim_end();
            if status.is_none() {
                status = line.split(' ').nth(1).and_then(|code| code.parse().ok());
                if status.is_none() {
                    return Err(invalid("no HTTP status line"));
                }
            } else if line.is_empty() {
                break;
            } else if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid("bad content-length"))?;
            }
        }
        self.body.resize(length, 0);
        self.stream.read_exact(&mut self.body).await?;
        status.ok_or_else(|| invalid("no HTTP status line"))
    }
}

/// One figure: a target at a concurrency.
struct Figure {
    target: Target,
    concurrency: usize,
    ops: u64,
    seconds: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
    first_error: Option<String>,
    commands: u64,
    round_trips: u64,
}

impl Figure {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.seconds
    }

    fn per_op(&self, count: u64) -> f64 {
        count as f64 / (self.ops + self.errors).max(1) as f64
    }
}

/// What one task measured.
#[derive(Default)]
struct Tally {
    latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

fn percentile(sorted: &[u32], fraction: f64) -> Duration {
    let Some(last) = sorted.len().checked_sub(1) else {
        return Duration::ZERO;
    };
    let index = ((last as f64) * fraction).round() as usize;
    Duration::from_nanos(u64::from(sorted[index.min(last)]))
}

fn progress(line: &str) {
    use std::io::Write as _;
    let mut stderr = std::io::stderr();
    if std::io::IsTerminal::is_terminal(&stderr) {
        let _ = write!(stderr, "\r\x1b[2K{line}");
    } else {
        let _ = writeln!(stderr, "{line}");
    }
    let _ = stderr.flush();
}

async fn measure(
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
    bench.store.take();
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
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let tally = task
            .await
            .context("a bench task panicked")?
            .with_context(|| format!("cannot prepare {label}"))?;
        latencies.extend(tally.latencies);
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
    }
    let seconds = started.elapsed().as_secs_f64();
    let (commands, round_trips) = bench.store.take();
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
        commands,
        round_trips,
    })
}

/// The machine, as far as the figures depend on it.
fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    json!({ "cpu": cpu, "cores": cores, "os": std::env::consts::OS, "arch": std::env::consts::ARCH })
}

/// Resident memory of this process, in bytes.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// `used_memory` of the Redis server at `url`.
async fn redis_used_memory(url: &str) -> anyhow::Result<u64> {
    let client = redis::Client::open(url).context("invalid redis URL")?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut connection)
        .await?;
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|n| n.trim().parse().ok())
        .context("INFO memory has no used_memory")
}

/// Memory per live session: issues `count` tokens, one per user, on a
/// store of their own, and compares memory before and after.
async fn footprint(
    args: &BenchArgs,
    run: &str,
    policy: &Policy,
    count: usize,
    limits: Limits,
) -> anyhow::Result<Value> {
    let redis_url = args.store.redis_url();
    let (store, measure): (Arc<dyn Store>, &str) = match (args.store.config(), redis_url) {
        (None, _) => (Arc::new(MemoryStore::new()), "host RSS"),
        (Some(config), Some(_)) => (config.open().await?, "redis used_memory"),
        (Some(_), None) => anyhow::bail!("--sessions needs the memory store or --redis"),
    };
    let before = match redis_url {
        Some(url) => redis_used_memory(url).await?,
        None => rss_bytes().context("cannot read VmRSS")?,
    };
    let sessions = Arc::new(
        args.builder(policy)
            .shared_store(store)
            .limits(limits)
            .build()?,
    );
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..32)
        .map(|_| {
            let sessions = Arc::clone(&sessions);
            let next = Arc::clone(&next);
            let run = run.to_owned();
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= count as u64 {
                        return anyhow::Ok(());
                    }
                    sessions
                        .set_token(&format!("{run}-footprint-{n}"), 600)
                        .await?;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    let after = match redis_url {
        Some(url) => redis_used_memory(url).await?,
        None => rss_bytes().context("cannot read VmRSS")?,
    };
    let grown = after.saturating_sub(before);
    Ok(json!({
        "sessions": count,
        "measure": measure,
        "before_bytes": before,
        "after_bytes": after,
        "bytes_per_session": grown as f64 / count as f64,
    }))
}

/// Runs the bench; the report goes to stdout, progress to stderr.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs_f64(if args.quick { 0.2 } else { args.seconds });
    anyhow::ensure!(!duration.is_zero(), "--seconds must be positive");
    anyhow::ensure!(
        args.concurrency.iter().all(|&n| n > 0),
        "--concurrency must be positive"
    );
    let ops: &[Op] = if args.ops.is_empty() {
        &ALL_OPS
    } else {
        &args.ops
    };
    let limits = Limits {
        reuse: match args.instances {
            Instances::Pooled => InstanceReuse::default(),
            Instances::Fresh => InstanceReuse::Fresh,
        },
        ..Limits::default()
    };
    let config = args.store.config();
    let kind = config.as_ref().map_or("memory", |config| config.kind());
    let inner: Arc<dyn Store> = match &config {
        Some(config) => config.open().await?,
        None => Arc::new(MemoryStore::new()),
    };
    let store = Arc::new(Counting {
        inner,
        commands: Arc::default(),
        round_trips: Arc::default(),
    });
    let policy = Policy::load(&args.policy)?;
    if store.inner.is_sharded() {
        let config = args.policy_config.iter().cloned().collect();
        for single_mode in [false, true] {
            let settings = Settings {
                single_mode,
                ..Settings::default()
            };
            dsession::check_slot_layout(&policy, &settings, &config).await?;
        }
    }
    let builder = || {
        args.builder(&policy)
            .shared_store(Arc::clone(&store) as Arc<dyn Store>)
            .limits(limits)
    };
    let sessions = builder()
        .loader(|user_id: String| async move { Ok(Some(user_detail(&user_id))) })
        .build()?;
    let single = builder()
        .settings(Settings {
            single_mode: true,
            ..Settings::default()
        })
        .build()?;
    let (stop_service, service) = if ops.contains(&Op::Auth) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let state = AppState::new(
            builder().build()?,
            &ServeConfig::default(),
            Metrics::default(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(dsession_service::serve_on(listener, state, async {
            let _ = stopped.await;
        }));
        (Some(stop), Some(address))
    } else {
        (None, None)
    };
    let bench = Arc::new(Bench {
        run: run_id(),
        store,
        sessions,
        single,
        service,
    });

    let mut figures = Vec::new();
    for &concurrency in &args.concurrency {
        let mut targets = Vec::new();
        for &op in ops {
            let baseline = Target::Op(op).baseline();
            for target in [baseline, Some(Target::Op(op))].into_iter().flatten() {
                if !targets.contains(&target) {
                    targets.push(target);
                }
            }
            if op == Op::Check && !targets.contains(&Target::GetTtl) {
                targets.insert(1, Target::GetTtl);
            }
        }
        for target in targets {
            let figure = figures.len();
            figures.push(measure(&bench, figure, target, concurrency, duration).await?);
        }
    }
    progress("");
    let footprint = match args.sessions {
        0 => None,
        count => Some(footprint(&args, &bench.run, &policy, count, limits).await?),
    };
    if let Some(stop) = stop_service {
        let _ = stop.send(());
    }
    let report = Report {
        store: kind,
        policy: args.policy.display().to_string(),
        instances: args.instances,
        seconds: duration.as_secs_f64(),
        figures,
        footprint,
    };
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(())
}

struct Report {
    store: &'static str,
    /// The policy as the flag named it.
    policy: String,
    instances: Instances,
    seconds: f64,
    figures: Vec<Figure>,
    footprint: Option<Value>,
}

impl Report {
    fn baseline_of(&self, figure: &Figure) -> Option<&Figure> {
        let baseline = figure.target.baseline()?;
        self.figures
            .iter()
            .find(|other| other.target == baseline && other.concurrency == figure.concurrency)
    }

    fn instances(&self) -> &'static str {
        match self.instances {
            Instances::Pooled => "pooled",
            Instances::Fresh => "fresh",
        }
    }

    fn json(&self) -> Value {
        let figures: Vec<Value> = self
            .figures
            .iter()
            .map(|figure| {
                let baseline = self.baseline_of(figure);
                json!({
                    "name": figure.target.name(),
                    "concurrency": figure.concurrency,
                    "ops": figure.ops,
                    "seconds": figure.seconds,
                    "ops_per_second": figure.rate(),
                    "p50_us": figure.p50.as_secs_f64() * 1e6,
                    "p99_us": figure.p99.as_secs_f64() * 1e6,
                    "errors": figure.errors,
                    "first_error": figure.first_error,
                    "commands_per_op": figure.per_op(figure.commands),
                    "round_trips_per_op": figure.per_op(figure.round_trips),
                    "baseline": baseline.map(|b| b.target.name()),
                    "ratio": baseline.map(|b| figure.rate() / b.rate()),
                })
            })
            .collect();
        json!({
            "machine": machine(),
            "store": self.store,
            "policy": self.policy,
            "instances": self.instances(),
            "seconds_per_figure": self.seconds,
            "figures": figures,
            "footprint": self.footprint,
        })
    }

    fn text(&self) -> String {
        use std::fmt::Write as _;
        let machine = machine();
        let mut out = format!(
            "dsession bench: {} store, {} policy, {} instances, {:.1} s per figure, {} cores ({})\n",
            self.store,
            self.policy,
            self.instances(),
            self.seconds,
            machine["cores"],
            machine["cpu"].as_str().unwrap_or("")
        );
        let _ = writeln!(
            out,
            "{:>5}  {:<38} {:>10} {:>9} {:>9} {:>7} {:>7} {:>6} {:>7}",
            "tasks", "figure", "ops/s", "p50 µs", "p99 µs", "errors", "cmd/op", "rt/op", "ratio"
        );
        for figure in &self.figures {
            let ratio = self
                .baseline_of(figure)
                .map(|baseline| format!("{:.0}%", 100.0 * figure.rate() / baseline.rate()))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{:>5}  {:<38} {:>10.0} {:>9.1} {:>9.1} {:>7} {:>7.2} {:>6.2} {:>7}",
                figure.concurrency,
                figure.target.name(),
                figure.rate(),
                figure.p50.as_secs_f64() * 1e6,
                figure.p99.as_secs_f64() * 1e6,
                figure.errors,
                figure.per_op(figure.commands),
                figure.per_op(figure.round_trips),
                ratio
            );
            if let Some(error) = &figure.first_error {
                let _ = writeln!(out, "       first error: {error}");
            }
        }
        let _ = writeln!(
            out,
            "ratio: ops/s against the baseline above it at the same concurrency \
             (GET for checks and lists, SET for writes, /healthz for /auth)"
        );
        if let Some(footprint) = &self.footprint {
            let _ = writeln!(
                out,
                "{} live sessions: {:.0} bytes each ({}: {} → {} bytes)",
                footprint["sessions"],
                footprint["bytes_per_session"].as_f64().unwrap_or(0.0),
                footprint["measure"].as_str().unwrap_or(""),
                footprint["before_bytes"],
                footprint["after_bytes"],
            );
        }
        out
    }
}
