//! The one validation pass every config goes through, whatever its format, before anything
//! connects.

mod redis_keys;
mod streams;

use std::collections::BTreeMap;

use super::address::{check_host_port, check_redis_address};
use super::{
    defaults, jobs, Cap, Config, ConfigError, ConfigFormat, Delivery, RedisTopology, TopicConfig,
};
use crate::redact::redact_url;

/// librdkafka properties the bridge sets itself, with what to use instead. Offsets are stored only
/// after Redis acknowledged and committed on the bridge's schedule; an override (or an alias of
/// one) would commit what never reached Redis, or read from another cluster or group than
/// `kafka.brokers` / `kafka.group` say.
const MANAGED_KAFKA_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "use kafka.brokers"),
    (
        "metadata.broker.list",
        "it is librdkafka's alias of bootstrap.servers; use kafka.brokers",
    ),
    ("group.id", "use kafka.group"),
    (
        "enable.auto.commit",
        "offsets are committed only after Redis acknowledged (see kafka.commit_interval_ms)",
    ),
    (
        "auto.commit.enable",
        "it is librdkafka's alias of enable.auto.commit; offsets are committed only after Redis \
         acknowledged (see kafka.commit_interval_ms)",
    ),
    (
        "enable.auto.offset.store",
        "offsets are stored only after Redis acknowledged",
    ),
    ("auto.commit.interval.ms", "use kafka.commit_interval_ms"),
];

