//! The lane's logic against a fake partition and a real `redis-server`: what lands in the list,
//! which offset is stored and when, and when the partition is paused and resumed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::Offset;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::lane::{ExactlyOnceLane, Lane, LaneSettings, LaneSignals};
use super::partition::{Committed, KafkaPartition, QueueError};
use super::record::Record;
use crate::bench::services::RedisService;
use crate::config::{
    BatchConfig, Cap, Delivery, Envelope, RedisConfig, RetryConfig, Structure, TopicConfig,
};
use crate::observe::state::{Gate, Registry};
use crate::observe::stats::Stats;
use crate::redis::RedisSink;

/// A partition whose messages the test queues, recording what the lane asks of it.
#[derive(Default)]
struct FakePartition {
    /// Every message of the partition, for seeks.
    log: Vec<(i64, Vec<u8>)>,
    queued: Mutex<VecDeque<(i64, Vec<u8>)>>,
    stored: Mutex<Option<i64>>,
    paused: AtomicBool,
    pauses: AtomicUsize,
    resumes: AtomicUsize,
}

impl FakePartition {
    fn with_messages(count: i64) -> Arc<FakePartition> {
        let log: Vec<(i64, Vec<u8>)> = (0..count)
            .map(|o| (o, format!("m{o}").into_bytes()))
            .collect();
        let fake = FakePartition {
            queued: Mutex::new(log.iter().cloned().collect()),
            log,
            ..FakePartition::default()
        };
        Arc::new(fake)
    }

    fn stored(&self) -> Option<i64> {
        *self.stored.lock().unwrap()
    }
}

