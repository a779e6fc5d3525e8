//! Where user detail comes from when the user-info cache has none.
//!
//! A [`UserLoader`] is the embedder's closure or one of the built-in
//! loaders ([`HttpLoader`], [`SqlLoader`]). Every manager calls its loader
//! through a [`CoalescingLoader`], which makes concurrent loads of one user
//! a single call, remembers "no detail" for a short time, bounds each load
//! with a timeout and counts what happens.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

mod coalesce;
#[cfg(feature = "loader-http")]
mod http;
#[cfg(feature = "loader-sql")]
mod sql;

pub(crate) use self::coalesce::fresh;
pub use self::coalesce::{CoalescingLoader, LoaderMetrics, LoaderOptions};
#[cfg(feature = "loader-http")]
pub use self::http::{HttpLoader, HttpLoaderConfig};
#[cfg(feature = "loader-sql")]
pub use self::sql::{SqlLoader, SqlLoaderConfig};

/// Why loading a user failed: any error, from the embedder's loader or a
/// built-in one (whose errors are [`LoadFailure`]s).
pub type LoaderError = Box<dyn std::error::Error + Send + Sync>;

/// Loads a user's detail, e.g. from a database.
///
/// `Ok(None)` means the user has no detail; an error means loading failed,
/// and the operation reports [`crate::Error::Loader`], never an invalid
/// token. Any `Fn(String) -> impl Future<Output = Result<Option<Value>, LoaderError>>`
/// closure is a loader.
#[async_trait]
pub trait UserLoader: Send + Sync + 'static {
    /// The detail of `user_id` as JSON.
    async fn load(&self, user_id: &str) -> Result<Option<serde_json::Value>, LoaderError>;

    /// Whether the source of user detail takes requests now, for readiness
    /// probes. A loader that cannot tell says yes.
    async fn ready(&self) -> Result<(), LoaderError> {
        Ok(())
    }
}

#[async_trait]
impl<F, Fut> UserLoader for F
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<serde_json::Value>, LoaderError>> + Send,
{
    async fn load(&self, user_id: &str) -> Result<Option<serde_json::Value>, LoaderError> {
        self(user_id.to_owned()).await
    }
}

/// Why a built-in loader, or the timeout around any loader, failed. The
/// [`CoalescingLoader`] counts failures by [`LoadFailure::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadFailure {
    /// The source of user detail could not be reached.
    #[error("cannot reach the user source: {0}")]
    Unavailable(String),
    /// The load took longer than its timeout.
    #[error("loading user {user_id:?} took longer than {timeout:?}")]
    Timeout {
        /// The user being loaded.
        user_id: String,
        /// The time it was given.
        timeout: Duration,
    },
    /// The HTTP source answered a status other than 200 or 404.
    #[error("the user source answered HTTP {status} for user {user_id:?}")]
    Status {
        /// The user being loaded.
        user_id: String,
        /// The status.
        status: u16,
    },
    /// The source answered something that is not a JSON detail.
    #[error("the detail of user {user_id:?} is not valid JSON: {reason}")]
    InvalidDetail {
        /// The user being loaded.
        user_id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The SQL query failed in the database.
    #[error("the user query failed for user {user_id:?}: {reason}")]
    Query {
        /// The user being loaded.
        user_id: String,
        /// The database's error.
        reason: String,
    },
}

impl LoadFailure {
    /// Every [`Self::reason`], and `other` for an embedder's own error.
    pub const REASONS: [&'static str; 6] = [
        "unavailable",
        "timeout",
        "status",
        "invalid_detail",
        "query",
        "other",
    ];

    /// A stable label for metrics: `unavailable`, `timeout`, `status`,
    /// `invalid_detail` or `query`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Timeout { .. } => "timeout",
            Self::Status { .. } => "status",
            Self::InvalidDetail { .. } => "invalid_detail",
            Self::Query { .. } => "query",
        }
    }
}
