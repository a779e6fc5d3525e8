//! A store decorator that counts what a policy sends: the bench's figures,
//! the tests' round-trip checks and the slot-layout check all read it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{Command, MemoryPolicy, Reply, Store, StoreError, Transaction};

/// Counts the round trips and commands that pass through it to the store
/// it wraps, and, when [`Tap::recording`], keeps each call.
///
/// What it counts, the one definition the bench and the tests share:
/// - a **round trip** is one call of the store: a [`Store::batch`], a
///   [`Store::atomic`], a [`Store::watch`] or a [`Transaction::commit`];
/// - a **command** is one [`Command`] the policy sent: each one of a batch,
///   an atomic step, a watch's reads or a commit;
/// - the **framing** is what Redis receives besides those: `MULTI` and
///   `EXEC` around an atomic step and around a commit of any command,
///   `WATCH` before a watch of any key, `UNWATCH` for a commit of none.
///
/// Commands and framing together are the commands as Redis sees them
/// ([`Counts::redis_commands`]). Clones share the counters and the record.
#[derive(Clone)]
pub struct Tap {
    inner: Arc<dyn Store>,
    shared: Arc<Shared>,
}

struct Shared {
    counters: Counters,
    /// The calls since the last [`Tap::take_calls`]; None unless recording.
    calls: Option<Mutex<Vec<Call>>>,
    transactions: AtomicU64,
}

/// The running totals of a [`Tap`], as defined there. Read one with
/// `load`, reset it with `store(0, …)`, or take all with [`Counters::take`].
#[derive(Debug, Default)]
pub struct Counters {
    /// Round trips.
    pub round_trips: AtomicU64,
    /// The policy's commands.
    pub commands: AtomicU64,
    /// The commands Redis receives around the policy's.
    pub framing: AtomicU64,
}

/// The totals of a [`Tap`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Round trips.
    pub round_trips: u64,
    /// The policy's commands.
    pub commands: u64,
    /// The commands Redis receives around the policy's.
    pub framing: u64,
}

impl Counts {
    /// The commands as Redis sees them: the policy's and the framing.
    pub fn redis_commands(&self) -> u64 {
        self.commands + self.framing
    }
}

impl Counters {
    /// The totals so far; every counter starts again from 0.
    pub fn take(&self) -> Counts {
        Counts {
            round_trips: self.round_trips.swap(0, Ordering::Relaxed),
            commands: self.commands.swap(0, Ordering::Relaxed),
            framing: self.framing.swap(0, Ordering::Relaxed),
        }
    }
}

/// One call a recording [`Tap`] saw, with what it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// A [`Store::batch`].
    Batch(Vec<Command>),
    /// A [`Store::atomic`].
    Atomic(Vec<Command>),
    /// A [`Store::watch`].
    Watch {
        /// Numbers the transaction, so that its commit can be found.
        transaction: u64,
        /// The watched keys.
        keys: Vec<String>,
        /// The reads after the watch.
        reads: Vec<Command>,
    },
    /// A [`Transaction::commit`].
    Commit {
        /// The number of the watch that began the transaction.
        transaction: u64,
        /// The commands committed.
        commands: Vec<Command>,
    },
}

/// What one call sends: the policy's commands and the framing around them,
/// as [`Tap`] defines them.
#[derive(Clone, Copy)]
enum Shape {
    Batch,
    Atomic,
    Watch { keys: usize },
    Commit,
}

impl Shape {
    fn framing(self, commands: usize) -> usize {
        match self {
            Self::Batch => 0,
            Self::Atomic => 2,
            Self::Watch { keys } => usize::from(keys > 0),
            Self::Commit if commands == 0 => 1,
            Self::Commit => 2,
        }
    }
}

impl Tap {
    /// Counts what reaches `inner`.
    pub fn new(inner: impl Store) -> Self {
        Self::shared(Arc::new(inner))
    }

    /// Like [`Self::new`], for a store that is shared already.
    pub fn shared(inner: Arc<dyn Store>) -> Self {
        Self::with(inner, None)
    }

    /// Counts what reaches `inner` and keeps each call for
    /// [`Self::take_calls`]. The record grows with every call.
    pub fn recording(inner: impl Store) -> Self {
        Self::recording_shared(Arc::new(inner))
    }

    /// Like [`Self::recording`], for a store that is shared already.
    pub fn recording_shared(inner: Arc<dyn Store>) -> Self {
        Self::with(inner, Some(Mutex::default()))
    }

    fn with(inner: Arc<dyn Store>, calls: Option<Mutex<Vec<Call>>>) -> Self {
        let shared = Shared {
            counters: Counters::default(),
            calls,
            transactions: AtomicU64::new(0),
        };
        Self {
            inner,
            shared: Arc::new(shared),
        }
    }

