//! kafka2redis' own TOML config: the same settings as the old file, structured and strict.
//!
//! Unknown keys and wrong types are errors naming the key (`deny_unknown_fields`), because a typo in
//! a new file should stop the start, not silently fall back to a default. See `docs/config.example.toml`.

mod schema;
mod tls;

use std::path::Path;
use std::time::Duration;

use schema::{Mode, NativeFile, TopicTable};

use super::env::Vars;
use super::jobs;
use super::{
    defaults, BatchConfig, Cap, Config, ConfigError, ConfigFormat, GroupInstanceId, KafkaConfig,
    RedisConfig, RedisTopology, RetryConfig, Structure, TopicConfig,
};
use crate::redact;

/// Parses the TOML format; `vars` supplies the `K2R_*` overrides.
pub fn parse(text: &str, path: &Path, vars: &Vars) -> Result<Config, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| {
        ConfigError::syntax(
            path,
            format!(
                "invalid TOML{}: {}",
                location(text, e.span()),
                one_line(e.message())
            ),
        )
    })?;
    let file: NativeFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        // The parser's message may quote the value at fault, which may be a password.
        let reason = redact::scrub(&one_line(inner.message()), &secrets_in(text));
        if key == "." {
            ConfigError::syntax(path, format!("{reason}{}", location(text, inner.span())))
        } else {
            ConfigError::invalid(key, reason)
        }
    })?;
    let mut config = map(file, path)?;
    vars.apply_common(&mut config)?;
    Ok(config)
}

/// ` at line L, column C` for a byte span of `text`; empty without one.
fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(mut start) = span.map(|s| s.start.min(text.len())) else {
        return String::new();
    };
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(" at line {line}, column {column}")
}

/// Every value in a (syntactically valid) TOML text that is a secret: the value of a key named
/// like one ([`redact::is_secret_property`]: `password`, `sentinel_password`, `sasl.password`, …) and
/// the password of any URL, at any depth.
fn secrets_in(text: &str) -> Vec<String> {
    fn walk(key: &str, value: &toml::Value, found: &mut Vec<String>) {
        match value {
            toml::Value::Table(table) => {
                for (k, v) in table {
                    walk(k, v, found);
                }
            }
            toml::Value::Array(items) => {
                for item in items {
                    walk(key, item, found);
                }
            }
            toml::Value::String(s) => {
                if redact::is_secret_property(key) {
                    found.push(s.clone());
                }
                found.extend(redact::url_passwords(s));
            }
            other if redact::is_secret_property(key) => found.push(other.to_string()),
            _ => {}
        }
    }
    let mut found = Vec::new();
    if let Ok(table) = text.parse::<toml::Table>() {
        walk("", &toml::Value::Table(table), &mut found);
    }
    found
}

