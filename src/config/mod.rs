//! The settings kafka2redis runs with, and where they come from.
//!
//! Two file formats load into one validated [`Config`]: the old Go tool's `conf.json` (plus its `.env`
//! keys), see [`legacy`], and the native TOML file, see [`native`]. Environment variables are applied
//! on top by [`env`]. Everything is checked by one pass, [`Config::validate`], before anything
//! connects, so that a bad setting is one plain sentence naming the key (exit code 2) rather than a
//! failure half-way through start-up.

pub mod env;
pub mod error;
pub mod jobs;
pub mod legacy;
pub mod native;

mod address;
mod load;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub(crate) use address::check_host_port;
pub use address::parse_http_address;
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
    /// A BullMQ job named the topic's `job` with the `json` record as its data, on the topic's
    /// `queue`.
    Bullmq,
    /// An RQ job calling the topic's `job` (`module.function`) with the `json` record, on the
    /// topic's `queue`.
    Rq,
    /// A Symfony Messenger message of the class in the topic's `job`, the `json` record as its
    /// body: a stream entry, so it implies `structure = "stream"`.
    Symfony,
}

/// Which Redis structure a topic's messages go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Structure {
    /// A list: one element per message, popped by workers (`BLPOP`, `LMOVE`).
    #[default]
    List,
    /// A stream: one entry per message, read by consumer groups (`XREADGROUP`, `XACK`).
    Stream,
}

impl Structure {
    /// The structure a topic gets without a `structure` key: a stream for the `symfony` envelope
    /// (Messenger's Redis transport reads a stream), else a list.
    pub fn implied_by(envelope: Envelope) -> Structure {
        match envelope {
            Envelope::Symfony => Structure::Stream,
            _ => Structure::List,
        }
    }
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
    /// Which `group.instance.id` (static membership) this instance joins with.
    pub group_instance_id: GroupInstanceId,
}

/// The consumer's `group.instance.id`: `kafka.group_instance_id`, the pass-through property of that
/// name (the same setting), or `K2R_KAFKA_GROUP_INSTANCE_ID`. Resolved at start by
/// [`crate::kafka::instance_id`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupInstanceId {
    /// Not set: derived at start from the host, the config file and a slot per running copy (or,
    /// with a lease, one id the holder and its standbys share).
    Derived {
        /// The config file, absolute when it could be made so.
        config_path: std::path::PathBuf,
    },
    /// Set to `""`: dynamic membership, as librdkafka does without the property.
    Dynamic,
    /// Set to this id.
    Named(String),
}

impl GroupInstanceId {
    /// The setting as the user wrote it: `""` means dynamic membership.
    pub fn from_setting(value: &str) -> GroupInstanceId {
        match value.trim() {
            "" => GroupInstanceId::Dynamic,
            id => GroupInstanceId::Named(id.to_string()),
        }
    }

    /// The default, derived from `config_path`.
    pub fn derived(config_path: &std::path::Path) -> GroupInstanceId {
        let config_path = std::path::absolute(config_path)
            .ok()
            .and_then(|p| std::fs::canonicalize(&p).ok().or(Some(p)))
            .unwrap_or_else(|| config_path.to_path_buf());
        GroupInstanceId::Derived { config_path }
    }
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
            .field("group_instance_id", &self.group_instance_id)
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
    /// The Redis key the topic's messages go to: a list, or a stream with `structure = "stream"`.
    pub list_key: String,
    /// Whether `list_key` is a list or a stream.
    pub structure: Structure,
    pub envelope: Envelope,
    /// The handler a job envelope names (see [`jobs`]); `None` for the other envelopes.
    pub job: Option<String>,
    /// The BullMQ or RQ queue the topic's jobs go to; the list is that queue's list of waiting
    /// jobs ([`jobs::queue_list`]). `None` for the other envelopes.
    pub queue: Option<String>,
    /// The BullMQ or RQ key prefix, when not the framework's default ([`jobs::queue_prefix`]).
    pub queue_prefix: Option<String>,
    /// BullMQ's or RQ's per-job settings (`job_options`); unset ones keep the bridge's defaults.
    pub job_options: JobOptions,
    /// The list's cap (`cache_size`); for a stream it counts what its consumer groups have not
    /// finished. `None` = uncapped.
    pub cap: Option<Cap>,
    pub delivery: Delivery,
}

