//! dsession: distributed session tokens on Redis, with the policy (key
//! layout, token format, single-login mode, expiry) in a swappable
//! WebAssembly component.
//!
//! ```no_run
//! use dsession::{SessionManager, Settings};
//! use dsession::store::{RedisConfig, RedisStore};
//!
//! # async fn example() -> anyhow::Result<()> {
//! let store = RedisStore::connect(RedisConfig::new("redis://127.0.0.1:6379/0")).await?;
//! let sessions = SessionManager::builder()
//!     .store(store)
//!     .settings(Settings { single_mode: true, ..Settings::default() })
//!     .loader(|id: String| async move { Ok(Some(serde_json::json!({ "name": id }))) })
//!     .build()?;
//! let issued = sessions.set_token("alice", 3600).await?;
//! let user = sessions.check_token_or_update_user(&issued.token, 600).await?;
//! assert_eq!(user.map(|user| user.id).as_deref(), Some("alice"));
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod builtin;
mod error;
pub mod loader;
mod manager;
mod policy;
mod policy_config;
pub mod server;
mod slot_layout;
pub mod store;
mod types;

pub use builtin::BUILTIN_POLICIES;
pub use error::{Error, Result};
pub use loader::{LoaderError, LoaderOptions, UserLoader};
pub use manager::{SessionManager, SessionManagerBuilder};
pub use policy::{InstanceReuse, Limits, Policy};
pub use policy_config::{ConfigKey, parse_pair as parse_policy_config_pair};
pub use slot_layout::{CrossSlot, SlotLayoutError, check_slot_layout};
pub use types::{IssuedToken, Settings, TokenEntry, User, UserInfo};
