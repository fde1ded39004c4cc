//! The Kafka side: one consumer-group member, its rebalance handling, and a lane per partition.
//!
//! The consumer itself is served by one dedicated thread ([`poll_thread`]) that only handles group
//! events (rebalances, errors, commits); messages flow through the per-partition queues that the
//! lanes read. Rebalance callbacks run on that thread and may block it while revoked lanes drain,
//! which is exactly what a revoke needs and would starve an async runtime worker.

pub mod commits;
pub mod context;
pub mod ffi;
pub mod instance_id;
pub mod lanes;
pub mod members;
pub mod partition;
pub mod poll_thread;
pub mod prefetch;
pub mod probe;
pub mod reconcile;
pub mod watermarks;

use std::sync::Arc;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;

use crate::config::Config;
use context::BridgeContext;
use prefetch::Prefetch;

/// The librdkafka settings for a client of the bridge (`check`, `status`): ours first, then the
/// user's pass-through.
pub fn client_config(config: &Config) -> ClientConfig {
    client_config_with(config, Prefetch::UNKNOWN)
}

/// The librdkafka settings for the bridge's consumer, with `prefetch` per partition.
pub fn client_config_with(config: &Config, prefetch: Prefetch) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", config.kafka.brokers.join(","))
        .set("group.id", &config.kafka.group)
        .set("client.id", "kafka2redis")
        .set("partition.assignment.strategy", "cooperative-sticky")
        // Offsets are stored by the lanes after Redis acknowledged, and committed periodically by
        // librdkafka, on revoke and on shutdown: never ahead of what reached Redis.
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "true")
        .set(
            "auto.commit.interval.ms",
            config.kafka.commit_interval.as_millis().to_string(),
        )
        // A new group starts at the beginning: for a bridge, skipping history is the surprise.
        .set("auto.offset.reset", "earliest")
        // Memory: each partition's queue is split off, so librdkafka's prefetch bounds apply per
        // partition. librdkafka's defaults (100,000 messages / 64 MiB per partition, each message
        // costing ~300 bytes of bookkeeping on top of its payload) would let a few hundred
        // partitions take gigabytes; `prefetch` shares one budget among the partitions instead,
        // and sizes each partition's fetch by its share.
        // Paused partitions hold nothing: a pause makes their prefetched messages obsolete and the
        // lane releases them (they are fetched again on resume).
        .set("fetch.max.bytes", "16777216")
        // With queues this small a partition often reaches its threshold, and librdkafka then
        // postpones its next fetch by fetch.queue.backoff.ms — 1 s by default, which leaves lanes
        // idle most of the time (docs/benchmarks.md). 10 ms keeps them fed.
        .set("fetch.queue.backoff.ms", "10")
        // How long a broker may hold a fetch that finds no new data. Kafka answers as soon as data
        // arrives, so this only sets how often an idle consumer asks again (100 small requests a
        // second per broker at 10 ms); brokers that do not wake a waiting fetch (librdkafka's
        // mock cluster) otherwise add up to the default 500 ms to a message's way to Redis.
        .set("fetch.wait.max.ms", "10");
    prefetch.apply(&mut cc);
    if let crate::config::GroupInstanceId::Named(id) = &config.kafka.group_instance_id {
        cc.set("group.instance.id", id);
    }
    for (key, value) in &config.kafka.properties {
        cc.set(key, value);
    }
    cc
}

/// Creates the consumer with the bridge's context (not yet subscribed).
pub fn create_consumer(
    config: &Config,
    context: BridgeContext,
    prefetch: Prefetch,
) -> Result<Arc<BaseConsumer<BridgeContext>>, rdkafka::error::KafkaError> {
    let consumer: BaseConsumer<BridgeContext> =
        client_config_with(config, prefetch).create_with_context(context)?;
    Ok(Arc::new(consumer))
}

/// Checks the librdkafka pass-through properties without creating a client (nothing connects):
/// unknown names and bad values. (The properties the bridge manages are refused by
/// [`Config::validate`].)
pub fn validate_properties(config: &Config) -> Result<(), crate::config::ConfigError> {
    use crate::config::ConfigError;
    client_config(config)
        .create_native_config()
        .map(|_| ())
        .map_err(|e| {
            let secrets = config.kafka.secrets();
            match e {
                // Which property, and librdkafka's reason (it quotes the value it refuses, which
                // may be a credential).
                rdkafka::error::KafkaError::ClientConfig(_, why, key, _) => ConfigError::invalid(
                    format!("kafka.properties.{key:?}"),
                    format!(
                        "rejected by librdkafka: {}",
                        crate::redact::scrub(&why, &secrets)
                    ),
                ),
                e => ConfigError::invalid(
                    "kafka.properties",
                    format!(
                        "rejected by librdkafka: {}",
                        crate::redact::scrub(&e.to_string(), &secrets)
                    ),
                ),
            }
        })
}
