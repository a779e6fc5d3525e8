//! The conformance kit on the built-in policies, on every store: what
//! `dsession policy test` runs, through the library API a policy's own
//! tests can use.

use dsession::Policy;
use dsession::kit::{Kit, KitReport, Verdict};

use crate::support::{Env, Kind, hardened_policy, hostile_policy};

/// Runs the kit and fails with every case's line when one failed.
async fn passes(kit: Kit) -> KitReport {
    let mut lines = Vec::new();
    let report = kit.run(|case| lines.push(case.to_string())).await;
    assert!(report.passed(), "the kit failed:\n{}", lines.join("\n"));
    report
}

/// The names of the cases that ended with `verdict`.
fn named(report: &KitReport, verdict: Verdict) -> Vec<&str> {
    report
        .cases
        .iter()
        .filter(|case| case.verdict == verdict)
        .map(|case| case.name.as_str())
        .collect()
}

async fn default_policy_on(kind: Kind) {
    let env = Env::new(kind).await;
    let report = passes(Kit::new(Policy::builtin().unwrap()).shared_store(env.store.clone())).await;
    // Single mode is gosession's; the default policy sets no session bound.
    assert_eq!(named(&report, Verdict::Skip), ["max sessions"]);
    assert!(named(&report, Verdict::Pass).contains(&"single mode"));
}

async fn hardened_policy_on(kind: Kind) {
    let env = Env::new(kind).await;
    let kit = Kit::new(hardened_policy())
        .shared_store(env.store.clone())
        .policy_config([("max_sessions", "3")]);
    let report = passes(kit).await;
    assert_eq!(named(&report, Verdict::Skip), Vec::<&str>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_default_policy_keeps_the_contract_in_memory() {
    default_policy_on(Kind::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_default_policy_keeps_the_contract_on_redis() {
    default_policy_on(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_default_policy_keeps_the_contract_behind_sentinels() {
    default_policy_on(Kind::Sentinel).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hardened_policy_keeps_the_contract_in_memory() {
    hardened_policy_on(Kind::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hardened_policy_keeps_the_contract_on_redis() {
    hardened_policy_on(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hardened_policy_keeps_the_contract_behind_sentinels() {
    hardened_policy_on(Kind::Sentinel).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hardened_policy_keeps_the_contract_on_a_cluster() {
    hardened_policy_on(Kind::Cluster).await;
}

/// A policy that breaks the contract fails the kit, and says where: the
/// hostile test policy refuses every operation but set-token.
#[tokio::test]
async fn a_policy_that_breaks_the_contract_fails() {
    let mut lines = Vec::new();
    let report = Kit::new(hostile_policy())
        .run(|case| lines.push(case.to_string()))
        .await;
    assert!(!report.passed());
    let failed = named(&report, Verdict::Fail);
    assert_eq!(failed, ["self-check"], "{}", lines.join("\n"));
    assert!(lines[0].contains("only issues tokens"), "{}", lines[0]);
}

/// A policy built on the 0.2.0 contract, before self-check, is refused
/// with an error that names both versions.
#[test]
fn a_policy_for_the_old_contract_is_refused_by_name() {
    let old = concat!(env!("CARGO_MANIFEST_DIR"), "/guests/hostile-0.2.0.wasm");
    let error = Policy::from_file(old).unwrap_err().to_string();
    assert!(
        error.contains("dsession:session@0.2.0") && error.contains("dsession:session@0.3.0"),
        "{error}"
    );
    assert!(error.contains("rebuild"), "{error}");
}
