//! Session events as they are recorded, each given once: what `dsession
//! events tail --follow` and `GET /v1/events` poll.

use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use crate::error::Result;
use crate::manager::SessionManager;
use crate::store::{EventId, EventRange};
use crate::types::SessionEvent;

/// The most events one poll reads besides those it read before.
const BATCH: usize = 1000;

/// On a Redis Cluster each slot's stream numbers its events by its own
/// master's clock, so an event may be appended with an id below one
/// already given from another stream, within a millisecond, or within the
/// masters' clock skew. Each poll there reads again this far behind the
/// latest id given, and skips the events it gave.
const CLUSTER_LOOKBACK_MS: u64 = 1000;

/// Reads the events after a place in the stream, poll by poll.
#[derive(Debug)]
pub struct EventTail {
    sessions: SessionManager,
    after: EventId,
    lookback_ms: u64,
    /// Events given within the lookback, by id and a hash of their fields.
    given: BTreeSet<(EventId, u64)>,
}

fn key(event: &SessionEvent) -> Option<(EventId, u64)> {
    let id = EventId::parse(&event.id).ok()?;
    let mut hasher = DefaultHasher::new();
    (
        &event.event,
        &event.user,
        &event.session,
        &event.detail,
        &event.other,
    )
        .hash(&mut hasher);
    Some((id, hasher.finish()))
}

impl EventTail {
    /// A tail that gives the events after `after`.
    pub fn after(sessions: &SessionManager, after: EventId) -> Self {
        let lookback_ms = match sessions.store().is_sharded() {
            true => CLUSTER_LOOKBACK_MS,
            false => 0,
        };
        Self {
            sessions: sessions.clone(),
            after,
            lookback_ms,
            given: BTreeSet::new(),
        }
    }

    /// A tail from the latest event: the latest `last` events, oldest
    /// first, and the tail that gives those recorded after them.
    pub async fn latest(
        sessions: &SessionManager,
        last: usize,
    ) -> Result<(Self, Vec<SessionEvent>)> {
        let mut tail = Self::after(sessions, EventId::ZERO);
        // Even when none is given, the tail starts at the latest, not at
        // the start of the stream.
        let events = sessions.read_events(EventRange::Last(last.max(1))).await?;
        tail.note(&events);
        let skip = events.len().saturating_sub(last);
        Ok((tail, events.into_iter().skip(skip).collect()))
    }

    /// The events recorded after those given so far, oldest first, at
    /// most about a thousand; none when nothing new was recorded.
    pub async fn next(&mut self) -> Result<Vec<SessionEvent>> {
        let from = match self.lookback_ms {
            0 => self.after,
            lookback => EventId {
                ms: self.after.ms.saturating_sub(lookback),
                seq: 0,
            },
        };
        let read = self
            .sessions
            .read_events(EventRange::After(from, BATCH + self.given.len()))
            .await?;
        let fresh: Vec<SessionEvent> = read
            .into_iter()
            .filter(|event| key(event).is_none_or(|key| !self.given.contains(&key)))
            .collect();
        self.note(&fresh);
        Ok(fresh)
    }

    /// Records `events` as given.
    fn note(&mut self, events: &[SessionEvent]) {
        for key in events.iter().filter_map(key) {
            self.after = self.after.max(key.0);
            if self.lookback_ms > 0 {
                self.given.insert(key);
            }
        }
        let horizon = self.after.ms.saturating_sub(self.lookback_ms);
        self.given.retain(|(id, _)| id.ms >= horizon);
    }
}
