//! The one error type of the embedding API, and the JSON body that HTTP
//! answers carry it in.

use serde::{Deserialize, Serialize};

/// Why a token operation failed. It names no backend: Redis, the memory
/// store and every loader report through the same cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument was rejected before anything was read or written.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The token is not live: unknown, expired or revoked.
    #[error("token not found")]
    NotFound,
    /// The store failed or could not be reached; nothing is known about the
    /// token.
    #[error("store error: {0}")]
    Store(String),
    /// The store is full and refused a write (Redis: `OOM`, its used memory
    /// over `maxmemory` under `maxmemory-policy noeviction`): logins and
    /// refreshes fail until memory is freed or raised; checks and
    /// revocations still work. Nothing is known about the token.
    #[error("store out of memory: {0}")]
    StoreOutOfMemory(String),
    /// The user loader failed; nothing is known about the user.
    #[error("user loader error: {0}")]
    Loader(String),
    /// Concurrent writers kept winning an optimistic transaction; retrying
    /// is safe.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The store holds data that does not follow the layout.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The policy component failed: it trapped, ran past its time limit,
    /// used more memory than allowed, or broke the contract.
    #[error("policy error: {0}")]
    Policy(String),
    /// Every policy instance is busy and none came free in time.
    #[error("overloaded: {0}")]
    Overloaded(String),
}

/// The case of an [`Error`], without its detail: a closed set, for
/// metric labels and matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::InvalidArgument`].
    InvalidArgument,
    /// [`Error::NotFound`].
    NotFound,
    /// [`Error::Store`].
    Store,
    /// [`Error::StoreOutOfMemory`].
    StoreOutOfMemory,
    /// [`Error::Loader`].
    Loader,
    /// [`Error::Conflict`].
    Conflict,
    /// [`Error::Corrupt`].
    Corrupt,
    /// [`Error::Policy`].
    Policy,
    /// [`Error::Overloaded`].
    Overloaded,
}

impl ErrorKind {
    /// Every kind.
    pub const ALL: [Self; 9] = [
        Self::InvalidArgument,
        Self::NotFound,
        Self::Store,
        Self::StoreOutOfMemory,
        Self::Loader,
        Self::Conflict,
        Self::Corrupt,
        Self::Policy,
        Self::Overloaded,
    ];

    /// A stable snake_case name for the kind, as the service, the CLI and
    /// the metrics report it.
    pub const fn code(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid_argument",
            Self::NotFound => "not_found",
            Self::Store => "store_error",
            Self::StoreOutOfMemory => "store_out_of_memory",
            Self::Loader => "loader_error",
            Self::Conflict => "conflict",
            Self::Corrupt => "corrupt_data",
            Self::Policy => "policy_error",
            Self::Overloaded => "overloaded",
        }
    }
}

impl Error {
    /// Every [`Self::code`], e.g. for a metric label's closed set.
    pub const CODES: [&'static str; ErrorKind::ALL.len()] = {
        let mut codes = [""; ErrorKind::ALL.len()];
        let mut i = 0;
        while i < codes.len() {
            codes[i] = ErrorKind::ALL[i].code();
            i += 1;
        }
        codes
    };

    /// The case, without its detail.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Self::NotFound => ErrorKind::NotFound,
            Self::Store(_) => ErrorKind::Store,
            Self::StoreOutOfMemory(_) => ErrorKind::StoreOutOfMemory,
            Self::Loader(_) => ErrorKind::Loader,
            Self::Conflict(_) => ErrorKind::Conflict,
            Self::Corrupt(_) => ErrorKind::Corrupt,
            Self::Policy(_) => ErrorKind::Policy,
            Self::Overloaded(_) => ErrorKind::Overloaded,
        }
    }

    /// Whether the operation says nothing about the token or the user:
    /// the store (down or full), the loader or the policy runtime could not
    /// answer. A
    /// gateway answers 503 (or 500), never 401.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Store(_) | Self::StoreOutOfMemory(_) | Self::Loader(_) | Self::Overloaded(_)
        )
    }

    /// The HTTP status the service answers this error with: 400, 404, 409,
    /// 503 when the store, the loader or the runtime cannot answer, and 500
    /// when the policy failed or the data is corrupt.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            Self::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            error if error.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable snake_case name for the case, as the service and the CLI
    /// report it.
    pub fn code(&self) -> &'static str {
        self.kind().code()
    }

    /// What an HTTP client is told. A 4xx says what was wrong with the
    /// request; a 5xx names the part that failed and no more, its detail
    /// being for the log.
    pub fn public_message(&self) -> String {
        match self {
            Self::Store(_) => "the session store is unavailable".into(),
            Self::StoreOutOfMemory(_) => {
                "the session store is out of memory (OOM: Redis is over its maxmemory) and \
                 refused the write"
                    .into()
            }
            Self::Loader(_) => "the user loader is unavailable".into(),
            Self::Overloaded(_) => "too many requests in flight".into(),
            Self::Corrupt(_) => "the session store holds data the policy cannot read".into(),
            Self::Policy(_) => "the policy failed (trapped, ran out of time or memory)".into(),
            Self::InvalidArgument(_) | Self::NotFound | Self::Conflict(_) => self.to_string(),
        }
    }
}

