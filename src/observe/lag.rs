//! Exact lag, measured every `lag.interval_ms`, written where the old tool's readers look.
//!
//! Per partition, lag is the high watermark minus the next offset to deliver (the lane's own
//! position, [`crate::observe::state::PartitionState`]) — no second consumer group guessing it as the old
//! tool did. High watermarks come from librdkafka's cache (updated by every fetch response, no
//! round trip); a partition whose cache is empty or stale (paused: not fetched) is asked with a
//! `ListOffsets` request instead. Each round writes:
//!
//! - the old hash (`topics_queue_len`): field = topic, value = messages behind, summed over every
//!   partition of the topic, whichever instance owns it;
//! - its companion `{topics_queue_len}:partitions`: field = `topic/partition`, value = messages
//!   behind. The braces put both hashes in one Redis Cluster slot, so one script writes both.
//!
//! Each round also keeps a [`Snapshot`] (per-partition figures, list lengths and a Burrow-style
//! rating) for `/metrics`, `/status` and `/readyz`, and beats the heartbeat `/healthz` reads.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::Config;
use crate::logging::RateLimit;
use crate::observe::backlog::{self, DestinationReport};
use crate::observe::state::{now_ms, Health, LeaseState, PartitionState, Registry};
use crate::redis::scripts::WRITE_LAG;
use crate::redis::RedisConnection;

static LAG_ERRORS: RateLimit = RateLimit::new(Duration::from_secs(30));

/// Rounds of history a rating looks at (Burrow uses a window of commits the same way).
const WINDOW: usize = 5;

/// How a partition is doing, rated like Burrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Rating {
    /// Caught up, or catching up.
    Ok,
    /// Lag grew over the whole window although the partition moves.
    Warn,
    /// Lag above zero and the position did not move over the whole window, while not paused.
    Stall,
    /// Paused because its list is full (the backlog waits in Kafka, as designed).
    Paused,
}

impl Rating {
    pub fn as_str(self) -> &'static str {
        match self {
            Rating::Ok => "OK",
            Rating::Warn => "WARN",
            Rating::Stall => "STALL",
            Rating::Paused => "PAUSED",
        }
    }
}

/// One owned partition at the last round.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    pub topic: String,
    pub partition: i32,
    pub list: String,
    /// Next offset to deliver (everything before it is in Redis).
    pub offset: Option<i64>,
    pub high_watermark: Option<i64>,
    /// Messages behind: `high_watermark - offset`.
    pub lag: Option<i64>,
    /// Age of the oldest message not yet in Redis, in seconds (0 when caught up).
    pub lag_seconds: f64,
    pub paused: bool,
    pub state: Rating,
}

/// One list this instance feeds.
#[derive(Debug, Clone, Serialize)]
pub struct ListReport {
    pub list: String,
    pub length: Option<u64>,
    pub cap: Option<u64>,
}

/// What the last round measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// When it was taken (ms since the epoch); 0 = no round yet.
    pub at_ms: i64,
    pub partitions: Vec<PartitionReport>,
    pub lists: Vec<ListReport>,
    /// Per list or stream: the backlog for autoscalers.
    pub destinations: Vec<DestinationReport>,
    /// The exclusive lease's owner token as Redis holds it (with a lease configured; `None` when
    /// nobody holds it or Redis was not reached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_holder: Option<String>,
}

/// What the daemon reads out about itself: the lag loop's latest snapshot and the health facts,
/// for `/status`, `/readyz`, `/healthz` and the metrics.
#[derive(Debug, Default)]
pub struct Readout {
    latest: Mutex<Arc<Snapshot>>,
    pub health: Health,
}

impl Readout {
    pub fn latest(&self) -> Arc<Snapshot> {
        self.latest.lock().expect("readout lock").clone()
    }

    fn publish(&self, snapshot: Snapshot) {
        *self.latest.lock().expect("readout lock") = Arc::new(snapshot);
    }
}

/// Per-partition history for the rating, and where lag started when no message is held.
#[derive(Default)]
struct History {
    samples: VecDeque<(i64, i64)>, // (lag, offset)
    behind_since_ms: Option<i64>,
}

