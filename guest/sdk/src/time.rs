//! The wall clock, in unix time.

use crate::bindings::wasi::clocks::wall_clock;

/// Now, in unix seconds.
pub fn now() -> i64 {
    i64::try_from(wall_clock::now().seconds).unwrap_or(i64::MAX)
}

/// Now, in unix nanoseconds: orders events within one second.
pub fn now_ns() -> i64 {
    let now = wall_clock::now();
    i64::try_from(now.seconds)
        .unwrap_or(i64::MAX / 1_000_000_000)
        .saturating_mul(1_000_000_000)
        .saturating_add(i64::from(now.nanoseconds))
}

/// `(seconds left, expiry in unix seconds)` from a `TTL` reply read at
/// `now`: `(-1, -1)` for a key without expiry, None for a missing key.
pub fn lifetime(ttl: i64, now: i64) -> Option<(i64, i64)> {
    match ttl {
        -1 => Some((-1, -1)),
        ttl if ttl >= 0 => Some((ttl, now + ttl)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_reply_reads_as_a_lifetime() {
        assert_eq!(lifetime(5, 100), Some((5, 105)));
        assert_eq!(lifetime(-1, 100), Some((-1, -1)));
        assert_eq!(lifetime(-2, 100), None);
    }
}
