//! Tokens of the form `{user_id}_{secret}`, the secret lowercase hex.

use crate::Error;
use crate::user_id::MAX_USER_ID_BYTES;

/// The longest token with a secret of `secret_hex` digits: a user id at
/// its bound, `_`, the secret.
pub const fn max_bytes(secret_hex: usize) -> usize {
    MAX_USER_ID_BYTES + 1 + secret_hex
}

/// `(user id, secret)` of a token whose part after its last `_` is
/// `secret_hex` lowercase hex digits; Ok(None) for any other, which is
/// "not valid" rather than an error. An empty token, or one longer than
/// [`max_bytes`], which no policy could have issued, is an invalid
/// argument. The user id is not checked: a policy passes it through its
/// own check.
pub fn parse(token: &str, secret_hex: usize) -> Result<Option<(&str, &str)>, Error> {
    if token.is_empty() {
        return Err(Error::InvalidArgument("token must not be empty".into()));
    }
    let max = max_bytes(secret_hex);
    if token.len() > max {
        return Err(Error::InvalidArgument(format!(
            "token must be at most {max} bytes (a user id of at most {MAX_USER_ID_BYTES}), got {}",
            token.len()
        )));
    }
    Ok(split(token, secret_hex))
}

/// `(user id, secret)` of a token whose part after its last `_` is
/// `secret_hex` lowercase hex digits; None for any other.
pub fn split(token: &str, secret_hex: usize) -> Option<(&str, &str)> {
    let (user_id, secret) = token.rsplit_once('_')?;
    (secret.len() == secret_hex && is_hex(secret)).then_some((user_id, secret))
}

/// Whether `text` is one or more lowercase hex digits, as secrets,
/// SHA-256 digests and [`crate::page::hash`] write them.
pub fn is_hex(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_after_the_last_underscore_and_lowercase_hex() {
        let secret = "ab".repeat(16);
        let token = format!("a_b_{secret}");
        assert_eq!(split(&token, 32), Some(("a_b", secret.as_str())));
        assert_eq!(split(&token, 64), None);
        assert_eq!(split(&format!("a_{}", "AB".repeat(16)), 32), None);
        assert_eq!(split("nounderscore", 32), None);
        assert_eq!(split("a_abc", 3), Some(("a", "abc")));
    }

    #[test]
    fn empty_and_oversized_tokens_are_invalid_arguments() {
        assert!(parse("", 32).is_err());
        assert_eq!(parse("a_b", 32), Ok(None));
        let longest = format!("{}_{}", "x".repeat(MAX_USER_ID_BYTES), "0".repeat(32));
        assert_eq!(longest.len(), max_bytes(32));
        assert!(parse(&longest, 32).unwrap().is_some());
        let Err(Error::InvalidArgument(message)) = parse(&format!("x{longest}"), 32) else {
            panic!("an oversized token was read");
        };
        assert!(message.contains("1024"), "{message}");
    }
}
