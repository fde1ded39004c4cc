//! Process-wide counters, summarised in logs (and the basis for metrics).

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    /// Messages acknowledged by Redis on their list.
    pub delivered: Counter,
    /// Messages acknowledged by Redis on a dead-letter list.
    pub dead_letters: Counter,
    pub batches: Counter,
    pub redis_errors: Counter,
    /// Exactly-once batches Redis refused (stale writer, or writes lost in a failover).
    pub refused_batches: Counter,
    /// Times a partition was paused because its list was full.
    pub pauses: Counter,
}

impl Stats {
    pub fn record_batch(&self, messages: u64, dead_letters: u64) {
        self.delivered.add(messages);
        self.dead_letters.add(dead_letters);
        self.batches.inc();
    }
}
