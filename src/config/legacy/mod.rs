//! The old Go tool's `conf.json` and `.env`, read unchanged.
//!
//! Every key the old tool knew is understood. Keys that never meant anything here (`consumer_num`,
//! the lag-estimate knobs) and keys nobody knows are warned about, never an error, because existing
//! files must keep starting. `//` comments, which the old README's example carries, are accepted.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::env::{split_list, Vars};
use super::{
    defaults, BatchConfig, Cap, Config, ConfigError, ConfigFormat, Delivery, Envelope,
    GroupInstanceId, KafkaConfig, RedisConfig, RedisTopology, RetryConfig, Structure, TopicConfig,
};

/// A list the old files wrote either as a JSON array (of strings or numbers) or as one string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Loose {
    Many(Vec<LooseItem>),
    One(LooseItem),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum LooseItem {
    Text(String),
    Number(i64),
}

impl LooseItem {
    fn into_string(self) -> String {
        match self {
            LooseItem::Text(s) => s.trim().to_string(),
            LooseItem::Number(n) => n.to_string(),
        }
    }
}

impl Loose {
    fn into_list(self, separators: &[char]) -> Vec<String> {
        match self {
            Loose::Many(items) => items
                .into_iter()
                .map(LooseItem::into_string)
                .filter(|s| !s.is_empty())
                .collect(),
            Loose::One(item) => split_list(&item.into_string(), separators),
        }
    }
}

#[derive(Debug, Deserialize)]
struct LegacyFile {
    kafka_addr: Option<Loose>,
    redis_host: Option<Loose>,
    redis_port: Option<Loose>,
    sentinel_master_name: Option<String>,
    cache_size: Option<i64>,
    topics: Option<Loose>,
    consumer_group: Option<String>,
    start_lock: Option<String>,
    prefix_redis: Option<String>,
    consumer_num: Option<i64>,
    topics_queue_len: Option<String>,
    accumulated: Option<i64>,
    min_accumulated: Option<i64>,
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_json::Value>,
}

/// Parses the old format and maps it onto [`Config`]; `vars` supplies the old `.env` keys.
pub fn parse(text: &str, path: &Path, vars: &Vars) -> Result<Config, ConfigError> {
    let stripped = strip_line_comments(text);
    let mut de = serde_json::Deserializer::from_str(&stripped);
    let file: LegacyFile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() && key != "." {
            ConfigError::invalid(key, format!("has the wrong type ({inner})"))
        } else {
            ConfigError::syntax(path, format!("invalid JSON: {inner}"))
        }
    })?;
    let mut config = map(file, path, vars)?;
    vars.apply_common(&mut config)?;
    Ok(config)
}

