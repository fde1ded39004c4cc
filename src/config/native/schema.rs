//! The native TOML file as serde reads it, before it is mapped onto [`Config`](super::super::Config).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::super::{defaults, Delivery, Envelope, JobOptions, Structure};
use crate::redact::Secret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NativeFile {
    /// Default delivery mode for every topic.
    #[serde(default)]
    pub(super) delivery: Delivery,
    pub(super) kafka: KafkaSection,
    pub(super) redis: RedisSection,
    #[serde(default)]
    pub(super) defaults: TopicDefaults,
    /// Each a bare name or a table with overrides, read one by one so that a mistake names its
    /// topic.
    pub(super) topics: Vec<toml::Value>,
    #[serde(default)]
    pub(super) batch: BatchSection,
    #[serde(default)]
    pub(super) retry: RetrySection,
    #[serde(default)]
    pub(super) shutdown: ShutdownSection,
    #[serde(default)]
    pub(super) flow: FlowSection,
    #[serde(default)]
    pub(super) lag: LagSection,
    /// Absent: no lease, instances share the partitions.
    pub(super) lease: Option<LeaseSection>,
    pub(super) http: Option<HttpSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KafkaSection {
    pub(super) brokers: Vec<String>,
    pub(super) group: String,
    #[serde(default = "commit_interval_ms")]
    pub(super) commit_interval_ms: u64,
    #[serde(default = "commit_after_messages")]
    pub(super) commit_after_messages: u64,
    /// Static membership: unset derives one, `""` turns it off.
    pub(super) group_instance_id: Option<String>,
    /// librdkafka properties, passed through.
    #[serde(default)]
    pub(super) properties: BTreeMap<String, PropertyValue>,
}

/// librdkafka takes strings; allow TOML numbers and booleans for convenience.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum PropertyValue {
    Text(String),
    Integer(i64),
    Bool(bool),
}

impl PropertyValue {
    pub(super) fn into_string(self) -> String {
        match self {
            PropertyValue::Text(s) => s,
            PropertyValue::Integer(n) => n.to_string(),
            PropertyValue::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum Mode {
    #[default]
    Standalone,
    Sentinel,
    Cluster,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RedisSection {
    #[serde(default)]
    pub(super) mode: Mode,
    pub(super) addresses: Vec<String>,
    pub(super) master_name: Option<String>,
    pub(super) username: Option<String>,
    pub(super) password: Option<Secret>,
    /// The sentinels' own credentials (Sentinel mode only).
    pub(super) sentinel_username: Option<String>,
    pub(super) sentinel_password: Option<Secret>,
    #[serde(default)]
    pub(super) db: i64,
    #[serde(default = "connect_timeout_ms")]
    pub(super) connect_timeout_ms: u64,
    #[serde(default = "response_timeout_ms")]
    pub(super) response_timeout_ms: u64,
    /// TLS on every connection; implied by `rediss://` addresses and by any `tls_*` key.
    #[serde(default)]
    pub(super) tls: bool,
    pub(super) tls_ca_file: Option<PathBuf>,
    pub(super) tls_cert_file: Option<PathBuf>,
    pub(super) tls_key_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) tls_insecure_skip_verify: bool,
    pub(super) wait_replicas: Option<u32>,
    #[serde(default = "wait_timeout_ms")]
    pub(super) wait_timeout_ms: u64,
}

/// Defaults for every topic that does not set its own.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct TopicDefaults {
    pub(super) prefix: String,
    pub(super) envelope: Envelope,
    pub(super) cap: Option<i64>,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        TopicDefaults {
            prefix: defaults::PREFIX.to_string(),
            envelope: Envelope::Raw,
            cap: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TopicTable {
    pub(super) name: String,
    pub(super) list: Option<String>,
    /// `list` (default) or `stream`.
    pub(super) structure: Option<Structure>,
    pub(super) envelope: Option<Envelope>,
    pub(super) cap: Option<i64>,
    pub(super) delivery: Option<Delivery>,
    /// Resume paused partitions once the list is down to this length (default: half the cap).
    pub(super) low_water: Option<u64>,
    /// The handler of a job envelope (laravel, celery, sidekiq, bullmq, rq).
    pub(super) job: Option<String>,
    /// The BullMQ or RQ queue (bullmq, rq).
    pub(super) queue: Option<String>,
    /// The BullMQ or RQ key prefix (default `bull` / `rq`).
    pub(super) queue_prefix: Option<String>,
    /// BullMQ's or RQ's per-job settings.
    pub(super) job_options: Option<JobOptions>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct BatchSection {
    pub(super) max_messages: usize,
    pub(super) max_bytes: usize,
    pub(super) linger_ms: u64,
    pub(super) in_flight: Option<usize>,
}

impl Default for BatchSection {
    fn default() -> Self {
        BatchSection {
            max_messages: defaults::BATCH_MAX_MESSAGES,
            max_bytes: defaults::BATCH_MAX_BYTES,
            linger_ms: defaults::LINGER_MS,
            in_flight: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RetrySection {
    pub(super) backoff_min_ms: u64,
    pub(super) backoff_max_ms: u64,
}

impl Default for RetrySection {
    fn default() -> Self {
        RetrySection {
            backoff_min_ms: defaults::BACKOFF_MIN_MS,
            backoff_max_ms: defaults::BACKOFF_MAX_MS,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct ShutdownSection {
    pub(super) timeout_ms: u64,
}

impl Default for ShutdownSection {
    fn default() -> Self {
        ShutdownSection {
            timeout_ms: defaults::SHUTDOWN_TIMEOUT_MS,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct FlowSection {
    pub(super) check_interval_ms: u64,
}

impl Default for FlowSection {
    fn default() -> Self {
        FlowSection {
            check_interval_ms: defaults::FLOW_CHECK_INTERVAL_MS,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct LagSection {
    pub(super) hash: String,
    pub(super) interval_ms: u64,
}

impl Default for LagSection {
    fn default() -> Self {
        LagSection {
            hash: defaults::LAG_HASH.to_string(),
            interval_ms: defaults::LAG_INTERVAL_MS,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct LeaseSection {
    pub(super) key: String,
    pub(super) ttl_ms: u64,
}

impl Default for LeaseSection {
    fn default() -> Self {
        LeaseSection {
            key: defaults::LEASE_KEY.to_string(),
            ttl_ms: defaults::LEASE_TTL_MS,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpSection {
    pub(super) address: String,
}

// `[kafka]` and `[redis]` have required keys, which a section-wide default would make optional:
// their defaults are given key by key.
fn commit_interval_ms() -> u64 {
    defaults::COMMIT_INTERVAL_MS
}
fn commit_after_messages() -> u64 {
    defaults::COMMIT_AFTER_MESSAGES
}
fn connect_timeout_ms() -> u64 {
    defaults::REDIS_CONNECT_TIMEOUT_MS
}
fn response_timeout_ms() -> u64 {
    defaults::REDIS_RESPONSE_TIMEOUT_MS
}
fn wait_timeout_ms() -> u64 {
    defaults::REDIS_WAIT_TIMEOUT_MS
}
