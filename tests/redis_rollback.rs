//! A Redis that restarts from an older snapshot (standalone, RDB only: Redis's default persistence)
//! hands back an older data set without a word. The bridge notices by its continuity marker:
//! exactly-once partitions go back with their records and deliver again what was lost — also a
//! partition that receives nothing afterwards — and at-least-once partitions are reported at error
//! level with the offsets that may be missing, and counted in a metric.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn redis_restarted_from_an_older_snapshot_is_noticed() {
    let broker = Broker::shared();
    let mut redis = RedisServer::start(); // no AOF: a restart loads the last RDB snapshot
    let base = unique("rollback");
    let (eo, alo) = (format!("{base}-eo"), format!("{base}-alo"));
    let partitions = 2;
    broker.create_topic(&eo, partitions);
    broker.create_topic(&alo, partitions);
    let http = free_port();
    let dir = tempfile::tempdir().unwrap();
    let topics =
        format!(r#"[{{ name = "{eo}", delivery = "exactly-once" }}, {{ name = "{alo}" }}]"#);
    Config::new(broker, &redis, &base, &topics).write(dir.path(), "k2r.toml");
    let http_arg = format!("127.0.0.1:{http}");
    let bridge = Bridge::start(
        dir.path(),
        &["--config", "k2r.toml", "--http", http_arg.as_str()],
    );
    bridge.wait_assigned();
    let (eo_list, alo_list) = (format!("queues:{eo}"), format!("queues:{alo}"));

    // Before the snapshot.
    let mut eo_sent = broker.produce_numbered(&eo, partitions, 0, 100);
    let mut alo_sent = broker.produce_numbered(&alo, partitions, 0, 100);
    wait_until(
        "the first 100 of each topic are in Redis",
        Duration::from_secs(30),
        || redis.llen(&eo_list) == 100 && redis.llen(&alo_list) == 100,
    );
    // The snapshot must hold a marker written after those 100 were acknowledged, so that the
    // positions the bridge noted for it are exactly where the snapshot stands.
    let marker = || -> u64 {
        let mut conn = redis.conn();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("kafka2redis:continuity:*")
            .query(&mut conn)
            .unwrap();
        keys.first().map_or(0, |k| {
            redis::cmd("GET")
                .arg(k)
                .query::<Option<u64>>(&mut conn)
                .unwrap()
                .unwrap_or(0)
        })
    };
    let before = marker();
    wait_until(
        "the bridge advanced its marker twice",
        Duration::from_secs(10),
        || marker() >= before + 2,
    );
    let _: () = redis::cmd("SAVE").query(&mut redis.conn()).unwrap();

    // After it: acknowledged by Redis and committed in Kafka, then lost with the restart.
    eo_sent.extend(broker.produce_numbered(&eo, partitions, 100, 50));
    alo_sent.extend(broker.produce_numbered(&alo, partitions, 100, 50));
    wait_until(
        "all 150 of each topic are in Redis",
        Duration::from_secs(30),
        || redis.llen(&eo_list) == 150 && redis.llen(&alo_list) == 150,
    );
    wait_until(
        "the at-least-once topic is committed to its end",
        Duration::from_secs(30),
        || {
            broker
                .committed(&base, &alo, partitions)
                .iter()
                .map(|c| c.unwrap_or(0))
                .sum::<i64>()
                == 150
        },
    );
    redis.kill();
    redis.restart();
    assert_eq!(
        redis.llen(&alo_list),
        100,
        "the restart loaded the older snapshot"
    );

    // Nothing more is produced: the exactly-once partitions must come back by themselves.
    wait_until(
        "the exactly-once list holds all 150 again",
        Duration::from_secs(30),
        || redis.llen(&eo_list) >= 150,
    );
    let eo_cost = Tally::new(&eo_sent, &redis.list(&eo_list)).report(
        "Redis restarted from an older RDB snapshot, nothing produced after",
        "exactly-once",
    );
    assert_eq!((eo_cost.missing.len(), eo_cost.duplicated), (0, 0));

    // At-least-once: detected, counted, and the missing offsets named.
    wait_until(
        "the rollback is counted in /metrics",
        Duration::from_secs(30),
        || {
            http_get(http, "/metrics").is_some_and(|(_, body)| {
                body.lines().any(|l| {
                    l.starts_with("kafka2redis_redis_rollbacks_total") && !l.ends_with(" 0")
                })
            })
        },
    );
    let alo_cost = Tally::new(&alo_sent, &redis.list(&alo_list)).report(
        "Redis restarted from an older RDB snapshot (detected, logged, counted)",
        "at-least-once",
    );
    assert_eq!(alo_cost.missing.len(), 50, "what the snapshot lacked");
    let log = bridge.log_text();
    assert!(
        log.contains("Redis lost acknowledged writes"),
        "the rollback is logged:\n{log}"
    );
    for p in 0..partitions {
        // Each partition got 25 messages after the snapshot: offsets 50..=74.
        let line = log
            .lines()
            .find(|l| {
                l.contains("may be missing from the list")
                    && l.contains(&format!("topic={alo}"))
                    && l.contains(&format!("partition={p}"))
            })
            .unwrap_or_else(|| panic!("no missing-offsets line for partition {p}:\n{log}"));
        assert!(
            line.contains("from_offset=50") && line.contains("to_offset=74"),
            "partition {p}: {line}"
        );
    }
}

