//! `kafka2redis bench --isolation`: does a trickle topic keep flowing while another drains a
//! backlog?
//!
//! One topic (`--partitions`) is filled with `--messages` first; a second topic of one partition
//! gets nothing yet. The bridge starts on both; a producer offers the trickle topic
//! `--trickle-rate` msg/s until 2 s after the backlog has drained, and every trickle message's time
//! from the broker's acknowledgement to its pop from the list is recorded ([`latency::run`]). The
//! report splits them by when the broker acknowledged them: before the backlog started flowing
//! (they wait for the group join, as the backlog does), during the drain (the figure the scenario
//! is for: what the backlog's lanes cost a partition that is not theirs), and after. A drain is
//! short, so `--pairs` runs are made and their samples pooled.
//!
//! On a real broker the trickle starts with the bridge. On the mock broker it starts when the
//! backlog starts flowing: the mock answers a fetch with one message set per partition, where
//! Kafka returns as many as fit, and each trickle message is a message set of its own — so the
//! messages offered during the group join would be read one fetch at a time, each fetch also
//! carrying a message set of every backlog partition, and those acknowledged during the drain
//! would wait behind them: the mock's wait, not the bridge's (docs/benchmarks.md measures it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail};

use super::bridge::Bridge;
use super::latency::{self, Percentiles};
use super::services::{self, Broker, RedisService, Topics};
use super::{bad_input, rate_f, BenchArgs};

/// How long the trickle goes on after the backlog drained.
const AFTER_DRAIN: Duration = Duration::from_secs(2);

pub fn run(args: &BenchArgs, redis: &RedisService) -> anyhow::Result<()> {
    if args.envelope.iter().any(|e| e != "raw") {
        bad_input!("--isolation reads the trickle's raw bytes: leave out --envelope");
    }
    if args.trickle_rate.is_nan() || args.trickle_rate <= 0.0 {
        bad_input!("--trickle-rate must be more than 0");
    }
    if args.backlog_batch_bytes == 0 {
        bad_input!("--backlog-batch-bytes must be more than 0");
    }
    let (partitions, messages) = (args.partitions[0], args.messages());
    if args.broker == "mock" {
        let keeps = services::mock_retention(args.size) * partitions as usize;
        if messages > keeps {
            bad_input!(
                "--messages {messages} is more than the mock broker keeps in {partitions} partitions (~{keeps}): lower --messages or raise --partitions"
            );
        }
    }
    println!();
    println!(
        "== isolation: backlog of {messages} x {} B over {partitions} partitions, trickle topic of 1 partition at {} msg/s, {} runs, broker {}",
        args.size,
        rate_f(args.trickle_rate),
        args.pairs,
        args.broker
    );
    // A drain lasts a fraction of a second, so one run sees only a few trickle messages during
    // it: the runs' samples are pooled.
    let mut pooled: [Vec<u64>; 3] = Default::default();
    for i in 0..args.pairs as usize {
        println!("run {}/{}", i + 1, args.pairs);
        let windows = once(args, redis, i, partitions, messages)?;
        for (pool, samples) in pooled.iter_mut().zip(windows) {
            pool.extend(samples);
        }
    }
    println!("all {} runs:", args.pairs);
    print_windows(pooled);
    Ok(())
}

