//! Fault: the bridge cut off from Kafka for longer than its session timeout, then healed.
//!
//! The bridge reaches a Tansu broker of the test's own only through a proxy on loopback that the
//! broker advertises as its address, so every connection (bootstrap, fetch, the group coordinator,
//! commits) passes through it. A first part of the stream is delivered and committed (a clean
//! stop commits it); the rest is produced, and a second bridge — committing only on revoke and at
//! shutdown, so that everything it pushes stays uncommitted — starts moving it. Mid-stream the
//! proxy holds its bytes the way a partitioned link does. The bridge goes on pushing what
//! librdkafka had prefetched (Redis is not cut off) but reaches no broker; when no coordinator
//! response has come for `session.timeout.ms`, librdkafka reports the assignment lost and the
//! bridge aborts those lanes without committing. The link heals; the bridge rejoins and resumes
//! from the committed offsets (at-least-once: what it pushed after the commit comes again, once)
//! or from the offsets Redis recorded with the messages (exactly-once: nothing comes twice).
//!
//! At-least-once, the re-delivery is either the whole window pushed after the last commit or
//! nothing: the bridge commits nothing for lost partitions, but librdkafka (2.12) does as they
//! are unassigned — `incremental_unassign` clears the "lost" mark before the removal is served,
//! and the removal commits the partitions' stored offsets when `enable.auto.commit` is on. Those
//! offsets were stored only after Redis acknowledged, so nothing is lost either way; a broker that
//! accepts that commit before the rejoin's offset fetch (Tansu does)
//! makes the re-delivery nothing, one that refuses it (Kafka, for an evicted member) the window.
//! The test reports which it was.
//!
//! The heal closes the connections that were open during the cut (`release_reset`) rather than
//! delivering their held bytes late. With late delivery, Tansu 0.6.0 never lets the group form
//! again: the old member's held heartbeat reaches it after the session timeout, its heartbeat
//! handler expires the member (the group's leader) before refreshing it, and the group stays
//! `Formed` with that departed member as leader, so every new member is told to wait for that
//! leader's SyncGroup and never gets an assignment (Kafka would have answered the late heartbeat
//! with UNKNOWN_MEMBER_ID). A partition long enough to outlive the session often ends with the
//! connections gone anyway (TCP timeouts, firewall state), so this is the same fault.
//!
//! Design row (docs/reliability.md): at-least-once 0 missing, one re-delivery; exactly-once
//! 0 missing, 0 duplicated.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::proxy::HoldingProxy;
use common::*;

const SESSION_TIMEOUT_MS: u64 = 6_000;
/// How long the link stays cut at least: well past the session timeout.
const CUT: Duration = Duration::from_millis(SESSION_TIMEOUT_MS * 3 / 2);
const PARTITIONS: i32 = 4;
/// Delivered and committed before the cut.
const FIRST: usize = 4_000;
const MESSAGES: usize = 20_000;
const FAULT: &str = "bridge cut off from Kafka past the session timeout, then healed";

/// The log line of `Lanes::lost` (src/kafka/lanes.rs): the lost partitions' lanes are gone.
const LOST: &str = "lost partitions' lanes aborted";
/// The rebalance callback's line when librdkafka says the assignment was lost, not revoked.
const LOST_REASON: &str = "partitions were lost (session timed out)";
const SESSION_TIMED_OUT: &str = "Consumer group session timed out";
const ASSIGNED: &str = "partitions assigned";
const COMMITTED: &str = "offsets committed";

struct Outcome {
    /// What reached Redis: per partition, the times its sequence went back in the list
    /// (`went_back`), and the most times one message is in it (`most_copies`).
    cost: Tally,
    /// Messages pushed before the loss (`at_loss`), and those below the offsets the group had
    /// committed right after the rejoin (the bridge itself commits nothing in between).
    at_loss: usize,
    committed_at_rejoin: usize,
    /// Messages the bridge had pushed beyond the committed offsets when it lost its partitions.
    uncommitted: usize,
}

