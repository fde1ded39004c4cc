//! Safety that follows the live Redis topology, against real `redis-server` processes and the
//! shared Tansu broker: the WAIT guard turns on when a replica appears after the bridge started,
//! stays on while the bridge's ACL user may not read `INFO`, and is kept per master in a Cluster;
//! and a sentinel password given in a `redis://` URL appears in no log line, at debug level.
//!
//! The failover tests print a `fault:` row (see `Tally::report`).

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Messages per failover test: enough for the failover to land mid-stream at the pace of
/// [`Broker::produce_paced`], few enough to keep each test under a minute.
const MESSAGES: usize = 9_000;
const TOPICS: usize = 3;
const PARTITIONS: i32 = 2;
const STOP_BOUND: Duration = Duration::from_secs(15);

fn create_topics(broker: &Broker, prefix: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let topic = unique(&format!("{prefix}{i}"));
            broker.create_topic(&topic, PARTITIONS);
            topic
        })
        .collect()
}

fn lists(topics: &[String]) -> Vec<String> {
    topics.iter().map(|t| format!("queues:{t}")).collect()
}

/// Lines of `log` that contain `text`.
fn lines_with<'a>(log: &'a str, text: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(text)).collect()
}

/// Takes `command` (`-info`, `-cluster|nodes`) from the bridge's ACL user on each of `nodes`.
fn deny(security: &Security, nodes: &[Node], command: &str) {
    for node in nodes {
        let mut conn = security.client(node.port).get_connection().unwrap();
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(ACL_USER)
            .arg(command)
            .query::<()>(&mut conn)
            .unwrap();
    }
}

/// Streams [`MESSAGES`] through a bridge already running against `sentinels`, starts a planned
/// `SENTINEL FAILOVER` when a third is in Redis, waits until everything is committed and the group
/// is healthy again, and reports what the lists hold against what was produced.
fn planned_sentinel_failover(
    sentinels: &SentinelGroup,
    broker: &'static Broker,
    group: &str,
    topics: &[String],
    fault: &str,
) -> Tally {
    let lists = lists(topics);
    let producer = broker.produce_paced(topics.to_vec(), PARTITIONS, MESSAGES);
    wait_until(
        "a third of the stream is in Redis",
        Duration::from_secs(60),
        || sentinels.total_len(&lists).unwrap_or(0) >= MESSAGES / 3,
    );
    let old = sentinels.master_port().expect("the sentinels agree");
    sentinels.failover();
    wait_until("the replica is the master", Duration::from_secs(30), || {
        sentinels.master_port().is_some_and(|p| p != old)
    });
    let produced = producer.join().unwrap();
    broker.wait_committed(group, topics, PARTITIONS, Duration::from_secs(90));
    // The old master resynced as a replica: what it discarded is gone from every node.
    sentinels.wait_healthy(Duration::from_secs(60));
    let mut elements = Vec::new();
    for list in &lists {
        elements.extend(sentinels.list(list));
    }
    let tally = Tally::new(&produced, &elements).report(fault, "at-least-once");
    assert!(
        tally.missing.is_empty(),
        "{} of {} acknowledged messages missing after the failover, e.g. {:?}",
        tally.missing.len(),
        tally.produced,
        &tally.missing[..tally.missing.len().min(5)]
    );
    tally
}

/// The Sentinel master has no replica when the bridge starts, so pushes start unguarded. A replica
/// joins later: the guard must turn on by itself, so that a planned `SENTINEL FAILOVER` afterwards
/// loses nothing (decided once at start, the guard stayed off, and about 2,000 of 22,000
/// acknowledged messages were lost).
#[test]
fn sentinel_replica_that_joins_later_turns_the_guard_on() {
    let mut sentinels = SentinelGroup::start(Security::default());
    let broker = Broker::shared();
    // Take the replica away before the bridge starts.
    let master = sentinels.master_index();
    let replica = 1 - master;
    sentinels.nodes[replica].kill9();
    let master_port = sentinels.nodes[master].port;
    wait_until(
        "the master has no connected replica",
        Duration::from_secs(10),
        || connected_replicas(&sentinels.security, master_port) == Some(0),
    );

    let topics = create_topics(broker, "guard-joins", TOPICS);
    let group = unique("guard-joins-group");
    let dir = tempfile::tempdir().unwrap();
    topology_config(broker, &sentinels, &group, &topics).write(dir.path(), "k2r.toml");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    assert!(
        bridge
            .log_text()
            .contains("Sentinel master has no connected replica"),
        "the guard starts off:\n{}",
        bridge.log_text()
    );

    // The replica comes back (it restarts as a replica of the master) and resyncs.
    sentinels.nodes[replica].restart();
    sentinels.wait_healthy(Duration::from_secs(60));
    let joined = Instant::now();
    wait_until(
        "the bridge turns the WAIT guard on",
        Duration::from_secs(15),
        || {
            bridge
                .log_text()
                .contains("Sentinel master has a replica: each push waits for one")
        },
    );
    eprintln!(
        "guard on {:.1} s after the replica was healthy",
        joined.elapsed().as_secs_f64()
    );

    planned_sentinel_failover(
        &sentinels,
        broker,
        &group,
        &topics,
        "Sentinel: replica joined after the bridge started, then planned SENTINEL FAILOVER",
    );
    bridge.signal(libc::SIGTERM);
    assert!(
        bridge.wait_exit(STOP_BOUND).success(),
        "{}",
        bridge.log_text()
    );
}

