//! A lane: the task that moves one assigned partition into its Redis list.
//!
//! It reads its own partition queue (split off the consumer, so partitions never wait on each other),
//! gathers a batch (up to `max_messages` / `max_bytes`, or what arrived within `linger`), pushes it
//! in one round trip, and only then stores the next offset — the rdkafka `at_least_once` pattern.
//! One batch is in flight at a time, so offsets are stored in order and contiguously: a batch that
//! fails is retried, with capped exponential backoff, and nothing after it is stored until it lands.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use tokio::sync::Notify;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::context::BridgeContext;
use crate::config::{BatchConfig, RetryConfig, TopicConfig};
use crate::envelope::{self, Record};
use crate::logging::RateLimit;
use crate::redis::{Batch, RedisSink};
use crate::stats::Stats;

/// Repeated Redis failures across all lanes log at most once per this interval.
static REDIS_ERRORS: RateLimit = RateLimit::new(Duration::from_secs(5));
/// Same for dead letters, which can come in floods (a producer writing binary to a legacy topic).
static DEAD_LETTERS: RateLimit = RateLimit::new(Duration::from_secs(5));
/// Same for errors the partition queue reports (fetch errors are retried by librdkafka).
static QUEUE_ERRORS: RateLimit = RateLimit::new(Duration::from_secs(5));

/// How long an idle lane sleeps before looking at its queue again even without a wake-up.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

pub struct Lane {
    pub topic: TopicConfig,
    pub partition: i32,
    pub queue: PartitionQueue<BridgeContext>,
    pub consumer: Arc<BaseConsumer<BridgeContext>>,
    pub sink: RedisSink,
    pub batch_config: BatchConfig,
    pub retry: RetryConfig,
    pub stats: Arc<Stats>,
    /// Woken by librdkafka when the partition queue becomes non-empty.
    pub wake: Arc<Notify>,
    /// Cancelled to drain: push what was gathered, store its offset, return.
    pub stop: CancellationToken,
}

impl Lane {
    pub async fn run(self) {
        let mut batch = Batch::new(self.topic.list_key.clone(), self.topic.dead_letter_key());
        let mut scratch = Vec::new();
        loop {
            self.fill(&mut batch, &mut scratch);
            let full = batch.messages() + batch.dead_letters() >= self.batch_config.max_messages
                || batch.bytes() >= self.batch_config.max_bytes;
            if full {
                self.deliver(&mut batch).await;
                continue;
            }
            if self.stop.is_cancelled() {
                break;
            }
            match batch.started() {
                None => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = self.stop.cancelled() => {}
                        _ = sleep(IDLE_RECHECK) => {}
                    }
                }
                Some(started) => {
                    let deadline = Instant::from_std(started) + self.batch_config.linger;
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = self.stop.cancelled() => {}
                        _ = sleep_until(deadline) => self.deliver(&mut batch).await,
                    }
                }
            }
        }
        if !batch.is_empty() {
            self.deliver(&mut batch).await;
        }
        debug!(topic = %self.topic.name, partition = self.partition, "lane stopped");
    }

    /// Takes what the partition queue holds, without waiting, until the batch is full.
    fn fill(&self, batch: &mut Batch, scratch: &mut Vec<u8>) {
        while batch.messages() + batch.dead_letters() < self.batch_config.max_messages
            && batch.bytes() < self.batch_config.max_bytes
        {
            match self.queue.poll(Duration::ZERO) {
                None => return,
                Some(Ok(message)) => self.add(&message, batch, scratch),
                Some(Err(e)) => {
                    if let Some(held) = QUEUE_ERRORS.check() {
                        warn!(topic = %self.topic.name, partition = self.partition, error = %e,
                              suppressed = held, "Kafka reported an error on the partition queue; librdkafka retries");
                    }
                }
            }
        }
    }

    fn add<'m>(&self, message: &'m BorrowedMessage<'m>, batch: &mut Batch, scratch: &mut Vec<u8>) {
        // Only the json envelope reads headers; an empty Vec does not allocate.
        let mut headers: Vec<(&'m str, Option<&'m [u8]>)> = Vec::new();
        if self.topic.envelope.uses_headers() {
            if let Some(h) = message.headers() {
                headers.extend(h.iter().map(|h| (h.key, h.value)));
            }
        }
        let record = Record {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key(),
            value: message.payload(),
            headers: &headers,
        };
        scratch.clear();
        match self.topic.envelope.encode(&record, scratch) {
            Ok(()) => batch.add(record.offset, scratch),
            Err(unencodable) => {
                scratch.clear();
                envelope::dead_letter(&record, &unencodable.reason, scratch);
                batch.add_dead_letter(record.offset, scratch);
                if let Some(held) = DEAD_LETTERS.check() {
                    warn!(topic = record.topic, partition = record.partition, offset = record.offset,
                          list = %self.topic.dead_letter_key(), reason = %unencodable.reason, suppressed = held,
                          "message sent to the dead-letter list");
                }
            }
        }
    }

    /// Pushes the batch until Redis acknowledges it, then stores the next offset and empties it.
    /// Runs until it succeeds: a lane whose drain deadline passes is aborted by its owner, and then
    /// its offset is simply never stored, so Kafka delivers the batch again.
    async fn deliver(&self, batch: &mut Batch) {
        let mut backoff = self.retry.backoff_min;
        let mut failures = 0u32;
        loop {
            match self.sink.push(batch).await {
                Ok(()) => break,
                Err(e) => {
                    failures += 1;
                    self.stats.redis_errors.inc();
                    if let Some(held) = REDIS_ERRORS.check() {
                        warn!(topic = %self.topic.name, partition = self.partition, list = batch.list_key(),
                              error = %e, attempt = failures, retry_in_ms = backoff.as_millis() as u64,
                              suppressed = held, "Redis push failed; retrying the same batch");
                    }
                    sleep(backoff).await;
                    backoff = (backoff * 2).min(self.retry.backoff_max);
                }
            }
        }
        if failures > 0 {
            info!(topic = %self.topic.name, partition = self.partition, failures,
                  "Redis push succeeded after retrying");
        }
        let last = batch
            .last_offset()
            .expect("deliver is only called with a non-empty batch");
        // librdkafka stores `last + 1`: the next offset to read.
        if let Err(e) = self
            .consumer
            .store_offset(&self.topic.name, self.partition, last)
        {
            // Only happens once the partition is no longer ours; the new owner re-reads from the
            // last commit, which at-least-once allows.
            debug!(topic = %self.topic.name, partition = self.partition, error = %e, "could not store offset");
        }
        self.stats
            .record_batch(batch.messages() as u64, batch.dead_letters() as u64);
        batch.clear();
    }
}
