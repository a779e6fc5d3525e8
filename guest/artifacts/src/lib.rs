//! The built-in dsession policies as component bytes.
//!
//! The components are built from their sources in the dsession repository
//! (`guest/` and `guest/hardened/`) by `scripts/build-policies` and checked
//! in, so that building the library needs no wasm target and runs no
//! nested cargo. CI rebuilds them and compares byte for byte
//! (`scripts/build-policies --check`).

/// The default policy: gosession's Redis layout.
pub const DEFAULT: &[u8] = include_bytes!("../default.wasm");

/// The hardened policy: hashed tokens, idle and absolute expiry, at most N
/// sessions per user, O(1) revoke-all, one Redis Cluster hash tag per user.
pub const HARDENED: &[u8] = include_bytes!("../hardened.wasm");