impl KafkaPartition for Arc<FakePartition> {
    fn take(
        &self,
        max: usize,
        _with_headers: bool,
        each: &mut dyn FnMut(Result<Record<'_>, QueueError>),
    ) -> usize {
        // Like librdkafka: a paused partition hands out nothing (it is fetched again on resume).
        if self.paused.load(Ordering::SeqCst) {
            return 0;
        }
        let mut queued = self.queued.lock().unwrap();
        let mut taken = 0;
        while taken < max {
            let Some((offset, value)) = queued.pop_front() else {
                break;
            };
            each(Ok(Record {
                topic: "t",
                partition: 0,
                offset,
                timestamp: None,
                key: None,
                value: Some(&value),
                headers: &[],
            }));
            taken += 1;
        }
        taken
    }

    fn store_offset(&self, next_offset: i64) -> Result<(), KafkaError> {
        *self.stored.lock().unwrap() = Some(next_offset);
        Ok(())
    }

    fn pause(&self) -> Result<(), KafkaError> {
        self.paused.store(true, Ordering::SeqCst);
        self.pauses.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn resume(&self) -> Result<(), KafkaError> {
        self.paused.store(false, Ordering::SeqCst);
        self.resumes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn seek(&self, to: Offset) -> Result<(), KafkaError> {
        let Offset::Offset(from) = to else {
            panic!("the lanes here only seek to offsets, not {to:?}");
        };
        *self.queued.lock().unwrap() = self
            .log
            .iter()
            .filter(|(offset, _)| *offset >= from)
            .cloned()
            .collect();
        Ok(())
    }

    async fn committed(&self) -> Result<Option<Committed>, KafkaError> {
        Ok(None)
    }
}

struct Running {
    fake: Arc<FakePartition>,
    sink: RedisSink,
    stats: Arc<Stats>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the lane stops")
            .expect("the lane does not panic");
    }
}

async fn start_lane(redis: &RedisService, fake: Arc<FakePartition>, cap: Option<Cap>) -> Running {
    start_lane_with(redis, fake, cap, None, 1).await
}

async fn start_lane_with(
    redis: &RedisService,
    fake: Arc<FakePartition>,
    cap: Option<Cap>,
    exactly_once: Option<ExactlyOnceLane>,
    in_flight: usize,
) -> Running {
    let config = RedisConfig::standalone(redis.address.clone());
    start_lane_on(config, fake, cap, exactly_once, in_flight).await
}

/// A lane pushing through a sink connected as `config` says.
async fn start_lane_on(
    config: RedisConfig,
    fake: Arc<FakePartition>,
    cap: Option<Cap>,
    exactly_once: Option<ExactlyOnceLane>,
    in_flight: usize,
) -> Running {
    let sink = RedisSink::connect(&config)
        .await
        .expect("connecting to the test Redis");
    let stats = Arc::new(Stats::default());
    let stop = CancellationToken::new();
    let topic = TopicConfig {
        name: "t".into(),
        list_key: "list".into(),
        structure: Structure::List,
        envelope: Envelope::Raw,
        job: None,
        queue: None,
        queue_prefix: None,
        job_options: Default::default(),
        cap,
        delivery: if exactly_once.is_some() {
            Delivery::ExactlyOnce
        } else {
            Delivery::AtLeastOnce
        },
    };
    let settings = LaneSettings {
        sink: sink.clone(),
        batch: BatchConfig {
            max_messages: 4,
            max_bytes: 1 << 20,
            linger: Duration::from_millis(1),
            in_flight: Some(in_flight),
        },
        retry: RetryConfig {
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
        },
        flow_check_interval: Duration::from_millis(20),
        reset_to_end: false,
        stats: stats.clone(),
        gate: Gate::default(),
    };
    let signals = LaneSignals {
        state: Registry::default().register("t", 0, "list"),
        wake: Arc::new(Notify::new()),
        stop: stop.clone(),
    };
    let mut lane = Lane::new(topic, 0, fake.clone(), &settings, signals);
    if let Some(record) = exactly_once {
        lane = lane.exactly_once(record);
    }
    let task = tokio::spawn(lane.run());
    Running {
        fake,
        sink,
        stats,
        stop,
        task,
    }
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn list(redis: &RedisService) -> Vec<String> {
    ::redis::cmd("LRANGE")
        .arg("list")
        .arg(0)
        .arg(-1)
        .query(&mut redis.connection().unwrap())
        .unwrap()
}

fn values(range: std::ops::Range<i64>) -> Vec<String> {
    range.map(|o| format!("m{o}")).collect()
}

#[tokio::test]
async fn delivers_in_order_and_stores_the_next_offset_once_redis_acknowledged() {
    let redis = RedisService::start(None).unwrap();
    let lane = start_lane(&redis, FakePartition::with_messages(10), None).await;
    until("offset 10 stored", || lane.fake.stored() == Some(10)).await;
    assert_eq!(list(&redis), values(0..10));
    lane.stop().await;
}

#[tokio::test]
async fn retries_the_same_batch_while_redis_refuses_and_stores_nothing_meanwhile() {
    retries_while_redis_refuses(1).await;
}

async fn retries_while_redis_refuses(in_flight: usize) {
    let redis = RedisService::start(None).unwrap();
    let mut conn = redis.connection().unwrap();
    // Every write is refused with OOM while used memory is over this.
    ::redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query::<()>(&mut conn)
        .unwrap();
    let lane = start_lane_with(
        &redis,
        FakePartition::with_messages(6),
        None,
        None,
        in_flight,
    )
    .await;
    until("two refused pushes", || lane.stats.redis_errors.get() >= 2).await;
    assert_eq!(
        lane.fake.stored(),
        None,
        "nothing stored before Redis took it"
    );
    assert!(list(&redis).is_empty());
    ::redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query::<()>(&mut conn)
        .unwrap();
    until("offset 6 stored", || lane.fake.stored() == Some(6)).await;
    assert_eq!(list(&redis), values(0..6), "each message once, in order");
    lane.stop().await;
}

#[tokio::test]
async fn pauses_on_a_full_list_and_resumes_once_it_drained_to_the_low_water_mark() {
    pauses_on_a_full_list(1).await;
}

async fn pauses_on_a_full_list(in_flight: usize) {
    let redis = RedisService::start(None).unwrap();
    let mut conn = redis.connection().unwrap();
    let cap = Cap {
        max: 4,
        low_water: 1,
    };
    let lane = start_lane_with(
        &redis,
        FakePartition::with_messages(10),
        Some(cap),
        None,
        in_flight,
    )
    .await;
    until("the partition paused on the full list", || {
        lane.fake.paused.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(list(&redis), values(0..4));
    assert_eq!(lane.fake.stored(), Some(4), "the offset covers what fit");
    // A worker pops; the lane resumes once the list is at the low-water mark, and so on.
    let mut popped = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while popped.len() < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "popped only {popped:?}"
        );
        let len: usize = ::redis::cmd("LLEN").arg("list").query(&mut conn).unwrap();
        assert!(len <= 4, "the list never exceeds its cap");
        if let Some(v) = ::redis::cmd("LPOP")
            .arg("list")
            .query::<Option<String>>(&mut conn)
            .unwrap()
        {
            popped.push(v);
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert_eq!(popped, values(0..10));
    until("offset 10 stored", || lane.fake.stored() == Some(10)).await;
    assert!(lane.fake.pauses.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        lane.fake.pauses.load(Ordering::SeqCst),
        lane.fake.resumes.load(Ordering::SeqCst),
        "every pause was resumed"
    );
    lane.stop().await;
}

/// The exactly-once record of the test partition.
fn recorded(conn: &mut ::redis::Connection) -> Option<i64> {
    ::redis::cmd("HGET")
        .arg("offsets")
        .arg("t:0")
        .query(conn)
        .unwrap()
}

#[tokio::test]
async fn an_idle_exactly_once_lane_rereads_its_record_when_the_master_changes() {
    rereads_the_record_when_the_master_changes(1).await;
}

async fn rereads_the_record_when_the_master_changes(in_flight: usize) {
    let redis = RedisService::start(None).unwrap();
    let mut conn = redis.connection().unwrap();
    let record = ExactlyOnceLane::new("offsets".into(), "t:0".into(), None, true);
    let lane = start_lane_with(
        &redis,
        FakePartition::with_messages(10),
        None,
        Some(record),
        in_flight,
    )
    .await;
    until("offset 10 stored", || lane.fake.stored() == Some(10)).await;
    assert_eq!(recorded(&mut conn), Some(10));
    // What a failover to a replica that missed the last pushes leaves: the list and the record
    // without them. The partition receives nothing more, so no push would find out.
    ::redis::cmd("LTRIM")
        .arg("list")
        .arg(0)
        .arg(5)
        .query::<()>(&mut conn)
        .unwrap();
    ::redis::cmd("HSET")
        .arg("offsets")
        .arg("t:0")
        .arg(6)
        .query::<()>(&mut conn)
        .unwrap();
    lane.sink.masters.announce();
    until("the lost messages are back", || list(&redis).len() >= 10).await;
    assert_eq!(list(&redis), values(0..10), "each message once, in order");
    assert_eq!(recorded(&mut conn), Some(10));
    lane.stop().await;
}

#[path = "tests_window.rs"]
mod window;
