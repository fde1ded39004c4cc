//! `kafka2redis check`: is this config ready to run? Validates it, reaches Kafka and Redis, and says
//! plainly what is wrong. Prints a report on stdout; the caller exits 0 only when all is well.

use std::fmt::Write as _;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::Config;
use crate::redis::{ConnectError, RedisSink};

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// The outcome of `check`: the report to print and how many problems it found.
pub struct Report {
    pub text: String,
    pub problems: usize,
}

pub async fn run(config: &Config) -> Report {
    let mut text = String::new();
    let mut problems = 0;
    let _ = writeln!(
        text,
        "config: ok ({:?} format, {} topic(s), group {:?})",
        config.format,
        config.topics.len(),
        config.kafka.group
    );
    for note in &config.not_yet_active {
        let _ = writeln!(text, "  note: {note} is read but not yet active");
    }
    for note in &config.warnings {
        let _ = writeln!(text, "  note: {note}");
    }

    // Kafka: metadata for every topic, from a client that joins no group.
    let kafka_config = crate::kafka::client_config(config);
    let brokers = config.kafka.brokers.join(",");
    let metadata = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = kafka_config.create()?;
        consumer.fetch_metadata(None, KAFKA_TIMEOUT)
    })
    .await
    .expect("metadata task panicked");
    match metadata {
        Err(e) => {
            problems += 1;
            let _ = writeln!(text, "kafka: FAILED to reach brokers {brokers}: {e}");
        }
        Ok(metadata) => {
            let _ = writeln!(
                text,
                "kafka: ok ({} broker(s) at {brokers})",
                metadata.brokers().len()
            );
            for topic in &config.topics {
                match metadata.topics().iter().find(|t| t.name() == topic.name) {
                    Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                        let _ = writeln!(
                            text,
                            "  topic {:?}: {} partition(s) -> list {:?} (envelope {:?}, dead letters {:?})",
                            topic.name,
                            t.partitions().len(),
                            topic.list_key,
                            topic.envelope,
                            topic.dead_letter_key()
                        );
                    }
                    Some(t) => {
                        problems += 1;
                        let _ =
                            writeln!(text, "  topic {:?}: PROBLEM: {:?}", topic.name, t.error());
                    }
                    None => {
                        problems += 1;
                        let _ = writeln!(
                            text,
                            "  topic {:?}: MISSING: the broker does not know this topic",
                            topic.name
                        );
                    }
                }
            }
        }
    }

    // Redis: connect (with the credentials) and PING.
    let redis = match RedisSink::connect(&config.redis).await {
        Ok(sink) => sink.ping().await.map_err(|e| e.to_string()),
        Err(ConnectError::Fatal(why)) => Err(why),
        Err(ConnectError::Retryable(e)) => Err(format!("unreachable: {e}")),
    };
    match redis {
        Ok(()) => {
            let _ = writeln!(text, "redis: ok ({:?})", config.redis.topology);
        }
        Err(why) => {
            problems += 1;
            let _ = writeln!(text, "redis: FAILED ({:?}): {why}", config.redis.topology);
        }
    }
    let _ = writeln!(
        text,
        "{}",
        if problems == 0 {
            "all good".to_string()
        } else {
            format!("{problems} problem(s)")
        }
    );
    Report { text, problems }
}
