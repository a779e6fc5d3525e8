//! The Python policy of `examples/policy-python`, as its author takes it
//! to production: built by its `build.sh` (componentize-py against `wit/`
//! alone), checked, put through the conformance kit in memory and on
//! Redis, and swapped into a running `dsession serve` from the Rust
//! default policy and back, under a small load of which no request fails.
//!
//! `build.sh` keeps its virtualenv in the user's cache directory, so only
//! the first run on a machine downloads componentize-py.

use super::passes_the_kit;
use super::serving::{build_example, swaps_in_and_out_under_load};

#[test]
fn the_python_policy_builds_from_the_wit_alone_passes_the_kit_and_swaps_in_and_out_under_load() {
    let dir = tempfile::tempdir().unwrap();
    // componentize-py imports the whole of WASI 0.2; the host links it all,
    // giving nothing through files and sockets.
    let python = build_example(
        &dir,
        "policy-python",
        &[
            "wasi:filesystem/preopens@0.2",
            "wasi:sockets/tcp@0.2",
            "wasi:cli/environment@0.2",
            "dsession:session/store@0.4.0",
        ],
    );
    let redis = passes_the_kit(
        &python.display().to_string(),
        "pass  single mode",
        &["--policy-instance-max-memory-mib", "32"],
    );
    // An instance starts at about 13 MiB, past the default bound of 8.
    swaps_in_and_out_under_load(&dir, &redis.url(), &python, "Python", 32);
}
