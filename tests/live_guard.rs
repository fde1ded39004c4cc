//! Safety that follows the live Redis topology, against real `redis-server` processes and the
//! shared Tansu broker: the WAIT guard turns on when a replica appears after the bridge started,
//! stays on while the bridge's ACL user may not read `INFO`, and is kept per master in a Cluster;
//! and a sentinel password given in a `redis://` URL appears in no log line, at debug level.
//!
//! The failover tests print a `fault:` row (see `report_fault`).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::topologies::{self, Cluster, Security, SentinelGroup, Topology};
use common::*;

/// Messages per failover test: enough for the failover to land mid-stream at the pace of
/// [`produce_paced`], few enough to keep each test under a minute.
const MESSAGES: usize = 9_000;
const TOPICS: usize = 3;
const PARTITIONS: i32 = 2;
const STOP_BOUND: Duration = Duration::from_secs(15);

/// A native config for the shared broker, `topics` (the first capped, so that its pushes run the
/// push script rather than a plain `RPUSH`: both paths go through the guard), and `redis`.
fn config(broker: &Broker, group: &str, topics: &[String], redis: &str) -> String {
    config_with(broker, group, topics, redis, "")
}

/// [`config`] with `extra` TOML sections at the end.
fn config_with(
    broker: &Broker,
    group: &str,
    topics: &[String],
    redis: &str,
    extra: &str,
) -> String {
    let names: Vec<String> = topics
        .iter()
        .enumerate()
        .map(|(i, t)| match i {
            0 => format!("{{ name = \"{t}\", cap = 10000000 }}"),
            _ => format!("\"{t}\""),
        })
        .collect();
    format!(
        r#"topics = [{}]
[kafka]
brokers = ["{}"]
group = "{group}"
commit_interval_ms = 500
{redis}connect_timeout_ms = 1000
response_timeout_ms = 2000
[batch]
max_messages = 200
linger_ms = 5
[retry]
backoff_min_ms = 50
backoff_max_ms = 500
{extra}"#,
        names.join(", "),
        broker.address
    )
}

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

/// Produces `total` numbered messages spread over `topics`, about 3,000/s, so that a failover
/// lands mid-stream.
fn produce_paced(
    broker: &'static Broker,
    topics: Vec<String>,
    total: usize,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let per_topic = total / topics.len();
        let chunk = 100;
        let mut produced = Vec::with_capacity(total);
        let mut start = 0;
        while start < per_topic {
            let n = chunk.min(per_topic - start);
            for topic in &topics {
                produced.extend(broker.produce_numbered(topic, PARTITIONS, start, n));
            }
            start += n;
            std::thread::sleep(Duration::from_millis(80));
        }
        produced
    })
}

/// Whether the group committed every partition of `topic` up to its high watermark.
fn committed_to_end(broker: &Broker, group: &str, topic: &str) -> bool {
    let committed = broker.committed(group, topic, PARTITIONS);
    let ends = broker.high_watermarks(topic, PARTITIONS);
    committed.iter().zip(&ends).all(|(c, end)| *c == Some(*end))
}

fn wait_committed(broker: &Broker, group: &str, topics: &[String], timeout: Duration) {
    wait_until(
        "the bridge committed every partition to its end",
        timeout,
        || topics.iter().all(|t| committed_to_end(broker, group, t)),
    );
}

/// Lines of `log` that contain `text`.
fn lines_with<'a>(log: &'a str, text: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(text)).collect()
}

