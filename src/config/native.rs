//! kafka2redis' own TOML config: the same settings as the old file, structured and strict.
//!
//! Unknown keys and wrong types are errors naming the key (`deny_unknown_fields`), because a typo in
//! a new file should stop the start, not silently fall back to a default. See `docs/config.example.toml`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::env::Vars;
use super::{
    defaults, BatchConfig, Config, ConfigError, ConfigFormat, KafkaConfig, RedisConfig,
    RedisTopology, RetryConfig, TopicConfig,
};
use crate::envelope::Envelope;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeFile {
    kafka: KafkaSection,
    redis: RedisSection,
    #[serde(default)]
    defaults: TopicDefaults,
    topics: Vec<TopicEntry>,
    #[serde(default)]
    batch: BatchSection,
    #[serde(default)]
    retry: RetrySection,
    #[serde(default)]
    shutdown: ShutdownSection,
    lag: Option<LagSection>,
    lease: Option<LeaseSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaSection {
    brokers: Vec<String>,
    group: String,
    #[serde(default = "commit_interval_ms")]
    commit_interval_ms: u64,
    /// librdkafka properties, passed through.
    #[serde(default)]
    properties: BTreeMap<String, PropertyValue>,
}

/// librdkafka takes strings; allow TOML numbers and booleans for convenience.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PropertyValue {
    Text(String),
    Integer(i64),
    Bool(bool),
}

