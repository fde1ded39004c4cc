//! Test harness: real `redis-server` and Tansu broker processes on free loopback ports, the
//! kafka2redis binary as a child process, and helpers that read outcomes from Redis and Kafka.
//! Ports, the `redis-server` command line and waiting are the bench's launcher
//! (`kafka2redis::bench::launch`), so there is one of each.
#![allow(dead_code)]

pub mod proxy;
pub mod topologies;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kafka2redis::bench::launch;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// Polls `condition` every 50 ms until it holds or `timeout` passes; panics with `what` on timeout.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    launch::wait_for(what, timeout, Duration::from_millis(50), || Ok(condition()))
        .unwrap_or_else(|e| panic!("{e}"));
}

pub fn free_port() -> u16 {
    launch::free_port().expect("free port")
}

/// Makes the child die with the thread that spawned it (the test's thread, or a parked thread for
/// shared services), so no service outlives a test run even if it panics.
pub fn die_with_parent(cmd: &mut Command) {
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

fn send_signal(child: &Child, signal: i32) {
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
}

// ---------------------------------------------------------------------------------------------
// Redis

pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    aof: bool,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(false)
    }

    /// With `appendonly yes` and `appendfsync always`, so data survives a kill and restart.
    pub fn start_durable() -> RedisServer {
        Self::start_with(true)
    }

    fn start_with(aof: bool) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            aof,
            child: None,
        };
        server.restart();
        server
    }

    /// Starts (again) on the same port and data directory.
    pub fn restart(&mut self) {
        let appendonly = if self.aof { "yes" } else { "no" };
        let mut cmd = launch::redis_server(
            self.port,
            self.dir.path(),
            &["--appendonly", appendonly, "--appendfsync", "always"],
        );
        die_with_parent(&mut cmd);
        self.child = Some(
            cmd.spawn()
                .expect("redis-server (apt install redis-server)"),
        );
        launch::wait_for_ping(&self.address(), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect to test redis")
    }

    pub fn list(&self, key: &str) -> Vec<Vec<u8>> {
        redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query(&mut self.conn())
            .unwrap()
    }

    pub fn llen(&self, key: &str) -> usize {
        redis::cmd("LLEN")
            .arg(key)
            .query(&mut self.conn())
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// Kafka (Tansu)

pub struct Broker {
    pub address: String,
}

pub fn tansu_binary() -> PathBuf {
    if let Ok(path) = std::env::var("TANSU_BIN") {
        return path.into();
    }
    if let Some(home) = std::env::var_os("CARGO_HOME")
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo").into()))
    {
        let candidate = Path::new(&home).join("bin").join("tansu");
        if candidate.exists() {
            return candidate;
        }
    }
    "tansu".into()
}

/// Starts `tansu broker` on 127.0.0.1:`port` with sqlite storage in `dir` (appending to its log),
/// dying with the calling thread.
fn spawn_tansu(dir: &Path, port: u16) -> Child {
    spawn_tansu_advertising(dir, port, port)
}

/// As [`spawn_tansu`], but the broker tells clients (in metadata) that it is at
/// 127.0.0.1:`advertised`: a proxy in front of it, which clients then use for everything.
fn spawn_tansu_advertising(dir: &Path, port: u16, advertised: u16) -> Child {
    let url = format!("tcp://127.0.0.1:{port}");
    let advertised = format!("tcp://127.0.0.1:{advertised}");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("tansu.log"))
        .unwrap();
    let mut cmd = Command::new(tansu_binary());
    cmd.current_dir(dir)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &advertised,
        ])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log);
    die_with_parent(&mut cmd);
    cmd.spawn()
        .expect("tansu broker (scripts/install-deps.sh installs it)")
}

