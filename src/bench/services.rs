//! What a bench run stands on: the broker (mock cluster or a real one), Redis (started here or
//! given) and the topics; the bridge itself runs as a child process ([`super::bridge`]).

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DefaultProducerContext, Producer, ProducerContext,
};

use super::{bar, launch};

/// The topics of one scenario and their lists.
pub struct Topics {
    pub names: Vec<String>,
    pub per_topic: i32,
    /// The envelope the bridge writes them in.
    pub envelope: String,
    /// Whether each topic goes to a stream (`structure = "stream"`) rather than a list.
    pub streams: bool,
}

impl Topics {
    /// `envelope` decides the lists: Sidekiq's worker pops `queue:<name>`; a BullMQ or RQ topic
    /// goes to the queue named after it, whose waiting list is `bull:<name>:wait` /
    /// `rq:queue:<name>`.
    pub fn new(scenario: usize, topics: i32, partitions: i32, envelope: &str) -> Topics {
        let run = format!("bench-{}-{scenario}", std::process::id());
        Topics {
            names: (0..topics).map(|t| format!("{run}-t{t}")).collect(),
            per_topic: partitions / topics,
            envelope: envelope.to_string(),
            // The bridge's config gives the symfony envelope a stream by default.
            streams: envelope == "symfony",
        }
    }

    /// The same topics going to streams (`structure = "stream"`) when `streams`.
    pub fn into_streams(mut self, streams: bool) -> Topics {
        self.streams |= streams;
        self
    }

    /// Whether the envelope keeps each job in a hash of its own (BullMQ, RQ).
    pub fn hash_jobs(&self) -> bool {
        matches!(self.envelope.as_str(), "bullmq" | "rq")
    }

    /// The patterns of the keys a run leaves besides its lists (BullMQ's and RQ's job hashes and
    /// companion keys); the topic names hold no `_` or `.`, so an RQ id is `<topic>-<p>-<o>`.
    pub fn job_key_patterns(&self) -> Vec<String> {
        self.names
            .iter()
            .flat_map(|t| match self.envelope.as_str() {
                "bullmq" => vec![format!("bull:{t}:*")],
                "rq" => vec![format!("rq:job:{t}-*")],
                _ => Vec::new(),
            })
            .collect()
    }

    pub fn total(&self) -> i32 {
        self.per_topic * self.names.len() as i32
    }

    /// The `i`th (topic, partition), round robin over all of them.
    pub fn target(&self, i: usize) -> (&str, i32) {
        let k = i % self.total() as usize;
        let topic = k % self.names.len();
        let partition = k / self.names.len();
        (&self.names[topic], partition as i32)
    }

    /// The Redis list of each topic (for BullMQ and RQ the list of waiting job ids).
    pub fn lists(&self) -> Vec<String> {
        self.names
            .iter()
            .map(|t| match self.envelope.as_str() {
                "sidekiq" => format!("queue:{t}"),
                "bullmq" => format!("bull:{t}:wait"),
                "rq" => format!("rq:queue:{t}"),
                _ => format!("queues:{t}"),
            })
            .collect()
    }
}

/// The Kafka side of a run.
pub enum Broker {
    /// librdkafka's mock cluster, served by threads of this process on a loopback port.
    Mock(MockCluster<'static, DefaultProducerContext>),
    External(String),
}

impl Broker {
    /// What the report names the broker: the mock cluster, or the given address.
    pub fn describe(&self) -> String {
        match self {
            Broker::Mock(_) => "librdkafka mock cluster".to_string(),
            Broker::External(address) => address.clone(),
        }
    }

    pub fn start(spec: &str) -> anyhow::Result<Broker> {
        if spec == "mock" {
            Ok(Broker::Mock(
                MockCluster::new(1).context("starting librdkafka's mock cluster")?,
            ))
        } else {
            Ok(Broker::External(spec.to_string()))
        }
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(mock) => mock.bootstrap_servers(),
            Broker::External(address) => address.clone(),
        }
    }

