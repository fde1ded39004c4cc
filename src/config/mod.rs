//! The settings kafka2redis runs with, and where they come from.
//!
//! Two file formats load into one validated [`Config`]: the old Go tool's `conf.json` (plus its `.env`
//! keys), see [`legacy`], and the native TOML file, see [`native`]. Environment variables are applied
//! on top by [`env`]. Everything is checked here, before anything connects, so that a bad setting is
//! one plain sentence naming the key (exit code 2) rather than a failure half-way through start-up.

pub mod env;
pub mod error;
pub mod jobs;
pub mod legacy;
pub mod native;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

pub use error::ConfigError;

use crate::redact::{self, redact_url, Secret};

/// How a Kafka message becomes one list element ([`crate::pipeline::encode`] writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Envelope {
    /// The old tool's `{"attempts":1,"data":"<value>"}`.
    Legacy,
    /// The value's bytes unchanged.
    Raw,
    /// Topic, partition, offset, timestamp, key, headers and value as one JSON object.
    Json,
    /// A Laravel queue job calling the topic's `job` (`Class@method`) with the `json` record.
    Laravel,
    /// A Celery task message running the topic's `job` (a task name) with the `json` record.
    Celery,
    /// A Sidekiq job running the topic's `job` (a worker class) with the `json` record.
    Sidekiq,
}

/// Which file format the settings were read from; a few defaults differ between the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// The old tool's `conf.json`.
    Legacy,
    /// kafka2redis' own TOML file.
    Native,
}

/// Everything the bridge needs to run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub format: ConfigFormat,
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    pub topics: Vec<TopicConfig>,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    /// How often a paused partition checks whether its list has drained below the low-water mark.
    pub flow_check_interval: Duration,
    /// How long a clean stop (or a revoke) may take before in-flight work is abandoned. Abandoned work
    /// is not lost: its offsets were never stored, so Kafka delivers it again.
    pub shutdown_timeout: Duration,
    /// Hash that receives per-topic lag (the old `topics_queue_len`); per-partition lag goes to
    /// `{<lag_hash>}:partitions` (same Cluster slot).
    pub lag_hash: String,
    /// How often lag is measured and written.
    pub lag_interval: Duration,
    /// Exclusive-mode lease key (the old `start_lock`), if any. With a key, one instance pushes and
    /// the others wait as hot standbys; without, instances share the partitions.
    pub lease_key: Option<String>,
    /// How long the lease lives without renewal: a standby takes over within about this long after
    /// the holder dies.
    pub lease_ttl: Duration,
    /// Where `/metrics`, `/healthz`, `/readyz` and `/status` are served (`--http` or `http.address`).
    pub http: Option<std::net::SocketAddr>,
    /// Notes about accepted-but-meaningless or unknown settings. Logged at start.
    pub warnings: Vec<String>,
}

#[derive(Clone)]
pub struct KafkaConfig {
    pub brokers: Vec<String>,
    pub group: String,
    /// Any librdkafka property, passed through unchanged (after ours, so these win). Credentials
    /// among them ([`redact::is_secret_property`]) are masked when the config is formatted.
    pub properties: BTreeMap<String, String>,
    /// How often stored offsets are committed (librdkafka's `auto.commit.interval.ms`).
    pub commit_interval: Duration,
    /// After how many messages stored on one partition since its last commit an asynchronous
    /// commit of that partition goes out before the interval is up (bounds what a crash
    /// re-delivers at full speed).
    pub commit_after_messages: u64,
}

