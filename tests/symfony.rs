//! `envelope = "symfony"` against Symfony Messenger 5.4 itself (Debian's php-symfony-messenger and
//! php-symfony-redis-messenger, the JSON serializer, phpredis):
//!
//! - Messenger's own sender (`RedisTransport::send`) and the bridge's encoder write the same
//!   records into a real `redis-server`: the `message` fields must be the same bytes;
//! - the stock Worker over the Redis transport's receiver (tests/workers/symfony/worker.php) runs
//!   the encoder's entries, every one once, in order, values intact (text, UTF-8, binary, null);
//! - Kafka (Tansu) → kafka2redis → that worker: every message once, in per-partition order, values
//!   intact; a worker killed with `kill -9` mid-run loses nothing (another worker claims its pending
//!   entry after a lowered `redeliver_timeout`); the bridge killed with `kill -9` in exactly-once
//!   mode adds no message twice.
//!
//! scripts/install-workers.sh installs Messenger; without it the tests are skipped with a message,
//! except in CI (`CI=true`), where that is a failure.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use kafka2redis::jobs::{symfony, Record, SYMFONY_FIELD};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(60);
/// The message class the fixture app defines and routes to its handler.
const CLASS: &str = r"App\Message\KafkaRecord";
/// Messenger's default consumer group.
const GROUP: &str = "symfony";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workers/symfony")
}

/// Whether Messenger's tests can run: skipped (with a message) when it is not installed, except in
/// CI, where a missing framework fails the test.
pub fn messenger_available() -> bool {
    let installed = Command::new("php")
        .args([
            "-r",
            "exit(extension_loaded('redis') && is_file('/usr/share/php/Symfony/Component/Messenger/Bridge/Redis/Transport/RedisTransport.php') && is_file('/usr/share/php/Symfony/Component/Serializer/Serializer.php') ? 0 : 1);",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed {
        return true;
    }
    let what = "Symfony Messenger is not installed (run scripts/install-workers.sh)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what}; CI must run these tests");
    }
    eprintln!("skipped: {what}");
    false
}

/// The settings of the fixture app's transport (tests/workers/symfony/bootstrap.php).
fn transport_env(cmd: &mut Command, redis: &RedisServer, stream: &str) {
    cmd.current_dir(fixtures())
        .env("K2R_REDIS_HOST", "127.0.0.1")
        .env("K2R_REDIS_PORT", redis.port.to_string())
        .env("K2R_SYMFONY_STREAM", stream);
}

/// A stock Messenger worker (tests/workers/symfony/worker.php), killed when dropped; its output
/// shown if the test failed.
pub struct MessengerWorker {
    child: Child,
    log: PathBuf,
}

impl MessengerWorker {
    /// Consumer `consumer` of the group `symfony` on `stream`; `env` adds the fixture's other
    /// settings (K2R_WORKER_SLEEP, K2R_SYMFONY_REDELIVER_TIMEOUT, …).
    pub fn start(
        redis: &RedisServer,
        stream: &str,
        consumer: &str,
        out: &Path,
        env: &[(&str, &str)],
    ) -> MessengerWorker {
        let log = out.with_extension(format!("{consumer}.log"));
        let mut cmd = Command::new("php");
        cmd.arg("worker.php")
            .env("K2R_SYMFONY_CONSUMER", consumer)
            .env("K2R_WORKER_OUT", out)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        transport_env(&mut cmd, redis, stream);
        die_with_parent(&mut cmd);
        MessengerWorker {
            child: cmd.spawn().expect("start the Messenger worker"),
            log,
        }
    }