    pub fn client_config(&self) -> ClientConfig {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", self.bootstrap());
        cc
    }

    /// Creates the topics: through the mock cluster's own API (it serves no CreateTopics), or
    /// the admin API of a real broker.
    pub fn create_topics(&self, topics: &Topics) -> anyhow::Result<()> {
        match self {
            Broker::Mock(mock) => {
                for name in &topics.names {
                    mock.create_topic(name, topics.per_topic, 1)
                        .with_context(|| format!("creating {name} on the mock cluster"))?;
                }
            }
            Broker::External(_) => {
                let admin: AdminClient<DefaultClientContext> = self.client_config().create()?;
                let new: Vec<NewTopic<'_>> = topics
                    .names
                    .iter()
                    .map(|n| NewTopic::new(n, topics.per_topic, TopicReplication::Fixed(1)))
                    .collect();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                for result in runtime.block_on(admin.create_topics(&new, &AdminOptions::new()))? {
                    result.map_err(|(t, e)| anyhow!("creating topic {t}: {e}"))?;
                }
            }
        }
        Ok(())
    }

    /// A producer whose `context` sees every delivery report, batching up to `linger_ms` and
    /// [`BULK_BATCH_BYTES`].
    pub fn producer_with<C: ProducerContext>(
        &self,
        linger_ms: u64,
        context: C,
    ) -> anyhow::Result<BaseProducer<C>> {
        self.batching_producer(linger_ms, BULK_BATCH_BYTES, context)
    }

    fn batching_producer<C: ProducerContext>(
        &self,
        linger_ms: u64,
        batch_bytes: usize,
        context: C,
    ) -> anyhow::Result<BaseProducer<C>> {
        Ok(self
            .client_config()
            .set("linger.ms", linger_ms.to_string())
            .set("batch.num.messages", "10000")
            .set("batch.size", batch_bytes.to_string())
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .create_with_context(context)?)
    }

    /// Produces `messages` × `size` bytes round robin over every partition in producer batches
    /// of up to `batch_bytes` (which the broker keeps as they are); returns how long it took.
    pub fn produce_bulk(
        &self,
        topics: &Topics,
        messages: usize,
        size: usize,
        batch_bytes: usize,
    ) -> anyhow::Result<Duration> {
        let producer = self.batching_producer(20, batch_bytes, DefaultProducerContext)?;
        let payload = vec![b'x'; size];
        let progress = bar(messages as u64, "produce");
        let started = Instant::now();
        for i in 0..messages {
            let (topic, partition) = topics.target(i);
            let mut record = BaseRecord::<(), [u8]>::to(topic)
                .partition(partition)
                .payload(&payload);
            while let Err((e, r)) = producer.send(record) {
                if !matches!(
                    e.rdkafka_error_code(),
                    Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                ) {
                    bail!("producing: {e}");
                }
                producer.poll(Duration::from_millis(5));
                record = r;
            }
            if i % 10_000 == 0 {
                producer.poll(Duration::ZERO);
                progress.set_position(i as u64);
            }
        }
        producer.flush(Duration::from_secs(300))?;
        progress.finish_and_clear();
        Ok(started.elapsed())
    }
}

/// The bench's producer batches (`batch.size`): librdkafka's own default, which a bulk load
/// fills. The mock broker answers a fetch with one producer batch per partition, so this is also
/// what one fetch carries of each partition.
pub const BULK_BATCH_BYTES: usize = 1_000_000;

/// How many `size`-byte messages librdkafka's mock cluster keeps per partition, with a margin: it
/// deletes the oldest message sets beyond 100,000 messages or 5 MB (`rd_kafka_mock_partition`'s
/// `max_cnt` / `max_size`), counting each record's ~20 bytes of framing.
pub fn mock_retention(size: usize) -> usize {
    let by_size = 5 * 1024 * 1024 / (size + 24);
    by_size.min(100_000) * 8 / 10
}

