//! A real Prometheus scrapes a running bridge: the target comes up, every alert rule in
//! deploy/prometheus/kafka2redis.rules.yml evaluates without error on live series, and every query
//! of the Grafana dashboard (as scripts/deploy-check.py extracts them) evaluates and returns series.
//! promtool's unit tests (scripts/check-deploy.sh) check the same expressions against a fixture;
//! this checks them against what the daemon really exports.
//!
//! The Prometheus server binary: `K2R_PROMETHEUS`, else target/deploy-tools/bin/prometheus (where
//! scripts/check-deploy.sh unpacks Debian's package), else `prometheus` on PATH.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn prometheus_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("K2R_PROMETHEUS") {
        return path.into();
    }
    let unpacked = repo().join("target/deploy-tools/bin/prometheus");
    if unpacked.exists() {
        return unpacked;
    }
    "prometheus".into()
}

/// `GET path` over HTTP/1.0: status code and body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus API answer's `data` (panics unless `status` is `success`).
fn api(port: u16, path: &str) -> serde_json::Value {
    let (code, body) = http_get(port, path).unwrap_or_else(|| panic!("no answer to {path}"));
    let answer: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
    assert_eq!(
        answer["status"], "success",
        "{path} answered {code}: {body}"
    );
    answer["data"].clone()
}

/// An instant query's result vector.
fn query(port: u16, expr: &str) -> Vec<serde_json::Value> {
    let data = api(
        port,
        &format!("/api/v1/query?query={}", percent_encode(expr)),
    );
    assert_eq!(data["resultType"], "vector", "{expr}");
    data["result"].as_array().cloned().unwrap_or_default()
}

