//! A lane: the task that moves one assigned partition into its Redis list.
//!
//! It reads its own partition queue (split off the consumer, so partitions never wait on each
//! other; many messages per librdkafka call, [`crate::kafka::ffi`]), gathers a batch (up to
//! `max_messages` / `max_bytes`, or what arrived within `linger`), pushes it in one round trip,
//! and only then stores the next offset — the rdkafka `at_least_once` pattern.
//! One batch is in flight at a time, so offsets are stored in order and contiguously: a batch that
//! fails is retried, with capped exponential backoff, and nothing after it is stored until it lands.
//! While it is in flight the lane already gathers the next one (never pushed before the first
//! settled), so a single busy partition is not idle for a Redis round trip per batch. While every
//! delivery turn is taken, a lane gathers only a share of a batch and tops it up when its turn
//! comes, so hundreds of waiting lanes do not each hold a full one.
//! When a capped list is full the lane keeps what did not fit, pauses its partition and resumes
//! once the list has drained ([`super::backpressure`]).
//! An exactly-once lane also re-reads its offset record whenever a Redis master changes, so that
//! pushes a failover lost come back even on a partition that receives nothing more.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Offset;
use tokio::sync::{watch, Notify};
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::backoff::Backoff;
use super::backpressure::{self, Drained};
use super::batch::Batch;
use super::deliver::{ExactlyOnce, Fence, Fenced, ListWrites, Pushed};
use super::encode::{self, Encoder};
use super::jobs;
use super::partition::KafkaPartition;
use super::record::Record;
use crate::config::{BatchConfig, RetryConfig, TopicConfig};
use crate::logging::RateLimit;
use crate::observe::state::{Gate, PartitionState};
use crate::observe::stats::Stats;
use crate::redis::RedisSink;

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

/// While every delivery turn is taken, a lane gathers at most this fraction of a batch (1/8 of
/// `max_messages` and of `max_bytes`), and tops it up once its turn comes. With hundreds of busy
/// partitions, lanes waiting for a turn would otherwise each hold a full batch (512 × ~170 KiB of
/// buffers) of messages librdkafka was holding anyway.
const WAITING_SHARE: usize = 8;

/// Messages taken per call while a paused lane releases what was prefetched.
const RELEASE_PER_CALL: usize = 64;

pub struct Lane<P: KafkaPartition> {
    pub topic: TopicConfig,
    pub partition: i32,
    /// Where the messages come from, and where the next offset is stored.
    pub kafka: P,
    /// What each message becomes ([`Encoder::for_topic`]).
    pub encoder: Encoder,
    /// How the batch goes onto the list ([`ListWrites::for_topic`]).
    pub writes: ListWrites,
    /// The largest element (bytes) this lane has encoded: how many messages fit a batch's bytes.
    pub largest: AtomicUsize,
    pub sink: RedisSink,
    pub batch_config: BatchConfig,
    pub retry: RetryConfig,
    pub flow_check_interval: Duration,
    /// The fence keys of the list and its dead-letter list; set in exclusive (lease) mode.
    pub fence_keys: Option<FenceKeys>,
    /// Set for exactly-once topics.
    pub exactly_once: Option<ExactlyOnceLane>,
    /// Whether `auto.offset.reset` points at the end of a partition (else its beginning).
    pub reset_to_end: bool,
    pub stats: Arc<Stats>,
    /// What this partition is doing, for lag, metrics and status.
    pub state: Arc<PartitionState>,
    /// Closed while this instance may not push (exclusive lease not held).
    pub gate: Gate,
    /// Woken by librdkafka when the partition queue becomes non-empty.
    pub wake: Arc<Notify>,
    /// Cancelled to drain: push what was gathered (what fits), store its offset, return.
    pub stop: CancellationToken,
}

/// How much a lane gathers before it pushes (see [`Lane::goal`]).
#[derive(Clone, Copy)]
struct Goal {
    messages: usize,
    bytes: usize,
}

