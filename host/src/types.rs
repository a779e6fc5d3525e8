//! What the token operations take and return.

use serde::{Deserialize, Serialize};

/// A user behind a live token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    /// The user id the token was issued to.
    pub id: String,
    /// The token that was checked.
    pub token: String,
    /// Seconds the token has left; -1 when it never expires.
    pub token_remain_live_time: i64,
    /// When the token expires, as unix seconds; -1 when it never does.
    pub token_expire_time: i64,
    /// The user's detail (from the user-info cache or the loader), when asked
    /// for and known.
    pub detail: Option<serde_json::Value>,
}

/// A token just issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssuedToken {
    /// The token, in the policy's own form.
    pub token: String,
    /// When it expires, as unix seconds.
    pub token_expire_time: i64,
}

/// One live token of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenEntry {
    /// The token.
    pub token: String,
    /// Seconds it has left; -1 when it never expires.
    pub token_remain_live_time: i64,
    /// When it expires, as unix seconds; -1 when it never does.
    pub token_expire_time: i64,
    /// When it was issued, as unix seconds; None when the policy does not
    /// record it (the default policy).
    pub created_at: Option<i64>,
}

/// A user-info cache entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserInfo {
    /// The user id.
    pub id: String,
    /// The detail, when the user has one.
    pub detail: Option<serde_json::Value>,
}

/// What a policy says of itself under a manager's settings and policy
/// config, from its `self-check` export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfCheck {
    /// A token of the policy's own form that nobody holds: checking it
    /// reads the store and answers not valid.
    pub probe_token: String,
    /// Whether single mode is in force: issuing a token revokes the
    /// user's others.
    pub single_mode: bool,
    /// The most live tokens one user may hold, a login beyond it revoking
    /// the oldest; None when the policy sets no bound.
    pub max_sessions: Option<u32>,
}

/// gosession's configuration chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Prefix of token keys and token indexes; `_` is read as `-`.
    pub token_key_prefix: String,
    /// Prefix of user-info keys; `_` is read as `-`.
    pub user_key_prefix: String,
    /// Token and user-info lifetime when a call passes 0, in seconds.
    pub default_expire_seconds: i64,
    /// The shortest lifetime of a user's token index, in seconds.
    pub index_expire_seconds: i64,
    /// Issuing a token revokes the user's other tokens.
    pub single_mode: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            token_key_prefix: "gosession-token".into(),
            user_key_prefix: "gosession-user".into(),
            default_expire_seconds: 7 * 24 * 3600,
            index_expire_seconds: 30 * 24 * 3600,
            single_mode: false,
        }
    }
}
