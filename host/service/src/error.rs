//! One error type for every route, in the shape
//! `{"error":{"code":"…","message":"…"}}`.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use dsession::Error;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The code and message of an error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code, e.g. `invalid_argument`.
    pub code: String,
    /// A message for people.
    pub message: String,
}

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
        let (status, code, message) = match self {
            Self::Api(error) => {
                let status = error.status();
                let code = error.code();
                // 5xx bodies say little; the detail goes to the log.
                let message = if status.is_server_error() {
                    tracing::error!(code, error = %error, "request failed");
                    match error {
                        Error::Store(_) => "the session store is unavailable".to_owned(),
                        Error::Loader(_) => "the user loader is unavailable".to_owned(),
                        Error::Overloaded(_) => "too many requests in flight".to_owned(),
                        Error::Corrupt(_) => {
                            "the session store holds data the policy cannot read".to_owned()
                        }
                        Error::Policy(_) => {
                            "the policy failed (trapped, ran out of time or memory)".to_owned()
                        }
                        _ => "internal error".to_owned(),
                    }
                } else {
                    error.to_string()
                };
                (status, code, message)
            }
            Self::BadRequest(message) => (StatusCode::BAD_REQUEST, "invalid_argument", message),
            Self::PayloadTooLarge(message) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            }
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this route needs `Authorization: Bearer <admin key>`".to_owned(),
            ),
            Self::InvalidToken { presented } => {
                let message = if presented {
                    "the session token is not valid"
                } else {
                    "no session token: send `Authorization: Bearer`, `X-Session-Token` or the session cookie"
                };
                (
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    message.to_owned(),
                )
            }
            Self::RouteNotFound => (
                StatusCode::NOT_FOUND,
                "route_not_found",
                "no such route".to_owned(),
            ),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method".to_owned(),
            ),
            Self::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time".to_owned(),
            ),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
