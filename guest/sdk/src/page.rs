//! Pages of a user's tokens: `list-user-token` lists a page from a cursor.
//!
//! A policy reads the whole index (one `HGETALL`), orders its sessions
//! newest first by a key that names each session once, and hands them
//! here: the page is the sessions after the cursor's key, so that a page
//! stays correct when sessions come and go between two requests.

use std::cmp::Reverse;

use crate::token::is_hex;
use crate::{Error, PageRequest};

/// A session's place in the list: what a cursor names. Encoded as text
/// for the cursor, and read back from it.
pub trait Position: Ord + Sized {
    /// The cursor text of this position.
    fn encode(&self) -> String;

    /// The position a cursor names; None when the text is not one.
    fn decode(text: &str) -> Option<Self>;
}

/// The position the request's cursor names; None for the first page.
pub fn start<P: Position>(page: &PageRequest) -> Result<Option<P>, Error> {
    page.cursor
        .as_deref()
        .map(|cursor| {
            P::decode(cursor).ok_or_else(|| {
                Error::InvalidArgument(
                    "cursor is not of this policy's form: pass a next-cursor back as it came"
                        .into(),
                )
            })
        })
        .transpose()
}

/// The page of `items`, which are sorted by `position`, that `page`
/// asks for: the items after its cursor, at most its limit (0: all of
/// them); and whether items follow the page.
pub fn cut<T, P: Position>(
    items: Vec<T>,
    position: impl Fn(&T) -> P,
    page: &PageRequest,
) -> Result<(Vec<T>, bool), Error> {
    let start = start::<P>(page)?;
    let mut after: Vec<T> = items
        .into_iter()
        .filter(|item| start.as_ref().is_none_or(|start| position(item) > *start))
        .collect();
    let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
    if limit == 0 || after.len() <= limit {
        return Ok((after, false));
    }
    after.truncate(limit);
    Ok((after, true))
}

/// The place most policies list by: a time, latest first, then lowercase
/// hex digits (a digest, or [`hash`] of a token) for sessions that tie on
/// it. Its cursor is `{time} {hex}`; any whole number and hex digits name
/// a place, so that a cursor of that form is never refused.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Latest {
    time: Reverse<i64>,
    hex: String,
}

impl Latest {
    /// The place of a session at `time` whose tie-breaker is `hex`.
    pub fn new(time: i64, hex: impl Into<String>) -> Self {
        Self {
            time: Reverse(time),
            hex: hex.into(),
        }
    }

    /// The time it was made with.
    pub fn time(&self) -> i64 {
        self.time.0
    }
}

impl Position for Latest {
    fn encode(&self) -> String {
        format!("{} {}", self.time.0, self.hex)
    }

    fn decode(text: &str) -> Option<Self> {
        let (time, hex) = text.split_once(' ')?;
        let time = time.parse().ok()?;
        is_hex(hex).then(|| Self::new(time, hex))
    }
}

/// A hash of `text` as 16 hex digits (FNV-1a, 64 bits): orders sessions
/// that tie on time by something other than a token, which a cursor, sent
/// in URLs, must never hold.
pub fn hash(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// The cursor of the page after one that ended at `last`, when more
/// follow.
pub fn next<P: Position>(last: Option<P>, more: bool) -> Option<String> {
    last.filter(|_| more).map(|last| last.encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(PartialEq, Eq, PartialOrd, Ord, Debug)]
    struct At(u32);

    impl Position for At {
        fn encode(&self) -> String {
            self.0.to_string()
        }
        fn decode(text: &str) -> Option<Self> {
            text.parse().ok().map(At)
        }
    }

    fn request(cursor: Option<&str>, limit: u32) -> PageRequest {
        PageRequest {
            cursor: cursor.map(str::to_owned),
            limit,
        }
    }

    #[test]
    fn pages_follow_each_other_without_repeats() {
        let items: Vec<u32> = (1..=5).collect();
        let (first, more) = cut(items.clone(), |n| At(*n), &request(None, 2)).unwrap();
        assert_eq!((first.as_slice(), more), (&[1, 2][..], true));
        let cursor = next(first.last().map(|n| At(*n)), more).unwrap();
        let (second, more) = cut(items.clone(), |n| At(*n), &request(Some(&cursor), 2)).unwrap();
        assert_eq!((second.as_slice(), more), (&[3, 4][..], true));
        let (last, more) = cut(items, |n| At(*n), &request(Some("4"), 2)).unwrap();
        assert_eq!((last.as_slice(), more), (&[5][..], false));
        assert_eq!(next(last.last().map(|n| At(*n)), more), None);
    }

    #[test]
    fn a_cursor_whose_item_went_still_starts_after_it() {
        let (page, _) = cut(vec![1, 2, 4, 5], |n| At(*n), &request(Some("3"), 0)).unwrap();
        assert_eq!(page, [4, 5]);
    }

    #[test]
    fn latest_lists_the_latest_first_and_reads_back_any_cursor_of_its_form() {
        let at = Latest::new(1_700_000_000, hash("alice_00"));
        assert!(Latest::new(1_700_000_001, "ff") < at);
        assert_eq!(Latest::decode(&at.encode()), Some(at.clone()));
        assert_eq!(at.time(), 1_700_000_000);
        assert!(Latest::decode(&format!("-5 {}", "f".repeat(64))).is_some());
        for foreign in ["alice_00", "1 ", "1 AB", "x 00", "1"] {
            assert_eq!(Latest::decode(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn the_hash_is_fnv1a_in_sixteen_hex_digits() {
        assert_eq!(
            hash(&format!("alice_{}", "0".repeat(32))),
            "3b638201f997dc88"
        );
        assert!(is_hex(&hash("")) && !is_hex("") && !is_hex("AB"));
    }

    #[test]
    fn a_foreign_cursor_is_an_invalid_argument() {
        let refused = cut(vec![1], |n| At(*n), &request(Some("x"), 1));
        assert!(matches!(refused, Err(Error::InvalidArgument(_))));
    }
}
