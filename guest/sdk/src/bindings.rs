//! The bindings of `dsession:session@0.4.0`, generated once from the WIT
//! bundled in this crate. The rest of the crate wraps them; a policy
//! reaches them here only for what the wrappers leave out.

#![allow(missing_docs)]

wit_bindgen::generate!({
    world: "policy",
    path: "wit",
    generate_all,
    additional_derives: [PartialEq],
    pub_export_macro: true,
    default_bindings_module: "dsession_policy_sdk::bindings",
});

/// `describe` alone: a policy that exports it adds this world's section.
pub mod description {
    wit_bindgen::generate!({
        world: "policy-description",
        path: "wit",
        additional_derives: [PartialEq],
        pub_export_macro: true,
        default_bindings_module: "dsession_policy_sdk::bindings::description",
    });
}
