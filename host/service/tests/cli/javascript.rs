//! The JavaScript policy of `examples/policy-js`, as its author takes it
//! to production: built by its `build.sh` (ComponentizeJS against `wit/`
//! alone), checked, put through the conformance kit in memory and on
//! Redis, and swapped into a running `dsession serve` from the Rust
//! default policy and back, under a small load of which no request fails.
//!
//! `build.sh` keeps its npm install in the user's cache directory, so only
//! the first run on a machine downloads ComponentizeJS.

use super::passes_the_kit;
use super::serving::{build_example, swaps_in_and_out_under_load};

#[test]
fn the_javascript_policy_builds_from_the_wit_alone_passes_the_kit_and_swaps_in_and_out_under_load()
{
    let dir = tempfile::tempdir().unwrap();
    // ComponentizeJS's engine imports WASI 0.2's files, streams and stdio
    // whatever the policy uses; the host links them, giving nothing. Its
    // `http` feature is left out: the host refuses wasi:http.
    let javascript = build_example(
        &dir,
        "policy-js",
        &[
            "wasi:filesystem/preopens@0.2",
            "wasi:io/streams@0.2",
            "wasi:cli/stdout@0.2",
            "dsession:session/store@0.4.0",
        ],
    );
    let redis = passes_the_kit(
        &javascript.display().to_string(),
        "pass  single mode",
        &["--policy-instance-max-memory-mib", "16"],
    );
    // An instance starts at 9 MiB (145 pages), past the default bound of 8.
    swaps_in_and_out_under_load(&dir, &redis.url(), &javascript, "JavaScript", 16);
}
