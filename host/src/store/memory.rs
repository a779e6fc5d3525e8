//! The embedded store: a map in this process with Redis's semantics for
//! every command a policy sends, TTLs and `WATCH` included. Nothing is
//! shared with other processes, so it suits one service or a trial run.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::{
    Command, EventArgs, EventId, EventRange, EventStream, ExpireArgs, ExpireCondition,
    GetExpireArgs, HashDeleteArgs, HashExistsArgs, HashGetArgs, HashSetArgs, Reply, SetArgs,
    SetCondition, Store, StoreError, StoredEvent, Transaction,
};

#[derive(Debug, Clone)]
enum Value {
    Text(String),
    Hash(HashMap<String, String>),
}

#[derive(Debug, Clone)]
struct Entry {
    value: Value,
    expires_at: Option<Instant>,
}

impl Entry {
    fn alive(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// A watched key: how many transactions watch it and the write counter at
/// its last write.
#[derive(Debug, Default)]
struct Watched {
    watchers: usize,
    last_write: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Counts writes; only watched keys remember theirs, so the map stays
    /// as small as the set of open transactions.
    writes: u64,
    watched: HashMap<String, Watched>,
    /// Commands since the last sweep of expired keys.
    since_sweep: usize,
    events: Events,
}

/// The session-event stream: the latest events, at most `max_len`.
#[derive(Debug, Default)]
struct Events {
    stream: VecDeque<StoredEvent>,
    max_len: usize,
    last: Option<EventId>,
}

impl Events {
    /// Appends an event as `XADD … MAXLEN` does, with an id after the last.
    fn append(&mut self, fields: &[(String, String)]) -> EventId {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        let id = match self.last {
            Some(last) if last.ms >= ms => EventId {
                ms: last.ms,
                seq: last.seq + 1,
            },
            _ => EventId { ms, seq: 0 },
        };
        self.last = Some(id);
        self.stream.push_back(StoredEvent {
            id,
            fields: fields.to_vec(),
        });
        while self.stream.len() > self.max_len {
            self.stream.pop_front();
        }
        id
    }

    fn read(&self, range: EventRange) -> Vec<StoredEvent> {
        match range {
            EventRange::After(after, count) => self
                .stream
                .iter()
                .filter(|event| event.id > after)
                .take(count)
                .cloned()
                .collect(),
            EventRange::Last(count) => {
                let skip = self.stream.len().saturating_sub(count);
                self.stream.iter().skip(skip).cloned().collect()
            }
        }
    }
}

/// Sweep expired keys after at least this many commands, so that keys
/// nobody reads again do not pile up.
const SWEEP_EVERY: usize = 4096;

fn wrong_type(key: &str) -> StoreError {
    StoreError::corrupt(format!(
        "WRONGTYPE operation against key {key:?} holding the wrong kind of value"
    ))
}

fn seconds(seconds: i64) -> Duration {
    Duration::from_secs(seconds.unsigned_abs())
}

impl Inner {
    fn touch(&mut self, key: &str) {
        self.writes += 1;
        if let Some(watched) = self.watched.get_mut(key) {
            watched.last_write = self.writes;
        }
    }

    /// The live entry at `key`; an expired one is removed (a write, as in
    /// Redis, where expiry invalidates a `WATCH`).
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self.entries.get(key).is_some_and(|entry| !entry.alive(now)) {
            self.entries.remove(key);
            self.touch(key);
        }
        self.entries.get_mut(key)
    }

    fn hash(
        &mut self,
        key: &str,
        now: Instant,
    ) -> Result<Option<&mut HashMap<String, String>>, StoreError> {
        match self.live(key, now) {
            None => Ok(None),
            Some(Entry {
                value: Value::Hash(hash),
                ..
            }) => Ok(Some(hash)),
            Some(_) => Err(wrong_type(key)),
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.since_sweep += 1;
        // A sweep visits every key: sweeping once per as many commands as
        // there are keys keeps its cost per command constant as the store
        // grows.
        if self.since_sweep < SWEEP_EVERY.max(self.entries.len()) {
            return;
        }
        self.since_sweep = 0;
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, entry)| !entry.alive(now))
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            self.entries.remove(&key);
            self.touch(&key);
        }
    }

    fn run(&mut self, command: &Command, now: Instant) -> Result<Reply, StoreError> {
        command.validate()?;
        self.sweep(now);
        Ok(match command {
            Command::Get(key) => match self.live(key, now) {
                None => Reply::Nil,
                Some(Entry {
                    value: Value::Text(text),
                    ..
                }) => Reply::Text(text.clone()),
                Some(_) => return Err(wrong_type(key)),
            },
            Command::Set(SetArgs {
                key,
                value,
                ttl_seconds,
                condition,
            }) => {
                let exists = self.live(key, now).is_some();
                let allowed = match condition {
                    SetCondition::Always => true,
                    SetCondition::IfAbsent => !exists,
                    SetCondition::IfPresent => exists,
                };
                if !allowed {
                    return Ok(Reply::Nil);
                }
                let expires_at = (*ttl_seconds > 0).then(|| now + seconds(*ttl_seconds));
                self.entries.insert(
                    key.clone(),
                    Entry {
                        value: Value::Text(value.clone()),
                        expires_at,
                    },
                );
                self.touch(key);
                Reply::Ok
            }
            Command::Del(keys) => {
                let mut removed = 0;
                for key in keys {
                    if self.live(key, now).is_some() {
                        self.entries.remove(key);
                        self.touch(key);
                        removed += 1;
                    }
                }
                Reply::Integer(removed)
            }
            Command::Exists(keys) => {
                let count = keys
                    .iter()
                    .filter(|key| self.live(key, now).is_some())
                    .count();
                Reply::Integer(i64::try_from(count).unwrap_or(i64::MAX))
            }
            Command::Ttl(key) => Reply::Integer(match self.live(key, now) {
                None => -2,
                Some(Entry {
                    expires_at: None, ..
                }) => -1,
                Some(Entry {
                    expires_at: Some(at),
                    ..
                }) => i64::try_from((*at - now).as_secs_f64().round() as u64).unwrap_or(i64::MAX),
            }),
            Command::Expire(ExpireArgs {
                key,
                seconds: ttl,
                condition,
            }) => {
                let Some(entry) = self.live(key, now) else {
                    return Ok(Reply::Integer(0));
                };
                let at = now + seconds(*ttl);
                let allowed = match (condition, entry.expires_at) {
                    (ExpireCondition::Always, _) => true,
                    (ExpireCondition::IfNone, current) => current.is_none(),
                    (ExpireCondition::IfLater, current) => {
                        current.is_some_and(|current| at > current)
                    }
                };
                if !allowed {
                    return Ok(Reply::Integer(0));
                }
                entry.expires_at = Some(at);
                self.touch(key);
                Reply::Integer(1)
            }
            Command::HashSet(HashSetArgs { key, fields }) => {
                let added = match self.hash(key, now)? {
                    Some(hash) => fields
                        .iter()
                        .filter(|(field, value)| {
                            hash.insert(field.clone(), value.clone()).is_none()
                        })
                        .count(),
                    None => {
                        let hash: HashMap<String, String> = fields.iter().cloned().collect();
                        let added = hash.len();
                        self.entries.insert(
                            key.clone(),
                            Entry {
                                value: Value::Hash(hash),
                                expires_at: None,
                            },
                        );
                        added
                    }
                };
                self.touch(key);
                Reply::Integer(i64::try_from(added).unwrap_or(i64::MAX))
            }
            Command::HashDelete(HashDeleteArgs { key, fields }) => {
                let Some(hash) = self.hash(key, now)? else {
                    return Ok(Reply::Integer(0));
                };
                let removed = fields
                    .iter()
                    .filter(|field| hash.remove(*field).is_some())
                    .count();
                let empty = hash.is_empty();
                if empty {
                    self.entries.remove(key);
                }
                if removed > 0 {
                    self.touch(key);
                }
                Reply::Integer(i64::try_from(removed).unwrap_or(i64::MAX))
            }
            Command::HashGetAll(key) => Reply::Pairs(match self.hash(key, now)? {
                None => Vec::new(),
                Some(hash) => hash.iter().map(|(f, v)| (f.clone(), v.clone())).collect(),
            }),
            Command::HashExists(HashExistsArgs { key, field }) => {
                let exists = self
                    .hash(key, now)?
                    .is_some_and(|hash| hash.contains_key(field));
                Reply::Integer(i64::from(exists))
            }
            Command::GetExpire(GetExpireArgs { key, seconds: ttl }) => {
                let text = match self.live(key, now) {
                    None => return Ok(Reply::Nil),
                    Some(Entry {
                        value: Value::Text(text),
                        expires_at,
                    }) => {
                        *expires_at = Some(now + seconds(*ttl));
                        text.clone()
                    }
                    Some(_) => return Err(wrong_type(key)),
                };
                self.touch(key);
                Reply::Text(text)
            }
            Command::HashGet(HashGetArgs { key, field }) => match self.hash(key, now)? {
                Some(hash) => hash.get(field).cloned().map_or(Reply::Nil, Reply::Text),
                None => Reply::Nil,
            },
            Command::AppendEvent(EventArgs { fields, .. }) => {
                Reply::Text(self.events.append(fields).to_string())
            }
        })
    }

    fn run_all(&mut self, commands: &[Command]) -> Result<Vec<Reply>, StoreError> {
        let now = Instant::now();
        commands
            .iter()
            .map(|command| self.run(command, now))
            .collect()
    }
}

