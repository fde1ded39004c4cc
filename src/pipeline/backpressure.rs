//! Backpressure from a full list into Kafka: wait, without consuming, until the list has drained.
//!
//! A lane whose capped push did not fit keeps its leftover messages, pauses its partition in the
//! consumer (which keeps polling, so the group stays healthy and librdkafka stops prefetching for
//! it) and calls [`wait_for_drain`]. Only when the list is down to the low-water mark does the lane
//! resume and push its leftover first — so order holds and nothing is dropped or re-read.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::{Cap, Structure};
use crate::logging::RateLimit;
use crate::redis::RedisSink;

static LLEN_ERRORS: RateLimit = RateLimit::new(Duration::from_secs(5));

/// How waiting ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// The list is at or below the low-water mark; its length then.
    Below(u64),
    /// The lane was asked to stop first.
    Stopped,
}

/// Polls what waits at the key every `interval` — a list's length, a stream's unfinished work
/// ([`RedisSink::waiting`]) — until it is at most `cap.low_water`, calling
/// `between_checks` before each look (the lane uses it to release prefetched messages that the
/// pause made obsolete, which librdkafka frees only when the queue is served).
pub async fn wait_for_drain(
    sink: &RedisSink,
    list_key: &str,
    structure: Structure,
    cap: Cap,
    interval: Duration,
    stop: &CancellationToken,
    mut between_checks: impl FnMut(),
) -> Drained {
    loop {
        between_checks();
        match sink.waiting(list_key, structure).await {
            Ok(len) if len <= cap.low_water => return Drained::Below(len),
            Ok(_) => {}
            Err(e) => {
                if let Some(held) = LLEN_ERRORS.check() {
                    warn!(list = list_key, error = %e, suppressed = held, "cannot read the list length while paused; retrying");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.cancelled() => return Drained::Stopped,
        }
    }
}
