//! Hands memory the allocator keeps after a burst back to the system.
//!
//! glibc's malloc keeps freed memory in its arenas for reuse: after a backlog of large messages
//! (librdkafka's fetch buffers, the lanes' batches) the process would go on holding its peak —
//! hundreds of MiB at 512 partitions of 10 kB messages (docs/benchmarks.md) — long after it
//! drained. `malloc_trim` returns the free pages of every arena. It runs once a burst is over —
//! when a second settled less than a tenth of the busiest second since the last trim — not during
//! one, when the pages it returned would be faulted in again at once; a steady flow never trims.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::observe::state::Registry;

/// How often the bridge looks whether a burst is over.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// A second that settles less than the busiest one since the last trim divided by this ends a
/// burst.
const BURST_OVER: u64 = 10;

/// Returns free memory to the system after each burst of deliveries, until `stop`.
pub async fn return_free_memory(registry: Arc<Registry>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(LOOK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = settled_batches(&registry);
    let mut bursts = Bursts::default();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.cancelled() => return,
        }
        let now = settled_batches(&registry);
        if bursts.over_after(now.saturating_sub(seen)) {
            trim();
        }
        seen = now;
    }
}

/// Tells from the batches settled each second when a burst is over.
#[derive(Debug, Default)]
struct Bursts {
    /// The busiest second since the burst before ended.
    busiest: u64,
}

impl Bursts {
    /// Whether the burst is over after a second that settled `settled` batches.
    fn over_after(&mut self, settled: u64) -> bool {
        self.busiest = self.busiest.max(settled);
        let over = settled.saturating_mul(BURST_OVER) < self.busiest;
        if over {
            self.busiest = 0;
        }
        over
    }
}

/// Batches settled since start, over every topic.
fn settled_batches(registry: &Registry) -> u64 {
    registry
        .totals()
        .iter()
        .map(|(_, totals)| totals.batches.load(Ordering::Relaxed))
        .sum()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own arenas; 0 keeps no padding at the top.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators return memory by themselves (or offer no such call).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_over_once_when_the_flow_falls_to_a_tenth() {
        let mut bursts = Bursts::default();
        let seconds = [0, 0, 500, 800, 700, 90, 60, 0, 0, 300, 300, 29, 29, 0];
        let over: Vec<bool> = seconds.iter().map(|&s| bursts.over_after(s)).collect();
        let at: Vec<usize> = (0..over.len()).filter(|&i| over[i]).collect();
        // 90 is more than a tenth of 800, 60 is not; 29 is less than a tenth of 300, and 0 of 29.
        assert_eq!(at, [6, 11, 13]);
    }

    #[test]
    fn a_steady_flow_is_never_over() {
        let mut bursts = Bursts::default();
        assert!((0..100).all(|_| !bursts.over_after(200)));
    }
}
