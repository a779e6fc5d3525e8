//! What the near cache knows: per key, the facts one fill read from Redis
//! (its expiry deadline, and the string, hash fields or whole hash asked
//! for), in an LRU bounded by entries and bytes.
//!
//! A fill must never store what an invalidation already overtook. A miss
//! therefore first puts an entry without facts under the key, with a new
//! incarnation number, before its reads are sent; an invalidation, a flush
//! or an eviction removes the entry, and the fill stores its facts only if
//! the entry it made (or found) is still there. Redis sends the
//! invalidation of a key after every reply that read it before the write,
//! so a fill whose read is older than a write either finds its entry gone
//! or stores facts that the invalidation still to come removes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hashlink::LruCache;

use super::stats::{Counters, Flush};
use crate::store::{Command, HashExistsArgs, HashGetArgs, Reply, StoreError};

/// Bytes an entry costs besides its key and its values: the map's slot,
/// the entry, the facts' vectors. An estimate, so that the byte bound
/// holds for small entries too.
const ENTRY_OVERHEAD: usize = 160;

/// What the near cache knows of one key, read from Redis in one round trip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Facts {
    /// The key did not exist (`PTTL` answered -2): every read of it answers
    /// as of a missing key.
    pub(super) missing: bool,
    /// When the key expires: the time its `PTTL` was sent plus the `PTTL`,
    /// so never later than Redis's own deadline. None: no expiry.
    pub(super) deadline: Option<Instant>,
    /// `GET`'s answer.
    pub(super) string: Option<Option<String>>,
    /// `HGET`'s answer per field.
    pub(super) fields: Vec<(String, Option<String>)>,
    /// `HGETALL`'s answer.
    pub(super) all: Option<Vec<(String, String)>>,
}

impl Facts {
    /// The facts of a key that `PTTL` answered `pttl` for, sent at `sent`.
    pub(super) fn expiring(pttl: i64, sent: Instant) -> Self {
        Self {
            missing: pttl == -2,
            deadline: u64::try_from(pttl)
                .ok()
                .map(|ms| sent + std::time::Duration::from_millis(ms)),
            ..Self::default()
        }
    }

    /// Whether the key has expired by `now`, although no invalidation said
    /// so yet (Redis deletes expired keys lazily).
    fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|deadline| deadline <= now)
    }

    /// `command`'s answer from these facts at `now`, if they hold it. A key
    /// past its deadline answers as a missing one, as Redis would.
    pub(super) fn answer(&self, command: &Command, now: Instant) -> Option<Reply> {
        let missing = self.missing || self.expired(now);
        Some(match command {
            Command::Exists(_) => Reply::Integer(i64::from(!missing)),
            Command::Ttl(_) if missing => Reply::Integer(-2),
            Command::Ttl(_) => Reply::Integer(match self.deadline {
                None => -1,
                // Redis's own rounding: (milliseconds + 500) / 1000.
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(now).as_millis();
                    i64::try_from((left + 500) / 1000).unwrap_or(i64::MAX)
                }
            }),
            Command::Get(_) if missing => Reply::Nil,
            Command::Get(_) => text_or_nil(self.string.as_ref()?.clone()),
            Command::HashGetAll(_) if missing => Reply::Pairs(Vec::new()),
            Command::HashGetAll(_) => Reply::Pairs(self.all.clone()?),
            Command::HashGet(_) if missing => Reply::Nil,
            Command::HashGet(HashGetArgs { field, .. }) => text_or_nil(self.field(field)?),
            Command::HashExists(_) if missing => Reply::Integer(0),
            Command::HashExists(HashExistsArgs { field, .. }) => {
                Reply::Integer(i64::from(self.field(field)?.is_some()))
            }
            _ => return None,
        })
    }

    /// A field's value, from `HGETALL` or an `HGET` of it.
    fn field(&self, field: &str) -> Option<Option<String>> {
        if let Some(all) = &self.all {
            return Some(
                all.iter()
                    .find(|(name, _)| name == field)
                    .map(|(_, value)| value.clone()),
            );
        }
        self.fields
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, value)| value.clone())
    }

    /// Keeps `reply`, the answer to `need`'s [`Need::read`].
    pub(super) fn learn(&mut self, need: &Need, reply: Reply) -> Result<(), StoreError> {
        let text = |reply: Reply| match reply {
            Reply::Text(text) => Ok(Some(text)),
            Reply::Nil => Ok(None),
            other => Err(StoreError::new(format!("a near cache fill read {other:?}"))),
        };
        match need {
            Need::String => self.string = Some(text(reply)?),
            Need::Field(field) => self.fields.push((field.clone(), text(reply)?)),
            Need::All => match reply {
                Reply::Pairs(pairs) => self.all = Some(pairs),
                other => {
                    return Err(StoreError::new(format!(
                        "a near cache fill read {other:?} for HGETALL"
                    )));
                }
            },
        }
        Ok(())
    }

    /// These facts with what `newer`, read since, adds; `newer`'s expiry
    /// wins. Both come from one incarnation, so no write came between.
    fn merge(&mut self, newer: Self) {
        self.missing = newer.missing;
        self.deadline = newer.deadline;
        if newer.string.is_some() {
            self.string = newer.string;
        }
        if newer.all.is_some() {
            self.all = newer.all;
        }
        for (field, value) in newer.fields {
            match self.fields.iter_mut().find(|(name, _)| *name == field) {
                Some(known) => known.1 = value,
                None => self.fields.push((field, value)),
            }
        }
    }

    /// What the facts hold, in bytes.
    fn bytes(&self) -> usize {
        let text = |value: &Option<String>| value.as_ref().map_or(0, String::len);
        self.string.as_ref().map_or(0, text)
            + self
                .fields
                .iter()
                .map(|(field, value)| field.len() + text(value) + 32)
                .sum::<usize>()
            + self.all.as_ref().map_or(0, |all| {
                all.iter()
                    .map(|(field, value)| field.len() + value.len() + 48)
                    .sum()
            })
    }
}