impl Goal {
    fn reached(self, batch: &Batch) -> bool {
        batch.len() >= self.messages || batch.bytes() >= self.bytes
    }
}

/// Where the lease's fence tokens live for a lane's two lists ([`crate::keys::fence_key`]).
pub struct FenceKeys {
    pub list: String,
    pub dead: String,
}

/// What an exactly-once lane knows about its partition's record in Redis.
pub struct ExactlyOnceLane {
    /// The list's offsets hash (same Cluster slot as the list).
    offsets_key: String,
    /// This partition's field in it.
    field: String,
    /// The next offset Redis records for the partition, as far as this lane knows (`None`: no
    /// record). Every push must match it, or Redis refuses the batch.
    recorded: std::sync::Mutex<Option<i64>>,
    confirmed_unrecorded: bool,
}

impl ExactlyOnceLane {
    /// `confirmed_unrecorded`: Redis was asked and holds no record for the partition (not the
    /// same as `recorded` being `None`, which is also what a failed lookup leaves).
    pub fn new(
        offsets_key: String,
        field: String,
        recorded: Option<i64>,
        confirmed_unrecorded: bool,
    ) -> ExactlyOnceLane {
        ExactlyOnceLane {
            offsets_key,
            field,
            recorded: std::sync::Mutex::new(recorded),
            confirmed_unrecorded,
        }
    }

    fn recorded(&self) -> Option<i64> {
        *self.recorded.lock().expect("recorded lock")
    }

    fn set_recorded(&self, offset: Option<i64>) {
        *self.recorded.lock().expect("recorded lock") = offset;
    }
}

/// When a push began and how many bytes the batch held then, for latency and byte counts.
struct Push {
    at: std::time::Instant,
    bytes: usize,
}

impl Push {
    fn start(batch: &Batch) -> Push {
        Push {
            at: std::time::Instant::now(),
            bytes: batch.bytes(),
        }
    }
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

    /// What a lane gathers before it asks for a turn: a full batch, or its share
    /// ([`WAITING_SHARE`]) while every turn is taken. With a turn: a full batch.
    fn goal(&self, with_turn: bool) -> Goal {
        let full = Goal {
            messages: self.batch_config.max_messages,
            bytes: self.batch_config.max_bytes,
        };
        if with_turn || !self.sink.delivery_turns_taken() {
            full
        } else {
            Goal {
                messages: (full.messages / WAITING_SHARE).max(1),
                bytes: (full.bytes / WAITING_SHARE).max(1),
            }
        }
    }

    /// Whether a lane without a turn has gathered all it should before asking for one.
    fn holds_enough(&self, batch: &Batch) -> bool {
        self.goal(false).reached(batch)
    }

    /// Delivers `batch` and, while Redis works on it, gathers `next` from the partition queue.
    /// Only a lane whose turn it is gathers: one that waits for its turn holds one batch, not two.
    async fn deliver_gathering(&self, batch: &mut Batch, next: &mut Batch) -> Settled {
        let delivery = self.deliver(batch);
        tokio::pin!(delivery);
        loop {
            self.fill(next);
            tokio::select! {
                biased;
                delivered = &mut delivery => return delivered,
                _ = self.wake.notified(), if !self.holds_enough(next) => {}
            }
        }
    }

    /// Takes what the partition queue holds, without waiting, until the lane holds enough to ask
    /// for a turn ([`Lane::goal`]). Takes nothing once the lane is draining: a stop pushes what
    /// was gathered, not what keeps coming.
    fn fill(&self, batch: &mut Batch) {
        self.fill_to(batch, self.goal(false));
    }

    /// With a turn: takes what the partition queue holds, without waiting, up to a full batch.
    fn top_up(&self, batch: &mut Batch) {
        self.fill_to(batch, self.goal(true));
    }

