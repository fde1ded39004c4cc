//! The status page at `/`, rendered by headless Chromium against a running bridge: what a person
//! sees must be what `/status` says — the partition rows, which ones are paused on a full list,
//! lag, list length against the cap, delivered messages and dead letters.
//!
//! Needs `chromium` (scripts/install-deps.sh installs it). With `K2R_UPDATE_SCREENSHOT=1` the
//! screenshot is also written to docs/status-page.png, which docs/operations.md shows.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `GET path` over HTTP/1.0 (so the body is not chunked): status code and body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

fn status(port: u16) -> serde_json::Value {
    let (code, body) = http_get(port, "/status").expect("/status answers");
    assert_eq!(code, 200);
    serde_json::from_str(&body).unwrap()
}

/// Runs headless Chromium on `url` with `extra` arguments; returns its stdout. Killed after a
/// minute: a browser that hangs must fail the test, not stall the suite.
fn chromium(profile: &Path, url: &str, extra: &[&str]) -> String {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium (scripts/install-deps.sh installs it)");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).map(|_| out)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within a minute on {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "chromium exited with {exit}");
    reader.join().unwrap().expect("chromium's output")
}

/// A rendered table row: its `data-*` attributes and the text of each cell.
#[derive(Debug)]
struct Row {
    attrs: HashMap<String, String>,
    cells: Vec<String>,
}

/// The rows of `<tbody id="ID">` in serialized DOM. Good enough for the markup the page itself
/// builds (no nested tables, attributes double-quoted).
fn rows(dom: &str, id: &str) -> Vec<Row> {
    let start = dom
        .find(&format!("<tbody id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no tbody #{id} in the rendered page"));
    let body = &dom[start..start + dom[start..].find("</tbody>").unwrap()];
    body.split("<tr")
        .skip(1)
        .map(|tr| {
            let open = &tr[..tr.find('>').unwrap()];
            let attrs = open
                .split("\" ")
                .filter_map(|a| {
                    let (k, v) = a.trim().split_once("=\"")?;
                    Some((k.to_string(), v.trim_end_matches('"').to_string()))
                })
                .collect();
            let cells = tr
                .split("<td")
                .skip(1)
                .map(|td| strip_tags(&td[td.find('>').unwrap() + 1..td.find("</td>").unwrap()]))
                .collect();
            Row { attrs, cells }
        })
        .collect()
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&amp;", "&")
}

/// The page groups digits ("1,234"); the JSON does not.
fn number(text: &str) -> i64 {
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {text:?}"))
}

