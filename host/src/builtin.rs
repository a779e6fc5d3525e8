//! The policies built into the library, chosen by name.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context as _;

use crate::policy::Policy;

/// The hardened policy, built from `guest/hardened/` by the build script.
const HARDENED_POLICY: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/dsession_policy_hardened.wasm"));

/// The names [`Policy::builtin_named`] knows: `default` (gosession's
/// layout) and `hardened` (hashed tokens, idle and absolute expiry, at most
/// N sessions per user, O(1) revoke-all, one hash tag per user).
pub const BUILTIN_POLICIES: [&str; 2] = ["default", "hardened"];

impl Policy {
    /// A built-in policy by name (see [`BUILTIN_POLICIES`]); each is
    /// compiled once per process.
    pub fn builtin_named(name: &str) -> anyhow::Result<Self> {
        static HARDENED: OnceLock<Policy> = OnceLock::new();
        match name {
            "default" => Self::builtin(),
            "hardened" => {
                if let Some(policy) = HARDENED.get() {
                    return Ok(policy.clone());
                }
                let policy = Self::from_bytes(HARDENED_POLICY)
                    .context("the built-in hardened policy does not load")?;
                Ok(HARDENED.get_or_init(|| policy).clone())
            }
            other => anyhow::bail!(
                "no built-in policy is named {other:?}; there are {}",
                BUILTIN_POLICIES.join(" and ")
            ),
        }
    }

    /// A built-in policy's component by name, e.g. to write it to a file
    /// and swap it in by reloading.
    pub fn builtin_named_component(name: &str) -> Option<&'static [u8]> {
        match name {
            "default" => Some(Self::builtin_component()),
            "hardened" => Some(HARDENED_POLICY),
            _ => None,
        }
    }

    /// The built-in policy when `path` is one of [`BUILTIN_POLICIES`],
    /// else the component in that file (write `./hardened` for a file of
    /// that name).
    pub fn load(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        match path.to_str() {
            Some(name) if BUILTIN_POLICIES.contains(&name) => Self::builtin_named(name),
            _ => Self::from_file(path),
        }
    }
}
