//! `kafka2redis bench`: the bridge measured end to end against the machine's own ceiling.
//!
//! A figure for the bridge alone says little on a shared two-core machine; what matters is how
//! close it comes to what the machine can do at all. So one run measures, on the same topic and
//! the same Redis:
//!
//! - **consume-only**: a plain consumer (librdkafka defaults, large prefetch queues) draining
//!   the topic, reading in batches as the bridge's lanes do, no Redis;
//! - **push-only**: the bridge's own encoder and push filling the same lists, no Kafka;
//! - **bridge**: the kafka2redis binary (this very executable, as a child process, so that its CPU
//!   and memory are its own) draining the topic into Redis — reported as a ratio to
//!   min(consume-only, push-only);
//! - **latency**: produce→list time per message at a fixed offered rate (by default 10% and 50% of
//!   the bridge's maximum), the bridge already running and caught up; and from the broker's
//!   acknowledgement to the list, which leaves the load generator's own batching out;
//! - the bridge's peak and steady RSS and its CPU seconds per million messages.
//!
//! With `--backlog-cap N` a run measures memory instead ([`backlog`]): the bridge behind full
//! lists of N elements, the rest of the topic waiting in Kafka. `--matrix` prices every feature
//! against raw in interleaved pairs, each against its own ceiling ([`matrix`], [`variant`]);
//! `--isolation` measures a trickle topic while another drains a backlog ([`isolation`]).
//!
//! The broker is librdkafka's mock cluster, hosted in this process (fast enough that it is not
//! what is measured), or any real broker given with `--broker HOST:PORT`. Redis is a
//! `redis-server` this command starts on a free loopback port, or `--redis HOST:PORT`.

mod args;
mod backlog;
mod bridge;
mod ceiling;
mod isolation;
mod latency;
pub mod launch;
mod matrix;
mod proc;
pub(crate) mod services;
mod variant;

use args::bad_input;
pub use args::{BadInput, BenchArgs};

use std::time::Duration;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::defaults;
use bridge::Bridge;
use services::{Broker, RedisService, Topics};

/// Runs every scenario and prints the report on stdout (progress goes to stderr).
pub fn main(args: BenchArgs) -> anyhow::Result<()> {
    if args.size < latency::STAMP {
        bad_input!(
            "--size must be at least {} (latency runs stamp the send time and a sequence number in the payload)",
            latency::STAMP
        );
    }
    if args.topics < 1 || args.partitions.iter().any(|p| *p < args.topics) {
        bad_input!("--partitions must be at least --topics (every topic needs a partition)");
    }
    if args.structure == "stream"
        && (!args.no_latency
            || args.backlog_cap.is_some()
            || args.envelope.iter().any(|e| e != "raw"))
    {
        bad_input!("--structure stream takes the raw envelope and measures throughput only: add --no-latency, leave out --backlog-cap and --envelope");
    }
    if args.matrix || args.isolation {
        let redis = RedisService::start(args.redis.as_deref())?;
        print_header(&args, &redis);
        return if args.matrix {
            matrix::run(&args, &redis)
        } else {
            isolation::run(&args, &redis)
        };
    }
    if !args.no_latency && args.envelope.iter().any(|e| e != "raw") {
        bad_input!("latency runs read each message's raw bytes: with --envelope other than raw, add --no-latency");
    }
    let redis = RedisService::start(args.redis.as_deref())?;
    if (args.wait_replicas > 0 || args.replicas > 0) && !redis.owned() {
        bad_input!(
            "--wait-replicas and --replicas need the bench's own redis-server (leave out --redis)"
        );
    }
    let _replicas = (0..args.wait_replicas.max(args.replicas))
        .map(|_| redis.start_replica())
        .collect::<anyhow::Result<Vec<_>>>()?;
    print_header(&args, &redis);
    for (e, envelope) in args.envelope.iter().enumerate() {
        let one = BenchArgs {
            envelope: vec![envelope.clone()],
            ..args.clone()
        };
        for (i, &partitions) in args.partitions.iter().enumerate() {
            let index = e * args.partitions.len() + i;
            match args.backlog_cap {
                Some(cap) => backlog::run(&one, &redis, index, partitions, cap)?,
                None => scenario(&one, &redis, index, partitions)?,
            }
        }
    }
    Ok(())
}

fn print_header(args: &BenchArgs, redis: &RedisService) {
    println!("{}", machine_line());
    println!(
        "redis {} ({}); bridge {}; load average at start {}",
        redis.address,
        if redis.owned() {
            "started by bench"
        } else {
            "given"
        },
        describe_bridge(args),
        load_average()
    );
}

