//! Where user detail comes from when the user-info cache has none.

use std::future::Future;

use async_trait::async_trait;

/// Why loading a user failed.
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