fn map(mut file: NativeFile, path: &Path) -> Result<Config, ConfigError> {
    let group_instance_id = group_instance_id(&mut file, path)?;
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
    let tls = tls::redis_tls(&redis)?;
    let mut warnings = Vec::new();
    if tls.as_ref().is_some_and(|t| t.insecure_skip_verify) {
        warnings.push(
            "redis.tls_insecure_skip_verify = true: Redis server certificates are NOT verified \
             (anyone on the path can read and change the data); use it for tests only"
                .to_string(),
        );
    }

    let positive_cap = |n: i64| match n {
        n if n <= 0 => Err(format!("must be greater than 0, got {n}")),
        n => Ok(n as u64),
    };
    let default_cap = file
        .defaults
        .cap
        .map(positive_cap)
        .transpose()
        .map_err(|why| ConfigError::invalid("defaults.cap", why))?;
    let mut topics = Vec::with_capacity(file.topics.len());
    for (i, entry) in file.topics.into_iter().enumerate() {
        let table = topic_entry(i, entry)?;
        let cap = match table.cap {
            Some(n) => Some(
                positive_cap(n).map_err(|why| ConfigError::in_topic(&table.name, "cap", why))?,
            ),
            None => default_cap,
        };
        if table.low_water.is_some() && cap.is_none() {
            return Err(ConfigError::in_topic(
                &table.name,
                "low_water",
                "needs a cap",
            ));
        }
        let cap = cap.map(|max| Cap::new(max, table.low_water));
        let envelope = table.envelope.unwrap_or(file.defaults.envelope);
        if table.list.is_some() && jobs::has_queue(envelope) {
            return Err(jobs::list_refused(&table.name, envelope));
        }
        if table.job_options.is_some() && !jobs::has_queue(envelope) {
            return Err(jobs::job_options_refused(&table.name, envelope));
        }
        let queue_list = jobs::queue_list(
            envelope,
            table.queue.as_deref(),
            table.queue_prefix.as_deref(),
        );
        topics.push(TopicConfig {
            list_key: table.list.or(queue_list).unwrap_or_else(|| {
                jobs::default_list(envelope, &table.name)
                    .unwrap_or_else(|| format!("{}{}", file.defaults.prefix, table.name))
            }),
            structure: table.structure.unwrap_or(Structure::implied_by(envelope)),
            envelope,
            job: table.job,
            queue: table.queue,
            queue_prefix: table.queue_prefix,
            job_options: table.job_options.unwrap_or_default(),
            name: table.name,
            cap,
            delivery: table.delivery.unwrap_or(file.delivery),
        });
    }
    let http = match &file.http {
        Some(h) => Some(super::parse_http_address("http.address", &h.address)?),
        None => None,
    };

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
            commit_after_messages: file.kafka.commit_after_messages,
            group_instance_id,
        },
        redis: RedisConfig {
            topology,
            username: redis.username,
            password: redis.password,
            sentinel_username: redis.sentinel_username,
            sentinel_password: redis.sentinel_password,
            db: redis.db,
            connect_timeout: Duration::from_millis(redis.connect_timeout_ms),
            response_timeout: Duration::from_millis(redis.response_timeout_ms),
            tls,
            wait_replicas: redis.wait_replicas,
            wait_timeout: Duration::from_millis(redis.wait_timeout_ms),
        },
        topics,
        batch: BatchConfig {
            max_messages: file.batch.max_messages,
            max_bytes: file.batch.max_bytes,
            linger: Duration::from_millis(file.batch.linger_ms),
            in_flight: file.batch.in_flight,
        },
        retry: RetryConfig {
            backoff_min: Duration::from_millis(file.retry.backoff_min_ms),
            backoff_max: Duration::from_millis(file.retry.backoff_max_ms),
        },
        flow_check_interval: Duration::from_millis(file.flow.check_interval_ms),
        shutdown_timeout: Duration::from_millis(file.shutdown.timeout_ms),
        lag_hash: file.lag.hash,
        lag_interval: Duration::from_millis(file.lag.interval_ms),
        lease_ttl: Duration::from_millis(
            file.lease
                .as_ref()
                .map_or(defaults::LEASE_TTL_MS, |l| l.ttl_ms),
        ),
        lease_key: file.lease.map(|l| l.key),
        http,
        warnings,
    })
}

/// `kafka.group_instance_id`, or librdkafka's `group.instance.id` among the properties: one
/// setting under two names, so both given with different values is a mistake.
fn group_instance_id(file: &mut NativeFile, path: &Path) -> Result<GroupInstanceId, ConfigError> {
    let property = file
        .kafka
        .properties
        .remove("group.instance.id")
        .map(schema::PropertyValue::into_string);
    let setting = match (file.kafka.group_instance_id.take(), property) {
        (Some(native), Some(property)) if native.trim() != property.trim() => {
            return Err(ConfigError::invalid(
                "kafka.group_instance_id",
                format!(
                    "is {native:?} but kafka.properties.\"group.instance.id\" is {property:?}: they are \
                     one setting, give it once"
                ),
            ))
        }
        (Some(value), _) | (None, Some(value)) => Some(value),
        (None, None) => None,
    };
    Ok(match setting {
        Some(value) => GroupInstanceId::from_setting(&value),
        None => GroupInstanceId::derived(path),
    })
}

/// Reads entry `i` of `topics`: a bare name, or a table with overrides whose mistakes name the key
/// as every topic error does, `topics.<name>.<key>` (an untagged enum would only say that the entry
/// matched neither form). An entry without a name can only be named by its place, `topics[i]`.
fn topic_entry(i: usize, entry: toml::Value) -> Result<TopicTable, ConfigError> {
    let table = match entry {
        toml::Value::String(name) => {
            return Ok(TopicTable {
                name,
                list: None,
                structure: None,
                envelope: None,
                cap: None,
                delivery: None,
                low_water: None,
                job: None,
                queue: None,
                queue_prefix: None,
                job_options: Default::default(),
            })
        }
        toml::Value::Table(table) => table,
        other => {
            return Err(ConfigError::invalid(
                format!("topics[{i}]"),
                format!(
                    "must be a topic name or a table such as {{ name = \"orders\", cap = 1000 }}, \
                     not a TOML {}",
                    other.type_str()
                ),
            ))
        }
    };
    let name = table
        .get("name")
        .and_then(toml::Value::as_str)
        .map(String::from);
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let reason = one_line(e.into_inner().message());
        match (&name, path.as_str()) {
            (Some(name), ".") => ConfigError::invalid(format!("topics.{name}"), reason),
            (Some(name), key) => ConfigError::in_topic(name, key, reason),
            (None, ".") => ConfigError::invalid(format!("topics[{i}]"), reason),
            (None, key) => ConfigError::invalid(format!("topics[{i}].{key}"), reason),
        }
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
mod tests;
