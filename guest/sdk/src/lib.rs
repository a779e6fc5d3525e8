//! Write a dsession session policy in Rust.
//!
//! A policy is a WebAssembly component that decides every key, token format
//! and expiry rule of a session store; the dsession host runs it and lends
//! it the store. This crate holds what every policy needs: the WIT
//! (`dsession:session@0.4.0`, bundled), its bindings generated once, the
//! [`Policy`] trait with defaults for what all policies write the same way,
//! typed store commands ([`cmd`]) and replies ([`Reply`], [`Replies`]), an
//! optimistic-transaction helper ([`store::optimistic`]), the user-info
//! cache ([`users`]), session events ([`event`]), the client of the
//! request a check serves ([`client`]), and checks and helpers for user
//! ids, TTLs, tokens, time and randomness.
//!
//! A whole policy: one token key per token, the user in its value.
//!
//! ```no_run
//! use dsession_policy_sdk::{
//!     Error, IssuedToken, PageRequest, Policy, SelfCheckReport, SessionAttributes, Settings,
//!     TokenPage, User, UserCache, UserDetail, cmd, random, store, time, token, ttl,
//! };
//!
//! struct Simple {
//!     default_ttl: i64,
//!     user_loader: bool,
//! }
//!
//! impl Simple {
//!     fn token_key(token: &str) -> String {
//!         format!("simple:token:{token}")
//!     }
//! }
//!
//! impl UserCache for Simple {
//!     fn user_key(&self, user_id: &str) -> String {
//!         format!("simple:user:{user_id}")
//!     }
//!     fn user_loader(&self) -> bool {
//!         self.user_loader
//!     }
//! }
//!
//! impl Policy for Simple {
//!     fn new(settings: &Settings) -> Result<Self, Error> {
//!         ttl::check_setting("default expire", settings.default_expire_seconds)?;
//!         Ok(Self { default_ttl: settings.default_expire_seconds, user_loader: settings.user_loader })
//!     }
//!     fn self_check(&self) -> Result<SelfCheckReport, Error> {
//!         Ok(SelfCheckReport {
//!             probe_token: format!("dsession-probe_{}", "0".repeat(32)),
//!             single_mode: false,
//!             max_sessions: None,
//!         })
//!     }
//!     fn ttl(&self, requested: i64) -> Result<i64, Error> {
//!         ttl::resolve(requested, self.default_ttl)
//!     }
//!     fn set_token(&self, user_id: &str, ttl: i64, _: &SessionAttributes) -> Result<IssuedToken, Error> {
//!         let token = format!("{user_id}_{}", random::hex(16));
//!         store::batch(&[cmd::set(Self::token_key(&token), user_id).ttl(ttl).into()])?;
//!         Ok(IssuedToken { token, token_expire_time: time::now() + ttl })
//!     }
//!     fn refresh_token(&self, token: &str, ttl: i64) -> Result<i64, Error> {
//!         let extended = store::one(cmd::expire(Self::token_key(token), ttl).into())?;
//!         match extended.integer("EXPIRE token")? {
//!             1 => Ok(time::now() + ttl),
//!             _ => Err(Error::NotFound),
//!         }
//!     }
//!     fn delete_token(&self, token: &str) -> Result<(), Error> {
//!         store::batch(&[cmd::del([Self::token_key(token)])]).map(drop)
//!     }
//!     fn check_token(&self, token: &str, detail: UserDetail) -> Result<Option<User>, Error> {
//!         let Some((user_id, _)) = token::parse(token, 32)? else {
//!             return Ok(None);
//!         };
//!         let key = Self::token_key(token);
//!         let mut reads = vec![cmd::get(&key), cmd::ttl(&key)];
//!         reads.extend(detail.read(self, user_id));
//!         let mut replies = store::batch(&reads)?;
//!         let [value, left] = replies.next_n()?;
//!         let left = time::lifetime(left.integer("TTL token")?, time::now());
//!         let (Some(_), Some((left, expires))) = (value.text("GET token")?, left) else {
//!             return Ok(None);
//!         };
//!         Ok(Some(User {
//!             id: user_id.to_owned(),
//!             token: token.to_owned(),
//!             token_remain_live_time: left,
//!             token_expire_time: expires,
//!             detail: detail.resolve(self, user_id, replies.next())?,
//!         }))
//!     }
//!     fn list_user_token(&self, _: &str, _: &PageRequest) -> Result<TokenPage, Error> {
//!         // This policy keeps no index of a user's tokens.
//!         Ok(TokenPage { tokens: Vec::new(), next_cursor: None })
//!     }
//!     fn delete_user_token(&self, _: &str) -> Result<(), Error> {
//!         Err(Error::InvalidArgument("this policy cannot revoke a user's tokens".into()))
//!     }
//! }
//!
//! dsession_policy_sdk::export!(Simple);
//! ```
//!
//! Build it as a component: `crate-type = ["cdylib"]`, then
//! `cargo build --release --target wasm32-wasip2`. add-user, refresh-user,
//! delete-user and check-token-or-update-user come from the defaults of
//! [`Policy`]; a policy that reads settings of its own through
//! `wasi:config/store` ([`config::get_all`]) says which with [`Describe`]
//! and `export!(MyPolicy with describe)`.

#![deny(missing_docs)]

pub mod attributes;
pub mod bindings;
pub mod client;
pub mod cmd;
pub mod config;
pub mod event;
pub mod page;
mod policy;
pub mod random;
mod reply;
pub mod store;
pub mod time;
pub mod token;
pub mod ttl;
pub mod user_id;
pub mod users;

pub use bindings::description::exports::dsession::session::describe::ConfigKey;
pub use bindings::dsession::session::store::{Command, Reply, Transaction};
pub use bindings::dsession::session::types::{
    Error, IssuedToken, PageRequest, SelfCheckReport, SessionAttributes, Settings, TokenEntry,
    TokenPage, User, UserInfo,
};
pub use policy::{Describe, Policy};
pub use reply::Replies;
pub use users::{UserCache, UserDetail};

/// Exports a type that implements [`Policy`] as the component's
/// `token-manage`: `export!(MyPolicy)`. `export!(MyPolicy with describe)`
/// also exports `describe`, for a type that implements [`Describe`] too.
///
/// Use it once, in the crate that builds the component.
#[macro_export]
macro_rules! export {
    ($policy:ident) => {
        $crate::bindings::export!($policy with_types_in $crate::bindings);
    };
    ($policy:ident with describe) => {
        $crate::export!($policy);
        $crate::bindings::description::export!(
            $policy with_types_in $crate::bindings::description
        );
    };
}
