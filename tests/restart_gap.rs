//! Fault: `kill -9` of the bridge at full speed, restarted 2 s later as systemd's
//! `Restart=on-failure` with `RestartSec=2s` does. Measured: the time from the restart to the first
//! new element in Redis, and what the restart delivered again.
//!
//! With static group membership (the default: a `group.instance.id` per instance, see
//! docs/configuration.md) the restarted instance is the same member, so the group hands its
//! partitions straight back; without it, the group first waits for the killed member's session to
//! time out (librdkafka's `session.timeout.ms`, 45 s by default, which this test keeps).
//!
//! The broker is Tansu: librdkafka's mock cluster does not know static members (a rejoin is a new
//! member there). Tansu holds every join and sync of a static member for 3 s
//! (`PAUSE_MS` in its group coordinator), so of the gap measured here about 6 s are Tansu's. And
//! Tansu 0.6.0 sometimes loses the member: it gives the restarted instance a new member id while
//! its killed self stays the group's leader, which it never expires as long as only static members
//! talk to it, so the group never gets an assignment again (every SyncGroup answers "rebalance in
//! progress"). An attempt that runs into that is recognised by that answer in librdkafka's group
//! log, counted, and tried again on a fresh topic and group; anything else fails the test.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{unique, wait_until, Bridge, Broker, Config, RedisServer, Tally};

const STOP_BOUND: Duration = Duration::from_secs(30);
const MESSAGES: usize = 30_000;
const PARTITIONS: i32 = 4;
/// systemd's `RestartSec` in deploy/systemd/kafka2redis.service.
const RESTART_SEC: Duration = Duration::from_secs(2);
/// What Tansu 0.6.0 adds to a static member's rejoin: a 3-s hold of its JoinGroup and of its
/// SyncGroup.
const TANSU_STATIC_JOIN: Duration = Duration::from_secs(6);
/// librdkafka's default `session.timeout.ms`: what a restarted dynamic member waits at least.
const SESSION_TIMEOUT: Duration = Duration::from_secs(45);
/// The goal: delivering again within 5 s of the restart (on a broker that does not hold joins).
const GOAL: Duration = Duration::from_secs(5);

#[test]
fn kill_9_at_full_speed_then_restarted_delivers_again_within_seconds() {
    let broker = Broker::shared();
    let mut lost_by_tansu = 0;
    let outcome = loop {
        match attempt(broker) {
            Some(outcome) => break outcome,
            None => {
                lost_by_tansu += 1;
                eprintln!("attempt {lost_by_tansu}: Tansu lost the restarted static member; again");
                assert!(
                    lost_by_tansu < ATTEMPTS,
                    "Tansu lost the restarted static member in all {ATTEMPTS} attempts"
                );
            }
        }
    };
    let Outcome {
        rejoined,
        gap,
        tally,
    } = outcome;
    let tally = tally
        .report(
            &format!(
                "kill -9 at full speed ({MESSAGES} messages, 4 partitions, default commits), restarted after 2 s: \
                 partitions back {:.1} s after the restart (Tansu holds a static member's join and sync up to 3 s each), delivering {:.1} s after it \
                 ({lost_by_tansu} earlier attempt(s) lost by Tansu's static-member bug)",
                rejoined.as_secs_f64(),
                gap.as_secs_f64()
            ),
            "at-least-once",
        )
        .assert_complete();
    // Per partition, what was stored since its last commit (fewer than commit_after_messages,
    // 10,000) plus the batches in flight.
    assert!(
        tally.duplicated <= PARTITIONS as usize * (10_000 + 2 * 1_000),
        "{tally:?}"
    );
    // The group's part, which static membership decides: the partitions come back at once (Tansu
    // adds its hold); without it they would wait for the killed member's 45-s session timeout.
    assert!(
        rejoined <= GOAL + TANSU_STATIC_JOIN,
        "the partitions came back {rejoined:?} after the restart (goal {GOAL:?}, plus Tansu's hold \
         of {TANSU_STATIC_JOIN:?})"
    );
    // Delivery follows once the committed offsets are read; Tansu 0.6.0 answers that first
    // OffsetFetch of a static member slowly at times (see docs/reliability.md). Still inside the
    // session timeout that a dynamic member would have waited out first.
    assert!(
        gap < SESSION_TIMEOUT,
        "delivering again took {gap:?} after the restart, not less than the session timeout"
    );
}

/// Attempts before Tansu's lost-member bug fails the test.
const ATTEMPTS: usize = 4;

struct Outcome {
    /// From the restart to the partitions assigned.
    rejoined: Duration,
    /// From the restart to the first new element in Redis.
    gap: Duration,
    tally: Tally,
}