/// `connected_slaves` of the node on `port`.
fn connected_replicas(security: &Security, port: u16) -> Option<u32> {
    let mut conn = security.client(port).get_connection().ok()?;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut conn)
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("connected_slaves:"))
        .and_then(|n| n.trim().parse().ok())
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
) -> FaultCost {
    let lists = lists(topics);
    let producer = produce_paced(broker, topics.to_vec(), MESSAGES);
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
    wait_committed(broker, group, topics, Duration::from_secs(90));
    // The old master resynced as a replica: what it discarded is gone from every node.
    sentinels.wait_healthy(Duration::from_secs(60));
    let mut elements = Vec::new();
    for list in &lists {
        elements.extend(sentinels.list(list));
    }
    let (_, _, missing) = topologies::tally(&elements, &produced);
    let cost = report_fault(fault, "at-least-once", &produced, &elements);
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages missing after the failover, e.g. {:?}",
        missing.len(),
        produced.len(),
        &missing[..missing.len().min(5)]
    );
    cost
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
    write_file(
        dir.path(),
        "k2r.toml",
        &config(broker, &group, &topics, &sentinels.bridge_toml()),
    );
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
    for node in &sentinels.nodes {
        let mut conn = sentinels
            .security
            .client(node.port)
            .get_connection()
            .unwrap();
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(ACL_USER)
            .arg("-info")
            .query::<()>(&mut conn)
            .unwrap();
    }
    let broker = Broker::shared();
    let topics = create_topics(broker, "guard-noinfo", TOPICS);
    let group = unique("guard-noinfo-group");
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "k2r.toml",
        &config(broker, &group, &topics, &sentinels.bridge_toml()),
    );
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

/// `CLUSTER NODES` as seen from the node on `port`: (port, flags, master id, id) per line.
fn cluster_nodes(cluster: &Cluster, port: u16) -> Vec<(u16, String, String, String)> {
    let Ok(mut conn) = cluster.security.client(port).get_connection() else {
        return Vec::new();
    };
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut conn)
        .unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let port = f.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?;
            Some((port, f[2].to_string(), f[3].to_string(), f[0].to_string()))
        })
        .collect()
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
        || {
            cluster_nodes(&cluster, bare)
                .iter()
                .any(|(port, flags, _, _)| *port == bare_replica && flags.contains("fail"))
        },
    );

    let on_guarded = topic_on(&cluster, broker, "guard-cluster-on", guarded);
    let on_bare = topic_on(&cluster, broker, "guard-cluster-off", bare);
    let topics = vec![on_guarded.clone(), on_bare.clone()];
    let group = unique("guard-cluster-group");
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "k2r.toml",
        &config(broker, &group, &topics, &cluster.bridge_toml()),
    );
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
    wait_committed(broker, &group, &topics, Duration::from_secs(30));

    // Freeze the guarded master's replica: its pushes are no longer acknowledged.
    let frozen = cluster.node_index(guarded_replica);
    cluster.nodes[frozen].signal(libc::SIGSTOP);
    produced.extend(broker.produce_numbered(&on_guarded, PARTITIONS, 200, 200));
    produced.extend(broker.produce_numbered(&on_bare, PARTITIONS, 200, 200));
    wait_until(
        "the unguarded master's pushes are committed",
        Duration::from_secs(30),
        || committed_to_end(broker, &group, &on_bare),
    );
    let held_since = Instant::now();
    while held_since.elapsed() < Duration::from_secs(3) {
        assert!(
            !committed_to_end(broker, &group, &on_guarded),
            "pushes to the guarded master were committed while its only replica was frozen:\n{}",
            bridge.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.nodes[frozen].signal(libc::SIGCONT);
    wait_committed(broker, &group, &topics, Duration::from_secs(60));

    let mut elements = Vec::new();
    for list in lists(&topics) {
        elements.extend(cluster.list(&list).expect("list readable"));
    }
    let (_, _, missing) = topologies::tally(&elements, &produced);
    report_fault(
        "Cluster: one master without a replica, another's replica frozen (WAIT guard per master)",
        "at-least-once",
        &produced,
        &elements,
    );
    assert!(missing.is_empty(), "missing: {missing:?}");
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
        .map(|s| format!("\"redis://:{SENTINEL_PASSWORD}@127.0.0.1:{}\"", s.port))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "k2r.toml",
        &format!(
            "topics = [\"secret-topic\"]\n[kafka]\nbrokers = [\"127.0.0.1:{}\"]\ngroup = \"g\"\n\
             [redis]\nmode = \"sentinel\"\nmaster_name = \"{}\"\naddresses = [{}]\n",
            free_port(),
            topologies::MASTER_NAME,
            urls.join(", ")
        ),
    );
    let log_path = dir.path().join("debug.log");
    let mut child = Command::new(binary())
        .current_dir(dir.path())
        .args(["--config", "k2r.toml"])
        .env("RUST_LOG", "debug")
        .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_until(
        "the bridge connected to Redis and waits for Kafka",
        Duration::from_secs(30),
        || log().contains("joined the consumer group"),
    );
    // A sentinel goes away: the bridge tries to subscribe to it again, once a second.
    let down = sentinels.sentinels[2].port;
    sentinels.sentinels[2].kill9();
    let attempts_before = lines_with(&log(), "+switch-master").len();
    wait_until(
        "the bridge retried the lost sentinel a few times",
        Duration::from_secs(20),
        || lines_with(&log(), "+switch-master").len() >= attempts_before + 3,
    );
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    let text = log() + &std::fs::read_to_string(dir.path().join("stdout.log")).unwrap();
    let leaks = lines_with(&text, SENTINEL_PASSWORD);
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
    let master = topologies::standalone(&Security::default());
    let replica = topologies::standalone_with(
        &Security::default(),
        &["--replicaof", "127.0.0.1", &master.port.to_string()],
    );
    wait_until("the replica is connected", Duration::from_secs(20), || {
        connected_replicas(&Security::default(), master.port) == Some(1)
    });
    let broker = Broker::shared();
    let topics = create_topics(broker, "guard-lease", TOPICS);
    let group = unique("guard-lease-group");
    let redis = format!(
        "[redis]\naddresses = [\"{}\"]\nwait_replicas = 1\nwait_timeout_ms = 1200\n",
        master.address()
    );
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "k2r.toml",
        &config_with(
            broker,
            &group,
            &topics,
            &redis,
            &format!("[lease]\nkey = \"{}\"\nttl_ms = 900\n", unique("lease")),
        ),
    );
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let mut produced = Vec::new();
    for topic in &topics {
        produced.extend(broker.produce_numbered(topic, PARTITIONS, 0, 100));
    }
    wait_committed(broker, &group, &topics, Duration::from_secs(30));

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
    wait_committed(broker, &group, &topics, Duration::from_secs(60));
    let log = bridge.log_text();
    let mut conn = Security::default()
        .client(master.port)
        .get_connection()
        .unwrap();
    let mut elements = Vec::new();
    for list in lists(&topics) {
        let list: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(&list)
            .arg(0)
            .arg(-1)
            .query(&mut conn)
            .unwrap();
        elements.extend(list);
    }
    let (_, _, missing) = topologies::tally(&elements, &produced);
    report_fault(
        "Standalone + lease: only replica frozen 4 s under the WAIT guard (lease renewals apart)",
        "at-least-once",
        &produced,
        &elements,
    );
    assert!(missing.is_empty(), "missing: {missing:?}");
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

