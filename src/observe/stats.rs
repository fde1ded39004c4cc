//! Process-wide counters of what happens across all lanes (per-topic totals live in
//! [`super::state::TopicTotals`]), exported as metrics.

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
    pub redis_errors: Counter,
    /// Exactly-once batches Redis refused (stale writer, or writes lost in a failover).
    pub refused_batches: Counter,
    /// Times Redis held an older data set than it had acknowledged ([`super::continuity`]).
    pub redis_rollbacks: Counter,
    /// Times a partition was paused because its list was full.
    pub pauses: Counter,
    /// Exactly-once partitions whose record or commit lay outside the partition's offsets when
    /// they were assigned (resumed from a marked commit inside, else the log start).
    pub resume_out_of_range: Counter,
    /// Partitions held because their position was out of range (or none was committed) and
    /// `auto.offset.reset = error` refused to reset it.
    pub offset_resets_refused: Counter,
}
