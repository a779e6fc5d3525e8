//! The hardened layout: key names, token format, settings and argument
//! checks. Pure functions only, so that they are unit-tested natively.
//!
//! Every key of user `u` holds the hash tag `{u}` (with `%`, `{` and `}`
//! escaped), so all of a user's keys share one Redis Cluster slot:
//!
//! | key | value | TTL |
//! |---|---|---|
//! | `{prefix}:{u}:t:{sha256(secret)}` | `{epoch} {created_ns} {deadline} {last_seen}[ {attributes as JSON}]` | idle timeout, or the lifetime; a check slides it at most once a touch interval |
//! | `{prefix}:{u}:idx` (hash) | `{sha256}` → `{created_ns} {deadline} {epoch}[ {device}]`; `epoch` → the user's epoch | ≥ its longest token; revoke-all deletes it |
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
use dsession_policy_sdk::{Error, SessionAttributes, attributes, client, random, token, ttl};
use sha2::{Digest, Sha256};

/// Hex digits in a token's secret (256 bits).
pub const SECRET_HEX: usize = 64;
/// The index field that holds the user's epoch; no SHA-256 looks like it.
pub const EPOCH_FIELD: &str = "epoch";

/// The settings this policy reads through `wasi:config/store`: name,
/// default (None when it has no single one), description.
pub const CONFIG_KEYS: [(&str, Option<&str>, &str); 7] = [
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
        "live tokens per user; a login beyond it revokes the oldest in the same atomic step \
         (see on_limit); 0 means no limit, and single mode means 1",
    ),
    (
        "max_sessions_per_device",
        Some("0"),
        "live tokens per user on one device label (set-token's device); a login beyond it \
         revokes the oldest on that device (see on_limit); logins without a device are not \
         counted; 0 means no limit",
    ),
    (
        "device_limits",
        Some(""),
        "per-label limits that replace max_sessions_per_device for those labels, as \
         label=count pairs separated by commas (\"tv=1,phone=2\"); a count of 0 means no limit",
    ),
    (
        "on_limit",
        Some("evict_oldest"),
        "what a login beyond max_sessions or a device limit does: evict_oldest revokes the \
         oldest sessions it counts in the same atomic step; reject_new refuses the login with \
         a conflict naming the limit (not with single mode, which evicts)",
    ),
];

/// What a login beyond a session limit does (`on_limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLimit {
    /// Revoke the oldest sessions counted against the limit.
    EvictOldest,
    /// Refuse the login.
    RejectNew,
}

/// `device_limits`: `label=count` pairs separated by commas.
fn parse_device_limits(text: &str) -> Result<Vec<(String, usize)>, Error> {
    let mut limits: Vec<(String, usize)> = Vec::new();
    for pair in text
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let parsed = pair.split_once('=').and_then(|(label, count)| {
            let label = label.trim();
            let count = count.trim().parse::<usize>().ok()?;
            (!label.is_empty() && count <= 1_000_000).then(|| (label.to_owned(), count))
        });
        let Some((label, count)) = parsed else {
            return Err(Error::InvalidArgument(format!(
                "policy config device_limits holds {pair:?}; write label=count pairs, a count \
                 from 0 to 1000000, separated by commas"
            )));
        };
        if limits.iter().any(|(known, _)| *known == label) {
            return Err(Error::InvalidArgument(format!(
                "policy config device_limits names {label:?} twice"
            )));
        }
        limits.push((label, count));
    }
    Ok(limits)
}

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
    /// Live tokens per user and device label, unless `device_limits`
    /// names the label; None when unlimited.
    pub max_per_device: Option<usize>,
    /// Per-label limits, 0 for none; they replace `max_per_device`.
    pub device_limits: Vec<(String, usize)>,
    /// What a login beyond a limit does.
    pub on_limit: OnLimit,
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
        let max_per_device = number("max_sessions_per_device", 1_000_000)?;
        let device_limits = parse_device_limits(value("device_limits").unwrap_or_default())?;
        let on_limit = match value("on_limit").unwrap_or_default() {
            "evict_oldest" => OnLimit::EvictOldest,
            "reject_new" if single_mode => {
                return Err(invalid(
                    "policy config on_limit = reject_new cannot keep single mode, whose login \
                     revokes the user's other tokens"
                        .into(),
                ));
            }
            "reject_new" => OnLimit::RejectNew,
            other => {
                return Err(invalid(format!(
                    "policy config on_limit must be evict_oldest or reject_new, not {other:?}"
                )));
            }
        };
        Ok(Self {
            prefix: prefix.to_owned(),
            idle_timeout: (idle > 0).then_some(idle),
            touch_interval,
            max_sessions,
            max_per_device: usize::try_from(max_per_device).ok().filter(|max| *max > 0),
            device_limits,
            on_limit,
            default_ttl,
        })
    }

    /// The most live tokens a user may hold on `device`; None when no
    /// limit counts that label.
    pub fn device_limit(&self, device: &str) -> Option<usize> {
        match self.device_limits.iter().find(|(label, _)| label == device) {
            Some((_, max)) => Some(*max).filter(|max| *max > 0),
            None => self.max_per_device,
        }
    }

    /// Whether some device label has a limit: a login with a device then
    /// reads the user's index whole.
    pub fn limits_devices(&self) -> bool {
        self.max_per_device.is_some() || self.device_limits.iter().any(|(_, max)| *max > 0)
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
    fn from_words(epoch: &str, created_ns: &str, deadline: &str) -> Option<Self> {
        Some(Self {
            epoch: epoch.to_owned(),
            created_ns: created_ns.parse().ok()?,
            deadline: deadline.parse().ok()?,
        })
    }
}