/// `command`'s answer from each of its keys' answers, None when a key has
/// none: `EXISTS` adds its keys' counts, every other read names one key.
pub(super) fn combine(
    command: &Command,
    mut answer: impl FnMut(&str) -> Option<Reply>,
) -> Option<Reply> {
    let Command::Exists(keys) = command else {
        let key = command.keys().next().expect("a read names one key");
        return answer(key);
    };
    let mut exists = 0;
    for key in keys {
        match answer(key)? {
            Reply::Integer(n) => exists += n,
            _ => return None,
        }
    }
    Some(Reply::Integer(exists))
}

fn text_or_nil(value: Option<String>) -> Reply {
    value.map_or(Reply::Nil, Reply::Text)
}

/// What a read needs of its key's facts beyond the expiry: the key's
/// string, one field, or the whole hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Need {
    String,
    Field(String),
    All,
}

impl Need {
    /// The read that fetches it for `key`.
    pub(super) fn read(&self, key: &str) -> Command {
        match self {
            Self::String => Command::Get(key.to_owned()),
            Self::Field(field) => Command::HashGet(HashGetArgs {
                key: key.to_owned(),
                field: field.clone(),
            }),
            Self::All => Command::HashGetAll(key.to_owned()),
        }
    }

    /// What `command`, a read, needs of its key; none for `TTL` and
    /// `EXISTS`, which the expiry answers.
    pub(super) fn of(command: &Command) -> Option<Self> {
        match command {
            Command::Get(_) => Some(Self::String),
            Command::HashGet(HashGetArgs { field, .. })
            | Command::HashExists(HashExistsArgs { field, .. }) => Some(Self::Field(field.clone())),
            Command::HashGetAll(_) => Some(Self::All),
            _ => None,
        }
    }
}

/// One entry: the incarnation a miss made it with, and the facts once a
/// fill stored them.
struct Entry {
    incarnation: u64,
    facts: Option<Facts>,
    bytes: usize,
}

/// How large the cache may grow.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    pub(super) entries: usize,
    pub(super) bytes: usize,
}

impl Bounds {
    /// The most one entry may hold: a sixteenth of the bytes, so that one
    /// large hash (a user's index) cannot empty the cache.
    fn entry_bytes(self) -> usize {
        self.bytes / 16
    }
}

