//! Safety that follows the live state in Redis: the lease's fence and the types of the keys the
//! bridge writes are checked with every push, not trusted from start-up.
//!
//! - A fence key that vanishes while the lease survives (an operator's `DEL`, eviction, a replica
//!   promoted before the fence reached it): the holder verifies its lease, writes the fence again
//!   and goes on — no stall, nothing pushed twice — and a standby still takes over when the holder
//!   stops.
//! - Only a dead-letter list's fence gone, with dead letters in the batches: nothing is pushed twice.
//! - A companion key of another type (Sidekiq's `queues` made a hash by another application): the
//!   push script refuses before any write, so the list never holds more than was sent; the bridge
//!   names the key, and delivers everything once after the operator removed it.
//! - An older release's fences (the token alone) are replaced by the new holder: nothing lost.
//!
//! Design rows (docs/reliability.md): "the fence key vanishes while the lease survives", "a
//! companion key of the wrong type".

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const TTL_MS: u64 = 2000;

/// A native config with `topics`, for `delivery`, and `extra` sections.
fn config(
    broker: &Broker,
    redis: &RedisServer,
    group: &str,
    delivery: &str,
    topics: &str,
    extra: &str,
) -> String {
    Config::new(broker, redis, group, topics)
        .delivery(delivery)
        .sections(extra)
        .to_string()
}

fn lease_section(topic: &str) -> String {
    format!("[lease]\nkey = \"lease:{topic}\"\nttl_ms = {TTL_MS}\n")
}

/// What a message's value becomes: numbered (`"<topic>:<partition>:<seq>"`, as
/// `produce_numbered` makes it), or — every `dead_every`-th — that text behind a byte that is not
/// UTF-8, which a legacy envelope cannot carry (a dead letter).
fn value(topic: &str, partitions: i32, seq: usize, dead_every: usize) -> (i32, Vec<u8>) {
    let p = (seq % partitions as usize) as i32;
    let text = format!("{topic}:{p}:{seq:08}");
    if dead_every > 0 && seq % dead_every == dead_every - 1 {
        let mut bytes = vec![0xff];
        bytes.extend_from_slice(text.as_bytes());
        (p, bytes)
    } else {
        (p, text.into_bytes())
    }
}

fn produce(broker: &Broker, topic: &str, start: usize, count: usize, dead_every: usize) {
    let messages: Vec<TestMessage> = (start..start + count)
        .map(|seq| {
            let (p, v) = value(topic, 2, seq, dead_every);
            TestMessage::new(topic, p, Some(&v))
        })
        .collect();
    broker.produce(&messages);
}

fn numbered(topic: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("{topic}:{}:{i:08}", i % 2))
        .collect()
}

fn get(redis: &RedisServer, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(&mut redis.conn()).unwrap()
}

fn del(redis: &RedisServer, key: &str) {
    let _: () = redis::cmd("DEL").arg(key).query(&mut redis.conn()).unwrap();
}

fn distinct(elements: &[Vec<u8>]) -> usize {
    elements
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len()
}

fn stop_cleanly(bridge: &mut Bridge) {
    bridge.signal(libc::SIGTERM);
    assert!(
        bridge.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        bridge.log_text()
    );
}

