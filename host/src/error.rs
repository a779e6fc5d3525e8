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