/// The body of every error response, from the tower layers and the
/// service alike: `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The code and message of an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// A stable snake_case code, e.g. `invalid_argument`.
    pub code: String,
    /// A message for people.
    pub message: String,
}

impl ErrorBody {
    /// A body with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }

    /// `unauthenticated`: the request has no live session token, saying
    /// whether it presented one at all. Its status is 401.
    pub fn unauthenticated(presented: bool) -> Self {
        let message = if presented {
            "the session token is not valid"
        } else {
            "no session token: send `Authorization: Bearer`, `X-Session-Token` or the session cookie"
        };
        Self::new("unauthenticated", message)
    }

    /// The response: `status`, this body as JSON, and on a 401 the
    /// `WWW-Authenticate: Bearer` challenge.
    pub fn response<B: From<String>>(self, status: http::StatusCode) -> http::Response<B> {
        use http::{HeaderValue, header};
        let json = serde_json::to_string(&self).expect("an error body serializes");
        let mut response = http::Response::new(B::from(json));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if status == http::StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<&Error> for ErrorBody {
    /// The error's code and [`Error::public_message`].
    fn from(error: &Error) -> Self {
        Self::new(error.code(), error.public_message())
    }
}

/// The result of a token operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why setting something up failed: the wasm runtime, a policy, a store, a
/// loader or the settings. Each case's message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The wasm engine or its epoch thread could not start, or a policy
    /// was compiled on another runtime than the manager's.
    #[error("wasm runtime: {0}")]
    Runtime(String),
    /// A policy component cannot be read, compiled or linked, or does not
    /// export the `policy` world.
    #[error("{0}")]
    Policy(String),
    /// The policy refused the settings, or its first call failed.
    #[error("{0}")]
    Settings(String),
    /// The store cannot be reached or its configuration is wrong.
    #[error("{0}")]
    Store(String),
    /// The user loader's configuration is wrong.
    #[error("{0}")]
    Loader(String),
}

impl SetupError {
    /// A stable snake_case name for the case.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Runtime(_) => "runtime_error",
            Self::Policy(_) => "policy_error",
            Self::Settings(_) => "invalid_settings",
            Self::Store(_) => "store_error",
            Self::Loader(_) => "loader_error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_code_and_every_code_is_listed() {
        let errors = [
            Error::InvalidArgument(String::new()),
            Error::NotFound,
            Error::Store(String::new()),
            Error::StoreOutOfMemory(String::new()),
            Error::Loader(String::new()),
            Error::Conflict(String::new()),
            Error::Corrupt(String::new()),
            Error::Policy(String::new()),
            Error::Overloaded(String::new()),
        ];
        let kinds: Vec<ErrorKind> = errors.iter().map(Error::kind).collect();
        assert_eq!(kinds, ErrorKind::ALL);
        let codes: Vec<&str> = errors.iter().map(Error::code).collect();
        assert_eq!(codes, Error::CODES);
    }

    #[test]
    fn a_5xx_body_names_the_failing_part_without_its_detail() {
        let body = ErrorBody::from(&Error::Loader("db.internal refused".into()));
        assert_eq!(body.error.code, "loader_error");
        assert_eq!(body.error.message, "the user loader is unavailable");
        let body = ErrorBody::from(&Error::StoreOutOfMemory("OOM command not allowed".into()));
        assert_eq!(body.error.code, "store_out_of_memory");
        assert!(body.error.message.contains("maxmemory"), "{body:?}");
        assert_eq!(
            Error::StoreOutOfMemory(String::new()).status(),
            http::StatusCode::SERVICE_UNAVAILABLE
        );
        let body = ErrorBody::from(&Error::InvalidArgument("empty user id".into()));
        assert_eq!(body.error.message, "invalid argument: empty user id");
    }

    #[test]
    fn only_a_401_carries_the_bearer_challenge() {
        let challenge = |status| {
            let response: http::Response<String> =
                ErrorBody::unauthenticated(false).response(status);
            response
                .headers()
                .get(http::header::WWW_AUTHENTICATE)
                .map(|value| value.to_str().unwrap().to_owned())
        };
        assert_eq!(
            challenge(http::StatusCode::UNAUTHORIZED).as_deref(),
            Some("Bearer")
        );
        assert_eq!(challenge(http::StatusCode::SERVICE_UNAVAILABLE), None);
    }
}
