//! The WIT of `wit/session.wit`, generated once: the store's commands and
//! replies, the types of the token API, the host's imports and the
//! policy's exports. The store and the policy runtime both take their WIT
//! types from here. `wit/` is the crate's checked copy of the repository's
//! `wit/`, kept equal by `scripts/sync-wit`.

mod policy {
    wasmtime::component::bindgen!({
        world: "policy",
        path: "wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "wasi:random": wasmtime_wasi::p2::bindings::random,
        },
        additional_derives: [PartialEq, Eq],
    });
}

/// The optional `describe` export alone, to call it on any component that
/// has it.
mod description {
    wasmtime::component::bindgen!({
        world: "policy-description",
        path: "wit",
        exports: { default: async },
    });
}

pub(crate) use self::description::exports::dsession::session::describe;
pub(crate) use self::description::{PolicyDescription, PolicyDescriptionIndices};
pub(crate) use self::policy::dsession::session::{client, store, types, user_loader};
pub(crate) use self::policy::exports::dsession::session::token_manage;
pub(crate) use self::policy::{Policy, PolicyIndices};

pub(crate) use self::describe::ConfigKey as WitConfigKey;
pub(crate) use self::types::{
    Error as WitError, IssuedToken as WitIssuedToken, PageRequest as WitPageRequest,
    SelfCheckReport as WitSelfCheck, SessionAttributes as WitAttributes, Settings as WitSettings,
    TokenEntry as WitTokenEntry, TokenPage as WitTokenPage, User as WitUser,
    UserInfo as WitUserInfo,
};
