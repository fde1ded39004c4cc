//! The exactly-once record in Redis and Kafka's committed offset, reconciled on assignment: a mode
//! switch, a record outside the partition, members of one group that disagree on a topic's
//! settings, and what a `kill -9` at full speed re-delivers now that commits follow progress.
//!
//! Commit metadata (the mark of the mode that committed) needs a broker that keeps it:
//! librdkafka's mock cluster does, hosted in this test process; Tansu 0.6.0 drops it, and then
//! Redis's record wins (documented in docs/delivery.md).

mod common;

use std::time::Duration;

use common::{
    http_get, unique, wait_until, Bridge, Broker, Config, MockBroker, RedisServer, Tally,
};
use rdkafka::consumer::Consumer;
use rdkafka::TopicPartitionList;

const STOP_BOUND: Duration = Duration::from_secs(30);

/// The commits' marks per partition while a run went on, and after its clean stop.
type RunMarks = (Vec<String>, Vec<String>);

/// One test's topic, group and list on one broker and one Redis.
struct Scene<'a> {
    broker: &'a Broker,
    redis: &'a RedisServer,
    dir: tempfile::TempDir,
    group: String,
    topic: String,
    list: String,
    partitions: i32,
}

impl<'a> Scene<'a> {
    fn new(broker: &'a Broker, redis: &'a RedisServer, topic: &str, partitions: i32) -> Scene<'a> {
        Scene {
            broker,
            redis,
            dir: tempfile::tempdir().unwrap(),
            group: unique(&format!("{topic}-group")),
            topic: topic.to_string(),
            list: format!("queues:{topic}"),
            partitions,
        }
    }

    /// The config of this scene's topic with `delivery`.
    fn config(&self, delivery: &str) -> Config {
        Config::new(
            self.broker,
            self.redis,
            &self.group,
            &format!(
                "[{{ name = \"{}\", list = \"{}\" }}]",
                self.topic, self.list
            ),
        )
        .delivery(delivery)
    }

    /// Writes `config` to a file of its own; returns its path.
    fn write(&self, config: &Config) -> String {
        config
            .write(self.dir.path(), &format!("{}.toml", unique("k2r")))
            .to_string_lossy()
            .into_owned()
    }

    fn start(&self, config: &str) -> Bridge {
        Bridge::start(self.dir.path(), &["--config", config])
    }

    fn committed_to_end(&self) -> bool {
        self.broker
            .committed(&self.group, &self.topic, self.partitions)
            .into_iter()
            .zip(self.broker.high_watermarks(&self.topic, self.partitions))
            .all(|(c, end)| c == Some(end))
    }

    /// Runs the bridge with `config` until the list holds `expected` elements and the group
    /// committed the topic up to its end, then stops it cleanly (so that duplicates, if any, are
    /// all in the list). Returns the commits' marks as the running bridge's periodic commits
    /// left them, and as its stop left them.
    fn run_until_delivered(&self, config: &str, expected: usize) -> RunMarks {
        let mut bridge = self.start(config);
        bridge.wait_assigned();
        wait_until(
            &format!("{} holds {expected} elements", self.list),
            Duration::from_secs(60),
            || self.redis.llen(&self.list) >= expected,
        );
        wait_until(
            "the group committed the topic to its end",
            Duration::from_secs(60),
            || self.committed_to_end(),
        );
        let running = self.commit_marks();
        bridge.signal(libc::SIGTERM);
        let status = bridge.wait_exit(STOP_BOUND);
        assert!(status.success(), "clean stop: {status:?}");
        (running, self.commit_marks())
    }

    /// The committed offsets' metadata of the topic's partitions.
    fn commit_marks(&self) -> Vec<String> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(&self.topic, p);
        }
        let committed = self
            .broker
            .consumer(&self.group)
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        (0..self.partitions)
            .map(|p| {
                committed
                    .find_partition(&self.topic, p)
                    .map(|e| e.metadata().to_string())
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// Exactly-once, then at-least-once, then exactly-once again, each run stopped cleanly after it
/// delivered its 1,000 new messages; returns what the list holds against what was produced, and
/// the marks each run's periodic commits and clean stop left.
fn mode_switch(scene: &Scene, broker_kind: &str) -> (Tally, Vec<RunMarks>) {
    let mut produced = Vec::new();
    let mut marks = Vec::new();
    for (run, delivery) in ["exactly-once", "at-least-once", "exactly-once"]
        .into_iter()
        .enumerate()
    {
        produced.extend(scene.broker.produce_numbered(
            &scene.topic,
            scene.partitions,
            run * 1_000,
            1_000,
        ));
        marks
            .push(scene.run_until_delivered(&scene.write(&scene.config(delivery)), produced.len()));
    }
    let cost = Tally::new(&produced, &scene.redis.list(&scene.list)).report(
        &format!("mode switch exactly-once → at-least-once → exactly-once ({broker_kind})"),
        "exactly-once",
    );
    (cost, marks)
}

#[test]
fn mode_switch_resumes_from_the_newer_commit() {
    let mock = MockBroker::start();
    let redis = RedisServer::start();
    let topic = unique("switch");
    mock.create_topic(&topic, 2);
    let scene = Scene::new(&mock.broker, &redis, &topic, 2);
    let (cost, marks) = mode_switch(&scene, "mock broker, commit metadata kept");
    let (eo, alo) = (
        vec!["k2r:eo".to_string(); 2],
        vec!["k2r:alo".to_string(); 2],
    );
    assert_eq!(
        marks,
        vec![
            (eo.clone(), eo.clone()),
            (alo.clone(), alo),
            (eo.clone(), eo)
        ],
        "each run marks its periodic commits and its last one with its mode"
    );
    assert_eq!(cost.missing.len(), 0, "{cost:?}");
    assert_eq!(cost.duplicated, 0, "{cost:?}");
    assert_eq!(cost.order_violations(), 0, "{cost:?}");
}

/// Tansu 0.6.0 drops commit metadata: the mark is unknown and Redis's record wins, so what the
/// at-least-once run delivered is delivered again — never lost.
#[test]
fn mode_switch_without_commit_metadata_keeps_the_record() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let topic = unique("switch-tansu");
    broker.create_topic(&topic, 2);
    let scene = Scene::new(broker, &redis, &topic, 2);
    let (cost, marks) = mode_switch(&scene, "Tansu, commit metadata dropped");
    let unmarked = (vec![String::new(); 2], vec![String::new(); 2]);
    assert_eq!(marks, vec![unmarked; 3], "Tansu drops commit metadata");
    assert_eq!(cost.missing.len(), 0, "{cost:?}");
    assert_eq!(
        cost.duplicated, 1_000,
        "the at-least-once run's 1,000 messages come again: {cost:?}"
    );
}

/// A record above the high watermark — the topic was deleted and created again while Redis kept
/// the list's record — is never a silent skip: the partition resumes from its log start, with an
/// error naming both offsets, counted in the metrics.
fn record_outside_the_partition(broker: &Broker, create_topic: impl Fn(&str), broker_kind: &str) {
    let redis = RedisServer::start();
    let topic = unique("recreated");
    create_topic(&topic);
    let scene = Scene::new(broker, &redis, &topic, 2);
    let produced = broker.produce_numbered(&topic, 2, 0, 500);
    // What the topic's earlier life left in Redis: records far beyond the new partitions' ends.
    let mut conn = redis.conn();
    for p in 0..2 {
        let _: () = redis::cmd("HSET")
            .arg(format!("{{{}}}:offsets", scene.list))
            .arg(format!("{topic}:{p}"))
            .arg(1_000_000 + p)
            .query(&mut conn)
            .unwrap();
    }
    let http = common::free_port();
    let config = scene.write(
        &scene
            .config("exactly-once")
            .sections(&format!("[http]\naddress = \"127.0.0.1:{http}\"")),
    );
    let bridge = scene.start(&config);
    bridge.wait_assigned();
    wait_until("500 elements", Duration::from_secs(60), || {
        redis.llen(&scene.list) >= 500
    });
    let metrics = http_get(http, "/metrics").expect("/metrics").1;
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("kafka2redis_resume_out_of_range_total"))
        .unwrap_or_default()
        .to_string();
    let log = bridge.log_text();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("outside the partition's offsets"))
        .collect();
    let cost = Tally::new(&produced, &redis.list(&scene.list)).report(
        &format!("exactly-once record above the high watermark (topic re-created; {broker_kind})"),
        "exactly-once",
    );
    assert_eq!(counted, "kafka2redis_resume_out_of_range_total 2");
    assert_eq!(errors.len(), 2, "one error per partition:\n{log}");
    for error in &errors {
        assert!(error.contains("record=Some(100000"), "{error}");
        assert!(error.contains("high_watermark=Some(250)"), "{error}");
        assert!(error.contains("resume=Some(0)"), "{error}");
    }
    assert_eq!((cost.missing.len(), cost.duplicated), (0, 0), "{cost:?}");
}