    fn fill_to(&self, batch: &mut Batch, goal: Goal) {
        // Read once and stored once per fill, not per message.
        let mut largest = self.largest.load(Ordering::Relaxed);
        // The time a job carries (Sidekiq's), read once per fill: one reading serves the batch.
        let now = jobs::now_seconds();
        while !self.stop.is_cancelled() && !goal.reached(batch) {
            // No more than the batch lacks, by count and, judged by the largest element this lane
            // has encoded, by bytes: what is not taken stays queued in librdkafka.
            let lacks = goal.messages - batch.len();
            let fits = (goal.bytes - batch.bytes()) / largest.max(1);
            let with_headers = self.encoder.uses_headers();
            let taken = self.kafka.take(lacks.min(fits).max(1), with_headers, &mut |fetched| match fetched {
                Ok(record) => {
                    let before = batch.bytes();
                    self.add(&record, now, batch);
                    largest = largest.max(batch.bytes() - before);
                }
                Err(e) => {
                    if let Some(held) = QUEUE_ERRORS.check() {
                        warn!(topic = %self.topic.name, partition = self.partition, error = %e,
                              suppressed = held, "Kafka reported an error on the partition queue; librdkafka retries");
                    }
                }
            });
            if taken == 0 {
                break;
            }
        }
        self.largest.store(largest, Ordering::Relaxed);
    }

    fn add(&self, record: &Record<'_>, now_seconds: f64, batch: &mut Batch) {
        if batch.is_empty() {
            self.state.on_pending(record.timestamp);
        }
        let mut failure = None;
        batch.add_with(record.offset, record.timestamp, false, |out| {
            if let Err(e) = self.encoder.encode(record, now_seconds, out) {
                failure = Some(e);
            }
        });
        if let Some(unencodable) = failure {
            batch.discard_last();
            batch.add_with(record.offset, record.timestamp, true, |out| {
                encode::dead_letter(record, &unencodable.reason, out)
            });
            if let Some(held) = DEAD_LETTERS.check() {
                warn!(topic = record.topic, partition = record.partition, offset = record.offset,
                      list = %self.topic.dead_letter_key(), reason = %unencodable.reason, suppressed = held,
                      "message sent to the dead-letter list");
            }
        }
    }

    /// Pushes the batch (what fits, with a cap) until Redis acknowledges, pushes the dead letters
    /// before the cut, stores the next offset and removes what was delivered from the batch.
    /// Retries until it succeeds or the gate closes: a lane whose drain deadline passes is aborted
    /// by its owner, and then its offset is simply never stored, so Kafka delivers the batch again.
    async fn deliver(&self, batch: &mut Batch) -> Settled {
        if let Some(eo) = &self.exactly_once {
            return self.deliver_exactly_once(batch, eo).await;
        }
        let started = Push::start(batch);
        let cap = self.topic.cap.map(|c| c.max);
        let token = self.gate.token();
        if self.fence_keys.is_some() && token.is_none() {
            // The gate closed since the lane passed it: under the lease no push goes unfenced.
            return Settled::Held;
        }
        let (list_fence, dead_fence) = self.fences(token.as_deref());
        let Some(pushed) = self
            .retry("push", batch, |sink, batch| {
                Box::pin(sink.push_messages(batch, &self.writes, cap, list_fence))
            })
            .await
        else {
            return Settled::Held;
        };
        let cut = batch.cut_after(pushed.messages);
        if self
            .retry("dead-letter push", batch, |sink, batch| {
                Box::pin(sink.push_dead_letters(batch, cut, dead_fence))
            })
            .await
            .is_none()
        {
            return Settled::Held;
        }
        let dead = batch.dead_letters_before(cut).count();
        let next_offset = batch.last_offset_before(cut).map(|last| last + 1);
        self.settle(batch, started, pushed, cut, dead, next_offset)
    }