impl KafkaConfig {
    /// The values of the secret properties, to mask in texts that librdkafka writes.
    pub fn secrets(&self) -> Vec<String> {
        self.properties
            .iter()
            .filter(|(name, _)| redact::is_secret_property(name))
            .map(|(_, value)| value.clone())
            .collect()
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(name, value)| {
                let shown = if redact::is_secret_property(name) {
                    redact::MASK
                } else {
                    value.as_str()
                };
                (name.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group", &self.group)
            .field("properties", &properties)
            .field("commit_interval", &self.commit_interval)
            .field("commit_after_messages", &self.commit_after_messages)
            .finish()
    }
}

/// Where Redis is. Addresses may be URLs with a password: formatted (`Debug`, `Display`), they show
/// it masked.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTopology {
    Standalone {
        address: String,
    },
    Sentinel {
        master_name: String,
        addresses: Vec<String>,
    },
    Cluster {
        addresses: Vec<String>,
    },
}

fn redacted_list(addresses: &[String]) -> Vec<std::borrow::Cow<'_, str>> {
    addresses.iter().map(|a| redact_url(a)).collect()
}

impl fmt::Debug for RedisTopology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisTopology::Standalone { address } => f
                .debug_struct("Standalone")
                .field("address", &redact_url(address))
                .finish(),
            RedisTopology::Sentinel {
                master_name,
                addresses,
            } => f
                .debug_struct("Sentinel")
                .field("master_name", master_name)
                .field("addresses", &redacted_list(addresses))
                .finish(),
            RedisTopology::Cluster { addresses } => f
                .debug_struct("Cluster")
                .field("addresses", &redacted_list(addresses))
                .finish(),
        }
    }
}

/// `standalone ADDRESS`, `sentinel, master "NAME" via ADDRESSES` or `cluster via ADDRESSES`.
impl fmt::Display for RedisTopology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisTopology::Standalone { address } => {
                write!(f, "standalone {}", redact_url(address))
            }
            RedisTopology::Sentinel {
                master_name,
                addresses,
            } => write!(
                f,
                "sentinel, master {master_name:?} via {}",
                redacted_list(addresses).join(", ")
            ),
            RedisTopology::Cluster { addresses } => {
                write!(f, "cluster via {}", redacted_list(addresses).join(", "))
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub topology: RedisTopology,
    /// Credentials for the data nodes (standalone server, Sentinel's master, Cluster nodes).
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The sentinels' own credentials (their `requirepass` / ACL), which differ from the master's.
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<Secret>,
    pub db: i64,
    pub connect_timeout: Duration,
    /// A command that gets no answer within this time counts as failed and is retried.
    pub response_timeout: Duration,
    /// TLS for every connection (data nodes and sentinels); `None` is plain TCP.
    pub tls: Option<TlsConfig>,
    /// After each acknowledged push, `WAIT wait_replicas wait_timeout` must confirm this many
    /// replicas, else the push counts as failed and is retried. 0 turns the guard off. Unset: 1
    /// with Sentinel when the master has a replica, else 0 ([`crate::redis::RedisSink::connect`]).
    pub wait_replicas: Option<u32>,
    pub wait_timeout: Duration,
}

impl RedisConfig {
    /// A config for one plain standalone server with every other setting at its default.
    pub fn standalone(address: impl Into<String>) -> RedisConfig {
        RedisConfig {
            topology: RedisTopology::Standalone {
                address: address.into(),
            },
            username: None,
            password: None,
            sentinel_username: None,
            sentinel_password: None,
            db: 0,
            connect_timeout: Duration::from_millis(defaults::REDIS_CONNECT_TIMEOUT_MS),
            response_timeout: Duration::from_millis(defaults::REDIS_RESPONSE_TIMEOUT_MS),
            tls: None,
            wait_replicas: None,
            wait_timeout: Duration::from_millis(defaults::REDIS_WAIT_TIMEOUT_MS),
        }
    }