/// Runs rounds until `stop`; one round every `config.lag_interval`.
pub async fn run(
    config: Arc<Config>,
    registry: Arc<Registry>,
    readout: Arc<Readout>,
    kafka: Arc<dyn KafkaOffsets>,
    redis: RedisConnection,
    stop: CancellationToken,
) {
    let mut histories: HashMap<(String, i32), History> = HashMap::new();
    let mut written: BTreeSet<String> = BTreeSet::new(); // partition fields we wrote last round
    let partitions_key = crate::keys::lag_partitions_key(&config.lag_hash)
        .expect("the config checks that the lag hash has a companion in its slot");
    // The Kafka query under way, and the latest figures it brought, by partition.
    let mut asking: Option<tokio::task::JoinHandle<(Vec<Asked>, KafkaRound)>> = None;
    let mut figures: HashMap<(String, i32), KafkaFigures> = HashMap::new();
    let mut ticker = tokio::time::interval(config.lag_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return,
        }
        let owned = registry.snapshot();
        if asking.is_none() {
            let asked: Vec<Asked> = owned
                .iter()
                .map(|p| Asked {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    paused: p.is_paused(),
                    next_offset: p.next_offset(),
                })
                .collect();
            let first_topic = config.topics[0].name.clone();
            let querier = kafka.clone();
            asking = Some(tokio::task::spawn_blocking(move || {
                let round = querier.query(&asked, &first_topic);
                (asked, round)
            }));
        }
        // Kafka gets at most half a round to answer: a slow or unreachable broker must not stop
        // this loop, whose turning `/healthz` reads. Until it answers, the last figures stand.
        if let Some(query) = asking.as_mut() {
            if let Ok(answer) = tokio::time::timeout(config.lag_interval / 2, query).await {
                asking = None;
                if let Ok((asked, round)) = answer {
                    if let Some(ok) = round.reachable {
                        readout.health.set_kafka_ok(ok);
                    }
                    figures = asked
                        .into_iter()
                        .map(|a| (a.topic, a.partition))
                        .zip(round.partitions)
                        .collect();
                }
            }
        }

        let now = now_ms();
        let mut reports = Vec::with_capacity(owned.len());
        for state in &owned {
            let known = figures.get(&(state.topic.clone(), state.partition));
            reports.push(report(
                state,
                known.unwrap_or(&KafkaFigures::default()),
                now,
                &mut histories,
            ));
        }
        let live: BTreeSet<(String, i32)> = owned
            .iter()
            .map(|p| (p.topic.clone(), p.partition))
            .collect();
        histories.retain(|k, _| live.contains(k));

        // Write: our partitions' fields; drop the fields of partitions we no longer own; then
        // every configured topic's sum over the companion hash (all instances' partitions).
        let fields: BTreeMap<String, i64> = reports
            .iter()
            .filter_map(|r| r.lag.map(|l| (format!("{}/{}", r.topic, r.partition), l)))
            .collect();
        let gone: Vec<String> = written
            .iter()
            .filter(|f| !fields.contains_key(*f))
            .cloned()
            .collect();
        let mut invocation = WRITE_LAG.key(&config.lag_hash);
        invocation
            .key(&partitions_key)
            .arg(fields.len())
            .arg(gone.len());
        for (field, lag) in &fields {
            invocation.arg(field).arg(lag);
        }
        for field in &gone {
            invocation.arg(field);
        }
        for topic in &config.topics {
            invocation.arg(&topic.name);
        }
        let mut conn = redis.clone();
        let wrote = invocation.invoke_async::<()>(&mut conn).await;
        // A standby pushes nothing: a list's age is then the holder's to tell.
        let pushing = readout.health.lease() != LeaseState::Standby;
        if !pushing {
            registry.forget_pushes();
        }
        let destinations = backlog::measure(&config, &registry, pushing, &redis, now).await;
        let lease_holder = match &config.lease_key {
            Some(key) => ::redis::cmd("GET")
                .arg(key)
                .query_async::<Option<String>>(&mut conn)
                .await
                .unwrap_or(None),
            None => None,
        };
        let redis_ok = wrote.is_ok() && destinations.is_ok();
        if let Err(e) = wrote
            .as_ref()
            .map(|_| ())
            .and(destinations.as_ref().map(|_| ()))
        {
            if let Some(held) = LAG_ERRORS.check() {
                warn!(error = %e, suppressed = held, hash = %config.lag_hash, "could not write lag to Redis");
            }
        } else {
            written = fields.keys().cloned().collect();
        }
        readout.health.set_redis_ok(redis_ok);
        let destinations = destinations.unwrap_or_default();
        readout.publish(Snapshot {
            at_ms: now,
            partitions: reports,
            lists: lists(&destinations),
            destinations,
            lease_holder,
        });
        readout.health.beat();
        debug!(partitions = owned.len(), "lag written");
    }
}

/// Every destination with what waits in it (a stream's unfinished work stands for its length).
fn lists(destinations: &[DestinationReport]) -> Vec<ListReport> {
    destinations
        .iter()
        .map(|d| ListReport {
            list: d.destination.clone(),
            length: Some(d.waiting_messages),
            cap: d.cap,
        })
        .collect()
}

/// What Kafka says about one partition this round.
#[derive(Debug, Default, Clone)]
pub struct KafkaFigures {
    pub high_watermark: Option<i64>,
    /// Where delivery resumes when the lane has not delivered yet (committed offset, else low).
    pub fallback_offset: Option<i64>,
    /// librdkafka's fetch position (next offset to fetch), known locally.
    pub position: Option<i64>,
}

/// One round's answers from Kafka, in the order of the partitions asked about.
#[derive(Debug, Default)]
pub struct KafkaRound {
    pub partitions: Vec<KafkaFigures>,
    /// Whether a request to Kafka succeeded; `None` when there is no consumer yet.
    pub reachable: Option<bool>,
}

/// A partition the lag loop asks Kafka about.
pub struct Asked {
    pub topic: String,
    pub partition: i32,
    /// Paused partitions are not fetched, so their cached high watermark goes stale.
    pub paused: bool,
    /// The lane's next offset, when it has one (else Kafka's committed offset stands in).
    pub next_offset: Option<i64>,
}

