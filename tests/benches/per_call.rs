//! A fixed number of calls for instruction and page-fault counts per call:
//! `per_call OP INSTANCES POLICY CALLS [key=value…]`, where OP is `check` or
//! `check-user` (user cached), INSTANCES `pooled` or `fresh`, POLICY a
//! built-in name or a `.wasm` file. Run it twice, with CALLS = 0 and with
//! CALLS = N, under `valgrind --tool=callgrind` or `perf stat`, and divide
//! the difference by N: the start-up (compiling the policy) cancels out.
//! Valgrind cannot reserve the pooling allocator's address space (4 TiB);
//! the callgrind figures in docs/PERFORMANCE.md come from a build with the
//! pool shrunk to 8 slots.

use dsession::store::MemoryStore;
use dsession::{InstanceReuse, Limits, Policy, SessionManager};
use serde_json::json;

/// Calls made before the counted ones, in both runs: a warm instance and
/// warm allocator slots.
const WARMUP: usize = 50;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [op, instances, policy, calls, config @ ..] = args.as_slice() else {
        panic!("usage: per_call check|check-user pooled|fresh POLICY CALLS [key=value…]");
    };
    let calls: usize = calls.parse().unwrap();
    let reuse = match instances.as_str() {
        "pooled" => InstanceReuse::default(),
        "fresh" => InstanceReuse::Fresh,
        other => panic!("unknown instances {other}"),
    };
    let config: Vec<(String, String)> = config
        .iter()
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap();
            (key.to_owned(), value.to_owned())
        })
        .collect();
    let sessions = SessionManager::builder()
        .store(MemoryStore::new())
        .policy(Policy::load(policy).unwrap())
        .policy_config(config)
        .limits(Limits {
            reuse,
            ..Limits::default()
        })
        .loader(|user_id: String| async move {
            Ok(Some(
                json!({ "name": user_id, "plan": "pro", "roles": ["reader", "writer"] }),
            ))
        })
        .build()
        .unwrap();
    let token = sessions.set_token("per-call", 3600).await.unwrap().token;
    let with_user = match op.as_str() {
        "check" => false,
        "check-user" => true,
        other => panic!("unknown op {other}"),
    };
    for _ in 0..WARMUP + calls {
        let user = if with_user {
            sessions.check_token_or_update_user(&token, 3600).await
        } else {
            sessions.check_token(&token).await
        };
        assert!(user.unwrap().is_some());
    }
    println!("calls {calls}");
}
