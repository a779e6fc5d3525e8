//! A policy's own settings: what the operator gives as `[policy.config]`,
//! `--policy-config key=value` or [`crate::SessionManagerBuilder::policy_config`],
//! read by the policy through `wasi:config/store`; and the keys a policy
//! says it reads, through its optional `describe` export; and what a
//! component imports and exports, and which of its imports the host lacks,
//! for `dsession policy check`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, ResourceType};
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

/// An import of a component that a linker does not satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unprovided {
    /// The import's name, e.g. `wasi:http/outgoing-handler@0.2.0`.
    pub(crate) name: String,
    /// What wasmtime found wrong with it, e.g. that the linker defines no
    /// such instance or one of its functions has another type.
    pub(crate) why: String,
}

impl std::fmt::Display for Unprovided {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (path, version) = match self.name.split_once('@') {
            Some((path, version)) => (path, format!("version {version}")),
            None => (self.name.as_str(), "no version".to_owned()),
        };
        match path.split_once('/') {
            Some((package, interface)) => write!(
                f,
                "{} (interface {interface} of package {package}, {version}): {}",
                self.name, self.why
            ),
            None => write!(f, "{} ({version}): {}", self.name, self.why),
        }
    }
}

/// Every import of `component` that `linker` does not satisfy, in the
/// component's order. wasmtime reports only the first one it meets, so each
/// one found is replaced with stubs in a copy of the linker (never
/// instantiated) and the check runs again, to reach the next.
pub(crate) fn unprovided<T: 'static>(linker: &Linker<T>, component: &Component) -> Vec<Unprovided> {
    let engine = component.engine();
    let imports: Vec<(String, ComponentItem)> = component
        .component_type()
        .imports(engine)
        .map(|(name, item)| (name.to_owned(), item.ty))
        .collect();
    let mut probe = linker.clone();
    probe.allow_shadowing(true);
    let mut found: Vec<Unprovided> = Vec::new();
    while let Err(error) = probe.instantiate_pre(component) {
        // wasmtime's message names the import in backquotes.
        let message = error.to_string();
        let Some((name, item)) = imports
            .iter()
            .find(|(name, _)| message.contains(&format!("`{name}`")))
        else {
            break;
        };
        if found.iter().any(|missing| &missing.name == name) {
            break;
        }
        found.push(Unprovided {
            name: name.clone(),
            why: error
                .chain()
                .skip(1)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": "),
        });
        if stub(&mut probe, engine, name, item).is_err() {
            break;
        }
    }
    found
}

/// Defines the import `name` of type `item` in `linker` as functions that
/// fail and resources of no use, so that a type check passes it.
fn stub<T: 'static>(
    linker: &mut Linker<T>,
    engine: &wasmtime::Engine,
    name: &str,
    item: &ComponentItem,
) -> wasmtime::Result<()> {
    let unprovided = |_: wasmtime::StoreContextMut<'_, T>, _: _, _: &[_], _: &mut [_]| {
        wasmtime::bail!("not provided by this host")
    };
    match item {
        ComponentItem::ComponentFunc(_) => linker.root().func_new(name, unprovided),
        ComponentItem::ComponentInstance(instance) => {
            let mut defined = linker.root().into_instance(name)?;
            for (export, item) in instance.exports(engine) {
                match item.ty {
                    ComponentItem::ComponentFunc(_) => defined.func_new(export, unprovided)?,
                    ComponentItem::Resource(_) => {
                        defined.resource(export, ResourceType::host::<()>(), |_, _| Ok(()))?;
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        ComponentItem::Resource(_) => {
            linker
                .root()
                .resource(name, ResourceType::host::<()>(), |_, _| Ok(()))
        }
        _ => Ok(()),
    }
}

/// The version of the `dsession:session` contract this host loads.
pub(crate) const CONTRACT_VERSION: &str = "0.4.0";

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
