//! Revocation latency with the near cache (issue 19): two `dsession serve
//! --near-cache` instances, A and B, on one Redis. Each revocation: a token
//! issued on A, checked on B until B answers it from memory, revoked (by
//! turns through A's API and by a plain `DEL` of its key, as another
//! service would), then checked on B back to back until B answers 401. Its
//! latency runs from the revoke's answer to that 401.
//!
//! A check B answers valid once it has heard of the revocation is a
//! violation, and must never happen. B has heard once it has answered any
//! check from a read of Redis made after the revoke: Redis queues an
//! invalidation on B's tracking connection before the replies to later
//! reads there, and the near cache applies each push as it parses it,
//! before the replies behind it (host/src/store/redis/near_cache/tracking.rs).
//! When that connection was killed instead, a read of Redis comes over a
//! new connection, made only after the cache was flushed. So beside the
//! checks, a probe asks B about a token that never existed (a miss, read
//! from Redis) until B answers it 401: a check sent after that answer, or
//! after B's first 401, that B answers valid is a violation. That needs no
//! counter of B's and no guess at timing; a check that crossed the
//! invalidation in flight is counted apart, as valid before B heard.
//!
//! The second run kills every connection of B to Redis (`CLIENT KILL ID`)
//! between the warming and the revoke, once in each tenth of the run
//! ([`follows_kill`]): then B learns of the revocation only by losing its
//! tracking connection. Answers other than 200 and 401 (a 503 while B reconnects)
//! are counted as errors, apart from the latency; the first run must have
//! none.
//!
//! `DSESSION_REVOCATION_RUNS` revocations per run (default 1,000, the
//! subset CI runs); `scripts/revocation-latency` runs 10,000 on a release
//! build. The figures are printed, never asserted: only that B refuses
//! each token within [`BOUND`] and never answers valid after it heard.
//! docs/PERFORMANCE.md has the measured table.

#[path = "revocation_latency/figures.rs"]
mod figures;
#[path = "revocation_latency/lab.rs"]
mod lab;

use std::time::{Duration, Instant};

use self::figures::{HEADER, Revoker, Sample};
use self::lab::{Answer, Check, Lab};

/// How long B may take to refuse a revoked token: far more than loopback
/// needs, and past the near cache's own bound on a silent connection
/// (`max_stale_ms`, 1 s by default), so that reaching it means B never
/// heard.
const BOUND: Duration = Duration::from_secs(2);

/// Revocations per run when `DSESSION_REVOCATION_RUNS` is unset.
const DEFAULT_RUNS: usize = 1000;

/// Checks of a warm token after B first answers it, so that it is in B's
/// near cache (the first check of a token fills it).
const WARM_HITS: usize = 2;

/// Checks after B's first 401; one answered valid is a violation.
const AFTER_REFUSAL: usize = 2;

/// The names of the two runs.
const UNTOUCHED: &str = "no kill";
const KILLED: &str = "CLIENT KILL of B";

/// Kills of B's connections per run, in the second run.
const KILLS_PER_RUN: usize = 10;

