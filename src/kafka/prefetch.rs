//! How much librdkafka may prefetch per partition: one budget shared by the partitions of the
//! subscribed topics.
//!
//! Each partition's queue is split off, so librdkafka's prefetch bounds (`queued.min.messages`,
//! `queued.max.messages.kbytes`) apply per partition, and one fixed figure is wrong at one end or
//! the other: a lone busy partition runs dry between fetches with a small one (docs/benchmarks.md
//! measures it), and hundreds of partitions multiply a large one. So the bridge counts the partitions of its topics
//! when it starts and shares a fixed budget among them, within bounds. The count is of every
//! partition of the topics, not of those this member will be assigned: with several members each
//! gets less than it could, never more than the budget.
//!
//! A partition's queue may run past its share by one fetch, so a fetch asks for no more than the
//! share either (`max.partition.fetch.bytes`): up to 1,024 partitions librdkafka then holds at
//! most twice the byte budget, whatever the partition count. A broker still returns a producer's
//! batch whole when it is larger (Kafka's rule, so that a consumer always makes progress): with
//! producers that batch up to 1 MB (librdkafka's default) each partition may hold one such batch
//! on top (docs/benchmarks.md measures it).

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::Config;

/// The whole budget, shared by all partitions.
const BUDGET_MESSAGES: u32 = 16_000;
const BUDGET_KBYTES: u32 = 16 * 1024;
/// A partition's share never leaves these bounds. The byte floor binds only above 1,024
/// partitions; the message floor only keeps a partition of small messages from fetching a few at a
/// time (the byte share still caps it).
const MESSAGES: (u32, u32) = (250, 16_000);
const KBYTES: (u32, u32) = (16, 8 * 1024);
/// The most one fetch asks of a partition (`max.partition.fetch.bytes`), when its share is larger:
/// more buys nothing measurable (docs/benchmarks.md) and doubles what a fetch holds.
const FETCH_KBYTES: u32 = 512;
/// How long the partition count may take before the bridge starts with [`Prefetch::UNKNOWN`].
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// librdkafka's prefetch bounds for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefetch {
    /// `queued.min.messages`
    pub messages: u32,
    /// `queued.max.messages.kbytes`
    pub kbytes: u32,
}

impl Prefetch {
    /// When the partitions could not be counted: one full batch per partition (1,000 messages /
    /// 1 MiB), enough at 8–64 partitions (docs/benchmarks.md).
    pub const UNKNOWN: Prefetch = Prefetch {
        messages: 1_000,
        kbytes: 1_024,
    };

    /// Each of `partitions` partitions' share of the budget.
    pub fn for_partitions(partitions: usize) -> Prefetch {
        let n = u32::try_from(partitions.max(1)).unwrap_or(u32::MAX);
        Prefetch {
            messages: (BUDGET_MESSAGES / n).clamp(MESSAGES.0, MESSAGES.1),
            kbytes: (BUDGET_KBYTES / n).clamp(KBYTES.0, KBYTES.1),
        }
    }

    /// What one fetch asks of a partition, in KiB: its share, at most [`FETCH_KBYTES`].
    pub fn fetch_kbytes(&self) -> u32 {
        self.kbytes.min(FETCH_KBYTES)
    }

    pub fn apply(&self, cc: &mut ClientConfig) {
        cc.set("queued.min.messages", self.messages.to_string())
            .set("queued.max.messages.kbytes", self.kbytes.to_string())
            .set(
                "max.partition.fetch.bytes",
                (self.fetch_kbytes() * 1024).to_string(),
            );
    }
}

/// Counts the partitions of the configured topics from the brokers' metadata (a short-lived
/// client without a group). `None` if the brokers did not answer in time or know none of the
/// topics yet. Blocking: call it off the async runtime.
pub fn count_partitions(config: &Config) -> Option<usize> {
    let client: BaseConsumer = super::client_config(config)
        .remove("group.id")
        .remove("group.instance.id")
        .create()
        .ok()?;
    let metadata = client.fetch_metadata(None, METADATA_TIMEOUT).ok()?;
    let count: usize = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && config.topics.iter().any(|c| c.name == t.name()))
        .map(|t| t.partitions().len())
        .sum();
    (count > 0).then_some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_the_budget_within_bounds() {
        let share = |n| {
            let p = Prefetch::for_partitions(n);
            (p.messages, p.kbytes)
        };
        assert_eq!(share(1), (16_000, 8_192));
        assert_eq!(share(4), (4_000, 4_096));
        assert_eq!(share(8), (2_000, 2_048));
        assert_eq!(share(64), (250, 256));
        assert_eq!(share(512), (250, 32));
        assert_eq!(share(1024), (250, 16));
        assert_eq!(share(4096), (250, 16));
        assert_eq!(share(0), share(1));
    }

    #[test]
    fn a_fetch_asks_for_no_more_than_the_share() {
        let fetch = |n| Prefetch::for_partitions(n).fetch_kbytes();
        assert_eq!(fetch(1), 512);
        assert_eq!(fetch(64), 256);
        assert_eq!(fetch(512), 32);
        assert_eq!(Prefetch::UNKNOWN.fetch_kbytes(), 512);
    }
}