/// One run of the scenario on a fresh topic and group; `None` when Tansu lost the restarted
/// member (see the module's comment).
fn attempt(broker: &'static Broker) -> Option<Outcome> {
    let redis = RedisServer::start();
    let topic = unique("restart");
    broker.create_topic(&topic, PARTITIONS);
    let list = format!("queues:{topic}");
    let dir = tempfile::tempdir().unwrap();
    // The native defaults that matter here: 1-s commits, an early commit after 10,000 messages
    // of a partition (not set: the default), batches of 1,000, librdkafka's 45-s session timeout,
    // static membership. librdkafka's group log tells Tansu's bug apart.
    Config::new(broker, &redis, &topic, &format!(r#"["{topic}"]"#))
        .static_membership()
        .commit_interval_ms(1000)
        .max_messages(1000)
        .kafka_properties("\"debug\" = \"cgrp\"")
        .write(dir.path(), "k2r.toml");
    let produced = broker.produce_numbered(&topic, PARTITIONS, 0, MESSAGES);
    let start = || Bridge::start_logging(dir.path(), &["--config", "k2r.toml"], LOG);

    let mut bridge = start();
    wait_until("half delivered", Duration::from_secs(120), || {
        redis.llen(&list) >= MESSAGES / 2
    });
    bridge.kill9();
    let at_kill = redis.llen(&list);
    std::thread::sleep(RESTART_SEC); // the supervisor's own pause, not a wait for a condition

    let before = redis.llen(&list);
    let restarted_at = Instant::now();
    let mut restarted = start();
    let deadline = restarted_at + Duration::from_secs(40);
    while !restarted.log_text().contains("partitions assigned") {
        if Instant::now() > deadline {
            let log = restarted.log_text();
            restarted.kill9();
            assert!(
                log.contains("SyncGroup response: Broker: Group rebalance in progress"),
                "no partitions 40 s after the restart, and not for Tansu's known reason:\n{log}"
            );
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let rejoined = restarted_at.elapsed();
    wait_until(
        "the restarted bridge delivers",
        Duration::from_secs(120),
        || redis.llen(&list) > before,
    );
    let gap = restarted_at.elapsed();
    wait_until("every message delivered", Duration::from_secs(120), || {
        let got: HashSet<Vec<u8>> = redis.list(&list).into_iter().collect();
        got.len() == produced.len()
    });
    restarted.signal(libc::SIGTERM);
    assert!(restarted.wait_exit(STOP_BOUND).success());

    let id = |log: &str| {
        log.lines()
            .find(|l| l.contains("static group membership"))
            .and_then(|l| l.split("group_instance_id=").nth(1))
            .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
    };
    let first = id(&bridge.log_text());
    assert!(first.is_some(), "{}", bridge.log_text());
    assert_eq!(
        first,
        id(&restarted.log_text()),
        "the restart joins with the killed instance's group.instance.id"
    );
    eprintln!(
        "kill -9 with {at_kill} of {MESSAGES} pushed; restarted {RESTART_SEC:?} later; partitions \
         back {:.1} s and first new element {:.1} s after the restart",
        rejoined.as_secs_f64(),
        gap.as_secs_f64()
    );
    Some(Outcome {
        rejoined,
        gap,
        tally: Tally::new(&produced, &redis.list(&list)),
    })
}

/// The bridge's own lines, and librdkafka's group log (for Tansu's lost-member answer).
const LOG: &str = "info,kafka2redis=debug,librdkafka=debug";

/// The trade-off's other side: librdkafka's close sends no LeaveGroup for a static member, so a
/// stopped instance's partitions would wait for its session timeout; the bridge leaves before it
/// closes. Two copies of one config on one host (two slots, two ids) share a topic; the first
/// stops cleanly; the second delivers what is produced afterwards on every partition well within
/// the 45-s session timeout.
#[test]
fn a_clean_stop_of_a_static_member_moves_its_partitions_at_once() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let topic = unique("scalein");
    broker.create_topic(&topic, PARTITIONS);
    let list = format!("queues:{topic}");
    let dir = tempfile::tempdir().unwrap();
    Config::new(broker, &redis, &topic, &format!(r#"["{topic}"]"#))
        .static_membership()
        .write(dir.path(), "k2r.toml");
    let mut first = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    first.wait_assigned();
    let second = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    second.wait_assigned();
    let id = |bridge: &Bridge| {
        bridge
            .log_text()
            .lines()
            .find(|l| l.contains("static group membership"))
            .and_then(|l| l.split("group_instance_id=").nth(1))
            .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
    };
    let (a, b) = (id(&first).unwrap(), id(&second).unwrap());
    assert!(
        a.ends_with(".0") && b.ends_with(".1") && a[..a.len() - 2] == b[..b.len() - 2],
        "two copies of one config take slots 0 and 1: {a} {b}"
    );

    first.signal(libc::SIGTERM);
    assert!(
        first.wait_exit(STOP_BOUND).success(),
        "{}",
        first.log_text()
    );
    let stopped_at = Instant::now();
    assert!(
        !first.log_text().contains("the group was not left in time"),
        "{}",
        first.log_text()
    );
    let produced = broker.produce_numbered(&topic, PARTITIONS, 0, 4_000);
    wait_until(
        "the second copy delivers every partition",
        SESSION_TIMEOUT / 2,
        || redis.llen(&list) >= produced.len(),
    );
    eprintln!(
        "after a clean stop of one of two static members, the other delivered all 4 partitions \
         {:.1} s later",
        stopped_at.elapsed().as_secs_f64()
    );
    Tally::new(&produced, &redis.list(&list)).assert_complete();
}
