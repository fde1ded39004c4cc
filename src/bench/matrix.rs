//! `kafka2redis bench --matrix`: every feature priced in one run.
//!
//! A pair runs raw at-least-once and then every variant ([`Variant::ALL`]) once, each on a fresh
//! topic of the same size; `--pairs` pairs follow one another, so each variant's figure is set
//! against the raw run (or its own baseline: the WAIT guard against the same master and replica
//! without it) of the same pair, which shared the machine's state of that moment. Single runs on
//! a shared machine vary by ±15 %, so the summary gives medians over the pairs, and every pair is
//! printed.
//!
//! Each run also measures its own push-only ceiling ([`ceiling::push_only`]: the variant's real
//! elements or stream entries, companion writes, fence or offset record, pushed by the bridge's
//! own code, no Kafka), and the raw run of each pair the consume-only ceiling, which every variant
//! shares: a variant's ceiling is the slower of the two. The stream variants are set against raw
//! lists of the same pair (what an entry costs over an element) and against their own ceiling.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::bail;

use super::bridge::{self, Bridge};
use super::services::{self, Broker, RedisService, Topics};
use super::variant::Variant;
use super::{ceiling, rate_f, BenchArgs};

/// What one variant's run measured.
#[derive(Clone, Copy)]
struct Run {
    /// Bridge msg/s while flowing.
    rate: f64,
    /// Bridge CPU µs per message.
    cpu_us: f64,
    /// The variant's push-only ceiling, msg/s.
    push: Option<f64>,
    hwm_mib: f64,
}

/// The master and replica the replica and WAIT-guard variants write to (the other variants use
/// a Redis without a replica, whose every write would otherwise be copied too).
struct ReplicatedRedis {
    master: RedisService,
    _replica: RedisService,
}

pub fn run(args: &BenchArgs, redis: &RedisService) -> anyhow::Result<()> {
    let variants = Variant::chosen(&args.variants)?;
    let replicated = if variants.iter().any(Variant::replicated) {
        let master = RedisService::start(None)?;
        let replica = master.start_replica()?;
        println!(
            "replica variants: master {} with replica {} (started by bench)",
            master.address, replica.address
        );
        Some(ReplicatedRedis {
            master,
            _replica: replica,
        })
    } else {
        None
    };
    for (i, &partitions) in args.partitions.iter().enumerate() {
        one_size(args, redis, replicated.as_ref(), &variants, i, partitions)?;
    }
    Ok(())
}

/// The matrix at one partition count: the pairs, then the summary.
fn one_size(
    args: &BenchArgs,
    redis: &RedisService,
    replicated: Option<&ReplicatedRedis>,
    variants: &[Variant],
    index: usize,
    partitions: i32,
) -> anyhow::Result<()> {
    let messages = args.messages();
    let per_topic = partitions / args.topics;
    let rounds = rounds(args, partitions);
    println!();
    println!(
        "== matrix: {messages} messages x {} B per run{}, {} topic(s) x {per_topic} partitions, {} pairs, broker {}; variants {}",
        args.size,
        if rounds > 1 {
            format!(" in {rounds} rounds, one bridge (the mock broker keeps ~{} per partition)", services::mock_retention(args.size))
        } else {
            String::new()
        },
        args.topics,
        args.pairs,
        args.broker,
        variants.iter().map(|v| v.name).collect::<Vec<_>>().join(", ")
    );
    let mut runs: HashMap<&str, Vec<Run>> = HashMap::new();
    let mut consume: Vec<Option<f64>> = Vec::new();
    for pair in 0..args.pairs as usize {
        println!("pair {}/{}", pair + 1, args.pairs);
        for (v, variant) in variants.iter().enumerate() {
            let target = match (variant.replicated(), replicated) {
                (true, Some(r)) => &r.master,
                _ => redis,
            };
            let scenario = ((index * args.pairs as usize) + pair) * variants.len() + v;
            let (run, consumed) = run_variant(args, variant, target, scenario, partitions)?;
            if variant.name == Variant::RAW.name {
                consume.push(consumed);
            }
            let baseline = runs
                .get(variant.baseline)
                .and_then(|b| b.get(pair))
                .copied()
                .unwrap_or(run);
            let ceiling = own_ceiling(run.push, consume[pair]);
            println!(
                "  {:<19} {:>8} msg/s  {:.2} x {:<8} {:>5.2} us/msg  push-only {:>8}  {} x own ceiling  RSS {:.1} MiB",
                variant.name,
                rate_f(run.rate),
                run.rate / baseline.rate,
                variant.baseline,
                run.cpu_us,
                run.push.map(rate_f).unwrap_or_else(|| "-".into()),
                ceiling
                    .map(|c| format!("{:.2}", run.rate / c))
                    .unwrap_or_else(|| "-".into()),
                run.hwm_mib
            );
            runs.entry(variant.name).or_default().push(run);
        }
    }
    summary(args, variants, &runs, &consume);
    Ok(())
}

