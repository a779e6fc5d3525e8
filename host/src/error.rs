//! The one error type of the embedding API.

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

impl Error {
    /// Every [`Self::code`], e.g. for a metric label's closed set.
    pub const CODES: [&'static str; 8] = [
        "invalid_argument",
        "not_found",
        "store_error",
        "loader_error",
        "conflict",
        "corrupt_data",
        "policy_error",
        "overloaded",
    ];

    /// Whether the operation says nothing about the token or the user:
    /// the store, the loader or the policy runtime could not answer. A
    /// gateway answers 503 (or 500), never 401.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Store(_) | Self::Loader(_) | Self::Overloaded(_))
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
        match self {
            Self::InvalidArgument(_) => "invalid_argument",
            Self::NotFound => "not_found",
            Self::Store(_) => "store_error",
            Self::Loader(_) => "loader_error",
            Self::Conflict(_) => "conflict",
            Self::Corrupt(_) => "corrupt_data",
            Self::Policy(_) => "policy_error",
            Self::Overloaded(_) => "overloaded",
        }
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
