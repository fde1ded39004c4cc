//! The Kafka side: Tansu brokers on free loopback ports and a client for them (topics, producing,
//! committed offsets, watermarks).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::{die_with_parent, free_port, run_ok, wait_until};

/// A Kafka broker as its clients see it: the address they bootstrap from.
#[derive(Clone, Debug)]
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

/// A `tansu broker` process on 127.0.0.1 with sqlite storage in a directory of its own, which a
/// test may kill and restart (the storage survives). It advertises its own port, or another one:
/// a proxy or a TLS front in front of it, which clients then use for everything (bootstrap,
/// metadata, fetch, the group coordinator, commits).
pub struct Tansu {
    /// Clients bootstrap here: the advertised port.
    pub broker: Broker,
    /// Where the broker itself listens.
    pub port: u16,
    advertised: u16,
    /// `--authentication`: clients must log in with SASL.
    authentication: bool,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Tansu {
    /// On a free port, advertising it.
    pub fn start() -> Tansu {
        let port = free_port();
        Self::start_on(port, port)
    }

    /// On `port`, advertising `advertised` (a proxy's port, say, that forwards to `port`).
    pub fn start_on(port: u16, advertised: u16) -> Tansu {
        let mut tansu = Tansu {
            broker: Broker {
                address: String::new(),
            },
            port,
            advertised,
            authentication: false,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        tansu.restart();
        tansu
    }

    /// Starts the broker (again) on the same port and storage, and waits until it answers: a
    /// metadata request at the advertised address, or with authentication on (no SASL here) a
    /// connection to its port.
    pub fn restart(&mut self) {
        self.kill();
        self.broker.address = format!("127.0.0.1:{}", self.advertised);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .unwrap();
        let mut cmd = Command::new(tansu_binary());
        cmd.current_dir(self.dir.path())
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{}", self.port),
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{}", self.advertised),
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log);
        if self.authentication {
            cmd.arg("--authentication");
        }
        die_with_parent(&mut cmd);
        self.child = Some(
            cmd.spawn()
                .expect("tansu broker (scripts/install-deps.sh installs it)"),
        );
        if self.authentication {
            wait_until(
                "the authenticating Tansu listens",
                Duration::from_secs(30),
                || TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
            );
        } else {
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
    }

    /// Restarts with SASL authentication on (`--authentication`), advertising `advertised`.
    /// Users and topics made before (see [`Tansu::create_user`]) stay in the storage.
    pub fn restart_authenticating(&mut self, advertised: u16) {
        self.authentication = true;
        self.advertised = advertised;
        self.restart();
    }

    /// `tansu user create`: a SCRAM-SHA-512 user (over Kafka without SASL, so before
    /// [`Tansu::restart_authenticating`]).
    pub fn create_user(&self, user: &str, password: &str) {
        let broker = format!("tcp://127.0.0.1:{}", self.port);
        run_ok(
            self.dir.path(),
            tansu_binary(),
            &[
                "user",
                "create",
                "--broker",
                &broker,
                "--mechanism",
                "scram512",
                user,
                password,
            ],
        );
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The broker's own log (stderr, `RUST_LOG=warn`).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- tansu.log ---\n{}", self.log_text());
        }
    }
}

impl Broker {
    /// One Tansu broker per test binary (each test uses its own topics and group), started on a
    /// parked thread so that it dies with the test process. Nothing drops it, so its storage is
    /// removed when the process exits (`atexit`): each test binary would otherwise leave tens of
    /// MiB in the temporary directory, run after run.
    pub fn shared() -> &'static Broker {
        static BROKER: OnceLock<Broker> = OnceLock::new();
        static STORAGE: OnceLock<PathBuf> = OnceLock::new();
        extern "C" fn remove_storage() {
            if let Some(dir) = STORAGE.get() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        BROKER.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let tansu = Tansu::start();
                if STORAGE.set(tansu.dir.path().to_path_buf()).is_ok() {
                    // SAFETY: registers a plain function that only removes a directory.
                    unsafe { libc::atexit(remove_storage) };
                }
                tx.send(tansu.broker.clone()).unwrap();
                loop {
                    std::thread::park();
                }
            });
            rx.recv()
                .expect("the shared Tansu broker started (its panic is above)")
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

    /// Creates `<base>-t0`, `<base>-t1`, … with the partition counts of `layout`; returns each
    /// topic with its count.
    pub fn create_topics(&self, base: &str, layout: &[i32]) -> Vec<(String, i32)> {
        let topics: Vec<(String, i32)> = layout
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("{base}-t{i}"), *p))
            .collect();
        for (t, p) in &topics {
            self.create_topic(t, *p);
        }
        topics
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

    /// Produces `total` numbered messages spread over `topics` (of `partitions` each) from a thread
    /// of its own, paced (about 3,000/s) so that a fault lands mid-stream; the thread returns the
    /// values produced.
    pub fn produce_paced(
        &'static self,
        topics: Vec<String>,
        partitions: i32,
        total: usize,
    ) -> std::thread::JoinHandle<Vec<String>> {
        std::thread::spawn(move || {
            let per_topic = total / topics.len();
            let chunk = 100;
            let mut produced = Vec::with_capacity(total);
            let mut start = 0;
            while start < per_topic {
                let n = chunk.min(per_topic - start);
                for topic in &topics {
                    produced.extend(self.produce_numbered(topic, partitions, start, n));
                }
                start += n;
                std::thread::sleep(Duration::from_millis(80));
            }
            produced
        })
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

    /// Whether `group` committed every partition of `topic` up to its high watermark.
    pub fn committed_to_end(&self, group: &str, topic: &str, partitions: i32) -> bool {
        let committed = self.committed(group, topic, partitions);
        let ends = self.high_watermarks(topic, partitions);
        committed.iter().zip(&ends).all(|(c, end)| *c == Some(*end))
    }

    /// Waits until `group` committed every partition of each of `topics` up to its end: the
    /// bridge pushed (and had acknowledged) everything produced so far.
    pub fn wait_committed(
        &self,
        group: &str,
        topics: &[String],
        partitions: i32,
        timeout: Duration,
    ) {
        wait_until(
            "the bridge committed every partition to its end",
            timeout,
            || {
                topics
                    .iter()
                    .all(|t| self.committed_to_end(group, t, partitions))
            },
        );
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

/// Produces one numbered message (`produce_numbered`) every 10 ms over 2 partitions, from a thread
/// of its own, until [`Trickle::finish`]: a stream that keeps flowing while a test makes a fault.
pub struct Trickle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<usize>>,
}

impl Trickle {
    pub fn start(broker: &'static Broker, topic: &str) -> Trickle {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let topic = topic.to_string();
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !flag.load(Ordering::Relaxed) {
                broker.produce_numbered(&topic, 2, n, 1);
                n += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            n
        });
        Trickle {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops producing; returns how many messages were produced.
    pub fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}
