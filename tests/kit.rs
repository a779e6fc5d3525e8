//! The conformance kit on the built-in policies, on every store: what
//! `dsession policy test` runs, through the library API a policy's own
//! tests can use.

use dsession::Policy;
use dsession::kit::{Kit, KitReport, Verdict};

use crate::support::{Env, hostile_policy, on_every_store};

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

/// The default policy: single mode is gosession's; it sets no session
/// bound.
mod default_policy {
    use super::*;

    async fn keeps_the_contract(env: Env) {
        let kit = Kit::new(Policy::builtin().unwrap()).shared_store(env.store.clone());
        let report = passes(kit).await;
        assert_eq!(named(&report, Verdict::Skip), ["max sessions"]);
        assert!(named(&report, Verdict::Pass).contains(&"single mode"));
    }

    on_every_store!(keeps_the_contract);
}

/// The hardened policy with a session bound, on a Redis Cluster too:
/// every case applies.
mod hardened_policy {
    use super::*;

    async fn keeps_the_contract(env: Env) {
        let kit = Kit::new(env.policy.clone().unwrap())
            .shared_store(env.store.clone())
            .policy_setting("max_sessions", "3");
        let report = passes(kit).await;
        assert_eq!(named(&report, Verdict::Skip), Vec::<&str>::new());
    }

    on_every_store!(keeps_the_contract; policy = crate::support::hardened_policy, cluster);
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

/// Policies built on the old contracts (0.2.0, before self-check; 0.3.0,
/// before session attributes and pages) are refused with an error that
/// names both versions.
#[test]
fn a_policy_for_an_old_contract_is_refused_by_name() {
    for version in ["0.2.0", "0.3.0"] {
        let old = format!(
            "{}/guests/hostile-{version}.wasm",
            env!("CARGO_MANIFEST_DIR")
        );
        let error = Policy::from_file(&old).unwrap_err().to_string();
        assert!(
            error.contains(&format!("dsession:session@{version}"))
                && error.contains("dsession:session@0.4.0"),
            "{error}"
        );
        assert!(error.contains("rebuild"), "{error}");
    }
}