/// The entries of one Redis server's near cache.
pub(super) struct Entries {
    lru: Mutex<Lru>,
    bounds: Bounds,
    next_incarnation: AtomicU64,
    counters: std::sync::Arc<Counters>,
}

struct Lru {
    entries: LruCache<String, Entry>,
    bytes: usize,
}

impl Lru {
    fn remove(&mut self, key: &str, counters: &Counters) -> bool {
        match self.entries.remove(key) {
            Some(entry) => {
                self.bytes -= entry.bytes;
                counters.removed(entry.bytes);
                true
            }
            None => false,
        }
    }
}

impl Drop for Entries {
    /// What a cache dropped with its server (a master given up) held is no
    /// longer counted as held.
    fn drop(&mut self) {
        let lru = self
            .lru
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.counters.released(lru.entries.len(), lru.bytes);
    }
}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries")
            .field("bounds", &self.bounds)
            .finish_non_exhaustive()
    }
}

impl Entries {
    pub(super) fn new(bounds: Bounds, counters: std::sync::Arc<Counters>) -> Self {
        Self {
            lru: Mutex::new(Lru {
                entries: LruCache::new_unbounded(),
                bytes: 0,
            }),
            bounds,
            next_incarnation: AtomicU64::new(1),
            counters,
        }
    }

    fn lru(&self) -> std::sync::MutexGuard<'_, Lru> {
        // A panic while the lock was held leaves at worst a wrong byte
        // count; the entries themselves are whole.
        self.lru
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Each read's answer, under one lock: from the facts when every key
    /// it reads has facts that hold it at `now` and the entries are
    /// `current`; else the incarnation each of its keys' fill must keep, an
    /// entry without facts made for each key that had none.
    pub(super) fn lookup_all(
        &self,
        reads: &[Command],
        now: Instant,
        current: bool,
    ) -> Vec<Result<Reply, Vec<u64>>> {
        let mut lru = self.lru();
        reads
            .iter()
            .map(|command| match current {
                true => self.lookup_in(&mut lru, command, now),
                // Not current, the entries may be behind: every key is read
                // again, its fill keeping the entry's incarnation.
                false => Err(self.incarnations(&mut lru, command)),
            })
            .collect()
    }

    #[cfg(test)]
    fn lookup(&self, command: &Command, now: Instant) -> Result<Reply, Vec<u64>> {
        self.lookup_in(&mut self.lru(), command, now)
    }

    fn lookup_in(&self, lru: &mut Lru, command: &Command, now: Instant) -> Result<Reply, Vec<u64>> {
        let answer = combine(command, |key| {
            let facts = lru.entries.get(key)?.facts.as_ref()?;
            // Past its deadline an entry is never served; the fill that
            // follows asks Redis.
            if facts.expired(now) {
                return None;
            }
            facts.answer(command, now)
        });
        answer.ok_or_else(|| self.incarnations(lru, command))
    }

    /// The incarnation of each of `command`'s keys, made where missing.
    fn incarnations(&self, lru: &mut Lru, command: &Command) -> Vec<u64> {
        command
            .keys()
            .map(|key| {
                if let Some(entry) = lru.entries.get(key) {
                    return entry.incarnation;
                }
                let incarnation = self.next_incarnation.fetch_add(1, Ordering::Relaxed);
                let bytes = key.len() + ENTRY_OVERHEAD;
                lru.entries.insert(
                    key.to_owned(),
                    Entry {
                        incarnation,
                        facts: None,
                        bytes,
                    },
                );
                lru.bytes += bytes;
                self.counters.added(bytes);
                self.evict(lru);
                incarnation
            })
            .collect()
    }

    /// Stores `facts` of `key` if its entry is still the `incarnation` the
    /// miss made or found: no invalidation, flush or eviction came since.
    pub(super) fn fill(&self, key: &str, incarnation: u64, facts: Facts) {
        let mut lru = self.lru();
        let Some(entry) = lru.entries.peek_mut(key) else {
            return;
        };
        if entry.incarnation != incarnation {
            return;
        }
        let mut merged = entry.facts.take().unwrap_or_default();
        merged.merge(facts);
        let bytes = key.len() + ENTRY_OVERHEAD + merged.bytes();
        let before = std::mem::replace(&mut entry.bytes, bytes);
        entry.facts = Some(merged);
        lru.bytes = lru.bytes - before + bytes;
        self.counters.removed(before);
        self.counters.added(bytes);
        if bytes > self.bounds.entry_bytes() {
            lru.remove(key, &self.counters);
            return;
        }
        self.evict(&mut lru);
    }

