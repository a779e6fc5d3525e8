//! The axum extractor for the user a session layer attached.

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::error::ErrorBody;
use crate::tower::{SessionChecked, unauthenticated};
use crate::types::User;

/// The user of the request's session, as
/// [`crate::tower::RequireSessionLayer`] or
/// [`crate::tower::AttachSessionLayer`] attached it. `Option<Authenticated>`
/// is `None` for a request without a live session.
///
/// ```
/// # async fn example(sessions: dsession::SessionManager) {
/// use axum::{Router, routing::get};
/// use dsession::{Authenticated, Authenticator, tower::RequireSessionLayer};
///
/// let app: Router = Router::new()
///     .route("/me", get(|Authenticated(user): Authenticated| async move { user.id }))
///     .layer(RequireSessionLayer::new(Authenticator::new(sessions)));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated(pub User);

/// Why [`Authenticated`] could not be extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthenticatedRejection {
    /// No session layer ran for this route: a programming error, answered
    /// 500 with a message saying which layer to add.
    MissingSessionLayer,
    /// The layer ran (an attach-only one) and found no live session: 401.
    NoSession,
}

impl IntoResponse for AuthenticatedRejection {
    fn into_response(self) -> Response {
        match self {
            Self::MissingSessionLayer => {
                tracing::error!(
                    "the Authenticated extractor ran without a session layer in front of the route"
                );
                ErrorBody::new(
                    "missing_session_layer",
                    "Authenticated needs dsession::tower::RequireSessionLayer or AttachSessionLayer in front of this route",
                )
                .response(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::NoSession => unauthenticated(false),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = AuthenticatedRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        <Self as OptionalFromRequestParts<S>>::from_request_parts(parts, state)
            .await?
            .ok_or(AuthenticatedRejection::NoSession)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Authenticated {
    type Rejection = AuthenticatedRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if let Some(user) = parts.extensions.get::<User>() {
            return Ok(Some(Self(user.clone())));
        }
        if parts.extensions.get::<SessionChecked>().is_none() {
            return Err(AuthenticatedRejection::MissingSessionLayer);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_a_layer_the_rejection_names_the_missing_layer() {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        let rejection =
            <Authenticated as FromRequestParts<()>>::from_request_parts(&mut parts, &())
                .await
                .unwrap_err();
        assert_eq!(rejection, AuthenticatedRejection::MissingSessionLayer);
        let response = rejection.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn after_an_attach_only_layer_no_session_is_none_or_401() {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.extensions.insert(SessionChecked);
        let optional =
            <Authenticated as OptionalFromRequestParts<()>>::from_request_parts(&mut parts, &())
                .await
                .unwrap();
        assert_eq!(optional, None);
        let rejection =
            <Authenticated as FromRequestParts<()>>::from_request_parts(&mut parts, &())
                .await
                .unwrap_err();
        assert_eq!(rejection.into_response().status(), StatusCode::UNAUTHORIZED);
    }
}
