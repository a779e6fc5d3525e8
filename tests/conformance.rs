//! schemathesis against the service's own OpenAPI document: every check,
//! positive and negative cases, a bounded number per operation; any
//! failure fails the test. The service has what every route needs to
//! succeed: an admin key, a policy file to reload, a user loader.

use std::process::Command;

use dsession_service::{LoaderConfig, LoaderKind};

use crate::support::served::{Served, policy_file, serving};
use crate::support::user_service::UserService;
use dsession_tests::tools::tool;

/// Cases per operation and phase: the whole run stays within CI's budget
/// of about two minutes.
const EXAMPLES: u32 = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_server_true_to_its_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    let users = UserService::start().await;
    let mut config = serving(&policy_file(&dir, "default"), &[]);
    config.admin_key = Some("conformance-key".into());
    config.loader = LoaderConfig {
        kind: LoaderKind::Http,
        url: Some(users.template()),
        ..LoaderConfig::default()
    };
    let served = Served::start(config).await;
    let mut run = Command::new(tool("schemathesis"));
    run.arg("run")
        .arg(served.url("/openapi.json"))
        .arg("--url")
        .arg(served.url(""))
        .args(["--checks", "all", "--mode", "all", "--seed", "20"])
        // After `DELETE /v1/users/{id}/tokens`, listing them answers an
        // empty list, as gosession does: the user's tokens are a collection
        // that is emptied, not a resource that is gone; and the user-info
        // entry `DELETE /v1/users/{id}` removes is not the token list.
        .args(["--exclude-checks", "use_after_free"])
        // An event stream never ends, so no example of it would finish:
        // tests/events.rs reads it.
        .args(["--exclude-path", "/v1/events"])
        .arg(format!("--max-examples={EXAMPLES}"))
        .args(["--header", "Authorization: Bearer conformance-key"])
        // One worker: hypothesis describes its strategies with `ast.parse`,
        // which CPython 3.11 can fail with a SystemError ("AST constructor
        // recursion depth mismatch") when two threads parse at once.
        .args(["--workers", "1", "--no-color"])
        .current_dir(dir.path());
    let output = tokio::task::spawn_blocking(move || run.output().expect("schemathesis runs"))
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
