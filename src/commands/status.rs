//! `kafka2redis status`: where every partition stands, read from Kafka and Redis directly.
//!
//! It needs no running daemon (it reads the group's committed offsets, the watermarks, the list
//! lengths and the lease key), so it answers the same question whether the bridge runs or not:
//! how far behind is the group, and are the lists full? Lag here is `high watermark − committed`,
//! which is what Kafka itself reports for the group; a running daemon's own figures (`/status`)
//! are fresher by up to one commit interval.

use std::fmt::Write;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::observe::backlog::{self, DestinationKind, DestinationReport};
use crate::observe::state::{now_ms, Registry};
use crate::redis::{stream_groups, RedisSink};

use super::{Report, KAFKA_TIMEOUT};

/// One table row.
#[derive(Debug, Clone)]
pub struct Row {
    pub topic: String,
    pub partition: i32,
    pub committed: Option<i64>,
    pub high_watermark: Option<i64>,
    pub lag: Option<i64>,
    pub list: String,
    pub length: Option<u64>,
    pub cap: Option<u64>,
}

impl Row {
    /// `PAUSED` when the list is at its cap (the daemon pauses such partitions), `OK` when caught
    /// up, `BEHIND` otherwise; `?` when Kafka could not be read.
    pub fn state(&self) -> &'static str {
        match (self.length, self.cap, self.lag) {
            (Some(len), Some(cap), _) if len >= cap => "PAUSED",
            (_, _, Some(0)) => "OK",
            (_, _, Some(_)) => "BEHIND",
            _ => "?",
        }
    }
}

pub async fn run(config: &Config) -> Report {
    let mut problems = 0;
    let mut header = String::new();
    let kafka_config = crate::kafka::client_config(config);
    let topics: Vec<String> = config.topics.iter().map(|t| t.name.clone()).collect();
    let kafka = tokio::task::spawn_blocking(move || read_kafka(kafka_config, &topics))
        .await
        .expect("status task panicked");
    let mut rows = match kafka {
        Ok(rows) => rows,
        Err(e) => {
            problems += 1;
            let why = crate::redact::scrub(&e.to_string(), &config.secrets());
            let _ = writeln!(header, "kafka: FAILED: {why}");
            Vec::new()
        }
    };

    let mut destinations = Vec::new();
    match RedisSink::connect(&config.redis).await {
        Err(e) => {
            problems += 1;
            let _ = writeln!(header, "redis: FAILED: {e}");
        }
        Ok(sink) => {
            let mut conn = sink.connection();
            for row in &mut rows {
                let topic = config.topic(&row.topic).expect("configured topic");
                row.list = topic.list_key.clone();
                row.cap = topic.cap.map(|c| c.max);
                row.length = stream_groups::waiting(&mut conn, &row.list, topic.structure)
                    .await
                    .ok();
            }
            destinations = measure_destinations(config, &rows, &sink.connection()).await;
            if let Some(key) = &config.lease_key {
                let holder: Option<String> = ::redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or(None);
                let ttl: i64 = ::redis::cmd("PTTL")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or(-2);
                let _ = match holder {
                    Some(h) => writeln!(
                        header,
                        "lease {key:?}: held by {h} (expires in {:.1} s)",
                        ttl.max(0) as f64 / 1e3
                    ),
                    None => writeln!(header, "lease {key:?}: free (no instance pushing)"),
                };
            }
        }
    }
    let mut text = format!("group {:?}\n{header}", config.kafka.group);
    if !destinations.is_empty() {
        text.push_str(&destinations_table(&destinations));
        text.push('\n');
    }
    text.push_str(&table(&rows));
    Report { text, problems }
}

/// Each destination's backlog: as the running bridge reports it, when it answers (its lag is the
/// lanes' own position, fresher than the group's commits); otherwise Kafka lag from the rows
/// (committed offsets) and what waits in Redis, a list's age unknown.
async fn measure_destinations(
    config: &Config,
    rows: &[Row],
    redis: &crate::redis::RedisConnection,
) -> Vec<DestinationReport> {
    if let Some(reports) = running_bridge_reports(config).await {
        return reports;
    }
    let mut reports = Vec::new();
    for destination in backlog::destinations(config) {
        let lag = rows
            .iter()
            .filter(|r| destination.topics.contains(&r.topic))
            .filter_map(|r| r.lag)
            .sum::<i64>()
            .max(0) as u64;
        let Ok(waiting) =
            backlog::waiting(&destination, &Registry::default(), false, redis, now_ms()).await
        else {
            continue;
        };
        reports.push(DestinationReport::new(&destination, lag, waiting));
    }
    reports
}