/// The settings every job of a BullMQ or RQ topic carries (`job_options = { … }`); each unset one
/// keeps the bridge's default (docs/workers.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobOptions {
    /// BullMQ: runs a failing job gets in all (`attempts`).
    pub attempts: Option<u32>,
    /// BullMQ: the first retry's wait; each later one doubles it.
    pub backoff_ms: Option<u64>,
    /// BullMQ: how long and how many completed jobs are kept (`removeOnComplete`).
    pub keep_completed_seconds: Option<u64>,
    pub keep_completed_count: Option<u64>,
    /// BullMQ: the same for failed jobs (`removeOnFail`).
    pub keep_failed_seconds: Option<u64>,
    pub keep_failed_count: Option<u64>,
    /// RQ: seconds a run may take (`timeout`).
    pub timeout_seconds: Option<u64>,
    /// RQ: seconds a finished job is kept (`result_ttl`).
    pub result_ttl_seconds: Option<u64>,
}

impl JobOptions {
    /// The keys set, by name, with whether BullMQ (else RQ) reads them.
    pub fn set_keys(&self) -> Vec<(&'static str, bool)> {
        [
            ("attempts", self.attempts.is_some(), true),
            ("backoff_ms", self.backoff_ms.is_some(), true),
            (
                "keep_completed_seconds",
                self.keep_completed_seconds.is_some(),
                true,
            ),
            (
                "keep_completed_count",
                self.keep_completed_count.is_some(),
                true,
            ),
            (
                "keep_failed_seconds",
                self.keep_failed_seconds.is_some(),
                true,
            ),
            ("keep_failed_count", self.keep_failed_count.is_some(), true),
            ("timeout_seconds", self.timeout_seconds.is_some(), false),
            (
                "result_ttl_seconds",
                self.result_ttl_seconds.is_some(),
                false,
            ),
        ]
        .into_iter()
        .filter(|(_, set, _)| *set)
        .map(|(name, _, bullmq)| (name, bullmq))
        .collect()
    }
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
    /// How many batches of one partition may be in flight on the lane's connection at once
    /// (1: one round trip per batch); `None`: [`defaults::BATCH_IN_FLIGHT`].
    pub in_flight: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct RetryConfig {
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

/// Defaults shared by both formats.
pub mod defaults {
    pub const PREFIX: &str = "queues:";
    pub const LAG_HASH: &str = "topics_queue_len";
    pub const LEASE_KEY: &str = "kafka_consumers_run";
    pub const LAG_INTERVAL_MS: u64 = 5_000;
    pub const LEASE_TTL_MS: u64 = 10_000;
    pub const BATCH_MAX_MESSAGES: usize = 1000;
    pub const BATCH_MAX_BYTES: usize = 1024 * 1024;
    /// No linger: messages reach a lane in fetched chunks, and a lane gathers while its push is in
    /// flight, so batches fill by themselves under load; a linger only delays a trickle — by
    /// 2 ms at the median for 1 ms, the timer's granularity included, with no throughput or CPU
    /// gained (docs/benchmarks.md).
    pub const LINGER_MS: u64 = 0;
    /// Batches of one partition in flight at once when `batch.in_flight` is not set: one. With
    /// Redis on the same machine as the bridge, windows of several gained nothing measurable
    /// (docs/benchmarks.md); they pay off when a round trip is long against Redis' work on a push.
    pub const BATCH_IN_FLIGHT: usize = 1;
    /// The most a lane may keep in flight: each batch in flight holds its bytes.
    pub const BATCH_IN_FLIGHT_MAX: usize = 64;
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
