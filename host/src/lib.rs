//! dsession: distributed session tokens on Redis, with the policy (key
//! layout, token format, single-login mode, expiry) in a swappable
//! WebAssembly component.
//!
//! ```no_run
//! use dsession::{SessionManager, Settings};
//! use dsession::store::{RedisConfig, RedisStore};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
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
//!
//! # Protecting routes
//!
//! With the `tower` and `axum` features, a layer checks every request's
//! token (401 without a live one, 503 when the store is down) and the
//! [`Authenticated`] extractor hands the handler its user; see [`tower`].
//! Any other gateway calls [`Authenticator::authenticate`] on the
//! request's headers and maps the three answers and the error itself:
//!
//! ```
//! use dsession::{Authentication, Authenticator};
//! use http::{Request, Response, StatusCode};
//!
//! async fn filter<B>(auth: &Authenticator, request: &mut Request<B>) -> Option<Response<String>> {
//!     let status = match auth.authenticate(request.headers()).await {
//!         Ok(Authentication::Valid(user)) => {
//!             request.headers_mut().extend(Authenticator::upstream_headers(&user));
//!             return None; // on to the upstream
//!         }
//!         Ok(Authentication::Missing | Authentication::Rejected) => StatusCode::UNAUTHORIZED,
//!         Err(error) => error.status(), // 503: the store or loader is down, not a logout
//!     };
//!     let mut response = Response::new(String::new());
//!     *response.status_mut() = status;
//!     Some(response)
//! }
//! ```
//!
//! # Testing a policy
//!
//! [`kit::Kit`] runs the conformance kit, the contract every policy keeps,
//! on a policy and a store: what `dsession policy test` prints, for a
//! policy's own tests. [`SessionManager::self_check`] asks a policy what it
//! says of itself under a manager's settings.
//!
//! # Features
//!
//! - `redis` (default): the Redis stores, one server, sentinels or a
//!   cluster, with TLS.
//! - `tower`: [`tower::RequireSessionLayer`] and [`tower::AttachSessionLayer`].
//! - `axum`: the [`Authenticated`] extractor (implies `tower`).
//! - `loader-http`, `loader-sql`: the HTTP and PostgreSQL/MySQL user loaders.
//! - `openapi`: `utoipa` schemas for the API types.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod authenticator;
#[cfg(feature = "axum")]
mod axum;
mod error;
pub mod kit;
pub mod loader;
mod manager;
pub mod observe;
mod policy;
pub mod store;
mod tail;
#[cfg(feature = "tower")]
pub mod tower;
mod types;
mod wit;

pub use authenticator::{Authentication, Authenticator, USER_DETAIL_HEADER, USER_ID_HEADER};
#[cfg(feature = "axum")]
pub use axum::{Authenticated, AuthenticatedRejection};
pub use error::{Error, ErrorBody, ErrorDetail, ErrorKind, Result, SetupError};
pub use loader::{LoaderError, LoaderOptions, UserLoader};
pub use manager::{SessionManager, SessionManagerBuilder};
pub use policy::describe::ConfigKey;
pub use policy::limits::{InstanceReuse, Limits};
pub use policy::pool::InstanceStats;
#[cfg(feature = "redis")]
pub use policy::slot_layout::{CrossSlot, SlotLayoutError, check_slot_layout};
pub use policy::{BUILTIN_POLICIES, CompileCacheStats, Policy, Runtime, RuntimeBuilder};
pub use tail::EventTail;
pub use types::{
    IssuedToken, MAX_DEVICE_CHARS, MAX_LABEL_NAME_CHARS, MAX_LABEL_VALUE_CHARS, MAX_LABELS,
    MAX_USER_AGENT_CHARS, PageRequest, SelfCheck, SessionAttributes, SessionEvent, Settings,
    TokenEntry, TokenPage, User, UserInfo, session_id,
};
