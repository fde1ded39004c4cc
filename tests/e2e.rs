//! End to end against a real Tansu broker and real `redis-server` processes.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use serde_json::Value;

const STOP_BOUND: Duration = Duration::from_secs(15);

fn text(e: &[u8]) -> String {
    String::from_utf8(e.to_vec()).unwrap()
}

/// The samples every envelope is tried with: (name, key, value, headers).
/// (name, key, value, headers)
type Sample = (
    &'static str,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
);

fn samples() -> Vec<Sample> {
    vec![
        ("text", None, Some(b"hello world".to_vec()), vec![]),
        (
            "json",
            Some(b"k-json".to_vec()),
            Some(br#"{"a":"q\"uote","b":"back\\slash","c":"<&>"}"#.to_vec()),
            vec![],
        ),
        (
            "utf8",
            None,
            Some("héllo 世界 🚀 \u{2028}".as_bytes().to_vec()),
            vec![("h1".into(), Some(b"v1".to_vec())), ("h2".into(), None)],
        ),
        (
            "invalid",
            Some(b"k-bad".to_vec()),
            Some(b"bad \xff\xfe bytes".to_vec()),
            vec![],
        ),
        ("empty", None, Some(Vec::new()), vec![]),
        ("null", Some(b"k-null".to_vec()), None, vec![]),
        (
            "big",
            None,
            Some(vec![b'x'; 1024 * 1024]),
            vec![("bin".into(), Some(vec![0xff, 0x00]))],
        ),
    ]
}

#[test]
fn envelopes_land_byte_for_byte() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let base = unique("env");
    let (legacy, raw, json) = (
        format!("{base}-legacy"),
        format!("{base}-raw"),
        format!("{base}-json"),
    );
    for t in [&legacy, &raw, &json] {
        broker.create_topic(t, 2);
    }
    let mut messages = Vec::new();
    for t in [&legacy, &raw, &json] {
        for (i, (_, key, value, headers)) in samples().into_iter().enumerate() {
            messages.push(TestMessage {
                topic: t.clone(),
                partition: (i % 2) as i32,
                key,
                value,
                headers,
            });
        }
    }
    broker.produce(&messages);

    let dir = tempfile::tempdir().unwrap();
    let topics = format!(
        r#"[{{ name = "{legacy}", envelope = "legacy" }}, "{raw}", {{ name = "{json}", envelope = "json", list = "custom:{json}" }}]"#
    );
    Config::new(broker, &redis, &base, &topics).write(dir.path(), "k2r.toml");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    let samples = samples();
    let n = samples.len();
    wait_until(
        "every message reached its list",
        Duration::from_secs(60),
        || {
            redis.llen(&format!("queues:{legacy}")) == n - 1
                && redis.llen(&format!("queues:{legacy}:dead")) == 1
                && redis.llen(&format!("queues:{raw}")) == n
                && redis.llen(&format!("custom:{json}")) == n
        },
    );

    // legacy: the old tool's bytes; invalid UTF-8 goes to the dead-letter list with its metadata.
    let got: HashSet<String> = redis
        .list(&format!("queues:{legacy}"))
        .iter()
        .map(|e| text(e))
        .collect();
    let big = format!(r#"{{"attempts":1,"data":"{}"}}"#, "x".repeat(1024 * 1024));
    let expected: HashSet<String> = [
        r#"{"attempts":1,"data":"hello world"}"#.to_string(),
        r#"{"attempts":1,"data":"{\"a\":\"q\\\"uote\",\"b\":\"back\\\\slash\",\"c\":\"\u003c\u0026\u003e\"}"}"#.to_string(),
        "{\"attempts\":1,\"data\":\"héllo 世界 🚀 \\u2028\"}".to_string(),
        r#"{"attempts":1,"data":""}"#.to_string(), // empty
        big,
    ]
    .into_iter()
    .collect();
    // empty and null both become "data":"" (as the old tool did): one distinct element, pushed twice.
    assert_eq!(got, expected);
    assert_eq!(
        redis
            .list(&format!("queues:{legacy}"))
            .iter()
            .filter(|e| e.as_slice() == br#"{"attempts":1,"data":""}"#)
            .count(),
        2
    );
    let dead: Value =
        serde_json::from_slice(&redis.list(&format!("queues:{legacy}:dead"))[0]).unwrap();
    assert_eq!(dead["topic"], legacy.as_str());
    assert_eq!(dead["partition"], 1);
    assert_eq!(dead["offset"], 1);
    assert_eq!(dead["key"], "k-bad");
    assert_eq!(dead["value_encoding"], "base64");
    assert_eq!(dead["value"], "YmFkIP/+IGJ5dGVz"); // base64 of the original bytes
    assert!(dead["reason"].as_str().unwrap().contains("not valid UTF-8"));

    // raw: the value's bytes, unchanged (null and empty both as an empty element).
    let mut got = redis.list(&format!("queues:{raw}"));
    got.sort();
    let mut expected: Vec<Vec<u8>> = samples
        .iter()
        .map(|(_, _, v, _)| v.clone().unwrap_or_default())
        .collect();
    expected.sort();
    assert_eq!(got, expected);

    // json: everything about the message; binary as base64 with a marker; null stays null.
    let got: Vec<Value> = redis
        .list(&format!("custom:{json}"))
        .iter()
        .map(|e| serde_json::from_slice(e).unwrap())
        .collect();
    let mut next_offset = [0i64; 2];
    for (i, (name, key, value, headers)) in samples.iter().enumerate() {
        let partition = (i % 2) as i64;
        let offset = next_offset[partition as usize];
        next_offset[partition as usize] += 1;
        let v = got
            .iter()
            .find(|v| v["partition"] == partition && v["offset"] == offset)
            .unwrap_or_else(|| panic!("{name} missing from the json list"));
        assert_eq!(v["topic"], json.as_str());
        assert!(
            v["timestamp"].as_i64().unwrap() > 1_600_000_000_000,
            "{name}: timestamp"
        );
        match key {
            None => assert!(v["key"].is_null()),
            Some(k) => assert_eq!(v["key"], text(k).as_str()),
        }
        match value.as_deref() {
            None => assert!(v["value"].is_null(), "{name}: tombstone is null"),
            Some(b) if std::str::from_utf8(b).is_ok() => {
                assert_eq!(v["value"], text(b).as_str(), "{name}")
            }
            Some(b) => {
                use base64::Engine;
                assert_eq!(v["value_encoding"], "base64");
                assert_eq!(
                    v["value"],
                    base64::engine::general_purpose::STANDARD.encode(b).as_str()
                );
            }
        }
        assert_eq!(
            v["headers"].as_array().unwrap().len(),
            headers.len(),
            "{name}: headers"
        );
        for (h, (hk, hv)) in v["headers"].as_array().unwrap().iter().zip(headers) {
            assert_eq!(h["key"], hk.as_str());
            match hv {
                None => assert!(h["value"].is_null()),
                Some(b) if std::str::from_utf8(b).is_ok() => {
                    assert_eq!(h["value"], text(b).as_str())
                }
                Some(_) => assert_eq!(h["value_encoding"], "base64"),
            }
        }
    }

    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit(STOP_BOUND).success());
    let log = bridge.log_text();
    assert!(log.contains("message sent to the dead-letter list"));
    // The prefetch budget (16,000 messages / 16 MiB) is shared by the 3 x 2 partitions it counted.
    assert!(
        log.contains("partitions=Some(6) queued_min_messages=2666 queued_max_kbytes=2730"),
        "prefetch per partition:\n{log}"
    );
}

/// The old tool's conf.json (comments, old keys) and .env, with its exact command line.
#[test]
fn old_config_runs_unchanged_and_clean_stop_commits() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let topic = unique("legacy");
    let partitions = 4;
    broker.create_topic(&topic, partitions);
    let produced = broker.produce_numbered(&topic, partitions, 0, 2000);

    let dir = tempfile::tempdir().unwrap();
    // conf.json points at addresses that do not exist; the .env in the working directory fixes them,
    // as it did for the old tool.
    write_file(
        dir.path(),
        "conf.json",
        &format!(
            r#"{{
    "kafka_addr":["127.0.0.1:1"],
    "redis_host":["127.0.0.1"],
    "redis_port":["1"],
    "sentinel_master_name":"",
    "cache_size":100000,                            // redis list允许堆积的数量
    "topics":["{topic}"],
    "consumer_group":"{topic}-group",
    "start_lock":"kafka_consumers_run",
    "prefix_redis":"queues:",
    "consumer_num":2,
    "topics_queue_len":"topics_queue_len",
    "accumulated": 100,
    "min_accumulated": 10,
    "some_future_key": true
}}"#
        ),
    );
    write_file(
        dir.path(),
        ".env",
        &format!(
            "KAFKA_BROKERS={}\nREDIS_HOST={}\nREDIS_PORT={}\n",
            broker.address, "127.0.0.1", redis.port
        ),
    );
    let group = format!("{topic}-group");
    let list = format!("queues:{topic}");
    let mut bridge = Bridge::start(dir.path(), &["--config=conf.json", "-alsologtostderr"]);
    wait_until("2000 messages in the list", Duration::from_secs(60), || {
        redis.llen(&list) == 2000
    });

    let elements = redis.list(&list);
    let want: HashSet<String> = produced
        .iter()
        .map(|v| format!(r#"{{"attempts":1,"data":"{v}"}}"#))
        .collect();
    let got: HashSet<String> = elements.iter().map(|e| text(e)).collect();
    assert_eq!(got, want);
    let values: Vec<Vec<u8>> = elements
        .iter()
        .map(|e| {
            serde_json::from_slice::<Value>(e).unwrap()["data"]
                .as_str()
                .unwrap()
                .as_bytes()
                .to_vec()
        })
        .collect();
    Tally::new(&produced, &values).assert_sound();

    bridge.signal(libc::SIGTERM);
    let status = bridge.wait_exit(STOP_BOUND);
    assert!(status.success(), "clean stop exits 0: {status:?}");
    let log = bridge.log_text();
    assert!(
        log.contains("unknown config keys ignored: some_future_key"),
        "{log}"
    );
    assert!(
        log.contains("lease taken"),
        "start_lock is an exclusive lease: {log}"
    );
    assert!(log.contains("consumer_num = 2 is accepted"), "{log}");
    broker.assert_committed_to_end(
        &group,
        &topic,
        partitions,
        "a clean stop commits everything delivered",
    );

    // Restart with the other documented command line: nothing delivered before is pushed again.
    let more = broker.produce_numbered(&topic, partitions, 2000, 100);
    let mut bridge = Bridge::start(dir.path(), &["--config", "conf.json", "--env", ".env"]);
    wait_until("2100 messages in the list", Duration::from_secs(60), || {
        redis.llen(&list) >= 2100
    });
    bridge.signal(libc::SIGINT);
    assert!(bridge.wait_exit(STOP_BOUND).success());
    let elements = redis.list(&list);
    assert_eq!(elements.len(), 2100, "no duplicates after a clean stop");
    let got: HashSet<String> = elements.iter().map(|e| text(e)).collect();
    for v in produced.iter().chain(&more) {
        assert!(
            got.contains(&format!(r#"{{"attempts":1,"data":"{v}"}}"#)),
            "{v} missing"
        );
    }
}

/// A fresh topic, its list, and a directory holding `k2r.toml`: the native config for that topic
/// (group named after it), the shared broker and `redis`.
struct Fixture {
    topic: String,
    list: String,
    dir: tempfile::TempDir,
}

fn fixture(broker: &Broker, redis: &RedisServer, prefix: &str, partitions: i32) -> Fixture {
    let topic = unique(prefix);
    broker.create_topic(&topic, partitions);
    let dir = tempfile::tempdir().unwrap();
    Config::new(broker, redis, &topic, &format!(r#"["{topic}"]"#)).write(dir.path(), "k2r.toml");
    Fixture {
        list: format!("queues:{topic}"),
        topic,
        dir,
    }
}

#[test]
fn kill_9_mid_stream_loses_nothing() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let partitions = 4;
    let topic = unique("kill");
    broker.create_topic(&topic, partitions);
    let list = format!("queues:{topic}");
    let dir = tempfile::tempdir().unwrap();
    // Each killed member holds its partitions until its session times out: librdkafka's 45 s
    // default would eat the deadline of every restart.
    Config::new(broker, &redis, &topic, &format!(r#"["{topic}"]"#))
        .kafka_properties("\"session.timeout.ms\" = \"6000\"")
        .write(dir.path(), "k2r.toml");
    let produced = broker.produce_numbered(&topic, partitions, 0, 20_000);
    for round in 0..3 {
        let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
        let floor = redis.llen(&list) + 1000;
        wait_until("the stream is flowing", Duration::from_secs(60), || {
            redis.llen(&list) >= floor.min(20_000)
        });
        bridge.kill9();
        eprintln!("round {round}: killed at {} elements", redis.llen(&list));
    }
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    wait_until("every message delivered", Duration::from_secs(90), || {
        let got: HashSet<Vec<u8>> = redis.list(&list).into_iter().collect();
        got.len() == produced.len()
    });
    let duplicates = Tally::new(&produced, &redis.list(&list))
        .assert_complete()
        .duplicated;
    eprintln!(
        "kill -9 x3: {} produced, {duplicates} re-delivered",
        produced.len()
    );
    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit(STOP_BOUND).success());
}

#[test]
fn redis_outage_mid_stream_loses_nothing() {
    let broker = Broker::shared();
    let mut redis = RedisServer::start_durable();
    let partitions = 4;
    let Fixture { topic, list, dir } = fixture(broker, &redis, "outage", partitions);
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();

    let mut produced = broker.produce_numbered(&topic, partitions, 0, 3000);
    wait_until("first messages arrive", Duration::from_secs(60), || {
        redis.llen(&list) > 0
    });
    redis.kill();
    // Produced while Redis is down: the lanes must hold them and retry.
    produced.extend(broker.produce_numbered(&topic, partitions, 3000, 3000));
    wait_until(
        "the bridge reports the failing pushes",
        Duration::from_secs(30),
        || bridge.log_text().contains("Redis push failed"),
    );
    std::thread::sleep(Duration::from_secs(2)); // keep Redis down across several retries
    assert!(bridge.is_running(), "the bridge survives a Redis outage");
    redis.restart();
    wait_until(
        "every message delivered after Redis returned",
        Duration::from_secs(60),
        || {
            let got: HashSet<Vec<u8>> = redis.list(&list).into_iter().collect();
            got.len() == produced.len()
        },
    );
    Tally::new(&produced, &redis.list(&list)).assert_complete();
    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit(STOP_BOUND).success());
    assert!(bridge
        .log_text()
        .contains("Redis push succeeded after retrying"));
}

/// More busy partitions than delivery turns (`redis::PUSHES_IN_FLIGHT`, 32): Redis stalls for a
/// second while 64 partitions receive messages, so every turn is taken and the other lanes gather
/// only a share of a batch, topping it up once their turn comes. Everything must still arrive, in
/// order per partition, once each, with every offset committed.
#[test]
fn more_busy_partitions_than_delivery_turns_deliver_everything_in_order() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let partitions = 64;
    let Fixture { topic, list, dir } = fixture(broker, &redis, "turns", partitions);
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();

    // A script that spins blocks every other client until it returns (well within the bridge's
    // 2 s response timeout, so no push is retried and nothing is duplicated).
    let stalling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stall = {
        let (mut conn, stalling) = (redis.conn(), stalling.clone());
        std::thread::spawn(move || {
            stalling.store(true, std::sync::atomic::Ordering::SeqCst);
            let _: i64 = redis::cmd("EVAL")
                .arg(
                    "local t = redis.call('TIME') local t0 = t[1] * 1000000 + t[2]
                     while true do
                       t = redis.call('TIME')
                       if t[1] * 1000000 + t[2] - t0 >= tonumber(ARGV[1]) then return 1 end
                     end",
                )
                .arg(0)
                .arg(1_000_000)
                .query(&mut conn)
                .expect("the stalling script");
        })
    };
    wait_until("the stall began", Duration::from_secs(10), || {
        stalling.load(std::sync::atomic::Ordering::SeqCst)
    });
    let produced = broker.produce_numbered(&topic, partitions, 0, 64 * 150);
    stall.join().unwrap();
    wait_until("every message delivered", Duration::from_secs(60), || {
        redis.llen(&list) >= produced.len()
    });
    let duplicates = Tally::new(&produced, &redis.list(&list))
        .assert_complete()
        .duplicated;
    assert_eq!(duplicates, 0, "no push was retried, so nothing twice");

    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit(STOP_BOUND).success());
    broker.assert_committed_to_end(
        &topic,
        &topic,
        partitions,
        "a clean stop commits everything",
    );
}

#[test]
fn kafka_unreachable_is_retried_not_fatal() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let closed = Broker {
        address: format!("127.0.0.1:{}", free_port()),
    };
    Config::new(&closed, &redis, "g", r#"["t"]"#).write(dir.path(), "k2r.toml");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    wait_until(
        "the bridge logs the broker failure",
        Duration::from_secs(30),
        || bridge.log_text().contains("Kafka client error"),
    );
    assert!(bridge.is_running(), "no crash while Kafka is unreachable");
    // No metadata, no partition count: the fixed per-partition prefetch.
    assert!(bridge
        .log_text()
        .contains("partitions=None queued_min_messages=1000 queued_max_kbytes=1024"));
    bridge.signal(libc::SIGTERM);
    let status = bridge.wait_exit(STOP_BOUND);
    assert!(status.code().is_some(), "exits by itself on SIGTERM");
}

#[test]
fn check_reports_topics_and_problems() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let topic = unique("check");
    broker.create_topic(&topic, 3);
    let dir = tempfile::tempdir().unwrap();
    let run = |config: &Config| {
        config.write(dir.path(), "k2r.toml");
        let out = run_bridge(dir.path(), &["check", "--config", "k2r.toml"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, out) = run(&Config::new(
        broker,
        &redis,
        "g",
        &format!(r#"["{topic}"]"#),
    ));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "topic \"{topic}\": 3 partition(s) -> list \"queues:{topic}\""
        )),
        "{out}"
    );

    let (code, out) = run(&Config::new(
        broker,
        &redis,
        "g",
        &format!(r#"["{topic}", "no-such-topic-{topic}"]"#),
    ));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("MISSING"), "{out}");

    let dead_redis = RedisServer::start();
    let config = Config::new(broker, &dead_redis, "g", &format!(r#"["{topic}"]"#))
        .redis_settings("connect_timeout_ms = 500");
    drop(dead_redis);
    let (code, out) = run(&config);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("redis: FAILED"), "{out}");

    let unreachable = Broker {
        address: format!("127.0.0.1:{}", free_port()),
    };
    let (code, out) = run(&Config::new(
        &unreachable,
        &redis,
        "g",
        &format!(r#"["{topic}"]"#),
    ));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("kafka: FAILED to reach brokers"), "{out}");
}

/// A second signal exits at once, even while a lane is stuck retrying a push; nothing it held was
/// stored, so a restart delivers it.
#[test]
fn second_signal_exits_at_once_and_loses_nothing() {
    let broker = Broker::shared();
    let mut redis = RedisServer::start_durable();
    let topic = unique("twice");
    broker.create_topic(&topic, 2);
    let list = format!("queues:{topic}");
    let dir = tempfile::tempdir().unwrap();
    Config::new(broker, &redis, &topic, &format!(r#"["{topic}"]"#))
        .sections("[shutdown]\ntimeout_ms = 60000\n")
        .write(dir.path(), "k2r.toml");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    redis.kill();
    let produced = broker.produce_numbered(&topic, 2, 0, 500);
    wait_until("the lanes are retrying", Duration::from_secs(30), || {
        bridge.log_text().contains("Redis push failed")
    });
    bridge.signal(libc::SIGTERM);
    wait_until("the first signal was seen", Duration::from_secs(10), || {
        bridge
            .log_text()
            .contains("stopping: finishing in-flight batches")
    });
    let second = std::time::Instant::now();
    bridge.signal(libc::SIGTERM);
    let status = bridge.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(130), "forced exit code");
    assert!(
        second.elapsed() < Duration::from_secs(3),
        "exits at once, not after the 60 s bound"
    );

    redis.restart();
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    wait_until(
        "everything delivered after the restart",
        Duration::from_secs(60),
        || redis.llen(&list) >= produced.len(),
    );
    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit(STOP_BOUND).success());
    let got: HashSet<String> = redis.list(&list).iter().map(|e| text(e)).collect();
    assert!(produced.iter().all(|v| got.contains(v)), "nothing lost");
}

/// A slow Redis (`CLIENT PAUSE` longer than the bridge's response timeout, so pushes time out and
/// are retried) and a full one (`maxmemory` reached: every push is refused with OOM) mid-stream:
/// nothing is lost, order per partition holds, and every offset is committed in the end.
#[test]
fn slow_and_full_redis_mid_stream_lose_nothing() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let partitions = 4;
    let Fixture { topic, list, dir } = fixture(broker, &redis, "slowfull", partitions);
    let mut bridge = Bridge::start(dir.path(), &["--config", "k2r.toml"]);
    bridge.wait_assigned();
    let mut admin = redis.conn();

    let mut produced = broker.produce_numbered(&topic, partitions, 0, 2000);
    wait_until("first messages arrive", Duration::from_secs(60), || {
        redis.llen(&list) > 0
    });
    // Writes wait 3 s: longer than the 2 s response timeout.
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(3000)
        .arg("WRITE")
        .query::<()>(&mut admin)
        .unwrap();
    produced.extend(broker.produce_numbered(&topic, partitions, 2000, 2000));
    wait_until(
        "Redis accepts writes again",
        Duration::from_secs(30),
        || redis.llen(&list) >= 2000,
    );
    // Full: every write is refused with OOM until the limit is lifted.
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query::<()>(&mut admin)
        .unwrap();
    produced.extend(broker.produce_numbered(&topic, partitions, 4000, 2000));
    wait_until(
        "the bridge reports the refused pushes",
        Duration::from_secs(30),
        || bridge.log_text().contains("OOM"),
    );
    assert!(bridge.is_running(), "the bridge survives a full Redis");
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query::<()>(&mut admin)
        .unwrap();
    wait_until("every message delivered", Duration::from_secs(60), || {
        let got: HashSet<Vec<u8>> = redis.list(&list).into_iter().collect();
        got.len() == produced.len()
    });
    let elements = redis.list(&list);
    Tally::new(&produced, &elements)
        .report(
            "Redis slow (CLIENT PAUSE past the response timeout), then full (maxmemory: OOM replies)",
            "at-least-once",
        )
        .assert_complete();
    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit(STOP_BOUND).success());
    broker.assert_committed_to_end(&topic, &topic, partitions, "after a slow and a full Redis");
}
