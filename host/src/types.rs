//! What the token operations take and return.

use std::collections::BTreeMap;

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

/// Where a session comes from, given at login and listed with it. Every
/// field is optional; [`SessionAttributes::check`] holds them to the
/// bounds the WIT states, and an error names the field, never its value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionAttributes {
    /// A device label the client chose ("laptop", "ios-app"): 1 to 64
    /// characters, none a control character. Per-device session limits
    /// count by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The client's user agent: at most 512 characters, none a control
    /// character.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The client's IP address, IPv4 or IPv6; kept in canonical form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Free-form labels: at most 16, each name 1 to 32 ASCII letters,
    /// digits, `-`, `_` and `.`, each value at most 128 characters, none a
    /// control character.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The longest device label, in characters.
pub const MAX_DEVICE_CHARS: usize = 64;
/// The longest user agent, in characters.
pub const MAX_USER_AGENT_CHARS: usize = 512;
/// The most labels a session has.
pub const MAX_LABELS: usize = 16;
/// The longest label name, in characters (ASCII).
pub const MAX_LABEL_NAME_CHARS: usize = 32;
/// The longest label value, in characters.
pub const MAX_LABEL_VALUE_CHARS: usize = 128;

impl SessionAttributes {
    /// Checks every field against its bound and puts the IP address in
    /// canonical form. The error names the field and the bound, never the
    /// value, so that logging it never logs a user agent or an address.
    pub fn check(mut self) -> Result<Self, String> {
        if let Some(device) = &self.device {
            printable("device", device, 1, MAX_DEVICE_CHARS)?;
        }
        if let Some(user_agent) = &self.user_agent {
            printable("user_agent", user_agent, 0, MAX_USER_AGENT_CHARS)?;
        }
        if let Some(ip) = &self.ip {
            let parsed: std::net::IpAddr = ip
                .trim()
                .parse()
                .map_err(|_| "ip must be an IPv4 or IPv6 address".to_owned())?;
            self.ip = Some(parsed.to_canonical().to_string());
        }
        if self.labels.len() > MAX_LABELS {
            return Err(format!(
                "labels may hold at most {MAX_LABELS}, not {}",
                self.labels.len()
            ));
        }
        for (name, value) in &self.labels {
            let named = !name.is_empty()
                && name.len() <= MAX_LABEL_NAME_CHARS
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !named {
                return Err(format!(
                    "a label name must be 1 to {MAX_LABEL_NAME_CHARS} ASCII letters, digits, \
                     '-', '_' and '.'"
                ));
            }
            printable("a label value", value, 0, MAX_LABEL_VALUE_CHARS)?;
        }
        Ok(self)
    }

