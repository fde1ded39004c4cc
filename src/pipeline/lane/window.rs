//! Several batches of one partition in flight at once: a lane sends a window of up to
//! `batch.in_flight` batches on its connection without waiting for each answer, and settles them
//! strictly in offset order once they are answered.
//!
//! Redis runs one connection's commands in order, but a connection can break with a window on
//! it, and a client can send one of its commands again on its own. So every batch of a window
//! names what must be in Redis before it: exactly-once, the partition's offset record (the offset
//! the batch before it leaves there); at-least-once, the lane's field in the list's sequence hash
//! ([`crate::keys::sequence_key`]; `<nonce>:<next offset>`, the nonce unique to this lane's run).
//! A batch whose predecessor did not land whole is refused before it writes anything, so nothing
//! overtakes a failed batch, and a refusal says what Redis holds: which of the window landed.
//! Such a refusal is the earlier batch's failure, not a fence refusal nor another writer's: no
//! warning, no seek; the lane sends again from the first batch that did not land, and never
//! again what did.
//!
//! With the WAIT guard, only the window's last batch carries a `WAIT`, which covers the batches
//! before it (it waits for the replication offset of everything written before it). Offsets are
//! stored only for batches a successful `WAIT` covered; batches that landed without one are kept
//! (not sent again) until the next window's `WAIT` covers them — a window of nothing new but that
//! `WAIT` when no messages came since.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::Poll;

use ::redis::RedisError;
use tracing::{error, info, warn};

use super::settle::{Push, WRONG_TYPES};
use super::{Lane, Settled, FENCED_OUT, RECOVERIES, REDIS_ERRORS, REFUSED_BATCHES};
use crate::config::{defaults, TopicConfig};
use crate::pipeline::backoff::Backoff;
use crate::pipeline::batch::Batch;
use crate::pipeline::deliver::{Answer, ExactlyOnce, OffsetRecord, Refusal, Sequence};
use crate::pipeline::deliver_sequenced::Sequenced;
use crate::pipeline::partition::KafkaPartition;
use crate::pipeline::plan::Writes;

/// A lane's window: how many batches it keeps in flight and what it knows between windows.
pub(super) struct Window {
    /// `batch.in_flight`; `None`: chosen by the topic's push ([`Lane::window_size`]).
    in_flight: Option<usize>,
    /// At-least-once: the list's sequence hash and the lane's field in it; `None` when the list
    /// name leaves no slot to share (then the lane keeps one batch in flight).
    sequence: Option<(String, String)>,
    /// Makes this lane's sequence values its own.
    nonce: String,
    progress: Mutex<Progress>,
}

#[derive(Default)]
struct Progress {
    /// At-least-once: what the lane's sequence field holds, as far as the lane knows.
    chain: Option<String>,
    /// The batch's entries below this offset are in Redis, but no `WAIT` covered them yet.
    landed: Option<i64>,
    backoff: Option<Backoff>,
    failures: u32,
}

