//! Hands memory the allocator keeps after a burst back to the system.
//!
//! An allocator keeps freed memory for reuse: after a backlog of large messages (librdkafka's
//! fetch buffers, the lanes' batches) the process would go on holding its peak — hundreds of MiB
//! at 512 partitions of 10 kB messages (docs/benchmarks.md) — long after it drained. Once a burst
//! is over — when a second settled less than a tenth of the busiest second since the last trim —
//! the free pages go back (jemalloc: every arena purged; glibc: `malloc_trim`), not during one,
//! when the pages returned would be faulted in again at once; a steady flow never trims.
//!
//! With the `jemalloc` feature (build.rs) the process runs on jemalloc, set by [`malloc_conf`].

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

/// jemalloc's settings, read when it starts (a `MALLOC_CONF` in the environment still wins):
/// two arenas rather than four per CPU, since a handful of threads allocate (librdkafka's and the
/// runtime's) and each arena holds pages of its own; dirty pages handed back after a second, not
/// ten, by jemalloc's own thread, so an idle bridge shrinks without waiting for its next
/// allocation.
#[cfg(all(feature = "jemalloc", target_os = "linux"))]
#[no_mangle]
#[used]
pub static malloc_conf: MallocConf =
    MallocConf(c"narenas:2,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

/// A C string pointer that may live in a `static`: jemalloc reads it, nothing writes it.
#[cfg(all(feature = "jemalloc", target_os = "linux"))]
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a string literal, never written.
#[cfg(all(feature = "jemalloc", target_os = "linux"))]
unsafe impl Sync for MallocConf {}

#[cfg(all(feature = "jemalloc", target_os = "linux"))]
extern "C" {
    /// jemalloc's control interface (read and write its settings and statistics by name).
    fn mallctl(
        name: *const std::ffi::c_char,
        oldp: *mut std::ffi::c_void,
        oldlenp: *mut usize,
        newp: *mut std::ffi::c_void,
        newlen: usize,
    ) -> std::ffi::c_int;
}

#[cfg(all(feature = "jemalloc", target_os = "linux"))]
fn trim() {
    // 4096 is MALLCTL_ARENAS_ALL: every arena's unused dirty pages go back now.
    // SAFETY: a control call that reads and writes nothing of ours.
    unsafe {
        mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
}

#[cfg(all(not(feature = "jemalloc"), target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own arenas; 0 keeps no padding at the top.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators return memory by themselves (or offer no such call).
#[cfg(not(all(target_os = "linux", any(feature = "jemalloc", target_env = "gnu"))))]
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

    /// jemalloc is this process's malloc and found `malloc_conf` under the name it reads.
    #[cfg(all(feature = "jemalloc", target_os = "linux"))]
    #[test]
    fn jemalloc_runs_with_the_bridges_settings() {
        fn read<T: Default>(name: &std::ffi::CStr) -> T {
            let mut value = T::default();
            let mut len = std::mem::size_of::<T>();
            // SAFETY: `value` is of the type jemalloc documents for `name`, and `len` its size.
            let rc = unsafe {
                mallctl(
                    name.as_ptr(),
                    (&mut value as *mut T).cast(),
                    &mut len,
                    std::ptr::null_mut(),
                    0,
                )
            };
            assert_eq!(rc, 0, "mallctl {name:?}");
            value
        }
        assert_eq!(read::<std::ffi::c_uint>(c"opt.narenas"), 2);
        assert!(read::<bool>(c"opt.background_thread"));
        assert_eq!(read::<isize>(c"opt.dirty_decay_ms"), 1000);
    }
}
