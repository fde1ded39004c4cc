//! The backlog signal for autoscalers against a running bridge, real Redis and Tansu: every path
//! and metric name docs/autoscaling.md's YAML uses answers, and the figures are what waits.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;

const DOC: &str = include_str!("../docs/autoscaling.md");

/// One KEDA trigger out of the page's YAML: its `type`, and its `metadata` (and `metricType`).
#[derive(Debug)]
struct Trigger {
    kind: String,
    fields: HashMap<String, String>,
}

/// The contents of every ```yaml block of `doc`.
fn yaml_blocks(doc: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```yaml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// A YAML scalar as written on one line: quoted (single or double) or plain, comment dropped.
fn scalar(text: &str) -> String {
    let text = text.trim();
    if let Some(inner) = text.strip_prefix('\'') {
        let end = inner.rfind('\'').expect("a closed single quote");
        return inner[..end].replace("''", "'");
    }
    if let Some(inner) = text.strip_prefix('"') {
        let end = inner.rfind('"').expect("a closed double quote");
        return inner[..end].replace("\\\"", "\"").replace("\\\\", "\\");
    }
    text.split(" #").next().unwrap().trim().to_string()
}

/// The triggers of a block: each starts at `- type: …` and holds the `key: value` lines indented
/// below it.
fn triggers(block: &str) -> Vec<Trigger> {
    let mut found: Vec<(usize, Trigger)> = Vec::new();
    for line in block.lines() {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if let Some(kind) = text.strip_prefix("- type:") {
            found.push((
                indent,
                Trigger {
                    kind: scalar(kind),
                    fields: HashMap::new(),
                },
            ));
            continue;
        }
        let Some((at, trigger)) = found.last_mut() else {
            continue;
        };
        if indent <= *at || text.is_empty() {
            continue;
        }
        if let Some((key, value)) = text.split_once(':') {
            if !value.trim().is_empty() {
                trigger.fields.insert(key.trim().to_string(), scalar(value));
            }
        }
    }
    found.into_iter().map(|(_, t)| t).collect()
}

/// Every `kafka2redis_*` name in a PromQL query, with the label matchers right after it.
fn metrics_in_query(query: &str) -> Vec<(String, Vec<Label>)> {
    let mut out = Vec::new();
    let mut rest = query;
    while let Some(at) = rest.find("kafka2redis_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].to_string();
        let mut labels = Vec::new();
        let after = &tail[end..];
        if let Some(matchers) = after.strip_prefix('{') {
            let close = matchers.find('}').expect("closed matchers");
            for m in matchers[..close]
                .split(',')
                .filter(|m| !m.trim().is_empty())
            {
                let (k, v) = m.split_once('=').expect("an equality matcher");
                labels.push((k.trim().to_string(), v.trim().trim_matches('"').to_string()));
            }
        }
        out.push((name, labels));
        rest = &tail[end..];
    }
    out
}

/// A label's name and value.
type Label = (String, String);

/// `name{labels}` sample lines of the Prometheus text: (name, labels, value).
fn samples(text: &str) -> Vec<(String, Vec<Label>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap();
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            (name.to_string(), labels, value.parse().unwrap())
        })
        .collect()
}

/// The value of the series `name` carrying every label in `labels`.
fn metric(text: &str, name: &str, labels: &[Label]) -> Option<f64> {
    samples(text)
        .into_iter()
        .find(|(n, l, _)| n == name && labels.iter().all(|m| l.contains(m)))
        .map(|(_, _, v)| v)
}

fn scaling(port: u16) -> String {
    let (code, body) = http_get(port, "/scaling").expect("the bridge answers");
    assert_eq!(code, 200, "{body}");
    body
}

fn number(json: &str, path: &str) -> Option<f64> {
    let value = gjson::get(json, path);
    (value.kind() == gjson::Kind::Number).then(|| value.f64())
}

fn llen(redis: &RedisServer, key: &str) -> u64 {
    redis::cmd("LLEN")
        .arg(key)
        .query(&mut redis.conn())
        .unwrap()
}

/// The docs' triggers, checked against the running bridge: every `metrics-api` URL path answers
/// JSON in which its `valueLocation` (a GJSON path) is a number, the figure `/scaling` reports for
/// `queues:orders`; every metric a `prometheus` query names is exported with its labels, a
/// destination's with the same figure (its age within a lag round or two). Returns how many
/// triggers were checked.
fn check_docs(port: u16) -> usize {
    let body = scaling(port);
    let metrics = http_get(port, "/metrics").unwrap().1;
    let expected = |field: &str| {
        number(&body, &format!("destinations.queues:orders.{field}"))
            .unwrap_or_else(|| panic!("no {field} in {body}"))
    };
    let mut checked = 0;
    for block in yaml_blocks(DOC) {
        for trigger in triggers(&block) {
            match trigger.kind.as_str() {
                "metrics-api" => {
                    let url = &trigger.fields["url"];
                    let path = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap();
                    assert_eq!(path, "/scaling", "{trigger:?}");
                    assert_eq!(trigger.fields["format"], "json", "{trigger:?}");
                    let location = &trigger.fields["valueLocation"];
                    let value = number(&body, location)
                        .unwrap_or_else(|| panic!("{location} is no number in {body}"));
                    let field = location.rsplit('.').next().unwrap();
                    assert_eq!(value, expected(field), "{location} in {body}");
                    checked += 1;
                }
                "prometheus" => {
                    let query = &trigger.fields["query"];
                    let names = metrics_in_query(query);
                    assert!(!names.is_empty(), "{query}");
                    for (name, labels) in names {
                        let value = metric(&metrics, &name, &labels).unwrap_or_else(|| {
                            panic!("{query}: no {name} {labels:?} in\n{metrics}")
                        });
                        if labels.iter().any(|(k, _)| k == "destination") {
                            let want = expected(name.trim_start_matches("kafka2redis_"));
                            assert!((value - want).abs() <= 1.0, "{query}: {value} vs {want}");
                        }
                    }
                    checked += 1;
                }
                _ => {}
            }
        }
    }
    checked
}

/// The figures of one destination in `/scaling` (by its key under `destinations`).
fn figures(port: u16, escaped_key: &str) -> HashMap<&'static str, f64> {
    let body = scaling(port);
    [
        "backlog_messages",
        "waiting_messages",
        "lag_messages",
        "oldest_waiting_seconds",
    ]
    .into_iter()
    .filter_map(|f| {
        Some((
            f,
            number(&body, &format!("destinations.{escaped_key}.{f}"))?,
        ))
    })
    .collect()
}

/// N messages with the list's workers stopped: backlog = lag + LLEN, the oldest waiting message's
/// age grows; popping the oldest makes it fall. The docs' paths and names answer with the same
/// figures, and `status` prints them.
#[test]
fn backlog_and_oldest_waiting_follow_what_waits_and_the_docs_paths_answer() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    // The docs name topic `orders` and its list `queues:orders`; a second list has a dot in its
    // name, which a GJSON path escapes.
    broker.create_topic("orders", 2);
    broker.create_topic("audit", 1);
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    Config::new(
        broker,
        &redis,
        "scaling",
        r#"[{ name = "orders", cap = 300 }, { name = "audit", list = "queues:audit.v1" }]"#,
    )
    .sections(&format!(
        "[lag]\ninterval_ms = 200\n[flow]\ncheck_interval_ms = 50\n[http]\naddress = \"127.0.0.1:{port}\""
    ))
    .write(dir.path(), "k.toml");
    let mut bridge = Bridge::start(dir.path(), &["--config", "k.toml"]);
    bridge.wait_assigned();

    // Nothing yet: every figure 0, the age of an empty list 0.
    wait_until(
        "/scaling reports both destinations",
        Duration::from_secs(30),
        || {
            http_get(port, "/scaling").is_some_and(|(_, b)| {
                number(&b, "destination_list.#").is_some_and(|n| n == 2.0)
                    && number(&b, "destinations.queues:orders.oldest_waiting_seconds") == Some(0.0)
            })
        },
    );

    // A first batch, below the cap: all of it waits in Redis, and ages.
    broker.produce_numbered("orders", 2, 0, 200);
    wait_until("200 waiting in the list", Duration::from_secs(30), || {
        figures(port, "queues:orders").get("waiting_messages") == Some(&200.0)
    });
    let first = Instant::now();
    wait_until(
        "the oldest has waited three seconds",
        Duration::from_secs(30),
        || figures(port, "queues:orders")["oldest_waiting_seconds"] >= 3.0,
    );
    let age = figures(port, "queues:orders")["oldest_waiting_seconds"];
    wait_until("the age grows with time", Duration::from_secs(30), || {
        figures(port, "queues:orders")["oldest_waiting_seconds"] >= age + 0.5
    });

    // A second batch: the list fills to its cap, the rest waits in Kafka.
    broker.produce_numbered("orders", 2, 200, 400);
    broker.produce_numbered("audit", 1, 0, 7);
    wait_until(
        "the backlog counts Kafka and Redis",
        Duration::from_secs(30),
        || {
            let f = figures(port, "queues:orders");
            f.get("backlog_messages") == Some(&600.0) && f.get("lag_messages") == Some(&300.0)
        },
    );
    let f = figures(port, "queues:orders");
    assert_eq!(llen(&redis, "queues:orders"), 300);
    assert_eq!(
        f["backlog_messages"],
        f["lag_messages"] + llen(&redis, "queues:orders") as f64,
        "backlog = lag + LLEN: {f:?}"
    );
    assert!(
        f["oldest_waiting_seconds"] >= first.elapsed().as_secs_f64() - 0.5,
        "the first batch still waits: {f:?}"
    );

    // The paths and names the docs use answer with these figures.
    assert_eq!(check_docs(port), 5, "triggers in docs/autoscaling.md");
    // A dot in a name is escaped; a query finds any name; `total` sums.
    wait_until("the dotted list's 7 wait", Duration::from_secs(30), || {
        figures(port, "queues:audit\\.v1").get("waiting_messages") == Some(&7.0)
    });
    let body = scaling(port);
    assert_eq!(
        number(
            &body,
            r#"destination_list.#(destination=="queues:audit.v1").backlog_messages"#
        ),
        Some(7.0)
    );
    assert_eq!(number(&body, "total.backlog_messages"), Some(607.0));

    // `status` prints the destinations, the list's age read from the running bridge.
    let out = run_bridge(dir.path(), &["status", "--config", "k.toml"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("queues:orders "))
        .unwrap_or_else(|| panic!("a destination row in\n{text}"))
        .split_whitespace()
        .collect();
    // DESTINATION KIND TOPICS IN-KAFKA IN-REDIS BACKLOG OLDEST, as the running bridge measures.
    assert_eq!(row[1..6], ["list", "orders", "300", "300", "600"], "{text}");
    assert!(row[6].ends_with('s') && row[6] != "-", "{text}");

    // Workers take the first batch: the oldest waiting is younger by the time between batches.
    let before_pop = figures(port, "queues:orders")["oldest_waiting_seconds"];
    let popped: Vec<String> = redis::cmd("LPOP")
        .arg("queues:orders")
        .arg(200)
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(popped.len(), 200);
    wait_until(
        "the backlog falls by what was taken",
        Duration::from_secs(30),
        || figures(port, "queues:orders").get("backlog_messages") == Some(&400.0),
    );
    let after_pop = figures(port, "queues:orders")["oldest_waiting_seconds"];
    assert!(
        after_pop < before_pop - 1.0,
        "the oldest waiting fell: {before_pop} -> {after_pop}"
    );
    let f = figures(port, "queues:orders");
    assert_eq!(
        f["backlog_messages"],
        f["lag_messages"] + f["waiting_messages"],
        "{f:?}"
    );

    // Everything taken: nothing waits, and the age is 0.
    wait_until("workers empty the backlog", Duration::from_secs(30), || {
        let _: Vec<String> = redis::cmd("LPOP")
            .arg("queues:orders")
            .arg(1000)
            .query(&mut redis.conn())
            .unwrap_or_default();
        let f = figures(port, "queues:orders");
        f.get("backlog_messages") == Some(&0.0) && f.get("oldest_waiting_seconds") == Some(&0.0)
    });
    let metrics = http_get(port, "/metrics").unwrap().1;
    let orders = [("destination".to_string(), "queues:orders".to_string())];
    assert_eq!(
        metric(&metrics, "kafka2redis_backlog_messages", &orders),
        Some(0.0)
    );

    // Without a running bridge `status` reads the committed offsets and Redis: what waits is
    // known, a list's age is not.
    broker.produce_numbered("orders", 2, 600, 5);
    wait_until("5 more wait", Duration::from_secs(30), || {
        figures(port, "queues:orders").get("waiting_messages") == Some(&5.0)
    });
    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit(Duration::from_secs(30)).success());
    let out = run_bridge(dir.path(), &["status", "--config", "k.toml"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("queues:orders "))
        .unwrap_or_else(|| panic!("a destination row in\n{text}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[1..], ["list", "orders", "0", "5", "5", "-"], "{text}");
}

/// A stream: the backlog counts its consumer groups' unfinished entries (the busiest group's
/// undelivered + pending), and the oldest waiting entry is dated by its id; both fall as the group
/// finishes them.
#[test]
fn a_stream_backlog_counts_what_its_groups_have_not_finished() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    broker.create_topic("events", 1);
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    Config::new(
        broker,
        &redis,
        "scaling-stream",
        r#"[{ name = "events", structure = "stream" }]"#,
    )
    .sections(&format!(
        "[lag]\ninterval_ms = 200\n[http]\naddress = \"127.0.0.1:{port}\""
    ))
    .write(dir.path(), "k.toml");
    let bridge = Bridge::start(dir.path(), &["--config", "k.toml"]);
    bridge.wait_assigned();
    let key = "queues:events";
    let run = |args: &[&str]| -> redis::Value {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut redis.conn()).unwrap()
    };

    // No group yet: the whole stream waits.
    broker.produce_numbered("events", 1, 0, 10);
    wait_until("10 entries waiting", Duration::from_secs(30), || {
        figures(port, "queues:events").get("waiting_messages") == Some(&10.0)
    });
    let ids: Vec<String> = {
        let entries: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query(&mut redis.conn())
            .unwrap();
        entries.into_iter().map(|(id, _)| id).collect()
    };
    assert_eq!(ids.len(), 10);
    let id_ms = |id: &str| -> f64 { id.split('-').next().unwrap().parse().unwrap() };

    // A group takes 4 and acknowledges 2: 2 pending + 6 undelivered.
    run(&["XGROUP", "CREATE", key, "workers", "0"]);
    run(&[
        "XREADGROUP",
        "GROUP",
        "workers",
        "w1",
        "COUNT",
        "4",
        "STREAMS",
        key,
        ">",
    ]);
    run(&["XACK", key, "workers", &ids[0], &ids[1]]);
    wait_until("8 unfinished", Duration::from_secs(30), || {
        figures(port, "queues:events").get("waiting_messages") == Some(&8.0)
    });
    let body = scaling(port);
    assert_eq!(
        gjson::get(&body, "destinations.queues:events.kind").str(),
        "stream"
    );
    let f = figures(port, "queues:events");
    assert_eq!(f["backlog_messages"], f["lag_messages"] + 8.0, "{f:?}");
    // The oldest unfinished entry is the third (pending): its id dates it.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    let expected = (now_ms - id_ms(&ids[2])) / 1e3;
    assert!(
        (f["oldest_waiting_seconds"] - expected).abs() < 1.0,
        "{f:?} vs {expected}"
    );
    let age = f["oldest_waiting_seconds"];
    wait_until("the age grows", Duration::from_secs(30), || {
        figures(port, "queues:events")["oldest_waiting_seconds"] >= age + 0.5
    });

    // The group finishes everything: nothing waits, age 0.
    run(&[
        "XREADGROUP",
        "GROUP",
        "workers",
        "w1",
        "COUNT",
        "100",
        "STREAMS",
        key,
        ">",
    ]);
    let mut ack = vec!["XACK", key, "workers"];
    ack.extend(ids.iter().map(String::as_str));
    run(&ack);
    wait_until("nothing waits", Duration::from_secs(30), || {
        let f = figures(port, "queues:events");
        f.get("backlog_messages") == Some(&0.0) && f.get("oldest_waiting_seconds") == Some(&0.0)
    });
    let metrics = http_get(port, "/metrics").unwrap().1;
    let events = [("destination".to_string(), key.to_string())];
    assert_eq!(
        metric(&metrics, "kafka2redis_waiting_messages", &events),
        Some(0.0)
    );
}