    /// Drops the least recently used entries until the bounds hold.
    fn evict(&self, lru: &mut Lru) {
        while lru.entries.len() > self.bounds.entries || lru.bytes > self.bounds.bytes {
            let Some((_, entry)) = lru.entries.remove_lru() else {
                break;
            };
            lru.bytes -= entry.bytes;
            self.counters.removed(entry.bytes);
            self.counters.evicted();
        }
    }

    /// Forgets `key`: Redis said it changed.
    pub(super) fn invalidate(&self, key: &str) {
        if self.lru().remove(key, &self.counters) {
            self.counters.invalidated();
        }
    }

    /// Forgets `keys`, which this process is writing or wrote.
    pub(super) fn forget<'a>(&self, keys: impl Iterator<Item = &'a str>) {
        let mut lru = self.lru();
        for key in keys {
            lru.remove(key, &self.counters);
        }
    }

    /// Forgets everything, for `why`.
    pub(super) fn flush(&self, why: Flush) {
        let mut lru = self.lru();
        let bytes = std::mem::take(&mut lru.bytes);
        let entries = lru.entries.len();
        lru.entries.clear();
        self.counters.flushed(why, entries, bytes);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn entries(bounds: Bounds) -> (Entries, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        (Entries::new(bounds, Arc::clone(&counters)), counters)
    }

    fn wide() -> Bounds {
        Bounds {
            entries: 100,
            bytes: 1 << 20,
        }
    }

    fn get(key: &str) -> Command {
        Command::Get(key.into())
    }

    fn value(text: &str, deadline: Option<Instant>) -> Facts {
        Facts {
            deadline,
            string: Some(Some(text.into())),
            ..Facts::default()
        }
    }

    #[test]
    fn a_fill_is_served_until_its_deadline_and_ttl_counts_down_from_it() {
        let (cache, _) = entries(wide());
        let now = Instant::now();
        let [incarnation] = cache.lookup(&get("k"), now).unwrap_err()[..] else {
            panic!("one key");
        };
        cache.fill(
            "k",
            incarnation,
            value("v", Some(now + Duration::from_secs(10))),
        );
        assert_eq!(cache.lookup(&get("k"), now), Ok(Reply::Text("v".into())));
        let ttl = Command::Ttl("k".into());
        assert_eq!(cache.lookup(&ttl, now), Ok(Reply::Integer(10)));
        let later = now + Duration::from_millis(6600);
        assert_eq!(cache.lookup(&ttl, later), Ok(Reply::Integer(3)));
        // At the deadline the entry is not served: the caller asks Redis.
        let expired = now + Duration::from_secs(10);
        assert!(cache.lookup(&get("k"), expired).is_err());
    }

    #[test]
    fn a_dropped_cache_is_no_longer_counted_as_holding_anything() {
        let (cache, counters) = entries(wide());
        let now = Instant::now();
        for key in ["a", "b"] {
            let incarnation = cache.lookup(&get(key), now).unwrap_err()[0];
            cache.fill(key, incarnation, value("v", None));
        }
        let held = counters.snapshot();
        assert_eq!(held.entries, 2);
        assert!(held.bytes > 0);
        drop(cache);
        let after = counters.snapshot();
        assert_eq!((after.entries, after.bytes), (0, 0));
        assert_eq!(after.flushes, [0; 4], "a drop is no flush");
    }

    #[test]
    fn an_invalidation_before_the_fill_returns_keeps_the_fill_out() {
        let (cache, counters) = entries(wide());
        let now = Instant::now();
        let incarnation = cache.lookup(&get("k"), now).unwrap_err()[0];
        cache.invalidate("k");
        cache.fill("k", incarnation, value("stale", None));
        assert!(
            cache.lookup(&get("k"), now).is_err(),
            "the stale fill was kept"
        );
        assert_eq!(counters.snapshot().invalidations, 1);

        let incarnation = cache.lookup(&get("k"), now).unwrap_err()[0];
        cache.flush(Flush::Disconnected);
        cache.fill("k", incarnation, value("stale", None));
        assert!(cache.lookup(&get("k"), now).is_err());
    }

    #[test]
    fn a_missing_key_answers_every_read_as_missing() {
        let (cache, _) = entries(wide());
        let now = Instant::now();
        let incarnation = cache.lookup(&get("k"), now).unwrap_err()[0];
        cache.fill("k", incarnation, Facts::expiring(-2, now));
        let field = || HashGetArgs {
            key: "k".into(),
            field: "f".into(),
        };
        for (command, reply) in [
            (get("k"), Reply::Nil),
            (Command::Ttl("k".into()), Reply::Integer(-2)),
            (Command::Exists(vec!["k".into()]), Reply::Integer(0)),
            (Command::HashGetAll("k".into()), Reply::Pairs(Vec::new())),
            (Command::HashGet(field()), Reply::Nil),
        ] {
            assert_eq!(cache.lookup(&command, now), Ok(reply), "{command:?}");
        }
    }

    #[test]
    fn hash_fields_are_answered_from_hget_or_hgetall_and_exists_adds_keys() {
        let (cache, _) = entries(wide());
        let now = Instant::now();
        let hget = |field: &str| {
            Command::HashGet(HashGetArgs {
                key: "h".into(),
                field: field.into(),
            })
        };
        let incarnation = cache.lookup(&hget("a"), now).unwrap_err()[0];
        cache.fill(
            "h",
            incarnation,
            Facts {
                fields: vec![("a".into(), Some("1".into()))],
                ..Facts::default()
            },
        );
        assert_eq!(cache.lookup(&hget("a"), now), Ok(Reply::Text("1".into())));
        assert!(cache.lookup(&hget("b"), now).is_err(), "b was never read");
        let all = Command::HashGetAll("h".into());
        let incarnation = cache.lookup(&all, now).unwrap_err()[0];
        let pairs = vec![("a".into(), "1".into()), ("b".into(), "2".into())];
        cache.fill(
            "h",
            incarnation,
            Facts {
                all: Some(pairs.clone()),
                ..Facts::default()
            },
        );
        assert_eq!(cache.lookup(&hget("b"), now), Ok(Reply::Text("2".into())));
        assert_eq!(cache.lookup(&all, now), Ok(Reply::Pairs(pairs)));

        let exists = Command::Exists(vec!["h".into(), "gone".into()]);
        let incarnations = cache.lookup(&exists, now).unwrap_err();
        assert_eq!(incarnations.len(), 2);
        cache.fill("gone", incarnations[1], Facts::expiring(-2, now));
        assert_eq!(cache.lookup(&exists, now), Ok(Reply::Integer(1)));
    }

    #[test]
    fn entries_and_bytes_stay_bounded_least_recently_used_first() {
        let bounds = Bounds {
            entries: 3,
            bytes: 16 * 1024,
        };
        let (cache, counters) = entries(bounds);
        let now = Instant::now();
        for key in ["a", "b", "c"] {
            let incarnation = cache.lookup(&get(key), now).unwrap_err()[0];
            cache.fill(key, incarnation, value(key, None));
        }
        // "a" used last: "b" is the least recently used.
        assert!(cache.lookup(&get("a"), now).is_ok());
        let incarnation = cache.lookup(&get("d"), now).unwrap_err()[0];
        cache.fill("d", incarnation, value("d", None));
        assert!(cache.lookup(&get("a"), now).is_ok());
        assert!(cache.lookup(&get("c"), now).is_ok());
        assert!(cache.lookup(&get("d"), now).is_ok());
        let counts = counters.snapshot();
        assert_eq!((counts.entries, counts.evictions), (3, 1));

        // More than a sixteenth of the bytes is answered, never kept.
        let incarnation = cache.lookup(&get("big"), now).unwrap_err()[0];
        cache.fill("big", incarnation, value(&"x".repeat(2048), None));
        assert!(cache.lookup(&get("big"), now).is_err());
        assert!(counters.snapshot().bytes <= bounds.bytes as u64);
        cache.flush(Flush::Disconnected);
        let counts = counters.snapshot();
        assert_eq!((counts.entries, counts.bytes), (0, 0));
    }
}