    /// Whether connections use TLS: `redis.tls` (or any `tls_*` key) is set, or the addresses are
    /// `rediss://` URLs.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some() || self.addresses().iter().any(|a| a.starts_with("rediss://"))
    }

    /// Every configured address: the server, the sentinels or the cluster seed nodes.
    pub fn addresses(&self) -> &[String] {
        match &self.topology {
            RedisTopology::Standalone { address } => std::slice::from_ref(address),
            RedisTopology::Sentinel { addresses, .. } | RedisTopology::Cluster { addresses } => {
                addresses
            }
        }
    }

    /// Every password these settings hold (the two settings and any in the address URLs), to
    /// mask in texts that the Redis client writes.
    pub fn secrets(&self) -> Vec<String> {
        let settings = [&self.password, &self.sentinel_password]
            .into_iter()
            .flatten()
            .map(|s| s.expose().to_string());
        let in_urls = self
            .addresses()
            .iter()
            .flat_map(|a| redact::url_passwords(a));
        settings.chain(in_urls).collect()
    }
}

/// TLS settings. The files were checked to be readable when the config was loaded; they are read
/// again when connecting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM bundle of the CAs to trust instead of the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate (PEM) and its PKCS#8 key (PEM), for servers with `tls-auth-clients yes`.
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
    /// Accept any server certificate. For tests only; logged loudly at every start.
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone)]
pub struct TopicConfig {
    pub name: String,
    /// The Redis list the topic's messages are pushed onto.
    pub list_key: String,
    pub envelope: Envelope,
    /// The handler a job envelope names (see [`jobs`]); `None` for the other envelopes.
    pub job: Option<String>,
    /// The list's cap (`cache_size`); `None` = uncapped.
    pub cap: Option<Cap>,
    pub delivery: Delivery,
}

/// What a crash, a rebalance or a Redis failover may do to the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Nothing is lost; the uncommitted window may be pushed again.
    #[default]
    AtLeastOnce,
    /// Nothing is lost and nothing pushed twice: each push records the partition's next offset in
    /// Redis, atomically, and partitions resume from there.
    ExactlyOnce,
}

/// A list's cap: a push never takes the list past `max`; partitions paused because the list was
/// full resume once it has drained to `low_water` (hysteresis, so they do not flap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub max: u64,
    pub low_water: u64,
}

impl Cap {
    /// `low_water` defaults to half the cap: a resumed partition then has room for a good batch.
    pub fn new(max: u64, low_water: Option<u64>) -> Cap {
        Cap {
            max,
            low_water: low_water.unwrap_or(max / 2),
        }
    }
}

impl TopicConfig {
    /// Where messages the envelope cannot carry go, with their metadata and the reason.
    pub fn dead_letter_key(&self) -> String {
        format!("{}:dead", self.list_key)
    }
}

#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub max_messages: usize,
    pub max_bytes: usize,
    /// How long a lane waits for more messages once a batch has its first one.
    pub linger: Duration,
}

#[derive(Debug, Clone)]
pub struct RetryConfig {
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

/// What a Redis key is for, to find two purposes given one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyPurpose {
    List,
    DeadLetters,
    Offsets,
    Lag,
    LagPartitions,
    Lease,
}