    /// The exactly-once delivery: dead letters first (at least once: a crash right after pushes
    /// them again), then the messages and the partition's next offset in one script. A refused
    /// batch means Redis records another position — a newer owner moved on, or a failover lost
    /// writes — so the batch is dropped and the partition re-read from the recorded offset.
    async fn deliver_exactly_once(&self, batch: &mut Batch, eo: &ExactlyOnceLane) -> Settled {
        let started = Push::start(batch);
        let everything = batch.len();
        let dead = batch.dead_letters_before(everything).count();
        let token = self.gate.token();
        if self.fence_keys.is_some() && token.is_none() {
            // The gate closed since the lane passed it: under the lease no push goes unfenced.
            return Settled::Held;
        }
        let (list_fence, dead_fence) = self.fences(token.as_deref());
        if self
            .retry("dead-letter push", batch, |sink, batch| {
                Box::pin(sink.push_dead_letters(batch, everything, dead_fence))
            })
            .await
            .is_none()
        {
            return Settled::Held;
        }
        batch.mark_dead_letters_pushed();
        let cap = self.topic.cap.map(|c| c.max);
        let expected = eo.recorded();
        let (key, field) = (eo.offsets_key.as_str(), eo.field.as_str());
        let Some(outcome) = self
            .retry("push", batch, move |sink, batch| {
                Box::pin(sink.push_exactly_once(
                    batch,
                    &self.writes,
                    key,
                    field,
                    expected,
                    cap,
                    list_fence,
                ))
            })
            .await
        else {
            return Settled::Held;
        };
        match outcome {
            ExactlyOnce::Refused { recorded } => {
                if let Some(held) = REFUSED_BATCHES.check() {
                    warn!(topic = %self.topic.name, partition = self.partition, ?expected, ?recorded, suppressed = held,
                          "exactly-once: Redis records another position for this partition; dropping the batch and re-reading from there");
                }
                self.stats.refused_batches.inc();
                batch.clear();
                self.rewind_to(eo, recorded).await;
                Settled::Rewound
            }
            ExactlyOnce::Pushed {
                pushed,
                next_offset,
            } => {
                eo.set_recorded(Some(next_offset));
                let cut = batch.cut_after(pushed.messages);
                self.settle(batch, started, pushed, cut, dead, Some(next_offset))
            }
        }
    }

