//! Produce→list latency at a fixed offered rate.
//!
//! Each payload starts with its send time (nanoseconds since this run's epoch, little endian) and
//! its sequence number (the bridge runs with the `raw` envelope by default, so the bytes arrive
//! unchanged). A reader pops every list in one pipelined round trip, blocking in `BLMPOP` only when
//! all are empty (it wakes as soon as an element lands), and records, per message, the time from
//! `send()` to the pop: producer, broker, bridge and Redis together. The producer's delivery
//! reports give a second figure, from the broker's acknowledgement to the pop, which leaves out
//! the load generator's own batching (its `linger.ms`) and request queueing: broker to list.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::bail;
use rdkafka::client::ClientContext;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext};

use super::services::{Broker, RedisService, Topics};

/// Payload bytes the latency runs stamp: the send time, then the sequence number.
pub const STAMP: usize = 16;

/// Percentiles of one latency distribution, in milliseconds.
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(mut nanos: Vec<u64>) -> Option<Percentiles> {
        if nanos.is_empty() {
            return None;
        }
        nanos.sort_unstable();
        let at = |q: f64| {
            let i = ((nanos.len() as f64 * q).ceil() as usize).clamp(1, nanos.len()) - 1;
            nanos[i] as f64 / 1e6
        };
        Some(Percentiles {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        })
    }
}

/// The latency run's figures.
pub struct Latency {
    pub messages: usize,
    /// Sent but never seen on a list (deleted by the mock broker's retention before the bridge
    /// read them: the bridge fell more than ~33,000 messages per partition behind).
    pub missing: usize,
    /// Messages per second actually sent.
    pub achieved: f64,
    /// From `send()` to the pop.
    pub from_send: Percentiles,
    /// From the broker's acknowledgement (as the producer's delivery report saw it) to the pop.
    pub from_ack: Percentiles,
    /// Share of messages popped before the producer saw their acknowledgement. Large when the
    /// load generator falls behind serving its reports: `from_ack` then means little.
    pub popped_before_ack: f64,
    /// Per message popped after its acknowledgement was seen: (acknowledged at, acknowledgement
    /// to pop), nanoseconds on [`now_ns`]'s clock.
    pub acked: Vec<(u64, u64)>,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since this run's epoch: the clock of the payload stamps and of [`Latency::acked`].
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Records when the broker acknowledged each message, by sequence number. Reports are served by
/// the producer's `poll`, which the load loop calls every ~0.2 ms, so a recorded time is late by
/// up to that much (the figure from the acknowledgement errs low, never high).
struct AckClock {
    acked_ns: Arc<Vec<AtomicU64>>,
}

impl ClientContext for AckClock {}

impl ProducerContext for AckClock {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sequence: usize) {
        if result.is_ok() {
            if let Some(slot) = self.acked_ns.get(sequence) {
                slot.store(now_ns(), Ordering::Relaxed);
            }
        }
    }
}