/// The first three words of `text`, split at single spaces, and the rest
/// after a fourth space, if any.
fn three_words(text: &str) -> Option<([&str; 3], Option<&str>)> {
    let mut words = text.splitn(4, ' ');
    let three = [words.next()?, words.next()?, words.next()?];
    Some((three, words.next()))
}

/// A token key's value: its record, when a check last found it live (unix
/// seconds, as of the last slide), and the login's attributes as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The token's record.
    pub record: Record,
    /// When a check last slid its expiry, or the login.
    pub last_seen: i64,
    /// The attributes as [`dsession_policy_sdk::attributes::encode`] wrote
    /// them; None when the login gave none.
    pub attributes: Option<String>,
}

impl Stored {
    /// The token key's value.
    pub fn encode(&self) -> String {
        let Record {
            epoch,
            created_ns,
            deadline,
        } = &self.record;
        let last_seen = self.last_seen;
        match &self.attributes {
            Some(json) => format!("{epoch} {created_ns} {deadline} {last_seen} {json}"),
            None => format!("{epoch} {created_ns} {deadline} {last_seen}"),
        }
    }

    /// Keeps `client`'s IP and user agent as the session's latest.
    pub fn seen_from(&mut self, client: &SessionAttributes) -> Result<(), Error> {
        let kept = match &self.attributes {
            Some(json) => attributes::decode(json)?,
            None => attributes::none(),
        };
        if let Some(merged) = client::merged(&kept, client) {
            self.attributes = Some(attributes::encode(&merged));
        }
        Ok(())
    }

    /// Reads a token key's value; one written before `last_seen` was kept
    /// (three words) was last seen when it was issued. Takes the value, so
    /// that a check keeps its attributes without copying them: the words
    /// before them are cut off in place. A value of another form comes back
    /// as the error.
    pub fn decode(mut text: String) -> Result<Self, String> {
        let read = || {
            let ([epoch, created, deadline], rest) = three_words(&text)?;
            let record = Record::from_words(epoch, created, deadline)?;
            Some(match rest {
                None => (record.created_ns / 1_000_000_000, None, record),
                Some(rest) => match rest.split_once(' ') {
                    Some((seen, json)) => {
                        (seen.parse().ok()?, Some(text.len() - json.len()), record)
                    }
                    None => (rest.parse().ok()?, None, record),
                },
            })
        };
        let Some((last_seen, json_at, record)) = read() else {
            return Err(text);
        };
        let attributes = json_at.map(|at| {
            text.drain(..at);
            text
        });
        Ok(Self {
            record,
            last_seen,
            attributes,
        })
    }
}

/// An index entry's value: the token's record in another order and the
/// login's device label, `{created_ns} {deadline} {epoch}[ {device}]`, so
/// that a login counts a device's sessions from the index alone.
pub fn index_entry(record: &Record, device: Option<&str>) -> String {
    let Record {
        epoch,
        created_ns,
        deadline,
    } = record;
    match device {
        Some(device) => format!("{created_ns} {deadline} {epoch} {device}"),
        None => format!("{created_ns} {deadline} {epoch}"),
    }
}

/// Reads an index entry's value: the record and the device label.
pub fn parse_index_entry(text: &str) -> Option<(Record, Option<String>)> {
    let ([created, deadline, epoch], device) = three_words(text)?;
    Some((
        Record::from_words(epoch, created, deadline)?,
        device.map(str::to_owned),
    ))
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
            parse_index_entry(&index_entry(&record, None)),
            Some((record.clone(), None))
        );
        assert_eq!(
            parse_index_entry(&index_entry(&record, Some("my phone"))),
            Some((record.clone(), Some("my phone".into())))
        );
        for attributes in [
            None,
            Some(r#"{"ip":"::1","labels":[["a","b c"]]}"#.to_owned()),
        ] {
            let stored = Stored {
                record: record.clone(),
                last_seen: 7,
                attributes,
            };
            assert_eq!(Stored::decode(stored.encode()).ok(), Some(stored));
        }
        let before_last_seen = Stored::decode("e 5000000000 9".into()).unwrap();
        assert_eq!(
            (before_last_seen.last_seen, before_last_seen.attributes),
            (5, None)
        );
        assert_eq!(Stored::decode("e 5".into()).ok(), None);
        assert_eq!(Stored::decode("e 5 9 x".into()).ok(), None);
    }
}
