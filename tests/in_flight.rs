//! Several batches of one partition in flight (`batch.in_flight`) while Redis is killed: `kill -9`
//! of a durable Redis (AOF, `appendfsync always`) with full windows on the wire, restarted, three
//! times. Nothing is missing, each partition keeps its order, and exactly-once duplicates nothing.
//!
//! The bridge starts on a backlog, so every lane sends whole windows of small batches from the
//! first moment; `scripts/faults.sh` prints the rows (docs/reliability.md).

mod common;

use std::time::Duration;

use common::*;

/// Two partitions, each with a backlog of many small batches.
const PARTITIONS: i32 = 2;
const PER_PARTITION: usize = 12_000;
const KILLS: usize = 3;

fn redis_killed_with_windows_in_flight(delivery: &str) -> Tally {
    let broker = Broker::shared();
    let mut redis = RedisServer::start_durable();
    let topic = unique("inflight");
    broker.create_topic(&topic, PARTITIONS);
    let produced =
        broker.produce_numbered(&topic, PARTITIONS, 0, PER_PARTITION * PARTITIONS as usize);
    let dir = tempfile::tempdir().unwrap();
    Config::new(broker, &redis, &topic, &toml_list(&[&topic]))
        .delivery(delivery)
        .max_messages(50)
        .in_flight(8)
        .write(dir.path(), "k2r.toml");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    let list = format!("queues:{topic}");
    let total = produced.len();
    for kill in 1..=KILLS {
        // Killed while the lanes still have most of their backlog to push: windows on the wire.
        let at = total * kill / (KILLS + 2);
        wait_until("the lists fill", Duration::from_secs(120), || {
            redis.llen(&list) >= at
        });
        redis.kill();
        std::thread::sleep(Duration::from_millis(300));
        redis.restart();
    }
    wait_until("every message delivered", Duration::from_secs(180), || {
        let distinct: std::collections::HashSet<Vec<u8>> = redis.list(&list).into_iter().collect();
        distinct.len() >= total
    });
    bridge.signal(libc::SIGTERM);
    assert!(
        bridge.wait_exit(Duration::from_secs(15)).success(),
        "clean stop"
    );
    let log = bridge.log_text();
    assert!(
        log.contains("sending again from the first batch that did not land"),
        "no kill met a window in flight:\n{log}"
    );
    for warning in ["fence does not hold", "records another position"] {
        assert!(
            !log.contains(warning),
            "a refusal behind an earlier batch is neither a fence refusal nor another position:\n{log}"
        );
    }
    Tally::new(&produced, &redis.list(&list))
        .report(
            &format!("Redis kill -9 ×{KILLS} (AOF always) with 8 batches per partition in flight"),
            delivery,
        )
        .assert_complete()
}

#[test]
fn redis_killed_with_windows_in_flight_at_least_once() {
    let tally = redis_killed_with_windows_in_flight("at-least-once");
    assert_eq!(tally.produced, PER_PARTITION * PARTITIONS as usize);
}

#[test]
fn redis_killed_with_windows_in_flight_exactly_once() {
    let tally = redis_killed_with_windows_in_flight("exactly-once");
    assert_eq!(tally.duplicated, 0, "{tally:?}");
    assert_eq!(tally.delivered, tally.produced, "{tally:?}");
}
