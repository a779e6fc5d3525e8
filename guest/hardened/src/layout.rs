//! The hardened layout: key names, token format, settings and argument
//! checks. Pure functions only, so that they are unit-tested natively.
//!
//! Every key of user `u` holds the hash tag `{u}` (with `%`, `{` and `}`
//! escaped), so all of a user's keys share one Redis Cluster slot:
//!
//! | key | value | TTL |
//! |---|---|---|
//! | `{prefix}:{u}:t:{sha256(secret)}` | `{epoch} {created_ns} {deadline}` | idle timeout, or the lifetime; a check slides it at most once a touch interval |
//! | `{prefix}:{u}:idx` (hash) | `{sha256}` → `{created_ns} {deadline} {epoch}`; `epoch` → the user's epoch | ≥ its longest token; revoke-all deletes it |
//! | `{prefix}:{u}:user` | `{"id":…,"detail":…}` | the user-info TTL |
//!
//! A check reads a token key's `TTL` and slides it back to the idle
//! timeout ([`Config::touch`]) only when that adds `touch_interval_seconds`
//! or more. Idle expiry is then that precise: a token unused since a check
//! expires between the idle timeout minus the interval and the idle
//! timeout after it (give or take the half second `TTL` rounds by), since
//! the last slide was at most one interval before. The default interval, a tenth of the
//! idle timeout, keeps idle expiry within 10% of its setting and makes a
//! check a read alone but about once per interval per token: at the
//! default 1800 s, one write per token every 3 minutes instead of one per
//! check, so that at one check a second 99.4% of checks only read, and a
//! cache of reads can answer them.

use dsession_policy_sdk::ttl::MAX_TTL_SECONDS;
use dsession_policy_sdk::user_id;
use dsession_policy_sdk::{Error, random, token, ttl};
use sha2::{Digest, Sha256};

/// Hex digits in a token's secret (256 bits).
pub const SECRET_HEX: usize = 64;
/// The index field that holds the user's epoch; no SHA-256 looks like it.
pub const EPOCH_FIELD: &str = "epoch";

/// The settings this policy reads through `wasi:config/store`: name,
/// default (None when it has no single one), description.
pub const CONFIG_KEYS: [(&str, Option<&str>, &str); 4] = [
    (
        "key_prefix",
        Some("dsession"),
        "prefix of every key; must not be empty or hold '{', '}' or white space",
    ),
    (
        "idle_timeout_seconds",
        Some("1800"),
        "a token unused this long expires; checks slide it (see touch_interval_seconds), never \
         past the token's lifetime; 0 turns the idle timeout off",
    ),
    (
        "touch_interval_seconds",
        None,
        "a check slides the idle expiry only when that lengthens it by at least this much, so \
         that most checks only read: a token unused since a check expires between \
         idle_timeout_seconds minus this and idle_timeout_seconds after it; below \
         idle_timeout_seconds, 0 slides on every check; when unset, a tenth of \
         idle_timeout_seconds, rounded down",
    ),
    (
        "max_sessions",
        Some("0"),
        "live tokens per user; a login beyond it revokes the oldest in the same atomic step; \
         0 means no limit, and single mode means 1",
    ),
];

/// The share of the idle timeout that [`Config::touch_interval`] defaults
/// to: idle expiry within 10% of its setting, one write per token per
/// tenth of it instead of one per check.
const DEFAULT_TOUCH_SHARE: i64 = 10;

