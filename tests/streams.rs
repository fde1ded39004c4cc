//! Topics into Redis streams, read by consumer-group workers (redis-py: `XREADGROUP`, `XACK`,
//! `XAUTOCLAIM`), against real Redis and Tansu: every message once per group, in per-partition
//! order, values intact; a worker killed mid-run loses nothing; the bridge killed in exactly-once
//! mode adds nothing twice; a capped stream never holds more than the cap of unfinished entries and
//! never trims one a group has not acknowledged.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;

/// A fresh topic of `partitions` going to a stream (`entry` adds settings), its stream key, and a
/// directory for the bridge's config, the workers' records and logs.
struct Fixture {
    topic: String,
    stream: String,
    dir: tempfile::TempDir,
}

fn stream_topic(broker: &Broker, prefix: &str, partitions: i32) -> Fixture {
    let topic = unique(prefix);
    broker.create_topic(&topic, partitions);
    Fixture {
        stream: format!("queues:{topic}"),
        topic,
        dir: tempfile::tempdir().unwrap(),
    }
}

/// The bridge's config for `fixture`'s topic as a stream, with `entry` in its table.
fn stream_config(broker: &Broker, redis: &RedisServer, fixture: &Fixture, entry: &str) -> Config {
    let topic = &fixture.topic;
    Config::new(
        broker,
        redis,
        topic,
        &format!(r#"[{{ name = "{topic}", structure = "stream"{entry} }}]"#),
    )
    .sections("[flow]\ncheck_interval_ms = 20")
}

/// Message `i` of the mixed set: text, UTF-8, binary, a tombstone, an empty value; some with a
/// key, some with headers.
fn mixed(topic: &str, partitions: i32, i: usize) -> TestMessage {
    let partition = (i % partitions as usize) as i32;
    let value: Option<Vec<u8>> = match i % 5 {
        0 => Some(format!("text {i}").into_bytes()),
        1 => Some(format!("żółw {i} 🐢").into_bytes()),
        2 => Some(vec![0xff, 0x00, (i % 256) as u8, 0xc3, 0x28]),
        3 => None,
        _ => Some(Vec::new()),
    };
    let mut m = TestMessage::new(topic, partition, value.as_deref());
    if i % 3 == 0 {
        m.key = Some(format!("key-{i}").into_bytes());
    }
    if i % 4 == 0 {
        m.headers = vec![
            ("trace".into(), Some(format!("t{i}").into_bytes())),
            ("bin".into(), Some(vec![0xfe])),
        ];
    }
    m
}

/// The messages by `(partition, offset)`: a fresh topic's offsets count from 0 per partition in
/// the order one producer sent them.
fn by_position(messages: &[TestMessage]) -> BTreeMap<(i32, i64), TestMessage> {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    messages
        .iter()
        .map(|m| {
            let offset = next.entry(m.partition).or_default();
            let position = (m.partition, *offset);
            *offset += 1;
            (position, m.clone())
        })
        .collect()
}

/// Checks an entry's fields against the message it carries.
fn assert_carries(entry: &Entry, m: &TestMessage) {
    assert_eq!(
        entry.fields.get("value"),
        m.value.as_ref(),
        "value of {entry:?}"
    );
    assert_eq!(entry.text("topic").as_deref(), Some(m.topic.as_str()));
    assert!(entry.text("timestamp").unwrap().parse::<i64>().unwrap() > 0);
    assert_eq!(entry.fields.get("key"), m.key.as_ref(), "key of {entry:?}");
    match entry.text("headers") {
        None => assert!(m.headers.is_empty(), "headers missing in {entry:?}"),
        Some(json) => {
            let headers: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(headers.as_array().unwrap().len(), m.headers.len());
            assert_eq!(headers[0]["key"], "trace");
            assert_eq!(
                headers[0]["value"].as_str().unwrap().as_bytes(),
                m.headers[0].1.as_deref().unwrap()
            );
            assert_eq!(headers[1]["value_encoding"], "base64");
        }
    }
}

/// Creates the consumer groups before the bridge writes: a group created later sees only what the
/// stream still holds, and the bridge trims what every group that exists has finished.
fn create_groups(redis: &RedisServer, stream: &str, groups: &[&str]) {
    let mut conn = redis.conn();
    for group in groups {
        let _: () = redis::cmd("XGROUP")
            .arg(&["CREATE", stream, group, "0", "MKSTREAM"][..])
            .query(&mut conn)
            .unwrap();
    }
}

fn wait_handled(out: &std::path::Path, want: usize, why: &str) {
    wait_until(why, Duration::from_secs(90), || handled(out).len() >= want);
}

#[test]
fn every_group_gets_every_message_once_in_order_with_values_intact() {
    if !redis_py_available() {
        return;
    }
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let partitions = 3;
    let f = stream_topic(broker, "stream", partitions);
    stream_config(broker, &redis, &f, "").write(f.dir.path(), "k2r.toml");
    let out = f.dir.path().join("workers.jsonl");
    let audit_out = f.dir.path().join("audit.jsonl");
    create_groups(&redis, &f.stream, &["jobs", "audit"]);
    let _workers = [
        StreamWorker::start(redis.port, &f.stream, "jobs", "w1", &out, &[]),
        StreamWorker::start(redis.port, &f.stream, "jobs", "w2", &out, &[]),
        StreamWorker::start(redis.port, &f.stream, "audit", "a1", &audit_out, &[]),
    ];
    let bridge = Bridge::start(f.dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let total = 1_500;
    let messages: Vec<TestMessage> = (0..total).map(|i| mixed(&f.topic, partitions, i)).collect();
    broker.produce(&messages);
    let expected = by_position(&messages);

    wait_handled(&out, total, "the jobs group handled every message");
    wait_handled(&audit_out, total, "the audit group handled every message");
    for (file, group) in [(&out, "jobs"), (&audit_out, "audit")] {
        let entries = handled(file);
        assert_once_in_order(&entries, total, group);
        for e in &entries {
            assert_carries(e, &expected[&e.position()]);
        }
    }
    let consumers: BTreeSet<String> = handled(&out).into_iter().map(|e| e.consumer).collect();
    assert_eq!(consumers.len(), 2, "both workers of the group took entries");
}

/// Samples, atomically, the largest unfinished count over the stream's groups (pending + lag)
/// and whether any group has a pending entry the stream no longer holds (trimmed too early).
const SAMPLE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local most, dangling = 0, 0
for _, flat in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local g = {}
  for i = 1, #flat, 2 do g[flat[i]] = flat[i + 1] end
  local unfinished = g['pending'] + (g['lag'] or redis.call('XLEN', KEYS[1]))
  if unfinished > most then most = unfinished end
  if g['pending'] > 0 then
    local oldest = redis.call('XPENDING', KEYS[1], g['name'])[2]
    if #redis.call('XRANGE', KEYS[1], oldest, oldest) == 0 then dangling = dangling + 1 end
  end
end
return {most, dangling}
"#;

struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(i64, i64, usize)>>,
}

impl Sampler {
    fn start(redis: &RedisServer, stream: &str) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, stream) = (stop.clone(), stream.to_string());
        let mut conn = redis.conn();
        let script = redis::Script::new(SAMPLE);
        let handle = std::thread::spawn(move || {
            let (mut most, mut dangling, mut samples) = (0i64, 0i64, 0usize);
            while !flag.load(Ordering::Relaxed) {
                let (m, d): (i64, i64) = script.key(&stream).invoke(&mut conn).unwrap();
                most = most.max(m);
                dangling += d;
                samples += 1;
            }
            (most, dangling, samples)
        });
        Sampler {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> (i64, i64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

#[test]
fn a_capped_stream_holds_at_most_the_cap_unfinished_and_trims_only_what_all_finished() {
    if !redis_py_available() {
        return;
    }
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let partitions = 2;
    let cap = 60;
    let f = stream_topic(broker, "capped-stream", partitions);
    stream_config(broker, &redis, &f, &format!(", cap = {cap}")).write(f.dir.path(), "k2r.toml");
    let slow_out = f.dir.path().join("slow.jsonl");
    let fast_out = f.dir.path().join("fast.jsonl");
    // The groups exist before the first entry, so the cap counts their unfinished work throughout.
    create_groups(&redis, &f.stream, &["slow", "fast"]);
    let mut conn = redis.conn();
    let sampler = Sampler::start(&redis, &f.stream);
    let _workers = [
        StreamWorker::start(
            redis.port,
            &f.stream,
            "slow",
            "s1",
            &slow_out,
            &["--sleep", "0.002", "--count", "10"],
        ),
        StreamWorker::start(redis.port, &f.stream, "fast", "f1", &fast_out, &[]),
    ];
    let bridge = Bridge::start(f.dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let total = 2_000;
    broker.produce_numbered(&f.topic, partitions, 0, total);
    wait_handled(&slow_out, total, "the slow group handled every message");
    wait_handled(&fast_out, total, "the fast group handled every message");
    let (most, dangling, samples) = sampler.finish();
    assert!(samples > 100, "sampled {samples} times");
    assert!(
        most <= cap,
        "unfinished entries reached {most}, above the cap {cap}"
    );
    assert!(
        most >= cap / 2,
        "the cap was reached ({most}): the test paused partitions"
    );
    assert_eq!(dangling, 0, "a pending entry was trimmed");
    assert_once_in_order(&handled(&slow_out), total, "slow");
    assert_once_in_order(&handled(&fast_out), total, "fast");
    assert!(
        bridge.log_text().contains("partition paused"),
        "partitions paused at the cap"
    );
    let len: usize = redis::cmd("XLEN").arg(&f.stream).query(&mut conn).unwrap();
    assert!(
        len <= cap as usize,
        "finished entries were trimmed: {len} left"
    );
}

#[test]
fn a_worker_killed_mid_run_loses_nothing() {
    if !redis_py_available() {
        return;
    }
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let partitions = 2;
    let f = stream_topic(broker, "stream-kill", partitions);
    stream_config(broker, &redis, &f, "").write(f.dir.path(), "k2r.toml");
    let out = f.dir.path().join("workers.jsonl");
    let opts = [
        "--sleep",
        "0.002",
        "--count",
        "20",
        "--claim-idle-ms",
        "1000",
    ];
    let mut doomed = StreamWorker::start(redis.port, &f.stream, "jobs", "doomed", &out, &opts);
    let _survivor = StreamWorker::start(redis.port, &f.stream, "jobs", "survivor", &out, &opts);
    let bridge = Bridge::start(f.dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let total = 2_000;
    broker.produce_numbered(&f.topic, partitions, 0, total);
    wait_until(
        "the doomed worker is mid-run",
        Duration::from_secs(60),
        || {
            handled(&out)
                .iter()
                .filter(|e| e.consumer == "doomed")
                .count()
                >= 200
        },
    );
    doomed.kill9();
    wait_until("every message handled", Duration::from_secs(90), || {
        handled(&out)
            .iter()
            .map(Entry::position)
            .collect::<BTreeSet<_>>()
            .len()
            >= total
    });
    let entries = handled(&out);
    let positions: BTreeSet<(i32, i64)> = entries.iter().map(Entry::position).collect();
    assert_eq!(positions.len(), total, "nothing lost");
    let claimed = entries.iter().filter(|e| e.claimed).count();
    assert!(
        claimed > 0,
        "the survivor claimed the dead worker's pending entries"
    );
    let twice = entries.len() - positions.len();
    assert!(
        twice <= 20,
        "only what the dead worker had in hand ran twice: {twice}"
    );
}

#[test]
fn the_bridge_killed_in_exactly_once_mode_adds_no_entry_twice() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let partitions = 2;
    let f = stream_topic(broker, "stream-eo", partitions);
    stream_config(broker, &redis, &f, "")
        .delivery("exactly-once")
        .commit_interval_ms(5_000)
        .write(f.dir.path(), "k2r.toml");
    let mut bridge = Bridge::start(f.dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let total = 6_000;
    let producer = broker.produce_paced(vec![f.topic.clone()], partitions, total);
    let mut conn = redis.conn();
    let xlen = |conn: &mut redis::Connection| -> usize {
        redis::cmd("XLEN").arg(&f.stream).query(conn).unwrap()
    };
    wait_until("the stream is filling", Duration::from_secs(60), || {
        xlen(&mut conn) >= 1_500
    });
    bridge.kill9();
    let _restarted = Bridge::start(f.dir.path(), &["--config", "k2r.toml"]);
    producer.join().unwrap();
    wait_until(
        "every message in the stream",
        Duration::from_secs(90),
        || xlen(&mut conn) >= total,
    );
    let entries = stream_entries(&mut conn, &f.stream);
    assert_once_in_order(&entries, total, "the stream");
}

#[test]
fn check_names_a_key_that_is_not_a_stream_and_the_stream_commands_the_user_lacks() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let f = stream_topic(broker, "stream-check", 1);
    let mut conn = redis.conn();
    let _: () = redis::cmd("RPUSH")
        .arg(&f.stream)
        .arg("another application's list")
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg(
            &[
                "SETUSER", "k2r", "on", ">pw", "~*", "&*", "+@all", "-xadd", "-xtrim",
            ][..],
        )
        .query(&mut conn)
        .unwrap();
    stream_config(broker, &redis, &f, "")
        .redis_settings("username = \"k2r\"\npassword = \"pw\"")
        .write(f.dir.path(), "k2r.toml");
    let check = run_bridge(f.dir.path(), &["check", "--config", "k2r.toml"]);
    let report = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(!check.status.success(), "{report}");
    assert!(
        report.contains(&format!(
            "key {:?}: PROBLEM: it is a list, but the bridge writes a stream there",
            f.stream
        )),
        "{report}"
    );
    assert!(report.contains("may not run XADD"), "{report}");
    assert!(report.contains("+xadd +xtrim"), "{report}");
}

/// The metric `kafka2redis_list_length` of `key`, when /metrics has it.
fn length_metric(port: u16, key: &str) -> Option<f64> {
    let (_, text) = http_get(port, "/metrics")?;
    let name = format!("kafka2redis_list_length{{list=\"{key}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(name.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn lag_and_metrics_report_what_the_groups_have_not_finished() {
    if !redis_py_available() {
        return;
    }
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let f = stream_topic(broker, "stream-metrics", 2);
    create_groups(&redis, &f.stream, &["jobs"]);
    stream_config(broker, &redis, &f, "")
        .sections("[lag]\ninterval_ms = 200")
        .write(f.dir.path(), "k2r.toml");
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let bridge = Bridge::start(f.dir.path(), &["--config", "k2r.toml", "--http", &address]);
    bridge.wait_assigned();
    broker.produce_numbered(&f.topic, 2, 0, 40);
    wait_until(
        "the stream's 40 unread entries are reported",
        Duration::from_secs(30),
        || length_metric(port, &f.stream) == Some(40.0),
    );
    let out = f.dir.path().join("workers.jsonl");
    let _worker = StreamWorker::start(redis.port, &f.stream, "jobs", "w1", &out, &[]);
    wait_handled(&out, 40, "the worker handled every entry");
    wait_until(
        "nothing unfinished is reported",
        Duration::from_secs(30),
        || length_metric(port, &f.stream) == Some(0.0),
    );
    let mut conn = redis.conn();
    let len: usize = redis::cmd("XLEN").arg(&f.stream).query(&mut conn).unwrap();
    assert_eq!(
        len, 40,
        "nothing pushed since: the finished entries wait for the next push's trim"
    );
}