impl Window {
    pub(super) fn new(topic: &TopicConfig, partition: i32, in_flight: Option<usize>) -> Window {
        static LANES: AtomicU64 = AtomicU64::new(0);
        let lane = LANES.fetch_add(1, Ordering::Relaxed);
        Window {
            in_flight: in_flight.map(|n| n.max(1)),
            sequence: crate::keys::sequence_key(&topic.list_key)
                .map(|key| (key, crate::keys::offsets_field(&topic.name, partition))),
            nonce: format!(
                "{:x}.{:x}.{lane:x}",
                std::process::id(),
                crate::clock::now_ms()
            ),
            progress: Mutex::new(Progress::default()),
        }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The offset an at-least-once sequence value of this lane stands for.
    fn offset_of(&self, value: &str) -> Option<i64> {
        value
            .strip_prefix(self.nonce.as_str())?
            .strip_prefix(':')?
            .parse()
            .ok()
    }

    /// The batch's entries below `offset` are in Redis (not yet covered by a `WAIT`).
    pub(super) fn landed_at(&self, offset: i64) {
        self.progress().landed = Some(offset);
    }

    /// Forgets what landed: the batch was dropped (exactly-once re-reads from Redis' record).
    pub(super) fn forget(&self) {
        self.progress().landed = None;
    }
}

/// What Redis holds after (or instead of) a push: the sequence value or record as it reads, and
/// the offset it stands for, when it is this lane's.
struct Mark {
    raw: Option<String>,
    offset: Option<i64>,
}

/// One batch's answer.
enum Reply {
    Pushed {
        messages: usize,
        list_len: u64,
        mark: Mark,
    },
    /// Refused: what Redis holds is not what the batch expected.
    Behind(Mark),
    Refused(Refusal),
    Failed(RedisError),
}

type Flight<'a> = Pin<Box<dyn Future<Output = Reply> + Send + 'a>>;

/// Polls `flight` once, so that its command is on the connection before the next one is made;
/// its answer when it already came.
async fn send(flight: &mut Flight<'_>) -> Option<Reply> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match flight.as_mut().poll(cx) {
            Poll::Ready(reply) => Some(reply),
            Poll::Pending => None,
        })
    })
    .await
}

/// One window as it is sent.
struct Round<'a> {
    /// The offset of the lane's first unsettled entry.
    first: Option<i64>,
    /// Entries below this landed before, without a `WAIT` covering them.
    landed_before: Option<i64>,
    parts: &'a [Batch],
    /// The next offset once each part is in.
    ends: &'a [i64],
    /// At-least-once: what the lane's sequence field holds, as far as it knows.
    chain: Option<String>,
    /// Whether the WAIT guard is on for the list.
    guarded: bool,
}

/// What one window told the lane.
#[derive(Default)]
struct Outcome {
    landed: Option<i64>,
    confirmed: Option<i64>,
    list_full: Option<u64>,
    fenced: bool,
    wrong: Option<crate::pipeline::deliver::WrongType>,
    error: Option<RedisError>,
    /// Exactly-once: Redis records a position outside what the lane holds (another writer, or
    /// lost writes): `Some(recorded)`.
    elsewhere: Option<Option<i64>>,
    refused: bool,
}

impl<P: KafkaPartition> Lane<P> {
    /// How many batches this lane keeps in flight: `batch.in_flight`, except for streams,
    /// at-least-once BullMQ and RQ jobs (their scripts take no sequence yet) and lists whose name
    /// leaves no slot for the sequence hash: one. Unset, [`defaults::BATCH_IN_FLIGHT`].
    pub(super) fn window_size(&self) -> usize {
        let n = self.window.in_flight.unwrap_or(defaults::BATCH_IN_FLIGHT);
        match (
            &self.writes,
            self.exactly_once.is_some(),
            &self.window.sequence,
        ) {
            _ if n <= 1 => 1,
            (Writes::List(_) | Writes::HashJobs(_), true, _) => n,
            (Writes::List(_), false, Some(_)) => n,
            // Streams, and at-least-once jobs kept in hashes: one batch at a time for now.
            _ => 1,
        }
    }

    /// Whether an at-least-once window would be one batch with nothing unsettled before it: then
    /// it goes as one plain push (a variadic `RPUSH` where nothing else is needed), and the next
    /// window's first batch expects nothing, since this push leaves the sequence as it was.
    pub(super) fn window_plain(&self, batch: &Batch) -> bool {
        if self.exactly_once.is_some() {
            return false;
        }
        let mut progress = self.window.progress();
        let one = progress.landed.is_none()
            && batch.part_end(
                0,
                self.batch_config.max_messages,
                self.batch_config.max_bytes,
            ) == batch.len();
        if one {
            progress.chain = None;
        }
        one
    }

