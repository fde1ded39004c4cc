//! Gathering a batch from the partition queue: how much a lane takes before it asks for a turn,
//! and what it takes while its previous batch is in flight.

use std::sync::atomic::Ordering;

use tracing::warn;

use super::{Lane, Settled, DEAD_LETTERS};
use crate::pipeline::batch::Batch;
use crate::pipeline::encode;
use crate::pipeline::jobs;
use crate::pipeline::partition::KafkaPartition;
use crate::pipeline::record::Record;

/// While every delivery turn is taken, a lane gathers at most this fraction of a batch (1/8 of
/// `max_messages` and of `max_bytes`), and tops it up once its turn comes. With hundreds of busy
/// partitions, lanes waiting for a turn would otherwise each hold a full batch (512 × ~170 KiB of
/// buffers) of messages librdkafka was holding anyway.
const WAITING_SHARE: usize = 8;

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

impl<P: KafkaPartition> Lane<P> {
    /// What a lane gathers before it asks for a turn: a full batch, or its share
    /// ([`WAITING_SHARE`]) while every turn is taken. With a turn: a full batch.
    fn goal(&self, with_turn: bool) -> Goal {
        let full = Goal {
            messages: self.batch_config.max_messages,
            bytes: self.batch_config.max_bytes,
        };
        if with_turn {
            // With a turn, a window's worth ([`super::window`]) — one batch while every turn is
            // taken: many busy lanes keep Redis busy without windows, and each would hold one.
            let window = if self.sink.delivery_turns_taken() {
                1
            } else {
                self.window_size()
            };
            Goal {
                messages: full.messages.saturating_mul(window),
                bytes: full.bytes.saturating_mul(window),
            }
        } else if !self.sink.delivery_turns_taken() {
            full
        } else {
            Goal {
                messages: (full.messages / WAITING_SHARE).max(1),
                bytes: (full.bytes / WAITING_SHARE).max(1),
            }
        }
    }

    /// Whether a lane without a turn has gathered all it should before asking for one.
    pub(super) fn holds_enough(&self, batch: &Batch) -> bool {
        self.goal(false).reached(batch)
    }

    /// Delivers `batch` and, while Redis works on it, gathers `next` from the partition queue (up
    /// to a window's worth, [`Lane::goal`]).
    /// Only a lane whose turn it is gathers: one that waits for its turn holds one batch, not two.
    pub(super) async fn deliver_gathering(&self, batch: &mut Batch, next: &mut Batch) -> Settled {
        let delivery = self.deliver(batch);
        tokio::pin!(delivery);
        // As much as the lane sends next: a window's worth, encoded while Redis works on this one
        // — or its share of a batch while every turn is taken.
        let goal = if self.sink.delivery_turns_taken() {
            self.goal(false)
        } else {
            self.goal(true)
        };
        loop {
            self.fill_to(next, goal);
            tokio::select! {
                biased;
                delivered = &mut delivery => return delivered,
                _ = self.wake.notified(), if !goal.reached(next) => {}
            }
        }
    }

    /// Takes what the partition queue holds, without waiting, until the lane holds enough to ask
    /// for a turn ([`Lane::goal`]). Takes nothing once the lane is draining: a stop pushes what
    /// was gathered, not what keeps coming.
    pub(super) fn fill(&self, batch: &mut Batch) {
        self.fill_to(batch, self.goal(false));
    }

    /// With a turn: takes what the partition queue holds, without waiting, up to a full batch.
    pub(super) fn top_up(&self, batch: &mut Batch) {
        self.fill_to(batch, self.goal(true));
    }

    fn fill_to(&self, batch: &mut Batch, goal: Goal) {
        // Read once and stored once per fill, not per message.
        let mut largest = self.largest.load(Ordering::Relaxed);
        // The time a job carries (Sidekiq's), read once per fill: one reading serves the batch.
        let now = jobs::PushTime::now();
        // A held partition (out of range under `auto.offset.reset = error`) gives nothing more.
        while !self.stop.is_cancelled() && !goal.reached(batch) && !self.state.is_held() {
            // No more than the batch lacks, by count and, judged by the largest element this lane
            // has encoded, by bytes: what is not taken stays queued in librdkafka.
            let lacks = goal.messages - batch.len();
            let fits = (goal.bytes - batch.bytes()) / largest.max(1);
            let with_headers = self.encoder.uses_headers();
            let taken =
                self.kafka.take(
                    lacks.min(fits).max(1),
                    with_headers,
                    &mut |fetched| match fetched {
                        Ok(record) => {
                            let before = batch.bytes();
                            self.add(&record, &now, batch);
                            largest = largest.max(batch.bytes() - before);
                        }
                        Err(e) => self.on_queue_error(e),
                    },
                );
            if taken == 0 {
                break;
            }
        }
        self.largest.store(largest, Ordering::Relaxed);
    }

    pub(super) fn add(&self, record: &Record<'_>, now: &jobs::PushTime, batch: &mut Batch) {
        if batch.is_empty() {
            self.state.on_pending(record.timestamp);
        }
        let mut failure = None;
        batch.add_with(record.offset, record.timestamp, false, |out| {
            if let Err(e) = self.encoder.encode(record, now, out) {
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
}
