//! What the bridge commits to Kafka: each partition's next offset, marked in the commit's metadata
//! with the delivery mode that stored it, so that an exactly-once lane taking the partition later
//! can tell whether its record in Redis or the commit is the newer position
//! ([`super::reconcile`]).
//!
//! librdkafka keeps metadata given to `rd_kafka_offsets_store` and its periodic commit sends it,
//! but a commit of "the current state" (a NULL list) drops it; so the commits on revoke and at
//! shutdown, and the early commits after `commit_after_messages`, pass an explicit list built from
//! what each lane stored ([`StoredOffset`]).

use std::sync::atomic::{AtomicI64, Ordering};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, warn};

use crate::config::Delivery;

/// The metadata of a commit made by an exactly-once lane.
pub const MARK_EXACTLY_ONCE: &str = "k2r:eo";
/// The metadata of a commit made by an at-least-once lane.
pub const MARK_AT_LEAST_ONCE: &str = "k2r:alo";

/// The mark a lane of `delivery` puts on its commits.
pub fn mark(delivery: Delivery) -> &'static str {
    match delivery {
        Delivery::ExactlyOnce => MARK_EXACTLY_ONCE,
        Delivery::AtLeastOnce => MARK_AT_LEAST_ONCE,
    }
}

/// Who made a commit, from its metadata: `None` for no mark (an older release of the bridge,
/// another client, or a broker that does not keep commit metadata).
pub fn marked_by(metadata: &[u8]) -> Option<Delivery> {
    match metadata {
        m if m == MARK_EXACTLY_ONCE.as_bytes() => Some(Delivery::ExactlyOnce),
        m if m == MARK_AT_LEAST_ONCE.as_bytes() => Some(Delivery::AtLeastOnce),
        _ => None,
    }
}

/// The next offset a lane stored last, shared by the lane (which stores it) and its owner (which
/// commits it on revoke and at shutdown).
pub struct StoredOffset {
    pub topic: String,
    pub partition: i32,
    mark: &'static str,
    /// -1: nothing stored yet.
    next: AtomicI64,
    /// The stored offset at the last early commit (-1: none yet).
    early_committed: AtomicI64,
    /// Messages after which an early commit goes out (0: never).
    commit_after: i64,
}

impl StoredOffset {
    pub fn new(
        topic: &str,
        partition: i32,
        delivery: Delivery,
        commit_after_messages: u64,
    ) -> StoredOffset {
        StoredOffset {
            topic: topic.to_string(),
            partition,
            mark: mark(delivery),
            next: AtomicI64::new(-1),
            early_committed: AtomicI64::new(-1),
            commit_after: i64::try_from(commit_after_messages).unwrap_or(i64::MAX),
        }
    }

    /// Stores `next` (the next offset to read) with this lane's mark for the periodic commit, and
    /// commits it at once (asynchronously) when `commit_after_messages` were stored since the
    /// last such commit.
    pub fn store<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        next: i64,
    ) -> KafkaResult<()> {
        let list = self.list(next)?;
        consumer.store_offsets(&list)?;
        self.next.store(next, Ordering::Relaxed);
        if self.commit_after > 0 {
            let since = self.early_committed.load(Ordering::Relaxed);
            if since < 0 {
                // The lane's first store: count from here.
                self.early_committed.store(next, Ordering::Relaxed);
            } else if next - since >= self.commit_after {
                self.early_committed.store(next, Ordering::Relaxed);
                // Failures reach the commit callback; the periodic commit covers them.
                consumer.commit(&list, CommitMode::Async)?;
            }
        }
        Ok(())
    }

    /// Adds what was stored, with its mark, to `list` for an explicit commit; nothing if nothing
    /// was stored.
    pub fn add_to(&self, list: &mut TopicPartitionList) {
        let next = self.next.load(Ordering::Relaxed);
        if next >= 0 {
            let mut element = list.add_partition(&self.topic, self.partition);
            if element.set_offset(Offset::Offset(next)).is_ok() {
                element.set_metadata(self.mark);
            }
        }
    }

    fn list(&self, next: i64) -> KafkaResult<TopicPartitionList> {
        let mut list = TopicPartitionList::with_capacity(1);
        let mut element = list.add_partition(&self.topic, self.partition);
        element.set_offset(Offset::Offset(next))?;
        element.set_metadata(self.mark);
        Ok(list)
    }
}

/// Synchronously commits `stored` (offsets with their marks); an empty list, or "nothing to
/// commit", is not an error.
pub fn commit_stored<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    stored: &TopicPartitionList,
    why: &str,
) -> bool {
    if stored.count() == 0 {
        return true;
    }
    match consumer.commit(stored, CommitMode::Sync) {
        Ok(()) => {
            debug!(why, partitions = stored.count(), "committed stored offsets");
            true
        }
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => true,
        Err(e) => {
            warn!(why, error = %e, "synchronous commit failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_read_back() {
        assert_eq!(
            marked_by(mark(Delivery::ExactlyOnce).as_bytes()),
            Some(Delivery::ExactlyOnce)
        );
        assert_eq!(
            marked_by(mark(Delivery::AtLeastOnce).as_bytes()),
            Some(Delivery::AtLeastOnce)
        );
        assert_eq!(marked_by(b""), None);
        assert_eq!(marked_by(b"k2r:eo "), None);
        assert_eq!(marked_by(&[0xff, 0xfe]), None);
    }
}