/// What a running bridge reports at `GET /scaling` on the config's `http` address; `None` when no
/// bridge answers within a second or so, or it has not measured yet.
async fn running_bridge_reports(config: &Config) -> Option<Vec<DestinationReport>> {
    use std::io::{Read, Write};
    let mut address = config.http?;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let ask = move || {
        let limit = std::time::Duration::from_secs(1);
        let mut stream = std::net::TcpStream::connect_timeout(&address, limit).ok()?;
        stream.set_read_timeout(Some(limit)).ok()?;
        stream.set_write_timeout(Some(limit)).ok()?;
        stream
            .write_all(b"GET /scaling HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).ok()?;
        let reply = String::from_utf8(reply).ok()?;
        let (_, body) = reply.split_once("\r\n\r\n")?;
        let mut scaling: serde_json::Value = serde_json::from_str(body).ok()?;
        if scaling["at_ms"].as_i64().unwrap_or(0) == 0 {
            return None;
        }
        serde_json::from_value(scaling["destination_list"].take()).ok()
    };
    tokio::task::spawn_blocking(ask).await.ok().flatten()
}

/// The destinations as an aligned table.
pub fn destinations_table(reports: &[DestinationReport]) -> String {
    let mut cells = vec![[
        "DESTINATION".to_string(),
        "KIND".into(),
        "TOPICS".into(),
        "IN KAFKA".into(),
        "IN REDIS".into(),
        "BACKLOG".into(),
        "OLDEST WAITING".into(),
    ]];
    for d in reports {
        let kind = match d.kind {
            DestinationKind::List => "list",
            DestinationKind::Stream => "stream",
        };
        let oldest = match d.oldest_waiting_seconds {
            Some(s) if d.oldest_waiting_at_least => format!(">={s:.1}s"),
            Some(s) => format!("{s:.1}s"),
            None => "-".into(),
        };
        cells.push([
            d.destination.clone(),
            kind.into(),
            d.topics.join(","),
            d.lag_messages.to_string(),
            d.waiting_messages.to_string(),
            d.backlog_messages.to_string(),
            oldest,
        ]);
    }
    align(&cells)
}

fn align<const N: usize>(cells: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for row in cells {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn read_kafka(
    kafka_config: rdkafka::config::ClientConfig,
    topics: &[String],
) -> Result<Vec<Row>, rdkafka::error::KafkaError> {
    // A client that joins no group: reading committed offsets needs only the group id.
    let consumer: BaseConsumer = kafka_config.create()?;
    let metadata = consumer.fetch_metadata(None, KAFKA_TIMEOUT)?;
    let mut tpl = TopicPartitionList::new();
    let mut rows = Vec::new();
    for name in topics {
        let Some(topic) = metadata.topics().iter().find(|t| t.name() == name) else {
            continue;
        };
        let mut partitions: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        partitions.sort_unstable();
        for partition in partitions {
            tpl.add_partition(name, partition);
            let high = consumer
                .fetch_watermarks(name, partition, KAFKA_TIMEOUT)
                .ok();
            rows.push(Row {
                topic: name.clone(),
                partition,
                committed: None,
                high_watermark: high.map(|w| w.1),
                // Nothing committed yet: the group starts at the low watermark (earliest).
                lag: high.map(|(low, high)| high - low),
                list: String::new(),
                length: None,
                cap: None,
            });
        }
    }
    let committed = consumer.committed_offsets(tpl, KAFKA_TIMEOUT)?;
    for row in &mut rows {
        if let Some(Offset::Offset(o)) = committed
            .find_partition(&row.topic, row.partition)
            .map(|e| e.offset())
        {
            row.committed = Some(o);
            row.lag = row.high_watermark.map(|h| (h - o).max(0));
        }
    }
    Ok(rows)
}

/// The rows as an aligned table.
pub fn table(rows: &[Row]) -> String {
    let opt = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    let mut cells = vec![[
        "TOPIC".to_string(),
        "PARTITION".into(),
        "COMMITTED".into(),
        "HIGH WATERMARK".into(),
        "LAG".into(),
        "LIST".into(),
        "LENGTH/CAP".into(),
        "STATE".into(),
    ]];
    for r in rows {
        cells.push([
            r.topic.clone(),
            r.partition.to_string(),
            opt(r.committed),
            opt(r.high_watermark),
            opt(r.lag),
            r.list.clone(),
            format!(
                "{}/{}",
                r.length.map_or("?".into(), |n| n.to_string()),
                r.cap.map_or("-".into(), |n| n.to_string())
            ),
            r.state().to_string(),
        ]);
    }
    align(&cells)
}