/// Offers `rate` messages a second for `duration` and then for as long as `more` holds, then
/// waits for all of them to arrive.
#[allow(clippy::too_many_arguments)]
pub fn run(
    broker: &Broker,
    redis: &RedisService,
    topics: &Topics,
    rate: f64,
    duration: Duration,
    size: usize,
    producer_linger_ms: u64,
    more: &dyn Fn() -> bool,
) -> anyhow::Result<Latency> {
    epoch();
    let lists = topics.lists();
    let stop = Arc::new(AtomicBool::new(false));
    let expected = Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
    let reader = {
        let mut conn = redis.connection()?;
        let (lists, stop, expected) = (lists.clone(), stop.clone(), expected.clone());
        // (sequence, popped at, sent at) per element.
        std::thread::spawn(move || -> anyhow::Result<Vec<(u64, u64, u64)>> {
            let mut latencies = Vec::new();
            let mut idle_since = Instant::now();
            loop {
                // Every list in one round trip: BLMPOP alone takes from the first non-empty key
                // only, so with several lists a busy first one would starve the others and
                // charge the reader's own lag to the bridge.
                let mut pipe = redis::pipe();
                for list in &lists {
                    pipe.cmd("LPOP").arg(list).arg(10_000);
                }
                let mut popped: Vec<Option<Vec<Vec<u8>>>> = pipe.query(&mut conn)?;
                if popped.iter().all(Option::is_none) {
                    // Nothing waiting: block until an element lands on any list.
                    let woke: Option<(String, Vec<Vec<u8>>)> = redis::cmd("BLMPOP")
                        .arg(0.05)
                        .arg(lists.len())
                        .arg(&lists)
                        .arg("LEFT")
                        .arg("COUNT")
                        .arg(10_000)
                        .query(&mut conn)?;
                    popped = vec![woke.map(|(_, elements)| elements)];
                }
                let now = now_ns();
                let mut any = false;
                for elements in popped.into_iter().flatten() {
                    any = true;
                    for e in elements {
                        let sent = u64::from_le_bytes(e[..8].try_into()?);
                        let sequence = u64::from_le_bytes(e[8..STAMP].try_into()?);
                        latencies.push((sequence, now, sent));
                    }
                }
                if any {
                    idle_since = Instant::now();
                } else if stop.load(Ordering::Relaxed)
                    && idle_since.elapsed() > Duration::from_secs(5)
                {
                    // Nothing for a while after the producer finished: the rest is not coming
                    // (the mock broker drops what a lagging consumer has not read in time).
                    return Ok(latencies);
                }
                if latencies.len() >= expected.load(Ordering::Relaxed) {
                    return Ok(latencies);
                }
            }
        })
    };

    // Room for every sequence number the run can send (it offers `rate` for `duration`, and
    // `more` may add a little: past this, messages go without an acknowledgement time).
    let capacity = (rate * duration.as_secs_f64() * 1.1) as usize + 10_000;
    let acked_ns: Arc<Vec<AtomicU64>> =
        Arc::new((0..capacity).map(|_| AtomicU64::new(0)).collect());
    let producer = broker.producer_with(
        producer_linger_ms,
        AckClock {
            acked_ns: acked_ns.clone(),
        },
    )?;
    let mut payload = vec![b'x'; size];
    let progress = super::bar((rate * duration.as_secs_f64()) as u64, "latency");
    let started = Instant::now();
    let mut sent = 0usize;
    loop {
        let elapsed = started.elapsed();
        if elapsed >= duration && !more() {
            break;
        }
        let due = (rate * elapsed.as_secs_f64()) as usize;
        while sent < due {
            let (topic, partition) = topics.target(sent);
            payload[..8].copy_from_slice(&now_ns().to_le_bytes());
            payload[8..STAMP].copy_from_slice(&(sent as u64).to_le_bytes());
            let record = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, sent)
                .partition(partition)
                .payload(&payload);
            if let Err((e, _)) = producer.send(record) {
                // Queue full: the offered rate is more than the broker takes; note and go on.
                producer.poll(Duration::from_millis(1));
                if sent == 0 {
                    bail!("latency: cannot produce: {e}");
                }
                continue;
            }
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        progress.set_position(sent as u64);
        std::thread::sleep(Duration::from_micros(200));
    }
    let offered_for = started.elapsed();
    producer.flush(Duration::from_secs(60))?;
    expected.store(sent, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let popped = match reader.join() {
        Ok(result) => result?,
        Err(_) => bail!("latency: the reader panicked"),
    };
    progress.finish_and_clear();
    let from_send = popped.iter().map(|&(_, at, sent)| at.saturating_sub(sent));
    // A pop can beat the producer's poll that serves the report: that counts as 0.
    let from_ack: Vec<(u64, bool, u64)> = popped
        .iter()
        .filter_map(|&(sequence, at, _)| {
            let acked = acked_ns.get(sequence as usize)?.load(Ordering::Relaxed);
            (acked > 0).then(|| (at.saturating_sub(acked), at < acked, acked))
        })
        .collect();
    let acked = from_ack
        .iter()
        .filter(|(_, before, _)| !before)
        .map(|&(ns, _, acked)| (acked, ns))
        .collect();
    let before_ack = from_ack.iter().filter(|(_, before, _)| *before).count();
    let popped_before_ack = before_ack as f64 / from_ack.len().max(1) as f64;
    let (Some(from_send), Some(from_ack)) = (
        Percentiles::of(from_send.collect()),
        Percentiles::of(from_ack.into_iter().map(|(ns, _, _)| ns).collect()),
    ) else {
        bail!("latency: none of the {sent} messages arrived");
    };
    Ok(Latency {
        messages: sent,
        missing: sent.saturating_sub(popped.len()),
        achieved: sent as f64 / offered_for.as_secs_f64(),
        from_send,
        from_ack,
        popped_before_ack,
        acked,
    })
}
