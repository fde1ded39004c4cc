//! The bridge's config files: one builder for the native TOML config every test writes.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::kafka::Broker;
use super::redis_server::RedisServer;

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    path
}

/// A `redis` section the bridge can be pointed at: a standalone server, a Sentinel group, a
/// Cluster, or a test's own text (`[redis]` and its first lines).
pub trait RedisSection {
    /// `[redis]` and the lines that say where Redis is and how to log in.
    fn redis_section(&self) -> String;
}

impl RedisSection for str {
    fn redis_section(&self) -> String {
        self.to_string()
    }
}

impl RedisSection for String {
    fn redis_section(&self) -> String {
        self.clone()
    }
}

impl RedisSection for RedisServer {
    fn redis_section(&self) -> String {
        let scheme = if self.security.tls.is_some() {
            "rediss://"
        } else {
            ""
        };
        format!(
            "[redis]\naddresses = [\"{scheme}{}\"]\n{}",
            self.address(),
            self.security.bridge_toml()
        )
    }
}

/// The TOML list `["a", "b"]` of `names`.
pub fn toml_list<S: AsRef<str>>(names: &[S]) -> String {
    let quoted: Vec<String> = names
        .iter()
        .map(|n| format!("\"{}\"", n.as_ref()))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// A native config: the topics, the broker and group, the `[redis]` section, and what every test
/// shares (a commit every 500 ms, a 2 s Redis response timeout, batches of 200 after 5 ms, retry
/// waits of 50–500 ms), plus whatever a test adds. `Display` gives the TOML text.
#[derive(Clone, Debug)]
pub struct Config {
    delivery: Option<String>,
    topics: String,
    brokers: String,
    group: String,
    commit_interval_ms: u64,
    commit_after_messages: Option<u64>,
    max_messages: usize,
    in_flight: Option<usize>,
    response_timeout_ms: u64,
    redis: String,
    redis_settings: String,
    kafka_properties: String,
    sections: String,
    /// `kafka.group_instance_id`: `Some("")` (dynamic membership) unless a test asks for the
    /// bridge's default, static membership ([`Config::static_membership`]). Tansu 0.6.0, the
    /// tests' broker, sometimes gives a static member that rejoins after a `kill -9` a new member
    /// id while keeping its dead self as the group's leader, which it never expires while only
    /// static members talk to it: the group then never gets an assignment again
    /// (docs/reliability.md, "Crash and restart"). Tests that restart bridges for other reasons
    /// run with dynamic membership so that this broker bug does not decide them.
    group_instance_id: Option<String>,
}

/// Appends `lines` to `text`, ending with a newline.
fn push_lines(text: &mut String, lines: &str) {
    text.push_str(lines);
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
}

impl Config {
    /// `topics` is the TOML value of `topics = …`; `redis` gives the `[redis]` section.
    pub fn new(
        broker: &Broker,
        redis: &(impl RedisSection + ?Sized),
        group: &str,
        topics: &str,
    ) -> Config {
        Config {
            delivery: None,
            topics: topics.to_string(),
            brokers: broker.address.clone(),
            group: group.to_string(),
            commit_interval_ms: 500,
            commit_after_messages: None,
            max_messages: 200,
            in_flight: None,
            response_timeout_ms: 2000,
            redis: redis.redis_section(),
            redis_settings: String::new(),
            kafka_properties: String::new(),
            sections: String::new(),
            group_instance_id: Some(String::new()),
        }
    }

    pub fn group(mut self, group: &str) -> Config {
        self.group = group.to_string();
        self
    }

    /// `delivery = "…"` (`exactly-once`, `at-least-once`).
    pub fn delivery(mut self, delivery: &str) -> Config {
        self.delivery = Some(delivery.to_string());
        self
    }

    pub fn commit_interval_ms(mut self, ms: u64) -> Config {
        self.commit_interval_ms = ms;
        self
    }

    /// `kafka.commit_after_messages` (the bridge's default when not set).
    pub fn commit_after_messages(mut self, n: u64) -> Config {
        self.commit_after_messages = Some(n);
        self
    }

    /// No `kafka.group_instance_id`: the bridge's default, static group membership.
    pub fn static_membership(mut self) -> Config {
        self.group_instance_id = None;
        self
    }

    /// `batch.max_messages` (200 when not set).
    pub fn max_messages(mut self, n: usize) -> Config {
        self.max_messages = n;
        self
    }

    /// `batch.in_flight` (the bridge's default when not set).
    pub fn in_flight(mut self, n: usize) -> Config {
        self.in_flight = Some(n);
        self
    }

    /// `redis.response_timeout_ms` (2000 when not set).
    pub fn response_timeout_ms(mut self, ms: u64) -> Config {
        self.response_timeout_ms = ms;
        self
    }

    /// Lines added to the `[redis]` section (`wait_replicas = 1`, `connect_timeout_ms = 500`).
    pub fn redis_settings(mut self, lines: &str) -> Config {
        push_lines(&mut self.redis_settings, lines);
        self
    }

    /// Lines of the `[kafka.properties]` table (`"session.timeout.ms" = 6000`).
    pub fn kafka_properties(mut self, lines: &str) -> Config {
        push_lines(&mut self.kafka_properties, lines);
        self
    }

    /// Sections after the shared ones (`[lease]`, `[lag]`, `[flow]`, `[http]`, …).
    pub fn sections(mut self, toml: &str) -> Config {
        push_lines(&mut self.sections, toml);
        self
    }

    /// Writes the config to `dir/name` and returns the path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        write_file(dir, name, &self.to_string())
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(delivery) = &self.delivery {
            writeln!(f, "delivery = \"{delivery}\"")?;
        }
        write!(
            f,
            r#"topics = {}
[kafka]
brokers = ["{}"]
group = "{}"
commit_interval_ms = {}
{}{}{}response_timeout_ms = {}
{}[batch]
max_messages = {}
{}linger_ms = 5
[retry]
backoff_min_ms = 50
backoff_max_ms = 500
"#,
            self.topics,
            self.brokers,
            self.group,
            self.commit_interval_ms,
            self.commit_after_messages
                .map_or(String::new(), |n| format!("commit_after_messages = {n}\n")),
            // A test that sets the property itself means it (the same setting, given once); with
            // a lease the holder and its standbys keep the id they share, which a takeover needs.
            match &self.group_instance_id {
                Some(id)
                    if !self.kafka_properties.contains("group.instance.id")
                        && !self.sections.contains("[lease]") =>
                    format!("group_instance_id = {id:?}\n"),
                _ => String::new(),
            },
            self.redis,
            self.response_timeout_ms,
            self.redis_settings,
            self.max_messages,
            self.in_flight
                .map_or(String::new(), |n| format!("in_flight = {n}\n")),
        )?;
        if !self.kafka_properties.is_empty() {
            write!(f, "[kafka.properties]\n{}", self.kafka_properties)?;
        }
        write!(f, "{}", self.sections)
    }
}

/// The config for `topics` on `redis`. The first topic is capped (far above what the tests
/// produce) so that its pushes run the capped-push script (EVALSHA) rather than a plain RPUSH:
/// both paths go through every topology and the WAIT guard.
pub fn topology_config(
    broker: &Broker,
    redis: &(impl RedisSection + ?Sized),
    group: &str,
    topics: &[String],
) -> Config {
    let names: Vec<String> = topics
        .iter()
        .enumerate()
        .map(|(i, t)| match i {
            0 => format!("{{ name = \"{t}\", cap = 10000000 }}"),
            _ => format!("\"{t}\""),
        })
        .collect();
    Config::new(broker, redis, group, &format!("[{}]", names.join(", ")))
        .redis_settings("connect_timeout_ms = 1000")
}