/// The Redis every part of the run writes to.
pub struct RedisService {
    pub address: String,
    child: Option<Child>,
    _dir: Option<TempDir>,
}

impl RedisService {
    /// Connects to `address`, or starts a `redis-server` (no persistence) on a free loopback port.
    pub fn start(address: Option<&str>) -> anyhow::Result<RedisService> {
        let service = match address {
            Some(address) => RedisService {
                address: address.to_string(),
                child: None,
                _dir: None,
            },
            None => {
                let port = launch::free_port()?;
                let dir = TempDir::new("redis")?;
                let child = launch::redis_server(port, &dir.0, &["--appendonly", "no"])
                    .spawn()
                    .context("starting redis-server (is it installed? apt install redis-server)")?;
                RedisService {
                    address: format!("127.0.0.1:{port}"),
                    child: Some(child),
                    _dir: Some(dir),
                }
            }
        };
        launch::wait_for_ping(&service.address, Duration::from_secs(10))?;
        Ok(service)
    }

    /// Starts a redis-server replicating this one and waits until it is in sync.
    pub fn start_replica(&self) -> anyhow::Result<RedisService> {
        let (host, port) = self
            .address
            .rsplit_once(':')
            .context("the Redis address is host:port")?;
        let replica_port = launch::free_port()?;
        let dir = TempDir::new("redis-replica")?;
        let child = launch::redis_server(
            replica_port,
            &dir.0,
            &["--appendonly", "no", "--replicaof", host, port],
        )
        .spawn()
        .context("starting a redis-server replica")?;
        let replica = RedisService {
            address: format!("127.0.0.1:{replica_port}"),
            child: Some(child),
            _dir: Some(dir),
        };
        launch::wait_for_ping(&replica.address, Duration::from_secs(10))?;
        launch::wait_for(
            "the replica to sync",
            Duration::from_secs(30),
            Duration::from_millis(5),
            || {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut replica.connection()?)?;
                Ok(info.contains("master_link_status:up"))
            },
        )?;
        Ok(replica)
    }

    pub fn owned(&self) -> bool {
        self.child.is_some()
    }

    pub fn url(&self) -> String {
        format!("redis://{}/", self.address)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn connection(&self) -> anyhow::Result<redis::Connection> {
        Ok(redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))?)
    }

    /// The summed length of `lists` (of streams: `XLEN`, when `streams`).
    pub fn total_len(
        conn: &mut redis::Connection,
        lists: &[String],
        streams: bool,
    ) -> anyhow::Result<usize> {
        let mut pipe = redis::pipe();
        for list in lists {
            pipe.cmd(if streams { "XLEN" } else { "LLEN" }).arg(list);
        }
        let lens: Vec<usize> = pipe.query(conn)?;
        Ok(lens.iter().sum())
    }

    /// Deletes every key matching one of `patterns` (`SCAN`, then `DEL`).
    pub fn delete_matching(&self, patterns: &[String]) -> anyhow::Result<()> {
        let mut conn = self.connection()?;
        for pattern in patterns {
            let keys: Vec<String> = redis::cmd("SCAN")
                .cursor_arg(0)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(10_000)
                .clone()
                .iter(&mut conn)?
                .collect::<Result<_, _>>()?;
            self.delete(&keys)?;
        }
        Ok(())
    }

    pub fn delete(&self, keys: &[String]) -> anyhow::Result<()> {
        let mut conn = self.connection()?;
        for chunk in keys.chunks(100) {
            redis::cmd("DEL").arg(chunk).query::<()>(&mut conn)?;
        }
        Ok(())
    }
}

impl Drop for RedisService {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A directory under the system temp dir, removed on drop.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new(what: &str) -> anyhow::Result<TempDir> {
        let path = std::env::temp_dir().join(format!(
            "kafka2redis-bench-{}-{what}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ rand_suffix()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}