/// The policy's settings after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    prefix: String,
    /// Seconds a token may go unused; None when off.
    pub idle_timeout: Option<i64>,
    /// The least a check must lengthen a token key's life by to slide it
    /// (see [`Config::touch`]); 0 slides on every check. Below the idle
    /// timeout, unused without one.
    pub touch_interval: i64,
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
    ) -> Result<Self, Error> {
        let invalid = |why: String| Error::InvalidArgument(why);
        if let Some((unknown, _)) = pairs
            .iter()
            .find(|(key, _)| !CONFIG_KEYS.iter().any(|(name, _, _)| name == key))
        {
            let known: Vec<&str> = CONFIG_KEYS.iter().map(|(name, _, _)| *name).collect();
            return Err(invalid(format!(
                "unknown policy config key {unknown:?}; this policy reads {}",
                known.join(", ")
            )));
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
                        .and_then(|(_, default, _)| *default)
                })
        };
        let number = |name: &str, max: i64| -> Result<i64, Error> {
            let text = value(name).unwrap_or_default();
            text.parse::<i64>()
                .ok()
                .filter(|n| (0..=max).contains(n))
                .ok_or_else(|| {
                    invalid(format!(
                        "policy config {name} must be a whole number from 0 to {max}, not {text:?}"
                    ))
                })
        };
        let prefix = value("key_prefix").unwrap_or_default();
        if prefix.is_empty() || prefix.contains(['{', '}']) || prefix.contains(char::is_whitespace)
        {
            return Err(invalid(format!(
                "policy config key_prefix must be non-empty without '{{', '}}' or white space, not {prefix:?}"
            )));
        }
        let idle = number("idle_timeout_seconds", MAX_TTL_SECONDS)?;
        let touch_interval = match value("touch_interval_seconds") {
            Some(_) => number("touch_interval_seconds", MAX_TTL_SECONDS)?,
            None => idle / DEFAULT_TOUCH_SHARE,
        };
        if idle > 0 && touch_interval >= idle {
            return Err(invalid(format!(
                "policy config touch_interval_seconds must be below idle_timeout_seconds \
                 ({idle}), not {touch_interval}"
            )));
        }
        let max = number("max_sessions", 1_000_000)?;
        ttl::check_setting("default expire", default_ttl)?;
        let max_sessions = if single_mode {
            Some(1)
        } else {
            usize::try_from(max).ok().filter(|max| *max > 0)
        };
        Ok(Self {
            prefix: prefix.to_owned(),
            idle_timeout: (idle > 0).then_some(idle),
            touch_interval,
            max_sessions,
            default_ttl,
        })
    }

    /// How long a token key lives after a use: the idle timeout, but never
    /// past the token's deadline (`left` seconds away).
    pub fn key_ttl(&self, left: i64) -> i64 {
        self.idle_timeout.map_or(left, |idle| idle.min(left)).max(1)
    }

    /// The TTL a check sets a live token's key to, or None to leave it:
    /// `key_ttl` is the key's `TTL` reply (-1 without expiry), `left` the
    /// seconds to the token's deadline. It slides to [`Self::key_ttl`] only
    /// when that lengthens the key's life by [`Self::touch_interval`] or
    /// more, so most checks write nothing, and none near the deadline,
    /// where the slide would add little; it never shortens a life that
    /// refresh-token lengthened, and gives a key without expiry (which this
    /// policy never writes) one. A key left alone has more than the idle
    /// timeout minus the interval to live, or lives to the deadline: so a
    /// token unused since a check expires between the two after it.
    pub fn touch(&self, key_ttl: i64, left: i64) -> Option<i64> {
        self.idle_timeout?;
        let slid = self.key_ttl(left);
        (key_ttl < 0 || slid - key_ttl >= self.touch_interval).then_some(slid)
    }

    /// `{prefix}:{u}:{suffix}` in one allocation: a check builds two keys,
    /// and `format!` made each several.
    fn user_key_with(&self, user_id: &str, suffix: &[&str]) -> String {
        let suffix_len: usize = suffix.iter().map(|part| part.len()).sum();
        let mut key = String::with_capacity(self.prefix.len() + user_id.len() + 4 + suffix_len);
        key.push_str(&self.prefix);
        key.push_str(":{");
        escape_into(&mut key, user_id);
        key.push_str("}:");
        suffix.iter().for_each(|part| key.push_str(part));
        key
    }

    /// The key of the token whose secret hashes to `digest`.
    pub fn token_key(&self, user_id: &str, digest: &str) -> String {
        self.user_key_with(user_id, &["t:", digest])
    }

    /// The user's index: digest → `{created_ns} {deadline} {epoch}`, plus
    /// the user's current epoch.
    pub fn index_key(&self, user_id: &str) -> String {
        self.user_key_with(user_id, &["idx"])
    }

    /// The user-info cache entry.
    pub fn user_key(&self, user_id: &str) -> String {
        self.user_key_with(user_id, &["user"])
    }
}

/// Seconds a live token has left after a check that left its key alone:
/// the key's life (`key_ttl`, its `TTL` reply, -1 without expiry), never
/// past the deadline, `left` seconds away.
pub fn remaining(key_ttl: i64, left: i64) -> i64 {
    if key_ttl < 0 { left } else { key_ttl.min(left) }
}

/// Appends the user id as it sits in a hash tag to `out`: `%`, `{` and `}`
/// percent-encoded, so that the tag is the whole id and never empty; the
/// runs between them copied whole.
pub fn escape_into(out: &mut String, user_id: &str) {
    let mut rest = user_id;
    while let Some(at) = rest.bytes().position(|b| matches!(b, b'%' | b'{' | b'}')) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'%' => "%25",
            b'{' => "%7B",
            _ => "%7D",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// The SHA-256 of a token's secret, in hex: all the store ever sees of it.
pub fn digest(secret: &str) -> String {
    random::to_hex(&Sha256::digest(secret.as_bytes()))
}

/// `(user id, secret)` of a well-formed token `{user_id}_{64 hex}`; None
/// for a malformed one (a default-policy token among them); an error for
/// an empty token or one past [`token::max_bytes`].
pub fn split_token(token: &str) -> Result<Option<(&str, &str)>, Error> {
    Ok(token::parse(token, SECRET_HEX)?.filter(|(user_id, _)| user_id::check(user_id).is_ok()))
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
        let [epoch, created, deadline] = three_words(text)?;
        Self::from_words(epoch, created, deadline)
    }

    fn from_words(epoch: &str, created_ns: &str, deadline: &str) -> Option<Self> {
        Some(Self {
            epoch: epoch.to_owned(),
            created_ns: created_ns.parse().ok()?,
            deadline: deadline.parse().ok()?,
        })
    }
}

