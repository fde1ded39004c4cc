//! Delivering a batch at least once and settling it: the push and the dead letters, retried with
//! backoff until Redis answers, then the next offset stored for the commit.

use tokio::time::sleep;
use tracing::{debug, info, warn};

use super::{Lane, Settled, FENCED_OUT, RECOVERIES, REDIS_ERRORS};
use crate::pipeline::backoff::Backoff;
use crate::pipeline::batch::Batch;
use crate::pipeline::deliver::{Fence, Fenced, Pushed};
use crate::pipeline::partition::KafkaPartition;
use crate::redis::RedisSink;

/// When a push began and how many bytes the batch held then, for latency and byte counts.
pub(super) struct Push {
    at: std::time::Instant,
    bytes: usize,
}

impl Push {
    pub(super) fn start(batch: &Batch) -> Push {
        Push {
            at: std::time::Instant::now(),
            bytes: batch.bytes(),
        }
    }
}

impl<P: KafkaPartition> Lane<P> {
    /// Pushes the batch (what fits, with a cap) until Redis acknowledges, pushes the dead letters
    /// before the cut, stores the next offset and removes what was delivered from the batch.
    /// Retries until it succeeds or the gate closes: a lane whose drain deadline passes is aborted
    /// by its owner, and then its offset is simply never stored, so Kafka delivers the batch again.
    pub(super) async fn deliver(&self, batch: &mut Batch) -> Settled {
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
                Box::pin(sink.push(batch, &self.writes, cap, list_fence))
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

    /// The fences the pushes present while the lease is held: `token` with the list's and the
    /// dead-letter list's fence keys.
    pub(super) fn fences<'a>(
        &'a self,
        token: Option<&'a str>,
    ) -> (Option<Fence<'a>>, Option<Fence<'a>>) {
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
    pub(super) fn settle(
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

    /// Runs `op` until Redis acknowledges it, with capped exponential backoff between attempts.
    /// `None` when the lease gate closed meanwhile, or Redis refused the push because another
    /// instance holds the lease (then this lane closes the gate itself): the batch is kept, and
    /// nothing is stored.
    pub(super) async fn retry<'a, T>(
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
}

type PushFuture<'a, T> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<T, ::redis::RedisError>> + Send + 'a>,
>;
