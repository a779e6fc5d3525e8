//! The hardened layout: key names, token format, settings and argument
//! checks. Pure functions only, so that they are unit-tested natively.
//!
//! Every key of user `u` holds the hash tag `{u}` (with `%`, `{` and `}`
//! escaped), so all of a user's keys share one Redis Cluster slot:
//!
//! | key | value | TTL |
//! |---|---|---|
//! | `{prefix}:{u}:t:{sha256(secret)}` | `{epoch} {created_ns} {deadline}` | idle timeout, or the lifetime |
//! | `{prefix}:{u}:idx` (hash) | `{sha256}` → `{created_ns} {deadline} {epoch}`; `epoch` → the user's epoch | ≥ its longest token |
//! | `{prefix}:{u}:user` | `{"id":…,"detail":…}` | the user-info TTL |

use std::collections::HashMap;

use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// The longest user id accepted, in bytes (as the default policy).
pub const MAX_USER_ID_BYTES: usize = 1024;
/// The longest TTL accepted: ten years.
pub const MAX_TTL_SECONDS: i64 = 10 * 365 * 24 * 3600;
/// Hex digits in a token's secret (256 bits).
pub const SECRET_HEX: usize = 64;
/// The longest token accepted.
pub const MAX_TOKEN_BYTES: usize = MAX_USER_ID_BYTES + 1 + SECRET_HEX;
/// The index field that holds the user's epoch; no SHA-256 looks like it.
pub const EPOCH_FIELD: &str = "epoch";

/// Why an argument was rejected; becomes `error::invalid-argument`.
pub type Invalid = String;

/// The settings this policy reads through `wasi:config/store`: name,
/// default, description.
pub const CONFIG_KEYS: [(&str, &str, &str); 3] = [
    (
        "key_prefix",
        "dsession",
        "prefix of every key; must not be empty or hold '{', '}' or white space",
    ),
    (
        "idle_timeout_seconds",
        "1800",
        "a token unused this long expires; each check slides it, never past the token's \
         lifetime; 0 turns the idle timeout off",
    ),
    (
        "max_sessions",
        "0",
        "live tokens per user; a login beyond it revokes the oldest in the same atomic step; \
         0 means no limit, and single mode means 1",
    ),
];

/// The policy's settings after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    prefix: String,
    /// Seconds a token may go unused; None when off.
    pub idle_timeout: Option<i64>,
    /// Live tokens per user; None when unlimited.
    pub max_sessions: Option<usize>,
    /// Lifetime used when a call passes 0.
    pub default_ttl: i64,
}

impl Config {
    /// Validates `[policy.config]` (every key named in [`CONFIG_KEYS`],
    /// none other) and the host's settings.
    pub fn new(
        pairs: &[(String, String)],
        default_ttl: i64,
        single_mode: bool,
    ) -> Result<Self, Invalid> {
        if let Some((unknown, _)) = pairs
            .iter()
            .find(|(key, _)| !CONFIG_KEYS.iter().any(|(name, _, _)| name == key))
        {
            let known: Vec<&str> = CONFIG_KEYS.iter().map(|(name, _, _)| *name).collect();
            return Err(format!(
                "unknown policy config key {unknown:?}; this policy reads {}",
                known.join(", ")
            ));
        }
        let value = |name: &str| {
            pairs
                .iter()
                .rev()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.trim())
                .or_else(|| {
                    CONFIG_KEYS
                        .iter()
                        .find(|(key, _, _)| *key == name)
                        .map(|(_, default, _)| *default)
                })
                .unwrap_or_default()
        };
        let number = |name: &str, max: i64| -> Result<i64, Invalid> {
            let text = value(name);
            text.parse::<i64>()
                .ok()
                .filter(|n| (0..=max).contains(n))
                .ok_or_else(|| {
                    format!(
                        "policy config {name} must be a whole number from 0 to {max}, not {text:?}"
                    )
                })
        };
        let prefix = value("key_prefix");
        if prefix.is_empty() || prefix.contains(['{', '}']) || prefix.contains(char::is_whitespace)
        {
            return Err(format!(
                "policy config key_prefix must be non-empty without '{{', '}}' or white space, not {prefix:?}"
            ));
        }
        let idle = number("idle_timeout_seconds", MAX_TTL_SECONDS)?;
        let max = number("max_sessions", 1_000_000)?;
        if !(1..=MAX_TTL_SECONDS).contains(&default_ttl) {
            return Err(format!(
                "default expire must be between 1 and {MAX_TTL_SECONDS} seconds, not {default_ttl}"
            ));
        }
        let max_sessions = if single_mode {
            Some(1)
        } else {
            usize::try_from(max).ok().filter(|max| *max > 0)
        };
        Ok(Self {
            prefix: prefix.to_owned(),
            idle_timeout: (idle > 0).then_some(idle),
            max_sessions,
            default_ttl,
        })
    }

    /// A requested TTL: 0 means the default; negative or past ten years is
    /// rejected.
    pub fn ttl(&self, requested: i64) -> Result<i64, Invalid> {
        match requested {
            0 => Ok(self.default_ttl),
            1..=MAX_TTL_SECONDS => Ok(requested),
            _ if requested < 0 => Err(format!("ttl must not be negative, got {requested}")),
            _ => Err(format!(
                "ttl must be at most {MAX_TTL_SECONDS} seconds, got {requested}"
            )),
        }
    }

    /// How long a token key lives after a use: the idle timeout, but never
    /// past the token's deadline (`left` seconds away).
    pub fn key_ttl(&self, left: i64) -> i64 {
        self.idle_timeout.map_or(left, |idle| idle.min(left)).max(1)
    }

    fn user_part(&self, user_id: &str) -> String {
        format!("{}:{{{}}}", self.prefix, escape(user_id))
    }

    /// The key of the token whose secret hashes to `digest`.
    pub fn token_key(&self, user_id: &str, digest: &str) -> String {
        format!("{}:t:{digest}", self.user_part(user_id))
    }

    /// The user's index: digest → `{created_ns} {deadline} {epoch}`, plus
    /// the user's current epoch.
    pub fn index_key(&self, user_id: &str) -> String {
        format!("{}:idx", self.user_part(user_id))
    }

    /// The user-info cache entry.
    pub fn user_key(&self, user_id: &str) -> String {
        format!("{}:user", self.user_part(user_id))
    }
}

