//! The exactly-once side of a lane: the partition's offset record in Redis, the push that checks
//! and moves it, and the recovery when Redis records another position than the lane believes.

use rdkafka::Offset;
use tokio::time::sleep;
use tracing::{debug, error, info, warn};

use super::settle::Push;
use super::{Lane, Settled, QUEUE_ERRORS, RECHECKS, REDIS_ERRORS, REFUSED_BATCHES};
use crate::config::Delivery;
use crate::pipeline::backoff::Backoff;
use crate::pipeline::batch::Batch;
use crate::pipeline::deliver::ExactlyOnce;
use crate::pipeline::deliver::OffsetRecord;
use crate::pipeline::partition::{Committed, KafkaPartition};

/// What an exactly-once lane knows about its partition's record in Redis.
pub struct ExactlyOnceLane {
    /// The list's offsets hash (same Cluster slot as the list).
    pub(super) offsets_key: String,
    /// This partition's field in it.
    pub(super) field: String,
    /// The next offset Redis records for the partition, as far as this lane knows (`None`: no
    /// record). Every push must match it, or Redis refuses the batch.
    recorded: std::sync::Mutex<Option<i64>>,
    pub(super) confirmed_unrecorded: bool,
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

    pub(super) fn recorded(&self) -> Option<i64> {
        *self.recorded.lock().expect("recorded lock")
    }

    pub(super) fn set_recorded(&self, offset: Option<i64>) {
        *self.recorded.lock().expect("recorded lock") = offset;
    }
}

impl<P: KafkaPartition> Lane<P> {
    /// The exactly-once delivery: dead letters first (at least once: a crash right after pushes
    /// them again), then the messages and the partition's next offset in one script. A refused
    /// batch means Redis records another position — a newer owner moved on, or a failover lost
    /// writes — so the batch is dropped and the partition re-read from the recorded offset.
    pub(super) async fn deliver_exactly_once(
        &self,
        batch: &mut Batch,
        eo: &ExactlyOnceLane,
    ) -> Settled {
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
        let record = OffsetRecord {
            key: &eo.offsets_key,
            field: &eo.field,
            expected,
        };
        let Some(outcome) = self
            .retry("push", batch, move |sink, batch| {
                Box::pin(sink.push_recorded(batch, &self.writes, record, cap, list_fence))
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

    /// After a master changed: reads the partition's record and, if it is not the position this
    /// lane pushes from (the failover lost the last pushes and their record), drops what was
    /// gathered and re-reads from the recorded offset, as a refused push would. False when Redis
    /// could not be asked.
    pub(super) async fn recheck_record(&self, eo: &ExactlyOnceLane, batch: &mut Batch) -> bool {
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
        if self.landed_in_window(eo, recorded, batch) {
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
        self.window.forget();
        self.rewind_to(eo, recorded).await;
        true
    }

    /// Whether Redis records a position inside what the lane holds, past what it believes: a
    /// window's batches landed although their answers were lost (Redis went away meanwhile). Then
    /// the lane takes them as landed — not sent again, settled once a push confirms them — instead
    /// of dropping what it holds and re-reading from Kafka.
    fn landed_in_window(&self, eo: &ExactlyOnceLane, recorded: Option<i64>, batch: &Batch) -> bool {
        let (Some(at), Some(first), Some(last)) =
            (recorded, batch.first_offset(), batch.last_offset())
        else {
            return false;
        };
        let ahead = eo.recorded().is_none_or(|believed| at > believed);
        if self.window_size() <= 1 || !ahead || at <= first || at > last + 1 {
            return false;
        }
        eo.set_recorded(recorded);
        self.window.landed_at(at);
        true
    }

    /// Takes `recorded` as the partition's position and seeks the partition there (or, with no
    /// record, to [`Lane::fallback_position`]).
    pub(super) async fn rewind_to(&self, eo: &ExactlyOnceLane, recorded: Option<i64>) {
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
    pub(super) async fn fallback_position(&self) -> Option<Offset> {
        let mut backoff = Backoff::new(&self.retry);
        loop {
            match self.kafka.committed().await {
                Ok(Some(committed)) => {
                    self.report_lost_record(committed);
                    return Some(Offset::Offset(committed.offset));
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
    /// the record is written with every push, so either the topic ran at-least-once until now (the
    /// commit's mark says so, when the broker keeps it), or Redis lost data (a restart without
    /// persistence, a failover to a replica that lagged, a flush). In the second case what the
    /// list held before the commit may be gone, and Kafka does not deliver it again.
    pub(super) fn report_lost_record(&self, committed: Committed) {
        let offset = committed.offset;
        if committed.by == Some(Delivery::AtLeastOnce) {
            info!(topic = %self.topic.name, partition = self.partition, committed = offset,
                  "exactly-once: no record in Redis and the last commit was made at-least-once; resuming from it");
            return;
        }
        error!(topic = %self.topic.name, partition = self.partition, list = %self.topic.list_key, committed = offset,
               "exactly-once: Redis has no record of this partition although Kafka committed offset {offset}: unless \
                the topic ran at-least-once until now, Redis lost data, and messages before that offset that were on \
                the list may be lost; resuming from it");
    }
}
