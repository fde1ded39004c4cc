//! A lane: the task that moves one assigned partition into its Redis list.
//!
//! It reads its own partition queue (split off the consumer, so partitions never wait on each
//! other; many messages per librdkafka call, [`crate::kafka::ffi`]), gathers a batch (up to
//! `max_messages` / `max_bytes`, or what arrived within `linger`), pushes it, and only then stores
//! the next offset — the rdkafka `at_least_once` pattern. Up to `batch.in_flight` batches go out
//! at once as a window ([`window`]), chained in Redis so that none lands before the one sent ahead
//! of it, and settle in offset order: offsets are stored contiguously, and a batch that fails is
//! sent again, with capped exponential backoff, before anything after it is stored. While a window
//! is in flight the lane already gathers the next one (never pushed before the first settled), so
//! a single busy partition is not idle for a Redis round trip per batch. While every
//! delivery turn is taken, a lane gathers only a share of a batch and tops it up when its turn
//! comes, so hundreds of waiting lanes do not each hold a full one.
//! When a capped list is full the lane keeps what did not fit, pauses its partition and resumes
//! once the list has drained ([`super::backpressure`]).
//! An exactly-once lane also re-reads its offset record whenever a Redis master changes, so that
//! pushes a failover lost come back even on a partition that receives nothing more.

mod exactly_once;
mod gather;
mod out_of_range;
mod pause;
mod settle;
mod window;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::batch::Batch;
use super::encode::Encoder;
use super::partition::KafkaPartition;
use super::plan::{Plan, Writes};
use crate::config::{BatchConfig, RetryConfig, TopicConfig};
use crate::logging::RateLimit;
use crate::observe::state::{Gate, PartitionState};
use crate::observe::stats::Stats;
use crate::redis::RedisSink;

pub use exactly_once::ExactlyOnceLane;

/// Repeated Redis failures across all lanes log at most once per this interval.
static REDIS_ERRORS: RateLimit = RateLimit::new(Duration::from_secs(5));
/// Same for dead letters, which can come in floods (a producer writing binary to a legacy topic).
static DEAD_LETTERS: RateLimit = RateLimit::new(Duration::from_secs(5));
/// Same for refusals of the lease's fence, exactly-once refusals and re-reads, and recoveries
/// after retries, which come from every lane at once when the lease or the master changes.
static FENCED_OUT: RateLimit = RateLimit::new(Duration::from_secs(5));
static REFUSED_BATCHES: RateLimit = RateLimit::new(Duration::from_secs(5));
static RECHECKS: RateLimit = RateLimit::new(Duration::from_secs(5));
static RECOVERIES: RateLimit = RateLimit::new(Duration::from_secs(5));
/// Same for errors the partition queue reports (fetch errors are retried by librdkafka).
static QUEUE_ERRORS: RateLimit = RateLimit::new(Duration::from_secs(5));

/// How long an idle lane sleeps before looking at its queue again even without a wake-up.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

pub struct Lane<P: KafkaPartition> {
    topic: TopicConfig,
    partition: i32,
    /// Where the messages come from, and where the next offset is stored.
    kafka: P,
    /// What each message becomes and how a batch is written: the topic's [`Plan`].
    encoder: Encoder,
    writes: Writes,
    /// The largest element (bytes) this lane has encoded: how many messages fit a batch's bytes.
    largest: AtomicUsize,
    sink: RedisSink,
    batch_config: BatchConfig,
    retry: RetryConfig,
    flow_check_interval: Duration,
    /// The fence keys of the list and its dead-letter list; set in exclusive (lease) mode.
    fence_keys: Option<FenceKeys>,
    /// Set for exactly-once topics.
    exactly_once: Option<ExactlyOnceLane>,
    /// The batches this lane keeps in flight at once ([`window`]).
    window: window::Window,
    /// Whether `auto.offset.reset` points at the end of a partition (else its beginning).
    reset_to_end: bool,
    stats: Arc<Stats>,
    /// What this partition is doing, for lag, metrics and status.
    state: Arc<PartitionState>,
    /// Closed while this instance may not push (exclusive lease not held).
    gate: Gate,
    /// Woken by librdkafka when the partition queue becomes non-empty.
    wake: Arc<Notify>,
    /// Cancelled to drain: push what was gathered (what fits), store its offset, return.
    stop: CancellationToken,
}

/// What every lane of one bridge shares: where it pushes, how it batches and retries, and the
/// lease gate.
#[derive(Clone)]
pub struct LaneSettings {
    pub sink: RedisSink,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    /// How often a paused lane looks at its list's length.
    pub flow_check_interval: Duration,
    /// Whether `auto.offset.reset` points at the end of a partition (else its beginning).
    pub reset_to_end: bool,
    pub stats: Arc<Stats>,
    /// Closed while this instance may not push (exclusive lease not held).
    pub gate: Gate,
}

/// How a lane's owner and the lane reach each other: the partition's state (lag, metrics,
/// status), the wake-up librdkafka rings when the queue becomes non-empty, and the token that
/// drains the lane (push what was gathered, store its offset, return).
pub struct LaneSignals {
    pub state: Arc<PartitionState>,
    pub wake: Arc<Notify>,
    pub stop: CancellationToken,
}

/// Where the lease's fence tokens live for a lane's two lists ([`crate::keys::fence_key`]).
pub struct FenceKeys {
    pub list: String,
    pub dead: String,
}

/// How a delivery settled: whether it took the whole batch.
enum Settled {
    Complete,
    /// Exactly-once: Redis refused the batch and the partition was sought back; whatever was
    /// gathered after the batch is stale.
    Rewound,
    /// The lease gate closed (or Redis refused the lease token): nothing was stored, the batch is
    /// kept, and the lane waits at the gate.
    Held,
    /// The list is full; the rest of the batch is still in it.
    ListFull {
        list_len: u64,
    },
}