    /// Delivers up to a window of the batch's entries (dead letters first, as one push), settles
    /// what Redis took — in order, contiguously — and keeps the rest in the batch.
    pub(super) async fn deliver_window(&self, batch: &mut Batch) -> Settled {
        let started = Push::start(batch);
        let token = self.gate.token();
        if self.fence_keys.is_some() && token.is_none() {
            return Settled::Held; // under the lease no push goes unfenced
        }
        let (list_fence, dead_fence) = self.fences(token.as_deref());
        if batch.has_unpushed_dead_letters() {
            let everything = batch.len();
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
        }
        let (chain, landed_before) = {
            let progress = self.window.progress();
            (progress.chain.clone(), progress.landed)
        };
        // What landed is not sent again; with nothing after it, an empty part carries the `WAIT`.
        let skip = landed_before.map_or(0, |l| batch.entries_below(l));
        let mut parts = Vec::new();
        let mut from = skip;
        while parts.len() < self.window_size() && from < batch.len() {
            let end = batch.part_end(
                from,
                self.batch_config.max_messages,
                self.batch_config.max_bytes,
            );
            parts.push(batch.copy_of(from..end));
            from = end;
        }
        if parts.is_empty() {
            parts.push(batch.copy_of(skip..skip));
        }
        let ends: Vec<i64> = parts
            .iter()
            .map(|p| {
                p.last_offset()
                    .map(|o| o + 1)
                    .or(landed_before)
                    .unwrap_or(0)
            })
            .collect();
        let guarded = self.sink.wait_replicas(Some(&self.topic.list_key)) > 0;
        let round = Round {
            first: batch.first_offset(),
            landed_before,
            parts: &parts,
            ends: &ends,
            chain,
            guarded,
        };
        let outcome = self.send_window(round, list_fence).await;
        self.settle_window(batch, started, landed_before, outcome, guarded)
            .await
    }

