//! A policy's own settings: what the operator gives as `[policy.config]`,
//! `--policy-config key=value` or [`crate::SessionManagerBuilder::policy_config`],
//! read by the policy through `wasi:config/store`; and the keys a policy
//! says it reads, through its optional `describe` export; and what a
//! component imports and exports, for `dsession policy check`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;
use wasmtime_wasi_config::WasiConfigVariables;

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

/// The variables a call's `wasi:config/store` answers from.
pub(crate) fn variables(config: &BTreeMap<String, String>) -> Arc<WasiConfigVariables> {
    Arc::new(
        config
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
    )
}

/// What `component` exports, as `interface: function, …` lines.
pub(crate) fn exports(component: &Component) -> Vec<String> {
    let engine = component.engine();
    component
        .component_type()
        .exports(engine)
        .map(|(name, item)| match item.ty {
            ComponentItem::ComponentInstance(instance) => {
                let functions: Vec<&str> = instance
                    .exports(engine)
                    .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
                    .map(|(name, _)| name)
                    .collect();
                format!("{name}: {}", functions.join(", "))
            }
            _ => name.to_owned(),
        })
        .collect()
}

/// What `component` imports.
pub(crate) fn imports(component: &Component) -> Vec<String> {
    let engine = component.engine();
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect()
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
