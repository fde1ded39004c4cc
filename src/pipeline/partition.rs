//! The lane's narrow view of its Kafka partition. The lane needs only these few operations, so
//! its logic — gathering, settling, retries, pause and resume — runs the same against librdkafka
//! ([`crate::kafka::partition`]) and against a fake in the unit tests.

use std::future::Future;

use rdkafka::error::KafkaError;
use rdkafka::Offset;

use super::record::Record;
use crate::config::Delivery;

/// A group's committed offset for a partition, and who committed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    /// The delivery mode the commit's metadata names; `None` when it names none (an older
    /// release, another client, or a broker that drops commit metadata).
    pub by: Option<Delivery>,
}

/// An error the partition queue reported in place of a message.
#[derive(Debug)]
pub struct QueueError {
    pub error: KafkaError,
    /// The offset librdkafka names with the error: for a reset that `auto.offset.reset = error`
    /// refused, the position it could not fetch; negative when it names none (no committed offset).
    pub offset: i64,
}

pub trait KafkaPartition: Send + Sync + 'static {
    /// Takes up to `max` messages that are already fetched, without waiting, and hands each to
    /// `each` (or an error the queue reported). Headers are read only when `with_headers` is set.
    /// Returns how many entries it handed over; 0 when nothing is queued.
    fn take(
        &self,
        max: usize,
        with_headers: bool,
        each: &mut dyn FnMut(Result<Record<'_>, QueueError>),
    ) -> usize;

    /// Stores `next_offset` (the next offset to read) for the next commit, marked with the lane's
    /// delivery mode.
    fn store_offset(&self, next_offset: i64) -> Result<(), KafkaError>;

    /// Stops fetching the partition; what was prefetched becomes stale and `take` drops it.
    fn pause(&self) -> Result<(), KafkaError>;

    fn resume(&self) -> Result<(), KafkaError>;

    /// Moves the fetch position; what was fetched before it becomes stale.
    fn seek(&self, to: Offset) -> Result<(), KafkaError>;

    /// The group's committed offset for the partition: `Ok(None)` when there is none,
    /// `Err` when Kafka could not be asked.
    fn committed(&self) -> impl Future<Output = Result<Option<Committed>, KafkaError>> + Send;

    /// The partition's (log start, high watermark), asked of the broker; `None` when it could not
    /// be asked. Only for reports, so a partition without a broker behind it answers `None`.
    fn bounds(&self) -> impl Future<Output = Option<(i64, i64)>> + Send + 'static {
        std::future::ready(None)
    }
}
