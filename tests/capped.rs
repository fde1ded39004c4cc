//! Capped lists against real Redis and Tansu: the cap is never exceeded, nothing is dropped, order
//! holds, and full lists pause partitions without a rebalance.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;

const STOP_BOUND: Duration = Duration::from_secs(15);

/// Samples `LLEN` as fast as it can until stopped; returns the largest length seen and the count.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(usize, usize)>>,
}

impl Sampler {
    fn start(redis: &RedisServer, list: &str) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, list) = (stop.clone(), list.to_string());
        let mut conn = redis.conn();
        let handle = std::thread::spawn(move || {
            let (mut max, mut samples) = (0usize, 0usize);
            while !flag.load(Ordering::Relaxed) {
                let len: usize = redis::cmd("LLEN").arg(&list).query(&mut conn).unwrap();
                max = max.max(len);
                samples += 1;
            }
            (max, samples)
        });
        Sampler {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

/// Pops with `BLPOP` at about `per_second` until it has `want` elements.
fn slow_worker(
    redis: &RedisServer,
    list: &str,
    per_second: u64,
    want: usize,
) -> JoinHandle<Vec<Vec<u8>>> {
    let mut conn = redis.conn();
    let list = list.to_string();
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut got = Vec::with_capacity(want);
        let deadline = started + Duration::from_secs(120);
        while got.len() < want && Instant::now() < deadline {
            let popped: Option<(String, Vec<u8>)> = redis::cmd("BLPOP")
                .arg(&list)
                .arg(1)
                .query(&mut conn)
                .unwrap();
            if let Some((_, value)) = popped {
                got.push(value);
            }
            // Keep to the rate: the n-th pop happens no earlier than n / rate after the start.
            let due = started + Duration::from_micros(got.len() as u64 * 1_000_000 / per_second);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        got
    })
}

/// The config of every bridge here: `topics` on `redis`, full lists checked every 20 ms.
fn capped_config(broker: &Broker, redis: &RedisServer, group: &str, topics: &str) -> Config {
    Config::new(broker, redis, group, topics)
        .sections("[flow]\ncheck_interval_ms = 20")
        // A member killed with -9 holds its partitions until its session times out; librdkafka's
        // 45 s default would eat most of a test's deadline after each kill.
        .kafka_properties("\"session.timeout.ms\" = \"10000\"")
}

/// A fresh topic of `partitions`, its list, and a directory for the bridge's config.
struct Fixture {
    topic: String,
    list: String,
    dir: tempfile::TempDir,
}

/// Creates a topic named after `prefix` whose list is capped as `entry` says (`cap = 50`), and
/// returns it with its [`capped_config`] (group = topic) for the test to finish and write.
fn capped_topic(
    broker: &Broker,
    redis: &RedisServer,
    prefix: &str,
    partitions: i32,
    entry: &str,
) -> (Fixture, Config) {
    let topic = unique(prefix);
    broker.create_topic(&topic, partitions);
    let config = capped_config(
        broker,
        redis,
        &topic,
        &format!(r#"[{{ name = "{topic}", {entry} }}]"#),
    );
    let fixture = Fixture {
        list: format!("queues:{topic}"),
        topic,
        dir: tempfile::tempdir().unwrap(),
    };
    (fixture, config)
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

#[test]
fn slow_worker_never_sees_more_than_the_cap() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let partitions = 4;
    let cap = 50;
    let (Fixture { topic, list, dir }, config) =
        capped_topic(broker, &redis, "cap", partitions, &format!("cap = {cap}"));
    config.write(dir.path(), "k2r.toml");
    let sampler = Sampler::start(&redis, &list);
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let total = 20_000;
    let worker = slow_worker(&redis, &list, 4_000, total);
    let produced = broker.produce_numbered(&topic, partitions, 0, total);
    let popped = worker.join().unwrap();
    let (max, samples) = sampler.finish();

    assert_eq!(popped.len(), total, "the worker received every message");
    assert!(
        max <= cap,
        "LLEN reached {max} > cap {cap} ({samples} samples)"
    );
    assert!(samples > 1000, "the sampler ran ({samples} samples)");
    // Every message exactly as produced, in order per partition.
    let tally = Tally::new(&produced, &popped).assert_complete();
    assert_eq!(tally.duplicated, 0, "no duplicates");

    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit(STOP_BOUND).success());
    let log = bridge.log_text();
    assert!(
        count(&log, "list full: partition paused") > 0,
        "the partitions paused: {log}"
    );
    assert!(count(&log, "list drained: partition resumed") > 0);
    assert_eq!(
        count(&log, "partitions assigned"),
        1,
        "one assignment, no rebalance"
    );
    assert_eq!(
        count(&log, "partitions revoked"),
        1,
        "revoked only at the final stop"
    );
    broker.assert_committed_to_end(
        &topic,
        &topic,
        partitions,
        "everything delivered is committed",
    );
}

