//! Prometheus metrics (`/metrics`), named `kafka2redis_*`.
//!
//! Crate choice: `prometheus-client` (the Prometheus project's own Rust client, OpenMetrics text,
//! few dependencies). Everything here is a *collector*: values are read at scrape time from the
//! counters the lanes already keep ([`crate::observe::state`], [`crate::observe::stats`]) and from the lag loop's last
//! round ([`crate::observe::lag`]), so the data path pays nothing extra and a revoked partition disappears
//! from the output at once (a push-style registry would keep reporting its last value).
//!
//! Cardinality: counters and the latency histogram are per *topic*; only the lag gauges are per
//! partition (one series each for messages and seconds), list gauges per list, backlog gauges per
//! destination (list or stream). Hundreds of partitions give hundreds of series, not thousands.

use std::fmt::Error;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry as PromRegistry;

use crate::observe::lag::{Rating, Readout};
use crate::observe::state::{LeaseState, Registry};
use crate::observe::stats::Stats;

/// Reads the bridge's state at scrape time.
#[derive(Debug)]
pub struct Collector {
    pub stats: Arc<Stats>,
    pub registry: Arc<Registry>,
    pub readout: Arc<Readout>,
    /// For `kafka2redis_ready`, judged as `/readyz` judges.
    pub heartbeat_limit: Duration,
}