/// What one scenario measured, summed over its rounds.
#[derive(Default)]
struct Totals {
    messages: usize,
    produce: Duration,
    consume: Duration,
    push: Duration,
    flowing: Duration,
    join: Duration,
    cpu_flowing: f64,
    redis_cpu: f64,
    hwm_kib: u64,
    /// RSS before the last round's first push.
    rss_before_kib: u64,
    /// RSS after the last round, the bridge idle ([`IDLE_BEFORE_STEADY`]); read only without
    /// latency runs, which report their own.
    steady_kib: Option<u64>,
    /// Messages per round, and each measure's fastest round: a ceiling is a best case, and one
    /// slow round (a broker hiccup, another process on the cores) should not hide it.
    per_round: usize,
    best_consume: Option<Duration>,
    best_push: Option<Duration>,
    best_flowing: Option<Duration>,
}

fn best(slot: &mut Option<Duration>, took: Duration) -> Duration {
    *slot = Some(slot.map_or(took, |b| b.min(took)));
    took
}

/// One scenario: per round, produce, the two ceilings, and the bridge draining the topic; the
/// latency runs follow the last round, against the same (still running) bridge.
///
/// Rounds exist because librdkafka's mock cluster keeps at most 100,000 messages or 5 MB per
/// partition (older message sets are deleted as new ones arrive), so a pre-filled topic holds only
/// so much; a larger `--messages` is split into rounds. One broker, topic and bridge serve them all,
/// as a long-running bridge meets a backlog: the bridge is stopped while the next round is produced
/// (it has consumed the last, so nothing it still needs is deleted) and drains it when let go on.
fn scenario(
    args: &BenchArgs,
    redis: &RedisService,
    index: usize,
    partitions: i32,
) -> anyhow::Result<()> {
    let per_round = match args.broker.as_str() {
        "mock" => {
            services::mock_retention(args.size) * (partitions / args.topics * args.topics) as usize
        }
        _ => args.messages(),
    };
    let rounds = args.messages().div_ceil(per_round.max(1)).max(1);
    let messages = args.messages().div_ceil(rounds);
    let mut t = Totals {
        per_round: messages,
        ..Totals::default()
    };
    println!();
    let broker = Broker::start(&args.broker)?;
    let topics = Topics::new(index * 1000, args.topics, partitions, &args.envelope[0])
        .into_streams(args.structure == "stream");
    broker.create_topics(&topics)?;
    println!(
        "== {} messages x {} B, envelope {}, {} topic(s) x {} partitions = {}, broker {}{}",
        messages * rounds,
        args.size,
        args.envelope.join(",") + if topics.streams { " (streams)" } else { "" },
        topics.names.len(),
        topics.per_topic,
        topics.total(),
        broker.describe(),
        if rounds > 1 {
            format!(
                " ({rounds} rounds of {messages}, one bridge: the mock broker keeps ~{} per partition)",
                services::mock_retention(args.size)
            )
        } else {
            String::new()
        }
    );
    let mut running: Option<Bridge> = None;
    for round in 0..rounds {
        if let Some(bridge) = running.as_mut() {
            bridge.pause()?;
        }
        t.messages += messages;
        t.produce +=
            broker.produce_bulk(&topics, messages, args.size, services::BULK_BATCH_BYTES)?;
        if !args.no_ceiling {
            t.consume += best(
                &mut t.best_consume,
                ceiling::consume_only(&broker, &topics, messages)?,
            );
            let config =
                bridge::parsed_config(&bridge::config_text(args, &broker, redis, &topics))?;
            let push = ceiling::push_only(redis, &topics, &config, messages, args.size)?;
            t.push += best(&mut t.best_push, push);
        }
        let bridge = match running.as_mut() {
            Some(bridge) => bridge,
            None => running.insert(Bridge::spawn(args, &broker, redis, &topics)?),
        };
        let run = bridge.drain(redis, &topics, messages, args.stall_seconds)?;
        t.flowing += best(&mut t.best_flowing, run.flowing);
        if round == 0 {
            t.join = run.total - run.flowing;
        }
        t.cpu_flowing += run.cpu_flowing;
        t.redis_cpu += run.redis_cpu;
        t.hwm_kib = t.hwm_kib.max(run.hwm_kib);
        t.rss_before_kib = run.rss_before_kib;
    }
    let bridge = running.expect("at least one round");
    if args.no_latency {
        std::thread::sleep(IDLE_BEFORE_STEADY);
        t.steady_kib = Some(proc::rss_kib(bridge.pid()).0);
    }
    report_throughput(args, &topics, &t, rounds);
    if !args.no_latency {
        latency_runs(args, &broker, redis, &topics, &bridge, &t)?;
    }
    if !bridge.stop()? {
        bail!("the bridge did not stop cleanly (see its log above)");
    }
    redis.delete(&topics.lists())?;
    Ok(())
}