impl<P: KafkaPartition> Lane<P> {
    /// A lane that pushes `partition` of `topic`, read from `kafka`, at least once; see
    /// [`Lane::exactly_once`] and [`Lane::fenced`] for the other modes.
    pub fn new(
        topic: TopicConfig,
        partition: i32,
        kafka: P,
        settings: &LaneSettings,
        signals: LaneSignals,
    ) -> Lane<P> {
        let settings = settings.clone();
        let Plan { encoder, writes } = Plan::for_topic(&topic);
        let window = window::Window::new(&topic, partition, settings.batch.in_flight);
        Lane {
            encoder,
            writes,
            topic,
            partition,
            kafka,
            largest: AtomicUsize::new(0),
            sink: settings.sink,
            batch_config: settings.batch,
            retry: settings.retry,
            flow_check_interval: settings.flow_check_interval,
            fence_keys: None,
            exactly_once: None,
            window,
            reset_to_end: settings.reset_to_end,
            stats: settings.stats,
            state: signals.state,
            gate: settings.gate,
            wake: signals.wake,
            stop: signals.stop,
        }
    }

    /// Delivers exactly once: each push records the partition's next offset in `record`'s hash.
    pub fn exactly_once(mut self, record: ExactlyOnceLane) -> Lane<P> {
        self.exactly_once = Some(record);
        self
    }

    /// Presents the lease's token with every push, checked by Redis against these fence keys.
    pub fn fenced(mut self, keys: FenceKeys) -> Lane<P> {
        self.fence_keys = Some(keys);
        self
    }

    pub async fn run(self) {
        if self
            .exactly_once
            .as_ref()
            .is_some_and(|eo| eo.confirmed_unrecorded)
        {
            if let Ok(Some(committed)) = self.kafka.committed().await {
                self.report_lost_record(committed);
            }
        }
        let mut batch = Batch::new(self.topic.list_key.clone(), self.topic.dead_letter_key());
        // Gathered while `batch` is in flight; it joins `batch` (after any leftover) once settled.
        let mut next = Batch::new(self.topic.list_key.clone(), self.topic.dead_letter_key());
        // Exactly-once lanes re-read their record when a master changes (`redis::masters`).
        let mut masters = self
            .exactly_once
            .as_ref()
            .map(|_| self.sink.master_changes());
        loop {
            if let (Some(eo), Some(masters)) = (&self.exactly_once, masters.as_mut()) {
                if masters.has_changed().unwrap_or(false) {
                    masters.mark_unchanged();
                    if !self.recheck_record(eo, &mut batch).await {
                        masters.mark_changed(); // Redis did not answer: ask again next round
                    }
                }
            }
            self.fill(&mut batch);
            let flush = self.holds_enough(&batch)
                || self.stop.is_cancelled()
                || batch
                    .started()
                    .is_some_and(|s| s.elapsed() >= self.batch_config.linger);
            if flush && !batch.is_empty() {
                // A turn among all lanes first (`redis::PUSHES_IN_FLIGHT`), so that the lease is
                // checked right before the push, not before a wait for the turn.
                let turn = self.sink.delivery_turn().await;
                // A lane that waited for its turn gathered only a share of a batch.
                self.top_up(&mut batch);
                if !self.gate.is_open() {
                    // Not allowed to push (lease not held): hold the batch, store nothing.
                    tokio::select! {
                        _ = self.gate.opened() => {}
                        _ = self.stop.cancelled() => break,
                    }
                }
                let delivery = self.deliver_gathering(&mut batch, &mut next).await;
                drop(turn);
                if let Settled::Rewound = delivery {
                    next.clear();
                }
                let was_empty = batch.is_empty();
                batch.append(&mut next);
                if self.sink.delivery_turns_taken() {
                    // Many busy lanes: a spare buffer each would add up.
                    next.release();
                } else {
                    // Kept for the next delivery: no fresh pages per batch.
                    next.clear();
                }
                if was_empty && !batch.is_empty() {
                    // The delivered batch cleared the partition's oldest pending message.
                    self.state.on_pending(batch.oldest_timestamp());
                }
                if let Settled::ListFull { list_len } = delivery {
                    if self.stop.is_cancelled()
                        || !self.pause_until_drained(list_len, &mut batch).await
                    {
                        break;
                    }
                }
                continue;
            }
            if self.stop.is_cancelled() {
                break;
            }
            let wait = match batch.started() {
                None => {
                    // Idle: an idle lane holds no buffer (hundreds of partitions add up).
                    batch.release();
                    IDLE_RECHECK
                }
                Some(started) => self.batch_config.linger.saturating_sub(started.elapsed()),
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = self.stop.cancelled() => {}
                _ = sleep(wait) => {}
                _ = master_changed(&mut masters) => {}
            }
        }
        debug!(topic = %self.topic.name, partition = self.partition, "lane stopped");
    }
}

/// Resolves when a master changed, leaving the change unseen for the lane's loop to handle.
/// Never resolves without a watch (at-least-once lanes) or while an earlier change is still to be
/// handled (the lane's retry timer covers that).
async fn master_changed(masters: &mut Option<watch::Receiver<u64>>) {
    match masters {
        Some(masters) if !masters.has_changed().unwrap_or(true) => {
            if masters.changed().await.is_err() {
                std::future::pending::<()>().await; // the sink is gone; the lane stops soon
            }
            masters.mark_changed();
        }
        _ => std::future::pending().await,
    }
}
