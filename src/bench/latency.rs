//! Produce→list latency at a fixed offered rate.
//!
//! Each payload starts with its send time (nanoseconds since this run's epoch, little endian; the
//! bridge runs with the `raw` envelope by default, so the bytes arrive unchanged). A reader pops
//! every list in one pipelined round trip, blocking in `BLMPOP` only when all are empty (it wakes
//! as soon as an element lands), and records, per message, the
//! time from `send()` to the pop: producer, broker, bridge and Redis together.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::bail;
use rdkafka::producer::{BaseRecord, Producer};

use super::services::{Broker, RedisService, Topics};

/// The latency run's figures.
pub struct Latency {
    pub messages: usize,
    /// Sent but never seen on a list (deleted by the mock broker's retention before the bridge
    /// read them: the bridge fell more than ~33,000 messages per partition behind).
    pub missing: usize,
    /// Messages per second actually sent.
    pub achieved: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Offers `rate` messages a second for `duration`, then waits for all of them to arrive.
pub fn run(
    broker: &Broker,
    redis: &RedisService,
    topics: &Topics,
    rate: f64,
    duration: Duration,
    size: usize,
    producer_linger_ms: u64,
) -> anyhow::Result<Latency> {
    epoch();
    let lists = topics.lists();
    let stop = Arc::new(AtomicBool::new(false));
    let expected = Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
    let reader = {
        let mut conn = redis.connection()?;
        let (lists, stop, expected) = (lists.clone(), stop.clone(), expected.clone());
        std::thread::spawn(move || -> anyhow::Result<Vec<u64>> {
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
                        latencies.push(now.saturating_sub(sent));
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

    let producer = broker.producer(producer_linger_ms)?;
    let mut payload = vec![b'x'; size];
    let progress = super::bar((rate * duration.as_secs_f64()) as u64, "latency");
    let started = Instant::now();
    let mut sent = 0usize;
    loop {
        let elapsed = started.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (rate * elapsed.as_secs_f64()) as usize;
        while sent < due {
            let (topic, partition) = topics.target(sent);
            payload[..8].copy_from_slice(&now_ns().to_le_bytes());
            let record = BaseRecord::<(), [u8]>::to(topic)
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
    let mut latencies = match reader.join() {
        Ok(result) => result?,
        Err(_) => bail!("latency: the reader panicked"),
    };
    progress.finish_and_clear();
    if latencies.is_empty() {
        bail!("latency: none of the {sent} messages arrived");
    }
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i] as f64 / 1e6
    };
    Ok(Latency {
        messages: sent,
        missing: sent.saturating_sub(latencies.len()),
        achieved: sent as f64 / offered_for.as_secs_f64(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    })
}
