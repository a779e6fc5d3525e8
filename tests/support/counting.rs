//! A store decorator that counts round trips and the commands in them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use dsession::store::{self, Reply, Store, StoreError, Transaction};

/// A store wrapper that counts round trips and the commands in them.
pub struct Counting<S> {
    inner: S,
    round_trips: Arc<AtomicUsize>,
    commands: Arc<AtomicUsize>,
}

impl<S: Store> Counting<S> {
    /// Wraps `inner`; the counter is shared with the returned handle.
    pub fn new(inner: S) -> (Self, Arc<AtomicUsize>) {
        let (counting, round_trips, _) = Self::with_commands(inner);
        (counting, round_trips)
    }

    /// Wraps `inner`; returns the round-trip and the command counters.
    pub fn with_commands(inner: S) -> (Self, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let round_trips = Arc::new(AtomicUsize::new(0));
        let commands = Arc::new(AtomicUsize::new(0));
        let counting = Self {
            inner,
            round_trips: Arc::clone(&round_trips),
            commands: Arc::clone(&commands),
        };
        (counting, round_trips, commands)
    }

    fn count(&self, commands: &[store::Command]) {
        self.round_trips.fetch_add(1, Ordering::SeqCst);
        self.commands.fetch_add(commands.len(), Ordering::SeqCst);
    }
}

struct CountingTransaction {
    inner: Box<dyn Transaction>,
    round_trips: Arc<AtomicUsize>,
    commands: Arc<AtomicUsize>,
}

#[async_trait]
impl Transaction for CountingTransaction {
    async fn commit(
        self: Box<Self>,
        commands: Vec<store::Command>,
    ) -> Result<Option<Vec<Reply>>, StoreError> {
        self.round_trips.fetch_add(1, Ordering::SeqCst);
        self.commands.fetch_add(commands.len(), Ordering::SeqCst);
        self.inner.commit(commands).await
    }
}

#[async_trait]
impl<S: Store> Store for Counting<S> {
    async fn batch(&self, commands: Vec<store::Command>) -> Result<Vec<Reply>, StoreError> {
        self.count(&commands);
        self.inner.batch(commands).await
    }

    async fn atomic(&self, commands: Vec<store::Command>) -> Result<Vec<Reply>, StoreError> {
        self.count(&commands);
        self.inner.atomic(commands).await
    }

    async fn watch(
        &self,
        keys: Vec<String>,
        reads: Vec<store::Command>,
    ) -> Result<(Box<dyn Transaction>, Vec<Reply>), StoreError> {
        self.count(&reads);
        let (inner, replies) = self.inner.watch(keys, reads).await?;
        let transaction = CountingTransaction {
            inner,
            round_trips: Arc::clone(&self.round_trips),
            commands: Arc::clone(&self.commands),
        };
        Ok((Box::new(transaction), replies))
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.inner.ready().await
    }
}
