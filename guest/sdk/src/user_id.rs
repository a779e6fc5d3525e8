//! User-id checks: what every policy accepts, and the rule for policies
//! whose keys would let a user id pose as a token.

use crate::Error;

/// The longest user id accepted, in bytes: room for federated ids and long
/// e-mail addresses.
pub const MAX_USER_ID_BYTES: usize = 1024;

/// Rejects a user id that is empty, longer than [`MAX_USER_ID_BYTES`],
/// holds a control character (CR, LF, NUL…) or starts or ends with white
/// space (a header carrying its token could not keep it).
pub fn check(user_id: &str) -> Result<(), Error> {
    let invalid = |why: String| Err(Error::InvalidArgument(why));
    if user_id.is_empty() {
        return invalid("user id must not be empty".into());
    }
    if user_id.len() > MAX_USER_ID_BYTES {
        return invalid(format!(
            "user id must be at most {MAX_USER_ID_BYTES} bytes, got {}",
            user_id.len()
        ));
    }
    if let Some(c) = user_id.chars().find(|c| c.is_control()) {
        return invalid(format!(
            "user id must not contain control characters, found {c:?}"
        ));
    }
    if user_id.starts_with(char::is_whitespace) || user_id.ends_with(char::is_whitespace) {
        return invalid("user id must not start or end with white space".into());
    }
    Ok(())
}

/// Rejects a user id that ends in `_` and `hex_digits` hex digits (either
/// case): in a layout that keys a user's index and a token the same way,
/// its keys would collide with another user's token.
pub fn reject_token_suffix(user_id: &str, hex_digits: usize) -> Result<(), Error> {
    let Some(split) = user_id.len().checked_sub(hex_digits + 1) else {
        return Ok(());
    };
    let bytes = user_id.as_bytes();
    if bytes[split] == b'_' && bytes[split + 1..].iter().all(u8::is_ascii_hexdigit) {
        return Err(Error::InvalidArgument(format!(
            "user id must not end in '_' and {hex_digits} hex digits: its keys would collide with a token's"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_that_are_empty_or_long_are_rejected() {
        assert!(check("").is_err());
        assert!(check(&"x".repeat(MAX_USER_ID_BYTES + 1)).is_err());
        assert!(check(&"x".repeat(MAX_USER_ID_BYTES)).is_ok());
        assert!(check(&"é".repeat(300)).is_ok());
    }

    #[test]
    fn user_ids_a_header_cannot_carry_are_rejected() {
        for bad in [
            "a\rb", "a\nb", "a\0b", " alice", "alice ", "alice\t", "\u{85}x",
        ] {
            assert!(check(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check("józef kowalski").is_ok());
    }

    #[test]
    fn user_ids_ending_like_a_token_are_rejected() {
        for bad in [
            "alice_0123456789abcdef0123456789abcdef",
            "alice_0123456789ABCDEF0123456789ABCDEF",
        ] {
            assert!(reject_token_suffix(bad, 32).is_err(), "{bad:?}");
        }
        for good in ["alice_bob", "0123456789abcdef0123456789abcdef", "a"] {
            assert!(reject_token_suffix(good, 32).is_ok(), "{good:?}");
        }
    }
}