/// A Tansu broker of a test's own, which the test may restart (its sqlite storage survives).
pub struct DedicatedBroker {
    pub broker: Broker,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl DedicatedBroker {
    pub fn start() -> DedicatedBroker {
        let port = free_port();
        let mut dedicated = DedicatedBroker {
            broker: Broker {
                address: format!("127.0.0.1:{port}"),
            },
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        dedicated.restart();
        dedicated
    }

    /// Starts the broker (again) on the same port and storage.
    pub fn restart(&mut self) {
        self.child = Some(spawn_tansu(self.dir.path(), self.port));
        wait_until(
            "Tansu answers metadata requests",
            Duration::from_secs(30),
            || {
                self.broker
                    .consumer("probe")
                    .fetch_metadata(None, Duration::from_millis(500))
                    .is_ok()
            },
        );
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DedicatedBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Tansu broker of a test's own that clients reach only through a [`proxy::HoldingProxy`]: the
/// broker advertises the proxy's port, and `broker.address` is the proxy's too, so every
/// connection a client makes (bootstrap, metadata, fetch, the group coordinator, commits) passes
/// through it, and holding the proxy cuts the clients off from Kafka.
pub struct ProxiedBroker {
    /// Clients bootstrap here: the proxy.
    pub broker: Broker,
    pub proxy: proxy::HoldingProxy,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl ProxiedBroker {
    pub fn start() -> ProxiedBroker {
        let port = free_port();
        let proxy = proxy::HoldingProxy::start(port);
        let dir = tempfile::tempdir().unwrap();
        let child = spawn_tansu_advertising(dir.path(), port, proxy.port);
        let proxied = ProxiedBroker {
            broker: Broker {
                address: format!("127.0.0.1:{}", proxy.port),
            },
            proxy,
            dir,
            child: Some(child),
        };
        wait_until(
            "Tansu answers metadata requests through the proxy",
            Duration::from_secs(30),
            || {
                proxied
                    .broker
                    .consumer("probe")
                    .fetch_metadata(None, Duration::from_millis(500))
                    .is_ok()
            },
        );
        proxied
    }

    /// The broker's own log (stderr, `RUST_LOG=warn`).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }
}

impl Drop for ProxiedBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- tansu.log ---\n{}", self.log_text());
        }
    }
}

impl Broker {
    /// One Tansu broker per test binary (each test uses its own topics and group), started on a
    /// parked thread so that it dies with the test process.
    pub fn shared() -> &'static Broker {
        static BROKER: OnceLock<Broker> = OnceLock::new();
        BROKER.get_or_init(|| {
            let port = free_port();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let dir = tempfile::tempdir().unwrap();
                let child = spawn_tansu(dir.path(), port);
                tx.send(()).unwrap();
                let _keep = (child, dir);
                loop {
                    std::thread::park();
                }
            });
            rx.recv().unwrap();
            let broker = Broker {
                address: format!("127.0.0.1:{port}"),
            };
            wait_until(
                "Tansu answers metadata requests",
                Duration::from_secs(30),
                || {
                    broker
                        .consumer("probe")
                        .fetch_metadata(None, Duration::from_millis(500))
                        .is_ok()
                },
            );
            broker
        })
    }

    fn client_config(&self) -> ClientConfig {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &self.address);
        cc
    }

    pub fn consumer(&self, group: &str) -> BaseConsumer {
        self.client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap()
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client_config().create().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = rt.block_on(admin.create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ));
        for r in result.expect("create_topics") {
            r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
        wait_until(
            "topic metadata shows all partitions",
            Duration::from_secs(20),
            || {
                self.consumer("probe")
                    .fetch_metadata(Some(name), Duration::from_secs(1))
                    .map(|m| {
                        m.topics().first().map(|t| t.partitions().len())
                            == Some(partitions as usize)
                    })
                    .unwrap_or(false)
            },
        );
    }

    pub fn producer(&self) -> BaseProducer {
        self.client_config()
            .set("linger.ms", "5")
            .set("message.max.bytes", "2000000")
            .create()
            .unwrap()
    }

    /// Produces and waits until every message is acknowledged.
    pub fn produce(&self, messages: &[TestMessage]) {
        let producer = self.producer();
        for m in messages {
            let mut record: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(&m.topic).partition(m.partition);
            if let Some(v) = &m.value {
                record = record.payload(v.as_slice());
            }
            if let Some(k) = &m.key {
                record = record.key(k.as_slice());
            }
            if !m.headers.is_empty() {
                let mut headers = OwnedHeaders::new();
                for (k, v) in &m.headers {
                    headers = headers.insert(rdkafka::message::Header {
                        key: k,
                        value: v.as_deref(),
                    });
                }
                record = record.headers(headers);
            }
            let mut record = Some(record);
            while let Some(r) = record.take() {
                if let Err((e, r)) = producer.send(r) {
                    assert!(
                        matches!(
                            e,
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull
                            )
                        ),
                        "produce failed: {e}"
                    );
                    producer.poll(Duration::from_millis(50));
                    record = Some(r);
                }
            }
        }
        producer
            .flush(Duration::from_secs(60))
            .expect("all messages acknowledged");
    }

    /// Produces `count` messages `"<topic>:<partition>:<seq>"` round-robin over `partitions`.
    pub fn produce_numbered(
        &self,
        topic: &str,
        partitions: i32,
        start: usize,
        count: usize,
    ) -> Vec<String> {
        let values: Vec<(i32, String)> = (start..start + count)
            .map(|i| {
                let p = (i % partitions as usize) as i32;
                (p, format!("{topic}:{p}:{i:08}"))
            })
            .collect();
        let messages: Vec<TestMessage> = values
            .iter()
            .map(|(p, v)| TestMessage::new(topic, *p, Some(v.as_bytes())))
            .collect();
        self.produce(&messages);
        values.into_iter().map(|(_, v)| v).collect()
    }

    /// The group's committed offsets for `topic` partitions 0..n (`None` where nothing committed).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let committed = self
            .consumer(group)
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        (0..partitions)
            .map(
                |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Some(o),
                    _ => None,
                },
            )
            .collect()
    }

    /// Asserts that `group` committed every partition of `topic` up to its end.
    pub fn assert_committed_to_end(&self, group: &str, topic: &str, partitions: i32, why: &str) {
        let ends: Vec<Option<i64>> = self
            .high_watermarks(topic, partitions)
            .into_iter()
            .map(Some)
            .collect();
        assert_eq!(self.committed(group, topic, partitions), ends, "{why}");
    }

    pub fn high_watermarks(&self, topic: &str, partitions: i32) -> Vec<i64> {
        let consumer = self.consumer("probe");
        (0..partitions)
            .map(|p| {
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .unwrap()
                    .1
            })
            .collect()
    }
}

