//! A policy's own settings: what the operator gives as `[policy.config]`,
//! `--policy-config key=value` or [`crate::SessionManagerBuilder::policy_config`],
//! read by the policy through `wasi:config/store`; and the optional
//! `describe` export that says which keys a policy reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use wasmtime_wasi_config::WasiConfigVariables;

mod bindings {
    wasmtime::component::bindgen!({
        world: "policy-description",
        path: "../wit",
        exports: { default: async },
    });
}

/// Finds `describe` in a component that exports it.
pub(crate) type DescribeIndices = bindings::PolicyDescriptionIndices;

pub(crate) use bindings::exports::dsession::session::describe::ConfigKey as WitConfigKey;

/// One setting a policy reads through `wasi:config/store`, as the policy
/// describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigKey {
    /// The key, as written in `[policy.config]`.
    pub name: String,
    /// The value used when none is given; None when there is no single one.
    pub default: Option<String>,
    /// What the setting does and which values it takes.
    pub description: String,
}

impl From<WitConfigKey> for ConfigKey {
    fn from(key: WitConfigKey) -> Self {
        Self {
            name: key.name,
            default: key.default,
            description: key.description,
        }
    }
}

/// The variables a call's `wasi:config/store` answers from.
pub(crate) fn variables(config: &BTreeMap<String, String>) -> Arc<WasiConfigVariables> {
    Arc::new(
        config
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
    )
}
