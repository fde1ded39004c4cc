//! `auto.offset.reset = error`: a partition whose position Kafka does not have (a commit past the
//! high watermark) or that has no committed offset is held — nothing delivered from it, its
//! committed offset untouched, one error line naming it and its offsets, `/readyz` not ready and a
//! metric counted — while the other partitions deliver. librdkafka's mock cluster hosts the group.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

#[test]
fn an_out_of_range_partition_is_held_with_an_error_never_reset() {
    let mock = MockBroker::start();
    let broker = &mock.broker;
    let redis = RedisServer::start();
    let topic = unique("reset-error");
    let group = unique("reset-error-group");
    let list = format!("queues:{topic}");
    mock.create_topic(&topic, 3);
    let mut produced = broker.produce_numbered(&topic, 3, 0, 300); // 100 per partition
                                                                   // Partition 0 committed past its end (offset 500 of 100), partition 1 inside, partition 2 never.
    let consumer = broker.consumer(&group);
    let mut commits = TopicPartitionList::new();
    commits
        .add_partition_offset(&topic, 0, Offset::Offset(500))
        .unwrap();
    commits
        .add_partition_offset(&topic, 1, Offset::Offset(0))
        .unwrap();
    consumer.commit(&commits, CommitMode::Sync).unwrap();
    drop(consumer);

    let http = free_port();
    let dir = tempfile::tempdir().unwrap();
    Config::new(broker, &redis, &group, &format!("[\"{topic}\"]"))
        .kafka_properties("\"auto.offset.reset\" = \"error\"")
        .sections(&format!("[http]\naddress = \"127.0.0.1:{http}\""))
        .write(dir.path(), "k2r.toml");
    let bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();

    wait_until(
        "partition 1 delivered its 100",
        Duration::from_secs(60),
        || redis.llen(&list) >= 100,
    );
    // More arrives on every partition: partition 1 takes it, the held ones do not.
    produced.extend(broker.produce_numbered(&topic, 3, 300, 60));
    wait_until("partition 1 delivered 120", Duration::from_secs(60), || {
        redis.llen(&list) >= 120
    });
    let readyz = || http_get(http, "/readyz").unwrap_or_default();
    wait_until(
        "/readyz names both held partitions",
        Duration::from_secs(30),
        || {
            let (_, body) = readyz();
            body.contains(&format!(
                "{topic}/0 out of range (offset 500; log start 0, high watermark 100;"
            )) && body.contains(&format!("{topic}/2 out of range (no committed offset;"))
        },
    );
    let (code, body) = readyz();
    assert_eq!(code, 503, "not ready while partitions are held: {body}");

    let log = bridge.log_text();
    let held_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("auto.offset.reset = error"))
        .collect();
    assert!(
        held_lines.iter().any(|l| l.contains(&format!(
            "partition {topic}/0 is held at offset 500, outside its log start 0 and high watermark 100;"
        ))),
        "the error names the partition and its offsets:\n{log}"
    );
    let metrics = http_get(http, "/metrics").expect("/metrics").1;
    assert!(
        metrics
            .lines()
            .any(|l| l == "kafka2redis_offset_resets_refused_total 2"),
        "counted once per held partition:\n{metrics}"
    );

    // Nothing from the held partitions reached the list, and their offsets were not reset.
    let elements = redis.list(&list);
    let from = |p: i32| {
        elements
            .iter()
            .filter(|e| String::from_utf8_lossy(e).contains(&format!("{topic}:{p}:")))
            .count()
    };
    assert_eq!((from(0), from(1), from(2)), (0, 120, 0));
    std::thread::sleep(Duration::from_secs(2)); // a few commit intervals
    let committed = broker.committed(&group, &topic, 3);
    assert_eq!(committed[0], Some(500), "the out-of-range commit is kept");
    assert_eq!(
        committed[2], None,
        "nothing committed for the partition never read"
    );
    let partition_1: Vec<String> = produced
        .iter()
        .filter(|v| v.contains(&format!("{topic}:1:")))
        .cloned()
        .collect();
    Tally::new(&partition_1, &elements).report(
        "auto.offset.reset = error: the partition in range, beside two held ones",
        "at-least-once",
    );
}