const ACL_USER: &str = "bridge";
const ACL_PASSWORD: &str = "bridge-pw-41";

/// The bridge's ACL user may run everything but `INFO` (`+@all -info`): whether the master has a
/// replica cannot be read, which must count as "unknown" and keep the guard on — never as "no
/// replica" (then a planned failover lost about 1,900 of 22,000 acknowledged messages). Pushes
/// are acknowledged here, so the error about unacknowledged pushes is not logged.
#[test]
fn acl_user_without_info_keeps_the_guard_on() {
    let sentinels = SentinelGroup::start(Security {
        acl_user: Some((ACL_USER.into(), ACL_PASSWORD.into())),
        ..Security::default()
    });
    deny(&sentinels.security, &sentinels.nodes, "-info");
    let broker = Broker::shared();
    let topics = create_topics(broker, "guard-noinfo", TOPICS);
    let group = unique("guard-noinfo-group");
    let dir = tempfile::tempdir().unwrap();
    topology_config(broker, &sentinels, &group, &topics).write(dir.path(), "k2r.toml");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let log = bridge.log_text();
    assert!(
        log.contains("cannot read INFO replication on the Sentinel master"),
        "the guard stays on and says why:\n{log}"
    );
    assert!(
        !log.contains("has no connected replica"),
        "an unreadable INFO is not \"no replica\":\n{log}"
    );

    planned_sentinel_failover(
        &sentinels,
        broker,
        &group,
        &topics,
        "Sentinel: ACL user without INFO (+@all -info), planned SENTINEL FAILOVER",
    );
    bridge.signal(libc::SIGTERM);
    assert!(
        bridge.wait_exit(STOP_BOUND).success(),
        "{}",
        bridge.log_text()
    );
    let log = bridge.log_text();
    assert!(
        lines_with(&log, "pushes stay unacknowledged").is_empty(),
        "pushes were acknowledged, so no error about them:\n{log}"
    );
}

/// A topic whose list is served by the master on `port`.
fn topic_on(cluster: &Cluster, broker: &Broker, prefix: &str, port: u16) -> String {
    loop {
        let topic = unique(prefix);
        if cluster.master_for(&format!("queues:{topic}")) == Some(port) {
            broker.create_topic(&topic, PARTITIONS);
            return topic;
        }
    }
}