/// Holder A and standby B on one list; mid-stream the list's fence key is deleted. A must go on
/// pushing within moments (it verifies the lease and writes the fence again), nothing may be
/// missing or pushed twice, and B must still take over once A stops.
fn fence_deleted_mid_stream(delivery: &str) {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let topic = unique("fencedel");
    broker.create_topic(&topic, 2);
    let list = format!("queues:{topic}");
    let fence = format!("{{{list}}}:fence");
    let text = config(
        broker,
        &redis,
        &topic,
        delivery,
        &format!(r#"["{topic}"]"#),
        &lease_section(&topic),
    );
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for dir in &dirs {
        write_file(dir.path(), "k.toml", &text);
    }
    let mut a = Bridge::start(dirs[0].path(), &["--config", "k.toml"]);
    a.wait_assigned();
    let mut b = Bridge::start(dirs[1].path(), &["--config", "k.toml"]);
    wait_until("B stands by", Duration::from_secs(30), || {
        b.log_text().contains("waiting as a standby")
    });
    let producer = Trickle::start(broker, &topic);
    wait_until("A pushes", Duration::from_secs(30), || {
        redis.llen(&list) >= 50
    });
    let value_before = get(&redis, &fence).expect("A wrote the fence");
    let a_log = a.log_text();
    eprintln!(
        "before the DEL, A took the lease {} time(s) and lost it {} time(s)",
        a_log.matches("lease taken").count(),
        a_log.matches("lease lost").count()
    );

    del(&redis, &fence);
    let deleted = Instant::now();
    let len_at_delete = redis.llen(&list);
    // Recovered: the fence holds a value again and the list grew past what it held at the DEL.
    let (mut rewritten, mut grew) = (None, None);
    wait_until(
        "A pushes again after its fence was deleted",
        Duration::from_secs(30),
        || {
            if rewritten.is_none() && get(&redis, &fence).is_some() {
                rewritten = Some(deleted.elapsed());
            }
            if grew.is_none() && redis.llen(&list) > len_at_delete {
                grew = Some(deleted.elapsed());
            }
            rewritten.is_some() && grew.is_some_and(|g| g >= rewritten.unwrap())
                || redis.llen(&list) > len_at_delete + 10
        },
    );
    let recovered = deleted.elapsed();
    let rewritten = rewritten.unwrap_or(recovered);
    assert_eq!(
        get(&redis, &fence),
        Some(value_before.clone()),
        "the holder wrote the same fence value again"
    );
    assert!(
        a.log_text().contains("fences written again"),
        "{}",
        a.log_text()
    );
    std::thread::sleep(Duration::from_millis(500)); // a little more of the stream after the heal

    // The standby takes over once the holder stops.
    stop_cleanly(&mut a);
    let len_at_stop = redis.llen(&list);
    wait_until("B takes the lease", Duration::from_secs(30), || {
        b.log_text().contains("lease taken")
    });
    wait_until("B pushes", Duration::from_secs(60), || {
        redis.llen(&list) > len_at_stop
    });
    let produced = producer.finish();
    wait_until(
        "everything produced is in Redis",
        Duration::from_secs(60),
        || distinct(&redis.list(&list)) >= produced,
    );
    stop_cleanly(&mut b);
    let fence_after = get(&redis, &fence).unwrap_or_default();
    let elements = redis.list(&list);
    let cost = Tally::new(&numbered(&topic, produced), &elements).report(
        &format!(
            "fence key DEL while the lease survives (recovered in {} ms), then holder stopped",
            recovered.as_millis()
        ),
        delivery,
    );
    eprintln!(
        "fence DEL ({delivery}): the fence was written again after {} ms, the list grew again after {} ms; \
         fence {value_before:?} -> after the takeover {fence_after:?}",
        rewritten.as_millis(),
        recovered.as_millis()
    );
    assert!(
        recovered < Duration::from_secs(5),
        "delivery stalled for {recovered:?}"
    );
    assert_eq!(cost.missing.len(), 0, "{cost:?}");
    assert_eq!(cost.duplicated, 0, "nothing pushed twice: {cost:?}");
    assert_eq!(cost.order_violations(), 0, "{cost:?}");
    let number = |v: &str| -> u64 { v.split_once(' ').unwrap().0.parse().unwrap() };
    assert!(
        number(&fence_after) > number(&value_before),
        "the new holder's fencing number is higher: {value_before:?} then {fence_after:?}"
    );
}

#[test]
fn fence_deleted_while_the_lease_survives_at_least_once() {
    fence_deleted_mid_stream("at-least-once");
}

#[test]
fn fence_deleted_while_the_lease_survives_exactly_once() {
    fence_deleted_mid_stream("exactly-once");
}

/// The value a legacy envelope carries (`{"attempts":1,"data":"…"}`).
fn legacy_data(element: &[u8]) -> Vec<u8> {
    let v: Value = serde_json::from_slice(element).expect("a legacy element");
    v["data"].as_str().expect("data").as_bytes().to_vec()
}

/// A legacy topic with dead letters in its batches (values that are not UTF-8); the dead-letter
/// list's fence alone is deleted mid-stream. The holder writes it again; no message and no dead
/// letter is pushed twice.
fn dead_letter_fence_deleted(delivery: &str) {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let topic = unique("deadfence");
    broker.create_topic(&topic, 2);
    let list = format!("queues:{topic}");
    let dead = format!("{list}:dead");
    let dead_fence = format!("{{{dead}}}:fence");
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "k.toml",
        &config(
            broker,
            &redis,
            &topic,
            delivery,
            &format!(r#"[{{ name = "{topic}", envelope = "legacy" }}]"#),
            &lease_section(&topic),
        ),
    );
    let mut a = Bridge::start(dir.path(), &["--config", "k.toml"]);
    a.wait_assigned();
    let (round, dead_every) = (200, 5);
    produce(broker, &topic, 0, round, dead_every);
    wait_until(
        "the first round is in Redis",
        Duration::from_secs(30),
        || redis.llen(&list) + redis.llen(&dead) >= round,
    );
    del(&redis, &dead_fence);
    let deleted = Instant::now();
    produce(broker, &topic, round, round, dead_every);
    wait_until(
        "the second round is in Redis",
        Duration::from_secs(30),
        || redis.llen(&list) + redis.llen(&dead) >= 2 * round,
    );
    let recovered = deleted.elapsed();
    // Time for a push that was held, refused and retried to show up twice.
    std::thread::sleep(Duration::from_millis(TTL_MS));
    stop_cleanly(&mut a);

    let messages: Vec<Vec<u8>> = redis.list(&list).iter().map(|e| legacy_data(e)).collect();
    let dead_letters = redis.list(&dead);
    let mut dead_offsets: HashMap<(i64, i64), usize> = HashMap::new();
    for record in &dead_letters {
        let v: Value = serde_json::from_slice(record).unwrap();
        let at = (
            v["partition"].as_i64().unwrap(),
            v["offset"].as_i64().unwrap(),
        );
        *dead_offsets.entry(at).or_default() += 1;
    }
    let dead_duplicated: usize = dead_offsets.values().map(|n| n - 1).sum();
    let expected: Vec<String> = (0..2 * round)
        .filter(|seq| seq % dead_every != dead_every - 1)
        .map(|seq| format!("{topic}:{}:{seq:08}", seq % 2))
        .collect();
    let cost = Tally::new(&expected, &messages).report(
        "only the dead-letter list's fence DEL, dead letters in the batches",
        delivery,
    );
    eprintln!(
        "dead-letter fence DEL ({delivery}): second round in Redis after {} ms; {} dead letters for {} \
         expected, {dead_duplicated} duplicated",
        recovered.as_millis(),
        dead_letters.len(),
        2 * round / dead_every
    );
    assert_eq!(
        (cost.missing.len(), cost.duplicated),
        (0, 0),
        "every message once: {cost:?}"
    );
    assert_eq!(dead_duplicated, 0, "every dead letter once");
    assert_eq!(dead_offsets.len(), 2 * round / dead_every);
    assert!(
        get(&redis, &dead_fence).is_some(),
        "the fence was written again"
    );
}

#[test]
fn dead_letter_fence_deleted_at_least_once() {
    dead_letter_fence_deleted("at-least-once");
}

#[test]
fn dead_letter_fence_deleted_exactly_once() {
    dead_letter_fence_deleted("exactly-once");
}

/// A log's text with the escapes of quotes inside quoted fields undone.
fn unescaped(log: &str) -> String {
    log.replace("\\\"", "\"")
}

/// The record a Sidekiq job carries as its one argument: its value.
fn sidekiq_value(element: &[u8]) -> Vec<u8> {
    let job: Value = serde_json::from_slice(element).expect("a Sidekiq job");
    job["args"][0]["value"]
        .as_str()
        .expect("a UTF-8 value")
        .as_bytes()
        .to_vec()
}

/// A Sidekiq topic on a Redis where `queues` is already a hash (another application's key): the
/// push script refuses before any write, so the list never holds more than was sent; `check` and
/// the bridge name the key; once the operator deletes it, everything arrives once.
fn wrong_typed_companion(delivery: &str) {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let topic = unique("wrongtype");
    broker.create_topic(&topic, 2);
    let list = format!("queue:{topic}");
    let _: () = redis::cmd("HSET")
        .arg("queues")
        .arg("another-app")
        .arg("1")
        .query(&mut redis.conn())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "k.toml",
        &config(
            broker,
            &redis,
            &topic,
            delivery,
            &format!(
                r#"[{{ name = "{topic}", list = "{list}", envelope = "sidekiq", job = "RecordWorker" }}]"#
            ),
            "",
        ),
    );
    let check = std::process::Command::new(binary())
        .current_dir(dir.path())
        .args(["check", "--config", "k.toml"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout).to_string();

    let mut bridge = Bridge::start(dir.path(), &["--config", "k.toml"]);
    bridge.wait_assigned();
    let named_at_start = unescaped(&bridge.log_text())
        .contains(r#"Redis key "queues" is a hash, but the bridge writes a set there"#);
    let round = 10;
    produce(broker, &topic, 0, round, 0);
    wait_until("a push meets the key", Duration::from_secs(30), || {
        let log = unescaped(&bridge.log_text());
        log.contains(r#"Redis key "queues" is a hash, not the set this push writes"#)
            || log.contains("WRONGTYPE")
    });
    // An observation window: retries go on with backoff, none may append the batch.
    let refused_since = Instant::now();
    let mut longest = 0;
    while refused_since.elapsed() < Duration::from_secs(3) {
        longest = longest.max(redis.llen(&list));
        std::thread::sleep(Duration::from_millis(50));
    }
    let error_lines = bridge.log_text().matches("is a hash, not the set").count();
    del(&redis, "queues");
    let deleted = Instant::now();
    wait_until(
        "delivery resumes once the key is deleted",
        Duration::from_secs(30),
        || redis.llen(&list) >= round,
    );
    let resumed = deleted.elapsed();
    produce(broker, &topic, round, round, 0);
    wait_until(
        "the second round is in Redis",
        Duration::from_secs(30),
        || redis.llen(&list) >= 2 * round,
    );
    std::thread::sleep(Duration::from_millis(500)); // anything pushed twice would land by now
    stop_cleanly(&mut bridge);

    // LPUSH: the oldest job is at the tail, where Sidekiq pops.
    let mut values: Vec<Vec<u8>> = redis.list(&list).iter().map(|e| sidekiq_value(e)).collect();
    values.reverse();
    let cost = Tally::new(&numbered(&topic, 2 * round), &values).report(
        "Sidekiq `queues` pre-created as a hash, then deleted",
        delivery,
    );
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg("queues")
        .query(&mut redis.conn())
        .unwrap();
    eprintln!(
        "wrong-typed companion ({delivery}): the list held at most {longest} of {round} while `queues` was a hash \
         ({error_lines} error line(s) in 3 s); delivering {} ms after the key was deleted",
        resumed.as_millis()
    );
    assert_eq!(longest, 0, "nothing landed while the script refused");
    assert!(
        !check.status.success()
            && report
                .contains(r#"key "queues": PROBLEM: it is a hash, but the bridge writes a set"#),
        "check names the key:\n{report}"
    );
    assert!(named_at_start, "one error line at start names the key");
    assert!(
        unescaped(&bridge.log_text())
            .contains(r#"Redis key "queues" is a hash, not the set this push writes"#),
        "the lane names the key"
    );
    assert_eq!(
        (cost.missing.len(), cost.duplicated, cost.order_violations()),
        (0, 0, 0),
        "{cost:?}"
    );
    assert_eq!(members, vec![topic.clone()]);
}

#[test]
fn wrong_typed_companion_at_least_once() {
    wrong_typed_companion("at-least-once");
}

#[test]
fn wrong_typed_companion_exactly_once() {
    wrong_typed_companion("exactly-once");
}

/// Upgrading from a release whose fences hold the token alone: its instance held the lease (and
/// stopped without giving it back); the new instance takes the lease once it expires, replaces the
/// older fences with numbered ones and delivers everything that waited.
#[test]
fn an_older_releases_fences_are_replaced() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let topic = unique("oldfence");
    broker.create_topic(&topic, 2);
    let list = format!("queues:{topic}");
    let old_token = "oldhost:4242:0000abcd";
    let mut conn = redis.conn();
    for fence in [
        format!("{{{list}}}:fence"),
        format!("{{{list}:dead}}:fence"),
    ] {
        let _: () = redis::cmd("SET")
            .arg(fence)
            .arg(old_token)
            .query(&mut conn)
            .unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg(format!("lease:{topic}"))
        .arg(old_token)
        .arg("PX")
        .arg(TTL_MS)
        .query(&mut conn)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_file(
        dir.path(),
        "k.toml",
        &config(
            broker,
            &redis,
            &topic,
            "at-least-once",
            &format!(r#"["{topic}"]"#),
            &lease_section(&topic),
        ),
    );
    let produced = 300;
    broker.produce_numbered(&topic, 2, 0, produced);
    let mut bridge = Bridge::start(dir.path(), &["--config", "k.toml"]);
    wait_until("everything is delivered", Duration::from_secs(60), || {
        redis.llen(&list) >= produced
    });
    stop_cleanly(&mut bridge);
    let fence = get(&redis, &format!("{{{list}}}:fence")).unwrap();
    let cost = Tally::new(&numbered(&topic, produced), &redis.list(&list)).report(
        "an older release's fences (token alone) when the lease changes hands",
        "at-least-once",
    );
    assert!(fence.starts_with("1 "), "a numbered fence: {fence:?}");
    assert_eq!(
        (cost.missing.len(), cost.duplicated, cost.order_violations()),
        (0, 0, 0),
        "{cost:?}"
    );
}

/// The previous release's binary, for the mid-stream upgrade test (`K2R_PREVIOUS_BIN`).
fn previous_binary() -> Option<std::path::PathBuf> {
    std::env::var_os("K2R_PREVIOUS_BIN").map(Into::into)
}

/// The previous release running in `dir` (its fences hold the token alone), killed on drop.
struct Previous {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Previous {
    fn start(bin: &std::path::Path, dir: &std::path::Path) -> Previous {
        let log = dir.join("previous.log");
        let mut cmd = std::process::Command::new(bin);
        cmd.current_dir(dir)
            .args(["--config", "k.toml"])
            .env("RUST_LOG", "info,kafka2redis=debug")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        die_with_parent(&mut cmd);
        Previous {
            child: cmd.spawn().expect("start the previous release"),
            log,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{}", self.log_text());
    }
}

impl Drop for Previous {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A rolling upgrade mid-stream: the previous release holds the lease and pushes (its fences hold
/// its token alone), this release waits as the standby; the previous one is stopped, this one takes
/// over, replaces the fences with numbered ones and goes on. Nothing missing; exactly-once, nothing
/// twice. Needs the previous release's binary in `K2R_PREVIOUS_BIN` (`scripts/previous-release.sh`);
/// skipped without it.
#[test]
fn upgrade_from_the_previous_release_mid_stream() {
    upgrade_mid_stream("exactly-once");
}

#[test]
fn upgrade_from_the_previous_release_mid_stream_at_least_once() {
    upgrade_mid_stream("at-least-once");
}

fn upgrade_mid_stream(delivery: &str) {
    let Some(previous) = previous_binary() else {
        eprintln!("skipped: set K2R_PREVIOUS_BIN to the previous release's kafka2redis binary");
        return;
    };
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let topic = unique("upgrade");
    broker.create_topic(&topic, 2);
    let list = format!("queues:{topic}");
    let fence = format!("{{{list}}}:fence");
    let text = config(
        broker,
        &redis,
        &topic,
        delivery,
        &format!(r#"["{topic}"]"#),
        &lease_section(&topic),
    );
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for dir in &dirs {
        write_file(dir.path(), "k.toml", &text);
    }
    let mut old = Previous::start(&previous, dirs[0].path());
    wait_until(
        "the previous release pushes",
        Duration::from_secs(60),
        || old.log_text().contains("partitions assigned"),
    );
    let producer = Trickle::start(broker, &topic);
    wait_until(
        "the previous release pushes",
        Duration::from_secs(30),
        || redis.llen(&list) >= 50,
    );
    let old_fence = get(&redis, &fence).unwrap_or_default();
    let mut new = Bridge::start(dirs[1].path(), &["--config", "k.toml"]);
    wait_until("the new release stands by", Duration::from_secs(30), || {
        new.log_text().contains("waiting as a standby")
    });
    old.stop();
    let len_at_stop = redis.llen(&list);
    wait_until("the new release pushes", Duration::from_secs(60), || {
        redis.llen(&list) > len_at_stop
    });
    let produced = producer.finish();
    wait_until(
        "everything produced is in Redis",
        Duration::from_secs(60),
        || distinct(&redis.list(&list)) >= produced,
    );
    stop_cleanly(&mut new);
    let new_fence = get(&redis, &fence).unwrap_or_default();
    let cost = Tally::new(&numbered(&topic, produced), &redis.list(&list)).report(
        "rolling upgrade mid-stream from the previous release (its fences hold the token alone)",
        delivery,
    );
    eprintln!("upgrade: fence {old_fence:?} (previous release) -> {new_fence:?}");
    assert!(
        !old_fence.contains(' ') && new_fence.starts_with("1 "),
        "{old_fence:?} -> {new_fence:?}"
    );
    assert_eq!(cost.missing.len(), 0, "{cost:?}");
    if delivery == "exactly-once" {
        assert_eq!(
            (cost.duplicated, cost.order_violations()),
            (0, 0),
            "{cost:?}"
        );
    }
}