struct Prometheus {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus on loopback with deploy/prometheus/prometheus-test.yml filled in for a
    /// bridge on `target_port`, loading `rules` (files copied into its rules directory).
    fn start(target_port: u16, rules: &[PathBuf]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let rules_dir = dir.path().join("rules");
        std::fs::create_dir(&rules_dir).unwrap();
        for rule in rules {
            std::fs::copy(rule, rules_dir.join(rule.file_name().unwrap())).unwrap();
        }
        let template =
            std::fs::read_to_string(repo().join("deploy/prometheus/prometheus-test.yml")).unwrap();
        let config = template
            .replace("@PORT@", &target_port.to_string())
            .replace("@RULES_DIR@", rules_dir.to_str().unwrap());
        assert!(!config.contains("@PORT@") && !config.contains("@RULES_DIR@"));
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(prometheus_binary())
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (scripts/check-deploy.sh unpacks it into target/deploy-tools)");
        let prometheus = Prometheus {
            port,
            child,
            _dir: dir,
        };
        wait_until("Prometheus is ready", Duration::from_secs(60), || {
            http_get(port, "/-/ready").is_some_and(|(code, _)| code == 200)
        });
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The dashboard's queries, variables first, as `(name, expr)` with Grafana's variables replaced.
fn dashboard_queries(out: &Path) -> Vec<(String, String)> {
    let status = Command::new("python3")
        .arg(repo().join("scripts/deploy-check.py"))
        .arg("dashboard")
        .arg(repo().join("deploy/grafana/kafka2redis.json"))
        .arg(repo().join("deploy/grafana/kafka2redis.fixture.yml"))
        .arg(out)
        .stdout(Stdio::null())
        .status()
        .expect("python3");
    assert!(status.success(), "deploy-check.py dashboard failed");
    std::fs::read_to_string(out.join("queries.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let (name, expr) = l.split_once('\t').unwrap();
            (name.to_string(), expr.to_string())
        })
        .collect()
}

/// A bridge with a lease (so the lease series exist), a capped topic that pauses and a topic that
/// keeps flowing, scraped every second; then every rule and dashboard query is evaluated.
#[test]
fn prometheus_scrapes_the_bridge_and_every_rule_and_panel_evaluates() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let capped = unique("prom-capped");
    let flowing = unique("prom-flowing");
    broker.create_topic(&capped, 2);
    broker.create_topic(&flowing, 2);
    let dir = tempfile::tempdir().unwrap();
    Config::new(
        broker,
        &redis,
        &flowing,
        &format!(
            r#"[{{ name = "{capped}", cap = 20 }}, {{ name = "{flowing}", envelope = "legacy" }}]"#
        ),
    )
    .sections(&format!(
        "[lease]\nkey = \"lease:{flowing}\"\nttl_ms = 3000\n\
                 [lag]\ninterval_ms = 300\n[flow]\ncheck_interval_ms = 50"
    ))
    .write(dir.path(), "k.toml");
    broker.produce_numbered(&capped, 2, 0, 200);
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let bridge = Bridge::start(dir.path(), &["--config", "k.toml", "--http", &address]);
    bridge.wait_assigned();

    let generated = tempfile::tempdir().unwrap();
    let queries = dashboard_queries(generated.path());
    assert!(queries.len() >= 20, "the dashboard's queries: {queries:?}");
    let rules_file = repo().join("deploy/prometheus/kafka2redis.rules.yml");
    let prometheus = Prometheus::start(
        port,
        &[
            rules_file.clone(),
            generated.path().join("dashboard.rules.yml"),
        ],
    );
    let prom = prometheus.port;

    wait_until(
        "Prometheus reports the bridge's target up",
        Duration::from_secs(30),
        || {
            let data = api(prom, "/api/v1/targets?state=active");
            data["activeTargets"].as_array().is_some_and(|t| {
                t.len() == 1
                    && t[0]["health"] == "up"
                    && t[0]["scrapeUrl"] == format!("http://{address}/metrics").as_str()
            })
        },
    );
    // Traffic while Prometheus watches, a scrape after each round, so that the rate() panels see
    // the counters move; then one message the legacy envelope cannot carry (a dead letter).
    let delivered = |prom: u16| {
        query(
            prom,
            &format!("kafka2redis_delivered_messages_total{{topic=\"{flowing}\"}}"),
        )
        .first()
        .and_then(|s| s["value"][1].as_str().map(str::to_string))
    };
    for round in 0..3 {
        broker.produce_numbered(&flowing, 2, round * 50, 50);
        let expected = ((round + 1) * 50).to_string();
        wait_until(
            "Prometheus scraped this round's deliveries",
            Duration::from_secs(30),
            || delivered(prom).as_deref() == Some(expected.as_str()),
        );
    }
    broker.produce(&[TestMessage::new(&flowing, 0, Some(&[0xff]))]);
    wait_until(
        "Prometheus scraped the dead letter",
        Duration::from_secs(30),
        || {
            query(
                prom,
                &format!("kafka2redis_dead_letters_total{{topic=\"{flowing}\"}}"),
            )
            .first()
            .is_some_and(|s| s["value"][1] == "1")
        },
    );

    // Every alert rule: loaded, and evaluated by Prometheus itself without error.
    let expected_alerts = std::fs::read_to_string(&rules_file)
        .unwrap()
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    let mut alert_rules = Vec::new();
    wait_until(
        "Prometheus evaluated every rule without error",
        Duration::from_secs(30),
        || {
            let data = api(prom, "/api/v1/rules");
            alert_rules = data["groups"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|g| {
                    g["file"]
                        .as_str()
                        .unwrap()
                        .ends_with("kafka2redis.rules.yml")
                })
                .flat_map(|g| g["rules"].as_array().unwrap().clone())
                .collect();
            let all_groups_ok = data["groups"].as_array().unwrap().iter().all(|g| {
                g["rules"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|r| r["health"] == "ok")
            });
            alert_rules.len() == expected_alerts && all_groups_ok
        },
    );
    for rule in &alert_rules {
        let expr = rule["query"].as_str().unwrap();
        query(prom, expr); // an instant query of the same expression succeeds too
    }
    // The capped topic's partitions are paused: its alert is pending or firing, on real series.
    let paused = alert_rules
        .iter()
        .find(|r| r["query"] == "kafka2redis_paused_partitions > 0")
        .expect("the paused-partitions rule");
    assert!(
        paused["alerts"].as_array().is_some_and(|a| !a.is_empty()),
        "the paused-partitions alert is active: {paused}"
    );

    // Every dashboard query evaluates and returns series.
    let mut empty = Vec::new();
    for (name, expr) in &queries {
        if query(prom, expr).is_empty() {
            empty.push(format!("{name}: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data:\n  {}\nPrometheus log:\n{}",
        empty.join("\n  "),
        prometheus.log()
    );
    // The figures the dashboard draws are the daemon's own.
    let status: serde_json::Value =
        serde_json::from_str(&http_get(port, "/status").unwrap().1).unwrap();
    let cap = query(
        prom,
        &format!("kafka2redis_list_cap{{list=\"queues:{capped}\"}}"),
    );
    assert_eq!(cap[0]["value"][1], "20");
    assert_eq!(status["ready"], true, "{status}");
    assert_eq!(query(prom, "kafka2redis_ready")[0]["value"][1], "1");
    assert_eq!(query(prom, "kafka2redis_lease_held")[0]["value"][1], "1");
}