fn report_throughput(args: &BenchArgs, topics: &Topics, t: &Totals, rounds: usize) {
    let n = t.messages;
    let mb = |d: Duration| (n * args.size) as f64 / d.as_secs_f64().max(1e-9) / 1e6;
    println!(
        "produce        {:>10} msg/s  ({:.2} s)",
        rate(n, t.produce),
        t.produce.as_secs_f64()
    );
    let ceiling = (!args.no_ceiling).then(|| t.consume.max(t.push));
    if ceiling.is_some() {
        println!(
            "consume-only   {:>10} msg/s  {:>7.1} MB/s  (plain consumer reading in batches, no Redis)",
            rate(n, t.consume),
            mb(t.consume)
        );
        println!(
            "push-only      {:>10} msg/s  {:>7.1} MB/s  ({} pushers, the bridge's encoder and {}, batches of {}, no Kafka)",
            rate(n, t.push),
            mb(t.push),
            topics.total(),
            if topics.streams {
                "stream push"
            } else {
                "push"
            },
            args.batch()
        );
    }
    let ratio = ceiling
        .map(|c| format!("{:.2}", c.as_secs_f64() / t.flowing.as_secs_f64()))
        .unwrap_or_else(|| "-".into());
    println!(
        "bridge         {:>10} msg/s  {:>7.1} MB/s  {ratio} x ceiling  ({:.2} s flowing; start-up and group join {:.1} s)",
        rate(n, t.flowing),
        mb(t.flowing),
        t.flowing.as_secs_f64(),
        t.join.as_secs_f64()
    );
    if rounds > 1 {
        let r = |d: Option<Duration>| {
            d.map(|d| rate(t.per_round, d))
                .unwrap_or_else(|| "-".into())
        };
        let best_ratio = match (t.best_consume, t.best_push, t.best_flowing) {
            (Some(c), Some(p), Some(f)) => {
                format!("{:.2}", c.max(p).as_secs_f64() / f.as_secs_f64())
            }
            _ => "-".into(),
        };
        println!(
            "  best round   consume-only {}, push-only {}, bridge {} msg/s: {best_ratio} x ceiling",
            r(t.best_consume),
            r(t.best_push),
            r(t.best_flowing)
        );
    }
    let per_m = t.cpu_flowing * 1e6 / n as f64;
    println!(
        "  bridge CPU   {per_m:.2} s per million messages ({per_m:.2} us/msg, {} msg per CPU-second); Redis CPU {:.2} s/M",
        rate_f(n as f64 / t.cpu_flowing.max(1e-9)),
        t.redis_cpu * 1e6 / n as f64,
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "  bridge RSS   {:.1} MiB peak while draining ({:.1} MiB before the first push, so {:.1} MiB held at the peak){}",
        mib(t.hwm_kib),
        mib(t.rss_before_kib),
        mib(t.hwm_kib.saturating_sub(t.rss_before_kib)),
        t.steady_kib
            .map(|kib| format!("; {:.1} MiB steady, {} s idle after the drain", mib(kib), IDLE_BEFORE_STEADY.as_secs()))
            .unwrap_or_default()
    );
    println!("  in flight    {}", in_flight_bound(topics.total(), args));
    // One line to paste into docs/benchmarks.md.
    println!(
        "| {} x {} B | {} x {} | {} | {} | {} | {ratio} | {per_m:.2} | {} | {:.1} |",
        n,
        args.size,
        topics.names.len(),
        topics.per_topic,
        if ceiling.is_some() {
            rate(n, t.consume)
        } else {
            "-".into()
        },
        if ceiling.is_some() {
            rate(n, t.push)
        } else {
            "-".into()
        },
        rate(n, t.flowing),
        rate_f(n as f64 / t.cpu_flowing.max(1e-9)),
        t.hwm_kib as f64 / 1024.0
    );
}

/// How long the bridge idles after a drain before its steady RSS is read.
const IDLE_BEFORE_STEADY: Duration = Duration::from_secs(2);