#[test]
fn two_instances_share_one_capped_list() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let base = unique("shared");
    let (a, b) = (format!("{base}-a"), format!("{base}-b"));
    let list = format!("shared:{base}");
    let cap = 30;
    let dir = tempfile::tempdir().unwrap();
    let mut bridges = Vec::new();
    for topic in [&a, &b] {
        broker.create_topic(topic, 2);
        let name = format!("{topic}.toml");
        capped_config(
            broker,
            &redis,
            topic,
            &format!(r#"[{{ name = "{topic}", list = "{list}", cap = {cap} }}]"#),
        )
        .write(dir.path(), &name);
        bridges.push(Bridge::start(dir.path(), &["--config", &name]));
    }
    for bridge in &bridges {
        bridge.wait_assigned();
    }
    let sampler = Sampler::start(&redis, &list);
    let per_topic = 3_000;
    let worker = slow_worker(&redis, &list, 3_000, 2 * per_topic);
    let mut produced = broker.produce_numbered(&a, 2, 0, per_topic);
    produced.extend(broker.produce_numbered(&b, 2, 0, per_topic));
    let popped = worker.join().unwrap();
    let (max, _) = sampler.finish();
    assert!(
        max <= cap,
        "LLEN reached {max} > cap {cap} with two instances pushing"
    );
    // Every message exactly as produced, in order per partition.
    Tally::new(&produced, &popped).assert_complete();
    assert_eq!(popped.len(), produced.len());
    for mut bridge in bridges {
        bridge.signal(libc::SIGTERM);
        assert!(bridge.wait_exit(STOP_BOUND).success());
        assert!(count(&bridge.log_text(), "list full: partition paused") > 0);
    }
}

#[test]
fn stream_resumes_by_itself_after_workers_stop() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let partitions = 3;
    let cap = 100;
    let (Fixture { topic, list, dir }, config) = capped_topic(
        broker,
        &redis,
        "stall",
        partitions,
        &format!("cap = {cap}, low_water = 10"),
    );
    config.write(dir.path(), "k2r.toml");
    let produced = broker.produce_numbered(&topic, partitions, 0, 5_000);
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);

    // No worker: the list fills to the cap and stays there while the partitions are paused.
    wait_until("the list is full", Duration::from_secs(60), || {
        redis.llen(&list) == cap
    });
    wait_until("every partition paused", Duration::from_secs(30), || {
        count(&bridge.log_text(), "list full: partition paused") >= partitions as usize
    });
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert_eq!(
            redis.llen(&list),
            cap,
            "the list stays at its cap while nobody pops"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(bridge.is_running());

    // Workers come back: everything arrives, in order, once.
    let mut popped: Vec<Vec<u8>> = Vec::new();
    let mut conn = redis.conn();
    wait_until("every message popped", Duration::from_secs(60), || {
        let batch: Option<Vec<Vec<u8>>> = redis::cmd("LPOP")
            .arg(&list)
            .arg(500)
            .query(&mut conn)
            .unwrap();
        popped.extend(batch.unwrap_or_default());
        popped.len() >= produced.len()
    });
    assert_eq!(popped.len(), produced.len(), "no duplicates");
    // Every message exactly as produced, in order per partition.
    Tally::new(&produced, &popped).assert_complete();
    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit(STOP_BOUND).success());
    assert_eq!(
        count(&bridge.log_text(), "partitions assigned"),
        1,
        "no rebalance while paused"
    );
}

/// Exactly-once and the cap together: a partly pushed batch records exactly how far it got, so
/// crashes while partitions are paused neither lose nor repeat a message, and the cap still holds.
#[test]
fn capped_exactly_once_survives_crashes() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let partitions = 4;
    let cap = 40;
    let (Fixture { topic, list, dir }, config) =
        capped_topic(broker, &redis, "capeo", partitions, &format!("cap = {cap}"));
    config
        .delivery("exactly-once")
        // Each restart takes over the killed instance's membership at once (static membership),
        // instead of waiting for the group to expire it.
        .kafka_properties(&format!("\"group.instance.id\" = \"{topic}\""))
        .write(dir.path(), "k2r.toml");
    let total = 6_000;
    let produced = broker.produce_numbered(&topic, partitions, 0, total);
    let sampler = Sampler::start(&redis, &list);
    let worker = slow_worker(&redis, &list, 3_000, total);
    for _ in 0..2 {
        let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
        wait_until(
            "partitions paused on the full list",
            Duration::from_secs(60),
            || count(&bridge.log_text(), "list full: partition paused") > 0,
        );
        bridge.kill9();
    }
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    let popped = worker.join().unwrap();
    let (max, _) = sampler.finish();
    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit(STOP_BOUND).success());
    assert!(max <= cap, "LLEN reached {max} > cap {cap}");
    assert_eq!(
        redis.llen(&list),
        0,
        "nothing arrived after the worker had everything"
    );
    // Every message exactly as produced, in order per partition.
    let tally = Tally::new(&produced, &popped).assert_complete();
    assert_eq!(popped.len(), total, "every message once");
    assert_eq!(tally.duplicated, 0, "no duplicates");
}
