//! One backlog signal per destination, for autoscalers: what waits for the workers of a list or a
//! stream, wherever it waits.
//!
//! - `backlog_messages` = the Kafka lag of every topic feeding the destination (all instances'
//!   partitions, as the lag hash sums them) + what waits in Redis: a list's length, or a stream's
//!   unfinished entries ([`crate::redis::stream_groups`]). With a cap the list stops at the cap while the
//!   rest waits in Kafka; the sum sees both. Every instance reports the same figure.
//! - `oldest_waiting_seconds` = how long the oldest message in Redis has waited for a worker: for
//!   a list from this instance's record of its pushes ([`super::pushlog`]), for a stream from the
//!   oldest unfinished entry's id. Messages still in Kafka have their own age,
//!   `kafka2redis_lag_seconds`. A standby (lease not held) pushes nothing, so it does not know a
//!   list's age and reports none.
//!
//! Measured once per lag round ([`super::lag`]), published with its snapshot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{Config, Structure, TopicConfig};
use crate::observe::pushlog::Oldest;
use crate::observe::state::Registry;
use crate::redis::{stream_groups, RedisConnection};

/// The Redis structure a destination is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    List,
    Stream,
}

/// Where a topic's messages wait for workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub key: String,
    pub kind: DestinationKind,
    /// The topics that feed it.
    pub topics: Vec<String>,
    pub cap: Option<u64>,
}

/// The Redis structure a topic writes.
fn kind_of(topic: &TopicConfig) -> DestinationKind {
    match topic.structure {
        Structure::List => DestinationKind::List,
        Structure::Stream => DestinationKind::Stream,
    }
}

/// Every configured destination, by key.
pub fn destinations(config: &Config) -> Vec<Destination> {
    let mut by_key: BTreeMap<&str, Destination> = BTreeMap::new();
    for t in &config.topics {
        by_key
            .entry(t.list_key.as_str())
            .or_insert_with(|| Destination {
                key: t.list_key.clone(),
                kind: kind_of(t),
                topics: Vec::new(),
                cap: t.cap.map(|c| c.max),
            })
            .topics
            .push(t.name.clone());
    }
    by_key.into_values().collect()
}

/// What waits in Redis at one destination.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Waiting {
    /// List length, or the stream's unfinished entries.
    pub messages: u64,
    /// Age of the oldest waiting message in seconds, and whether that is only a lower bound;
    /// `None` when unknown.
    pub oldest: Option<(f64, bool)>,
}

/// Asks Redis what waits at `destination`. `knows_pushes`: this instance is the one pushing
/// (not a standby), so its push record can date a list's elements.
pub async fn waiting(
    destination: &Destination,
    registry: &Registry,
    knows_pushes: bool,
    redis: &RedisConnection,
    now_ms: i64,
) -> Result<Waiting, ::redis::RedisError> {
    let mut conn = redis.clone();
    let age = |at_ms: i64| (now_ms - at_ms).max(0) as f64 / 1e3;
    match destination.kind {
        DestinationKind::List => {
            let length: u64 = ::redis::cmd("LLEN")
                .arg(&destination.key)
                .query_async(&mut conn)
                .await?;
            // Read after LLEN: a push that landed before it counts as pushed (at worst a push
            // counted that had not landed yet makes the oldest look a batch younger).
            let oldest = match registry.push_log(&destination.key) {
                _ if length == 0 => Some((0.0, false)),
                Some(log) if knows_pushes => Some(match log.oldest(length) {
                    Oldest::Empty => (0.0, false),
                    Oldest::At(t) => (age(t), false),
                    Oldest::Before(t) => (age(t), true),
                }),
                _ => None,
            };
            Ok(Waiting {
                messages: length,
                oldest,
            })
        }
        DestinationKind::Stream => {
            // The count by the rule the cap holds to; the oldest entry from the groups' positions.
            let w = stream_groups::waiting_with_oldest(&mut conn, &destination.key).await?;
            let oldest_ms = w.oldest.as_deref().and_then(stream_groups::id_ms);
            Ok(Waiting {
                messages: w.unfinished,
                oldest: Some((oldest_ms.map_or(0.0, age), false)),
            })
        }
    }
}