#[test]
fn record_outside_the_partition_resumes_from_the_log_start() {
    let mock = MockBroker::start();
    record_outside_the_partition(&mock.broker, |t| mock.create_topic(t, 2), "mock broker");
}

#[test]
fn record_outside_the_partition_resumes_from_the_log_start_on_tansu() {
    let broker = Broker::shared();
    record_outside_the_partition(broker, |t| broker.create_topic(t, 2), "Tansu");
}

/// Two members of one group that deliver a topic differently: the newcomer refuses with one
/// sentence while the other lives, and starts once the other stopped cleanly.
#[test]
fn members_that_disagree_on_delivery_are_refused() {
    let mock = MockBroker::start();
    let redis = RedisServer::start();
    let topic = unique("members");
    mock.create_topic(&topic, 2);
    let scene = Scene::new(&mock.broker, &redis, &topic, 2);
    let (eo, alo) = (
        scene.write(&scene.config("exactly-once")),
        scene.write(&scene.config("at-least-once")),
    );
    let mut first = scene.start(&eo);
    first.wait_assigned();
    let mut second = scene.start(&alo);
    let status = second.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "{}", second.log_text());
    let refusal: Vec<String> = second
        .log_text()
        .lines()
        .filter(|l| l.starts_with("kafka2redis: "))
        .map(str::to_string)
        .collect();
    assert_eq!(refusal.len(), 1, "{}", second.log_text());
    assert!(
        refusal[0].contains(&format!(
            "delivers topic {topic:?} with delivery=exactly-once"
        )) && refusal[0].contains("configured with delivery=at-least-once"),
        "{}",
        refusal[0]
    );
    assert!(first.is_running(), "the live member goes on");
    first.signal(libc::SIGTERM);
    assert!(first.wait_exit(STOP_BOUND).success());
    // After a full, clean stop a deliberate change passes.
    let mut changed = scene.start(&alo);
    changed.wait_assigned();
    let produced = mock.broker.produce_numbered(&topic, 2, 0, 100);
    wait_until("100 elements", Duration::from_secs(60), || {
        redis.llen(&scene.list) >= 100
    });
    assert!(changed.is_running());
    assert_eq!(redis.list(&scene.list).len(), produced.len());
    Tally::new(&produced, &redis.list(&scene.list)).report(
        "members of one group disagree on delivery: the newcomer refused (exit 2, one sentence) while \
         the other lives; the changed config starts after a full stop",
        "at-least-once",
    );
}

