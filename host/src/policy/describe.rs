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

/// The version of the `dsession:session` contract this host loads.
pub(crate) const CONTRACT_VERSION: &str = "0.3.0";

/// The first version of `dsession:session` other than
/// [`CONTRACT_VERSION`] that `component` imports or exports, if any.
pub(crate) fn other_contract_version(component: &Component) -> Option<String> {
    let engine = component.engine();
    let ty = component.component_type();
    let imports = ty.imports(engine).map(|(name, _)| name);
    let exports = ty.exports(engine).map(|(name, _)| name);
    imports
        .chain(exports)
        .filter_map(|name| name.strip_prefix("dsession:session/")?.split_once('@'))
        .map(|(_, version)| version)
        .find(|version| *version != CONTRACT_VERSION)
        .map(str::to_owned)
}
