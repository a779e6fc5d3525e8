//! TTL arguments and settings, in seconds.

use crate::Error;

/// The longest TTL accepted: ten years, far past any session and far from
/// overflowing unix-second arithmetic.
pub const MAX_TTL_SECONDS: i64 = 10 * 365 * 24 * 3600;

/// A call's TTL argument: 0 means `default`; negative or past
/// [`MAX_TTL_SECONDS`] is an invalid argument.
pub fn resolve(requested: i64, default: i64) -> Result<i64, Error> {
    match requested {
        0 => Ok(default),
        1..=MAX_TTL_SECONDS => Ok(requested),
        _ if requested < 0 => Err(Error::InvalidArgument(format!(
            "ttl must not be negative, got {requested}"
        ))),
        _ => Err(Error::InvalidArgument(format!(
            "ttl must be at most {MAX_TTL_SECONDS} seconds, got {requested}"
        ))),
    }
}

/// Checks a lifetime setting called `name`: from 1 second to
/// [`MAX_TTL_SECONDS`].
pub fn check_setting(name: &str, seconds: i64) -> Result<(), Error> {
    if (1..=MAX_TTL_SECONDS).contains(&seconds) {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "{name} must be between 1 and {MAX_TTL_SECONDS} seconds, not {seconds}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_the_default_and_negative_or_past_ten_years_is_rejected() {
        assert_eq!(resolve(0, 604800), Ok(604800));
        assert_eq!(resolve(5, 604800), Ok(5));
        assert!(resolve(-1, 604800).is_err());
        assert!(resolve(MAX_TTL_SECONDS + 1, 604800).is_err());
        assert!(check_setting("default expire", 0).is_err());
        assert!(check_setting("default expire", MAX_TTL_SECONDS).is_ok());
    }
}