/// The slower of the variant's push-only and the pair's consume-only ceiling.
fn own_ceiling(push: Option<f64>, consume: Option<f64>) -> Option<f64> {
    match (push, consume) {
        (Some(p), Some(c)) => Some(p.min(c)),
        (p, c) => p.or(c),
    }
}

/// One run of `variant`: a fresh topic and broker filled with the run's messages, its push-only ceiling
/// (and the consume-only one for raw), then the bridge draining it — in rounds when the mock
/// broker keeps fewer ([`rounds`]). Returns the run and the consume-only rate, when measured.
fn run_variant(
    args: &BenchArgs,
    variant: &Variant,
    redis: &RedisService,
    scenario: usize,
    partitions: i32,
) -> anyhow::Result<(Run, Option<f64>)> {
    let messages = args.messages();
    let one = BenchArgs {
        envelope: vec![variant.envelope.to_string()],
        structure: if variant.stream { "stream" } else { "list" }.to_string(),
        delivery: variant.delivery().to_string(),
        lease: variant.lease,
        wait_replicas: variant.wait_replicas(),
        replicas: 0,
        no_latency: true,
        ..args.clone()
    };
    let per_second = |d: Duration| messages as f64 / d.as_secs_f64().max(1e-9);
    let rounds = rounds(args, partitions);
    let per_round = messages.div_ceil(rounds);
    let (mut consumed, mut pushed, mut flowing) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut cpu, mut hwm_kib, mut total) = (0.0, 0, 0);
    // One broker, topic and bridge for every round, as in a scenario (`super::scenario`): the
    // bridge is stopped while the next round is produced.
    let broker = Broker::start(&args.broker)?;
    let topics = Topics::new(scenario * 1000, args.topics, partitions, variant.envelope)
        .into_streams(variant.stream);
    broker.create_topics(&topics)?;
    let mut running: Option<Bridge> = None;
    for _ in 0..rounds {
        let n = per_round.min(messages - total);
        if let Some(bridge) = running.as_mut() {
            bridge.pause()?;
        }
        broker.produce_bulk(&topics, n, args.size, services::BULK_BATCH_BYTES)?;
        if !args.no_ceiling && variant.name == Variant::RAW.name {
            consumed += ceiling::consume_only(&broker, &topics, n)?;
        }
        if !args.no_ceiling {
            let config =
                bridge::parsed_config(&bridge::config_text(&one, &broker, redis, &topics))?;
            pushed += ceiling::push_only(redis, &topics, &config, n, args.size)?;
        }
        let bridge = match running.as_mut() {
            Some(bridge) => bridge,
            None => running.insert(Bridge::spawn(&one, &broker, redis, &topics)?),
        };
        let drained = bridge.drain(redis, &topics, n, args.stall_seconds)?;
        flowing += drained.flowing;
        cpu += drained.cpu_flowing;
        hwm_kib = hwm_kib.max(drained.hwm_kib);
        total += n;
    }
    if !running.expect("at least one round").stop()? {
        bail!(
            "the bridge ({}) did not stop cleanly (see its log above)",
            variant.name
        );
    }
    let measured = |d: Duration| (!d.is_zero()).then(|| per_second(d));
    Ok((
        Run {
            rate: per_second(flowing),
            cpu_us: cpu * 1e6 / messages as f64,
            push: measured(pushed),
            hwm_mib: hwm_kib as f64 / 1024.0,
        },
        measured(consumed),
    ))
}