    /// Whether no attribute is given.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// No control character (Unicode Cc), as an ECMA pattern.
#[cfg(feature = "openapi")]
const PRINTABLE: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for SessionAttributes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let schema = serde_json::json!({
            "type": "object",
            "description": "Where a login comes from; every field optional.",
            "additionalProperties": false,
            "properties": {
                "device": {
                    "type": ["string", "null"],
                    "description": "A device label the client chose; per-device session limits count by it",
                    "minLength": 1, "maxLength": MAX_DEVICE_CHARS, "pattern": PRINTABLE,
                },
                "user_agent": {
                    "type": ["string", "null"],
                    "maxLength": MAX_USER_AGENT_CHARS, "pattern": PRINTABLE,
                },
                "ip": {
                    "anyOf": [
                        { "type": "string", "format": "ipv4" },
                        { "type": "string", "format": "ipv6" },
                        { "type": "null" },
                    ],
                    "description": "The client's IP address, kept in canonical form",
                },
                "labels": {
                    "type": "object",
                    "maxProperties": MAX_LABELS,
                    "propertyNames": {
                        "type": "string",
                        "pattern": format!("^[A-Za-z0-9._-]{{1,{MAX_LABEL_NAME_CHARS}}}$"),
                    },
                    "additionalProperties": {
                        "type": "string",
                        "maxLength": MAX_LABEL_VALUE_CHARS, "pattern": PRINTABLE,
                    },
                },
            },
        });
        utoipa::openapi::RefOr::T(
            serde_json::from_value(schema).expect("the attributes' schema is an OpenAPI schema"),
        )
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for SessionAttributes {}

/// Checks that `value` is `min` to `max` characters, none a control
/// character.
fn printable(field: &str, value: &str, min: usize, max: usize) -> Result<(), String> {
    let chars = value.chars().count();
    if chars < min || chars > max {
        return Err(format!(
            "{field} must be {min} to {max} characters, not {chars}"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{field} must not hold control characters"));
    }
    Ok(())
}

/// One live token of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenEntry {
    /// The token, or the policy's name for it when it keeps no token (the
    /// hardened policy: `sha256:{digest}:{user id}`), which
    /// [`crate::SessionManager::delete_token`] takes.
    pub token: String,
    /// The session's id, as its events name it ([`session_id`] of
    /// `token`): safe to show, where the token is a secret.
    pub session_id: String,
    /// Seconds it has left; -1 when it never expires.
    pub token_remain_live_time: i64,
    /// When it expires, as unix seconds; -1 when it never does.
    pub token_expire_time: i64,
    /// When it was issued, as unix seconds; None when the policy did not
    /// record it (the default policy records it for a login with
    /// attributes).
    pub created_at: Option<i64>,
    /// When a check last found it live, as unix seconds, to within the
    /// policy's touch interval; None when the policy does not record it.
    pub last_seen: Option<i64>,
    /// What the login said of where it came from, as far as the policy
    /// keeps it.
    pub attributes: SessionAttributes,
}

/// Which page of a user's tokens to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[serde(default, deny_unknown_fields)]
pub struct PageRequest {
    /// The `next_cursor` of the page before; None for the first page.
    pub cursor: Option<String>,
    /// The most tokens on the page; 0 for all of them from the cursor on.
    pub limit: u32,
}

/// One page of a user's live tokens, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenPage {
    /// The tokens, newest first (the default policy: latest expiry first).
    pub tokens: Vec<TokenEntry>,
    /// The cursor of the next page; None on the last.
    pub next_cursor: Option<String>,
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

/// A session's id in events and listings: the first 16 lowercase hex
/// digits of the SHA-256 of `name`, the name list-user-token gives the
/// session (for the default policy, its token). It names the session
/// without revealing a token.
pub fn session_id(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A session event, as a policy recorded it in the atomic step of its
/// change ([`crate::SessionManager::read_events`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionEvent {
    /// Its id in the stream, `{ms}-{seq}`; later events have larger ids.
    pub id: String,
    /// When it was recorded, as unix milliseconds (from its id).
    pub at: u64,
    /// `login`, `refresh`, `revoke`, `revoke-all`, `evict` or `reject`.
    pub event: String,
    /// The user id.
    pub user: String,
    /// The session's id ([`session_id`]); absent for revoke-all and reject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The login's device label, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Free text: the limit a rejected login met, the bound that evicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Any other field the policy wrote.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub other: BTreeMap<String, String>,
}

impl From<crate::store::StoredEvent> for SessionEvent {
    fn from(stored: crate::store::StoredEvent) -> Self {
        let mut event = Self {
            id: stored.id.to_string(),
            at: stored.id.ms,
            event: String::new(),
            user: String::new(),
            session: None,
            device: None,
            detail: None,
            other: BTreeMap::new(),
        };
        for (field, value) in stored.fields {
            match field.as_str() {
                "event" => event.event = value,
                "user" => event.user = value,
                "session" => event.session = Some(value),
                "device" => event.device = Some(value),
                "detail" => event.detail = Some(value),
                _ => {
                    event.other.insert(field, value);
                }
            }
        }
        event
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_within_their_bounds_pass_and_the_ip_is_canonical() {
        let attributes = SessionAttributes {
            device: Some("laptop".into()),
            user_agent: Some("Mozilla/5.0".into()),
            ip: Some(" ::ffff:192.0.2.1 ".into()),
            labels: BTreeMap::from([("team.a".into(), "blue".into())]),
        }
        .check()
        .unwrap();
        assert_eq!(attributes.ip.as_deref(), Some("192.0.2.1"));
        assert!(SessionAttributes::default().check().unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_field_and_never_the_value() {
        let secret = "x".repeat(MAX_USER_AGENT_CHARS + 1);
        let cases = [
            SessionAttributes {
                user_agent: Some(secret.clone()),
                ..Default::default()
            },
            SessionAttributes {
                device: Some(String::new()),
                ..Default::default()
            },
            SessionAttributes {
                ip: Some(secret.clone()),
                ..Default::default()
            },
            SessionAttributes {
                labels: BTreeMap::from([("bad name".into(), "v".into())]),
                ..Default::default()
            },
            SessionAttributes {
                labels: (0..=MAX_LABELS)
                    .map(|n| (n.to_string(), String::new()))
                    .collect(),
                ..Default::default()
            },
            SessionAttributes {
                device: Some("a\nb".into()),
                ..Default::default()
            },
        ];
        for attributes in cases {
            let error = attributes.check().unwrap_err();
            assert!(!error.contains("xxx"), "{error}");
        }
    }
}