/// `kill -9` of an at-least-once bridge at full speed, restarted at once: what it re-delivers is
/// what was pushed since the last commit, which now follows progress (`commit_after_messages`)
/// as well as time.
fn kill_9_at_full_speed(commit_after_messages: u64) -> Tally {
    let mock = MockBroker::start();
    let redis = RedisServer::start();
    let topic = unique("fullspeed");
    let partitions = 4;
    mock.create_topic(&topic, partitions);
    let scene = Scene::new(&mock.broker, &redis, &topic, partitions);
    let produced = mock
        .broker
        .produce_numbered(&topic, partitions, 0, MESSAGES);
    // The shared config's 500-ms commits and batches of 200 are for short tests: here the
    // native defaults, but for the early commit under test. The restarted member need not wait
    // 45 s for the group to expire the killed one (static membership is another matter).
    // The shared config's 500-ms commits and batches of 200 are for short tests: here the
    // native defaults, but for the early commit under test. The restarted member need not wait
    // 45 s for the group to expire the killed one.
    let config = scene.write(
        &scene
            .config("at-least-once")
            .kafka_properties(
                "\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"",
            )
            .commit_interval_ms(1000)
            .commit_after_messages(commit_after_messages)
            .max_messages(1000),
    );
    let mut bridge = scene.start(&config);
    bridge.wait_assigned();
    wait_until("half delivered", Duration::from_secs(120), || {
        redis.llen(&scene.list) >= MESSAGES / 2
    });
    let at_kill = redis.llen(&scene.list);
    bridge.kill9();
    let mut restarted = scene.start(&config);
    restarted.wait_assigned();
    wait_until("everything delivered", Duration::from_secs(120), || {
        scene.committed_to_end()
    });
    eprintln!("kill -9 with {at_kill} of {MESSAGES} pushed");
    restarted.signal(libc::SIGTERM);
    assert!(restarted.wait_exit(STOP_BOUND).success());
    let setting = if commit_after_messages == 0 {
        "0 (1-s commits only)".to_string()
    } else {
        commit_after_messages.to_string()
    };
    Tally::new(&produced, &redis.list(&scene.list)).report(
        &format!("kill -9 at full speed, {MESSAGES} messages over 4 partitions, commit_after_messages = {setting}"),
        "at-least-once",
    )
}

const MESSAGES: usize = 200_000;

#[test]
fn kill_9_at_full_speed_re_delivers_a_bounded_amount() {
    let cost = kill_9_at_full_speed(10_000);
    assert_eq!(cost.missing.len(), 0, "{cost:?}");
    // Per partition: what was stored since its last commit — fewer than commit_after_messages —
    // plus the batches in flight and an early commit still on its way.
    assert!(cost.duplicated <= 4 * (2 * 10_000 + 2 * 1_000), "{cost:?}");
}

#[test]
fn kill_9_at_full_speed_with_time_only_commits() {
    let cost = kill_9_at_full_speed(0);
    assert_eq!(cost.missing.len(), 0, "{cost:?}");
}
