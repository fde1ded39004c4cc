//! The chaos suite: crashes, rebalance storms, a Redis crash and a broker restart, each checked for
//! exactly-once delivery (and, for contrast, at-least-once runs report their duplicates).
//!
//! Short by default (CI); `K2R_CHAOS_LONG=1` runs the long version (100,000 messages, 10 kills).
//! `scripts/faults.sh` runs it with the other fault tests and prints the table `docs/reliability.md` records.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;

const STOP_BOUND: Duration = Duration::from_secs(15);

fn long() -> bool {
    std::env::var("K2R_CHAOS_LONG").is_ok_and(|v| v == "1")
}

/// 3 topics, 8 partitions in all.
const LAYOUT: [i32; 3] = [3, 3, 2];

struct Setup {
    topics: Vec<(String, i32)>,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(broker: &Broker, redis: &RedisServer, name: &str, delivery: &str) -> Setup {
        let base = unique(name);
        let topics = broker.create_topics(&base, &LAYOUT);
        let names: Vec<&str> = topics.iter().map(|(t, _)| t.as_str()).collect();
        let dir = tempfile::tempdir().unwrap();
        Config::new(broker, redis, &base, &toml_list(&names))
            .delivery(delivery)
            .write(dir.path(), "k2r.toml");
        Setup { topics, dir }
    }

    fn start(&self) -> Bridge {
        Bridge::start(self.dir.path(), &["--config", "k2r.toml"])
    }

    /// Produces `per_topic` numbered messages into every topic from a background thread, in chunks,
    /// so that the bridge is killed and restarted while messages keep arriving.
    fn produce_in_background(&self, broker: &Broker, per_topic: usize) -> Producer {
        let address = broker.address.clone();
        let topics = self.topics.clone();
        let produced: Arc<Mutex<HashMap<String, Vec<String>>>> = Default::default();
        let done = Arc::new(AtomicBool::new(false));
        let (out, flag) = (produced.clone(), done.clone());
        let handle = std::thread::spawn(move || {
            let broker = Broker { address };
            let chunk = 500;
            let mut start = 0;
            while start < per_topic {
                let n = chunk.min(per_topic - start);
                for (t, p) in &topics {
                    let values = broker.produce_numbered(t, *p, start, n);
                    out.lock()
                        .unwrap()
                        .entry(t.clone())
                        .or_default()
                        .extend(values);
                }
                start += n;
                std::thread::sleep(Duration::from_millis(30));
            }
            flag.store(true, Ordering::Relaxed);
        });
        Producer {
            produced,
            done,
            handle: Some(handle),
        }
    }

    fn lists(&self) -> Vec<(String, String)> {
        self.topics
            .iter()
            .map(|(t, _)| (t.clone(), format!("queues:{t}")))
            .collect()
    }
}