/// What the bridge's settings allow it to hold at `partitions`: librdkafka's prefetch (a share of
/// one budget per partition, within bounds: [`crate::kafka::prefetch`]) and the deliveries in
/// flight ([`crate::redis::PUSHES_IN_FLIGHT`], each a batch, its encoded command and the next
/// batch its lane gathers meanwhile). Waiting lanes' partial batches and the fetch on the wire for
/// each partition come on top.
fn in_flight_bound(partitions: i32, args: &BenchArgs) -> String {
    let share = crate::kafka::prefetch::Prefetch::for_partitions(partitions as usize);
    let prefetch_mib = share.kbytes as f64 * partitions as f64 / 1024.0;
    let batch_mib = defaults::BATCH_MAX_BYTES as f64 / (1024.0 * 1024.0);
    let deliveries = crate::redis::PUSHES_IN_FLIGHT;
    format!(
        "the settings allow librdkafka {} messages / {prefetch_mib:.0} MiB of prefetch ({partitions} partitions x {} messages / {} KiB), and {deliveries} deliveries x 3 x {batch_mib:.0} MiB (the batch, its command, the next batch gathered meanwhile) = {:.0} MiB in the lanes (batches of {} messages x {} B are {:.2} MiB)",
        share.messages as u64 * partitions as u64,
        share.messages,
        share.kbytes,
        deliveries as f64 * 3.0 * batch_mib,
        args.batch(),
        args.size,
        (args.batch() * args.size) as f64 / (1024.0 * 1024.0)
    )
}

fn latency_runs(
    args: &BenchArgs,
    broker: &Broker,
    redis: &RedisService,
    topics: &Topics,
    bridge: &Bridge,
    t: &Totals,
) -> anyhow::Result<()> {
    let max_rate = t.messages as f64 / t.flowing.as_secs_f64();
    for &percent in &args.latency_rates {
        let offered = (max_rate * percent / 100.0).min(args.latency_max_rate.unwrap_or(f64::MAX));
        let cpu_before = proc::CpuSnapshot::take(bridge.pid());
        let result = latency::run(
            broker,
            redis,
            topics,
            offered,
            Duration::from_secs_f64(args.latency_seconds),
            args.size,
            args.producer_linger_ms,
            &|| false,
        )?;
        let cpu = cpu_before.seconds_since();
        println!(
            "latency @{percent:>3}%  offered {} msg/s, achieved {} msg/s, {} msgs{}: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms (from the broker's ack: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms, {:.0}% popped before their ack was seen{}); bridge CPU {:.2} s/M",
            rate_f(offered),
            rate_f(result.achieved),
            result.messages,
            if result.missing > 0 {
                format!(" ({} MISSING: the bridge fell behind the mock broker's retention)", result.missing)
            } else {
                String::new()
            },
            result.from_send.p50_ms,
            result.from_send.p99_ms,
            result.from_send.max_ms,
            result.from_ack.p50_ms,
            result.from_ack.p99_ms,
            result.from_ack.max_ms,
            result.popped_before_ack * 100.0,
            if result.popped_before_ack > 0.1 {
                ": acks were seen late, so this figure errs low"
            } else {
                ""
            },
            cpu * 1e6 / result.messages.max(1) as f64
        );
    }
    let (rss, hwm) = proc::rss_kib(bridge.pid());
    println!(
        "  bridge RSS   {:.1} MiB steady after the latency runs, {:.1} MiB peak",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    Ok(())
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub(crate) fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len).with_style(
        ProgressStyle::with_template(
            "{prefix:>14} [{bar:40}] {human_pos}/{human_len} {per_sec} {elapsed} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// Messages per second, human-sized.
fn rate(messages: usize, took: Duration) -> String {
    rate_f(messages as f64 / took.as_secs_f64().max(1e-9))
}

fn rate_f(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2}M", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.1}k", per_second / 1e3)
    } else {
        format!("{per_second:.0}")
    }
}

fn describe_bridge(args: &BenchArgs) -> String {
    format!(
        "envelope {}, batch.max_messages {}, linger {} ms, {} in flight{}{}{}{}",
        args.envelope.join(","),
        args.batch_max_messages
            .unwrap_or(defaults::BATCH_MAX_MESSAGES),
        args.linger_ms.unwrap_or(defaults::LINGER_MS),
        args.in_flight.map_or("auto".to_string(), |n| n.to_string()),
        match (args.wait_replicas, args.replicas) {
            (0, 0) => String::new(),
            (0, replicas) => format!(", {replicas} replica(s), no WAIT"),
            (wait, _) => format!(", WAIT {wait} replica(s)"),
        },
        if args.lease {
            ", lease (fenced pushes)"
        } else {
            ""
        },
        if args.delivery == "exactly-once" {
            ", exactly-once"
        } else {
            ""
        },
        if args.properties.is_empty() {
            String::new()
        } else {
            format!(", {}", args.properties.join(" "))
        }
    )
}

fn machine_line() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    format!(
        "machine: {cpus} CPUs ({model}), kafka2redis {}, release={}",
        env!("CARGO_PKG_VERSION"),
        !cfg!(debug_assertions)
    )
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
