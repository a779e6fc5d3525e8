//! What a near cache did: hits, misses, invalidations, flushes by reason,
//! evictions, and what it holds now.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a near cache emptied itself: each reason is a label value of the
/// service's flush metric, a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// The tracking connection closed or failed: invalidations may be lost.
    Disconnected,
    /// The tracking connection did not answer its heartbeat in time.
    Silent,
    /// Redis invalidated every key (`FLUSHALL`, `FLUSHDB`).
    Server,
    /// The server stopped being the one this store writes to: a failover,
    /// a slot that moved, a master the store gave up.
    Topology,
}

impl Flush {
    /// Every reason, in label order.
    pub const ALL: [Self; 4] = [
        Self::Disconnected,
        Self::Silent,
        Self::Server,
        Self::Topology,
    ];

    /// The reason as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Disconnected => "disconnected",
            Self::Silent => "silent",
            Self::Server => "server",
            Self::Topology => "topology",
        }
    }
}

/// A near cache's counters at one moment ([`crate::store::Store::near_cache`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NearCacheCounts {
    /// Reads answered from memory.
    pub hits: u64,
    /// Reads sent to Redis, their answers then kept.
    pub misses: u64,
    /// Keys dropped because Redis said they changed.
    pub invalidations: u64,
    /// Times the cache emptied itself, per reason, in [`Flush::ALL`] order.
    pub flushes: [u64; 4],
    /// Entries dropped to keep the bounds.
    pub evictions: u64,
    /// Entries held now.
    pub entries: u64,
    /// Bytes held now, estimated.
    pub bytes: u64,
}

impl NearCacheCounts {
    /// Hits out of every read, 0 before the first.
    pub fn hit_rate(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }
}

/// The live counters, shared by every server's cache of one store.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
    flushes: [AtomicU64; 4],
    evictions: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    /// One batch's reads: `hits` answered from memory, `misses` sent.
    pub(super) fn read(&self, hits: usize, misses: usize) {
        if hits > 0 {
            self.hits.fetch_add(hits as u64, Ordering::Relaxed);
        }
        if misses > 0 {
            self.misses.fetch_add(misses as u64, Ordering::Relaxed);
        }
    }

    pub(super) fn invalidated(&self) {
        self.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn evicted(&self) {
        self.evictions.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn added(&self, bytes: usize) {
        self.entries.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(super) fn removed(&self, bytes: usize) {
        self.entries.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes as u64, Ordering::Relaxed);
    }

    pub(super) fn flushed(&self, why: Flush, entries: usize, bytes: usize) {
        let index = Flush::ALL.iter().position(|&reason| reason == why);
        self.flushes[index.expect("every reason is listed")].fetch_add(1, Ordering::Relaxed);
        self.released(entries, bytes);
    }

    /// `entries` entries of `bytes` in all are no longer held.
    pub(super) fn released(&self, entries: usize, bytes: usize) {
        self.entries.fetch_sub(entries as u64, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> NearCacheCounts {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        NearCacheCounts {
            hits: load(&self.hits),
            misses: load(&self.misses),
            invalidations: load(&self.invalidations),
            flushes: self.flushes.each_ref().map(load),
            evictions: load(&self.evictions),
            entries: load(&self.entries),
            bytes: load(&self.bytes),
        }
    }
}