/// One Cluster master has no replica: the others must stay guarded (decided once for all
/// masters, one unreplicated master turned the guard off everywhere). Shown by freezing the
/// replica of a guarded master: pushes to it stop being committed, while pushes to the
/// unreplicated master go on; once the replica thaws, everything arrives and nothing is missing.
#[test]
fn cluster_master_without_replica_leaves_the_others_guarded() {
    let mut cluster = Cluster::start(Security::default());
    let broker = Broker::shared();
    let masters = cluster.masters();
    let (bare, guarded) = (masters[0], masters[1]);
    let bare_replica = cluster.replica_of(bare).expect("a replica");
    let guarded_replica = cluster.replica_of(guarded).expect("a replica");
    let index = cluster.node_index(bare_replica);
    cluster.nodes[index].kill9();
    wait_until(
        "the cluster marks the killed replica failed",
        Duration::from_secs(20),
        || cluster.sees_failed(bare, bare_replica),
    );

    let on_guarded = topic_on(&cluster, broker, "guard-cluster-on", guarded);
    let on_bare = topic_on(&cluster, broker, "guard-cluster-off", bare);
    let topics = vec![on_guarded.clone(), on_bare.clone()];
    let group = unique("guard-cluster-group");
    let dir = tempfile::tempdir().unwrap();
    topology_config(broker, &cluster, &group, &topics).write(dir.path(), "k2r.toml");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let log = bridge.log_text();
    let bare_line = lines_with(&log, "Cluster master has no replica");
    assert!(
        bare_line.len() == 1 && bare_line[0].contains(&format!(":{bare}")),
        "one warning, for the master without a replica:\n{log}"
    );
    assert_eq!(
        lines_with(&log, "Cluster master has a replica").len(),
        masters.len() - 1,
        "the other masters are guarded:\n{log}"
    );
    assert!(!log.contains("every Cluster master has a replica"), "{log}");

    let mut produced = Vec::new();
    produced.extend(broker.produce_numbered(&on_guarded, PARTITIONS, 0, 200));
    produced.extend(broker.produce_numbered(&on_bare, PARTITIONS, 0, 200));
    broker.wait_committed(&group, &topics, PARTITIONS, Duration::from_secs(30));

    // Freeze the guarded master's replica: its pushes are no longer acknowledged.
    let frozen = cluster.node_index(guarded_replica);
    cluster.nodes[frozen].signal(libc::SIGSTOP);
    produced.extend(broker.produce_numbered(&on_guarded, PARTITIONS, 200, 200));
    produced.extend(broker.produce_numbered(&on_bare, PARTITIONS, 200, 200));
    wait_until(
        "the unguarded master's pushes are committed",
        Duration::from_secs(30),
        || broker.committed_to_end(&group, &on_bare, PARTITIONS),
    );
    let held_since = Instant::now();
    while held_since.elapsed() < Duration::from_secs(3) {
        assert!(
            !broker.committed_to_end(&group, &on_guarded, PARTITIONS),
            "pushes to the guarded master were committed while its only replica was frozen:\n{}",
            bridge.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.nodes[frozen].signal(libc::SIGCONT);
    broker.wait_committed(&group, &topics, PARTITIONS, Duration::from_secs(60));

    let mut elements = Vec::new();
    for list in lists(&topics) {
        elements.extend(cluster.list(&list).expect("list readable"));
    }
    let tally = Tally::new(&produced, &elements).report(
        "Cluster: one master without a replica, another's replica frozen (WAIT guard per master)",
        "at-least-once",
    );
    assert!(tally.missing.is_empty(), "missing: {:?}", tally.missing);
    bridge.signal(libc::SIGTERM);
    assert!(
        bridge.wait_exit(STOP_BOUND).success(),
        "{}",
        bridge.log_text()
    );
}

const SENTINEL_PASSWORD: &str = "sentinel-pw-7730215";

/// A sentinel password given in the sentinels' `redis://` URLs (not as `sentinel_password`)
/// appears in no line the bridge writes, at debug level for every crate — also while a sentinel
/// is down and the bridge keeps trying to subscribe to it (each attempt is logged at debug level,
/// and each once showed the password). Kafka is a closed port: only the Redis side matters here.
#[test]
fn sentinel_password_in_url_is_never_logged() {
    let mut sentinels = SentinelGroup::start(Security {
        sentinel_password: Some(SENTINEL_PASSWORD.into()),
        ..Security::default()
    });
    let urls: Vec<String> = sentinels
        .sentinels
        .iter()
        .map(|s| format!("redis://:{SENTINEL_PASSWORD}@127.0.0.1:{}", s.port))
        .collect();
    let redis = format!(
        "[redis]\nmode = \"sentinel\"\nmaster_name = \"{MASTER_NAME}\"\naddresses = {}\n",
        toml_list(&urls)
    );
    let dir = tempfile::tempdir().unwrap();
    let mut bridge = bridge_without_kafka(dir.path(), &redis, "debug");
    // A sentinel goes away: the bridge tries to subscribe to it again, once a second.
    let down = sentinels.sentinels[2].port;
    sentinels.sentinels[2].kill9();
    let attempts_before = lines_with(&bridge.log_text(), "+switch-master").len();
    wait_until(
        "the bridge retried the lost sentinel a few times",
        Duration::from_secs(20),
        || lines_with(&bridge.log_text(), "+switch-master").len() >= attempts_before + 3,
    );
    bridge.signal(libc::SIGTERM);
    let status = bridge.wait_exit(STOP_BOUND);
    let text = bridge.log_text() + &bridge.out_text();
    let leaks = lines_with(&text, SENTINEL_PASSWORD);
    // Not a delivery: the row counts log lines instead.
    eprintln!(
        "fault: | sentinel password in a redis:// URL, debug level, a sentinel down: {} of {} log lines show it | — | — | — | — | — | — |",
        leaks.len(),
        text.lines().count()
    );
    assert!(
        leaks.is_empty(),
        "{} of {} lines show the sentinel password, e.g.:\n{}",
        leaks.len(),
        text.lines().count(),
        leaks[..leaks.len().min(3)].join("\n")
    );
    assert!(status.code().is_some(), "stopped by the signal handler");
    assert!(text.contains("DEBUG"), "debug level was on");
    assert!(
        text.contains(&format!("redis://:***@127.0.0.1:{down}")),
        "the lost sentinel is named, masked:\n{text}"
    );
}

/// Lease renewals travel on a connection of their own: while the only replica is frozen, every
/// push's `WAIT` holds its connection for `wait_timeout_ms`, and a renewal queued behind one timed
/// out (a third of the TTL) and closed the push gate; here none may.
#[test]
fn lease_renewals_do_not_wait_behind_wait() {
    let master = RedisServer::start();
    let replica = RedisServer::start_with(
        Security::default(),
        &["--replicaof", "127.0.0.1", &master.port.to_string()],
    );
    wait_until("the replica is connected", Duration::from_secs(20), || {
        connected_replicas(&Security::default(), master.port) == Some(1)
    });
    let broker = Broker::shared();
    let topics = create_topics(broker, "guard-lease", TOPICS);
    let group = unique("guard-lease-group");
    let dir = tempfile::tempdir().unwrap();
    topology_config(broker, &master, &group, &topics)
        .redis_settings("wait_replicas = 1\nwait_timeout_ms = 1200")
        .sections(&format!(
            "[lease]\nkey = \"{}\"\nttl_ms = 900",
            unique("lease")
        ))
        .write(dir.path(), "k2r.toml");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let mut produced = Vec::new();
    for topic in &topics {
        produced.extend(broker.produce_numbered(topic, PARTITIONS, 0, 100));
    }
    broker.wait_committed(&group, &topics, PARTITIONS, Duration::from_secs(30));

    replica.signal(libc::SIGSTOP);
    let frozen = Instant::now();
    let mut next = 100;
    while frozen.elapsed() < Duration::from_secs(4) {
        for topic in &topics {
            produced.extend(broker.produce_numbered(topic, PARTITIONS, next, 10));
        }
        next += 10;
        std::thread::sleep(Duration::from_millis(200));
    }
    replica.signal(libc::SIGCONT);
    broker.wait_committed(&group, &topics, PARTITIONS, Duration::from_secs(60));
    let log = bridge.log_text();
    let mut elements = Vec::new();
    for list in lists(&topics) {
        elements.extend(master.list(&list));
    }
    let tally = Tally::new(&produced, &elements).report(
        "Standalone + lease: only replica frozen 4 s under the WAIT guard (lease renewals apart)",
        "at-least-once",
    );
    assert!(tally.missing.is_empty(), "missing: {:?}", tally.missing);
    for line in [
        "lease renewal timed out",
        "lease renewal failed",
        "lease lost",
    ] {
        assert!(
            lines_with(&log, line).is_empty(),
            "a lease renewal waited behind a WAIT ({line}):\n{log}"
        );
    }
    assert!(
        log.contains("WAIT: 0 of 1 replica(s)"),
        "the pushes did wait for the frozen replica:\n{log}"
    );
    bridge.signal(libc::SIGTERM);
    assert!(
        bridge.wait_exit(STOP_BOUND).success(),
        "{}",
        bridge.log_text()
    );
}

/// A slot migration stuck half-way — the list moved to the importing node, its exactly-once
/// offsets hash not yet — answers the exactly-once script (both keys) with `TRYAGAIN`: the batch is
/// retried with backoff and the condition reported by name, and once the migration completes
/// everything arrives, exactly once.
#[test]
fn stuck_slot_migration_is_retried_and_reported() {
    let cluster = Cluster::start(Security::default());
    let broker = Broker::shared();
    let topics = create_topics(broker, "guard-tryagain", 1);
    let list = lists(&topics).remove(0);
    let offsets = format!("{{{list}}}:offsets");
    let group = unique("guard-tryagain-group");
    let dir = tempfile::tempdir().unwrap();
    topology_config(broker, &cluster, &group, &topics)
        .delivery("exactly-once")
        .write(dir.path(), "k2r.toml");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let mut produced = broker.produce_numbered(&topics[0], PARTITIONS, 0, 100);
    broker.wait_committed(&group, &topics, PARTITIONS, Duration::from_secs(30));

    // Half a migration: the slot is MIGRATING/IMPORTING and only the list has moved.
    let from = cluster.master_for(&list).unwrap();
    let to = *cluster.masters().iter().find(|&&m| m != from).unwrap();
    let (slot, _) = cluster.open_migration(&list, to);
    cluster.migrate_keys(from, to, &[&list]);

    produced.extend(broker.produce_numbered(&topics[0], PARTITIONS, 100, 100));
    wait_until(
        "the bridge reports the stuck migration",
        Duration::from_secs(30),
        || {
            bridge
                .log_text()
                .contains("Redis Cluster answered TRYAGAIN")
        },
    );
    assert!(
        !broker.committed_to_end(&group, &topics[0], PARTITIONS),
        "nothing lands while the keys are split"
    );

    // The migration completes.
    cluster.migrate_keys(from, to, &[&offsets]);
    cluster.finish_migration(slot, to);
    broker.wait_committed(&group, &topics, PARTITIONS, Duration::from_secs(60));
    let elements = cluster.list(&list).expect("list readable");
    let cost = Tally::new(&produced, &elements).report(
        "Cluster: slot migration stuck half-way (TRYAGAIN), then completed",
        "exactly-once",
    );
    assert_eq!((cost.missing.len(), cost.duplicated), (0, 0), "{cost:?}");
    bridge.signal(libc::SIGTERM);
    assert!(
        bridge.wait_exit(STOP_BOUND).success(),
        "{}",
        bridge.log_text()
    );
}

/// A sentinel that names a master the others do not (here one that monitors another server under
/// the same name, listed first) does not win by answering first: the bridge takes the master
/// most sentinels name, and writes nothing to the other server.
#[test]
fn a_sentinel_naming_another_master_does_not_win() {
    let sentinels = SentinelGroup::start(Security::default());
    let stray = RedisServer::start();
    let odd = lone_sentinel();
    let mut conn = Security::default()
        .client(odd.port)
        .get_connection()
        .unwrap();
    redis::cmd("SENTINEL")
        .arg("MONITOR")
        .arg(MASTER_NAME)
        .arg("127.0.0.1")
        .arg(stray.port)
        .arg(1)
        .query::<()>(&mut conn)
        .unwrap();
    let broker = Broker::shared();
    let topics = create_topics(broker, "guard-stray", 1);
    let group = unique("guard-stray-group");
    let mut addresses = vec![odd.address()];
    addresses.extend(sentinels.sentinel_addresses());
    let redis = format!(
        "[redis]\nmode = \"sentinel\"\nmaster_name = \"{MASTER_NAME}\"\naddresses = {}\n",
        toml_list(&addresses)
    );
    let dir = tempfile::tempdir().unwrap();
    topology_config(broker, &redis, &group, &topics).write(dir.path(), "k2r.toml");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let produced = broker.produce_numbered(&topics[0], PARTITIONS, 0, 100);
    broker.wait_committed(&group, &topics, PARTITIONS, Duration::from_secs(30));
    let list = &lists(&topics)[0];
    let on_master = sentinels.list(list);
    let on_stray = stray.llen(list);
    let log = bridge.log_text();
    assert_eq!(on_stray, 0, "the stray master took pushes:\n{log}");
    assert_eq!(on_master.len(), produced.len(), "{log}");
    Tally::new(&produced, &on_master).report(
        "Sentinel: a sentinel listed first names a stray master (nothing reaches it)",
        "at-least-once",
    );
    // The odd sentinel's answer is logged as a disagreement only when it comes before three of the
    // four agree (a majority is not kept waiting for the rest), so the log is checked for the
    // master taken, not for the warning.
    let master = sentinels.master_port().expect("the group has a master");
    assert!(
        log.contains(&format!("master=127.0.0.1:{master} "))
            && !log.contains(&format!("master=127.0.0.1:{} ", stray.port)),
        "the bridge took the master the majority names ({master}), never the stray ({}):\n{log}",
        stray.port
    );
    bridge.signal(libc::SIGTERM);
    assert!(
        bridge.wait_exit(STOP_BOUND).success(),
        "{}",
        bridge.log_text()
    );
}

/// The other side of an unreadable `INFO`: the master really has no replica, so the guard, kept on,
/// leaves pushes unacknowledged. After 20 s of that the instance is not ready, and one error (not one per push)
/// names the missing permission and `redis.wait_replicas = 0`.
#[test]
fn unacknowledged_pushes_under_an_unknown_guard_make_the_instance_unready() {
    let mut sentinels = SentinelGroup::start(Security {
        acl_user: Some((ACL_USER.into(), ACL_PASSWORD.into())),
        ..Security::default()
    });
    deny(&sentinels.security, &sentinels.nodes, "-info");
    let replica = 1 - sentinels.master_index();
    sentinels.nodes[replica].kill9();
    let broker = Broker::shared();
    let topics = create_topics(broker, "guard-unready", 1);
    let group = unique("guard-unready-group");
    let http = free_port();
    let dir = tempfile::tempdir().unwrap();
    topology_config(broker, &sentinels, &group, &topics)
        .sections(&format!("[http]\naddress = \"127.0.0.1:{http}\""))
        .write(dir.path(), "k2r.toml");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    broker.produce_numbered(&topics[0], PARTITIONS, 0, 50);
    const ERROR: &str = "pushes stay unacknowledged by replicas (WAIT), and the bridge's Redis user may not run INFO";
    wait_until(
        "the bridge says why pushes stay unacknowledged",
        Duration::from_secs(45),
        || bridge.log_text().contains(ERROR),
    );
    let mut readyz = None;
    wait_until("/readyz says why", Duration::from_secs(15), || {
        readyz = http_get(http, "/readyz");
        readyz
            .as_ref()
            .is_some_and(|(_, body)| body.contains("pushes unacknowledged by replicas"))
    });
    assert_eq!(readyz.unwrap().0, 503);
    // Pushes keep failing for a while longer: still one error.
    std::thread::sleep(Duration::from_secs(5));
    let log = bridge.log_text();
    let errors = lines_with(&log, ERROR);
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains("+info") && errors[0].contains("redis.wait_replicas = 0"),
        "{}",
        errors[0]
    );
    bridge.signal(libc::SIGTERM);
    bridge.wait_exit(STOP_BOUND);
}

/// A bridge with `RUST_LOG=rust_log` that waits for Kafka on a closed port: enough to watch what
/// it does on the Redis side.
fn bridge_without_kafka(
    dir: &std::path::Path,
    redis: &(impl RedisSection + ?Sized),
    rust_log: &str,
) -> Bridge {
    let closed = Broker {
        address: format!("127.0.0.1:{}", free_port()),
    };
    Config::new(&closed, redis, "g", "[\"t\"]").write(dir, "k2r.toml");
    let bridge = Bridge::start_logging(dir, &["--config", "k2r.toml"], rust_log);
    wait_until(
        "the bridge connected to Redis and waits for Kafka",
        Duration::from_secs(30),
        || bridge.log_text().contains("joined the consumer group"),
    );
    bridge
}

/// The bridge's ACL user may not run `CLUSTER NODES`: which masters have replicas is unknown, so
/// every master stays guarded (denied, the guard was off everywhere), and the master-change watch
/// follows `CLUSTER SLOTS` instead, which the client needs anyway (denied, it saw nothing).
#[test]
fn cluster_without_cluster_nodes_keeps_the_guard_on_and_follows_failovers() {
    let cluster = Cluster::start(Security {
        acl_user: Some((ACL_USER.into(), ACL_PASSWORD.into())),
        ..Security::default()
    });
    deny(&cluster.security, &cluster.nodes, "-cluster|nodes");
    let dir = tempfile::tempdir().unwrap();
    let bridge = bridge_without_kafka(dir.path(), &cluster, "info,kafka2redis=debug");
    let log = bridge.log_text();
    assert!(
        log.contains(
            "cannot read CLUSTER NODES, so which Cluster masters have a replica is unknown"
        ),
        "the guard stays on and says why:\n{log}"
    );
    assert!(
        !log.contains("has no replica"),
        "unknown is not \"no replica\":\n{log}"
    );
    let before = lines_with(&log, "the cluster's masters changed").len();
    let key = "queues:any";
    let old = cluster.failover(key, ClusterFailover::Coordinated);
    wait_until(
        "the replica serves the key",
        Duration::from_secs(30),
        || cluster.master_for(key).is_some_and(|p| p != old),
    );
    wait_until(
        "the bridge notices the failover",
        Duration::from_secs(10),
        || lines_with(&bridge.log_text(), "the cluster's masters changed").len() > before,
    );
}
