//! The native TOML file as serde reads it, before it is mapped onto [`Config`](super::super::Config).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::super::{defaults, Delivery, Envelope};
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
    /// Each a bare name or a table with overrides, read by [`topic_entry`].
    pub(super) topics: Vec<toml::Value>,
    #[serde(default)]
    pub(super) batch: BatchSection,
    #[serde(default)]
    pub(super) retry: RetrySection,
    #[serde(default)]
    pub(super) shutdown: ShutdownSection,
    #[serde(default)]
    pub(super) flow: FlowSection,
    pub(super) lag: Option<LagSection>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TopicDefaults {
    #[serde(default = "prefix")]
    pub(super) prefix: String,
    #[serde(default = "raw")]
    pub(super) envelope: Envelope,
    pub(super) cap: Option<i64>,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        TopicDefaults {
            prefix: prefix(),
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
    pub(super) envelope: Option<Envelope>,
    pub(super) cap: Option<i64>,
    pub(super) delivery: Option<Delivery>,
    /// Resume paused partitions once the list is down to this length (default: half the cap).
    pub(super) low_water: Option<u64>,
    /// The handler of a job envelope (laravel, celery, sidekiq).
    pub(super) job: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BatchSection {
    #[serde(default = "max_messages")]
    pub(super) max_messages: usize,
    #[serde(default = "max_bytes")]
    pub(super) max_bytes: usize,
    #[serde(default = "linger_ms")]
    pub(super) linger_ms: u64,
}

impl Default for BatchSection {
    fn default() -> Self {
        BatchSection {
            max_messages: max_messages(),
            max_bytes: max_bytes(),
            linger_ms: linger_ms(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetrySection {
    #[serde(default = "backoff_min_ms")]
    pub(super) backoff_min_ms: u64,
    #[serde(default = "backoff_max_ms")]
    pub(super) backoff_max_ms: u64,
}

impl Default for RetrySection {
    fn default() -> Self {
        RetrySection {
            backoff_min_ms: backoff_min_ms(),
            backoff_max_ms: backoff_max_ms(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ShutdownSection {
    #[serde(default = "shutdown_timeout_ms")]
    pub(super) timeout_ms: u64,
}

impl Default for ShutdownSection {
    fn default() -> Self {
        ShutdownSection {
            timeout_ms: shutdown_timeout_ms(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LagSection {
    #[serde(default = "lag_hash")]
    pub(super) hash: String,
    #[serde(default = "lag_interval_ms")]
    pub(super) interval_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpSection {
    pub(super) address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FlowSection {
    #[serde(default = "flow_check_interval_ms")]
    pub(super) check_interval_ms: u64,
}

impl Default for FlowSection {
    fn default() -> Self {
        FlowSection {
            check_interval_ms: flow_check_interval_ms(),
        }
    }
}

fn flow_check_interval_ms() -> u64 {
    defaults::FLOW_CHECK_INTERVAL_MS
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LeaseSection {
    #[serde(default = "lease_key")]
    pub(super) key: String,
    #[serde(default = "lease_ttl_ms")]
    pub(super) ttl_ms: u64,
}

fn commit_interval_ms() -> u64 {
    defaults::COMMIT_INTERVAL_MS
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
fn prefix() -> String {
    defaults::PREFIX.to_string()
}
fn raw() -> Envelope {
    Envelope::Raw
}
fn max_messages() -> usize {
    defaults::BATCH_MAX_MESSAGES
}
fn max_bytes() -> usize {
    defaults::BATCH_MAX_BYTES
}
fn linger_ms() -> u64 {
    defaults::LINGER_MS
}
fn backoff_min_ms() -> u64 {
    defaults::BACKOFF_MIN_MS
}
fn backoff_max_ms() -> u64 {
    defaults::BACKOFF_MAX_MS
}
fn shutdown_timeout_ms() -> u64 {
    defaults::SHUTDOWN_TIMEOUT_MS
}
fn lag_hash() -> String {
    defaults::LAG_HASH.to_string()
}
fn lease_key() -> String {
    defaults::LEASE_KEY.to_string()
}
fn lag_interval_ms() -> u64 {
    defaults::LAG_INTERVAL_MS
}
fn lease_ttl_ms() -> u64 {
    defaults::LEASE_TTL_MS
}