    /// Sends every part, in order, the last one with the `WAIT` when the guard is on, and
    /// collects their answers in order.
    async fn send_window(
        &self,
        round: Round<'_>,
        list_fence: Option<crate::pipeline::deliver::Fence<'_>>,
    ) -> Outcome {
        let Round {
            first,
            landed_before,
            parts,
            ends,
            chain,
            guarded,
        } = round;
        let quiet = self.sink.without_wait();
        let cap = self.topic.cap.map(|c| c.max);
        let last = parts.len() - 1;
        let sets: Vec<String> = ends
            .iter()
            .map(|end| format!("{}:{end}", self.window.nonce))
            .collect();
        let mut flights: Vec<Result<Reply, Flight<'_>>> = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let sink = if i == last { &self.sink } else { &quiet };
            let mut flight: Flight<'_> = match &self.exactly_once {
                Some(eo) => {
                    let record = OffsetRecord {
                        key: &eo.offsets_key,
                        field: &eo.field,
                        expected: if i == 0 {
                            eo.recorded()
                        } else {
                            Some(ends[i - 1])
                        },
                    };
                    let writes = &self.writes;
                    Box::pin(async move {
                        match sink
                            .push_recorded(part, writes, record, cap, list_fence)
                            .await
                        {
                            Ok(Answer::Taken(ExactlyOnce::Pushed {
                                pushed,
                                next_offset,
                            })) => Reply::Pushed {
                                messages: pushed.messages,
                                list_len: pushed.list_len.unwrap_or_default(),
                                mark: Mark {
                                    raw: Some(next_offset.to_string()),
                                    offset: Some(next_offset),
                                },
                            },
                            Ok(Answer::Taken(ExactlyOnce::Refused { recorded })) => {
                                Reply::Behind(Mark {
                                    raw: recorded.map(|r| r.to_string()),
                                    offset: recorded,
                                })
                            }
                            Ok(Answer::Refused(why)) => Reply::Refused(why),
                            Err(e) => Reply::Failed(e),
                        }
                    })
                }
                None => {
                    let (Writes::List(list), Some((key, field))) =
                        (&self.writes, &self.window.sequence)
                    else {
                        unreachable!("a window of at-least-once pushes is only kept for lists");
                    };
                    let sequence = Sequence {
                        key,
                        field,
                        expects: if i == 0 {
                            chain.as_deref()
                        } else {
                            Some(sets[i - 1].as_str())
                        },
                        sets: &sets[i],
                    };
                    let window = &self.window;
                    Box::pin(async move {
                        match sink
                            .push_sequenced(part, list, cap, list_fence, sequence)
                            .await
                        {
                            Ok(Answer::Taken(Sequenced::Pushed(pushed))) => {
                                let whole = pushed.messages >= part.messages();
                                Reply::Pushed {
                                    messages: pushed.messages,
                                    list_len: pushed.list_len.unwrap_or_default(),
                                    mark: Mark {
                                        raw: Some(if whole {
                                            sequence.sets.to_string()
                                        } else {
                                            format!("{}#{}", sequence.sets, pushed.messages)
                                        }),
                                        offset: None,
                                    },
                                }
                            }
                            Ok(Answer::Taken(Sequenced::OutOfSequence(holds))) => {
                                let offset = holds.as_deref().and_then(|h| window.offset_of(h));
                                Reply::Behind(Mark { raw: holds, offset })
                            }
                            Ok(Answer::Refused(why)) => Reply::Refused(why),
                            Err(e) => Reply::Failed(e),
                        }
                    })
                }
            };
            flights.push(match send(&mut flight).await {
                Some(reply) => Ok(reply),
                None => Err(flight),
            });
        }
        let mut outcome = Outcome {
            landed: landed_before,
            ..Outcome::default()
        };
        let expected_first = self.exactly_once.as_ref().map(|eo| eo.recorded());
        let mut chain_now = match expected_first {
            Some(recorded) => recorded.map(|r| r.to_string()),
            None => chain.clone(),
        };
        let end = ends[last];
        let start = first.unwrap_or(end);
        for (i, flight) in flights.into_iter().enumerate() {
            let reply = match flight {
                Ok(reply) => reply,
                Err(flight) => flight.await,
            };
            if outcome.list_full.is_some() {
                continue; // nothing after a part that did not fit can have landed
            }
            match reply {
                Reply::Pushed {
                    messages,
                    list_len,
                    mark,
                } => {
                    let part = &parts[i];
                    let to = if messages >= part.messages() {
                        ends[i]
                    } else {
                        outcome.list_full = Some(list_len);
                        part.offset_at(part.cut_after(messages)).unwrap_or(ends[i])
                    };
                    outcome.landed = Some(to);
                    if !guarded || i == last {
                        outcome.confirmed = Some(to);
                    }
                    chain_now = mark.raw;
                }
                Reply::Behind(mark) => {
                    outcome.refused = true;
                    outcome.landed = match mark.offset {
                        // Part of what the lane holds is in: up to there.
                        Some(at) if at > start && at <= end => Some(at),
                        // None of it: an earlier batch of this window or of the last one failed.
                        at if self.exactly_once.is_none()
                            || at == Some(start)
                            || Some(at) == expected_first =>
                        {
                            None
                        }
                        recorded => {
                            outcome.elsewhere = Some(recorded);
                            None
                        }
                    };
                    chain_now = mark.raw;
                }
                Reply::Refused(Refusal::Fence) => outcome.fenced = true,
                Reply::Refused(Refusal::WrongType(wrong)) => outcome.wrong = Some(wrong),
                Reply::Failed(e) => outcome.error = Some(e),
            }
        }
        if let Some(eo) = &self.exactly_once {
            if outcome.elsewhere.is_none() {
                eo.set_recorded(chain_now.as_deref().and_then(|r| r.parse().ok()));
            }
        } else {
            self.window.progress().chain = chain_now;
        }
        outcome
    }

    /// Stores the offset up to what a window settled (landed, and covered by a `WAIT` when the
    /// guard is on), keeps what landed beyond it, and decides what the lane does next.
    async fn settle_window(
        &self,
        batch: &mut Batch,
        started: Push,
        landed_before: Option<i64>,
        outcome: Outcome,
        guarded: bool,
    ) -> Settled {
        if let (Some(eo), Some(recorded)) = (&self.exactly_once, outcome.elsewhere) {
            if let Some(held) = REFUSED_BATCHES.check() {
                warn!(topic = %self.topic.name, partition = self.partition, ?recorded, suppressed = held,
                      "exactly-once: Redis records another position for this partition; dropping the batch and re-reading from there");
            }
            self.stats.refused_batches.inc();
            batch.clear();
            self.window.forget();
            self.rewind_to(eo, recorded).await;
            return Settled::Rewound;
        }
        let landed = outcome.landed;
        let confirmed = if guarded {
            outcome.confirmed.zip(landed).map(|(c, l)| c.min(l))
        } else {
            landed
        };
        let mut settled = false;
        if let (Some(to), Some(first)) = (confirmed, batch.first_offset()) {
            if to > first {
                let cut = batch.entries_below(to);
                let messages = batch.messages_before(cut);
                let dead = batch.dead_letters_count(cut);
                self.store_settled(batch, started, cut, messages, dead, Some(to));
                settled = true;
            }
        }
        let landed = landed.filter(|l| batch.first_offset().is_some_and(|f| *l > f));
        self.window.progress().landed = landed;
        if outcome.fenced {
            self.gate.refuse();
            if let Some(held) = FENCED_OUT.check() {
                warn!(topic = %self.topic.name, partition = self.partition, list = batch.list_key(), suppressed = held,
                      "Redis refused the push: the list's fence does not hold this holder's; pushing paused while the lease is verified");
            }
            return Settled::Held;
        }
        if let Some(list_len) = outcome.list_full {
            self.recovered();
            return Settled::ListFull { list_len };
        }
        let progressed = settled || landed != landed_before;
        if outcome.error.is_none() && outcome.wrong.is_none() && (!outcome.refused || progressed) {
            if !outcome.refused {
                self.recovered();
            }
            return Settled::Complete;
        }
        let (wait, failures) = {
            let mut progress = self.window.progress();
            progress.failures += 1;
            let backoff = progress
                .backoff
                .get_or_insert_with(|| Backoff::new(&self.retry));
            (backoff.next_wait(), progress.failures)
        };
        if let Some(wrong) = &outcome.wrong {
            self.stats.redis_errors.inc();
            if let Some(held) = WRONG_TYPES.check() {
                error!(topic = %self.topic.name, partition = self.partition, key = %wrong.key,
                       found = %wrong.found, wanted = %wrong.wanted, suppressed = held,
                       "Redis key {:?} is a {}, not the {} this push writes: nothing was written; \
                        holding the batch and trying again until the key is deleted or renamed",
                       wrong.key, wrong.found, wrong.wanted);
            }
        } else if let Some(e) = &outcome.error {
            self.stats.redis_errors.inc();
            if let Some(held) = REDIS_ERRORS.check() {
                warn!(topic = %self.topic.name, partition = self.partition, list = batch.list_key(),
                      error = %e, attempt = failures, retry_in_ms = wait.as_millis() as u64, suppressed = held,
                      "Redis push failed; sending again from the first batch that did not land");
            }
        }
        tokio::time::sleep(wait).await;
        if self.gate.is_open() {
            Settled::Complete
        } else {
            Settled::Held
        }
    }

    /// A window went through: the next failure backs off from the start again.
    fn recovered(&self) {
        let mut progress = self.window.progress();
        if progress.failures > 0 {
            if let Some(held) = RECOVERIES.check() {
                info!(topic = %self.topic.name, partition = self.partition, failures = progress.failures,
                      suppressed = held, "Redis push succeeded after retrying");
            }
        }
        progress.failures = 0;
        progress.backoff = None;
    }
}
