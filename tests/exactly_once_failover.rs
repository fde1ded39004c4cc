//! Exactly-once through Redis failovers (part of the chaos suite): a Sentinel master and a Cluster
//! master are `kill -9`ed mid-stream, without the WAIT guard, while their replica is frozen
//! (SIGSTOP) so that it misses the last half second of writes. Those writes vanish with the master,
//! together with their recorded offsets, so the lanes are refused, seek back and Kafka delivers the
//! messages again: nothing may be missing, and no message may be there twice.
//!
//! One more topic receives its last messages only while the replica is frozen, and nothing after
//! the failover: no push of its lanes is refused, so its lost messages come back only because the
//! lanes re-read their offset records when the master changes.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;

const STOP_BOUND: Duration = Duration::from_secs(15);
const PER_TOPIC: usize = 3_000;
const IDLE_PARTITIONS: i32 = 2;
/// Messages of the idle topic delivered before the replica is frozen, and while it is.
const IDLE_BEFORE: usize = 100;
const IDLE_LOST: usize = 40;

/// Produces `PER_TOPIC` numbered messages into each topic, paced, from a background thread.
fn produce_paced(
    broker: &Broker,
    topics: Vec<(String, i32)>,
) -> std::thread::JoinHandle<Vec<String>> {
    let address = broker.address.clone();
    std::thread::spawn(move || {
        let broker = Broker { address };
        let mut produced = Vec::new();
        let chunk = 250;
        for start in (0..PER_TOPIC).step_by(chunk) {
            for (t, p) in &topics {
                produced.extend(broker.produce_numbered(
                    t,
                    *p,
                    start,
                    chunk.min(PER_TOPIC - start),
                ));
            }
            std::thread::sleep(Duration::from_millis(40));
        }
        produced
    })
}

fn failover_exactly_once(redis: &mut dyn Topology, name: &str) {
    let broker = Broker::shared();
    let base = unique(name);
    let topics = broker.create_topics(&base, &[3, 3, 2]);
    let mut names: Vec<String> = topics.iter().map(|(t, _)| t.clone()).collect();
    let mut lists: Vec<String> = names.iter().map(|t| format!("queues:{t}")).collect();
    // The idle topic's list must live on the master that is killed (the first list's).
    let idle = (0..)
        .map(|i| format!("{base}-idle{i}"))
        .find(|t| redis.replica_port(&format!("queues:{t}")) == redis.replica_port(&lists[0]))
        .unwrap();
    broker.create_topic(&idle, IDLE_PARTITIONS);
    names.push(idle.clone());
    lists.push(format!("queues:{idle}"));
    let idle_list = lists.last().unwrap().clone();
    let mut idle_produced = broker.produce_numbered(&idle, IDLE_PARTITIONS, 0, IDLE_BEFORE);
    let dir = tempfile::tempdir().unwrap();
    Config::new(broker, &*redis, &base, &toml_list(&names))
        .delivery("exactly-once")
        // The failovers here must lose writes (Sentinel would otherwise guard pushes with WAIT).
        .redis_settings("connect_timeout_ms = 1000\nwait_replicas = 0")
        .write(dir.path(), "k2r.toml");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let producer = produce_paced(broker, topics.clone());
    let total = PER_TOPIC * topics.len();
    wait_until(
        "a third of the stream is in Redis",
        Duration::from_secs(120),
        || redis.total_len(&lists).unwrap_or(0) >= total / 3,
    );

    // Freeze the replica and cut its link (so nothing more reaches it, not even through socket
    // buffers), let the master take writes for half a second, then kill the master: the promoted
    // replica lacks those writes and their recorded offsets.
    let replica = redis.replica_port(&lists[0]);
    redis.signal(replica, libc::SIGSTOP);
    redis.cut_replication(&lists[0]);
    std::thread::sleep(Duration::from_millis(500)); // writes the replica will never see
    idle_produced.extend(broker.produce_numbered(&idle, IDLE_PARTITIONS, IDLE_BEFORE, IDLE_LOST));
    wait_until(
        "the idle topic's last messages are on the master",
        Duration::from_secs(30),
        || redis.total_len(std::slice::from_ref(&idle_list)) == Some(IDLE_BEFORE + IDLE_LOST),
    );
    let killed_at = Instant::now();
    let old = redis.kill_master(&lists[0]);
    redis.signal(replica, libc::SIGCONT);
    wait_until("a replica was promoted", Duration::from_secs(60), || {
        redis.failed_over(&lists[0], old)
    });
    eprintln!(
        "{name}: new master {:.1} s after the kill",
        killed_at.elapsed().as_secs_f64()
    );
    redis.restart(old);

    let mut produced = producer.join().unwrap();
    produced.extend(idle_produced);
    // Exactly-once: the total length reaches the count produced only if nothing is missing (or
    // something doubled, which the tally below catches).
    wait_until("every message delivered", Duration::from_secs(180), || {
        redis.total_len(&lists).unwrap_or(0) >= produced.len()
    });
    bridge.signal(libc::SIGTERM);
    assert!(
        bridge.wait_exit(STOP_BOUND).success(),
        "{}",
        bridge.log_text()
    );

    let mut elements = Vec::new();
    let mut per_list = HashMap::new();
    for l in &lists {
        let got = redis.list(l);
        per_list.insert(l.clone(), got.len());
        elements.extend(got);
    }
    let tally = Tally::new(&produced, &elements)
        .report(
            &format!("{name}: master kill -9, replica lagging, no WAIT"),
            "exactly-once",
        )
        .assert_sound();
    // The counter behind the `kafka2redis_refused_batches` metric, as the stop line reports it
    // (the warning itself is rate-limited, so the log shows fewer).
    let log = bridge.log_text();
    let refused: usize = log
        .split("refused_batches=")
        .nth(1)
        .and_then(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    eprintln!(
        "chaos: exactly-once: {name} failover (no WAIT): {tally:?}; batches refused and re-read: \
         {refused}"
    );
    // What the failover lost comes back either way: a push refused by the record, or (with a
    // window in flight, whose failed push is re-sent after the record is read again) the re-check
    // every exactly-once lane makes when the master changes.
    assert!(
        (refused > 0 && log.contains("Redis records another position"))
            || log.contains("after a master change Redis records another position"),
        "{name}: the failover lost no writes, so refusal and re-reading went untested"
    );
    let tally = tally.assert_complete();
    assert_eq!(
        tally.duplicated, 0,
        "{name}: duplicates after the failover ({per_list:?})"
    );
    assert_eq!(tally.distinct, tally.produced);
    assert_eq!(
        redis.list(&idle_list).len(),
        IDLE_BEFORE + IDLE_LOST,
        "{name}: the idle topic's lost messages came back once"
    );
    // They came back because its lanes re-read their records (they had nothing more to push).
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("topic={idle}")) && l.contains("after a master change")),
        "{name}: no lane of the idle topic re-read its record:\n{log}"
    );
}

#[test]
fn sentinel_failover_exactly_once() {
    let mut group = SentinelGroup::start(Security::default());
    group.wait_healthy(Duration::from_secs(60));
    failover_exactly_once(&mut group, "eo-sentinel");
}

#[test]
fn cluster_failover_exactly_once() {
    let mut cluster = Cluster::start(Security::default());
    cluster.wait_healthy(Duration::from_secs(60));
    failover_exactly_once(&mut cluster, "eo-cluster");
}
