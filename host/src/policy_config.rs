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

/// Splits a `key=value` flag; the value may hold `=`, the key may not be
/// empty.
pub fn parse_pair(pair: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected key=value, got {pair:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_pair;

    #[test]
    fn pairs_split_at_the_first_equals_sign() {
        assert_eq!(parse_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_pair(" a =1"), Ok(("a".into(), "1".into())));
        assert_eq!(parse_pair("a="), Ok(("a".into(), String::new())));
        assert!(parse_pair("=1").is_err());
        assert!(parse_pair("a").is_err());
    }
}