impl Config {
    /// Checks that hold whatever the format. The first mistake found is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_kafka()?;
        self.check_topics()?;
        self.check_batch_and_retry()?;
        self.check_redis_addresses()?;
        self.check_lag_and_lease_keys()?;
        self.check_key_collisions()?;
        self.check_durations()?;
        self.check_kafka_properties()?;
        if self.lease_ttl < std::time::Duration::from_millis(300) {
            // Renewal runs every third of the TTL; below this a Redis hiccup loses the lease.
            return Err(ConfigError::invalid("lease.ttl_ms", "must be at least 300"));
        }
        self.check_redis_settings()?;
        Ok(())
    }

    /// The brokers and the group.
    fn check_kafka(&self) -> Result<(), ConfigError> {
        if self.kafka.brokers.is_empty() || self.kafka.brokers.iter().any(|b| b.trim().is_empty()) {
            return Err(ConfigError::invalid(
                self.key("kafka_addr", "kafka.brokers"),
                "must list at least one broker address (host:port)",
            ));
        }
        for broker in &self.kafka.brokers {
            check_host_port(broker).map_err(|why| {
                ConfigError::invalid(
                    self.key("kafka_addr", "kafka.brokers"),
                    format!("{broker:?} {why}"),
                )
            })?;
        }
        if self.kafka.group.trim().is_empty() {
            return Err(ConfigError::invalid(
                self.key("consumer_group", "kafka.group"),
                "must not be empty",
            ));
        }
        if let super::GroupInstanceId::Named(id) = &self.kafka.group_instance_id {
            // Kafka's own rule for the id; a broker refuses the join otherwise.
            let legal = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
            if id.len() > 249 || !id.chars().all(legal) || id == "." || id == ".." {
                return Err(ConfigError::invalid(
                    "kafka.group_instance_id",
                    format!(
                        "{id:?} is not a valid group.instance.id: at most 249 of the characters \
                         a-z, A-Z, 0-9, '.', '_', '-' (or \"\" for dynamic membership)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// At least one topic, each named once and by name, with a list the bridge can use.
    fn check_topics(&self) -> Result<(), ConfigError> {
        if self.topics.is_empty() {
            return Err(ConfigError::invalid(
                self.key("topics", "topics"),
                "must name at least one topic",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for topic in &self.topics {
            if topic.name.trim().is_empty() {
                return Err(ConfigError::invalid(
                    "topics",
                    "contains an empty topic name",
                ));
            }
            if !seen.insert(topic.name.as_str()) {
                return Err(ConfigError::invalid(
                    "topics",
                    format!("names {:?} twice", topic.name),
                ));
            }
            if topic.name.starts_with('^') {
                // librdkafka would subscribe to every matching topic, which this config does not
                // describe: no list, envelope or cap would apply to them.
                return Err(ConfigError::invalid(
                    "topics",
                    format!(
                        "names {:?}, a regular expression (it starts with '^'): subscribing by \
                         pattern is not supported, list each topic by name",
                        topic.name
                    ),
                ));
            }
            streams::check_structure(topic)?;
            jobs::validate_queue(topic, &self.redis.topology)?;
            if topic.list_key.is_empty() {
                return Err(ConfigError::in_topic(
                    &topic.name,
                    "list",
                    "must not be empty",
                ));
            }
            if let Some(cap) = topic.cap {
                if cap.low_water >= cap.max {
                    return Err(ConfigError::in_topic(
                        &topic.name,
                        "low_water",
                        format!("must be below the cap ({}), got {}", cap.max, cap.low_water),
                    ));
                }
            }
            if topic.delivery == Delivery::ExactlyOnce {
                crate::keys::offsets_key(&topic.list_key).ok_or_else(|| {
                    ConfigError::in_topic(
                        &topic.name,
                        "list",
                        format!(
                            "{:?} contains '}}' outside a hash tag; exactly-once needs a companion key in the \
                             list's Cluster slot, so use a name without '}}' or with a {{hash tag}}",
                            topic.list_key
                        ),
                    )
                })?;
            }
            if self.lease_key.is_some() && crate::keys::fence_key(&topic.list_key).is_none() {
                return Err(ConfigError::in_topic(
                    &topic.name,
                    "list",
                    format!(
                        "{:?} contains '}}' outside a hash tag; the lease fences each list with a companion key \
                         in the list's Cluster slot, so use a name without '}}' or with a {{hash tag}}",
                        topic.list_key
                    ),
                ));
            }
            jobs::validate(topic, &self.redis.topology)?;
        }
        self.check_shared_lists()?;
        Ok(())
    }

    /// Batches hold at least one message, and backoff grows from a wait above zero.
    fn check_batch_and_retry(&self) -> Result<(), ConfigError> {
        if self.batch.max_messages == 0 {
            return Err(ConfigError::invalid(
                "batch.max_messages",
                "must be at least 1",
            ));
        }
        if self.batch.max_bytes == 0 {
            return Err(ConfigError::invalid(
                "batch.max_bytes",
                "must be at least 1",
            ));
        }
        let in_flight_range = 1..=defaults::BATCH_IN_FLIGHT_MAX;
        if self
            .batch
            .in_flight
            .is_some_and(|n| !in_flight_range.contains(&n))
        {
            return Err(ConfigError::invalid(
                "batch.in_flight",
                format!("must be between 1 and {}", defaults::BATCH_IN_FLIGHT_MAX),
            ));
        }
        if self.retry.backoff_min.is_zero() || self.retry.backoff_max < self.retry.backoff_min {
            return Err(ConfigError::invalid(
                "retry.backoff_min_ms",
                "must be > 0 and not larger than retry.backoff_max_ms",
            ));
        }
        Ok(())
    }

    /// At least one Redis address, each valid, all TLS or none.
    fn check_redis_addresses(&self) -> Result<(), ConfigError> {
        let addresses = self.redis.addresses();
        if addresses.is_empty() {
            return Err(ConfigError::invalid(
                self.key("redis_host", "redis.addresses"),
                "must list at least one address",
            ));
        }
        for address in addresses {
            check_redis_address(address).map_err(|why| {
                ConfigError::invalid(
                    self.key("redis_host", "redis.addresses"),
                    format!("{:?} {why}", redact_url(address)),
                )
            })?;
        }
        let tls_urls = addresses
            .iter()
            .filter(|a| a.starts_with("rediss://"))
            .count();
        if tls_urls > 0 && tls_urls < addresses.len() {
            return Err(ConfigError::invalid(
                self.key("redis_host", "redis.addresses"),
                "mixes rediss:// (TLS) and plain addresses; use one or the other",
            ));
        }
        Ok(())
    }

    /// The lag hash and the lease key are usable names.
    fn check_lag_and_lease_keys(&self) -> Result<(), ConfigError> {
        if self.lag_hash.is_empty() {
            return Err(ConfigError::invalid(
                self.key("topics_queue_len", "lag.hash"),
                "must not be empty",
            ));
        }
        if crate::keys::lag_partitions_key(&self.lag_hash).is_none() {
            return Err(ConfigError::invalid(
                self.key("topics_queue_len", "lag.hash"),
                format!(
                    "{:?} must be a name without '}}' outside a {{hash tag}}: its per-partition \
                     companion hash must share its Redis Cluster slot",
                    self.lag_hash
                ),
            ));
        }
        if self.lease_key.as_deref() == Some("") {
            return Err(ConfigError::invalid(
                self.key("start_lock", "lease.key"),
                "must not be empty",
            ));
        }
        Ok(())
    }

    /// The Redis settings that depend on the topology.
    fn check_redis_settings(&self) -> Result<(), ConfigError> {
        self.check_sentinel_credentials()?;
        if matches!(self.redis.topology, RedisTopology::Cluster { .. }) && self.redis.db != 0 {
            return Err(ConfigError::invalid(
                "redis.db",
                "must be 0 in cluster mode (Redis Cluster has only database 0)",
            ));
        }
        let may_wait = match self.redis.wait_replicas {
            Some(n) => n > 0,
            None => !matches!(self.redis.topology, RedisTopology::Standalone { .. }),
        };
        if may_wait
            && (self.redis.wait_timeout.is_zero()
                || self.redis.wait_timeout >= self.redis.response_timeout)
        {
            // WAIT 0 blocks forever, and a WAIT longer than the response timeout would be cut off
            // by the client before Redis answers.
            return Err(ConfigError::invalid(
                "redis.wait_timeout_ms",
                "must be greater than 0 and less than redis.response_timeout_ms when the WAIT guard is on (redis.wait_replicas > 0, or unset with Sentinel or Cluster)",
            ));
        }
        Ok(())
    }

    /// Topics that share a list share its cap: the cap is a property of the list, and two caps
    /// would make one topic's partitions pause at a length the other's push past.
    fn check_shared_lists(&self) -> Result<(), ConfigError> {
        let describe = |cap: Option<Cap>| match cap {
            None => "no cap".to_string(),
            Some(cap) => format!("cap {} (low water {})", cap.max, cap.low_water),
        };
        let mut first_on_list: BTreeMap<&str, &TopicConfig> = BTreeMap::new();
        for topic in &self.topics {
            let first = *first_on_list.entry(&topic.list_key).or_insert(topic);
            streams::check_shared_key(first, topic)?;
            if first.cap != topic.cap {
                return Err(ConfigError::invalid(
                    "topics",
                    format!(
                        "gives list {:?} two caps: topic {:?} has {}, topic {:?} has {}; topics that \
                         share a list must give it the same cap",
                        topic.list_key,
                        first.name,
                        describe(first.cap),
                        topic.name,
                        describe(topic.cap)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The sentinels' own credentials (from the file or the `K2R_REDIS_SENTINEL_*` variables) with
    /// another topology would be silently unused.
    fn check_sentinel_credentials(&self) -> Result<(), ConfigError> {
        if matches!(self.redis.topology, RedisTopology::Sentinel { .. }) {
            return Ok(());
        }
        let settings = [
            (
                "redis.sentinel_username",
                "K2R_REDIS_SENTINEL_USERNAME",
                self.redis.sentinel_username.is_some(),
            ),
            (
                "redis.sentinel_password",
                "K2R_REDIS_SENTINEL_PASSWORD",
                self.redis.sentinel_password.is_some(),
            ),
        ];
        match settings.into_iter().find(|(_, _, set)| *set) {
            // The old format has no such keys: only the variable can have set it.
            Some((_, variable, _)) if self.format == ConfigFormat::Legacy => Err(ConfigError::invalid(
                variable,
                "only applies when Redis is reached through Sentinel",
            )),
            Some((key, variable, _)) => Err(ConfigError::invalid(
                key,
                format!(
                    "only applies when Redis is reached through Sentinel (redis.mode = \"sentinel\"), \
                     whether set in the file or by {variable}"
                ),
            )),
            None => Ok(()),
        }
    }

    /// Timeouts and intervals of 0 would not mean "off": a zero timeout fails every call, a zero
    /// interval spins.
    fn check_durations(&self) -> Result<(), ConfigError> {
        let durations = [
            ("kafka.commit_interval_ms", self.kafka.commit_interval),
            ("redis.connect_timeout_ms", self.redis.connect_timeout),
            ("redis.response_timeout_ms", self.redis.response_timeout),
            (
                self.key("K2R_SHUTDOWN_TIMEOUT_MS", "shutdown.timeout_ms"),
                self.shutdown_timeout,
            ),
            ("flow.check_interval_ms", self.flow_check_interval),
            ("lag.interval_ms", self.lag_interval),
        ];
        match durations.iter().find(|(_, d)| d.is_zero()) {
            Some((key, _)) => Err(ConfigError::invalid(*key, "must be greater than 0")),
            None => Ok(()),
        }
    }

    /// The librdkafka properties the bridge's guarantees depend on may not be overridden, under
    /// their own names or librdkafka's aliases.
    fn check_kafka_properties(&self) -> Result<(), ConfigError> {
        for key in self.kafka.properties.keys() {
            if let Some((_, instead)) = MANAGED_KAFKA_PROPERTIES
                .iter()
                .find(|(name, _)| name == key)
            {
                return Err(ConfigError::invalid(
                    format!("kafka.properties.{key:?}"),
                    format!("is managed by kafka2redis: {instead}"),
                ));
            }
        }
        Ok(())
    }

    /// The name of a setting as the user wrote it, in whichever format they used.
    fn key(&self, legacy: &'static str, native: &'static str) -> &'static str {
        match self.format {
            ConfigFormat::Legacy => legacy,
            ConfigFormat::Native => native,
        }
    }
}
