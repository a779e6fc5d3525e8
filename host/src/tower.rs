//! tower layers that check a request's session token with an
//! [`Authenticator`] before the inner service sees it.
//!
//! [`RequireSessionLayer`] lets only requests with a live token through
//! (401 with `WWW-Authenticate: Bearer` otherwise); [`AttachSessionLayer`]
//! lets every request through and attaches the user when there is one.
//! Either puts the [`User`] in the request's extensions, where
//! `request.extensions().get::<User>()` (or, with the `axum` feature, the
//! [`crate::Authenticated`] extractor) finds it. When the store, the
//! loader or the policy fails, both answer 503 (500 for a policy failure
//! or corrupt data), never 401: an outage must not log everybody out.
//!
//! Error responses are [`crate::ErrorBody`]s, the service's JSON shape
//! `{"error":{"code":"…","message":"…"}}`, with its messages.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::authenticator::{Authentication, Authenticator};
use crate::error::{Error, ErrorBody};

/// Put in a request's extensions by either layer, user or not: how the
/// extractor tells "no session" from "no layer".
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionChecked;

/// Requires a live session token: 401 without one, 503 when it cannot be
/// checked; the inner service sees only requests with a [`User`] in their
/// extensions.
///
/// ```
/// # fn example(sessions: dsession::SessionManager) {
/// use dsession::Authenticator;
/// use dsession::tower::RequireSessionLayer;
///
/// let layer = RequireSessionLayer::new(Authenticator::new(sessions));
/// # let _ = layer;
/// # }
/// ```
pub type RequireSessionLayer = SessionLayer<true>;

/// Attaches the session's [`User`] when the request has a live token and
/// lets every request through; 503 when the token cannot be checked.
pub type AttachSessionLayer = SessionLayer<false>;

/// The layer behind both: with `REQUIRED`, [`RequireSessionLayer`];
/// without, [`AttachSessionLayer`].
#[derive(Debug, Clone)]
pub struct SessionLayer<const REQUIRED: bool> {
    authenticator: Authenticator,
}

impl<const REQUIRED: bool> SessionLayer<REQUIRED> {
    /// Checks tokens with `authenticator`.
    pub fn new(authenticator: Authenticator) -> Self {
        Self { authenticator }
    }
}

impl<S, const REQUIRED: bool> Layer<S> for SessionLayer<REQUIRED> {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            authenticator: self.authenticator.clone(),
            required: REQUIRED,
        }
    }
}

/// The service either layer makes.
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    authenticator: Authenticator,
    required: bool,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authenticator = self.authenticator.clone();
        let required = self.required;
        Box::pin(async move {
            match authenticator.authenticate(request.headers()).await {
                Ok(Authentication::Valid(user)) => {
                    request.extensions_mut().insert(user);
                }
                Ok(Authentication::Missing) if required => {
                    return Ok(unauthenticated(false));
                }
                Ok(Authentication::Rejected) if required => {
                    return Ok(unauthenticated(true));
                }
                Ok(Authentication::Missing | Authentication::Rejected) => {}
                Err(error) => return Ok(failed(&error)),
            }
            request.extensions_mut().insert(SessionChecked);
            inner.call(request).await
        })
    }
}

/// 401 `unauthenticated`, saying whether a token came at all.
pub(crate) fn unauthenticated<B: From<String>>(presented: bool) -> Response<B> {
    ErrorBody::unauthenticated(presented).response(StatusCode::UNAUTHORIZED)
}

/// 503 (or 500) for a check that could not be made; the detail goes to
/// the log, not to the client.
fn failed<B: From<String>>(error: &Error) -> Response<B> {
    tracing::error!(code = error.code(), %error, "a session could not be checked");
    ErrorBody::from(error).response(error.status())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    #[test]
    fn a_missing_token_gets_a_json_401_with_a_challenge() {
        let response: Response<String> = unauthenticated(false);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(body["error"]["code"], "unauthenticated");
    }

    #[test]
    fn an_outage_is_a_503_not_a_401() {
        let response: Response<String> = failed(&Error::Store("connection refused".into()));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
        let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(body["error"]["code"], "store_error");
        assert!(
            !response.body().contains("refused"),
            "detail stays in the log"
        );
    }
}