#[derive(Clone, Debug)]
pub struct TestMessage {
    pub topic: String,
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl TestMessage {
    pub fn new(topic: &str, partition: i32, value: Option<&[u8]>) -> TestMessage {
        TestMessage {
            topic: topic.into(),
            partition,
            key: None,
            value: value.map(<[u8]>::to_vec),
            headers: Vec::new(),
        }
    }
}

/// A unique name for a test's topic and group.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------------
// The bridge under test

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_kafka2redis")
}

pub struct Bridge {
    child: Option<Child>,
    pub log: PathBuf,
    pub dir: PathBuf,
}

impl Bridge {
    /// Starts kafka2redis in `dir` with `args`, logging to `dir/kafka2redis.N.log`.
    pub fn start(dir: &Path, args: &[&str]) -> Bridge {
        use std::sync::atomic::{AtomicU32, Ordering};
        static RUN: AtomicU32 = AtomicU32::new(0);
        let log = dir.join(format!(
            "kafka2redis.{}.log",
            RUN.fetch_add(1, Ordering::Relaxed)
        ));
        let mut cmd = Command::new(binary());
        cmd.current_dir(dir)
            .args(args)
            .env("RUST_LOG", "info,kafka2redis=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        die_with_parent(&mut cmd);
        Bridge {
            child: Some(cmd.spawn().expect("start kafka2redis")),
            log,
            dir: dir.to_path_buf(),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the lanes to start (the bridge logs each assignment).
    pub fn wait_assigned(&self) {
        wait_until(
            "kafka2redis logs its partition assignment",
            Duration::from_secs(60),
            || self.log_text().contains("partitions assigned"),
        );
    }

    pub fn signal(&self, signal: i32) {
        send_signal(self.child.as_ref().expect("running"), signal);
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "kafka2redis did not exit within {timeout:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), self.log_text());
        }
    }
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    path
}

/// A native config for one Redis and the shared broker; `topics` is the TOML `topics = …` value.
pub fn native_config(
    broker: &Broker,
    redis: &RedisServer,
    group: &str,
    topics: &str,
    extra: &str,
) -> String {
    format!(
        r#"topics = {topics}
[kafka]
brokers = ["{}"]
group = "{group}"
commit_interval_ms = 500
[redis]
addresses = ["{}"]
response_timeout_ms = 2000
[batch]
max_messages = 200
linger_ms = 5
[retry]
backoff_min_ms = 50
backoff_max_ms = 500
{extra}
"#,
        broker.address,
        redis.address()
    )
}

/// Splits list elements `"<topic>:<partition>:<seq>"` by partition, checking each is in order.
pub fn assert_partition_order(elements: &[Vec<u8>]) {
    let mut last: std::collections::HashMap<String, String> = Default::default();
    for e in elements {
        let text = String::from_utf8(e.clone()).unwrap();
        let (prefix, _) = text.rsplit_once(':').unwrap();
        if let Some(prev) = last.get(prefix) {
            assert!(
                prev < &text,
                "out of order within partition {prefix}: {prev} then {text}"
            );
        }
        last.insert(prefix.to_string(), text);
    }
}

/// What a fault cost, as one row of the fault table (`scripts/faults.sh` collects the rows, which
/// start with `fault:`): produced, delivered, missing, duplicated, and per-partition order
/// violations — the times a partition's sequence went back in its list (one re-delivery after a
/// takeover is one). Elements are `"<topic>:<partition>:<seq>"`, as `produce_numbered` makes them.
pub fn report_fault(
    scenario: &str,
    delivery: &str,
    produced: &[String],
    elements: &[Vec<u8>],
) -> FaultCost {
    let mut seen: std::collections::HashMap<&[u8], usize> = Default::default();
    let mut last: std::collections::HashMap<&str, &str> = Default::default();
    let mut order_violations = 0;
    for e in elements {
        *seen.entry(e.as_slice()).or_default() += 1;
        let text = std::str::from_utf8(e).unwrap_or_default();
        if let Some((partition, seq)) = text.rsplit_once(':') {
            if last.get(partition).is_some_and(|prev| seq <= *prev) {
                order_violations += 1;
            }
            last.insert(partition, seq);
        }
    }
    let cost = FaultCost {
        produced: produced.len(),
        delivered: elements.len(),
        missing: produced
            .iter()
            .filter(|v| !seen.contains_key(v.as_bytes()))
            .count(),
        duplicated: seen.values().map(|n| n - 1).sum(),
        order_violations,
    };
    eprintln!(
        "fault: | {scenario} | {delivery} | {} | {} | {} | {} | {} |",
        cost.produced, cost.delivered, cost.missing, cost.duplicated, cost.order_violations
    );
    cost
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultCost {
    pub produced: usize,
    pub delivered: usize,
    pub missing: usize,
    pub duplicated: usize,
    pub order_violations: usize,
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// `GET path` on 127.0.0.1:port: (status code, body); `None` while nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split(' ').nth(1)?.parse().ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    Some((code, dechunk(body)))
}

/// Undoes `Transfer-Encoding: chunked` when the body looks chunked.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string();
        };
        if n == 0 {
            return out;
        }
        if after.len() < n {
            return body.to_string();
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
}
