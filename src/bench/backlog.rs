//! Memory behind full lists (`--backlog-cap`): what the bridge holds while every partition is
//! paused and a deep backlog waits in Kafka.
//!
//! The topic is filled first, then the bridge starts with every list capped and nothing popping:
//! the lists fill to the cap, each partition pauses, and what the bridge still holds is whatever
//! its prefetch and batches kept when the pause came. RSS is read again after the bridge has stood
//! still a while: one that let paused partitions' fetched messages pile up would show it there.

use std::time::{Duration, Instant};

use anyhow::bail;

use super::bridge::Bridge;
use super::services::{self, Broker, RedisService, Topics};
use super::{bad_input, proc, BenchArgs};

/// One backlog scenario over `partitions`, with every list capped at `cap`.
pub fn run(
    args: &BenchArgs,
    redis: &RedisService,
    index: usize,
    partitions: i32,
    cap: u64,
) -> anyhow::Result<()> {
    let broker = Broker::start(&args.broker)?;
    let topics = Topics::new(index * 1000, args.topics, partitions, &args.envelope[0]);
    // The mock cluster deletes what is beyond its retention, so a larger backlog would not be
    // there to wait; one round, no larger than it keeps.
    let messages = match &broker {
        Broker::Mock(_) => args
            .messages()
            .min(services::mock_retention(args.size) * topics.total() as usize),
        Broker::External(_) => args.messages(),
    };
    let full = (cap as usize).saturating_mul(topics.names.len());
    if messages <= full {
        bad_input!(
            "--messages ({messages} after the mock broker's retention) must exceed --backlog-cap x --topics ({full}), or nothing waits in Kafka"
        );
    }
    broker.create_topics(&topics)?;
    println!();
    println!(
        "== backlog: {messages} messages x {} B, {} topic(s) x {} partitions = {}, lists capped at {cap}, no worker, broker {}",
        args.size,
        topics.names.len(),
        topics.per_topic,
        topics.total(),
        broker.describe(),
    );
    broker.produce_bulk(&topics, messages, args.size, services::BULK_BATCH_BYTES)?;
    let mut bridge = Bridge::spawn(args, &broker, redis, &topics)?;
    let lists = topics.lists();
    let mut conn = redis.connection()?;

    let fill = super::bar(full as u64, "fill to cap");
    let (mut last_len, mut last_change) = (0, Instant::now());
    loop {
        let len = RedisService::total_len(&mut conn, &lists, topics.streams)?;
        if len >= full {
            break;
        }
        bridge.check_running()?;
        if len != last_len {
            (last_len, last_change) = (len, Instant::now());
            fill.set_position(len as u64);
        }
        if last_change.elapsed() > Duration::from_secs(args.stall_seconds) {
            fill.abandon();
            bail!(
                "the lists stopped at {len} of {full} for {} s:\n{}",
                args.stall_seconds,
                bridge.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    fill.finish_and_clear();

    let sample = super::bar(args.backlog_seconds, "sample RSS");
    for second in 0..args.backlog_seconds {
        std::thread::sleep(Duration::from_secs(1));
        bridge.check_running()?;
        sample.set_position(second + 1);
    }
    sample.finish_and_clear();
    // VmHWM is the true peak, the fill included, which one-second samples of VmRSS could miss.
    let (rss, hwm) = proc::rss_kib(bridge.pid());
    let waiting =
        messages.saturating_sub(RedisService::total_len(&mut conn, &lists, topics.streams)?);
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "backlog        {waiting} messages waiting in Kafka behind full lists: bridge RSS {:.1} MiB peak, {:.1} MiB after {} s",
        mib(hwm),
        mib(rss),
        args.backlog_seconds
    );
    // One line to paste into docs/benchmarks.md ("Memory behind a full list").
    println!(
        "| {waiting} x {} B | {} x {} | {cap} | {:.1} MiB | {:.1} MiB |",
        args.size,
        topics.names.len(),
        topics.per_topic,
        mib(hwm),
        mib(rss)
    );
    if !bridge.stop()? {
        bail!("the bridge did not stop cleanly (see its log above)");
    }
    redis.delete(&lists)?;
    Ok(())
}