struct Producer {
    produced: Arc<Mutex<HashMap<String, Vec<String>>>>,
    done: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Producer {
    fn is_done(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }

    fn finish(mut self) -> HashMap<String, Vec<String>> {
        self.handle.take().unwrap().join().unwrap();
        self.produced.lock().unwrap().clone()
    }
}

/// What each topic's list holds against what was produced into the topic.
fn tally(
    redis: &RedisServer,
    setup: &Setup,
    produced: &HashMap<String, Vec<String>>,
) -> BTreeMap<String, Tally> {
    setup
        .lists()
        .into_iter()
        .map(|(topic, list)| {
            let tally = Tally::new(&produced[&topic], &redis.list(&list)).assert_sound();
            (topic, tally)
        })
        .collect()
}

fn print(scenario: &str, report: &BTreeMap<String, Tally>) {
    eprintln!("chaos: {scenario}");
    eprintln!(
        "chaos:   {:<40} {:>9} {:>9} {:>8} {:>10}",
        "topic", "produced", "delivered", "missing", "duplicated"
    );
    for (topic, c) in report {
        eprintln!(
            "chaos:   {topic:<40} {:>9} {:>9} {:>8} {:>10}",
            c.produced,
            c.delivered,
            c.missing.len(),
            c.duplicated
        );
    }
}

/// Waits until every produced message is in Redis, then stops the bridges cleanly and tallies.
fn settle(
    redis: &RedisServer,
    setup: &Setup,
    producer: Producer,
    bridges: Vec<Bridge>,
    scenario: &str,
) -> BTreeMap<String, Tally> {
    wait_until("the producer finished", Duration::from_secs(180), || {
        producer.is_done()
    });
    let produced = producer.finish();
    let total: usize = produced.values().map(Vec::len).sum();
    wait_until("every message delivered", Duration::from_secs(180), || {
        let distinct: usize = setup
            .lists()
            .iter()
            .map(|(_, list)| {
                redis
                    .list(list)
                    .into_iter()
                    .collect::<std::collections::HashSet<_>>()
                    .len()
            })
            .sum();
        distinct >= total
    });
    for mut bridge in bridges {
        bridge.signal(libc::SIGTERM);
        assert!(bridge.wait_exit(STOP_BOUND).success(), "clean stop");
    }
    let report = tally(redis, setup, &produced);
    print(scenario, &report);
    let all_produced: Vec<String> = produced.values().flatten().cloned().collect();
    let elements: Vec<Vec<u8>> = setup
        .lists()
        .iter()
        .flat_map(|(_, list)| redis.list(list))
        .collect();
    let (delivery, what) = scenario.split_once(": ").unwrap_or(("", scenario));
    Tally::new(&all_produced, &elements).report(what, delivery);
    report
}

fn assert_exactly_once(report: &BTreeMap<String, Tally>) {
    for (topic, c) in report {
        assert!(c.missing.is_empty(), "{topic}: {c:?}");
        assert_eq!(c.duplicated, 0, "{topic}: {c:?}");
        assert_eq!(c.delivered, c.produced, "{topic}: {c:?}");
    }
}

fn assert_nothing_missing(report: &BTreeMap<String, Tally>) {
    for (topic, c) in report {
        assert!(c.missing.is_empty(), "{topic}: {c:?}");
    }
}

/// A small deterministic generator for kill moments; the seed is printed so a run can be repeated.
struct Moments(u64);

impl Moments {
    fn new() -> Moments {
        let seed = std::env::var("K2R_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("chaos: seed {seed} (K2R_CHAOS_SEED repeats it)");
        Moments(seed | 1)
    }

    /// A duration in `[from, to)` milliseconds.
    fn between(&mut self, from: u64, to: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(from + self.0 % (to - from))
    }
}

fn kill_9_repeatedly(delivery: &str) -> BTreeMap<String, Tally> {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let setup = Setup::new(broker, &redis, "kill", delivery);
    let (per_topic, kills) = if long() { (33_334, 10) } else { (4_000, 5) };
    let producer = setup.produce_in_background(broker, per_topic);
    let mut moments = Moments::new();
    for _ in 0..kills {
        let mut bridge = setup.start();
        // The moment of the crash is the point of the test: a random instant after start.
        std::thread::sleep(moments.between(500, 2500));
        bridge.kill9();
    }
    let bridge = setup.start();
    settle(
        &redis,
        &setup,
        producer,
        vec![bridge],
        &format!("{delivery}: kill -9 x{kills}"),
    )
}

#[test]
fn kill_9_repeatedly_exactly_once() {
    assert_exactly_once(&kill_9_repeatedly("exactly-once"));
}

#[test]
fn kill_9_repeatedly_at_least_once_reports_duplicates() {
    assert_nothing_missing(&kill_9_repeatedly("at-least-once"));
}

fn rebalance_storm(delivery: &str) -> BTreeMap<String, Tally> {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let setup = Setup::new(broker, &redis, "storm", delivery);
    let per_topic = if long() { 33_334 } else { 4_000 };
    let mut bridges: Vec<Bridge> = (0..3).map(|_| setup.start()).collect();
    let producer = setup.produce_in_background(broker, per_topic);
    let mut moments = Moments::new();
    let until = Instant::now()
        + if long() {
            Duration::from_secs(60)
        } else {
            Duration::from_secs(12)
        };
    let mut round = 0;
    while Instant::now() < until {
        std::thread::sleep(moments.between(1000, 3000));
        let i = round % bridges.len();
        if round % 2 == 0 {
            bridges[i].kill9();
        } else {
            bridges[i].signal(libc::SIGTERM);
            bridges[i].wait_exit(STOP_BOUND);
        }
        std::thread::sleep(moments.between(200, 1000));
        bridges[i] = setup.start();
        round += 1;
    }
    settle(
        &redis,
        &setup,
        producer,
        bridges,
        &format!("{delivery}: rebalance storm, {round} stops of 3 instances"),
    )
}

#[test]
fn rebalance_storm_exactly_once() {
    assert_exactly_once(&rebalance_storm("exactly-once"));
}

#[test]
fn redis_kill_9_with_aof_exactly_once() {
    let broker = Broker::shared();
    let mut redis = RedisServer::start_durable();
    let setup = Setup::new(broker, &redis, "rkill", "exactly-once");
    let bridge = setup.start();
    let producer = setup.produce_in_background(broker, if long() { 33_334 } else { 4_000 });
    let lists = setup.lists();
    wait_until("messages are flowing", Duration::from_secs(60), || {
        redis.llen(&lists[0].1) > 500
    });
    redis.kill();
    std::thread::sleep(Duration::from_secs(1)); // Redis stays down across a few retries
    redis.restart();
    let report = settle(
        &redis,
        &setup,
        producer,
        vec![bridge],
        "exactly-once: Redis kill -9 (AOF always) and restart",
    );
    assert_exactly_once(&report);
}

#[test]
fn broker_restart_exactly_once() {
    let mut dedicated = Tansu::start();
    let redis = RedisServer::start();
    let setup = Setup::new(&dedicated.broker, &redis, "brestart", "exactly-once");
    let bridge = setup.start();
    let per_topic = if long() { 33_334 } else { 3_000 };
    let first = setup.produce_in_background(&dedicated.broker, per_topic);
    wait_until("first half produced", Duration::from_secs(120), || {
        first.is_done()
    });
    let mut produced = first.finish();
    let lists = setup.lists();
    wait_until("messages are flowing", Duration::from_secs(60), || {
        redis.llen(&lists[0].1) > 100
    });
    dedicated.kill();
    std::thread::sleep(Duration::from_secs(1)); // the broker stays down for a moment
    dedicated.restart();
    // The second half, numbered after the first.
    let second = Broker {
        address: dedicated.broker.address.clone(),
    };
    for (t, p) in &setup.topics {
        let more = second.produce_numbered(t, *p, per_topic, per_topic);
        produced.get_mut(t).unwrap().extend(more);
    }
    let done = Producer {
        produced: Arc::new(Mutex::new(produced)),
        done: Arc::new(AtomicBool::new(true)),
        handle: Some(std::thread::spawn(|| {})),
    };
    let report = settle(
        &redis,
        &setup,
        done,
        vec![bridge],
        "exactly-once: Tansu broker kill -9 and restart",
    );
    assert_exactly_once(&report);
}