    /// The fences the pushes present while the lease is held: `token` with the list's and the
    /// dead-letter list's fence keys.
    fn fences<'a>(&'a self, token: Option<&'a str>) -> (Option<Fence<'a>>, Option<Fence<'a>>) {
        match (token, &self.fence_keys) {
            (Some(token), Some(keys)) => (
                Some(Fence {
                    key: &keys.list,
                    token,
                }),
                Some(Fence {
                    key: &keys.dead,
                    token,
                }),
            ),
            _ => (None, None),
        }
    }

    /// After Redis took the batch up to `cut`: stores `next_offset` for the commit (also in
    /// exactly-once mode, for lag tools and as the fallback position), records what happened and
    /// removes the delivered entries, keeping the rest in order.
    fn settle(
        &self,
        batch: &mut Batch,
        started: Push,
        pushed: Pushed,
        cut: usize,
        dead: usize,
        next_offset: Option<i64>,
    ) -> Settled {
        let messages = batch.messages();
        if let Some(next) = next_offset.filter(|n| *n > 0) {
            // librdkafka stores `offset + 1`: the next offset to read.
            if let Err(e) = self.kafka.store_offset(next) {
                // Only happens once the partition is no longer ours; the new owner re-reads from
                // the last commit (at-least-once) or from Redis' record (exactly-once).
                debug!(topic = %self.topic.name, partition = self.partition, error = %e, "could not store offset");
            }
        }
        batch.remove_front(cut);
        let bytes = (started.bytes - batch.bytes()) as u64;
        self.state.record_push(started.at.elapsed(), bytes); // latency histogram, bytes/topic
        if let Some(next) = next_offset {
            self.state.on_delivered(
                next,
                pushed.messages as u64,
                dead as u64,
                batch.oldest_timestamp(),
            );
        }
        if pushed.messages < messages {
            Settled::ListFull {
                list_len: pushed.list_len.unwrap_or_default(),
            }
        } else {
            Settled::Complete
        }
    }

    /// After a master changed: reads the partition's record and, if it is not the position this
    /// lane pushes from (the failover lost the last pushes and their record), drops what was
    /// gathered and re-reads from the recorded offset, as a refused push would. False when Redis
    /// could not be asked.
    async fn recheck_record(&self, eo: &ExactlyOnceLane, batch: &mut Batch) -> bool {
        let field = [eo.field.clone()];
        let recorded = match self.sink.recorded_offsets(&eo.offsets_key, &field).await {
            Ok(recorded) => recorded.into_iter().next().flatten(),
            Err(e) => {
                if let Some(held) = REDIS_ERRORS.check() {
                    warn!(topic = %self.topic.name, partition = self.partition, error = %e, suppressed = held,
                          "exactly-once: cannot read the offset record after a master change; asking again");
                }
                return false;
            }
        };
        let believed = eo.recorded();
        if recorded == believed {
            return true;
        }
        if let Some(held) = RECHECKS.check() {
            warn!(topic = %self.topic.name, partition = self.partition, ?believed, ?recorded, suppressed = held,
                  "exactly-once: after a master change Redis records another position for this partition; re-reading from there");
        } else {
            debug!(topic = %self.topic.name, partition = self.partition, ?believed, ?recorded,
                   "exactly-once: re-reading from the recorded position after a master change");
        }
        batch.clear();
        self.rewind_to(eo, recorded).await;
        true
    }

    /// Takes `recorded` as the partition's position and seeks the partition there (or, with no
    /// record, to [`Lane::fallback_position`]).
    async fn rewind_to(&self, eo: &ExactlyOnceLane, recorded: Option<i64>) {
        eo.set_recorded(recorded);
        let target = match recorded {
            Some(offset) => Some(Offset::Offset(offset)),
            None => self.fallback_position().await,
        };
        if let Err(e) = target.map_or(Ok(()), |target| self.kafka.seek(target)) {
            warn!(topic = %self.topic.name, partition = self.partition, error = %e, "seek failed");
        }
    }

    /// Where an exactly-once partition restarts when Redis records nothing for it: Kafka's
    /// committed offset, else the reset policy's end of the partition. A query that fails is
    /// asked again (with backoff) rather than taken for "nothing committed", which would re-read
    /// the partition from its start.
    async fn fallback_position(&self) -> Option<Offset> {
        let mut backoff = Backoff::new(&self.retry);
        loop {
            match self.kafka.committed().await {
                Ok(Some(offset)) => {
                    self.report_lost_record(offset);
                    return Some(Offset::Offset(offset));
                }
                Ok(None) if self.reset_to_end => return Some(Offset::End),
                Ok(None) => return Some(Offset::Beginning),
                Err(e) => {
                    if let Some(held) = QUEUE_ERRORS.check() {
                        warn!(topic = %self.topic.name, partition = self.partition, error = %e, suppressed = held,
                              "cannot read the committed offset from Kafka; asking again");
                    }
                    tokio::select! {
                        _ = sleep(backoff.next_wait()) => {}
                        _ = self.stop.cancelled() => return None,
                    }
                }
            }
        }
    }

    /// Redis holds no exactly-once record for a partition that Kafka has a committed offset for:
    /// the record is written with every push, so either the topic ran at-least-once until now, or
    /// Redis lost data (a restart without persistence, a failover to a replica that lagged, a
    /// flush). In the second case what the list held before `committed` may be gone, and Kafka
    /// does not deliver it again.
    fn report_lost_record(&self, committed: i64) {
        error!(topic = %self.topic.name, partition = self.partition, list = %self.topic.list_key, committed,
               "exactly-once: Redis has no record of this partition although Kafka committed offset {committed}: unless \
                the topic ran at-least-once until now, Redis lost data, and messages before that offset that were on \
                the list may be lost; resuming from it");
    }

    /// Runs `op` until Redis acknowledges it, with capped exponential backoff between attempts.
    /// `None` when the lease gate closed meanwhile, or Redis refused the push because another
    /// instance holds the lease (then this lane closes the gate itself): the batch is kept, and
    /// nothing is stored.
    async fn retry<'a, T>(
        &'a self,
        what: &str,
        batch: &'a Batch,
        op: impl Fn(&'a RedisSink, &'a Batch) -> PushFuture<'a, Fenced<T>>,
    ) -> Option<T> {
        let mut backoff = Backoff::new(&self.retry);
        let mut failures = 0u32;
        loop {
            match op(&self.sink, batch).await {
                Ok(Fenced::Taken(value)) => {
                    if failures > 0 {
                        if let Some(held) = RECOVERIES.check() {
                            info!(topic = %self.topic.name, partition = self.partition, failures, suppressed = held,
                                  "Redis {what} succeeded after retrying");
                        }
                    }
                    return Some(value);
                }
                Ok(Fenced::FencedOut) => {
                    self.gate.close();
                    if let Some(held) = FENCED_OUT.check() {
                        warn!(topic = %self.topic.name, partition = self.partition, list = batch.list_key(),
                              suppressed = held, "Redis refused the {what}: another instance holds the lease; pushing stopped");
                    }
                    return None;
                }
                Err(e) => {
                    failures += 1;
                    self.stats.redis_errors.inc();
                    if let Some(held) = REDIS_ERRORS.check() {
                        warn!(topic = %self.topic.name, partition = self.partition, list = batch.list_key(),
                              error = %e, attempt = failures, retry_in_ms = backoff.peek().as_millis() as u64,
                              suppressed = held, "Redis {what} failed; retrying the same batch");
                    }
                    sleep(backoff.next_wait()).await;
                    if !self.gate.is_open() {
                        // The lease was lost or is in doubt: a retry now could land after
                        // another instance's pushes.
                        return None;
                    }
                }
            }
        }
    }

    /// Pauses the partition until its list has drained to the low-water mark. Returns false when
    /// the lane was stopped meanwhile.
    async fn pause_until_drained(&self, list_len: u64, batch: &mut Batch) -> bool {
        let cap = self.topic.cap.expect("only a capped list is ever full");
        if let Err(e) = self.kafka.pause() {
            warn!(topic = %self.topic.name, partition = self.partition, error = %e, "could not pause the partition");
        }
        self.stats.pauses.inc();
        self.state.set_paused(true);
        info!(topic = %self.topic.name, partition = self.partition, list = %self.topic.list_key, list_len,
              cap = cap.max, low_water = cap.low_water, "list full: partition paused");
        let paused_at = std::time::Instant::now();
        // Serving the queue discards what was prefetched before the pause (librdkafka marks it
        // obsolete and re-fetches it on resume) and so frees its memory. A message that is still
        // current is kept, after the leftover, so order holds.
        let release_prefetched = || {
            let now = jobs::now_seconds();
            while self.kafka.take(
                RELEASE_PER_CALL,
                self.encoder.uses_headers(),
                &mut |fetched| {
                    if let Ok(record) = fetched {
                        self.add(&record, now, batch);
                    }
                },
            ) > 0
            {}
        };
        let outcome = backpressure::wait_for_drain(
            &self.sink,
            &self.topic.list_key,
            cap,
            self.flow_check_interval,
            &self.stop,
            release_prefetched,
        )
        .await;
        self.state.set_paused(false);
        if let Err(e) = self.kafka.resume() {
            warn!(topic = %self.topic.name, partition = self.partition, error = %e, "could not resume the partition");
        }
        match outcome {
            Drained::Below(list_len) => {
                info!(topic = %self.topic.name, partition = self.partition, list = %self.topic.list_key, list_len,
                      paused_ms = paused_at.elapsed().as_millis() as u64, "list drained: partition resumed");
                true
            }
            Drained::Stopped => false,
        }
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

type PushFuture<'a, T> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<T, ::redis::RedisError>> + Send + 'a>,
>;