/// One destination at the last lag round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DestinationReport {
    pub destination: String,
    pub kind: DestinationKind,
    pub topics: Vec<String>,
    /// Messages still in Kafka: the summed lag of the topics feeding it.
    pub lag_messages: u64,
    /// Messages waiting in Redis (list length, or the stream's unfinished entries).
    pub waiting_messages: u64,
    /// `lag_messages + waiting_messages`.
    pub backlog_messages: u64,
    /// Age of the oldest message waiting in Redis; `null` when this instance cannot tell.
    pub oldest_waiting_seconds: Option<f64>,
    /// The age is a lower bound: the oldest element was pushed before this instance's record of
    /// the list began.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oldest_waiting_at_least: bool,
    pub cap: Option<u64>,
}

impl DestinationReport {
    pub fn new(destination: &Destination, lag_messages: u64, waiting: Waiting) -> Self {
        DestinationReport {
            destination: destination.key.clone(),
            kind: destination.kind,
            topics: destination.topics.clone(),
            lag_messages,
            waiting_messages: waiting.messages,
            backlog_messages: lag_messages + waiting.messages,
            oldest_waiting_seconds: waiting.oldest.map(|(s, _)| s),
            oldest_waiting_at_least: waiting.oldest.is_some_and(|(_, at_least)| at_least),
            cap: destination.cap,
        }
    }
}

/// The topics' lag as the lag hash holds it (summed over every instance's partitions); a topic not
/// written yet counts 0.
pub async fn topic_lags(
    config: &Config,
    redis: &RedisConnection,
) -> Result<BTreeMap<String, u64>, ::redis::RedisError> {
    let names: Vec<&str> = config.topics.iter().map(|t| t.name.as_str()).collect();
    let mut conn = redis.clone();
    let values: Vec<Option<i64>> = ::redis::cmd("HMGET")
        .arg(&config.lag_hash)
        .arg(&names)
        .query_async(&mut conn)
        .await?;
    Ok(names
        .into_iter()
        .zip(values)
        .map(|(n, v)| (n.to_string(), v.unwrap_or(0).max(0) as u64))
        .collect())
}

/// Every destination measured: Kafka lag from the lag hash, then what waits in Redis.
pub async fn measure(
    config: &Config,
    registry: &Registry,
    knows_pushes: bool,
    redis: &RedisConnection,
    now_ms: i64,
) -> Result<Vec<DestinationReport>, ::redis::RedisError> {
    let lags = topic_lags(config, redis).await?;
    let mut reports = Vec::new();
    for destination in destinations(config) {
        let lag = destination
            .topics
            .iter()
            .map(|t| lags.get(t).copied().unwrap_or(0))
            .sum();
        let waiting = waiting(&destination, registry, knows_pushes, redis, now_ms).await?;
        reports.push(DestinationReport::new(&destination, lag, waiting));
    }
    Ok(reports)
}

/// `GET /scaling`: the reports in a shape KEDA's `metrics-api` scaler addresses with a GJSON
/// path (docs/autoscaling.md): by key under `destinations` (a name with dots needs them escaped,
/// `queues\.orders`), or by query over `destination_list` (any name:
/// `destination_list.#(destination=="queues:orders").backlog_messages`), and summed under `total`.
#[derive(Debug, Serialize)]
pub struct Scaling<'a> {
    /// When the figures were measured (ms since the epoch); 0 before the first round.
    pub at_ms: i64,
    pub total: Total,
    pub destinations: BTreeMap<&'a str, &'a DestinationReport>,
    pub destination_list: &'a [DestinationReport],
}

/// Over every destination: summed backlog, the oldest wait.
#[derive(Debug, Serialize)]
pub struct Total {
    pub backlog_messages: u64,
    pub oldest_waiting_seconds: f64,
}

