//! Redis Sentinel and Cluster, with ACL users, passwords and TLS, and failovers mid-stream — against
//! real `redis-server` processes (see `tests/common`) and the shared Tansu broker.
//!
//! The failover tests stream [`MESSAGES`] messages over 3 topics × 2 partitions while the master is
//! killed with `kill -9` — or, in the planned ones, handed over with `SENTINEL FAILOVER`,
//! `CLUSTER FAILOVER` or `CLUSTER FAILOVER FORCE`, both nodes staying up — then count what reached
//! the lists against what was produced. With `redis.wait_replicas = 1` nothing may be missing;
//! without it the loss is printed (run with `--nocapture` to see the numbers).

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Messages per failover test (a multiple of [`TOPICS`]). The issue's figure is 50,000; about
/// 20,000 keeps the suite's time reasonable on a 2-core machine. `K2R_TOPOLOGY_MESSAGES` overrides it.
const MESSAGES: usize = 21_000;
const TOPICS: usize = 3;
const PARTITIONS: i32 = 2;
/// From `kill -9` of the master until pushes land on the new master and until commits move
/// again (with the WAIT guard: both within the longer bound). Sentinel needs `down-after-milliseconds` (1 s) plus an election, Cluster
/// `cluster-node-timeout` (1 s) plus an election. With the WAIT guard, commits also wait for a
/// replica: with one replica per master that is the old master, restarted, reconfigured as a
/// replica (Sentinel waits about 8 s before it converts a returning master) and resynced.
const PUSH_RESUME_BOUND: Duration = Duration::from_secs(15);
const COMMIT_RESUME_BOUND: Duration = Duration::from_secs(15);
const COMMIT_RESUME_BOUND_WITH_WAIT: Duration = Duration::from_secs(45);
const STOP_BOUND: Duration = Duration::from_secs(15);
/// How long a lagging replica stays frozen at most (once the master took something it missed):
/// well under the 10 s after which Sentinel no longer promotes it (Cluster allows 20 s).
const LAGGING_FREEZE: Duration = Duration::from_secs(4);