/// How many rounds a run of `--messages` takes: the mock broker deletes what is beyond its
/// retention, so a larger run is split into rounds, produced one after another into the same topic
/// for the same bridge, and their times summed.
fn rounds(args: &BenchArgs, partitions: i32) -> usize {
    if args.broker != "mock" {
        return 1;
    }
    let per_topic = partitions / args.topics;
    let keeps = services::mock_retention(args.size) * (per_topic * args.topics) as usize;
    args.messages().div_ceil(keeps.max(1)).max(1)
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// What issue 18 asks of each variant, and whether the medians meet it.
fn target(variant: &Variant, ratio: f64, own: f64, cpu_vs_raw: f64) -> String {
    let verdict = |met: bool| if met { "met" } else { "missed" };
    match variant.name {
        "raw" => format!("≥ 0.90 x ceiling: {}", verdict(own >= 0.9)),
        "legacy+lease" => format!("≥ 0.90 x raw: {}", verdict(ratio >= 0.9)),
        "json" | "exactly-once" => format!("≥ 0.85 x raw: {}", verdict(ratio >= 0.85)),
        "wait-guard" => format!("≥ 0.90 x replica: {}", verdict(ratio >= 0.9)),
        "laravel" | "celery" | "sidekiq" | "bullmq" | "rq" => format!(
            "≥ 0.80 x own ceiling, CPU ≤ 1.5 x raw: {}",
            verdict(own >= 0.8 && cpu_vs_raw <= 1.5)
        ),
        _ => "-".into(),
    }
}

fn summary(
    args: &BenchArgs,
    variants: &[Variant],
    runs: &HashMap<&str, Vec<Run>>,
    consume: &[Option<f64>],
) {
    let pairs = args.pairs as usize;
    let raw = &runs[Variant::RAW.name];
    println!();
    println!(
        "summary: medians over {pairs} pair(s) ({} messages x {} B per run); single runs vary ±15 %",
        args.messages(),
        args.size
    );
    println!("| variant | msg/s | x baseline, pair by pair | x baseline | CPU µs/msg | CPU x raw | own ceiling msg/s | x own ceiling | target (issue 18) |");
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |");
    for variant in variants {
        let mine = &runs[variant.name];
        let base = &runs[variant.baseline];
        let ratios: Vec<f64> = (0..pairs).map(|p| mine[p].rate / base[p].rate).collect();
        let cpu_vs_raw = median((0..pairs).map(|p| mine[p].cpu_us / raw[p].cpu_us).collect());
        let ceilings: Vec<Option<f64>> = (0..pairs)
            .map(|p| own_ceiling(mine[p].push, consume[p]))
            .collect();
        let own = median(
            (0..pairs)
                .filter_map(|p| ceilings[p].map(|c| mine[p].rate / c))
                .collect(),
        );
        let ratio = median(ratios.clone());
        println!(
            "| {} | {} | {} | {:.2} x {} | {:.2} | {:.2} | {} | {} | {} |",
            variant.name,
            rate_f(median(mine.iter().map(|r| r.rate).collect())),
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            ratio,
            variant.baseline,
            median(mine.iter().map(|r| r.cpu_us).collect()),
            cpu_vs_raw,
            if ceilings.iter().any(Option::is_some) {
                rate_f(median(ceilings.iter().flatten().copied().collect()))
            } else {
                "-".into()
            },
            if own.is_nan() {
                "-".into()
            } else {
                format!("{own:.2}")
            },
            target(variant, ratio, own, cpu_vs_raw)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn a_variant_is_held_to_the_slower_ceiling() {
        assert_eq!(own_ceiling(Some(3.0), Some(2.0)), Some(2.0));
        assert_eq!(own_ceiling(Some(3.0), None), Some(3.0));
        assert_eq!(own_ceiling(None, None), None);
    }
}
