//! kafka2redis' own TOML config: the same settings as the old file, structured and strict.
//!
//! Unknown keys and wrong types are errors naming the key (`deny_unknown_fields`), because a typo in
//! a new file should stop the start, not silently fall back to a default. See `docs/config.example.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::env::Vars;
use super::jobs;
use super::{
    defaults, BatchConfig, Cap, Config, ConfigError, ConfigFormat, Delivery, Envelope, KafkaConfig,
    RedisConfig, RedisTopology, RetryConfig, TlsConfig, TopicConfig,
};
use crate::redact::{self, Secret};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeFile {
    /// Default delivery mode for every topic.
    #[serde(default)]
    delivery: Delivery,
    kafka: KafkaSection,
    redis: RedisSection,
    #[serde(default)]
    defaults: TopicDefaults,
    /// Each a bare name or a table with overrides, read by [`topic_entry`].
    topics: Vec<toml::Value>,
    #[serde(default)]
    batch: BatchSection,
    #[serde(default)]
    retry: RetrySection,
    #[serde(default)]
    shutdown: ShutdownSection,
    #[serde(default)]
    flow: FlowSection,
    lag: Option<LagSection>,
    lease: Option<LeaseSection>,
    http: Option<HttpSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaSection {
    brokers: Vec<String>,
    group: String,
    #[serde(default = "commit_interval_ms")]
    commit_interval_ms: u64,
    #[serde(default = "commit_after_messages")]
    commit_after_messages: u64,
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
    password: Option<Secret>,
    /// The sentinels' own credentials (Sentinel mode only).
    sentinel_username: Option<String>,
    sentinel_password: Option<Secret>,
    #[serde(default)]
    db: i64,
    #[serde(default = "connect_timeout_ms")]
    connect_timeout_ms: u64,
    #[serde(default = "response_timeout_ms")]
    response_timeout_ms: u64,
    /// TLS on every connection; implied by `rediss://` addresses and by any `tls_*` key.
    #[serde(default)]
    tls: bool,
    tls_ca_file: Option<PathBuf>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    #[serde(default)]
    tls_insecure_skip_verify: bool,
    wait_replicas: Option<u32>,
    #[serde(default = "wait_timeout_ms")]
    wait_timeout_ms: u64,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicTable {
    name: String,
    list: Option<String>,
    envelope: Option<Envelope>,
    cap: Option<i64>,
    delivery: Option<Delivery>,
    /// Resume paused partitions once the list is down to this length (default: half the cap).
    low_water: Option<u64>,
    /// The handler of a job envelope (laravel, celery, sidekiq).
    job: Option<String>,
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
    #[serde(default = "lag_interval_ms")]
    interval_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowSection {
    #[serde(default = "flow_check_interval_ms")]
    check_interval_ms: u64,
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
struct LeaseSection {
    #[serde(default = "lease_key")]
    key: String,
    #[serde(default = "lease_ttl_ms")]
    ttl_ms: u64,
}

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
    let mut config = map(file)?;
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

fn map(file: NativeFile) -> Result<Config, ConfigError> {
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
    if redis.mode != Mode::Sentinel {
        for (key, set) in [
            ("redis.sentinel_username", redis.sentinel_username.is_some()),
            ("redis.sentinel_password", redis.sentinel_password.is_some()),
        ] {
            if set {
                return Err(ConfigError::invalid(
                    key,
                    "only applies when redis.mode = \"sentinel\"",
                ));
            }
        }
    }
    let tls = redis_tls(&redis)?;
    let mut warnings = Vec::new();
    if tls.as_ref().is_some_and(|t| t.insecure_skip_verify) {
        warnings.push(
            "redis.tls_insecure_skip_verify = true: Redis server certificates are NOT verified \
             (anyone on the path can read and change the data); use it for tests only"
                .to_string(),
        );
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
        let table = topic_entry(i, entry)?;
        let cap = match table.cap {
            Some(_) => positive_cap(format!("topics[{i}].cap"), table.cap)?,
            None => default_cap,
        };
        if table.low_water.is_some() && cap.is_none() {
            return Err(ConfigError::invalid(
                format!("topics[{i}].low_water"),
                "needs a cap",
            ));
        }
        let cap = cap.map(|max| Cap::new(max, table.low_water));
        let envelope = table.envelope.unwrap_or(file.defaults.envelope);
        topics.push(TopicConfig {
            list_key: table.list.unwrap_or_else(|| {
                jobs::default_list(envelope, &table.name)
                    .unwrap_or_else(|| format!("{}{}", file.defaults.prefix, table.name))
            }),
            envelope,
            job: table.job,
            name: table.name,
            cap,
            delivery: table.delivery.unwrap_or(file.delivery),
        });
    }
    let (lag_hash, lag_interval_ms) = match file.lag {
        Some(lag) => (lag.hash, lag.interval_ms),
        None => (defaults::LAG_HASH.to_string(), defaults::LAG_INTERVAL_MS),
    };
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
        },
        retry: RetryConfig {
            backoff_min: Duration::from_millis(file.retry.backoff_min_ms),
            backoff_max: Duration::from_millis(file.retry.backoff_max_ms),
        },
        flow_check_interval: Duration::from_millis(file.flow.check_interval_ms),
        shutdown_timeout: Duration::from_millis(file.shutdown.timeout_ms),
        lag_hash,
        lag_interval: Duration::from_millis(lag_interval_ms),
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

/// Reads `topics[i]`: a bare name, or a table with overrides whose mistakes name the topic and the
/// key (an untagged enum would only say that the entry matched neither form).
fn topic_entry(i: usize, entry: toml::Value) -> Result<TopicTable, ConfigError> {
    let table = match entry {
        toml::Value::String(name) => {
            return Ok(TopicTable {
                name,
                list: None,
                envelope: None,
                cap: None,
                delivery: None,
                low_water: None,
                job: None,
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
    let of_topic = match table.get("name").and_then(toml::Value::as_str) {
        Some(name) => format!("of topic {name:?}: "),
        None => String::new(),
    };
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let key = match e.path().to_string() {
            path if path == "." => format!("topics[{i}]"),
            path => format!("topics[{i}].{path}"),
        };
        ConfigError::invalid(
            key,
            format!("{of_topic}{}", one_line(e.into_inner().message())),
        )
    })
}

/// The `[redis]` TLS keys, checked: a key pair is complete, every file is readable PEM of the
/// right kind. `None` when no TLS key is set (`rediss://` addresses alone still turn TLS on, with
/// the system's CAs).
fn redis_tls(redis: &RedisSection) -> Result<Option<TlsConfig>, ConfigError> {
    let any = redis.tls
        || redis.tls_ca_file.is_some()
        || redis.tls_cert_file.is_some()
        || redis.tls_key_file.is_some()
        || redis.tls_insecure_skip_verify;
    if !any {
        return Ok(None);
    }
    match (&redis.tls_cert_file, &redis.tls_key_file) {
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                "redis.tls_key_file",
                "is required when redis.tls_cert_file is set",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                "redis.tls_cert_file",
                "is required when redis.tls_key_file is set",
            ))
        }
        _ => {}
    }
    if redis.tls_insecure_skip_verify && redis.tls_cert_file.is_some() {
        // native-tls drops the client identity when verification is off.
        return Err(ConfigError::invalid(
            "redis.tls_insecure_skip_verify",
            "cannot be combined with redis.tls_cert_file: without verification the TLS library \
             presents no client certificate",
        ));
    }
    if let Some(path) = &redis.tls_ca_file {
        check_pem("redis.tls_ca_file", path, PemKind::Certificate)?;
    }
    if let Some(path) = &redis.tls_cert_file {
        check_pem("redis.tls_cert_file", path, PemKind::Certificate)?;
    }
    if let Some(path) = &redis.tls_key_file {
        check_pem("redis.tls_key_file", path, PemKind::Pkcs8Key)?;
    }
    Ok(Some(TlsConfig {
        ca_file: redis.tls_ca_file.clone(),
        cert_file: redis.tls_cert_file.clone(),
        key_file: redis.tls_key_file.clone(),
        insecure_skip_verify: redis.tls_insecure_skip_verify,
    }))
}

enum PemKind {
    Certificate,
    Pkcs8Key,
}

/// Reads a PEM file named by `key` and checks it holds what the TLS library will want, so that a
/// wrong path or a wrong file is a config error now rather than a refused connection later.
fn check_pem(key: &str, path: &Path, kind: PemKind) -> Result<(), ConfigError> {
    let text = std::fs::read(path).map_err(|e| {
        ConfigError::invalid(
            key,
            format!("names {}, which cannot be read: {e}", path.display()),
        )
    })?;
    let text = String::from_utf8_lossy(&text);
    match kind {
        PemKind::Certificate if !text.contains("-----BEGIN CERTIFICATE-----") => {
            Err(ConfigError::invalid(
                key,
                format!("names {}, which holds no PEM certificate", path.display()),
            ))
        }
        // The TLS library (OpenSSL through native-tls) takes PKCS#8 keys only.
        PemKind::Pkcs8Key if !text.contains("-----BEGIN PRIVATE KEY-----") => {
            Err(ConfigError::invalid(
                key,
                format!(
                    "names {}, which holds no PKCS#8 PEM key (\"BEGIN PRIVATE KEY\"); convert an RSA/EC \
                     key with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`",
                    path.display()
                ),
            ))
        }
        _ => Ok(()),
    }
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
        assert_eq!(
            c.topics[1].cap,
            Some(Cap {
                max: 10,
                low_water: 5
            })
        );
        assert_eq!(c.kafka.properties["fetch.wait.max.ms"], "50");
        assert_eq!(c.kafka.properties["enable.partition.eof"], "false");
        assert_eq!(c.lease_key, None);
    }

    #[test]
    fn lag_lease_and_http_sections() {
        let c = load(
            &format!(
                "{MINIMAL}[lag]\nhash = \"lag\"\ninterval_ms = 250\n[lease]\nttl_ms = 3000\n\
                 [http]\naddress = \"127.0.0.1:9100\"\n"
            ),
            &[],
        )
        .unwrap();
        assert_eq!(c.lag_hash, "lag");
        assert_eq!(c.lag_interval, Duration::from_millis(250));
        assert_eq!(c.lease_key.as_deref(), Some("kafka_consumers_run"));
        assert_eq!(c.lease_ttl, Duration::from_millis(3000));
        assert_eq!(c.http, Some("127.0.0.1:9100".parse().unwrap()));
        let err = |extra: &str| {
            load(&format!("{MINIMAL}{extra}"), &[])
                .unwrap_err()
                .to_string()
        };
        assert!(err("[http]\naddress = \"nowhere\"").contains("`http.address`"));
        assert!(err("[lease]\nttl_ms = 10").contains("`lease.ttl_ms`"));
        assert!(err("[lag]\ninterval_ms = 0").contains("`lag.interval_ms`"));
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
        assert_eq!(c.redis.password, Some("pw".into()));
        // Sentinel variables with a standalone Redis: an error naming the variable.
        let err = load(MINIMAL, &[("K2R_REDIS_SENTINEL_PASSWORD", "spw")]).unwrap_err();
        assert!(
            err.to_string().contains("K2R_REDIS_SENTINEL_PASSWORD"),
            "{err}"
        );
    }

    #[test]
    fn environment_overrides_sentinel_settings() {
        let toml = MINIMAL.replace(
            "[redis]",
            "[redis]\nmode = \"sentinel\"\nmaster_name = \"from-file\"",
        );
        let c = load(
            &toml,
            &[
                ("K2R_REDIS_SENTINEL_MASTER", "from-env"),
                ("K2R_REDIS_SENTINEL_USERNAME", "watcher"),
                ("K2R_REDIS_SENTINEL_PASSWORD", "spw"),
            ],
        )
        .unwrap();
        match &c.redis.topology {
            RedisTopology::Sentinel { master_name, .. } => assert_eq!(master_name, "from-env"),
            other => panic!("not sentinel: {other:?}"),
        }
        assert_eq!(c.redis.sentinel_username.as_deref(), Some("watcher"));
        assert_eq!(c.redis.sentinel_password, Some("spw".into()));
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

    #[test]
    fn topics_may_share_a_list_with_one_cap() {
        let c = load(
            &MINIMAL.replace(
                "topics = [\"a\", { name = \"b\", list = \"jobs:b\", envelope = \"json\", cap = 10 }]",
                "delivery = \"exactly-once\"\ntopics = [{ name = \"a\", list = \"jobs\", cap = 10 }, \
                 { name = \"b\", list = \"jobs\", cap = 10 }]",
            ),
            &[],
        )
        .unwrap();
        assert_eq!(c.topics[0].list_key, c.topics[1].list_key);
        assert_eq!(c.topics[0].cap, c.topics[1].cap);
    }

    #[test]
    fn formatted_config_hides_secrets() {
        let toml = MINIMAL
            .replace("127.0.0.1:6379", "redis://:urlpw@127.0.0.1:6379")
            .replace(
                "\"enable.partition.eof\" = false",
                "\"enable.partition.eof\" = false, \"sasl.password\" = \"kafkapw\", \
                 \"ssl.key.password\" = \"keypw\"",
            );
        let c = load(&toml, &[("K2R_REDIS_PASSWORD", "settingpw")]).unwrap();
        let shown = format!("{c:?} {c:#?} {} {:?}", c.redis.topology, c.redis.topology);
        for secret in ["urlpw", "kafkapw", "keypw", "settingpw"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("redis://:***@127.0.0.1:6379"), "{shown}");
        assert!(shown.contains("\"sasl.password\": \"***\""), "{shown}");
        assert!(shown.contains("\"fetch.wait.max.ms\": \"50\""), "{shown}");
        assert_eq!(c.redis.password, Some("settingpw".into()));
        let mut secrets = c.secrets();
        secrets.sort();
        assert_eq!(secrets, ["kafkapw", "keypw", "settingpw", "urlpw"]);
    }

    #[test]
    fn errors_hide_secrets() {
        let err = |toml: &str| load(toml, &[]).unwrap_err().to_string();
        let cases = [
            MINIMAL.replace("[redis]", "[redis]\npassword = 86420731"),
            MINIMAL.replace("[redis]", "[redis]\npassword = \"86420731"),
            MINIMAL.replace(
                "[\"127.0.0.1:6379\"]",
                "\"redis://:86420731@127.0.0.1:6379\"",
            ),
            MINIMAL.replace("127.0.0.1:6379", "redis://:86420731@127.0.0.1:notaport"),
            MINIMAL.replace(
                "\"enable.partition.eof\" = false",
                "\"sasl.password\" = [\"86420731\"]",
            ),
        ];
        for toml in cases {
            let e = err(&toml);
            assert!(!e.contains("86420731"), "{e}");
            assert!(
                e.contains("redis") || e.contains("sasl") || e.contains("TOML"),
                "{e}"
            );
        }
        // A syntax error is located by line, not quoted: the line may be a password.
        let e = err("topics = [\"t\"]\n[redis]\npassword = \"86420731\n");
        assert!(
            e.contains("invalid TOML at line 3") && !e.contains("86420731"),
            "{e}"
        );
    }

    /// A PEM file in a temporary directory, for the TLS keys.
    fn pem_file(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        path
    }

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

    #[test]
    fn sentinel_with_auth_tls_and_wait() {
        let dir = tempfile::tempdir().unwrap();
        let ca = pem_file(dir.path(), "ca.pem", CERT);
        let cert = pem_file(dir.path(), "client.pem", CERT);
        let key = pem_file(dir.path(), "client.key", KEY);
        let redis = format!(
            r#"[redis]
mode = "sentinel"
master_name = "mymaster"
addresses = ["s1:26379", "s2:26379", "s3:26379"]
username = "bridge"
password = "pw"
sentinel_username = "watcher"
sentinel_password = "spw"
tls_ca_file = "{}"
tls_cert_file = "{}"
tls_key_file = "{}"
wait_replicas = 1
wait_timeout_ms = 250
"#,
            ca.display(),
            cert.display(),
            key.display()
        );
        let c = load(
            &MINIMAL.replace("[redis]\naddresses = [\"127.0.0.1:6379\"]\n", &redis),
            &[],
        )
        .unwrap();
        assert_eq!(
            c.redis.topology,
            RedisTopology::Sentinel {
                master_name: "mymaster".into(),
                addresses: vec!["s1:26379".into(), "s2:26379".into(), "s3:26379".into()],
            }
        );
        assert_eq!(c.redis.username.as_deref(), Some("bridge"));
        assert_eq!(c.redis.password, Some("pw".into()));
        assert_eq!(c.redis.sentinel_username.as_deref(), Some("watcher"));
        assert_eq!(c.redis.sentinel_password, Some("spw".into()));
        assert_eq!(
            c.redis.tls,
            Some(TlsConfig {
                ca_file: Some(ca),
                cert_file: Some(cert),
                key_file: Some(key),
                insecure_skip_verify: false,
            })
        );
        assert!(c.redis.tls_enabled());
        assert_eq!(c.redis.wait_replicas, Some(1));
        assert_eq!(c.redis.wait_timeout, Duration::from_millis(250));
    }

    #[test]
    fn tls_defaults_and_insecure_warning() {
        let c = load(MINIMAL, &[]).unwrap();
        assert_eq!(c.redis.tls, None);
        assert!(!c.redis.tls_enabled());
        assert_eq!(c.redis.wait_replicas, None);
        assert_eq!(c.redis.sentinel_password, None);

        let c = load(
            &MINIMAL.replace("127.0.0.1:6379", "rediss://127.0.0.1:6379"),
            &[],
        )
        .unwrap();
        assert_eq!(c.redis.tls, None, "rediss:// alone uses the system's CAs");
        assert!(c.redis.tls_enabled());

        let c = load(
            &MINIMAL.replace("[redis]", "[redis]\ntls_insecure_skip_verify = true"),
            &[],
        )
        .unwrap();
        assert!(c.redis.tls.as_ref().unwrap().insecure_skip_verify);
        assert!(c.redis.tls_enabled());
        assert!(c.warnings.iter().any(|w| w.contains("NOT verified")));

        let c = load(
            &MINIMAL.replace(
                "[redis]\naddresses = [\"127.0.0.1:6379\"]",
                "[redis]\nmode = \"cluster\"\naddresses = [\"a:7000\", \"b:7001\"]",
            ),
            &[],
        )
        .unwrap();
        assert_eq!(
            c.redis.topology,
            RedisTopology::Cluster {
                addresses: vec!["a:7000".into(), "b:7001".into()]
            }
        );
    }

    #[test]
    fn redis_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let err = |extra: &str| {
            load(
                &MINIMAL.replace("[redis]", &format!("[redis]\n{extra}")),
                &[],
            )
            .unwrap_err()
            .to_string()
        };
        let missing = dir.path().join("nope.pem");
        assert!(err(&format!("tls_ca_file = \"{}\"", missing.display()))
            .contains("`redis.tls_ca_file` names"));
        assert!(err(&format!("tls_ca_file = \"{}\"", missing.display())).contains("cannot be read"));
        let not_pem = pem_file(dir.path(), "x.txt", "hello");
        assert!(err(&format!("tls_ca_file = \"{}\"", not_pem.display()))
            .contains("holds no PEM certificate"));
        let cert = pem_file(dir.path(), "c.pem", CERT);
        assert!(err(&format!("tls_cert_file = \"{}\"", cert.display()))
            .contains("`redis.tls_key_file` is required"));
        let rsa = pem_file(
            dir.path(),
            "rsa.key",
            "-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE KEY-----\n",
        );
        assert!(err(&format!(
            "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
            cert.display(),
            rsa.display()
        ))
        .contains("openssl pkcs8"));
        assert!(err(&format!(
            "tls_insecure_skip_verify = true\ntls_cert_file = \"{0}\"\ntls_key_file = \"{0}\"",
            cert.display()
        ))
        .contains("`redis.tls_insecure_skip_verify` cannot be combined"));
        assert!(err("sentinel_password = \"x\"").contains("`redis.sentinel_password` only applies"));
        assert!(err("wait_replicas = 1\nwait_timeout_ms = 0").contains("`redis.wait_timeout_ms`"));
        assert!(
            err("wait_replicas = 1\nwait_timeout_ms = 20000").contains("`redis.wait_timeout_ms`")
        );
        assert!(err("wait_replicas = -1").contains("redis.wait_replicas"));
        assert!(err("mode = \"cluster\"\ndb = 2").contains("`redis.db` must be 0 in cluster mode"));
        assert!(err("tls_ca = \"x\"").contains("tls_ca"));
        assert!(load(
            &MINIMAL
                .replace("[\"127.0.0.1:6379\"]", "[\"rediss://a:1\", \"b:2\"]")
                .replace("[redis]", "[redis]\nmode = \"cluster\""),
            &[]
        )
        .unwrap_err()
        .to_string()
        .contains("mixes rediss://"));
    }
}
