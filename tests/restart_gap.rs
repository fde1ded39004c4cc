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
//! (`PAUSE_MS` in its group coordinator), so of the gap measured here about 6 s are Tansu's.

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
    let redis = RedisServer::start();
    let topic = unique("restart");
    broker.create_topic(&topic, PARTITIONS);
    let list = format!("queues:{topic}");
    let dir = tempfile::tempdir().unwrap();
    // The native defaults that matter here: 1-s commits, an early commit after 10,000 messages
    // of a partition (not set: the default), batches of 1,000, librdkafka's 45-s session timeout.
    Config::new(broker, &redis, &topic, &format!(r#"["{topic}"]"#))
        .commit_interval_ms(1000)
        .max_messages(1000)
        .write(dir.path(), "k2r.toml");
    let produced = broker.produce_numbered(&topic, PARTITIONS, 0, MESSAGES);

    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    wait_until("half delivered", Duration::from_secs(120), || {
        redis.llen(&list) >= MESSAGES / 2
    });
    bridge.kill9();
    let at_kill = redis.llen(&list);
    assert!(
        bridge.log_text().contains("static group membership"),
        "{}",
        bridge.log_text()
    );
    std::thread::sleep(RESTART_SEC); // the supervisor's own pause, not a wait for a condition

    let before = redis.llen(&list);
    let restarted_at = Instant::now();
    let mut restarted = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    wait_until(
        "the restarted bridge has its partitions back",
        Duration::from_secs(120),
        || restarted.log_text().contains("partitions assigned"),
    );
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
    assert_eq!(
        id(&bridge.log_text()),
        id(&restarted.log_text()),
        "the restart joins with the killed instance's group.instance.id"
    );
    eprintln!(
        "kill -9 with {at_kill} of {MESSAGES} pushed; restarted {RESTART_SEC:?} later; partitions \
         back {:.1} s and first new element {:.1} s after the restart",
        rejoined.as_secs_f64(),
        gap.as_secs_f64()
    );
    let tally = Tally::new(&produced, &redis.list(&list)).report(
        &format!(
            "kill -9 at full speed ({MESSAGES} messages, 4 partitions, default commits), restarted after 2 s: \
             partitions back {:.1} s after the restart (Tansu holds a static join ~6 s), delivering {:.1} s after it",
            rejoined.as_secs_f64(),
            gap.as_secs_f64()
        ),
        "at-least-once",
    );
    let tally = tally.assert_complete();
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
    // OffsetFetch of a static member slowly (seconds to tens of seconds, see docs/reliability.md).
    // Still far inside the session timeout that a dynamic member would have waited first.
    assert!(
        gap < SESSION_TIMEOUT,
        "delivering again took {gap:?} after the restart, not less than the session timeout"
    );
}