/// Kafka's side of lag ([`crate::kafka::watermarks`]); asked once a round, on a blocking thread.
pub trait KafkaOffsets: Send + Sync {
    fn query(&self, asked: &[Asked], probe_topic: &str) -> KafkaRound;
}

fn report(
    state: &PartitionState,
    figures: &KafkaFigures,
    now: i64,
    histories: &mut HashMap<(String, i32), History>,
) -> PartitionReport {
    let mut offset = state.next_offset().or(figures.fallback_offset);
    // A flowing lane that holds nothing has delivered everything fetched. Its own position stops
    // at the last message, but the fetch position moves past transaction markers, which count in
    // the high watermark and never reach a lane: without this, a transactional topic would show
    // a lag of 1 per commit marker for ever (and rate STALL).
    if !state.is_paused() && state.oldest_pending_ms().is_none() {
        if let (Some(fetched), Some(o)) = (figures.position, offset) {
            offset = Some(o.max(fetched));
        }
    }
    let lag = match (figures.high_watermark, offset) {
        (Some(high), Some(offset)) => Some((high - offset).max(0)),
        _ => None,
    };
    let history = histories
        .entry((state.topic.clone(), state.partition))
        .or_default();
    let behind = lag.unwrap_or(0) > 0;
    if !behind {
        history.behind_since_ms = None;
    } else if history.behind_since_ms.is_none() {
        history.behind_since_ms = Some(state.last_delivery_ms().unwrap_or(now));
    }
    // The oldest undelivered message's own timestamp when the lane holds it; otherwise (not yet
    // fetched) the time since the partition was last caught up, a lower bound.
    let oldest = state.oldest_pending_ms().or(history.behind_since_ms);
    let lag_seconds = match oldest {
        Some(t) if behind || state.oldest_pending_ms().is_some() => (now - t).max(0) as f64 / 1e3,
        _ => 0.0,
    };
    if let (Some(l), Some(o)) = (lag, offset) {
        history.samples.push_back((l, o));
        if history.samples.len() > WINDOW {
            history.samples.pop_front();
        }
    }
    let paused = state.is_paused();
    PartitionReport {
        topic: state.topic.clone(),
        partition: state.partition,
        list: state.list_key.clone(),
        offset,
        high_watermark: figures.high_watermark,
        lag,
        lag_seconds,
        paused,
        state: rate(paused, &history.samples),
    }
}

/// Burrow's rules, over the last [`WINDOW`] rounds.
fn rate(paused: bool, samples: &VecDeque<(i64, i64)>) -> Rating {
    if paused {
        return Rating::Paused;
    }
    let Some(&(last_lag, last_offset)) = samples.back() else {
        return Rating::Ok;
    };
    if last_lag == 0 || samples.len() < WINDOW {
        return Rating::Ok;
    }
    let (_, first_offset) = samples[0];
    if last_offset == first_offset {
        return Rating::Stall;
    }
    let growing = samples
        .iter()
        .zip(samples.iter().skip(1))
        .all(|(a, b)| b.0 >= a.0)
        && last_lag > samples[0].0;
    if growing {
        Rating::Warn
    } else {
        Rating::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(s: &[(i64, i64)]) -> VecDeque<(i64, i64)> {
        s.iter().copied().collect()
    }

    #[test]
    fn ratings_follow_burrow() {
        assert_eq!(rate(true, &window(&[])), Rating::Paused);
        assert_eq!(rate(false, &window(&[(5, 1)])), Rating::Ok);
        assert_eq!(
            rate(
                false,
                &window(&[(5, 10), (5, 10), (6, 10), (7, 10), (7, 10)])
            ),
            Rating::Stall
        );
        assert_eq!(
            rate(
                false,
                &window(&[(5, 10), (6, 11), (7, 12), (8, 13), (9, 14)])
            ),
            Rating::Warn
        );
        assert_eq!(
            rate(
                false,
                &window(&[(9, 10), (8, 11), (7, 12), (6, 13), (5, 14)])
            ),
            Rating::Ok
        );
        assert_eq!(
            rate(
                false,
                &window(&[(0, 10), (0, 10), (0, 10), (0, 10), (0, 10)])
            ),
            Rating::Ok
        );
    }

    #[test]
    fn transaction_markers_do_not_count_as_lag() {
        let state = PartitionState::new("t", 0, "queues:t");
        state.set_next_offset(10); // delivered up to 9; offset 10 is a commit marker
        let figures = KafkaFigures {
            high_watermark: Some(11),
            fallback_offset: None,
            position: Some(11),
        };
        let mut histories = HashMap::new();
        let r = report(&state, &figures, now_ms(), &mut histories);
        assert_eq!((r.offset, r.lag), (Some(11), Some(0)));
        // A lane holding undelivered messages is measured from its own position.
        state.on_pending(Some(now_ms() - 2000));
        let r = report(&state, &figures, now_ms(), &mut histories);
        assert_eq!(r.lag, Some(1));
        assert!(r.lag_seconds >= 2.0);
    }
}
