//! One error type for every route, answered as the library's
//! [`ErrorBody`], `{"error":{"code":"…","message":"…"}}`, with its
//! messages.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use dsession::{Error, ErrorBody};

/// Why a request failed.
#[derive(Debug)]
pub enum AppError {
    /// A token operation failed.
    Api(Error),
    /// The request itself is malformed.
    BadRequest(String),
    /// The body is larger than the limit.
    PayloadTooLarge(String),
    /// The admin key is missing or wrong.
    Unauthorized,
    /// Forward-auth found no valid token.
    InvalidToken {
        /// Whether a token was presented at all.
        presented: bool,
    },
    /// No such route.
    RouteNotFound,
    /// The route exists, but not with this method.
    MethodNotAllowed,
    /// The request body did not arrive in time.
    RequestTimeout,
    /// The admin console was asked for, but the service has no admin key.
    ConsoleClosed,
}

impl From<Error> for AppError {
    fn from(error: Error) -> Self {
        Self::Api(error)
    }
}

impl From<PathRejection> for AppError {
    fn from(rejection: PathRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

impl From<JsonRejection> for AppError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge(rejection.body_text())
        } else {
            Self::BadRequest(rejection.body_text())
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Self::Api(error) => {
                let status = error.status();
                // 5xx bodies say little; the detail goes to the log.
                if status.is_server_error() {
                    tracing::error!(code = error.code(), error = %error, "request failed");
                }
                (status, ErrorBody::from(&error))
            }
            Self::BadRequest(message) => (
                StatusCode::BAD_REQUEST,
                ErrorBody::new("invalid_argument", message),
            ),
            Self::PayloadTooLarge(message) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorBody::new("payload_too_large", message),
            ),
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                ErrorBody::new(
                    "unauthorized",
                    "this route needs `Authorization: Bearer <admin key>`",
                ),
            ),
            Self::InvalidToken { presented } => (
                StatusCode::UNAUTHORIZED,
                ErrorBody::unauthenticated(presented),
            ),
            Self::RouteNotFound => (
                StatusCode::NOT_FOUND,
                ErrorBody::new("route_not_found", "no such route"),
            ),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorBody::new("method_not_allowed", "this route does not take that method"),
            ),
            Self::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                ErrorBody::new("request_timeout", "the request body did not arrive in time"),
            ),
            Self::ConsoleClosed => (
                StatusCode::FORBIDDEN,
                ErrorBody::new(
                    "console_closed",
                    "the admin console needs an admin key: set admin_key or DSESSION_ADMIN_KEY",
                ),
            ),
        };
        body.response(status)
    }
}
