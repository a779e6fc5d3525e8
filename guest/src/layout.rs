//! gosession's Redis layout: key names, token format and argument checks.
//!
//! Pure functions only, so that they are unit-tested natively.

use std::collections::HashMap;

use serde_json::value::RawValue;

/// The longest user id accepted by every operation, in bytes: room for
/// federated ids and long e-mail addresses.
pub const MAX_USER_ID_BYTES: usize = 1024;
/// The longest TTL accepted: ten years, far past any session and far from
/// overflowing unix-second arithmetic.
pub const MAX_TTL_SECONDS: i64 = 10 * 365 * 24 * 3600;
/// Hex digits in a token's random part (128 bits).
pub const TOKEN_RANDOM_HEX: usize = 32;

/// Why an argument was rejected; becomes `error::invalid-argument`.
pub type Invalid = String;

/// Settings after validation, with gosession's prefix normalisation applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    token_prefix: String,
    user_prefix: String,
    /// Lifetime used when a call passes 0.
    pub default_ttl: i64,
    /// The shortest lifetime of a user's token index.
    pub index_ttl: i64,
}

impl Layout {
    /// Validates settings; `_` in a prefix becomes `-` as in gosession.
    pub fn new(
        token_prefix: &str,
        user_prefix: &str,
        default_ttl: i64,
        index_ttl: i64,
    ) -> Result<Self, Invalid> {
        for (name, prefix) in [
            ("token key prefix", token_prefix),
            ("user key prefix", user_prefix),
        ] {
            if prefix.is_empty() {
                return Err(format!("{name} must not be empty"));
            }
        }
        for (name, ttl) in [("default expire", default_ttl), ("index expire", index_ttl)] {
            if !(1..=MAX_TTL_SECONDS).contains(&ttl) {
                return Err(format!(
                    "{name} must be between 1 and {MAX_TTL_SECONDS} seconds, not {ttl}"
                ));
            }
        }
        Ok(Self {
            token_prefix: token_prefix.replace('_', "-"),
            user_prefix: user_prefix.replace('_', "-"),
            default_ttl,
            index_ttl,
        })
    }

    /// `{token_prefix}_{token}`: holds the user key, lives as long as the token.
    pub fn token_key(&self, token: &str) -> String {
        format!("{}_{}", self.token_prefix, token)
    }

    /// `{token_prefix}_{user_id}`: hash of the user's tokens to their expiry.
    pub fn index_key(&self, user_id: &str) -> String {
        format!("{}_{}", self.token_prefix, user_id)
    }

    /// `{user_prefix}_{user_id}`: the user-info cache entry.
    pub fn user_key(&self, user_id: &str) -> String {
        format!("{}_{}", self.user_prefix, user_id)
    }

    /// A requested TTL in seconds: 0 means the default, negative or over ten
    /// years is rejected.
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

    /// How long the index lives after a token of `ttl` seconds is written.
    pub fn index_ttl_for(&self, ttl: i64) -> i64 {
        self.index_ttl.max(ttl)
    }
}

/// Whether `s` ends in `_` followed by a token's random part.
fn ends_like_token(s: &str) -> bool {
    let Some(split) = s.len().checked_sub(TOKEN_RANDOM_HEX + 1) else {
        return false;
    };
    let bytes = s.as_bytes();
    bytes[split] == b'_' && bytes[split + 1..].iter().all(u8::is_ascii_hexdigit)
}

/// The longest token accepted: a user id at its bound, `_`, the random part.
pub const MAX_TOKEN_BYTES: usize = MAX_USER_ID_BYTES + 1 + TOKEN_RANDOM_HEX;

/// Rejects a user id that is empty, longer than [`MAX_USER_ID_BYTES`],
/// holds a control character (CR, LF, NUL…) or starts or ends with white
/// space (a header carrying its token could not keep it), or ends in `_`
/// and 32 hex digits (its index key would be another user's token key).
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
    if ends_like_token(user_id) {
        return Err(format!(
            "user id must not end in '_' and {TOKEN_RANDOM_HEX} hex digits: its keys would collide with a token's"
        ));
    }
    Ok(())
}

/// The user id of a well-formed token: the part before its last `_`, the
/// part after being 32 lowercase hex digits. None for a malformed token; an
/// error for one longer than [`MAX_TOKEN_BYTES`], which no operation could
/// have issued and none would answer for.
pub fn token_user(token: &str) -> Result<Option<&str>, Invalid> {
    if token.is_empty() {
        return Err("token must not be empty".into());
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(format!(
            "token must be at most {MAX_TOKEN_BYTES} bytes (a user id of at most {MAX_USER_ID_BYTES}), got {}",
            token.len()
        ));
    }
    let Some((user_id, random)) = token.rsplit_once('_') else {
        return Ok(None);
    };
    let random_ok = random.len() == TOKEN_RANDOM_HEX
        && random
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    Ok((random_ok && check_user_id(user_id).is_ok()).then_some(user_id))
}