    /// `kill -9`: the message in hand stays pending in the group, owned by this consumer.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MessengerWorker {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- {} ---\n{}",
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// The records of tests/workers/verify.py and more: ASCII; JSON text; multi-byte UTF-8 with `"`,
/// `/`, `\`, U+2028, a control character and `<&>`, with headers holding a binary and a null
/// value; a binary key and value; a tombstone; an empty key and value at offset 2^53 + 1.
fn records() -> Vec<Record<'static>> {
    const HEADERS: &[(&str, Option<&[u8]>)] = &[
        ("trace", Some(b"abc".as_slice())),
        ("bin", Some(b"\xff\x01".as_slice())),
        ("nil", None),
    ];
    let r = |partition, offset, timestamp, key, value, headers| Record {
        topic: "orders.eu_1",
        partition,
        offset,
        timestamp,
        key,
        value,
        headers,
    };
    vec![
        r(
            0,
            0,
            Some(1_700_000_000_123),
            Some(b"k1".as_slice()),
            Some(b"hello".as_slice()),
            &[],
        ),
        r(
            0,
            1,
            Some(1_700_000_000_124),
            None,
            Some(br#"{"a":[1,"\"/\\<&>"]}"#.as_slice()),
            &[],
        ),
        r(
            0,
            2,
            Some(1_700_000_000_125),
            Some("clé/1".as_bytes()),
            Some("héllo wörld — 日本語 😀 \"q\" / back\\slash \u{2028} \u{1} tab\t<&>".as_bytes()),
            HEADERS,
        ),
        r(
            1,
            0,
            None,
            Some(b"\xff\xfe".as_slice()),
            Some(b"\x00\xff\x10binary".as_slice()),
            &[],
        ),
        r(1, 1, Some(1_700_000_000_126), None, None, &[]),
        r(
            2,
            (1 << 53) + 1,
            Some(1_700_000_000_127),
            Some(b"".as_slice()),
            Some(b"".as_slice()),
            &[],
        ),
    ]
}

/// What the fixture's handler records for `record`.
fn handled(record: &Record<'_>) -> Value {
    let mut line =
        json!({"topic": record.topic, "partition": record.partition, "offset": record.offset});
    set_record_value(&mut line, record.value);
    line
}

/// An entry as `XRANGE` returns it: its id and its fields.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

/// The `message` field of every entry of `stream`, in stream order.
fn messages(redis: &RedisServer, stream: &str) -> Vec<Vec<u8>> {
    let entries: Vec<StreamEntry> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(&mut redis.conn())
        .unwrap();
    entries
        .into_iter()
        .map(|(_, fields)| {
            assert_eq!(fields.len(), 1, "one field per entry");
            assert_eq!(fields[0].0, SYMFONY_FIELD);
            fields.into_iter().next().unwrap().1
        })
        .collect()
}

/// Adds the encoder's entry for each record, as `XADD <stream> * message <value>`.
fn add_encoded(redis: &RedisServer, stream: &str, records: &[Record<'_>]) {
    let mut conn = redis.conn();
    for record in records {
        let mut value = Vec::new();
        symfony(CLASS, record, &mut value);
        let _: String = redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg(SYMFONY_FIELD)
            .arg(value)
            .query(&mut conn)
            .unwrap();
    }
}

#[test]
fn the_stock_sender_writes_the_encoders_bytes() {
    if !messenger_available() {
        return;
    }
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let records = records();
    let mut lines = Vec::new();
    for record in &records {
        record.write_json(None, &mut lines);
        lines.push(b'\n');
    }
    let input = dir.path().join("records.jsonl");
    std::fs::write(&input, &lines).unwrap();

    let mut cmd = Command::new("php");
    cmd.arg("client_send.php")
        .stdin(std::fs::File::open(&input).unwrap());
    transport_env(&mut cmd, &redis, "sent");
    let out = cmd.output().expect("run php");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    add_encoded(&redis, "encoded", &records);
    let sent = messages(&redis, "sent");
    let encoded = messages(&redis, "encoded");
    assert_eq!(sent.len(), records.len());
    for (i, (sent, encoded)) in sent.iter().zip(&encoded).enumerate() {
        assert_eq!(
            String::from_utf8_lossy(encoded),
            String::from_utf8_lossy(sent),
            "record {i}"
        );
    }
}

#[test]
fn the_stock_worker_runs_each_entry_once_in_order() {
    if !messenger_available() {
        return;
    }
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let records = records();
    add_encoded(&redis, "orders", &records);
    let out = dir.path().join("ran.jsonl");
    let _worker = MessengerWorker::start(&redis, "orders", "w1", &out, &[]);
    wait_until("every entry to run", DEADLINE, || {
        ran(&out).len() >= records.len()
    });
    let expected: Vec<Value> = records.iter().map(handled).collect();
    assert_eq!(ran(&out), expected);
    wait_until("every entry acknowledged", DEADLINE, || {
        pending(&redis, "orders") == 0
    });
}

/// `XPENDING <stream> <group>`: the count, the smallest and largest ids, and the count per consumer.
type PendingSummary = (
    usize,
    Option<String>,
    Option<String>,
    Option<Vec<(String, String)>>,
);

/// Entries the group `symfony` has delivered and not yet acknowledged.
fn pending(redis: &RedisServer, stream: &str) -> usize {
    let summary: PendingSummary = redis::cmd("XPENDING")
        .arg(stream)
        .arg(GROUP)
        .query(&mut redis.conn())
        .unwrap();
    summary.0
}

// ---------------------------------------------------------------------------------------------
// Through the bridge.

const PARTITIONS: i32 = 3;

/// `per_partition` messages on each partition, cycling through plain text, JSON text, multi-byte
/// UTF-8 with the characters JSON writers treat apart, binary, a tombstone and an empty value.
/// Returns what the handler records for each, partition by partition in offset order.
fn produce(broker: &Broker, topic: &str, per_partition: i64) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut expected = Vec::new();
    for partition in 0..PARTITIONS {
        for offset in 0..per_partition {
            let value: Option<Vec<u8>> = match offset % 6 {
                0 => Some(format!("p{partition} m{offset} plain text").into_bytes()),
                1 => Some(format!(r#"{{"p":{partition},"q":"\"/\\<&>"}}"#).into_bytes()),
                2 => Some(format!("héllo 世界 🚀 \u{2028} \u{1} tab\t m{offset}").into_bytes()),
                3 => Some(vec![0xff, 0xfe, 0x00, partition as u8, offset as u8]),
                4 => None,
                _ => Some(Vec::new()),
            };
            let mut line = json!({"topic": topic, "partition": partition, "offset": offset});
            set_record_value(&mut line, value.as_deref());
            expected.push(line);
            messages.push(TestMessage::new(topic, partition, value.as_deref()));
        }
    }
    broker.produce(&messages);
    expected
}

/// The runs grouped by partition, in the order they ran.
fn by_partition(runs: &[Value]) -> BTreeMap<i64, Vec<Value>> {
    let mut parts: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    for run in runs {
        parts
            .entry(run["partition"].as_i64().unwrap())
            .or_default()
            .push(run.clone());
    }
    parts
}

/// A topic of its own, the bridge writing it to the stream `stream` as Symfony messages.
fn start_bridge(
    dir: &Path,
    broker: &Broker,
    redis: &RedisServer,
    topic: &str,
    stream: &str,
) -> Bridge {
    let topics = format!(
        r#"[{{ name = "{topic}", envelope = "symfony", job = '{CLASS}', list = "{stream}" }}]"#
    );
    Config::new(broker, redis, &unique("g"), &topics).write(dir, "k2r.toml");
    Bridge::start(dir, &["--config", "k2r.toml"])
}

#[test]
fn symfony_worker_runs_every_kafka_message_once_in_order() {
    if !messenger_available() {
        return;
    }
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("symfony-order");
    broker.create_topic(&topic, PARTITIONS);
    let expected = produce(broker, &topic, 12);
    let _bridge = start_bridge(dir.path(), broker, &redis, &topic, "messages");
    let out = dir.path().join("ran.jsonl");
    let _worker = MessengerWorker::start(&redis, "messages", "w1", &out, &[]);
    wait_until("every message to run", DEADLINE, || {
        ran(&out).len() >= expected.len()
    });
    let runs = ran(&out);
    assert_eq!(runs.len(), expected.len(), "one run per message");
    assert_eq!(by_partition(&runs), by_partition(&expected));
    wait_until("every entry acknowledged", DEADLINE, || {
        pending(&redis, "messages") == 0
    });
}

#[test]
fn symfony_worker_killed_mid_run_loses_nothing() {
    if !messenger_available() {
        return;
    }
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("symfony-kill");
    broker.create_topic(&topic, PARTITIONS);
    let expected = produce(broker, &topic, 8);
    let _bridge = start_bridge(dir.path(), broker, &redis, &topic, "messages");
    let out = dir.path().join("ran.jsonl");

    // The first worker takes a message every 0.3 s and is killed mid-run, one message in hand.
    let mut first = MessengerWorker::start(
        &redis,
        "messages",
        "first",
        &out,
        &[("K2R_WORKER_SLEEP", "0.3")],
    );
    wait_until("the first worker to run a few messages", DEADLINE, || {
        ran(&out).len() >= 3
    });
    wait_until("the first worker to hold a message", DEADLINE, || {
        pending(&redis, "messages") == 1
    });
    first.kill9();
    let ran_before = ran(&out).len();
    assert!(ran_before < expected.len(), "the kill came too late");
    assert_eq!(
        pending(&redis, "messages"),
        1,
        "the killed worker's message is pending"
    );

    // Another consumer claims it once it has been pending a second.
    let _second = MessengerWorker::start(
        &redis,
        "messages",
        "second",
        &out,
        &[
            ("K2R_SYMFONY_REDELIVER_TIMEOUT", "1"),
            ("K2R_SYMFONY_CLAIM_INTERVAL", "200"),
        ],
    );
    wait_until("every message to run", DEADLINE, || {
        let mut seen: Vec<Value> = ran(&out);
        seen.sort_by_key(|r| (r["partition"].as_i64(), r["offset"].as_i64()));
        seen.dedup();
        seen.len() >= expected.len()
    });
    wait_until("every entry acknowledged", DEADLINE, || {
        pending(&redis, "messages") == 0
    });
    let runs = ran(&out);
    // The message in hand ran once, unless the kill came between its handler and its XACK.
    assert!(
        runs.len() <= expected.len() + 1,
        "{} runs of {} messages",
        runs.len(),
        expected.len()
    );
    let mut distinct = runs.clone();
    distinct.sort_by_key(|r| (r["partition"].as_i64(), r["offset"].as_i64()));
    distinct.dedup();
    let mut want = expected.clone();
    want.sort_by_key(|r| (r["partition"].as_i64(), r["offset"].as_i64()));
    assert_eq!(distinct, want, "every message ran, values intact");
    // Until the kill, each partition's messages ran in offset order.
    for (partition, before) in by_partition(&runs[..ran_before]) {
        let offsets: Vec<i64> = before
            .iter()
            .map(|r| r["offset"].as_i64().unwrap())
            .collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "partition {partition}: {offsets:?}"
        );
    }
}

/// The record a Messenger entry carries: phpredis's `s:<n>:"…";`, the transport's JSON, the body.
fn record_of(message: &[u8]) -> Value {
    let text = std::str::from_utf8(message).unwrap();
    let (len, rest) = text
        .strip_prefix("s:")
        .and_then(|t| t.split_once(':'))
        .unwrap();
    let json = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix("\";"))
        .unwrap();
    assert_eq!(json.len(), len.parse::<usize>().unwrap());
    let outer: Value = serde_json::from_str(json).unwrap();
    assert_eq!(outer["headers"]["type"], CLASS);
    serde_json::from_str(outer["body"].as_str().unwrap()).unwrap()
}

#[test]
fn the_bridge_killed_in_exactly_once_mode_adds_no_message_twice() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("symfony-eo");
    let partitions = 2;
    broker.create_topic(&topic, partitions);
    let topics = format!(
        r#"[{{ name = "{topic}", envelope = "symfony", job = '{CLASS}', list = "messages" }}]"#
    );
    Config::new(broker, &redis, &unique("g"), &topics)
        .delivery("exactly-once")
        .commit_interval_ms(5_000)
        .write(dir.path(), "k2r.toml");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let total = 3_000;
    let producer = broker.produce_paced(vec![topic.clone()], partitions, total);
    let mut conn = redis.conn();
    let xlen = |conn: &mut redis::Connection| -> usize {
        redis::cmd("XLEN").arg("messages").query(conn).unwrap()
    };
    wait_until("the stream is filling", DEADLINE, || xlen(&mut conn) >= 800);
    bridge.kill9();
    let _restarted = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    producer.join().unwrap();
    wait_until(
        "every message in the stream",
        Duration::from_secs(90),
        || xlen(&mut conn) >= total,
    );
    let mut next: BTreeMap<i64, i64> = BTreeMap::new();
    for message in messages(&redis, "messages") {
        let record = record_of(&message);
        let partition = record["partition"].as_i64().unwrap();
        let expected = next.entry(partition).or_insert(0);
        assert_eq!(
            record["offset"].as_i64().unwrap(),
            *expected,
            "partition {partition}: each offset once, in order"
        );
        *expected += 1;
    }
    assert_eq!(next.values().sum::<i64>(), total as i64);
}

