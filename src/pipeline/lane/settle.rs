//! Delivering a batch at least once and settling it: the dead letters and the push, retried with
//! backoff until Redis answers, then the next offset stored for the commit.
//!
//! What landed is never sent again: the dead letters go first and are marked as pushed once Redis
//! took them, so a push of the messages that is refused (the fence, a key of the wrong type) and
//! retried later sends only what is still missing.

use std::time::Duration;

use tokio::time::sleep;
use tracing::{debug, error, info, warn};

use super::{Lane, Settled, FENCED_OUT, RECOVERIES, REDIS_ERRORS};
use crate::logging::RateLimit;
use crate::pipeline::backoff::Backoff;
use crate::pipeline::batch::Batch;
use crate::pipeline::deliver::{Answer, Fence, Pushed, Refusal};
use crate::pipeline::partition::KafkaPartition;
use crate::redis::RedisSink;

/// A key of the wrong type refuses every push to it until an operator acts: one line now and then.
pub(super) static WRONG_TYPES: RateLimit = RateLimit::new(Duration::from_secs(30));

/// When a push began and how many bytes the batch held then, for latency and byte counts.
pub(super) struct Push {
    pub(super) at: std::time::Instant,
    pub(super) bytes: usize,
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
    /// Pushes the batch's dead letters, then its messages (what fits, with a cap), until Redis
    /// acknowledges, stores the next offset and removes what was delivered from the batch.
    /// Retries until it succeeds or the gate closes: a lane whose drain deadline passes is aborted
    /// by its owner, and then its offset is simply never stored, so Kafka delivers the batch again.
    pub(super) async fn deliver(&self, batch: &mut Batch) -> Settled {
        if self.window_size() > 1 && !self.window_plain(batch) {
            return self.deliver_window(batch).await;
        }
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
        // Dead letters first, all of them, marked once Redis took them: a message push that is
        // then held (refused, the gate closed) and sent again later does not repeat them, and no
        // message that landed waits behind a dead-letter push that could be held.
        let everything = batch.len();
        let dead = batch.dead_letters_before(everything).count();
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
        let Some(pushed) = self
            .retry("push", batch, |sink, batch| {
                Box::pin(sink.push(batch, &self.writes, cap, list_fence))
            })
            .await
        else {
            return Settled::Held;
        };
        let cut = batch.cut_after(pushed.messages);
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
        self.store_settled(batch, started, cut, pushed.messages, dead, next_offset);
        if pushed.messages < messages {
            Settled::ListFull {
                list_len: pushed.list_len.unwrap_or_default(),
            }
        } else {
            Settled::Complete
        }
    }

    /// Stores `next_offset` for the commit and removes the batch's first `cut` entries, which
    /// reached Redis (`messages` messages and `dead` dead letters), recording what happened.
    pub(super) fn store_settled(
        &self,
        batch: &mut Batch,
        started: Push,
        cut: usize,
        messages: usize,
        dead: usize,
        next_offset: Option<i64>,
    ) {
        if let Some(next) = next_offset.filter(|n| *n > 0) {
            // librdkafka stores `offset + 1`: the next offset to read.
            if let Err(e) = self.kafka.store_offset(next) {
                // Only happens once the partition is no longer ours; the new owner re-reads from
                // the last commit (at-least-once) or from Redis' record (exactly-once).
                debug!(topic = %self.topic.name, partition = self.partition, error = %e, "could not store offset");
            }
        }
        batch.remove_front(cut);
        let bytes = started.bytes.saturating_sub(batch.bytes()) as u64;
        self.state.record_push(started.at.elapsed(), bytes); // latency histogram, bytes/topic
        if let Some(next) = next_offset {
            self.state
                .on_delivered(next, messages as u64, dead as u64, batch.oldest_timestamp());
        }
    }

    /// Runs `op` until Redis acknowledges it, with capped exponential backoff between attempts.
    /// `None` when the lease gate closed meanwhile, or Redis refused the push's fence (then this
    /// lane refuses the gate, and the lease holder verifies the lease: still its own, it writes
    /// the fence again and opens the gate; else it steps down): the batch is kept, and nothing is
    /// stored. A key of the wrong type holds the batch here, asking again with backoff: the script
    /// wrote nothing, so a later attempt appends the batch once.
    pub(super) async fn retry<'a, T>(
        &'a self,
        what: &str,
        batch: &'a Batch,
        op: impl Fn(&'a RedisSink, &'a Batch) -> PushFuture<'a, Answer<T>>,
    ) -> Option<T> {
        let mut backoff = Backoff::new(&self.retry);
        let mut failures = 0u32;
        loop {
            match op(&self.sink, batch).await {
                Ok(Answer::Taken(value)) => {
                    if failures > 0 {
                        if let Some(held) = RECOVERIES.check() {
                            info!(topic = %self.topic.name, partition = self.partition, failures, suppressed = held,
                                  "Redis {what} succeeded after retrying");
                        }
                    }
                    return Some(value);
                }
                Ok(Answer::Refused(Refusal::Fence)) => {
                    self.gate.refuse();
                    if let Some(held) = FENCED_OUT.check() {
                        warn!(topic = %self.topic.name, partition = self.partition, list = batch.list_key(),
                              suppressed = held,
                              "Redis refused the {what}: the list's fence does not hold this holder's; pushing paused while the lease is verified");
                    }
                    return None;
                }
                Ok(Answer::Refused(Refusal::WrongType(wrong))) => {
                    failures += 1;
                    self.stats.redis_errors.inc();
                    if let Some(held) = WRONG_TYPES.check() {
                        error!(topic = %self.topic.name, partition = self.partition, key = %wrong.key,
                               found = %wrong.found, wanted = %wrong.wanted, suppressed = held,
                               "Redis key {:?} is a {}, not the {} this {what} writes: nothing was written; \
                                holding the batch and trying again until the key is deleted or renamed",
                               wrong.key, wrong.found, wrong.wanted);
                    }
                    if !self.wait_to_retry(&mut backoff).await {
                        return None;
                    }
                }
                Err(e) => {
                    failures += 1;
                    self.stats.redis_errors.inc();
                    if let Some(held) = REDIS_ERRORS.check() {
                        warn!(topic = %self.topic.name, partition = self.partition, list = batch.list_key(),
                              error = %e, attempt = failures, retry_in_ms = backoff.peek().as_millis() as u64,
                              suppressed = held, "Redis {what} failed; retrying the same batch");
                    }
                    if !self.wait_to_retry(&mut backoff).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Sleeps the next backoff step; false when the gate closed meanwhile: the lease was lost or
    /// is in doubt, and a retry now could land after another instance's pushes.
    pub(super) async fn wait_to_retry(&self, backoff: &mut Backoff) -> bool {
        sleep(backoff.next_wait()).await;
        self.gate.is_open()
    }
}

type PushFuture<'a, T> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<T, ::redis::RedisError>> + Send + 'a>,
>;
