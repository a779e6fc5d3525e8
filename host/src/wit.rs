//! The `policy` world of `wit/session.wit`, generated once: the store's
//! commands and replies, the types of the token API, the host's imports
//! and the policy's exports. The store and the policy runtime both take
//! their WIT types from here.

wasmtime::component::bindgen!({
    world: "policy",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:random": wasmtime_wasi::p2::bindings::random,
    },
    additional_derives: [PartialEq, Eq],
});

pub(crate) use self::dsession::session::{store, types, user_loader};
pub(crate) use self::exports::dsession::session::token_manage;