/// librdkafka properties the bridge sets itself, with what to use instead. Offsets are stored only
/// after Redis acknowledged and committed on the bridge's schedule; an override (or an alias of
/// one) would commit what never reached Redis, or read from another cluster or group than
/// `kafka.brokers` / `kafka.group` say.
pub const MANAGED_KAFKA_PROPERTIES: &[(&str, &str)] = &[
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

/// Defaults shared by both formats.
pub mod defaults {
    pub const PREFIX: &str = "queues:";
    pub const LAG_HASH: &str = "topics_queue_len";
    pub const LEASE_KEY: &str = "kafka_consumers_run";
    pub const LAG_INTERVAL_MS: u64 = 5_000;
    pub const LEASE_TTL_MS: u64 = 10_000;
    pub const BATCH_MAX_MESSAGES: usize = 1000;
    pub const BATCH_MAX_BYTES: usize = 1024 * 1024;
    /// Messages reach a lane in fetched chunks, and a lane pushes one batch at a time, so batches
    /// fill by themselves under load; linger only delays a trickle (docs/benchmarks.md has the
    /// latency it costs).
    pub const LINGER_MS: u64 = 1;
    pub const BACKOFF_MIN_MS: u64 = 100;
    pub const BACKOFF_MAX_MS: u64 = 5_000;
    pub const SHUTDOWN_TIMEOUT_MS: u64 = 10_000;
    pub const COMMIT_INTERVAL_MS: u64 = 1_000;
    pub const COMMIT_AFTER_MESSAGES: u64 = 10_000;
    pub const FLOW_CHECK_INTERVAL_MS: u64 = 100;
    pub const REDIS_CONNECT_TIMEOUT_MS: u64 = 5_000;
    pub const REDIS_RESPONSE_TIMEOUT_MS: u64 = 10_000;
    pub const REDIS_WAIT_TIMEOUT_MS: u64 = 1_000;
}

impl Config {
    /// Reads a config file (format chosen by extension, else by its first character), applies the
    /// optional `.env` file and the environment, and validates the result.
    pub fn load(path: &Path, env_file: Option<&Path>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let format = detect_format(path, &text);
        // The old tool read `.env` from its working directory on its own; keep that for its format.
        let vars = env::Vars::gather(env_file, format == ConfigFormat::Legacy)?;
        let config = match format {
            ConfigFormat::Legacy => legacy::parse(&text, path, &vars)?,
            ConfigFormat::Native => native::parse(&text, path, &vars)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks that hold whatever the format.
    pub fn validate(&self) -> Result<(), ConfigError> {
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
            if topic.list_key.is_empty() {
                return Err(ConfigError::invalid(
                    format!("topics.{}.list", topic.name),
                    "must not be empty",
                ));
            }
            if let Some(cap) = topic.cap {
                if cap.low_water >= cap.max {
                    return Err(ConfigError::invalid(
                        format!("topics.{}.low_water", topic.name),
                        format!("must be below the cap ({}), got {}", cap.max, cap.low_water),
                    ));
                }
            }
            if topic.delivery == Delivery::ExactlyOnce {
                crate::keys::offsets_key(&topic.list_key).ok_or_else(|| {
                    ConfigError::invalid(
                        format!("topics.{}.list", topic.name),
                        format!(
                            "{:?} contains '}}' outside a hash tag; exactly-once needs a companion key in the \
                             list's Cluster slot, so use a name without '}}' or with a {{hash tag}}",
                            topic.list_key
                        ),
                    )
                })?;
            }
            if self.lease_key.is_some() && crate::keys::fence_key(&topic.list_key).is_none() {
                return Err(ConfigError::invalid(
                    format!("topics.{}.list", topic.name),
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
        if self.retry.backoff_min.is_zero() || self.retry.backoff_max < self.retry.backoff_min {
            return Err(ConfigError::invalid(
                "retry.backoff_min_ms",
                "must be > 0 and not larger than retry.backoff_max_ms",
            ));
        }
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
        self.check_key_collisions()?;
        self.check_durations()?;
        self.check_kafka_properties()?;
        if self.lease_ttl < std::time::Duration::from_millis(300) {
            // Renewal runs every third of the TTL; below this a Redis hiccup loses the lease.
            return Err(ConfigError::invalid("lease.ttl_ms", "must be at least 300"));
        }
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

    /// Every Redis key the bridge writes has one purpose: a list that is also another topic's
    /// dead-letter list, or a lease key that is also a list, would mix data that workers and the
    /// bridge read back as something else.
    fn check_key_collisions(&self) -> Result<(), ConfigError> {
        // (key, what it is, which setting names it); the same key with the same purpose (a list
        // shared by several topics) is fine.
        let mut keys: Vec<(String, KeyPurpose, String, &'static str)> = Vec::new();
        for topic in &self.topics {
            let name = &topic.name;
            keys.push((
                topic.list_key.clone(),
                KeyPurpose::List,
                format!("the list of topic {name:?}"),
                "topics",
            ));
            keys.push((
                topic.dead_letter_key(),
                KeyPurpose::DeadLetters,
                format!("the dead-letter list of topic {name:?}"),
                "topics",
            ));
            if topic.delivery == Delivery::ExactlyOnce {
                if let Some(offsets) = crate::keys::offsets_key(&topic.list_key) {
                    keys.push((
                        offsets,
                        KeyPurpose::Offsets,
                        format!("the exactly-once offsets of topic {name:?}"),
                        "topics",
                    ));
                }
            }
        }
        let lag_key = self.key("topics_queue_len", "lag.hash");
        keys.push((
            self.lag_hash.clone(),
            KeyPurpose::Lag,
            "the lag hash".into(),
            lag_key,
        ));
        if let Some(partitions) = crate::keys::lag_partitions_key(&self.lag_hash) {
            keys.push((
                partitions,
                KeyPurpose::LagPartitions,
                "the per-partition lag hash".into(),
                lag_key,
            ));
        }
        if let Some(lease) = &self.lease_key {
            keys.push((
                lease.clone(),
                KeyPurpose::Lease,
                "the lease key".into(),
                self.key("start_lock", "lease.key"),
            ));
        }
        let mut first_use: BTreeMap<&str, (KeyPurpose, &str)> = BTreeMap::new();
        for (key, purpose, what, setting) in &keys {
            let (first_purpose, first_what) = *first_use
                .entry(key.as_str())
                .or_insert((*purpose, what.as_str()));
            if first_purpose != *purpose {
                return Err(ConfigError::invalid(
                    *setting,
                    format!(
                        "makes {key:?} both {first_what} and {what}; each needs a key of its own"
                    ),
                ));
            }
        }
        Ok(())
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

    /// The lease's fence keys: one per list and per dead-letter list (see [`crate::keys::fence_key`]).
    pub fn fence_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .topics
            .iter()
            .flat_map(|t| [t.list_key.clone(), t.dead_letter_key()])
            .map(|list| {
                crate::keys::fence_key(&list).expect("validated: every list has a fence key")
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    pub fn topic(&self, name: &str) -> Option<&TopicConfig> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// Every secret in the config (Redis passwords, secret Kafka properties), to mask in texts
    /// that the clients write.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = self.redis.secrets();
        secrets.extend(self.kafka.secrets());
        secrets
    }
}

/// Parses an HTTP listen address (`HOST:PORT`); `key` names where it came from in the error.
pub fn parse_http_address(key: &str, text: &str) -> Result<std::net::SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    check_host_port(text).map_err(|why| ConfigError::invalid(key, format!("{text:?} {why}")))?;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            ConfigError::invalid(key, format!("{text:?} is not an address to listen on"))
        })
}

fn detect_format(path: &Path, text: &str) -> ConfigFormat {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => ConfigFormat::Legacy,
        Some("toml") => ConfigFormat::Native,
        _ if text.trim_start().starts_with('{') => ConfigFormat::Legacy,
        _ => ConfigFormat::Native,
    }
}

/// `host:port` with a non-empty host and a port in 1..=65535.
pub(crate) fn check_host_port(address: &str) -> Result<(), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| "is not host:port".to_string())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err("has no valid host".into());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("has an invalid port {port:?}")),
    }
}

/// Accepts `host:port`, `redis://…` and `rediss://…` URLs.
fn check_redis_address(address: &str) -> Result<(), String> {
    if address.contains("://") {
        if !(address.starts_with("redis://") || address.starts_with("rediss://")) {
            return Err("must start with redis:// or rediss://".into());
        }
        ::redis::parse_redis_url(address)
            .map(|_| ())
            .ok_or_else(|| "is not a valid Redis URL".into())
    } else {
        check_host_port(address)
    }
}
