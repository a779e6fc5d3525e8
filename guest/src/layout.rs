//! gosession's Redis layout: key names, the token format and the checks
//! that keep one user's keys from colliding with another's.
//!
//! Pure functions only, so that they are unit-tested natively.

use dsession_policy_sdk::user_id;
use dsession_policy_sdk::{Error, random, token, ttl};

/// Hex digits in a token's random part (128 bits).
pub const TOKEN_RANDOM_HEX: usize = 32;

/// What a token's metadata key adds to its token key.
const META_SUFFIX: &str = "00000000000000000000000000000000";

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
    ) -> Result<Self, Error> {
        for (name, prefix) in [
            ("token key prefix", token_prefix),
            ("user key prefix", user_prefix),
        ] {
            if prefix.is_empty() {
                return Err(Error::InvalidArgument(format!("{name} must not be empty")));
            }
        }
        ttl::check_setting("default expire", default_ttl)?;
        ttl::check_setting("index expire", index_ttl)?;
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

    /// `{token_prefix}_{token}_{32 zeros}`: when the token was issued and
    /// the login's attributes, `{created_at} {json}`; lives as long as the
    /// token. No key of gosession's layout can be named so: as a token key
    /// its user id, and as an index its user id, would end in `_` and 32 hex
    /// digits, which [`check_user_id`] rejects. It also matches the ACL
    /// pattern `{token_prefix}_*` that token keys need. gosession reads no
    /// such key, so it never sees one.
    pub fn meta_key(&self, token: &str) -> String {
        format!("{}_{}_{}", self.token_prefix, token, META_SUFFIX)
    }

    /// `{user_prefix}_{user_id}`: the user-info cache entry.
    pub fn user_key(&self, user_id: &str) -> String {
        format!("{}_{}", self.user_prefix, user_id)
    }

    /// How long the index lives after a token of `ttl` seconds is written.
    pub fn index_ttl_for(&self, ttl: i64) -> i64 {
        self.index_ttl.max(ttl)
    }
}

/// The SDK's checks, and one more: a user id must not end in `_` and 32
/// hex digits, or its index key would be another user's token key.
pub fn check_user_id(id: &str) -> Result<(), Error> {
    user_id::check(id)?;
    user_id::reject_token_suffix(id, TOKEN_RANDOM_HEX)
}

/// The user id of a well-formed token: the part before its last `_`, the
/// part after being 32 lowercase hex digits. None for a malformed token; an
/// error for an empty one or one longer than a user id at its bound and a
/// random part ([`token::max_bytes`]), which no operation could have
/// issued and none would answer for.
pub fn token_user(token: &str) -> Result<Option<&str>, Error> {
    Ok(token::parse(token, TOKEN_RANDOM_HEX)?
        .map(|(user_id, _)| user_id)
        .filter(|user_id| check_user_id(user_id).is_ok()))
}

/// A new token for `user_id` from 16 random bytes.
pub fn new_token(user_id: &str, random: &[u8; 16]) -> String {
    format!("{user_id}_{}", random::to_hex(random))
}

#[cfg(test)]
mod tests {
    use dsession_policy_sdk::user_id::MAX_USER_ID_BYTES;

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
        assert_eq!(
            layout.meta_key("a_b_00"),
            format!("gosession-token_a_b_00_{}", "0".repeat(32))
        );
        assert_eq!(layout.index_ttl_for(10), 2592000);
        assert_eq!(
            layout.index_ttl_for(ttl::MAX_TTL_SECONDS),
            ttl::MAX_TTL_SECONDS
        );
    }

    #[test]
    fn bad_settings_are_rejected() {
        assert!(Layout::new("", "u", 1, 1).is_err());
        assert!(Layout::new("t", "", 1, 1).is_err());
        assert!(Layout::new("t", "u", 0, 1).is_err());
        assert!(Layout::new("t", "u", 1, -1).is_err());
    }

    #[test]
    fn user_ids_that_end_like_a_token_are_rejected() {
        assert!(check_user_id("alice_0123456789abcdef0123456789abcdef").is_err());
        assert!(check_user_id("alice_bob").is_ok());
        assert!(check_user_id("").is_err());
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
}