/// Waits until the first of the backlog reaches Redis, or the drain has ended (it failed: the
/// drain's own error says why).
fn wait_for_flow(
    redis: &RedisService,
    backlog: &Topics,
    drained_at: &AtomicU64,
    stall_seconds: u64,
) -> anyhow::Result<()> {
    let mut conn = redis.connection()?;
    let lists = backlog.lists();
    let deadline = std::time::Instant::now() + Duration::from_secs(stall_seconds);
    while drained_at.load(Ordering::Relaxed) == 0
        && RedisService::total_len(&mut conn, &lists, backlog.streams)? == 0
    {
        if std::time::Instant::now() > deadline {
            bail!("isolation: no backlog reached Redis in {stall_seconds} s");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// The trickle's samples acknowledged before, during and after the drain.
const WINDOWS: [&str; 3] = [
    "before the drain (group join)",
    "during the drain",
    "after the drain",
];

fn print_windows(windows: [Vec<u64>; 3]) {
    for (what, samples) in WINDOWS.iter().zip(windows) {
        let n = samples.len();
        match Percentiles::of(samples) {
            Some(p) => println!(
                "  {what:<30} {n:>5} msgs: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
                p.p50_ms, p.p99_ms, p.max_ms
            ),
            None => println!("  {what:<30}     0 msgs"),
        }
    }
}

/// One run: a fresh broker and topics, the bridge started on the backlog with the trickle on.
fn once(
    args: &BenchArgs,
    redis: &RedisService,
    index: usize,
    partitions: i32,
    messages: usize,
) -> anyhow::Result<[Vec<u64>; 3]> {
    let broker = Broker::start(&args.broker)?;
    let both = Topics::new(index * 1000, 2, 2, "raw");
    let backlog = Topics {
        names: vec![both.names[0].clone()],
        per_topic: partitions,
        envelope: "raw".into(),
        streams: false,
    };
    let trickle = Topics {
        names: vec![both.names[1].clone()],
        per_topic: 1,
        envelope: "raw".into(),
        streams: false,
    };
    broker.create_topics(&backlog)?;
    broker.create_topics(&trickle)?;
    broker.produce_bulk(&backlog, messages, args.size, args.backlog_batch_bytes)?;

    latency::now_ns();
    let drained_at = AtomicU64::new(0);
    let mut bridge = Bridge::spawn(args, &broker, redis, &both)?;
    let started_ns = latency::now_ns();
    let (drain, trickled) = std::thread::scope(|s| {
        let drainer = s.spawn(|| {
            let run = bridge.drain(redis, &backlog, messages, args.stall_seconds);
            // Also on failure, so that the trickle stops.
            drained_at.store(latency::now_ns().max(1), Ordering::Relaxed);
            run
        });
        let more = || {
            let at = drained_at.load(Ordering::Relaxed);
            at == 0 || latency::now_ns() < at + AFTER_DRAIN.as_nanos() as u64
        };
        let trickled = if matches!(broker, Broker::Mock(_)) {
            wait_for_flow(redis, &backlog, &drained_at, args.stall_seconds)
        } else {
            Ok(())
        }
        .and_then(|()| {
            latency::run(
                &broker,
                redis,
                &trickle,
                args.trickle_rate,
                Duration::ZERO,
                args.size,
                args.producer_linger_ms,
                &more,
            )
        });
        let drain = drainer
            .join()
            .map_err(|_| anyhow!("isolation: the drain watcher panicked"));
        (drain, trickled)
    });
    let drain = drain??;
    let trickled = trickled?;
    let end_ns = drained_at.load(Ordering::Relaxed);
    let flowing_from = end_ns.saturating_sub(drain.flowing.as_nanos() as u64);
    if !bridge.stop()? {
        bail!("the bridge did not stop cleanly (see its log above)");
    }
    println!(
        "backlog        {} msg/s while flowing ({:.2} s), after {:.2} s of start-up and group join",
        rate_f(messages as f64 / drain.flowing.as_secs_f64().max(1e-9)),
        drain.flowing.as_secs_f64(),
        flowing_from.saturating_sub(started_ns) as f64 / 1e9
    );
    println!(
        "trickle        {} sent, {} missing; broker ack -> list by when the broker acknowledged:",
        trickled.messages, trickled.missing
    );
    let window = |from: u64, to: u64| -> Vec<u64> {
        trickled
            .acked
            .iter()
            .filter(|&&(acked, _)| acked >= from && acked < to)
            .map(|&(_, ns)| ns)
            .collect()
    };
    let windows = [
        window(0, flowing_from),
        window(flowing_from, end_ns),
        window(end_ns, u64::MAX),
    ];
    print_windows(windows.clone());
    if trickled.popped_before_ack > 0.1 {
        println!(
            "  ({:.0}% were popped before their acknowledgement was seen: the figures err low)",
            trickled.popped_before_ack * 100.0
        );
    }
    redis.delete(&both.lists())?;
    Ok(windows)
}