    /// The running totals.
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// The calls since the last take, oldest first; none unless recording.
    pub fn take_calls(&self) -> Vec<Call> {
        self.shared
            .calls
            .as_ref()
            .map(|calls| std::mem::take(&mut *calls.lock().unwrap_or_else(|p| p.into_inner())))
            .unwrap_or_default()
    }

    fn count(&self, shape: Shape, commands: &[Command]) {
        let counters = &self.shared.counters;
        let framing = shape.framing(commands.len());
        counters.round_trips.fetch_add(1, Ordering::Relaxed);
        counters
            .commands
            .fetch_add(commands.len() as u64, Ordering::Relaxed);
        counters
            .framing
            .fetch_add(framing as u64, Ordering::Relaxed);
    }

    /// Keeps the call `make` builds, when recording.
    fn record(&self, make: impl FnOnce() -> Call) {
        if let Some(calls) = &self.shared.calls {
            let call = make();
            calls.lock().unwrap_or_else(|p| p.into_inner()).push(call);
        }
    }
}

impl fmt::Debug for Tap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tap")
            .field("counters", &self.shared.counters)
            .field("recording", &self.shared.calls.is_some())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Store for Tap {
    async fn batch(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        self.count(Shape::Batch, &commands);
        self.record(|| Call::Batch(commands.clone()));
        self.inner.batch(commands).await
    }

    async fn atomic(&self, commands: Vec<Command>) -> Result<Vec<Reply>, StoreError> {
        self.count(Shape::Atomic, &commands);
        self.record(|| Call::Atomic(commands.clone()));
        self.inner.atomic(commands).await
    }

    async fn watch(
        &self,
        keys: Vec<String>,
        reads: Vec<Command>,
    ) -> Result<(Box<dyn Transaction>, Vec<Reply>), StoreError> {
        let transaction = self.shared.transactions.fetch_add(1, Ordering::Relaxed);
        self.count(Shape::Watch { keys: keys.len() }, &reads);
        self.record(|| Call::Watch {
            transaction,
            keys: keys.clone(),
            reads: reads.clone(),
        });
        let (inner, replies) = self.inner.watch(keys, reads).await?;
        let tapped = TapTransaction {
            inner,
            tap: self.clone(),
            transaction,
        };
        Ok((Box::new(tapped), replies))
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.inner.ready().await
    }

    async fn confirm_writes(&self) -> Result<(), StoreError> {
        self.inner.confirm_writes().await
    }

    async fn memory_policies(&self) -> Result<Vec<MemoryPolicy>, StoreError> {
        self.inner.memory_policies().await
    }

    #[cfg(feature = "redis")]
    fn near_cache(&self) -> Option<crate::store::NearCacheCounts> {
        self.inner.near_cache()
    }

    fn is_sharded(&self) -> bool {
        self.inner.is_sharded()
    }
}

struct TapTransaction {
    inner: Box<dyn Transaction>,
    tap: Tap,
    transaction: u64,
}

#[async_trait]
impl Transaction for TapTransaction {
    async fn commit(
        self: Box<Self>,
        commands: Vec<Command>,
    ) -> Result<Option<Vec<Reply>>, StoreError> {
        self.tap.count(Shape::Commit, &commands);
        self.tap.record(|| Call::Commit {
            transaction: self.transaction,
            commands: commands.clone(),
        });
        self.inner.commit(commands).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn counts_the_policys_commands_and_the_framing_redis_adds() {
        let tap = Tap::recording(MemoryStore::new());
        let get = || Command::Get("k".into());
        tap.batch(vec![get(), get()]).await.unwrap();
        tap.atomic(vec![get()]).await.unwrap();
        let (transaction, _) = tap.watch(vec!["k".into()], vec![get()]).await.unwrap();
        transaction.commit(vec![get()]).await.unwrap();
        let (transaction, _) = tap.watch(Vec::new(), Vec::new()).await.unwrap();
        transaction.commit(Vec::new()).await.unwrap();
        let counts = tap.counters().take();
        assert_eq!(counts.round_trips, 6);
        assert_eq!(counts.commands, 5);
        // MULTI/EXEC twice, one WATCH, one UNWATCH.
        assert_eq!(counts.framing, 6);
        assert_eq!(counts.redis_commands(), 11);
        assert_eq!(tap.counters().take(), Counts::default());
        let calls = tap.take_calls();
        assert_eq!(calls.len(), 6);
        assert_eq!(
            calls[3],
            Call::Commit {
                transaction: 0,
                commands: vec![get()]
            }
        );
        assert!(tap.take_calls().is_empty());
    }
}