/// The embedded in-memory store. Cloning it shares the same data.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_events(&EventStream::default())
    }
}

impl MemoryStore {
    /// An empty store, keeping [`EventStream::default`]'s number of events.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that keeps at most `events.max_len` session events
    /// (in memory, so the stream's key means nothing here).
    pub fn with_events(events: &EventStream) -> Self {
        let inner = Inner {
            events: Events {
                max_len: usize::try_from(events.max_len).unwrap_or(usize::MAX),
                ..Events::default()
            },
            ..Inner::default()
        };
        Self {
            inner: Arc::new(Mutex::new(inner)),
        }
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panic while holding the lock cannot leave a half-applied command:
    // each command either changes the map whole or returns early.
    inner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl Store for MemoryStore {
    async fn batch(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        lock(&self.inner).run_all(&commands)
    }

    async fn atomic(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        lock(&self.inner).run_all(&commands)
    }

    async fn watch(
        &self,
        keys: Vec<String>,
        reads: Vec<Command>,
    ) -> Result<(Box<dyn Transaction>, Vec<Reply>), StoreError> {
        let mut inner = lock(&self.inner);
        let now = Instant::now();
        let mut seen = Vec::with_capacity(keys.len());
        for key in keys {
            let expires_at = inner.live(&key, now).and_then(|entry| entry.expires_at);
            let writes = inner.writes;
            let watched = inner.watched.entry(key.clone()).or_default();
            if watched.watchers == 0 {
                watched.last_write = writes;
            }
            watched.watchers += 1;
            seen.push(Seen {
                last_write: watched.last_write,
                expires_at,
                key,
            });
        }
        let transaction = MemoryTransaction {
            inner: Arc::clone(&self.inner),
            seen,
        };
        let replies = inner.run_all(&reads)?;
        Ok((Box::new(transaction), replies))
    }

    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn read_events(&self, range: EventRange) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(lock(&self.inner).events.read(range))
    }
}

/// A watched key as it was when the watch began.
#[derive(Debug)]
struct Seen {
    key: String,
    last_write: u64,
    expires_at: Option<Instant>,
}

#[derive(Debug)]
struct MemoryTransaction {
    inner: Arc<Mutex<Inner>>,
    seen: Vec<Seen>,
}

impl MemoryTransaction {
    fn unwatch(&mut self, inner: &mut Inner) {
        for seen in self.seen.drain(..) {
            if let Some(watched) = inner.watched.get_mut(&seen.key) {
                watched.watchers -= 1;
                if watched.watchers == 0 {
                    inner.watched.remove(&seen.key);
                }
            }
        }
    }
}

#[async_trait]
impl Transaction for MemoryTransaction {
    async fn commit(
        mut self: Box<Self>,
        commands: Vec<Command>,
    ) -> Result<Option<Vec<Reply>>, StoreError> {
        let inner_arc = Arc::clone(&self.inner);
        let mut inner = lock(&inner_arc);
        let now = Instant::now();
        let changed = self.seen.iter().any(|seen| {
            let written = inner
                .watched
                .get(&seen.key)
                .is_some_and(|watched| watched.last_write != seen.last_write);
            written || seen.expires_at.is_some_and(|at| at <= now)
        });
        self.unwatch(&mut inner);
        if changed {
            return Ok(None);
        }
        inner.run_all(&commands).map(Some)
    }
}

impl Drop for MemoryTransaction {
    fn drop(&mut self) {
        if !self.seen.is_empty() {
            let inner_arc = Arc::clone(&self.inner);
            self.unwatch(&mut lock(&inner_arc));
        }
    }
}