impl PropertyValue {
    fn into_string(self) -> String {
        match self {
            PropertyValue::Text(s) => s,
            PropertyValue::Integer(n) => n.to_string(),
            PropertyValue::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Standalone,
    Sentinel,
    Cluster,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisSection {
    #[serde(default)]
    mode: Mode,
    addresses: Vec<String>,
    master_name: Option<String>,
    username: Option<String>,
    password: Option<String>,
    #[serde(default)]
    db: i64,
    #[serde(default = "connect_timeout_ms")]
    connect_timeout_ms: u64,
    #[serde(default = "response_timeout_ms")]
    response_timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicDefaults {
    #[serde(default = "prefix")]
    prefix: String,
    #[serde(default = "raw")]
    envelope: Envelope,
    cap: Option<i64>,
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

/// A topic is either its bare name or a table with overrides.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TopicEntry {
    Name(String),
    Table(TopicTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicTable {
    name: String,
    list: Option<String>,
    envelope: Option<Envelope>,
    cap: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchSection {
    #[serde(default = "max_messages")]
    max_messages: usize,
    #[serde(default = "max_bytes")]
    max_bytes: usize,
    #[serde(default = "linger_ms")]
    linger_ms: u64,
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
struct RetrySection {
    #[serde(default = "backoff_min_ms")]
    backoff_min_ms: u64,
    #[serde(default = "backoff_max_ms")]
    backoff_max_ms: u64,
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
struct ShutdownSection {
    #[serde(default = "shutdown_timeout_ms")]
    timeout_ms: u64,
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
struct LagSection {
    #[serde(default = "lag_hash")]
    hash: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseSection {
    #[serde(default = "lease_key")]
    key: String,
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

/// Parses the TOML format; `vars` supplies the `K2R_*` overrides.
pub fn parse(text: &str, path: &Path, vars: &Vars) -> Result<Config, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| {
        ConfigError::syntax(path, format!("invalid TOML: {}", one_line(&e.to_string())))
    })?;
    let file: NativeFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let reason = one_line(&e.into_inner().to_string());
        if key == "." {
            ConfigError::syntax(path, reason)
        } else {
            ConfigError::invalid(key, reason)
        }
    })?;
    let mut config = map(file)?;
    vars.apply_common(&mut config)?;
    Ok(config)
}

fn map(file: NativeFile) -> Result<Config, ConfigError> {
    let mut not_yet_active = Vec::new();
    let redis = file.redis;
    let topology = match redis.mode {
        Mode::Standalone => match redis.addresses.as_slice() {
            [one] => RedisTopology::Standalone {
                address: one.clone(),
            },
            _ => {
                return Err(ConfigError::invalid(
                    "redis.addresses",
                    "must hold exactly one address when redis.mode = \"standalone\"",
                ))
            }
        },
        Mode::Sentinel => RedisTopology::Sentinel {
            master_name: redis.master_name.clone().ok_or_else(|| {
                ConfigError::invalid(
                    "redis.master_name",
                    "is required when redis.mode = \"sentinel\"",
                )
            })?,
            addresses: redis.addresses.clone(),
        },
        Mode::Cluster => RedisTopology::Cluster {
            addresses: redis.addresses.clone(),
        },
    };
    if redis.addresses.is_empty() {
        return Err(ConfigError::invalid(
            "redis.addresses",
            "must list at least one address",
        ));
    }
    if redis.mode != Mode::Standalone {
        not_yet_active.push(format!(
            "redis.mode = {:?} (this version connects to standalone Redis only)",
            redis.mode
        ));
    }

    let positive_cap = |key: String, cap: Option<i64>| match cap {
        Some(n) if n <= 0 => Err(ConfigError::invalid(
            key,
            format!("must be greater than 0, got {n}"),
        )),
        other => Ok(other.map(|n| n as u64)),
    };
    let default_cap = positive_cap("defaults.cap".into(), file.defaults.cap)?;
    let mut topics = Vec::with_capacity(file.topics.len());
    for (i, entry) in file.topics.into_iter().enumerate() {
        let table = match entry {
            TopicEntry::Name(name) => TopicTable {
                name,
                list: None,
                envelope: None,
                cap: None,
            },
            TopicEntry::Table(table) => table,
        };
        let cap = match table.cap {
            Some(_) => positive_cap(format!("topics[{i}].cap"), table.cap)?,
            None => default_cap,
        };
        topics.push(TopicConfig {
            list_key: table
                .list
                .unwrap_or_else(|| format!("{}{}", file.defaults.prefix, table.name)),
            envelope: table.envelope.unwrap_or(file.defaults.envelope),
            name: table.name,
            cap,
        });
    }
    if let Some(cap) = topics.iter().find_map(|t| t.cap) {
        not_yet_active.push(format!("cap = {cap} (list cap)"));
    }
    let lag_hash = match file.lag {
        Some(lag) => {
            not_yet_active.push(format!("lag.hash = {:?} (lag hash)", lag.hash));
            lag.hash
        }
        None => defaults::LAG_HASH.to_string(),
    };
    if let Some(lease) = &file.lease {
        not_yet_active.push(format!("lease.key = {:?} (exclusive lease)", lease.key));
    }

    Ok(Config {
        format: ConfigFormat::Native,
        kafka: KafkaConfig {
            brokers: file.kafka.brokers,
            group: file.kafka.group,
            properties: file
                .kafka
                .properties
                .into_iter()
                .map(|(k, v)| (k, v.into_string()))
                .collect(),
            commit_interval: Duration::from_millis(file.kafka.commit_interval_ms),
        },
        redis: RedisConfig {
            topology,
            username: redis.username,
            password: redis.password,
            db: redis.db,
            connect_timeout: Duration::from_millis(redis.connect_timeout_ms),
            response_timeout: Duration::from_millis(redis.response_timeout_ms),
        },
        topics,
        batch: BatchConfig {
            max_messages: file.batch.max_messages,
            max_bytes: file.batch.max_bytes,
            linger: Duration::from_millis(file.batch.linger_ms),
        },
        retry: RetryConfig {
            backoff_min: Duration::from_millis(file.retry.backoff_min_ms),
            backoff_max: Duration::from_millis(file.retry.backoff_max_ms),
        },
        shutdown_timeout: Duration::from_millis(file.shutdown.timeout_ms),
        lag_hash,
        lease_key: file.lease.map(|l| l.key),
        not_yet_active,
        warnings: Vec::new(),
    })
}

/// toml's messages span several lines (with a source excerpt); keep them readable in one log line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let config = parse(
            toml,
            Path::new("k2r.toml"),
            &Vars::from_pairs(vars.iter().copied()),
        )?;
        config.validate()?;
        Ok(config)
    }

    const MINIMAL: &str = r#"
topics = ["a", { name = "b", list = "jobs:b", envelope = "json", cap = 10 }]
[kafka]
brokers = ["127.0.0.1:9092"]
group = "g"
properties = { "fetch.wait.max.ms" = 50, "enable.partition.eof" = false }
[redis]
addresses = ["127.0.0.1:6379"]
"#;

    #[test]
    fn minimal_file_with_overrides() {
        let c = load(MINIMAL, &[]).unwrap();
        assert_eq!(c.topics[0].list_key, "queues:a");
        assert_eq!(c.topics[0].envelope, Envelope::Raw);
        assert_eq!(c.topics[1].list_key, "jobs:b");
        assert_eq!(c.topics[1].envelope, Envelope::Json);
        assert_eq!(c.topics[1].cap, Some(10));
        assert_eq!(c.kafka.properties["fetch.wait.max.ms"], "50");
        assert_eq!(c.kafka.properties["enable.partition.eof"], "false");
        assert_eq!(c.lease_key, None);
    }

    #[test]
    fn environment_overrides_file() {
        let c = load(
            MINIMAL,
            &[
                ("K2R_KAFKA_BROKERS", "b1:1,b2:2"),
                ("K2R_REDIS_PASSWORD", "pw"),
            ],
        )
        .unwrap();
        assert_eq!(c.kafka.brokers, vec!["b1:1", "b2:2"]);
        assert_eq!(c.redis.password.as_deref(), Some("pw"));
    }

    #[test]
    fn errors_name_the_key() {
        let err = |toml: &str| load(toml, &[]).unwrap_err().to_string();
        assert!(
            err(&MINIMAL.replace("group = \"g\"", "group = \"g\"\ngruop = 1")).contains("gruop")
        );
        assert!(err(&MINIMAL.replace("cap = 10", "cap = 0"))
            .contains("`topics[1].cap` must be greater than 0"));
        assert!(err(&MINIMAL.replace("cap = 10", "cap = \"ten\"")).contains("topics"));
        assert!(err(&MINIMAL.replace("[\"127.0.0.1:9092\"]", "[]")).contains("`kafka.brokers`"));
        assert!(
            err(&MINIMAL.replace("127.0.0.1:6379", "127.0.0.1:notaport"))
                .contains("`redis.addresses`")
        );
        assert!(
            err(&MINIMAL.replace("[redis]", "[redis]\nmode = \"sentinel\""))
                .contains("redis.master_name")
        );
        assert!(err("[kafka\n").contains("line 1"));
    }
}