/// The user id as it sits in a hash tag: `%`, `{` and `}` percent-encoded,
/// so that the tag is the whole id and never empty.
pub fn escape(user_id: &str) -> String {
    let mut escaped = String::with_capacity(user_id.len());
    for c in user_id.chars() {
        match c {
            '%' => escaped.push_str("%25"),
            '{' => escaped.push_str("%7B"),
            '}' => escaped.push_str("%7D"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a token's secret, in hex: all the store ever sees of it.
pub fn digest(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Rejects a user id that is empty, longer than [`MAX_USER_ID_BYTES`],
/// holds a control character, or starts or ends with white space.
pub fn check_user_id(user_id: &str) -> Result<(), Invalid> {
    if user_id.is_empty() {
        return Err("user id must not be empty".into());
    }
    if user_id.len() > MAX_USER_ID_BYTES {
        return Err(format!(
            "user id must be at most {MAX_USER_ID_BYTES} bytes, got {}",
            user_id.len()
        ));
    }
    if let Some(c) = user_id.chars().find(|c| c.is_control()) {
        return Err(format!(
            "user id must not contain control characters, found {c:?}"
        ));
    }
    if user_id.starts_with(char::is_whitespace) || user_id.ends_with(char::is_whitespace) {
        return Err("user id must not start or end with white space".into());
    }
    Ok(())
}

/// `(user id, secret)` of a well-formed token `{user_id}_{64 hex}`; None
/// for a malformed one (a default-policy token among them); an error for
/// an empty token or one past [`MAX_TOKEN_BYTES`].
pub fn split_token(token: &str) -> Result<Option<(&str, &str)>, Invalid> {
    if token.is_empty() {
        return Err("token must not be empty".into());
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(format!(
            "token must be at most {MAX_TOKEN_BYTES} bytes, got {}",
            token.len()
        ));
    }
    let Some((user_id, secret)) = token.rsplit_once('_') else {
        return Ok(None);
    };
    let secret_ok = secret.len() == SECRET_HEX
        && secret
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    Ok((secret_ok && check_user_id(user_id).is_ok()).then_some((user_id, secret)))
}

/// A token's stored record: the epoch it was issued in, when, and its
/// deadline (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The user's epoch when the token was issued.
    pub epoch: String,
    /// Issue time, unix nanoseconds: orders a user's sessions.
    pub created_ns: i64,
    /// The absolute deadline, unix seconds.
    pub deadline: i64,
}

impl Record {
    /// The token key's value.
    pub fn encode(&self) -> String {
        format!("{} {} {}", self.epoch, self.created_ns, self.deadline)
    }

    /// Reads a token key's value.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(' ');
        let (Some(epoch), Some(created), Some(deadline), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some(Self {
            epoch: epoch.to_owned(),
            created_ns: created.parse().ok()?,
            deadline: deadline.parse().ok()?,
        })
    }
}

/// An index entry's value: the token's record in another order,
/// `{created_ns} {deadline} {epoch}`.
pub fn index_entry(record: &Record) -> String {
    format!("{} {} {}", record.created_ns, record.deadline, record.epoch)
}

/// Reads an index entry's value.
pub fn parse_index_entry(text: &str) -> Option<Record> {
    let mut parts = text.split(' ');
    let (Some(created), Some(deadline), Some(epoch), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    Some(Record {
        epoch: epoch.to_owned(),
        created_ns: created.parse().ok()?,
        deadline: deadline.parse().ok()?,
    })
}

/// gosession's user-info JSON, `{"id":…,"detail":…}`.
pub fn user_info_json(user_id: &str, detail: Option<&serde_json::Value>) -> String {
    let detail = detail.map_or_else(|| "null".to_owned(), serde_json::Value::to_string);
    format!(
        r#"{{"id":{},"detail":{detail}}}"#,
        serde_json::Value::from(user_id)
    )
}

/// The detail in a user-info cache entry, as the JSON text it holds; None
/// when it is null or absent. The detail is only sliced out, not parsed
/// into values: the host parses it, once, on the hot path of a cached user.
pub fn user_info_detail(json: &str) -> Result<Option<String>, String> {
    let fields: HashMap<String, &RawValue> =
        serde_json::from_str(json).map_err(|e| format!("user info is not a JSON object: {e}"))?;
    Ok(fields
        .get("detail")
        .map(|detail| detail.get())
        .filter(|detail| *detail != "null")
        .map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_key_of_a_user_holds_the_same_hash_tag() {
        let config = Config::new(&[], 60, false).unwrap();
        for user in ["alice", "a}b", "{x}", "%7B"] {
            let tag = format!("{{{}}}", escape(user));
            for key in [
                config.token_key(user, "ab"),
                config.index_key(user),
                config.user_key(user),
            ] {
                let open = key.find('{').unwrap();
                let close = open + key[open..].find('}').unwrap();
                assert_eq!(&key[open..=close], tag, "{key}");
            }
        }
        assert_ne!(escape("{x}"), escape("%7Bx%7D"));
    }

    #[test]
    fn settings_default_and_bad_ones_are_rejected() {
        let config = Config::new(&[], 60, false).unwrap();
        assert_eq!(config.idle_timeout, Some(1800));
        assert_eq!(config.max_sessions, None);
        assert_eq!(config.index_key("a"), "dsession:{a}:idx");
        let single = Config::new(&pairs(&[("max_sessions", "5")]), 60, true).unwrap();
        assert_eq!(single.max_sessions, Some(1));
        let off = Config::new(&pairs(&[("idle_timeout_seconds", "0")]), 60, false).unwrap();
        assert_eq!(off.idle_timeout, None);
        assert_eq!(off.key_ttl(50), 50);
        assert_eq!(config.key_ttl(50), 50);
        assert_eq!(config.key_ttl(5000), 1800);
        for bad in [
            ("max_sessions", "many"),
            ("max_sessions", "-1"),
            ("idle_timeout_seconds", ""),
            ("key_prefix", "a{b"),
            ("key_prefix", ""),
            ("colour", "blue"),
        ] {
            assert!(Config::new(&pairs(&[bad]), 60, false).is_err(), "{bad:?}");
        }
        assert!(Config::new(&[], 0, false).is_err());
    }

    #[test]
    fn tokens_split_into_user_and_a_64_hex_secret() {
        let secret = "ab".repeat(32);
        let token = format!("a_b_{secret}");
        assert_eq!(split_token(&token), Ok(Some(("a_b", secret.as_str()))));
        let default_policy_token = format!("alice_{}", "ab".repeat(16));
        assert_eq!(split_token(&default_policy_token), Ok(None));
        assert_eq!(split_token(&format!("a_{}", "AB".repeat(32))), Ok(None));
        assert!(split_token("").is_err());
        assert!(split_token(&"x".repeat(MAX_TOKEN_BYTES + 1)).is_err());
    }

    #[test]
    fn the_digest_is_sha256_and_records_round_trip() {
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let record = Record {
            epoch: "e".into(),
            created_ns: 5,
            deadline: 9,
        };
        assert_eq!(
            parse_index_entry(&index_entry(&record)),
            Some(record.clone())
        );
        assert_eq!(Record::decode(&record.encode()), Some(record));
        assert_eq!(Record::decode("e 5"), None);
    }

    #[test]
    fn the_cached_detail_is_sliced_out_as_it_was_written() {
        let detail = serde_json::json!({"name": "Ann", "roles": ["a", "b"]});
        let json = user_info_json("a", Some(&detail));
        assert_eq!(user_info_detail(&json), Ok(Some(detail.to_string())));
        assert_eq!(user_info_detail(r#"{"id":"a","detail":null}"#), Ok(None));
        assert!(user_info_detail("[1]").is_err());
    }
}
