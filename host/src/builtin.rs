//! The policies built into the library, chosen by name.

use std::path::Path;

use crate::error::SetupError;
use crate::policy::{BUILTIN_POLICY, Compiled, Policy};
use crate::runtime::Runtime;

/// The hardened policy, built from `guest/hardened/` by the build script.
const HARDENED_POLICY: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/dsession_policy_hardened.wasm"));

/// The names [`Policy::builtin_named`] knows: `default` (gosession's
/// layout) and `hardened` (hashed tokens, idle and absolute expiry, at most
/// N sessions per user, O(1) revoke-all, one hash tag per user).
pub const BUILTIN_POLICIES: [&str; 2] = ["default", "hardened"];

fn component(name: &str) -> Option<&'static [u8]> {
    match name {
        "default" => Some(BUILTIN_POLICY),
        "hardened" => Some(HARDENED_POLICY),
        _ => None,
    }
}

impl Policy {
    /// A built-in policy by name (see [`BUILTIN_POLICIES`]) on the shared
    /// runtime; each is compiled once per runtime.
    pub fn builtin_named(name: &str) -> Result<Self, SetupError> {
        Runtime::shared()?.builtin_policy(name)
    }

    /// A built-in policy's component by name, e.g. to write it to a file
    /// and swap it in by reloading.
    pub fn builtin_named_component(name: &str) -> Option<&'static [u8]> {
        component(name)
    }

    /// The built-in policy when `path` is one of [`BUILTIN_POLICIES`],
    /// else the component in that file (write `./hardened` for a file of
    /// that name), on the shared runtime.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, SetupError> {
        Runtime::shared()?.load_policy(path)
    }
}

impl Runtime {
    /// A built-in policy by name (see [`BUILTIN_POLICIES`]), compiled on
    /// this runtime once.
    pub fn builtin_policy(&self, name: &str) -> Result<Policy, SetupError> {
        let index = BUILTIN_POLICIES
            .iter()
            .position(|builtin| *builtin == name)
            .ok_or_else(|| {
                SetupError::Policy(format!(
                    "no built-in policy is named {name:?}; there are {}",
                    BUILTIN_POLICIES.join(" and ")
                ))
            })?;
        let bytes = component(name).expect("every built-in name has a component");
        let compiled = self.builtin(index, |engine| {
            Compiled::new(engine, bytes).map_err(|e| {
                SetupError::Policy(format!("the built-in {name} policy does not load: {e}"))
            })
        })?;
        Ok(Policy::new(compiled, self.clone()))
    }

    /// A built-in policy when `path` is one of [`BUILTIN_POLICIES`], else
    /// the component in that file; see [`Policy::load`].
    pub fn load_policy(&self, path: impl AsRef<Path>) -> Result<Policy, SetupError> {
        let path = path.as_ref();
        match path.to_str() {
            Some(name) if BUILTIN_POLICIES.contains(&name) => self.builtin_policy(name),
            _ => self.policy_from_file(path),
        }
    }
}