fn map(file: LegacyFile, path: &Path, vars: &Vars) -> Result<Config, ConfigError> {
    let mut warnings = Vec::new();

    let brokers = vars
        .list("KAFKA_BROKERS", &[','])
        .or_else(|| file.kafka_addr.map(|l| l.into_list(&[','])))
        .ok_or_else(|| {
            ConfigError::invalid("kafka_addr", "is missing (and KAFKA_BROKERS is not set)")
        })?;
    let hosts = vars
        .list("REDIS_HOST", &[';', ','])
        .or_else(|| file.redis_host.map(|l| l.into_list(&[';', ','])))
        .ok_or_else(|| {
            ConfigError::invalid("redis_host", "is missing (and REDIS_HOST is not set)")
        })?;
    let ports = vars
        .list("REDIS_PORT", &[';', ','])
        .or_else(|| file.redis_port.map(|l| l.into_list(&[';', ','])))
        .ok_or_else(|| {
            ConfigError::invalid("redis_port", "is missing (and REDIS_PORT is not set)")
        })?;
    let master_name = vars
        .get("REDIS_SENTINEL_SERVICE")
        .map(String::from)
        .or(file.sentinel_master_name)
        .filter(|m| !m.trim().is_empty());
    if let (1, 1, Some(name)) = (hosts.len(), ports.len(), &master_name) {
        // The old tool's rule; whether the address is really a sentinel is known only once
        // connected, where it is an error (see `crate::redis`).
        warnings.push(format!(
            "sentinel_master_name = {name:?} is unused: one redis_host with one redis_port is a \
             standalone server; Sentinel mode needs the sentinels in redis_host with one redis_port"
        ));
    }
    let topology = topology(&hosts, &ports, master_name)?;

    let topic_names = file
        .topics
        .map(|l| l.into_list(&[',']))
        .ok_or_else(|| ConfigError::invalid("topics", "is missing"))?;
    let group = file
        .consumer_group
        .ok_or_else(|| ConfigError::invalid("consumer_group", "is missing"))?;
    let prefix = file
        .prefix_redis
        .unwrap_or_else(|| defaults::PREFIX.to_string());

    let cap = match file.cache_size {
        None => None,
        Some(n) if n <= 0 => {
            return Err(ConfigError::invalid(
                "cache_size",
                format!("must be greater than 0, got {n}"),
            ))
        }
        Some(n) => Some(Cap::new(n as u64, None)),
    };

    let lease_key = file
        .start_lock
        .unwrap_or_else(|| defaults::LEASE_KEY.to_string());
    let lag_hash = file
        .topics_queue_len
        .unwrap_or_else(|| defaults::LAG_HASH.to_string());

    if let Some(n) = file.consumer_num {
        warnings.push(format!(
            "consumer_num = {n} is accepted and has no effect: kafka2redis already runs one lane per \
             assigned partition, which is the most parallelism Kafka allows"
        ));
    }
    for (key, value) in [
        ("accumulated", file.accumulated),
        ("min_accumulated", file.min_accumulated),
    ] {
        if let Some(n) = value {
            warnings.push(format!(
                "{key} = {n} is accepted and unused: it tuned the old tool's lag estimate, and \
                 kafka2redis measures lag exactly"
            ));
        }
    }
    if !file.unknown.is_empty() {
        let names: Vec<&str> = file.unknown.keys().map(String::as_str).collect();
        warnings.push(format!("unknown config keys ignored: {}", names.join(", ")));
    }

    let topics = topic_names
        .into_iter()
        .map(|name| TopicConfig {
            list_key: format!("{prefix}{name}"),
            structure: Structure::List,
            name,
            envelope: Envelope::Legacy,
            job: None,
            queue: None,
            queue_prefix: None,
            job_options: Default::default(),
            cap,
            delivery: Delivery::AtLeastOnce,
        })
        .collect();

    Ok(Config {
        format: ConfigFormat::Legacy,
        kafka: KafkaConfig {
            brokers,
            group,
            properties: BTreeMap::new(),
            commit_interval: Duration::from_millis(defaults::COMMIT_INTERVAL_MS),
            commit_after_messages: defaults::COMMIT_AFTER_MESSAGES,
            group_instance_id: GroupInstanceId::derived(path),
        },
        // The old tool had no Redis credentials, TLS or WAIT settings: the defaults apply (and
        // `K2R_REDIS_USERNAME` / `K2R_REDIS_PASSWORD` still work).
        redis: RedisConfig {
            topology,
            ..RedisConfig::standalone("")
        },
        topics,
        batch: BatchConfig {
            max_messages: defaults::BATCH_MAX_MESSAGES,
            max_bytes: defaults::BATCH_MAX_BYTES,
            linger: Duration::from_millis(defaults::LINGER_MS),
            in_flight: None,
        },
        retry: RetryConfig {
            backoff_min: Duration::from_millis(defaults::BACKOFF_MIN_MS),
            backoff_max: Duration::from_millis(defaults::BACKOFF_MAX_MS),
        },
        flow_check_interval: Duration::from_millis(defaults::FLOW_CHECK_INTERVAL_MS),
        shutdown_timeout: Duration::from_millis(defaults::SHUTDOWN_TIMEOUT_MS),
        lag_hash,
        lag_interval: Duration::from_millis(defaults::LAG_INTERVAL_MS),
        // The old tool always ran exclusively: a conf.json always has a lease.
        lease_key: Some(lease_key),
        lease_ttl: Duration::from_millis(defaults::LEASE_TTL_MS),
        http: None,
        warnings,
    })
}

/// The old tool's rule: one host and one port → standalone; several hosts and one port → Sentinel;
/// as many ports as hosts (more than one) → Cluster.
fn topology(
    hosts: &[String],
    ports: &[String],
    master_name: Option<String>,
) -> Result<RedisTopology, ConfigError> {
    let joined = |host: &str, port: &str| format!("{host}:{port}");
    match (hosts.len(), ports.len()) {
        (1, 1) => Ok(RedisTopology::Standalone {
            address: joined(&hosts[0], &ports[0]),
        }),
        (h, 1) if h > 1 => {
            let master_name = master_name.ok_or_else(|| {
                ConfigError::invalid(
                    "sentinel_master_name",
                    "is required when redis_host lists several hosts with one redis_port (Sentinel mode)",
                )
            })?;
            Ok(RedisTopology::Sentinel {
                master_name,
                addresses: hosts.iter().map(|h| joined(h, &ports[0])).collect(),
            })
        }
        (h, p) if h == p && h > 1 => Ok(RedisTopology::Cluster {
            addresses: hosts.iter().zip(ports).map(|(h, p)| joined(h, p)).collect(),
        }),
        (h, p) => Err(ConfigError::invalid(
            "redis_host/redis_port",
            format!(
                "list {h} host(s) and {p} port(s): use one host and one port (standalone), several hosts and \
                 one port (Sentinel) or as many ports as hosts (Cluster)"
            ),
        )),
    }
}

/// Blanks `//` comments outside strings, keeping every newline so JSON errors keep their line numbers.
fn strip_line_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == '/' && chars.peek() == Some(&'/') {
            for rest in chars.by_ref() {
                if rest == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests;