/// `CLUSTER SETSLOT slot <state> <node id>` on the node on `port`.
fn set_slot(cluster: &Cluster, port: u16, slot: u16, state: &str, node: &str) {
    let mut conn = cluster.security.client(port).get_connection().unwrap();
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("SETSLOT").arg(slot).arg(state);
    if !node.is_empty() {
        cmd.arg(node);
    }
    cmd.query::<()>(&mut conn).unwrap();
}

/// `MIGRATE` of `keys` from the node on `from` to the node on `to`.
fn migrate(cluster: &Cluster, from: u16, to: u16, keys: &[&str]) {
    let mut conn = cluster.security.client(from).get_connection().unwrap();
    redis::cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(to)
        .arg("")
        .arg(0)
        .arg(5000)
        .arg("KEYS")
        .arg(keys)
        .query::<()>(&mut conn)
        .unwrap();
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
    write_file(
        dir.path(),
        "k2r.toml",
        &format!(
            "delivery = \"exactly-once\"\n{}",
            config(broker, &group, &topics, &cluster.bridge_toml())
        ),
    );
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let mut produced = broker.produce_numbered(&topics[0], PARTITIONS, 0, 100);
    wait_committed(broker, &group, &topics, Duration::from_secs(30));

    // Half a migration: the slot is MIGRATING/IMPORTING and only the list has moved.
    let from = cluster.master_for(&list).unwrap();
    let to = *cluster.masters().iter().find(|&&m| m != from).unwrap();
    let ids: Vec<(u16, String, String, String)> = cluster_nodes(&cluster, from);
    let id = |port: u16| ids.iter().find(|n| n.0 == port).unwrap().3.clone();
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(&list)
        .query(&mut cluster.security.client(from).get_connection().unwrap())
        .unwrap();
    set_slot(&cluster, to, slot, "IMPORTING", &id(from));
    set_slot(&cluster, from, slot, "MIGRATING", &id(to));
    migrate(&cluster, from, to, &[&list]);

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
        !committed_to_end(broker, &group, &topics[0]),
        "nothing lands while the keys are split"
    );

    // The migration completes.
    migrate(&cluster, from, to, &[&offsets]);
    for port in cluster.masters() {
        set_slot(&cluster, port, slot, "NODE", &id(to));
    }
    wait_committed(broker, &group, &topics, Duration::from_secs(60));
    let elements = cluster.list(&list).expect("list readable");
    let cost = report_fault(
        "Cluster: slot migration stuck half-way (TRYAGAIN), then completed",
        "exactly-once",
        &produced,
        &elements,
    );
    assert_eq!((cost.missing, cost.duplicated), (0, 0), "{cost:?}");
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
    let stray = topologies::standalone(&Security::default());
    let odd = topologies::lone_sentinel();
    let mut conn = Security::default()
        .client(odd.port)
        .get_connection()
        .unwrap();
    redis::cmd("SENTINEL")
        .arg("MONITOR")
        .arg(topologies::MASTER_NAME)
        .arg("127.0.0.1")
        .arg(stray.port)
        .arg(1)
        .query::<()>(&mut conn)
        .unwrap();
    let broker = Broker::shared();
    let topics = create_topics(broker, "guard-stray", 1);
    let group = unique("guard-stray-group");
    let mut addresses = vec![format!("\"{}\"", odd.address())];
    addresses.extend(
        sentinels
            .sentinel_addresses()
            .iter()
            .map(|a| format!("\"{a}\"")),
    );
    let redis = format!(
        "[redis]\nmode = \"sentinel\"\nmaster_name = \"{}\"\naddresses = [{}]\n",
        topologies::MASTER_NAME,
        addresses.join(", ")
    );
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "k2r.toml",
        &config(broker, &group, &topics, &redis),
    );
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let produced = broker.produce_numbered(&topics[0], PARTITIONS, 0, 100);
    wait_committed(broker, &group, &topics, Duration::from_secs(30));
    let list = &lists(&topics)[0];
    let on_master = sentinels.list(list);
    let mut stray_conn = Security::default()
        .client(stray.port)
        .get_connection()
        .unwrap();
    let on_stray: usize = redis::cmd("LLEN").arg(list).query(&mut stray_conn).unwrap();
    let log = bridge.log_text();
    assert_eq!(on_stray, 0, "the stray master took pushes:\n{log}");
    assert_eq!(on_master.len(), produced.len(), "{log}");
    assert!(
        log.contains("the sentinels name different masters"),
        "the disagreement is logged:\n{log}"
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
    for node in &sentinels.nodes {
        let mut conn = sentinels
            .security
            .client(node.port)
            .get_connection()
            .unwrap();
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(ACL_USER)
            .arg("-info")
            .query::<()>(&mut conn)
            .unwrap();
    }
    let replica = 1 - sentinels.master_index();
    sentinels.nodes[replica].kill9();
    let broker = Broker::shared();
    let topics = create_topics(broker, "guard-unready", 1);
    let group = unique("guard-unready-group");
    let http = free_port();
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "k2r.toml",
        &config_with(
            broker,
            &group,
            &topics,
            &sentinels.bridge_toml(),
            &format!("[http]\naddress = \"127.0.0.1:{http}\"\n"),
        ),
    );
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

/// A bridge that waits for Kafka on a closed port: enough to watch what it does on the Redis side.
fn bridge_without_kafka(dir: &std::path::Path, redis: &str) -> Bridge {
    write_file(
        dir,
        "k2r.toml",
        &format!(
            "topics = [\"t\"]\n[kafka]\nbrokers = [\"127.0.0.1:{}\"]\ngroup = \"g\"\n{redis}",
            free_port()
        ),
    );
    let bridge = Bridge::start(dir, &["--config", "k2r.toml"]);
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
    for node in &cluster.nodes {
        let mut conn = cluster.security.client(node.port).get_connection().unwrap();
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg(ACL_USER)
            .arg("-cluster|nodes")
            .query::<()>(&mut conn)
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let bridge = bridge_without_kafka(dir.path(), &cluster.bridge_toml());
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
    let old = cluster.failover(key, topologies::ClusterFailover::Coordinated);
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