fn messages() -> usize {
    std::env::var("K2R_TOPOLOGY_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(MESSAGES)
}

/// Runs `kafka2redis check` in `dir`; returns its exit code and stdout.
fn check(dir: &Path) -> (Option<i32>, String) {
    let out = run_bridge(dir, &["check", "--config", "k2r.toml"]);
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn create_topics(broker: &Broker, prefix: &str) -> Vec<String> {
    (0..TOPICS)
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

/// A test's topics ([`TOPICS`] of [`PARTITIONS`] on the shared broker, named after `name`), their
/// lists, its group (`<name>-group`) and a directory for its config.
fn fixture(broker: &Broker, name: &str) -> (Vec<String>, Vec<String>, String, tempfile::TempDir) {
    let topics = create_topics(broker, name);
    let lists = lists(&topics);
    let group = unique(&format!("{name}-group"));
    (topics, lists, group, tempfile::tempdir().unwrap())
}

/// The sum of the group's committed offsets over `topics` (-1 per partition without a commit).
fn committed_sum(broker: &Broker, group: &str, topics: &[String]) -> i64 {
    topics
        .iter()
        .flat_map(|t| broker.committed(group, t, PARTITIONS))
        .map(|c| c.unwrap_or(-1))
        .sum()
}

/// Streams messages through the bridge, kills the master serving the first list mid-stream,
/// restarts it once a replica was promoted, and counts what reached the lists.
fn failover_mid_stream(
    topology: &mut dyn Topology,
    name: &str,
    wait_replicas: u32,
    lagging_replica: bool,
) -> Tally {
    let broker = Broker::shared();
    let (topics, lists, group, dir) = fixture(broker, name);
    topology_config(broker, &*topology, &group, &topics)
        .redis_settings(&format!(
            "wait_replicas = {wait_replicas}\nwait_timeout_ms = 1000\n"
        ))
        .write(dir.path(), "k2r.toml");
    let (code, report) = check(dir.path());
    assert_eq!(code, Some(0), "check before streaming:\n{report}");
    eprintln!("{name}: check before the failover:\n{report}");

    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let total = messages();
    let producer = broker.produce_paced(topics.clone(), PARTITIONS, total);

    // Mid-stream: a third of the messages are in Redis, the producer is still going.
    wait_until(
        "a third of the stream is in Redis",
        Duration::from_secs(120),
        || topology.total_len(&lists).unwrap_or(0) >= total / 3,
    );
    // A lagging replica — what a slow or broken replication link does: the replica is frozen
    // (SIGSTOP) and its link closed, so it cannot catch up (a frozen replica alone would still find
    // the stream in its socket buffer), while the master acknowledges another 1,000 pushes. The
    // replica is thawed right after the master is killed and gets promoted without them.
    //
    // The freeze is bounded: Sentinel never promotes a replica whose link has been down for more
    // than about 10 × down-after-milliseconds (10 s here) before the master failed. With the WAIT
    // guard each push holds the master's connection for up to `wait_timeout_ms`, so on a slow
    // machine 1,000 elements can take longer than that; a few hundred are enough to test with.
    let frozen = lagging_replica.then(|| {
        let replica = topology.replica_port(&lists[0]);
        topology.signal(replica, libc::SIGSTOP);
        topology.cut_replication(&lists[0]);
        let at = topology.total_len(&lists).unwrap_or(0);
        let frozen_at = Instant::now();
        wait_until(
            "the master takes pushes the frozen replica misses",
            Duration::from_secs(30),
            || {
                let grown = topology.total_len(&lists).unwrap_or(0).saturating_sub(at);
                grown >= 1000 || (grown > 0 && frozen_at.elapsed() >= LAGGING_FREEZE)
            },
        );
        replica
    });
    let before = topology.total_len(&lists).unwrap_or(0);
    let killed_at = Instant::now();
    let old = topology.kill_master(&lists[0]);
    if let Some(replica) = frozen {
        topology.signal(replica, libc::SIGCONT);
    }
    eprintln!(
        "{name}: killed the master on port {old} at {before} elements{}",
        if lagging_replica {
            " (its replica lagging)"
        } else {
            ""
        }
    );

    // Restart the old master as soon as a replica was promoted (the WAIT guard needs a replica
    // again), and measure until the first list (the killed master's) grows on the new master and
    // until its topic's commits move again.
    let mut restarted = false;
    let mut first_len: Option<usize> = None;
    let mut commit_baseline: Option<i64> = None;
    let mut pushed_again: Option<Duration> = None;
    let mut committed_again: Option<Duration> = None;
    let mut last_commit_poll = Instant::now();
    while pushed_again.is_none() || committed_again.is_none() {
        // With the WAIT guard and no replica, each push also holds its node connection for
        // `wait_timeout_ms`, so even the pushes themselves trickle until a replica is back.
        let bound = match (pushed_again, wait_replicas > 0) {
            (_, true) => COMMIT_RESUME_BOUND_WITH_WAIT,
            (None, false) => PUSH_RESUME_BOUND,
            (Some(_), false) => COMMIT_RESUME_BOUND,
        };
        assert!(
            killed_at.elapsed() < bound,
            "{name}: the stream did not resume within {bound:?} of the kill (restarted: {restarted}, \
             pushed again: {pushed_again:?}, committed again: {committed_again:?})\n{}",
            bridge.log_text()
        );
        if !restarted && topology.failed_over(&lists[0], old) {
            eprintln!("{name}: new master after {:?}", killed_at.elapsed());
            // Offsets stored before the kill were committed long ago (interval 500 ms), so any
            // commit progress from here on is for pushes the new master took.
            commit_baseline = Some(committed_sum(broker, &group, &topics[..1]));
            topology.restart(old);
            restarted = true;
        }
        if restarted && pushed_again.is_none() {
            if let Some(n) = topology.total_len(&lists[..1]) {
                match first_len {
                    None => first_len = Some(n),
                    Some(f) if n > f => pushed_again = Some(killed_at.elapsed()),
                    _ => {}
                }
            }
        }
        // Committed offsets are asked of the broker at most every 100 ms (each ask is a client).
        if let (Some(baseline), None) = (commit_baseline, committed_again) {
            if last_commit_poll.elapsed() >= Duration::from_millis(100) {
                last_commit_poll = Instant::now();
                if committed_sum(broker, &group, &topics[..1]) > baseline {
                    committed_again = Some(killed_at.elapsed());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (pushed_again, resume) = (pushed_again.unwrap(), committed_again.unwrap());
    eprintln!(
        "{name}: after the kill, pushes reached the new master in {pushed_again:?}, commits resumed in {resume:?}"
    );

    let produced = producer.join().unwrap();
    broker.wait_committed(&group, &topics, PARTITIONS, Duration::from_secs(180));
    let mut elements = Vec::new();
    for list in &lists {
        elements.extend(topology.list(list));
    }
    let tally = Tally::new(&produced, &elements)
        .report(
            &format!(
                "{name}: master kill -9{}, wait_replicas = {wait_replicas}",
                if lagging_replica {
                    ", replica lagging"
                } else {
                    ""
                }
            ),
            "at-least-once",
        )
        .assert_sound();
    eprintln!(
        "{name}: wait_replicas = {wait_replicas}: {} produced, {} distinct in Redis, {} duplicates, \
         {} MISSING; after kill -9 pushes landed again in {:.2} s, commits resumed in {:.2} s",
        tally.produced,
        tally.distinct,
        tally.duplicated,
        tally.missing.len(),
        pushed_again.as_secs_f64(),
        resume.as_secs_f64()
    );
    bridge.signal(libc::SIGTERM);
    assert!(
        bridge.wait_exit(STOP_BOUND).success(),
        "{}",
        bridge.log_text()
    );
    tally
}

/// Nothing acknowledged and committed is missing after the failover.
fn assert_nothing_missing(outcome: &Tally) {
    let outcome = outcome.clone().assert_complete();
    assert_eq!(outcome.distinct, outcome.produced);
}

#[test]
fn sentinel_failover_with_wait_loses_nothing() {
    let mut group = SentinelGroup::start(Security::default());
    let outcome = failover_mid_stream(&mut group, "sentinel-wait", 1, false);
    assert_nothing_missing(&outcome);
}

/// Streams messages through the bridge while the topology switches masters — both nodes stay up:
/// when a third of the stream is in Redis, `switch` starts a failover of the master serving the
/// first list and returns that master's port. Waits until another node serves the list, until
/// everything is committed, and until `settle` finds the topology healthy again (the old master a
/// replica that resynced, so that what it discarded is gone), then counts what the lists hold
/// against what was produced (a `fault` row). Returns that, and the bridge's log.
fn planned_failover_mid_stream<T: Topology>(
    topology: &T,
    name: &str,
    fault: &str,
    extra_redis: &str,
    switch: impl FnOnce(&T, &str) -> u16,
    settle: impl FnOnce(&T),
) -> (Tally, String) {
    let broker = Broker::shared();
    let (topics, lists, group, dir) = fixture(broker, name);
    topology_config(broker, topology, &group, &topics)
        .redis_settings(extra_redis)
        .write(dir.path(), "k2r.toml");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let total = messages();
    let producer = broker.produce_paced(topics.clone(), PARTITIONS, total);
    wait_until(
        "a third of the stream is in Redis",
        Duration::from_secs(120),
        || topology.total_len(&lists).unwrap_or(0) >= total / 3,
    );
    let before = topology.total_len(&lists).unwrap_or(0);
    let switched_at = Instant::now();
    let old = switch(topology, &lists[0]);
    wait_until(
        "the replica serves the list",
        Duration::from_secs(30),
        || topology.failed_over(&lists[0], old),
    );
    let took_over = switched_at.elapsed();
    let produced = producer.join().unwrap();
    broker.wait_committed(&group, &topics, PARTITIONS, Duration::from_secs(180));
    settle(topology);
    let mut elements = Vec::new();
    for list in &lists {
        elements.extend(topology.list(list));
    }
    let tally = Tally::new(&produced, &elements)
        .report(fault, "at-least-once")
        .assert_sound();
    eprintln!(
        "{name}: failover of the master on port {old} started at {before} elements, another node \
         served the list after {:.2} s; {} produced, {} distinct, {} duplicates, {} missing",
        took_over.as_secs_f64(),
        tally.produced,
        tally.distinct,
        tally.duplicated,
        tally.missing.len()
    );
    // Which messages, per partition: a lost push shows as a run of consecutive ones.
    let mut lost: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for m in &tally.missing {
        let (partition, seq) = m.rsplit_once(':').unwrap();
        lost.entry(partition).or_default().push(seq);
    }
    for (partition, seqs) in &lost {
        eprintln!(
            "{name}: missing from {partition}: {} message(s), {} to {}",
            seqs.len(),
            seqs[0],
            seqs[seqs.len() - 1]
        );
    }
    bridge.signal(libc::SIGTERM);
    assert!(
        bridge.wait_exit(STOP_BOUND).success(),
        "{}",
        bridge.log_text()
    );
    (tally, bridge.log_text())
}

/// A planned `SENTINEL FAILOVER` mid-stream with the default settings (no `wait_replicas`). The
/// old master keeps taking writes until Sentinel demotes it, then discards them when it resyncs
/// from the new master: none of them may have been an acknowledged, committed message.
#[test]
fn sentinel_planned_failover_with_default_settings_loses_nothing() {
    let sentinels = SentinelGroup::start(Security::default());
    let (outcome, log) = planned_failover_mid_stream(
        &sentinels,
        "sentinel-planned",
        "Sentinel: planned SENTINEL FAILOVER, default settings",
        "",
        |sentinels, _| {
            let old = sentinels.master_port().unwrap();
            sentinels.failover();
            old
        },
        |sentinels| sentinels.wait_healthy(Duration::from_secs(60)),
    );
    // The bridge follows the switch by Sentinel's announcement, or — when a push fails against the
    // demoted master first (its WAIT finds no replica, or it times out) — by asking the sentinels.
    let new = sentinels.master_port().expect("the sentinels agree");
    let resolved = format!("Redis master resolved through Sentinel master=127.0.0.1:{new}");
    assert!(
        log.contains("Sentinel announced a new master") || log.contains(&resolved),
        "the bridge followed the switch to port {new}:\n{log}"
    );
    assert_nothing_missing(&outcome);
}

/// `CLUSTER FAILOVER` (`FORCE` or not, see [`ClusterFailover`]) on the replica of the master
/// serving the first list, mid-stream, on a fresh cluster.
fn cluster_failover_mid_stream(
    how: ClusterFailover,
    name: &str,
    fault: &str,
    extra_redis: &str,
) -> (Tally, String) {
    let cluster = Cluster::start(Security::default());
    planned_failover_mid_stream(
        &cluster,
        name,
        fault,
        extra_redis,
        |cluster, key| cluster.failover(key, how),
        |cluster| cluster.wait_healthy(Duration::from_secs(60)),
    )
}

/// The bridge's start-up line when the WAIT guard is on by default in Cluster mode.
const CLUSTER_GUARD_ON: &str = "every Cluster master has a replica";

/// A planned `CLUSTER FAILOVER` mid-stream with the default settings. The master pauses writes
/// until its replica has caught up and taken over, then answers them with `MOVED`: every push it
/// acknowledged is on the new master (this holds without the WAIT guard too).
#[test]
fn cluster_planned_failover_with_default_settings_loses_nothing() {
    let (outcome, _) = cluster_failover_mid_stream(
        ClusterFailover::Coordinated,
        "cluster-planned",
        "Cluster: planned CLUSTER FAILOVER, default settings",
        "",
    );
    assert_nothing_missing(&outcome);
}

/// `CLUSTER FAILOVER FORCE` mid-stream with the default settings, under which every master has a
/// replica and so every push waits for one (the WAIT guard). The old master keeps acknowledging
/// pushes until gossip tells it it lost its slots, but its only replica has become the new master
/// and no longer confirms them, so every such push fails the guard, is not committed and is
/// retried on the new master.
#[test]
fn cluster_forced_failover_with_default_settings_loses_nothing() {
    let (outcome, log) = cluster_failover_mid_stream(
        ClusterFailover::Force,
        "cluster-force",
        "Cluster: CLUSTER FAILOVER FORCE, default settings (WAIT guard on)",
        "",
    );
    assert!(
        log.contains(CLUSTER_GUARD_ON),
        "the WAIT guard was not on by default:\n{log}"
    );
    assert_nothing_missing(&outcome);
}

/// `CLUSTER FAILOVER FORCE` mid-stream with the guard turned off (`wait_replicas = 0`): what the
/// old master acknowledged after its replica's last replicated write — while the replica is
/// elected, and until gossip reaches the old master — is committed, then discarded when the old
/// master resyncs as a replica; the bridge sees no error. How much depends on timing: most runs
/// lose nothing, some the push or pushes in flight (measured: 5 runs of 49 lost 100–300 of 21,000).
/// So the loss is reported (the `fault` row), not asserted.
#[test]
fn cluster_forced_failover_without_wait_reports_loss() {
    let (outcome, log) = cluster_failover_mid_stream(
        ClusterFailover::Force,
        "cluster-force-nowait",
        "Cluster: CLUSTER FAILOVER FORCE, wait_replicas = 0",
        "wait_replicas = 0\n",
    );
    assert!(!log.contains(CLUSTER_GUARD_ON));
    assert_eq!(outcome.distinct + outcome.missing.len(), outcome.produced);
}

#[test]
fn sentinel_failover_without_wait_resumes_and_reports_loss() {
    let mut group = SentinelGroup::start(Security::default());
    let outcome = failover_mid_stream(&mut group, "sentinel-nowait", 0, false);
    // Without WAIT an acknowledged push can be lost; the number is reported above, not asserted.
    assert!(outcome.distinct + outcome.missing.len() == outcome.produced);
    assert!(outcome.duplicated < outcome.produced);
}

#[test]
fn cluster_failover_with_wait_loses_nothing() {
    let mut cluster = Cluster::start(Security::default());
    let outcome = failover_mid_stream(&mut cluster, "cluster-wait", 1, false);
    assert_nothing_missing(&outcome);
}

#[test]
fn cluster_failover_without_wait_resumes_and_reports_loss() {
    let mut cluster = Cluster::start(Security::default());
    let outcome = failover_mid_stream(&mut cluster, "cluster-nowait", 0, false);
    assert!(outcome.distinct + outcome.missing.len() == outcome.produced);
}

/// Sentinel over TLS (sentinels and data nodes TLS-only, client certificates required, TLS
/// replication): the bridge reaches the sentinels and the master with the CA and client certificate,
/// and follows a failover.
#[test]
fn sentinel_over_tls_follows_a_failover() {
    let mut group = SentinelGroup::start(Security {
        tls: Some(Certs::generate()),
        ..Security::default()
    });
    let outcome = failover_mid_stream(&mut group, "sentinel-tls", 0, false);
    assert_eq!(outcome.distinct + outcome.missing.len(), outcome.produced);
}

/// What async replication costs: the replica promoted after `kill -9` of the master lags by at least
/// 1,000 acknowledged pushes. Without the WAIT guard those were committed and are lost; with it,
/// none was committed before the replica had it, so nothing is missing. `start` gives a fresh
/// topology for each of the two runs.
fn lagging_replica_loses_acknowledged_pushes_only_without_wait<T: Topology>(
    start: impl Fn() -> T,
    name: &str,
) {
    let mut topology = start();
    let without = failover_mid_stream(&mut topology, &format!("{name}-lag-nowait"), 0, true);
    assert!(
        !without.missing.is_empty(),
        "the promoted replica lagged, so acknowledged pushes should have been lost without WAIT"
    );
    drop(topology);
    let mut topology = start();
    let with = failover_mid_stream(&mut topology, &format!("{name}-lag-wait"), 1, true);
    assert_nothing_missing(&with);
}

#[test]
fn sentinel_failover_with_lagging_replica_loses_acknowledged_pushes_only_without_wait() {
    lagging_replica_loses_acknowledged_pushes_only_without_wait(
        || SentinelGroup::start(Security::default()),
        "sentinel",
    );
}

#[test]
fn cluster_failover_with_lagging_replica_loses_acknowledged_pushes_only_without_wait() {
    lagging_replica_loses_acknowledged_pushes_only_without_wait(
        || Cluster::start(Security::default()),
        "cluster",
    );
}

/// The slot of a list moves to another master mid-stream: the bridge follows `ASK` while the slot
/// migrates and `MOVED` after, with the WAIT guard on, and nothing is missing.
#[test]
fn cluster_slot_migration_mid_stream_follows_ask_and_moved() {
    let broker = Broker::shared();
    let cluster = Cluster::start(Security::default());
    let (topics, lists, group, dir) = fixture(broker, "reshard");
    topology_config(broker, &cluster, &group, &topics)
        .redis_settings("wait_replicas = 1\nwait_timeout_ms = 1000\n")
        .write(dir.path(), "k2r.toml");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let total = messages();
    let producer = broker.produce_paced(topics.clone(), PARTITIONS, total);
    wait_until(
        "a third of the stream is in Redis",
        Duration::from_secs(120),
        || cluster.total_len(&lists).unwrap_or(0) >= total / 3,
    );
    let from = cluster.master_for(&lists[0]).unwrap();
    let to = *cluster.masters().iter().find(|p| **p != from).unwrap();
    let slot = cluster.start_migration(&lists[0], to);
    // The list now lives on the importing node only; the source answers ASK for it. Pushes can
    // only reach it by following ASK.
    let moved = cluster.llen_importing(to, &lists[0]).unwrap();
    wait_until(
        "pushes reach the importing node through ASK",
        Duration::from_secs(30),
        || cluster.llen_importing(to, &lists[0]).unwrap_or(0) > moved,
    );
    cluster.finish_migration(slot, to);
    eprintln!(
        "reshard: slot {slot} of {} moved from port {from} to {to} mid-stream; pushes followed ASK, then MOVED",
        lists[0]
    );
    assert_eq!(cluster.master_for(&lists[0]), Some(to));
    let produced = producer.join().unwrap();
    broker.wait_committed(&group, &topics, PARTITIONS, Duration::from_secs(120));
    let mut elements = Vec::new();
    for list in &lists {
        elements.extend(Topology::list(&cluster, list));
    }
    let duplicates = Tally::new(&produced, &elements)
        .assert_complete()
        .duplicated;
    eprintln!(
        "reshard: {} produced, nothing missing, {duplicates} duplicates",
        produced.len()
    );
    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit(STOP_BOUND).success());
}

/// With the replica down, `WAIT 1` cannot be satisfied: pushes to that master count as failed,
/// their offsets are not committed, and once the replica is back everything is delivered.
fn wait_guard_holds_commits(topology: &mut dyn Topology, name: &str) {
    let broker = Broker::shared();
    let (topics, lists, group, dir) = fixture(broker, name);
    topology_config(broker, &*topology, &group, &topics)
        .redis_settings("wait_replicas = 1\nwait_timeout_ms = 300\n")
        .write(dir.path(), "k2r.toml");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let mut produced = Vec::new();
    for t in &topics {
        produced.extend(broker.produce_numbered(t, PARTITIONS, 0, 500));
    }
    broker.wait_committed(&group, &topics, PARTITIONS, Duration::from_secs(60));

    let replica = topology.kill_replica(&lists[0]);
    let held = broker.committed(&group, &topics[0], PARTITIONS);
    for t in &topics {
        produced.extend(broker.produce_numbered(t, PARTITIONS, 500, 500));
    }
    wait_until(
        "the WAIT guard fails pushes",
        Duration::from_secs(30),
        || bridge.log_text().contains("NOREPLICAS"),
    );
    // The pushes reach the master (and are retried), but none may be committed while no replica
    // has them. Watch for several commit intervals.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            broker.committed(&group, &topics[0], PARTITIONS),
            held,
            "{name}: offsets advanced although no replica confirmed the push"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(bridge.is_running());

    topology.restart(replica);
    broker.wait_committed(&group, &topics, PARTITIONS, Duration::from_secs(90));
    let mut elements = Vec::new();
    for list in &lists {
        elements.extend(topology.list(list));
    }
    let duplicates = Tally::new(&produced, &elements)
        .assert_complete()
        .duplicated;
    eprintln!(
        "{name}: WAIT guard held commits while the replica was down; nothing missing, {duplicates} duplicates from retried pushes"
    );
    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit(STOP_BOUND).success());
}

#[test]
fn sentinel_wait_guard_holds_commits_until_a_replica_has_the_push() {
    let mut group = SentinelGroup::start(Security::default());
    wait_guard_holds_commits(&mut group, "sentinel-guard");
}

#[test]
fn cluster_wait_guard_holds_commits_until_a_replica_has_the_push() {
    let mut cluster = Cluster::start(Security::default());
    wait_guard_holds_commits(&mut cluster, "cluster-guard");
}

/// An ACL user on the data nodes, `requirepass` on the sentinels: the bridge logs in to both with
/// their own credentials, `check` shows the master and every sentinel, and wrong credentials are
/// a plain error.
#[test]
fn sentinel_with_acl_user_and_sentinel_password() {
    let broker = Broker::shared();
    let group = SentinelGroup::start(Security {
        admin_password: Some("admin-secret".into()),
        acl_user: Some(("bridge".into(), "bridge-secret".into())),
        sentinel_password: Some("sentinel-secret".into()),
        ..Security::default()
    });
    let (topics, lists, group_id, dir) = fixture(broker, "acl");
    let toml = topology_config(broker, &group, &group_id, &topics).to_string();
    write_file(dir.path(), "k2r.toml", &toml);

    let (code, out) = check(dir.path());
    assert_eq!(code, Some(0), "{out}");
    let master = format!("127.0.0.1:{}", group.master_port().unwrap());
    assert!(out.contains(&format!("master: {master}")), "{out}");
    for s in group.sentinel_addresses() {
        assert!(
            out.contains(&format!("sentinel {s}: reached, names {master}")),
            "{out}"
        );
    }
    assert!(out.contains("user \"bridge\""), "{out}");

    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let mut produced = Vec::new();
    for t in &topics {
        produced.extend(broker.produce_numbered(t, PARTITIONS, 0, 1000));
    }
    broker.wait_committed(&group_id, &topics, PARTITIONS, Duration::from_secs(60));
    let mut elements = Vec::new();
    for list in &lists {
        elements.extend(group.list(list));
    }
    Tally::new(&produced, &elements).assert_complete();
    // The pushes were made as the ACL user.
    let mut conn = group.master_conn().unwrap();
    let acl_log: Vec<redis::Value> = redis::cmd("ACL").arg("LOG").query(&mut conn).unwrap();
    assert!(acl_log.is_empty(), "no ACL denials: {acl_log:?}");
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut conn).unwrap();
    assert!(clients.contains("user=bridge"), "{clients}");
    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit(STOP_BOUND).success());

    // Wrong passwords: for the data node, then for the sentinels.
    write_file(
        dir.path(),
        "k2r.toml",
        &toml.replace("\"bridge-secret\"", "\"wrong\""),
    );
    let (code, out) = check(dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("refused the credentials"), "{out}");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    let status = bridge.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "wrong credentials stop the bridge");
    assert!(bridge.log_text().contains("refused the credentials"));

    write_file(
        dir.path(),
        "k2r.toml",
        &toml.replace("\"sentinel-secret\"", "\"wrong\""),
    );
    let (code, out) = check(dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("refused the credentials"), "{out}");
}

/// TLS with a throwaway CA and a required client certificate, standalone: messages flow; without
/// the client certificate, or with an unknown CA, `check` fails; `tls_insecure_skip_verify` works and
/// says so loudly.
#[test]
fn standalone_over_tls_with_client_certificate() {
    let broker = Broker::shared();
    let node = RedisServer::start_with(
        Security {
            tls: Some(Certs::generate()),
            ..Security::default()
        },
        &[],
    );
    let certs = node.security.tls.as_ref().unwrap();
    let (topics, lists, group_id, dir) = fixture(broker, "tls");
    topology_config(broker, &node, &group_id, &topics).write(dir.path(), "k2r.toml");
    let (code, out) = check(dir.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("TLS (CA file)"), "{out}");

    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let mut produced = Vec::new();
    for t in &topics {
        produced.extend(broker.produce_numbered(t, PARTITIONS, 0, 1000));
    }
    broker.wait_committed(&group_id, &topics, PARTITIONS, Duration::from_secs(60));
    let mut elements: Vec<Vec<u8>> = Vec::new();
    for list in &lists {
        elements.extend(node.list(list));
    }
    Tally::new(&produced, &elements).assert_complete();
    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit(STOP_BOUND).success());

    // No client certificate: the server requires one.
    let no_cert = format!(
        "[redis]\naddresses = [\"rediss://127.0.0.1:{}\"]\ntls_ca_file = \"{}\"\n",
        node.port,
        certs.ca.display()
    );
    topology_config(broker, &no_cert, &group_id, &topics).write(dir.path(), "k2r.toml");
    let (code, out) = check(dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("redis: FAILED"), "{out}");

    // A CA that did not sign the server's certificate: verification fails.
    let other = Certs::generate();
    let wrong_ca = format!(
        "[redis]\naddresses = [\"rediss://127.0.0.1:{}\"]\ntls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        node.port,
        other.ca.display(),
        certs.client_cert.display(),
        certs.client_key.display()
    );
    topology_config(broker, &wrong_ca, &group_id, &topics).write(dir.path(), "k2r.toml");
    let (code, out) = check(dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("redis: FAILED"), "{out}");

    // Skipping verification (tests only) connects despite the wrong CA, and says so. It presents no
    // client certificate, so it is tried against a server where one is optional.
    let lenient_node = RedisServer::start_with(
        Security {
            tls: Some(Certs::generate()),
            tls_client_cert_optional: true,
            ..Security::default()
        },
        &[],
    );
    let insecure = format!(
        "[redis]\naddresses = [\"rediss://127.0.0.1:{}\"]\ntls_insecure_skip_verify = true\n",
        lenient_node.port
    );
    topology_config(broker, &insecure, &group_id, &topics).write(dir.path(), "k2r.toml");
    let (code, out) = check(dir.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("TLS WITHOUT certificate verification"),
        "{out}"
    );
    assert!(out.contains("NOT verified"), "{out}");
    // Without skipping, the same server's certificate (from an unknown CA) is refused.
    let verified = insecure.replace("tls_insecure_skip_verify = true", "tls = true");
    topology_config(broker, &verified, &group_id, &topics).write(dir.path(), "k2r.toml");
    let (code, out) = check(dir.path());
    assert_eq!(code, Some(1), "{out}");
}

/// Cluster over TLS (client certificates required, TLS between nodes) with an ACL user: every
/// node connection, including those the cluster client discovers, carries the CA and client
/// certificate. `check` shows the nodes and which master owns each list.
#[test]
fn cluster_over_tls_with_acl_user() {
    let broker = Broker::shared();
    let cluster = Cluster::start(Security {
        admin_password: Some("admin-secret".into()),
        acl_user: Some(("bridge".into(), "bridge-secret".into())),
        sentinel_password: None,
        tls: Some(Certs::generate()),
        tls_client_cert_optional: false,
    });
    let (topics, lists, group_id, dir) = fixture(broker, "ctls");
    let redis = cluster
        .redis_section()
        .replace("\"127.0.0.1:", "\"rediss://127.0.0.1:");
    topology_config(broker, &redis, &group_id, &topics).write(dir.path(), "k2r.toml");
    let (code, out) = check(dir.path());
    assert_eq!(code, Some(0), "{out}");
    for list in &lists {
        let owner = cluster.master_for(list).unwrap();
        assert!(
            out.contains(&format!("list \"{list}\": slot "))
                && out.contains(&format!("on 127.0.0.1:{owner} (1 replica(s))")),
            "{out}"
        );
    }
    assert_eq!(out.matches(": master, slots").count(), 3, "{out}");
    assert_eq!(out.matches(": replica of 127.0.0.1:").count(), 3, "{out}");

    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let mut produced = Vec::new();
    for t in &topics {
        produced.extend(broker.produce_numbered(t, PARTITIONS, 0, 1000));
    }
    broker.wait_committed(&group_id, &topics, PARTITIONS, Duration::from_secs(60));
    let mut elements = Vec::new();
    let mut owners = HashSet::new();
    for list in &lists {
        owners.insert(cluster.master_for(list).unwrap());
        elements.extend(cluster.list(list).unwrap());
    }
    Tally::new(&produced, &elements).assert_complete();
    eprintln!(
        "cluster over TLS: {} lists on {} master(s), nothing missing",
        lists.len(),
        owners.len()
    );
    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit(STOP_BOUND).success());
}

