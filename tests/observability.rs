//! Lag, metrics, health and `status`, against real Redis and Tansu processes.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

fn hgetall(redis: &RedisServer, key: &str) -> HashMap<String, String> {
    redis::cmd("HGETALL")
        .arg(key)
        .query(&mut redis.conn())
        .unwrap_or_default()
}

/// Parses Prometheus text: every sample line is `name{labels} value`; returns name{labels} → value.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            assert!(
                line.is_empty()
                    || line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("# UNIT ")
                    || line == "# EOF",
                "bad comment line: {line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line has a value");
        let name = series.split('{').next().unwrap();
        assert!(
            name.starts_with("kafka2redis_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name in {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels in {line}"
            );
        }
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        samples.insert(series.to_string(), value);
    }
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    samples
}

/// The config of every bridge here: lag read every 300 ms, full lists checked every 50 ms.
fn lag_config(broker: &Broker, redis: &RedisServer, group: &str, topics: &str) -> Config {
    Config::new(broker, redis, group, topics)
        .sections("[lag]\ninterval_ms = 300\n[flow]\ncheck_interval_ms = 50")
}

/// A new topic of 2 partitions whose list is capped at 1,000, and a directory holding `k.toml`
/// for it (group = topic, [`lag_config`]).
fn capped_topic(broker: &Broker, redis: &RedisServer, prefix: &str) -> (String, tempfile::TempDir) {
    let topic = unique(prefix);
    broker.create_topic(&topic, 2);
    let dir = tempfile::tempdir().unwrap();
    lag_config(
        broker,
        redis,
        &topic,
        &format!(r#"[{{ name = "{topic}", cap = 1000 }}]"#),
    )
    .write(dir.path(), "k.toml");
    (topic, dir)
}

/// A partition held back by a full list: the bridge's lag figures equal what Kafka reports
/// (high watermark − committed); the old hash keeps the old shape; draining brings lag to 0.
#[test]
fn lag_equals_kafka_figures_and_drains_to_zero() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let topic = unique("lag");
    let partitions = 3;
    broker.create_topic(&topic, partitions);
    let list = format!("queues:{topic}");
    let topics = format!(r#"[{{ name = "{topic}", cap = 30 }}]"#);
    let dir = tempfile::tempdir().unwrap();
    lag_config(broker, &redis, &topic, &topics).write(dir.path(), "k.toml");
    let produced = broker.produce_numbered(&topic, partitions, 0, 900);
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let bridge = Bridge::start(dir.path(), &["--config", "k.toml", "--http", &address]);
    bridge.wait_assigned();

    // The list fills up to its cap and the partitions pause: delivery stops with lag left.
    wait_until("list at its cap", Duration::from_secs(30), || {
        redis.llen(&list) == 30
    });
    let companion = "{topics_queue_len}:partitions";
    wait_until(
        "per-partition lag equals high watermark − committed",
        Duration::from_secs(30),
        || {
            let high = broker.high_watermarks(&topic, partitions);
            let committed = broker.committed(&group_of(&topic), &topic, partitions);
            let hash = hgetall(&redis, companion);
            (0..partitions as usize).all(|p| {
                let expected = high[p] - committed[p].unwrap_or(0);
                hash.get(&format!("{topic}/{p}")) == Some(&expected.to_string())
            })
        },
    );
    // The old hash: field = topic, value = the sum, as a plain integer.
    let high: i64 = broker.high_watermarks(&topic, partitions).iter().sum();
    let committed: i64 = broker
        .committed(&topic, &topic, partitions)
        .iter()
        .map(|c| c.unwrap_or(0))
        .sum();
    wait_until("topic lag is the sum", Duration::from_secs(10), || {
        hgetall(&redis, "topics_queue_len").get(&topic) == Some(&(high - committed).to_string())
    });
    assert!(high - committed > 0, "lag is held back by the full list");
    // /status rates the held-back partitions PAUSED, with the age of what waits.
    wait_until(
        "/status shows every partition PAUSED",
        Duration::from_secs(10),
        || {
            let status = http_get(port, "/status")
                .map(|(_, b)| b)
                .unwrap_or_default();
            let status: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
            status["partitions"].as_array().is_some_and(|parts| {
                parts.len() == partitions as usize
                    && parts.iter().all(|p| {
                        p["state"] == "PAUSED"
                            && p["paused"] == true
                            && p["lag"].as_i64() > Some(0)
                            && p["lag_seconds"].as_f64() > Some(0.0)
                    })
            })
        },
    );
    let m = parse_prometheus(&http_get(port, "/metrics").unwrap().1);
    assert_eq!(m["kafka2redis_partitions{state=\"PAUSED\"}"], 3.0);
    assert_eq!(m["kafka2redis_paused_partitions"], 3.0);
    assert_eq!(m[&format!("kafka2redis_list_cap{{list=\"{list}\"}}")], 30.0);
    let kinds: String = redis::cmd("TYPE")
        .arg("topics_queue_len")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(kinds, "hash");

    // A worker drains the list: lag converges to 0.
    let mut popped = 0;
    wait_until(
        "everything delivered and lag 0",
        Duration::from_secs(60),
        || {
            let got: Vec<Vec<u8>> = redis::cmd("LPOP")
                .arg(&list)
                .arg(100)
                .query(&mut redis.conn())
                .unwrap_or_default();
            popped += got.len();
            let hash = hgetall(&redis, "topics_queue_len");
            popped >= produced.len() && hash.get(&topic).map(String::as_str) == Some("0")
        },
    );
    let hash = hgetall(&redis, companion);
    for p in 0..partitions {
        assert_eq!(
            hash.get(&format!("{topic}/{p}")).map(String::as_str),
            Some("0")
        );
    }
    wait_until(
        "/status shows every partition OK",
        Duration::from_secs(10),
        || {
            let status = http_get(port, "/status")
                .map(|(_, b)| b)
                .unwrap_or_default();
            let status: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
            status["partitions"].as_array().is_some_and(|parts| {
                parts
                    .iter()
                    .all(|p| p["state"] == "OK" && p["lag"] == 0 && p["lag_seconds"] == 0.0)
            })
        },
    );
}

/// Tests here use the topic name as the group name.
fn group_of(topic: &str) -> String {
    topic.to_string()
}

/// /metrics is Prometheus text that moves with traffic; /status and /healthz answer; /readyz
/// follows Redis going away and coming back, and `kafka2redis_ready` says what /readyz says.
#[test]
fn http_metrics_move_and_readiness_follows_redis() {
    let broker = Broker::shared();
    let mut redis = RedisServer::start();
    let topic = unique("http");
    broker.create_topic(&topic, 2);
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    lag_config(broker, &redis, &topic, &format!(r#"["{topic}"]"#)).write(dir.path(), "k.toml");
    let address = format!("127.0.0.1:{port}");
    // Started while Redis is down: alive, not ready.
    redis.kill();
    let bridge = Bridge::start(dir.path(), &["--config", "k.toml", "--http", &address]);
    wait_until(
        "/healthz answers while Redis is down",
        Duration::from_secs(30),
        || http_get(port, "/healthz").is_some_and(|(code, _)| code == 200),
    );
    assert_eq!(http_get(port, "/readyz").unwrap().0, 503);
    assert_eq!(ready_metric(port), 0.0, "not ready while Redis is down");
    redis.restart();
    bridge.wait_assigned();

    wait_until("/readyz says ready", Duration::from_secs(30), || {
        http_get(port, "/readyz").is_some_and(|(code, _)| code == 200)
    });
    assert_eq!(http_get(port, "/healthz").unwrap().0, 200);
    assert_eq!(ready_metric(port), 1.0, "ready as /readyz is");
    let delivered = format!("kafka2redis_delivered_messages_total{{topic=\"{topic}\"}}");
    let before = parse_prometheus(&http_get(port, "/metrics").unwrap().1);
    assert_eq!(before.get(&delivered).copied().unwrap_or(0.0), 0.0);

    broker.produce_numbered(&topic, 2, 0, 500);
    // The list length is sampled with the lag, each interval: it can trail the counters.
    let list_length = format!("kafka2redis_list_length{{list=\"queues:{topic}\"}}");
    wait_until("metrics count the traffic", Duration::from_secs(30), || {
        let m = parse_prometheus(&http_get(port, "/metrics").unwrap().1);
        m.get(&delivered) == Some(&500.0)
            && m.get(&format!(
                "kafka2redis_lag_messages{{topic=\"{topic}\",partition=\"0\"}}"
            )) == Some(&0.0)
            && m.get(&list_length) == Some(&500.0)
    });
    let m = parse_prometheus(&http_get(port, "/metrics").unwrap().1);
    let bytes = format!("kafka2redis_delivered_bytes_total{{topic=\"{topic}\"}}");
    assert!(m[&bytes] >= 500.0 * 10.0, "bytes counted: {}", m[&bytes]);
    let pushes = format!("kafka2redis_push_duration_seconds_count{{topic=\"{topic}\"}}");
    assert!(m[&pushes] >= 1.0);
    // Cumulative buckets that end at the count, as Prometheus' histogram_quantile reads them.
    let bucket = |le: &str| {
        m[&format!("kafka2redis_push_duration_seconds_bucket{{le=\"{le}\",topic=\"{topic}\"}}")]
    };
    assert_eq!(
        bucket("+Inf"),
        m[&pushes],
        "the +Inf bucket holds every push"
    );
    assert!(bucket("0.001") <= bucket("0.01") && bucket("0.01") <= bucket("+Inf"));
    assert_eq!(m["kafka2redis_redis_up"], 1.0);

    let (code, status) = http_get(port, "/status").unwrap();
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let parts = status["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{status}");
    for p in parts {
        assert_eq!(p["lag"], 0);
        assert_eq!(p["state"], "OK");
        assert_eq!(p["offset"], p["high_watermark"]);
    }

    redis.kill();
    wait_until(
        "/readyz says not ready without Redis",
        Duration::from_secs(30),
        || {
            http_get(port, "/readyz")
                .is_some_and(|(code, body)| code == 503 && body.contains("Redis not reachable"))
        },
    );
    assert_eq!(
        http_get(port, "/healthz").unwrap().0,
        200,
        "alive though not ready"
    );
    // Redis stays down, so both keep saying so.
    assert_eq!(http_get(port, "/readyz").unwrap().0, 503);
    assert_eq!(ready_metric(port), 0.0, "not ready without Redis");
    redis.restart();
    wait_until(
        "/readyz ready again once Redis is back",
        Duration::from_secs(30),
        || http_get(port, "/readyz").is_some_and(|(code, _)| code == 200),
    );
}

fn ready_metric(port: u16) -> f64 {
    parse_prometheus(&http_get(port, "/metrics").unwrap().1)["kafka2redis_ready"]
}

/// `--http` that is not an address is a config error naming the option (exit 2).
#[test]
fn bad_http_address_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let nobody = Broker {
        address: "127.0.0.1:1".into(),
    };
    Config::new(
        &nobody,
        "[redis]\naddresses = [\"127.0.0.1:1\"]\n",
        "g",
        r#"["t"]"#,
    )
    .write(dir.path(), "k.toml");
    let out = run_bridge(dir.path(), &["--config", "k.toml", "--http", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`--http`"), "{err}");
}

/// Runs `kafka2redis status`; returns its output rows split into cells, by (topic, partition).
fn status_rows(dir: &std::path::Path) -> (String, HashMap<i32, Vec<String>>) {
    let out = run_bridge(dir, &["status", "--config", "k.toml"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rows = HashMap::new();
    let mut lines = text.lines().skip_while(|l| !l.starts_with("TOPIC"));
    let header = lines.next().expect("a table header");
    assert!(header.contains("COMMITTED") && header.contains("HIGH WATERMARK"));
    for line in lines {
        let cells: Vec<String> = line.split_whitespace().map(String::from).collect();
        rows.insert(cells[1].parse().unwrap(), cells);
    }
    (text, rows)
}

/// `status` prints the table while the daemon runs and after it stopped.
#[test]
fn status_table_for_running_and_stopped_daemon() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let (topic, dir) = capped_topic(broker, &redis, "status");
    broker.produce_numbered(&topic, 2, 0, 300);
    let mut bridge = Bridge::start(dir.path(), &["--config", "k.toml"]);
    bridge.wait_assigned();
    wait_until("delivered and committed", Duration::from_secs(30), || {
        broker.committed(&topic, &topic, 2) == vec![Some(150), Some(150)]
    });
    let (text, rows) = status_rows(dir.path());
    assert_eq!(rows.len(), 2, "{text}");
    for p in 0..2 {
        let row = &rows[&p];
        // TOPIC PARTITION COMMITTED HIGH LAG LIST LENGTH/CAP STATE
        assert_eq!(row[0], topic, "{text}");
        assert_eq!(&row[2..5], ["150", "150", "0"], "{text}");
        assert_eq!(row[5], format!("queues:{topic}"));
        assert_eq!(row[6], "300/1000");
        assert_eq!(row[7], "OK");
    }

    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit(Duration::from_secs(30)).success());
    broker.produce_numbered(&topic, 2, 300, 100);
    let (text, rows) = status_rows(dir.path());
    for p in 0..2 {
        assert_eq!(&rows[&p][2..5], ["150", "200", "50"], "{text}");
        assert_eq!(rows[&p][7], "BEHIND", "{text}");
    }
}

fn owned(port: u16) -> Vec<i64> {
    let status = http_get(port, "/status")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
    let mut parts: Vec<i64> = status["partitions"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["partition"].as_i64()).collect())
        .unwrap_or_default();
    parts.sort_unstable();
    parts
}

/// Without a lease two instances share the partitions; partitions revoked from the first leave its
/// figures, and the hashes hold one field per partition, summed per topic.
#[test]
fn revoked_partitions_leave_the_figures() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let topic = unique("share");
    broker.create_topic(&topic, 4);
    let dir = tempfile::tempdir().unwrap();
    lag_config(broker, &redis, &topic, &format!(r#"["{topic}"]"#)).write(dir.path(), "k.toml");
    let (port_a, port_b) = (free_port(), free_port());
    let a = Bridge::start(
        dir.path(),
        &[
            "--config",
            "k.toml",
            "--http",
            &format!("127.0.0.1:{port_a}"),
        ],
    );
    a.wait_assigned();
    wait_until("A owns all four", Duration::from_secs(30), || {
        owned(port_a) == vec![0, 1, 2, 3]
    });
    let _b = Bridge::start(
        dir.path(),
        &[
            "--config",
            "k.toml",
            "--http",
            &format!("127.0.0.1:{port_b}"),
        ],
    );
    wait_until(
        "A and B split the partitions",
        Duration::from_secs(60),
        || {
            let (pa, pb) = (owned(port_a), owned(port_b));
            let mut all: Vec<i64> = pa.iter().chain(&pb).copied().collect();
            all.sort_unstable();
            !pa.is_empty() && !pb.is_empty() && all == vec![0, 1, 2, 3]
        },
    );
    broker.produce_numbered(&topic, 4, 0, 400);
    wait_until(
        "lag 0 everywhere, one field per partition",
        Duration::from_secs(30),
        || {
            let parts = hgetall(&redis, "{topics_queue_len}:partitions");
            redis.llen(&format!("queues:{topic}")) == 400
                && (0..4)
                    .all(|p| parts.get(&format!("{topic}/{p}")).map(String::as_str) == Some("0"))
                && hgetall(&redis, "topics_queue_len")
                    .get(&topic)
                    .map(String::as_str)
                    == Some("0")
        },
    );
}

/// The KEDA and Kubernetes recipes in docs/autoscaling.md name only what a running bridge serves:
/// every `kafka2redis_*` series they query is in `/metrics`, and every probe path answers.
#[test]
fn autoscaling_recipes_name_real_series_and_endpoints() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/autoscaling.md"))
        .expect("docs/autoscaling.md");
    let mut names: Vec<&str> = doc
        .match_indices("kafka2redis_")
        .map(|(at, _)| {
            let rest = &doc[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    let paths: Vec<&str> = doc
        .match_indices("path: /")
        .map(|(at, _)| {
            let rest = &doc[at + "path: ".len()..];
            &rest[..rest.find([',', ' ', '}', '\n']).unwrap_or(rest.len())]
        })
        .collect();
    assert!(
        !names.is_empty() && !paths.is_empty(),
        "the recipes name series and probes"
    );

    let broker = Broker::shared();
    let redis = RedisServer::start();
    // A capped list, so that the cap series exist too.
    let (topic, dir) = capped_topic(broker, &redis, "recipes");
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let bridge = Bridge::start(dir.path(), &["--config", "k.toml", "--http", &address]);
    bridge.wait_assigned();
    broker.produce_numbered(&topic, 2, 0, 100);
    let mut missing = Vec::new();
    wait_until(
        "every series the recipes query is served",
        Duration::from_secs(30),
        || {
            let metrics = http_get(port, "/metrics")
                .map(|(_, body)| body)
                .unwrap_or_default();
            missing = names
                .iter()
                .filter(|name| {
                    !metrics
                        .lines()
                        .any(|l| !l.starts_with('#') && l.starts_with(**name))
                })
                .map(|name| name.to_string())
                .collect();
            missing.is_empty()
        },
    );
    for path in &paths {
        let (code, _) = http_get(port, path).unwrap_or_else(|| panic!("{path} answers"));
        assert!(code == 200 || code == 503, "{path} answered {code}");
    }
    eprintln!("recipes: series {names:?} and probes {paths:?} all served");
}
