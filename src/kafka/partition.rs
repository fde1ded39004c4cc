//! An assigned partition as librdkafka serves it to its lane ([`crate::pipeline::partition`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::commits::{marked_by, StoredOffset};
use super::context::BridgeContext;
use super::ffi::{commit_metadata, BatchReader};
use crate::pipeline::partition::{Committed, KafkaPartition, QueueError};
use crate::pipeline::record::Record;

/// Bound on the committed-offset query.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AssignedPartition {
    pub topic: String,
    pub partition: i32,
    /// Held, never read: dropping it would drop the wake-up callback [`super::lanes::Lanes`] set
    /// on it. Messages are read through `reader`.
    pub _queue: PartitionQueue<BridgeContext>,
    /// The same partition queue, read many messages per call.
    pub reader: BatchReader<BridgeContext>,
    pub consumer: Arc<BaseConsumer<BridgeContext>>,
    /// What the lane stored last, with its mark; shared with the lane's owner for the commits on
    /// revoke and at shutdown.
    pub stored: Arc<StoredOffset>,
}

impl AssignedPartition {
    fn list(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, self.partition);
        tpl
    }
}

impl KafkaPartition for AssignedPartition {
    fn take(
        &self,
        max: usize,
        with_headers: bool,
        each: &mut dyn FnMut(Result<Record<'_>, QueueError>),
    ) -> usize {
        self.reader.take(max, |fetched| match fetched {
            Ok(message) => {
                // An empty Vec does not allocate: only envelopes that read headers pay for them.
                let mut headers = Vec::new();
                if with_headers {
                    message.headers(&mut headers);
                }
                each(Ok(Record {
                    topic: &self.topic,
                    partition: self.partition,
                    offset: message.offset(),
                    timestamp: message.timestamp(),
                    key: message.key(),
                    value: message.payload(),
                    headers: &headers,
                }))
            }
            Err((error, offset)) => each(Err(QueueError { error, offset })),
        })
    }

    fn store_offset(&self, next_offset: i64) -> Result<(), KafkaError> {
        self.stored.store(&self.consumer, next_offset)
    }

    fn pause(&self) -> Result<(), KafkaError> {
        self.consumer.pause(&self.list())
    }

    fn resume(&self) -> Result<(), KafkaError> {
        self.consumer.resume(&self.list())
    }

    fn seek(&self, to: Offset) -> Result<(), KafkaError> {
        self.consumer
            .seek(&self.topic, self.partition, to, Duration::ZERO)
    }

    fn committed(&self) -> impl Future<Output = Result<Option<Committed>, KafkaError>> + Send {
        let consumer = self.consumer.clone();
        let (topic, partition) = (self.topic.clone(), self.partition);
        let query = tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&topic, partition);
            let committed = consumer.committed_offsets(tpl, COMMITTED_TIMEOUT)?;
            Ok(committed_in(&committed, &topic, partition))
        });
        async move { query.await.unwrap_or(Err(KafkaError::Canceled)) }
    }

    fn bounds(&self) -> impl Future<Output = Option<(i64, i64)>> + Send + 'static {
        let consumer = self.consumer.clone();
        let (topic, partition) = (self.topic.clone(), self.partition);
        let query = tokio::task::spawn_blocking(move || {
            consumer
                .fetch_watermarks(&topic, partition, COMMITTED_TIMEOUT)
                .ok()
        });
        async move { query.await.ok().flatten() }
    }
}

/// The committed offset of `topic`/`partition` in `list` (an answer to `committed_offsets`) with
/// its mark; `None` when nothing is committed.
pub fn committed_in(list: &TopicPartitionList, topic: &str, partition: i32) -> Option<Committed> {
    match list.find_partition(topic, partition)?.offset() {
        Offset::Offset(offset) => Some(Committed {
            offset,
            by: commit_metadata(list, topic, partition).and_then(|m| marked_by(&m)),
        }),
        _ => None,
    }
}
