//! Where a store keeps session events: one Redis Stream, capped, that a
//! policy appends to (`append-event`) in the atomic step of each change,
//! and that `dsession events tail` and `GET /v1/events` read.
//!
//! On a Redis Cluster an atomic step keeps to one slot, so there is one
//! stream per slot: the event of a step goes to the stream of the slot
//! of the key it is written beside, `{stream}{tag}`, where `tag` is a
//! hash tag of that slot. A reader reads every slot's stream and merges
//! them by id.

#[cfg(feature = "redis")]
use std::sync::OnceLock;

use super::StoreError;

/// The stream of session events: its key and the cap on its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventStream {
    /// The stream's key; on a Redis Cluster, the prefix of each slot's
    /// stream.
    pub key: String,
    /// About how many events each stream keeps (`XADD … MAXLEN ~`):
    /// Redis trims whole blocks, so a stream may hold somewhat more.
    pub max_len: u64,
}

/// The events a stream keeps by default: at about 200 bytes an event,
/// about 20 MB.
pub const DEFAULT_EVENTS_MAX_LEN: u64 = 100_000;

impl Default for EventStream {
    fn default() -> Self {
        Self {
            key: "dsession-events".into(),
            max_len: DEFAULT_EVENTS_MAX_LEN,
        }
    }
}

impl EventStream {
    /// Rejects a stream no store could keep.
    pub fn validate(&self) -> Result<(), String> {
        if self.key.is_empty() || self.key.contains(['{', '}']) {
            return Err(format!(
                "events stream {:?} must be a non-empty key without `{{` or `}}` (on a \
                 cluster the slot's hash tag is appended)",
                self.key
            ));
        }
        if self.max_len == 0 {
            return Err("events max_len must be at least 1".into());
        }
        Ok(())
    }

    /// The key of the stream of `slot` on a Redis Cluster.
    #[cfg(feature = "redis")]
    pub fn slot_key(&self, slot: u16) -> String {
        format!("{}{{{}}}", self.key, slot_tags()[usize::from(slot)])
    }
}

/// One event as a store holds it: its stream id (`{ms}-{seq}`) and its
/// fields in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The id the stream gave it; later events have larger ids.
    pub id: EventId,
    /// The fields the policy wrote.
    pub fields: Vec<(String, String)>,
}

/// A stream entry id, `{ms}-{seq}`: milliseconds since the epoch when it
/// was appended, and a sequence number within that millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    /// Unix milliseconds.
    pub ms: u64,
    /// The sequence number within `ms`.
    pub seq: u64,
}

impl EventId {
    /// The id before every event.
    pub const ZERO: Self = Self { ms: 0, seq: 0 };

    /// Reads `{ms}-{seq}`, or `{ms}` for `{ms}-0`.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let invalid = || StoreError::new(format!("{text:?} is not a stream id (ms-seq)"));
        let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
        let number = |part: &str| {
            (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse().ok())
                .flatten()
        };
        Ok(Self {
            ms: number(ms).ok_or_else(invalid)?,
            seq: number(seq).ok_or_else(invalid)?,
        })
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Which events [`crate::store::Store::read_events`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventRange {
    /// Those after an id, oldest first, at most a count.
    After(EventId, usize),
    /// The latest, at most a count, oldest first.
    Last(usize),
}

impl EventRange {
    /// The most events it reads.
    pub fn count(self) -> usize {
        match self {
            Self::After(_, count) | Self::Last(count) => count,
        }
    }
}

/// The events of several streams as one list: merged by id, then cut to
/// what `range` asks for.
#[cfg(feature = "redis")]
pub(crate) fn merge(streams: Vec<Vec<StoredEvent>>, range: EventRange) -> Vec<StoredEvent> {
    let mut events: Vec<StoredEvent> = streams.into_iter().flatten().collect();
    events.sort_by_key(|event| event.id);
    match range {
        EventRange::After(_, count) => events.truncate(count),
        EventRange::Last(count) => {
            let skip = events.len().saturating_sub(count);
            events.drain(..skip);
        }
    }
    events
}

/// A hash tag of each Redis Cluster slot: the first decimal number that
/// hashes to it, found once.
#[cfg(feature = "redis")]
fn slot_tags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        let slots = 16_384;
        let mut tags = vec![String::new(); slots];
        let mut found = 0;
        for n in 0u32.. {
            let tag = n.to_string();
            let slot = usize::from(super::key_slot(&tag));
            if tags[slot].is_empty() {
                tags[slot] = tag;
                found += 1;
                if found == slots {
                    break;
                }
            }
        }
        tags
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "redis")]
    fn each_slot_has_a_stream_in_it() {
        let stream = EventStream::default();
        for slot in [0, 1, 5461, 16383] {
            assert_eq!(super::super::key_slot(&stream.slot_key(slot)), slot);
        }
        assert!(stream.slot_key(0).starts_with("dsession-events{"));
    }

    #[test]
    fn ids_read_and_print_as_redis_writes_them() {
        let id = EventId::parse("1700000000123-4").unwrap();
        assert_eq!((id.ms, id.seq), (1_700_000_000_123, 4));
        assert_eq!(id.to_string(), "1700000000123-4");
        assert_eq!(EventId::parse("5").unwrap(), EventId { ms: 5, seq: 0 });
        for bad in ["", "-", "1-", "a-1", "1-2-3", "+1"] {
            assert!(EventId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    #[cfg(feature = "redis")]
    fn streams_merge_by_id_and_cut_to_the_range() {
        let event = |ms| StoredEvent {
            id: EventId { ms, seq: 0 },
            fields: Vec::new(),
        };
        let streams = || vec![vec![event(1), event(4)], vec![event(2), event(3)]];
        let ids = |events: Vec<StoredEvent>| events.iter().map(|e| e.id.ms).collect::<Vec<_>>();
        assert_eq!(
            ids(merge(streams(), EventRange::After(EventId::ZERO, 3))),
            [1, 2, 3]
        );
        assert_eq!(ids(merge(streams(), EventRange::Last(2))), [3, 4]);
    }

    #[test]
    fn a_stream_key_with_braces_or_no_cap_is_refused() {
        assert!(EventStream::default().validate().is_ok());
        for (key, max_len) in [("", 1), ("a{b}", 1), ("a", 0)] {
            let stream = EventStream {
                key: key.into(),
                max_len,
            };
            assert!(stream.validate().is_err(), "{key} {max_len}");
        }
    }
}