/// One capped topic whose partitions pause on the full list, one uncapped topic that flows and has
/// sent a message it could not carry to its dead-letter list: the page shows both as /status does.
#[test]
fn status_page_shows_what_status_says() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let capped = unique("orders");
    let flowing = unique("events");
    broker.create_topic(&capped, 3);
    broker.create_topic(&flowing, 2);
    let topics = format!(
        r#"[{{ name = "{capped}", cap = 30 }}, {{ name = "{flowing}", envelope = "legacy" }}]"#
    );
    let dir = tempfile::tempdir().unwrap();
    Config::new(broker, &redis, &capped, &topics)
        .sections("[lag]\ninterval_ms = 300\n[flow]\ncheck_interval_ms = 50")
        .write(dir.path(), "k.toml");
    broker.produce_numbered(&capped, 3, 0, 900);
    broker.produce_numbered(&flowing, 2, 0, 40);
    broker.produce(&[TestMessage::new(&flowing, 1, Some(&[0xff, 0xfe, 0x00]))]);
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let bridge = Bridge::start(dir.path(), &["--config", "k.toml", "--http", &address]);
    bridge.wait_assigned();

    // Settled: the capped partitions paused with lag left, the other topic caught up, one dead
    // letter. From here on the figures the page shows stay put (only lag seconds grow).
    let settled = |s: &serde_json::Value| {
        let parts = s["partitions"].as_array().cloned().unwrap_or_default();
        parts.len() == 5
            && parts.iter().all(|p| {
                if p["topic"] == capped.as_str() {
                    p["state"] == "PAUSED" && p["lag"].as_i64() > Some(0)
                } else {
                    p["state"] == "OK" && p["lag"] == 0
                }
            })
            && s["topics"][1]["delivered_messages"] == 40
            && s["topics"][1]["dead_letters"] == 1
            && s["lists"]
                .as_array()
                .is_some_and(|l| l.iter().any(|l| l["length"] == 30 && l["cap"] == 30))
    };
    wait_until(
        "/status: capped partitions paused, the other topic caught up",
        Duration::from_secs(60),
        || settled(&status(port)),
    );
    let before = status(port);

    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{address}/");
    let dom = chromium(profile.path(), &url, &["--dump-dom"]);
    let after = status(port);
    assert!(settled(&after), "still settled after rendering: {after}");

    assert!(dom.contains("id=\"group\">"), "the page rendered: {dom}");
    assert!(
        dom.contains(&format!("<b id=\"group\">{capped}</b>")),
        "group shown"
    );
    assert!(
        dom.contains("<section id=\"error\" style=\"display: none;\"></section>"),
        "the page read /status without an error"
    );

    let partitions = rows(&dom, "partitions");
    let expected = before["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), expected.len(), "one row per partition");
    for p in expected {
        let topic = p["topic"].as_str().unwrap();
        let partition = p["partition"].as_i64().unwrap();
        let row = partitions
            .iter()
            .find(|r| {
                r.attrs.get("data-topic").map(String::as_str) == Some(topic)
                    && r.attrs.get("data-partition") == Some(&partition.to_string())
            })
            .unwrap_or_else(|| panic!("no row for {topic}/{partition}: {partitions:?}"));
        // topic, partition, state, rating, next offset, high watermark, lag, lag seconds, list
        assert_eq!(row.cells[0], topic);
        assert_eq!(number(&row.cells[1]), partition);
        let paused = p["paused"].as_bool().unwrap();
        assert_eq!(
            row.cells[2],
            if paused {
                "paused: list full"
            } else {
                "flowing"
            },
            "{topic}/{partition}"
        );
        assert_eq!(row.cells[3], p["state"].as_str().unwrap());
        assert_eq!(number(&row.cells[4]), p["offset"].as_i64().unwrap());
        assert_eq!(number(&row.cells[5]), p["high_watermark"].as_i64().unwrap());
        assert_eq!(number(&row.cells[6]), p["lag"].as_i64().unwrap());
        assert_eq!(row.cells[8], p["list"].as_str().unwrap());
        assert_eq!(paused, topic == capped, "only the capped topic pauses");
    }

    let lists = rows(&dom, "lists");
    let capped_list = format!("queues:{capped}");
    for l in before["lists"].as_array().unwrap() {
        let name = l["list"].as_str().unwrap();
        let row = lists
            .iter()
            .find(|r| r.attrs.get("data-list").map(String::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no row for list {name}: {lists:?}"));
        assert_eq!(number(&row.cells[1]), l["length"].as_i64().unwrap());
        if name == capped_list {
            assert_eq!(number(&row.cells[2]), 30, "cap");
            assert_eq!(row.cells[3], "100%", "the full list's bar");
        } else {
            assert_eq!(row.cells[2], "–", "no cap");
            assert_eq!(row.cells[3], "no cap");
        }
    }
    assert!(
        dom.contains("class=\"bar full\"><span style=\"width:100.0%\">"),
        "the full list's bar is drawn full"
    );

    // The backlog per destination: the capped list's lag waits in Kafka beside its full list.
    let destinations = rows(&dom, "destinations");
    let expected = before["destinations"].as_array().unwrap();
    assert_eq!(
        destinations.len(),
        expected.len(),
        "one row per destination"
    );
    for d in expected {
        let name = d["destination"].as_str().unwrap();
        let row = destinations
            .iter()
            .find(|r| r.attrs.get("data-destination").map(String::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no row for destination {name}: {destinations:?}"));
        // destination, kind, topics, in Kafka, waiting in Redis, backlog, oldest waiting
        assert_eq!(row.cells[1], "list");
        assert_eq!(number(&row.cells[3]), d["lag_messages"].as_i64().unwrap());
        assert_eq!(
            number(&row.cells[4]),
            d["waiting_messages"].as_i64().unwrap()
        );
        assert_eq!(
            number(&row.cells[5]),
            d["backlog_messages"].as_i64().unwrap()
        );
        if name == capped_list {
            assert_eq!(row.cells[2], capped);
            assert!(number(&row.cells[3]) > 0, "the rest waits in Kafka");
            assert_eq!(number(&row.cells[4]), 30);
        }
        let age: f64 = row.cells[6].trim_start_matches("≥ ").parse().unwrap();
        assert!(age >= 0.0, "{row:?}");
    }

    let topics_rows = rows(&dom, "topics");
    for t in before["topics"].as_array().unwrap() {
        let name = t["topic"].as_str().unwrap();
        let row = topics_rows
            .iter()
            .find(|r| r.attrs.get("data-topic").map(String::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no row for topic {name}"));
        assert_eq!(
            number(&row.cells[3]),
            t["delivered_messages"].as_i64().unwrap()
        );
        assert_eq!(number(&row.cells[6]), t["dead_letters"].as_i64().unwrap());
        assert_eq!(row.cells[7], t["dead_letter_list"].as_str().unwrap());
    }
    // Nothing moves once settled, so the rate the page works out between two polls is zero.
    let rates: Vec<&str> = topics_rows.iter().map(|r| r.cells[4].as_str()).collect();
    assert_eq!(rates, ["0", "0"], "rates after more than one poll");

    // Topology and brokers as host:port, and the instance's readiness.
    assert!(dom.contains(&format!("<dd id=\"redis-nodes\">{}</dd>", redis.address())));
    assert!(dom.contains(&format!("<dd id=\"kafka-brokers\">{}</dd>", broker.address)));
    assert!(dom.contains("<dd id=\"redis-topology\">standalone, db 0</dd>"));
    assert_eq!(before["ready"], true);
    assert!(dom.contains("<span id=\"readiness\" class=\"badge ready\">ready</span>"));

    // The screenshot: a PNG of the window size asked for.
    let shot = profile.path().join("status-page.png");
    chromium(
        profile.path(),
        &url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,900",
            "--hide-scrollbars",
        ],
    );
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 900));
    if std::env::var_os("K2R_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status-page.png");
        std::fs::write(docs, &png).unwrap();
    }
}