/// A `symfony` topic without a message class, with one that is not a PHP class name, or as a list
/// is one sentence and exit code 2, before connecting anywhere (the addresses are closed ports).
#[test]
fn symfony_settings_are_checked_in_one_sentence() {
    let cases = [
        (
            r#"[{ name = "t", envelope = "symfony" }]"#,
            "config key `topics.t.job` is required with envelope = \"symfony\"",
        ),
        (
            r#"[{ name = "t", envelope = "symfony", job = "App.Message.KafkaRecord" }]"#,
            "config key `topics.t.job` 'App.Message.KafkaRecord' is not a PHP class name",
        ),
        (
            r#"[{ name = "t", envelope = "symfony", job = '\App\Message\KafkaRecord' }]"#,
            r"config key `topics.t.job` '\App\Message\KafkaRecord' is not a PHP class name",
        ),
        (
            r#"[{ name = "t", envelope = "symfony", job = 'App\Msg', structure = "list" }]"#,
            "config key `topics.t.structure` must be \"stream\" with envelope = \"symfony\"",
        ),
        (
            r#"[{ name = "t", envelope = "json", structure = "stream" }]"#,
            "takes envelope = \"raw\" or \"symfony\"",
        ),
    ];
    for (topics, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "topics = {topics}\n[kafka]\nbrokers = [\"127.0.0.1:1\"]\ngroup = \"g\"\n[redis]\naddresses = [\"127.0.0.1:1\"]\n"
        );
        write_file(dir.path(), "k2r.toml", &text);
        let out = run_bridge(dir.path(), &["--config", "k2r.toml"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{topics}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{topics}: expected {expected:?} in {stderr:?}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one sentence: {stderr:?}");
    }
}