fn runs() -> usize {
    match std::env::var("DSESSION_REVOCATION_RUNS") {
        Err(_) => DEFAULT_RUNS,
        Ok(runs) => runs
            .parse()
            .ok()
            .filter(|&runs| runs > 0)
            .unwrap_or_else(|| {
                panic!("DSESSION_REVOCATION_RUNS must be a positive number, not {runs:?}")
            }),
    }
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`): what else the
/// machine ran while the figures were taken.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|line| line.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Checks `token` on B until B answers it valid, then [`WARM_HITS`] more.
async fn warm(lab: &Lab, token: &str, run: usize) {
    let started = Instant::now();
    loop {
        let check = lab.check_on_b(token).await;
        if check.answer == Answer::Valid {
            break;
        }
        assert!(
            started.elapsed() < BOUND,
            "revocation {run}: B answered {:?} for a token A issued, for {BOUND:?}",
            check.answer
        );
    }
    for _ in 0..WARM_HITS {
        assert_eq!(lab.check_on_b(token).await.answer, Answer::Valid);
    }
}

/// Checks `token` on B back to back until B answers 401, then
/// [`AFTER_REFUSAL`] more; or until [`BOUND`] after the revoke, for the
/// caller to fail with what B answered.
async fn poll_until_refused(lab: &Lab, token: &str, revoked: Instant) -> Vec<Check> {
    let mut checks = Vec::new();
    loop {
        let check = lab.check_on_b(token).await;
        let refused = check.answer == Answer::Refused;
        checks.push(check);
        if refused {
            break;
        }
        if revoked.elapsed() >= BOUND {
            return checks;
        }
    }
    for _ in 0..AFTER_REFUSAL {
        checks.push(lab.check_on_b(token).await);
    }
    checks
}

/// What `checks` were answered, each answer with how often, in the order
/// they first came.
fn tally(checks: &[Check]) -> String {
    let mut counts: Vec<(&Answer, usize)> = Vec::new();
    for check in checks {
        match counts
            .iter_mut()
            .find(|(answer, _)| **answer == check.answer)
        {
            Some((_, count)) => *count += 1,
            None => counts.push((&check.answer, 1)),
        }
    }
    let counts: Vec<String> = counts
        .iter()
        .map(|(answer, count)| format!("{count} × {answer:?}"))
        .collect();
    counts.join(", ")
}

/// Checks tokens that never existed on B until B answers one 401: a miss,
/// whose read of Redis was made after the revoke. Every probe has a token
/// of its own, so none is in the cache.
async fn probe(lab: &Lab, revoked: Instant, run: usize) -> Vec<Check> {
    let mut probes = Vec::new();
    for attempt in 0_u128.. {
        let never_issued = format!("probe_{:032x}", ((run as u128) << 64) | attempt);
        let check = lab.check_on_b(&never_issued).await;
        let answer = check.answer.clone();
        probes.push(check);
        match answer {
            Answer::Refused => break,
            Answer::Valid => panic!("B took {never_issued}, a token nobody issued"),
            Answer::Failed(_) => assert!(
                revoked.elapsed() < BOUND,
                "revocation {run}: no probe answered for {BOUND:?}: {}",
                tally(&probes)
            ),
        }
    }
    probes
}

/// One revocation; with `kill`, B's connections to Redis are killed
/// between the warming and the revoke.
async fn revoke_once(lab: &mut Lab, run: usize, kill: bool) -> Sample {
    let token = lab.issue(&format!("latency-{run}")).await;
    warm(lab, &token, run).await;
    if kill {
        lab.kill_connections_of_b().await;
    }
    let revoker = if run.is_multiple_of(2) {
        Revoker::ApiOnA
    } else {
        Revoker::DelByAnother
    };
    match revoker {
        Revoker::ApiOnA => lab.revoke_on_a(&token).await,
        Revoker::DelByAnother => lab.delete_token_key(&token).await,
    }
    let revoked = Instant::now();
    let (checks, probes) = tokio::join!(
        poll_until_refused(lab, &token, revoked),
        probe(lab, revoked, run)
    );
    let probed = probes.last().expect("probed until refused").answered;
    let Some(first_refusal) = checks
        .iter()
        .find(|check| check.answer == Answer::Refused)
        .map(|check| check.answered)
    else {
        let after_probe: Vec<Check> = checks
            .into_iter()
            .filter(|check| check.sent > probed)
            .collect();
        panic!(
            "revocation {run}: B still took the token {BOUND:?} after the revoke; \
             after it heard ({:?} after the revoke) it answered {}\n{}",
            probed - revoked,
            tally(&after_probe),
            lab.log_of_b()
        );
    };
    let heard = first_refusal.min(probed);
    let valid = |check: &&Check| check.answer == Answer::Valid;
    let last = checks.last().expect("checked after the refusal");
    Sample {
        revoker,
        killed: kill,
        latency: first_refusal - revoked,
        refused_check: last.answered - last.sent,
        violations: checks
            .iter()
            .filter(valid)
            .filter(|check| check.sent > heard)
            .count(),
        stale: checks
            .iter()
            .filter(valid)
            .filter(|check| check.sent <= heard)
            .count(),
        errors: checks
            .iter()
            .chain(&probes)
            .filter_map(|check| match &check.answer {
                Answer::Failed(error) => Some(error.clone()),
                Answer::Valid | Answer::Refused => None,
            })
            .collect(),
    }
}

/// Fails unless B answers a warm token without asking Redis: else the run
/// would measure no near cache at all.
async fn assert_b_answers_from_memory(lab: &mut Lab) {
    let token = lab.issue("latency-warm").await;
    warm(lab, &token, 0).await;
    let before = lab.redis_gets().await;
    for _ in 0..10 {
        assert_eq!(lab.check_on_b(&token).await.answer, Answer::Valid);
    }
    assert_eq!(
        lab.redis_gets().await,
        before,
        "B sent GETs to Redis for a warm token: is its near cache on?"
    );
}

/// `runs` revocations on a fresh Redis, A and B; with `kills`, B's
/// connections are killed [`KILLS_PER_RUN`] times.
async fn run(runs: usize, kills: bool) -> Vec<Sample> {
    let mut lab = Lab::start().await;
    assert_b_answers_from_memory(&mut lab).await;
    let mut samples = Vec::with_capacity(runs);
    for run in 0..runs {
        let kill = kills && follows_kill(run, runs);
        samples.push(revoke_once(&mut lab, run, kill).await);
    }
    samples
}

/// [`run`], its time and the load average before and after it printed
/// beside `name`: the figures move with what else the machine runs.
async fn timed_run(name: &str, runs: usize, kills: bool) -> Vec<Sample> {
    let load_before = load();
    let started = Instant::now();
    let samples = run(runs, kills).await;
    println!(
        "{name}: {runs} revocations in {:.0} s, load average {load_before} before, {} after",
        started.elapsed().as_secs_f64(),
        load()
    );
    samples
}

/// Whether revocation `run` of `runs` comes right after a kill: near the
/// middle of each tenth of the run, on an even revocation in every other
/// tenth and an odd one in the rest, so that kills precede both ways of
/// revoking (which alternate).
fn follows_kill(run: usize, runs: usize) -> bool {
    let every = (runs / KILLS_PER_RUN).max(3);
    let tenth = run / every;
    let middle = tenth * every + every / 2;
    run == middle + (middle + tenth) % 2
}

#[test]
fn kills_come_ten_times_a_run_before_both_ways_of_revoking() {
    for runs in [50, 1000, 10_000] {
        let kills: Vec<usize> = (0..runs).filter(|&run| follows_kill(run, runs)).collect();
        assert_eq!(kills.len(), KILLS_PER_RUN, "{runs}: {kills:?}");
        assert!(
            kills.iter().any(|run| run.is_multiple_of(2)),
            "{runs}: {kills:?}"
        );
        assert!(kills.iter().any(|run| run % 2 == 1), "{runs}: {kills:?}");
    }
}

/// The table rows of one run's `samples`: each way of revoking, both, and
/// with `kills` the revocations right after a kill.
fn rows(name: &str, samples: &[Sample], kills: bool) -> Vec<String> {
    let of = |keep: &dyn Fn(&Sample) -> bool| -> Vec<&Sample> {
        samples.iter().filter(|sample| keep(sample)).collect()
    };
    let mut rows = Vec::new();
    for revoker in [Revoker::ApiOnA, Revoker::DelByAnother] {
        rows.push(figures::row(
            name,
            revoker.label(),
            &of(&|sample| sample.revoker == revoker),
        ));
    }
    rows.push(figures::row(name, "both", &of(&|_| true)));
    if kills {
        rows.push(figures::row(
            name,
            "both, right after a kill",
            &of(&|sample| sample.killed),
        ));
    }
    rows
}

#[tokio::test(flavor = "current_thread")]
async fn b_refuses_a_revoked_token_soon_and_never_after_it_heard() {
    let runs = runs();
    println!();
    let quiet = timed_run(UNTOUCHED, runs, false).await;
    let killed = timed_run(KILLED, runs, true).await;
    println!();
    println!("{HEADER}");
    let mut table = rows(UNTOUCHED, &quiet, false);
    table.extend(rows(KILLED, &killed, true));
    for line in &table {
        println!("{line}");
    }
    for (name, samples) in [(UNTOUCHED, &quiet), (KILLED, &killed)] {
        for (error, count) in figures::errors(samples) {
            println!("{name}: {count} × {error}");
        }
    }
    let violations: usize = quiet
        .iter()
        .chain(&killed)
        .map(|sample| sample.violations)
        .sum();
    assert_eq!(
        violations, 0,
        "B answered valid after it heard: see the table"
    );
    assert_eq!(
        figures::errors(&quiet),
        Default::default(),
        "B failed checks with its connections untouched"
    );
}