/// The words of `text` when it is exactly three, split at single spaces.
fn three_words(text: &str) -> Option<[&str; 3]> {
    let mut words = text.split(' ');
    let three = [words.next()?, words.next()?, words.next()?];
    words.next().is_none().then_some(three)
}

/// An index entry's value: the token's record in another order,
/// `{created_ns} {deadline} {epoch}`.
pub fn index_entry(record: &Record) -> String {
    format!("{} {} {}", record.created_ns, record.deadline, record.epoch)
}

/// Reads an index entry's value.
pub fn parse_index_entry(text: &str) -> Option<Record> {
    let [created, deadline, epoch] = three_words(text)?;
    Record::from_words(epoch, created, deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn escape(user_id: &str) -> String {
        let mut escaped = String::new();
        escape_into(&mut escaped, user_id);
        escaped
    }

    #[test]
    fn every_key_of_a_user_holds_the_same_hash_tag() {
        let config = Config::new(&[], 60, false).unwrap();
        assert_eq!(escape("%a{b}c"), "%25a%7Bb%7Dc");
        assert_eq!(config.token_key("a}b", "ab"), "dsession:{a%7Db}:t:ab");
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
        assert_eq!(config.touch_interval, 180, "a tenth of the idle timeout");
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
            ("touch_interval_seconds", "-1"),
            ("touch_interval_seconds", "1800"),
        ] {
            assert!(Config::new(&pairs(&[bad]), 60, false).is_err(), "{bad:?}");
        }
        assert!(Config::new(&[], 0, false).is_err());
    }

    #[test]
    fn the_touch_interval_defaults_to_a_tenth_and_stays_below_the_idle_timeout() {
        let config = |list: &[(&str, &str)]| Config::new(&pairs(list), 60, false);
        let interval = |list: &[(&str, &str)]| config(list).unwrap().touch_interval;
        assert_eq!(interval(&[("idle_timeout_seconds", "900")]), 90);
        assert_eq!(
            interval(&[("idle_timeout_seconds", "9")]),
            0,
            "rounded down"
        );
        assert_eq!(
            interval(&[
                ("idle_timeout_seconds", "60"),
                ("touch_interval_seconds", "59")
            ]),
            59
        );
        assert_eq!(interval(&[("touch_interval_seconds", "0")]), 0);
        let Err(Error::InvalidArgument(why)) = config(&[
            ("idle_timeout_seconds", "60"),
            ("touch_interval_seconds", "60"),
        ]) else {
            panic!("an interval as long as the idle timeout was accepted");
        };
        assert_eq!(
            why,
            "policy config touch_interval_seconds must be below idle_timeout_seconds (60), not 60"
        );
        // Without an idle timeout there is nothing to slide: any interval goes.
        let off = config(&[
            ("idle_timeout_seconds", "0"),
            ("touch_interval_seconds", "99"),
        ]);
        assert_eq!(off.unwrap().touch(50, 50), None);
        assert!(
            config(&[
                ("idle_timeout_seconds", "0"),
                ("touch_interval_seconds", "x")
            ])
            .is_err()
        );
    }

    #[test]
    fn a_check_slides_the_key_only_when_that_adds_a_touch_interval() {
        let config = Config::new(&pairs(&[("idle_timeout_seconds", "100")]), 60, false).unwrap();
        assert_eq!(config.touch_interval, 10);
        // Far from the deadline: slid back to 100 s once 10 s have passed.
        assert_eq!(config.touch(100, 5000), None);
        assert_eq!(config.touch(91, 5000), None);
        assert_eq!(config.touch(90, 5000), Some(100));
        assert_eq!(config.touch(3, 5000), Some(100));
        // Near the deadline a slide adds less than the interval: none.
        assert_eq!(config.touch(50, 55), None);
        assert_eq!(config.touch(40, 55), Some(55));
        // A refresh-token's longer life stands; a key without expiry gets one.
        assert_eq!(config.touch(3000, 5000), None);
        assert_eq!(config.touch(-1, 5000), Some(100));
        let every = Config::new(
            &pairs(&[
                ("idle_timeout_seconds", "100"),
                ("touch_interval_seconds", "0"),
            ]),
            60,
            false,
        )
        .unwrap();
        assert_eq!(every.touch(100, 5000), Some(100), "0: every check slides");
        assert_eq!(every.touch(55, 55), Some(55));
        assert_eq!(remaining(30, 5000), 30);
        assert_eq!(remaining(30, 20), 20);
        assert_eq!(remaining(-1, 20), 20);
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
        assert!(split_token(&"x".repeat(token::max_bytes(SECRET_HEX) + 1)).is_err());
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
}
