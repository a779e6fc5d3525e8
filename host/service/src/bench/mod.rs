//! `dsession bench`: what each token operation costs through the embedding
//! API, beside baselines measured in the same run through the same store
//! client at the same concurrency, so that the ratios hold on any machine.
//!
//! `args` holds the flags, `loading` what the policy costs to load and to
//! keep, `baselines` what each figure measures, `runner` runs one figure,
//! `http` and `grpc` are the clients of the service's figures, `footprint`
//! the memory per session and `report` prints it all. Commands
//! and round trips are counted by [`dsession::store::Tap`].

mod allocations;
mod args;
mod baselines;
mod footprint;
mod grpc;
mod http;
mod loading;
mod report;
mod runner;

use std::sync::Arc;
use std::time::Duration;

use dsession::Settings;
use dsession::store::{MemoryStore, Store, StoreConfig, Tap};
use dsession_service::{AppState, LimitsConfig, Metrics, ServeConfig};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub use self::allocations::Counting;
pub use self::args::BenchArgs;
use self::args::{Instances, Op};
use self::baselines::Target;
use self::loading::Loading;
use self::report::Report;
use self::runner::{Bench, measure, progress};

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

/// `config` with its near cache off; None when it had none on.
fn without_near_cache(config: &StoreConfig) -> Option<StoreConfig> {
    let mut config = config.clone();
    let near_cache = config.near_cache_mut()?;
    std::mem::take(&mut near_cache.enabled).then_some(config)
}

/// Runs the bench; the report goes to stdout, progress to stderr.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let duration = Duration::from_secs_f64(if args.quick { 0.2 } else { args.seconds });
    anyhow::ensure!(!duration.is_zero(), "--seconds must be positive");
    anyhow::ensure!(
        args.concurrency.iter().all(|&n| n > 0),
        "--concurrency must be positive"
    );
    let ops = args.ops();
    anyhow::ensure!(
        args.policy_instance_max_memory_mib > 0,
        "--policy-instance-max-memory-mib must be positive"
    );
    let limits = LimitsConfig {
        policy_fresh_instances: args.instances == Instances::Fresh,
        policy_instance_max_memory_mib: args.policy_instance_max_memory_mib,
        ..LimitsConfig::default()
    }
    .policy_limits();
    let config = args.store.config();
    if config.is_none() {
        args.store.apply_near_cache(&mut StoreConfig::Memory)?;
    }
    let kind = config.as_ref().map_or("memory", |config| config.kind());
    let inner: Arc<dyn Store> = match &config {
        Some(config) => config.open().await?,
        None => Arc::new(MemoryStore::new()),
    };
    // The GET, GET+TTL and SET baselines measure Redis, never the near cache.
    let uncached_config = config.as_ref().and_then(without_near_cache);
    let raw = match &uncached_config {
        Some(config) => Tap::shared(config.open().await?),
        None => Tap::shared(Arc::clone(&inner)),
    };
    let recorder = Tap::recording_shared(Arc::clone(&inner));
    let store = Tap::shared(inner);
    let run = run_id();
    let loading = Loading::measure(&args.policy, &run)?;
    let policy = loading.policy.clone();
    if store.is_sharded() {
        let config = args.policy_config.iter().cloned().collect();
        for single_mode in [false, true] {
            let settings = Settings {
                single_mode,
                ..Settings::default()
            };
            dsession::check_slot_layout(&policy, &settings, &config).await?;
        }
    }
    let on = |tap: &Tap| args.builder(&policy).store(tap.clone()).limits(limits);
    let builder = || on(&store);
    let loader = |user_id: String| async move { Ok(Some(user_detail(&user_id))) };
    let single_mode = Settings {
        single_mode: true,
        ..Settings::default()
    };
    let sessions = builder().loader(loader).build()?;
    let single = builder().settings(single_mode.clone()).build()?;
    // The same operations on a recording tap: what each one sends, for the
    // baselines that send exactly that.
    let recorded = on(&recorder).loader(loader).build()?;
    let recorded_single = on(&recorder).settings(single_mode).build()?;
    // The service runs for the /auth and Check figures and their baseline;
    // dropping `stop_service` stops it.
    let (stop_service, service, grpc) = if ops.contains(&Op::Auth) || ops.contains(&Op::Grpc) {
        let state = AppState::new(
            builder().build()?,
            &ServeConfig::default(),
            Metrics::default(),
        );
        let (stop, stopped) = tokio::sync::watch::channel(());
        let stopping = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.changed().await;
            }
        };
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        tokio::spawn(dsession_service::serve_on(
            listener,
            state.clone(),
            stopping(),
        ));
        let grpc = if ops.contains(&Op::Grpc) {
            let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
            let address = listener.local_addr()?;
            tokio::spawn(dsession_service::serve_grpc_on(listener, state, stopping()));
            Some(address)
        } else {
            None
        };
        (Some(stop), Some(address), grpc)
    } else {
        (None, None, None)
    };
    let uncached = match uncached_config {
        Some(_) => Some(
            args.builder(&policy)
                .store(raw.clone())
                .limits(limits)
                .build()?,
        ),
        None => None,
    };
    let bench = Arc::new(Bench {
        uncached,
        run,
        store,
        raw,
        recorder,
        recording: tokio::sync::Mutex::new(()),
        recorded,
        recorded_single,
        sessions,
        single,
        service,
        grpc,
    });

    let mut figures = Vec::new();
    for &concurrency in &args.concurrency {
        for target in Target::plan(ops, bench.uncached.is_some()) {
            let figure = figures.len();
            figures.push(measure(&bench, figure, target, concurrency, duration).await?);
        }
    }
    progress("");
    let loading = loading.report(&[
        bench.sessions.policy_instances(),
        bench.single.policy_instances(),
    ]);
    let footprint = match args.sessions {
        0 => None,
        count => Some(footprint::footprint(&args, &bench.run, &policy, count, limits).await?),
    };
    drop(stop_service);
    let report = Report {
        store: kind,
        policy: args.policy.display().to_string(),
        instances: args.instances,
        instance_max_memory_mib: (args.instances == Instances::Pooled)
            .then_some(args.policy_instance_max_memory_mib),
        seconds: duration.as_secs_f64(),
        loading,
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