impl<'a> Scaling<'a> {
    pub fn new(at_ms: i64, reports: &'a [DestinationReport]) -> Self {
        Scaling {
            at_ms,
            total: Total {
                backlog_messages: reports.iter().map(|r| r.backlog_messages).sum(),
                oldest_waiting_seconds: reports
                    .iter()
                    .filter_map(|r| r.oldest_waiting_seconds)
                    .fold(0.0, f64::max),
            },
            destinations: reports
                .iter()
                .map(|r| (r.destination.as_str(), r))
                .collect(),
            destination_list: reports,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::services::RedisService;
    use crate::config::RedisConfig;
    use crate::observe::state::now_ms;
    use crate::redis::RedisSink;

    fn destination(key: &str, kind: DestinationKind) -> Destination {
        Destination {
            key: key.to_string(),
            kind,
            topics: vec!["t".to_string()],
            cap: None,
        }
    }

    async fn run(conn: &RedisConnection, args: &[&str]) {
        let mut cmd = ::redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let _: ::redis::Value = cmd.query_async(&mut conn.clone()).await.unwrap();
    }

    #[tokio::test]
    async fn a_list_waits_by_its_length_dated_by_the_push_record_and_a_stream_by_its_groups() {
        let redis = RedisService::start(None).unwrap();
        let sink = RedisSink::connect(&RedisConfig::standalone(redis.address.clone()))
            .await
            .unwrap();
        let conn = sink.connection();
        let registry = Registry::default();
        let list = destination("l", DestinationKind::List);

        // Empty: nothing waits, for a standby too.
        let w = waiting(&list, &registry, false, &conn, now_ms())
            .await
            .unwrap();
        assert_eq!(
            w,
            Waiting {
                messages: 0,
                oldest: Some((0.0, false))
            }
        );

        // Three elements a lane pushed and recorded: their age, two seconds later.
        let lane = registry.register("t", 0, "l");
        run(&conn, &["RPUSH", "l", "a", "b", "c"]).await;
        lane.on_delivered(3, 3, 0, None);
        let later = now_ms() + 2_000;
        let w = waiting(&list, &registry, true, &conn, later).await.unwrap();
        let (age, at_least) = w.oldest.unwrap();
        assert_eq!((w.messages, at_least), (3, false));
        assert!((2.0..2.5).contains(&age), "{age}");
        // A standby did not push them: it cannot tell.
        let w = waiting(&list, &registry, false, &conn, later)
            .await
            .unwrap();
        assert_eq!(w.oldest, None);
        // An element the record does not hold: at least the record's age.
        run(&conn, &["LPUSH", "l", "older"]).await;
        let w = waiting(&list, &registry, true, &conn, later).await.unwrap();
        assert_eq!((w.messages, w.oldest.map(|o| o.1)), (4, Some(true)));

        // A stream: one group with one entry pending and two undelivered.
        let stream = destination("s", DestinationKind::Stream);
        for id in ["1000-0", "2000-0", "3000-0"] {
            run(&conn, &["XADD", "s", id, "value", "x"]).await;
        }
        run(&conn, &["XGROUP", "CREATE", "s", "g", "0"]).await;
        run(
            &conn,
            &[
                "XREADGROUP",
                "GROUP",
                "g",
                "w",
                "COUNT",
                "1",
                "STREAMS",
                "s",
                ">",
            ],
        )
        .await;
        let w = waiting(&stream, &registry, false, &conn, 6_000)
            .await
            .unwrap();
        assert_eq!(
            w,
            Waiting {
                messages: 3,
                oldest: Some((5.0, false))
            }
        );

        // Reported: backlog = lag + waiting; `total` sums and takes the oldest.
        let reports = [
            DestinationReport::new(
                &list,
                10,
                Waiting {
                    messages: 4,
                    oldest: Some((2.0, true)),
                },
            ),
            DestinationReport::new(&stream, 1, w),
        ];
        assert_eq!(reports[0].backlog_messages, 14);
        assert!(reports[0].oldest_waiting_at_least);
        let scaling = Scaling::new(1, &reports);
        assert_eq!(scaling.total.backlog_messages, 18);
        assert_eq!(scaling.total.oldest_waiting_seconds, 5.0);
        assert_eq!(scaling.destinations["s"].waiting_messages, 3);
    }
}
