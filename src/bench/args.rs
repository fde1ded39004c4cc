//! `kafka2redis bench`'s command line.

use crate::config::defaults;

/// `kafka2redis bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The broker: `mock` (librdkafka's mock cluster, in this process) or HOST:PORT of a real one.
    #[arg(long, default_value = "mock")]
    pub broker: String,
    /// Redis HOST:PORT; by default a redis-server is started on a free loopback port.
    #[arg(long)]
    pub redis: Option<String>,
    /// Messages to produce per scenario (default 1,000,000; with --matrix 200,000 per run, with
    /// --isolation 300,000 in the backlog topic).
    #[arg(long)]
    pub messages: Option<usize>,
    /// Payload bytes per message (at least 16: latency runs stamp the send time and a sequence
    /// number there).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Partitions in all, spread evenly over the topics. A comma list runs one scenario each
    /// (e.g. 1,8,64,512 for throughput per core against partition count).
    #[arg(long, value_delimiter = ',', default_value = "8")]
    pub partitions: Vec<i32>,
    /// Topics (each gets partitions / topics partitions and its own list).
    #[arg(long, default_value_t = 1)]
    pub topics: i32,
    /// Offered rates for the latency runs, in percent of the bridge's measured maximum.
    #[arg(long, value_delimiter = ',', default_value = "10,50")]
    pub latency_rates: Vec<f64>,
    /// Upper bound on the offered rate of the latency runs (msg/s), e.g. for tiny smoke runs whose
    /// measured maximum means little.
    #[arg(long)]
    pub latency_max_rate: Option<f64>,
    /// How long each latency run offers its rate.
    #[arg(long, default_value_t = 5.0)]
    pub latency_seconds: f64,
    /// Skip the latency runs (throughput sweeps).
    #[arg(long)]
    pub no_latency: bool,
    /// Skip the consume-only and push-only ceilings.
    #[arg(long)]
    pub no_ceiling: bool,
    /// The bridge's batch.max_messages (default: the bridge's own default).
    #[arg(long)]
    pub batch_max_messages: Option<usize>,
    /// The bridge's batch.linger_ms (default: the bridge's own default).
    #[arg(long)]
    pub linger_ms: Option<u64>,
    /// The bridge's batch.in_flight: batches of one partition in flight at once (default: the
    /// bridge's own default).
    #[arg(long)]
    pub in_flight: Option<usize>,
    /// Extra librdkafka properties for the bridge's consumer, KEY=VALUE (repeatable).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// The envelope the bridge uses (raw, legacy, json, laravel, celery, sidekiq, bullmq, rq,
    /// symfony: a stream). A comma list runs every scenario once per envelope, in turn, for an A/B
    /// in one run. The job envelopes need --no-latency (latency runs read the raw bytes); each is
    /// held against its own push-only ceiling (the bridge's encoder and push without Kafka).
    #[arg(long, default_value = "raw", value_delimiter = ',')]
    pub envelope: Vec<String>,
    /// Where the messages go: `list`, or `stream` (one entry per message, raw envelope, no
    /// consumer group; held against its own push-only ceiling, the bridge's stream push without
    /// Kafka). A stream needs --no-latency. The matrix has its own stream variants.
    #[arg(long, default_value = "list", value_parser = ["list", "stream"], conflicts_with_all = ["matrix", "isolation"])]
    pub structure: String,
    /// The producer's linger.ms during latency runs (adds to the produce→list time).
    /// 5 is librdkafka's default; lower floods the broker with tiny requests once there are many
    /// partitions (1 ms over 64 partitions queued ~300 ms in the load generator itself).
    #[arg(long, default_value_t = 5)]
    pub producer_linger_ms: u64,
    /// Start this many replicas of the bench's redis-server and have every push wait for them
    /// (`redis.wait_replicas`): what Sentinel's default WAIT guard costs.
    #[arg(long, default_value_t = 0)]
    pub wait_replicas: u32,
    /// Start this many replicas of the bench's redis-server without waiting for them: the
    /// unguarded figure to set `--wait-replicas` against (the replica's work is then in both).
    #[arg(long, default_value_t = 0)]
    pub replicas: u32,
    /// The bridge's delivery mode: at-least-once or exactly-once (every push records the
    /// partition's next offset in Redis in the same script).
    #[arg(long, default_value = "at-least-once", value_parser = ["at-least-once", "exactly-once"])]
    pub delivery: String,
    /// Run the bridge in exclusive mode (`[lease]`): every push is fenced with the lease token.
    #[arg(long)]
    pub lease: bool,
    /// The kafka2redis binary to run as the bridge (default: this executable).
    #[arg(long)]
    pub bridge_binary: Option<std::path::PathBuf>,
    /// Measure memory behind full lists instead of throughput and latency: the bridge runs with
    /// every list capped at N and nothing popping, so each partition pauses with the rest of its
    /// messages waiting in Kafka; its peak and steady RSS are reported.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub backlog_cap: Option<u64>,
    /// With --backlog-cap: how long the bridge stands behind full lists before its steady RSS is
    /// read.
    #[arg(long, value_name = "S", default_value_t = 60)]
    pub backlog_seconds: u64,
    /// Price every feature in one run: raw at-least-once against each variant (envelopes,
    /// streams, lease, exactly-once, the WAIT guard), interleaved pair by pair, each with its own
    /// push-only ceiling; see docs/benchmarks.md.
    #[arg(long, conflicts_with_all = ["isolation", "backlog_cap"])]
    pub matrix: bool,
    /// With --matrix: how many pairs (each runs raw and then every variant once).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub pairs: u32,
    /// With --matrix: only these variants (raw and each one's baseline always run), e.g.
    /// legacy+lease,wait-guard.
    #[arg(long, value_delimiter = ',', value_parser = super::variant::Variant::names())]
    pub variants: Vec<String>,
    /// Isolation: one topic drains a backlog of --messages while a second topic receives a
    /// trickle; reports the trickle's broker-ack to list latency during the drain.
    #[arg(long, conflicts_with = "backlog_cap")]
    pub isolation: bool,
    /// With --isolation: the trickle topic's rate (msg/s).
    #[arg(long, default_value_t = 20.0)]
    pub trickle_rate: f64,
    /// With --isolation: the backlog producer's batch.size in bytes. The mock broker answers a
    /// fetch with one producer batch per partition, so this sets how much every fetch carries of
    /// each backlog partition, which the trickle's next fetch waits behind
    #[arg(long, default_value_t = super::services::BULK_BATCH_BYTES)]
    pub backlog_batch_bytes: usize,
    /// Give up when the bridge makes no progress for this long.
    #[arg(long, default_value_t = 60)]
    pub stall_seconds: u64,
}

impl BenchArgs {
    /// Messages per scenario, per matrix run, or in the isolation scenario's backlog.
    pub fn messages(&self) -> usize {
        self.messages.unwrap_or(if self.matrix {
            200_000
        } else if self.isolation {
            300_000
        } else {
            1_000_000
        })
    }

    /// The bridge's batch size (its own default unless --batch-max-messages).
    pub fn batch(&self) -> usize {
        self.batch_max_messages
            .unwrap_or(defaults::BATCH_MAX_MESSAGES)
    }
}

/// Options that do not go together or a value out of range: the one sentence is the whole
/// message, and the command exits 2 as for a bad config.
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Returns early with a [`BadInput`] made of the format arguments.
macro_rules! bad_input {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::bench::BadInput(format!($($arg)*))))
    };
}
pub(crate) use bad_input;