fn cut_off_past_the_session_timeout(delivery: &str) -> Outcome {
    let run = Instant::now();
    // Tansu advertises the proxy, so every connection of a client passes through it.
    let port = free_port();
    let proxy = HoldingProxy::start(port);
    let kafka = Tansu::start_on(port, proxy.port);
    let broker = &kafka.broker;
    let redis = RedisServer::start();
    let topic = unique("kcut");
    broker.create_topic(&topic, PARTITIONS);
    let list = format!("queues:{topic}");
    let dir = tempfile::tempdir().unwrap();
    Config::new(broker, &redis, &topic, &format!(r#"["{topic}"]"#))
        .delivery(delivery)
        // No periodic commit: only revokes and clean stops commit, so the window the second
        // bridge pushes before the cut is uncommitted, whatever the timing.
        .commit_interval_ms(600_000)
        .kafka_properties(&format!(
            "\"session.timeout.ms\" = {SESSION_TIMEOUT_MS}\n\"heartbeat.interval.ms\" = 1000"
        ))
        .write(dir.path(), "k2r.toml");
    let start = || Bridge::start(dir.path(), &["--config", "k2r.toml"]);

    // The first part, delivered and committed by a clean stop.
    let mut produced = broker.produce_numbered(&topic, PARTITIONS, 0, FIRST);
    let per_partition = (FIRST / PARTITIONS as usize) as i64;
    let mut first = start();
    wait_until(
        "the first part is in Redis",
        Duration::from_secs(60),
        || redis.llen(&list) >= FIRST,
    );
    first.signal(libc::SIGTERM);
    assert!(first.wait_exit(Duration::from_secs(30)).success());
    assert_eq!(
        broker.committed(&topic, &topic, PARTITIONS),
        vec![Some(per_partition); PARTITIONS as usize],
        "the first part is committed"
    );

    // The rest as a backlog, which the bridge reads as fast as it can: librdkafka prefetches
    // ahead of the lanes. The cut comes at the bridge's first push of it, so at the cut the bridge
    // holds messages fetched but not yet pushed (and Kafka the rest, if a fetch brought less).
    produced.extend(broker.produce_numbered(&topic, PARTITIONS, FIRST, MESSAGES - FIRST));
    let mut bridge = start();
    let mut conn = redis.conn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while redis::cmd("LLEN")
        .arg(&list)
        .query::<usize>(&mut conn)
        .unwrap()
        <= FIRST
    {
        assert!(
            Instant::now() < deadline,
            "the bridge did not start on the backlog"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    proxy.hold();
    let cut = Instant::now();
    let at_cut = redis.llen(&list);
    assert!(
        at_cut < MESSAGES,
        "the bridge had moved the whole backlog ({at_cut}) before the cut: nothing to test"
    );
    let mut lost_after = None;
    wait_until(
        "librdkafka reports the assignment lost, and the cut lasts well past the session timeout",
        CUT + Duration::from_millis(3 * SESSION_TIMEOUT_MS),
        || {
            if lost_after.is_none() && bridge.log_text().contains(LOST) {
                lost_after = Some(cut.elapsed());
            }
            lost_after.is_some() && cut.elapsed() >= CUT
        },
    );
    let lost_after = lost_after.unwrap();
    // The lanes are gone, so this is what the bridge pushed before it lost its partitions.
    let at_loss = redis.llen(&list);
    proxy.release_reset();
    let held = cut.elapsed();
    let uncommitted = at_loss - FIRST;
    eprintln!(
        "kafka-cut: {delivery}: cut with {at_cut} of {MESSAGES} in Redis ({FIRST} committed); \
         assignment lost {lost_after:.1?} into the cut (session timeout {SESSION_TIMEOUT_MS} ms); \
         {} pushed while cut off, {uncommitted} pushed beyond the committed offsets in all; link \
         held {held:.1?}",
        at_loss - at_cut
    );

    let healed = Instant::now();
    wait_until(
        "the bridge rejoins and is assigned its partitions again",
        Duration::from_secs(60),
        || {
            let log = bridge.log_text();
            log.find(LOST)
                .is_some_and(|lost| log[lost..].contains(ASSIGNED))
        },
    );
    let rejoined_after = healed.elapsed();
    let committed_at_rejoin: usize = broker
        .committed(&topic, &topic, PARTITIONS)
        .into_iter()
        .map(|o| o.unwrap_or(0) as usize)
        .sum();
    wait_until("every message is in Redis", Duration::from_secs(60), || {
        redis.list(&list).into_iter().collect::<HashSet<_>>().len() >= MESSAGES
    });
    let delivered_after = healed.elapsed();
    bridge.signal(libc::SIGTERM);
    assert!(
        bridge.wait_exit(Duration::from_secs(30)).success(),
        "clean stop after the heal"
    );
    let ends = vec![Some((MESSAGES / PARTITIONS as usize) as i64); PARTITIONS as usize];
    let high: Vec<Option<i64>> = broker
        .high_watermarks(&topic, PARTITIONS)
        .into_iter()
        .map(Some)
        .collect();
    assert_eq!(high, ends, "the partitions' high watermarks");
    assert_eq!(
        broker.committed(&topic, &topic, PARTITIONS),
        ends,
        "the group committed every partition to its end"
    );

    // The fault really happened: librdkafka's session timed out and it gave the partitions up
    // as lost — after the bridge had pushed beyond the committed offsets and before it committed
    // anything — and the bridge joined again afterwards.
    let log = bridge.log_text();
    let lost = log.find(LOST).unwrap();
    assert!(
        log[..lost].contains(SESSION_TIMED_OUT),
        "librdkafka's session timeout"
    );
    assert!(
        log[..lost].contains(LOST_REASON),
        "the partitions were lost, not revoked"
    );
    assert!(
        !log[..lost].contains(COMMITTED),
        "the bridge committed nothing before the loss"
    );
    assert!(
        uncommitted > 0,
        "the bridge had pushed nothing beyond the committed offsets when it lost its partitions"
    );
    if delivery == "exactly-once" {
        assert!(
            log[lost..].contains("exactly-once: resuming from the offset recorded in Redis"),
            "after the rejoin the lanes resumed from the offsets recorded in Redis"
        );
        let recorded: Vec<Option<i64>> = (0..PARTITIONS)
            .map(|p| {
                redis::cmd("HGET")
                    .arg(format!("{{{list}}}:offsets"))
                    .arg(format!("{topic}:{p}"))
                    .query(&mut redis.conn())
                    .unwrap()
            })
            .collect();
        assert_eq!(recorded, ends, "the offsets Redis recorded with the list");
    }

    let elements = redis.list(&list);
    let cost = Tally::new(&produced, &elements).report(FAULT, delivery);
    let per_partition: Vec<(&String, usize)> =
        cost.went_back.iter().map(|(p, e)| (p, e.len())).collect();
    eprintln!(
        "kafka-cut: {delivery}: rejoined {rejoined_after:.1?} after the heal, everything in Redis \
         {delivered_after:.1?} after it; {committed_at_rejoin} below the offsets committed \
         at the rejoin; order violations per partition {per_partition:?}; \
         run {:.1?}",
        run.elapsed()
    );
    Outcome {
        cost,
        at_loss,
        committed_at_rejoin,
        uncommitted,
    }
}

#[test]
fn cut_off_from_kafka_past_the_session_timeout_at_least_once() {
    let o = cut_off_past_the_session_timeout("at-least-once");
    assert!(o.cost.missing.is_empty(), "{:?}", o.cost);
    // At most one re-delivery: the window pushed after the last commit comes once more, or not
    // at all when librdkafka's commit on unassigning the lost partitions got in first (see the
    // module comment). No message is there more than twice, and each partition's sequence goes
    // back at most once.
    assert!(
        o.cost.duplicated == o.uncommitted
            || (o.cost.duplicated == 0 && o.committed_at_rejoin == o.at_loss),
        "re-delivered {} of a window of {} pushed beyond the committed offsets \
         ({} pushed before the loss, {} below the offsets committed at the rejoin)",
        o.cost.duplicated,
        o.uncommitted,
        o.at_loss,
        o.committed_at_rejoin
    );
    assert!(
        o.cost.most_copies <= 2,
        "a message delivered {} times",
        o.cost.most_copies
    );
    for (partition, went_back) in &o.cost.went_back {
        let n = went_back.len();
        assert!(n <= 1, "partition {partition} went back {n} times");
    }
}

#[test]
fn cut_off_from_kafka_past_the_session_timeout_exactly_once() {
    let o = cut_off_past_the_session_timeout("exactly-once");
    assert!(o.cost.missing.is_empty(), "{:?}", o.cost);
    assert_eq!(o.cost.duplicated, 0, "{:?}", o.cost);
    assert_eq!(o.cost.order_violations(), 0, "{:?}", o.cost);
    assert_eq!(o.cost.delivered, o.cost.produced, "{:?}", o.cost);
}