/// Bad topology settings stop before connecting, naming the key, with exit code 2.
#[test]
fn bad_topology_settings_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let nobody = Broker {
        address: "127.0.0.1:9".into(),
    };
    let run = |redis: &str| {
        Config::new(&nobody, redis, "g", r#"["t"]"#).write(dir.path(), "k2r.toml");
        let out = run_bridge(dir.path(), &["--config", "k2r.toml"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run("[redis]\nmode = \"sentinel\"\naddresses = [\"127.0.0.1:26379\"]\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`redis.master_name` is required"), "{err}");

    let (code, err) = run("[redis]\naddresses = [\"rediss://127.0.0.1:6379\"]\ntls_ca_file = \"/nonexistent/ca.pem\"\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("`redis.tls_ca_file`") && err.contains("cannot be read"),
        "{err}"
    );

    let (code, err) =
        run("[redis]\naddresses = [\"127.0.0.1:6379\"]\nwait_replicas = 1\nwait_timeout_ms = 0\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`redis.wait_timeout_ms`"), "{err}");

    let (code, err) = run("[redis]\naddresses = [\"127.0.0.1:6379\"]\nsentinel_password = \"x\"\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("`redis.sentinel_password` only applies"),
        "{err}"
    );
}

/// The old config's one host and one port name a standalone server; when that address is really a
/// Sentinel, `check` and the daemon say so and how to configure Sentinel mode, instead of retrying
/// commands the sentinel refuses.
#[test]
fn standalone_address_that_is_a_sentinel_is_refused() {
    let sentinel = lone_sentinel();
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "k2r.json",
        &format!(
            r#"{{"kafka_addr":["{}"],"redis_host":["127.0.0.1"],"redis_port":["{}"],
               "sentinel_master_name":"mymaster","topics":["t"],"consumer_group":"g"}}"#,
            Broker::shared().address,
            sentinel.port
        ),
    );
    let sentence = format!(
        "127.0.0.1:{} is a Redis Sentinel, not a Redis server: to reach Redis through Sentinel, set \
         redis.mode = \"sentinel\"",
        sentinel.port
    );
    let out = run_bridge(dir.path(), &["check", "--config", "k2r.json"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("redis: FAILED") && report.contains(&sentence),
        "{report}"
    );
    assert!(
        report.contains("sentinel_master_name = \"mymaster\" is unused"),
        "{report}"
    );

    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.json"]);
    let status = bridge.wait_exit(STOP_BOUND);
    assert_eq!(status.code(), Some(1), "{}", bridge.log_text());
    assert!(
        bridge.log_text().contains(&sentence),
        "{}",
        bridge.log_text()
    );
}