/// Renders the Prometheus text exposition.
pub fn render(collector: Arc<Collector>) -> String {
    let mut registry = PromRegistry::with_prefix("kafka2redis");
    registry.register_collector(Box::new(collector));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Vec<(&str, String)>, f64)],
) -> Result<(), Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    if let [(labels, value)] = series {
        if labels.is_empty() {
            // A single unlabelled series: `name value`, not `name{} value`.
            return ConstGauge::new(*value).encode(metric);
        }
    }
    for (labels, value) in series {
        ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Vec<(&str, String)>, u64)],
) -> Result<(), Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    if let [(labels, value)] = series {
        if labels.is_empty() {
            // A single unlabelled series: `name value`, not `name{} value`.
            return ConstCounter::new(*value).encode(metric);
        }
    }
    for (labels, value) in series {
        ConstCounter::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        let e = &mut encoder;
        let totals = self.registry.totals();
        let per_topic = |f: &dyn Fn(&crate::observe::state::TopicTotals) -> u64| {
            totals
                .iter()
                .map(|(t, v)| (vec![("topic", t.clone())], f(v)))
                .collect::<Vec<_>>()
        };
        counter(
            e,
            "delivered_messages",
            "Messages Redis acknowledged on their list",
            &per_topic(&|t| t.messages.load(Ordering::Relaxed)),
        )?;
        counter(
            e,
            "delivered_bytes",
            "Encoded bytes Redis acknowledged (messages and dead letters)",
            &per_topic(&|t| t.bytes.load(Ordering::Relaxed)),
        )?;
        counter(
            e,
            "batches",
            "Deliveries settled: a batch, or a window of up to batch.in_flight batches (one Redis round trip each, plus retries)",
            &per_topic(&|t| t.batches.load(Ordering::Relaxed)),
        )?;
        counter(
            e,
            "dead_letters",
            "Messages sent to a dead-letter list",
            &per_topic(&|t| t.dead_letters.load(Ordering::Relaxed)),
        )?;
        {
            let mut metric = e.encode_descriptor(
                "push_duration_seconds",
                "Time from a batch's first push attempt to Redis' acknowledgement, retries included",
                None,
                MetricType::Histogram,
            )?;
            for (topic, t) in &totals {
                let (sum, count, buckets) = t.latency.snapshot();
                let labels = [("topic", topic.as_str())];
                metric
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        let one = |v: u64| vec![(Vec::new(), v)];
        counter(
            e,
            "redis_errors",
            "Failed Redis push attempts (each one is retried with backoff)",
            &one(self.stats.redis_errors.get()),
        )?;
        counter(
            e,
            "refused_batches",
            "Exactly-once batches Redis refused because it records another position for the partition \
             (a stale writer, or writes a failover lost); the partition is re-read from there",
            &one(self.stats.refused_batches.get()),
        )?;
        counter(
            e,
            "redis_rollbacks",
            "Times Redis was found to hold an older data set than it had acknowledged (a restart from an \
             older snapshot, a flush, a failover to a replica that lagged)",
            &one(self.stats.redis_rollbacks.get()),
        )?;
        counter(
            e,
            "resume_out_of_range",
            "Exactly-once partitions whose Redis record or Kafka commit was outside the partition's offsets \
             when assigned (topic re-created, retention); each resumed from a marked commit inside them, else \
             the log start, with an error logged",
            &one(self.stats.resume_out_of_range.get()),
        )?;
        counter(
            e,
            "offset_resets_refused",
            "Partitions held because their position was out of range (or no offset was committed) and \
             auto.offset.reset = error refused to reset it; each is logged at error level with its offsets, \
             and readiness turns false",
            &one(self.stats.offset_resets_refused.get()),
        )?;
        counter(
            e,
            "pauses",
            "Times a partition was paused because its list was full",
            &one(self.stats.pauses.get()),
        )?;
        let (assigned, revoked) = self.registry.rebalance_counts();
        counter(
            e,
            "rebalance_partitions",
            "Partitions assigned to / revoked from this instance by rebalances",
            &[
                (vec![("event", "assigned".to_string())], assigned),
                (vec![("event", "revoked".to_string())], revoked),
            ],
        )?;

        let snapshot = self.readout.latest();
        let part = |r: &crate::observe::lag::PartitionReport| {
            vec![
                ("topic", r.topic.clone()),
                ("partition", r.partition.to_string()),
            ]
        };
        gauge(
            e,
            "lag_messages",
            "Messages behind: high watermark minus the next offset to deliver",
            &snapshot
                .partitions
                .iter()
                .filter_map(|r| r.lag.map(|l| (part(r), l as f64)))
                .collect::<Vec<_>>(),
        )?;
        gauge(
            e,
            "lag_seconds",
            "Age of the oldest message not yet in Redis",
            &snapshot
                .partitions
                .iter()
                .map(|r| (part(r), r.lag_seconds))
                .collect::<Vec<_>>(),
        )?;
        gauge(
            e,
            "list_length",
            "Length of each list this instance feeds (at the last lag round)",
            &snapshot
                .lists
                .iter()
                .filter_map(|l| l.length.map(|n| (vec![("list", l.list.clone())], n as f64)))
                .collect::<Vec<_>>(),
        )?;
        gauge(
            e,
            "list_cap",
            "Cap of each capped list",
            &snapshot
                .lists
                .iter()
                .filter_map(|l| l.cap.map(|n| (vec![("list", l.list.clone())], n as f64)))
                .collect::<Vec<_>>(),
        )?;
        let dest = |d: &crate::observe::backlog::DestinationReport| {
            vec![("destination", d.destination.clone())]
        };
        gauge(
            e,
            "backlog_messages",
            "Messages waiting for the workers of each list or stream: the Kafka lag of the topics \
             feeding it (all instances) plus what waits in Redis (list length, or the stream's \
             unfinished entries); every instance reports the same figure",
            &snapshot
                .destinations
                .iter()
                .map(|d| (dest(d), d.backlog_messages as f64))
                .collect::<Vec<_>>(),
        )?;
        gauge(
            e,
            "waiting_messages",
            "Messages waiting in Redis at each list or stream (list length, or the stream's \
             unfinished entries: the largest over its groups of undelivered + pending)",
            &snapshot
                .destinations
                .iter()
                .map(|d| (dest(d), d.waiting_messages as f64))
                .collect::<Vec<_>>(),
        )?;
        gauge(
            e,
            "oldest_waiting_seconds",
            "Age of the oldest message waiting in Redis at each list or stream (0 when none waits); \
             a list's age comes from the pushing instance's record, so a standby reports none",
            &snapshot
                .destinations
                .iter()
                .filter_map(|d| d.oldest_waiting_seconds.map(|s| (dest(d), s)))
                .collect::<Vec<_>>(),
        )?;
        gauge(
            e,
            "paused_partitions",
            "Partitions paused right now because their list is full",
            &[(
                Vec::new(),
                self.registry
                    .snapshot()
                    .iter()
                    .filter(|p| p.is_paused())
                    .count() as f64,
            )],
        )?;
        let states = [Rating::Ok, Rating::Warn, Rating::Stall, Rating::Paused];
        gauge(
            e,
            "partitions",
            "Partitions owned by this instance, by rating (OK, WARN, STALL, PAUSED)",
            &states
                .iter()
                .map(|s| {
                    let n = snapshot.partitions.iter().filter(|r| r.state == *s).count();
                    (vec![("state", s.as_str().to_string())], n as f64)
                })
                .collect::<Vec<_>>(),
        )?;
        let health = &self.readout.health;
        gauge(
            e,
            "redis_up",
            "Whether the last lag round reached Redis",
            &[(Vec::new(), health.redis_ok() as u8 as f64)],
        )?;
        gauge(
            e,
            "kafka_up",
            "Whether the last lag round reached Kafka",
            &[(Vec::new(), health.kafka_ok() as u8 as f64)],
        )?;
        let ready = crate::observe::readiness::not_ready_reasons(
            &self.readout,
            &self.registry,
            &snapshot,
            self.heartbeat_limit,
        )
        .is_empty();
        gauge(
            e,
            "ready",
            "1 when /readyz answers 200: the lag loop turns, Kafka and Redis are reached, and \
             partitions are assigned (none stalled) or the instance stands by for the lease",
            &[(Vec::new(), ready as u8 as f64)],
        )?;
        let lease = health.lease();
        if lease != LeaseState::Shared {
            gauge(
                e,
                "lease_held",
                "1 while this instance holds the exclusive lease (0: standby)",
                &[(Vec::new(), (lease == LeaseState::Held) as u8 as f64)],
            )?;
        }
        Ok(())
    }
}