/// A new token for `user_id` from 16 random bytes.
pub fn new_token(user_id: &str, random: &[u8; 16]) -> String {
    let mut token = String::with_capacity(user_id.len() + 1 + TOKEN_RANDOM_HEX);
    token.push_str(user_id);
    token.push('_');
    for byte in random {
        token.push_str(&format!("{byte:02x}"));
    }
    token
}

/// gosession's user-info JSON, `{"id":…,"detail":…}`, from detail JSON text.
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

    fn layout() -> Layout {
        Layout::new("gosession_token", "gosession-user", 604800, 2592000).unwrap()
    }

    #[test]
    fn keys_follow_gosession_with_underscores_in_prefixes_replaced() {
        let layout = layout();
        assert_eq!(layout.token_key("a_b_00"), "gosession-token_a_b_00");
        assert_eq!(layout.index_key("a_b"), "gosession-token_a_b");
        assert_eq!(layout.user_key("a_b"), "gosession-user_a_b");
    }

    #[test]
    fn ttl_zero_is_the_default_and_negative_is_rejected() {
        let layout = layout();
        assert_eq!(layout.ttl(0), Ok(604800));
        assert_eq!(layout.ttl(5), Ok(5));
        assert!(layout.ttl(-1).is_err());
        assert!(layout.ttl(MAX_TTL_SECONDS + 1).is_err());
        assert_eq!(layout.index_ttl_for(10), 2592000);
        assert_eq!(layout.index_ttl_for(MAX_TTL_SECONDS), MAX_TTL_SECONDS);
    }

    #[test]
    fn bad_settings_are_rejected() {
        assert!(Layout::new("", "u", 1, 1).is_err());
        assert!(Layout::new("t", "", 1, 1).is_err());
        assert!(Layout::new("t", "u", 0, 1).is_err());
        assert!(Layout::new("t", "u", 1, -1).is_err());
    }

    #[test]
    fn user_ids_that_are_empty_long_or_token_like_are_rejected() {
        assert!(check_user_id("").is_err());
        assert!(check_user_id(&"x".repeat(MAX_USER_ID_BYTES + 1)).is_err());
        assert!(check_user_id(&"x".repeat(MAX_USER_ID_BYTES)).is_ok());
        assert!(check_user_id(&"é".repeat(300)).is_ok());
        assert!(check_user_id("alice_0123456789abcdef0123456789abcdef").is_err());
        assert!(check_user_id("alice_0123456789ABCDEF0123456789ABCDEF").is_err());
        assert!(check_user_id("alice_bob").is_ok());
        assert!(check_user_id("0123456789abcdef0123456789abcdef").is_ok());
    }

    #[test]
    fn user_ids_a_header_cannot_carry_are_rejected() {
        for bad in [
            "a\rb", "a\nb", "a\0b", " alice", "alice ", "alice\t", "\u{85}x",
        ] {
            assert!(check_user_id(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check_user_id("józef kowalski").is_ok());
    }

    #[test]
    fn token_user_is_the_part_before_the_last_underscore() {
        let token = new_token("a_b", &[0xab; 16]);
        assert_eq!(token, format!("a_b_{}", "ab".repeat(16)));
        assert_eq!(token_user(&token), Ok(Some("a_b")));
        assert_eq!(token_user("nounderscore"), Ok(None));
        assert_eq!(token_user(&format!("_{}", "ab".repeat(16))), Ok(None));
        assert_eq!(token_user(&format!("a_{}", "AB".repeat(16))), Ok(None));
        assert_eq!(token_user("a_abc"), Ok(None));
        assert!(token_user("").is_err());
    }

    #[test]
    fn tokens_of_user_ids_up_to_the_bound_are_read_and_longer_ones_rejected() {
        let long = "x".repeat(MAX_USER_ID_BYTES);
        let token = new_token(&long, &[1; 16]);
        assert_eq!(token_user(&token), Ok(Some(long.as_str())));
        assert!(token_user(&format!("x{token}")).is_err());
    }

    #[test]
    fn user_info_json_round_trips_the_detail() {
        let detail = serde_json::json!({"name": "Ann", "age": 3});
        let json = user_info_json("a", Some(&detail));
        assert_eq!(json, r#"{"id":"a","detail":{"age":3,"name":"Ann"}}"#);
        assert_eq!(user_info_detail(&json), Ok(Some(detail.to_string())));
        assert_eq!(user_info_detail(r#"{"id":"a","detail":null}"#), Ok(None));
        assert!(user_info_detail("[1]").is_err());
    }
}