/// `check` warns when Redis may evict the lists (any `maxmemory-policy` but `noeviction`), also
/// when `CONFIG` is renamed away; a warning, not a problem.
#[test]
fn check_warns_when_redis_may_evict() {
    let broker = Broker::shared();
    let topic = unique("evict");
    broker.create_topic(&topic, 1);
    let report = |extra: &[&str]| {
        let redis = RedisServer::start_with(Security::default(), extra);
        let dir = tempfile::tempdir().unwrap();
        topology_config(broker, &redis, "evict-group", std::slice::from_ref(&topic))
            .write(dir.path(), "k2r.toml");
        check(dir.path())
    };
    let warning = "WARNING: the server may evict keys (maxmemory-policy allkeys-lru)";
    let (code, out) = report(&["--maxmemory-policy", "allkeys-lru"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(warning), "{out}");
    let (code, out) = report(&[
        "--maxmemory-policy",
        "allkeys-lru",
        "--rename-command",
        "CONFIG",
        "",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(warning), "read from INFO memory: {out}");
    let (code, out) = report(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("the server: maxmemory-policy noeviction") && !out.contains("WARNING"),
        "{out}"
    );
}

/// Not pass/fail: what the WAIT guard costs in throughput, Sentinel group, no failover. Run with
/// `cargo test --test redis_topologies wait_guard_cost -- --ignored --nocapture` (debug build: the
/// ratio means more than the absolute numbers).
#[test]
#[ignore]
fn wait_guard_cost() {
    let broker = Broker::shared();
    for wait_replicas in [0, 1] {
        let group = SentinelGroup::start(Security::default());
        let name = format!("cost{wait_replicas}-");
        let topics = create_topics(broker, &name);
        let group_id = unique(&format!("{name}group"));
        let per_topic = messages() / TOPICS;
        for t in &topics {
            broker.produce_numbered(t, PARTITIONS, 0, per_topic);
        }
        let dir = tempfile::tempdir().unwrap();
        topology_config(broker, &group, &group_id, &topics)
            .redis_settings(&format!("wait_replicas = {wait_replicas}\n"))
            .write(dir.path(), "k2r.toml");
        let started = Instant::now();
        let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
        broker.wait_committed(&group_id, &topics, PARTITIONS, Duration::from_secs(300));
        let elapsed = started.elapsed();
        eprintln!(
            "wait_replicas = {wait_replicas}: {} messages delivered and committed in {:.2} s ({:.0} msg/s, including start-up)",
            per_topic * TOPICS,
            elapsed.as_secs_f64(),
            (per_topic * TOPICS) as f64 / elapsed.as_secs_f64()
        );
        bridge.signal(libc::SIGTERM);
        assert!(bridge.wait_exit(STOP_BOUND).success());
    }
}