/// The same on a Redis Cluster, where each master loses data on its own: three masters without
/// replicas, RDB only; the master that goes back is not the first (a single marker would likely
/// live elsewhere). It is killed (`kill -9`) and restarted from its snapshot under the same node id
/// (its `nodes.conf` kept, so it takes its slots back); nothing is produced afterwards. Its
/// exactly-once list comes back whole; its at-least-once list is reported with the exact offsets
/// that went missing, and a list on another master is not reported.
#[test]
fn a_cluster_master_restarted_from_an_older_snapshot_is_noticed() {
    let broker = Broker::shared();
    let mut cluster = Cluster::start_without_replicas(Security::default());
    let base = unique("cluster-rollback");
    let first = cluster.nodes[0].port;
    let victim = *cluster
        .masters()
        .iter()
        .find(|&&port| port != first)
        .expect("three masters");
    // Topic names whose lists land on the victim (or, for the control, elsewhere).
    let named = |prefix: &str, on_victim: bool| -> String {
        (0..)
            .map(|i| format!("{base}-{prefix}{i}"))
            .find(|t| (cluster.master_for(&format!("queues:{t}")) == Some(victim)) == on_victim)
            .unwrap()
    };
    let (eo, alo, other) = (named("eo", true), named("alo", true), named("other", false));
    let partitions = 2;
    for topic in [&eo, &alo, &other] {
        broker.create_topic(topic, partitions);
    }
    let http = free_port();
    let dir = tempfile::tempdir().unwrap();
    let topics = format!(
        r#"[{{ name = "{eo}", delivery = "exactly-once" }}, {{ name = "{alo}" }}, {{ name = "{other}" }}]"#
    );
    Config::new(broker, &cluster, &base, &topics)
        .sections(&format!("[http]\naddress = \"127.0.0.1:{http}\""))
        .write(dir.path(), "k2r.toml");
    let bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let list = |topic: &str| format!("queues:{topic}");
    let len = |topic: &str| cluster.llen(&list(topic)).unwrap_or(0);

    let mut sent: Vec<Vec<String>> = [&eo, &alo, &other]
        .iter()
        .map(|t| broker.produce_numbered(t, partitions, 0, 100))
        .collect();
    wait_until(
        "the first 100 of each topic are in Redis",
        Duration::from_secs(60),
        || [&eo, &alo, &other].iter().all(|t| len(t) == 100),
    );
    // The victim's own marker must have advanced past those 100 before its snapshot.
    let victim_client = cluster.security.client(victim);
    let marker = || -> u64 {
        let Ok(mut conn) = victim_client.get_connection() else {
            return 0;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("kafka2redis:continuity:*")
            .query(&mut conn)
            .unwrap_or_default();
        assert!(keys.len() <= 1, "one marker per master: {keys:?}");
        keys.first().map_or(0, |k| {
            redis::cmd("GET")
                .arg(k)
                .query::<Option<u64>>(&mut conn)
                .ok()
                .flatten()
                .unwrap_or(0)
        })
    };
    let before = marker();
    wait_until(
        "the bridge advanced the victim's marker twice",
        Duration::from_secs(10),
        || before > 0 && marker() >= before + 2,
    );
    let _: () = redis::cmd("SAVE")
        .query(&mut victim_client.get_connection().unwrap())
        .unwrap();

    for (topic, sent) in [&eo, &alo, &other].iter().zip(&mut sent) {
        sent.extend(broker.produce_numbered(topic, partitions, 100, 50));
    }
    wait_until(
        "all 150 of each topic are in Redis",
        Duration::from_secs(60),
        || [&eo, &alo, &other].iter().all(|t| len(t) == 150),
    );
    wait_until(
        "the at-least-once topics are committed to their end",
        Duration::from_secs(60),
        || {
            [&alo, &other]
                .iter()
                .all(|t| broker.committed_to_end(&base, t, partitions))
        },
    );
    let index = cluster.node_index(victim);
    cluster.nodes[index].kill9();
    cluster.nodes[index].restart();
    cluster.wait_healthy(Duration::from_secs(60));
    let len = |topic: &str| cluster.llen(&list(topic)).unwrap_or(0);
    assert_eq!(len(&alo), 100, "the restart loaded the older snapshot");

    // Nothing more is produced: the exactly-once partitions come back by themselves.
    wait_until(
        "the exactly-once list holds all 150 again",
        Duration::from_secs(60),
        || len(&eo) >= 150,
    );
    let eo_cost = Tally::new(&sent[0], &cluster.list(&list(&eo)).unwrap()).report(
        "Redis Cluster master restarted from an older RDB snapshot, nothing produced after",
        "exactly-once",
    );
    assert_eq!((eo_cost.missing.len(), eo_cost.duplicated), (0, 0));
    wait_until(
        "the rollback is counted in /metrics",
        Duration::from_secs(30),
        || {
            http_get(http, "/metrics").is_some_and(|(_, body)| {
                body.lines().any(|l| {
                    l.starts_with("kafka2redis_redis_rollbacks_total") && !l.ends_with(" 0")
                })
            })
        },
    );
    let alo_cost = Tally::new(&sent[1], &cluster.list(&list(&alo)).unwrap()).report(
        "Redis Cluster master restarted from an older RDB snapshot (detected, logged, counted)",
        "at-least-once",
    );
    assert_eq!(alo_cost.missing.len(), 50, "what the snapshot lacked");
    let other_cost = Tally::new(&sent[2], &cluster.list(&list(&other)).unwrap());
    assert_eq!(other_cost.missing.len(), 0, "another master kept its list");

    let log = bridge.log_text();
    let victim_address = format!("127.0.0.1:{victim}");
    assert!(
        log.lines()
            .any(|l| l.contains("Redis lost acknowledged writes") && l.contains(&victim_address)),
        "the rollback names the master:\n{log}"
    );
    let missing_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("may be missing from the list"))
        .collect();
    for p in 0..partitions {
        // Each partition got 25 messages after the snapshot: offsets 50..=74.
        let line = missing_lines
            .iter()
            .find(|l| l.contains(&format!("topic={alo}")) && l.contains(&format!("partition={p}")))
            .unwrap_or_else(|| panic!("no missing-offsets line for partition {p}:\n{log}"));
        assert!(
            line.contains("from_offset=50") && line.contains("to_offset=74"),
            "partition {p}: {line}"
        );
    }
    assert!(
        !missing_lines
            .iter()
            .any(|l| l.contains(&format!("topic={other}"))),
        "a list on another master is not reported:\n{log}"
    );
}
