//! Benchmarks run against local services (`scripts/services.sh start`), not timed tests.
//!
//! - `throughput`: produces N messages of S bytes over P partitions into a fresh topic, starts the
//!   kafka2redis binary on it with a fresh group, and times until the Redis list holds all N.
//! - `backlog`: produces N messages, starts kafka2redis with a small cap and no workers, so the
//!   lists fill and every partition pauses with the rest waiting in Kafka; samples the bridge's
//!   resident memory every second for a while and reports peak and steady RSS.
//!
//! `cargo run --release --example bench -- throughput` (see `--help`; docs/benchmarks.md)

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Throughput,
    Backlog,
}

#[derive(Parser)]
struct Args {
    #[arg(value_enum)]
    mode: Mode,
    #[arg(long, default_value = "127.0.0.1:19092")]
    brokers: String,
    #[arg(long, default_value = "127.0.0.1:16379")]
    redis: String,
    /// Messages to produce (default: 200,000 for throughput, 1,000,000 for backlog).
    #[arg(long)]
    messages: Option<usize>,
    #[arg(long, default_value_t = 100)]
    size: usize,
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// backlog: the list cap.
    #[arg(long, default_value_t = 1000)]
    cap: u64,
    /// backlog: how long to sample RSS once the lists are full.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    #[arg(long, default_value = "target/release/kafka2redis")]
    binary: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let messages = args.messages.unwrap_or(match args.mode {
        Mode::Throughput => 200_000,
        Mode::Backlog => 1_000_000,
    });
    let topic = format!("bench-{}", std::process::id());
    produce(&args, &topic, messages).await?;
    let mut conn = redis::Client::open(format!("redis://{}/", args.redis))?.get_connection()?;
    let list = format!("queues:{topic}");
    let cap = match args.mode {
        Mode::Throughput => String::new(),
        Mode::Backlog => format!(", cap = {}", args.cap),
    };
    let config = std::env::temp_dir().join(format!("{topic}.toml"));
    std::fs::write(
        &config,
        format!(
            "topics = [{{ name = \"{topic}\"{cap} }}]\n[kafka]\nbrokers = [\"{}\"]\ngroup = \"{topic}\"\n[redis]\naddresses = [\"{}\"]\n",
            args.brokers, args.redis
        ),
    )?;
    let started = Instant::now();
    let mut child = Command::new(&args.binary)
        .args(["--config", config.to_str().unwrap(), "--log-level", "warn"])
        .stderr(Stdio::inherit())
        .spawn()?;
    let llen = |conn: &mut redis::Connection| -> anyhow::Result<usize> {
        Ok(redis::cmd("LLEN").arg(&list).query(conn)?)
    };
    match args.mode {
        Mode::Throughput => {
            let mut first: Option<Instant> = None;
            loop {
                let n = llen(&mut conn)?;
                if n > 0 && first.is_none() {
                    first = Some(Instant::now());
                }
                if n >= messages {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let done = Instant::now();
            let cpu = cpu_seconds(child.id());
            let flowing = done - first.unwrap();
            println!(
                "{messages} messages x {} B, {} partitions: {:.0} msg/s while flowing ({:.2}s; {:.2}s incl. group join); bridge CPU {:.2}s = {:.2} us/msg; RSS {} MiB",
                args.size,
                args.partitions,
                messages as f64 / flowing.as_secs_f64(),
                flowing.as_secs_f64(),
                (done - started).as_secs_f64(),
                cpu,
                cpu * 1e6 / messages as f64,
                rss_kib(child.id()) / 1024
            );
        }
        Mode::Backlog => {
            let want = args.cap as usize;
            while llen(&mut conn)? < want {
                std::thread::sleep(Duration::from_millis(50));
            }
            let (mut peak, mut last) = (0u64, 0u64);
            for _ in 0..args.seconds {
                last = rss_kib(child.id());
                peak = peak.max(last);
                std::thread::sleep(Duration::from_secs(1));
            }
            let backlog = messages - llen(&mut conn)?;
            println!(
                "backlog: {backlog} messages x {} B waiting in Kafka behind a full list (cap {}), {} partitions: RSS peak {:.1} MiB, last {:.1} MiB over {} s",
                args.size,
                args.cap,
                args.partitions,
                peak as f64 / 1024.0,
                last as f64 / 1024.0,
                args.seconds
            );
        }
    }
    stop(&mut child)?;
    redis::cmd("DEL").arg(&list).query::<()>(&mut conn)?;
    Ok(())
}

async fn produce(args: &Args, topic: &str, messages: usize) -> anyhow::Result<()> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &args.brokers);
    let admin: AdminClient<DefaultClientContext> = cc.create()?;
    admin
        .create_topics(
            &[NewTopic::new(
                topic,
                args.partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await?;
    let producer: BaseProducer = cc
        .clone()
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .create()?;
    let payload = vec![b'x'; args.size];
    let started = Instant::now();
    for i in 0..messages {
        let p = (i % args.partitions as usize) as i32;
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .partition(p)
            .payload(&payload);
        while let Err((_, r)) = producer.send(record) {
            producer.poll(Duration::from_millis(10));
            record = r;
        }
    }
    producer.flush(Duration::from_secs(300))?;
    eprintln!(
        "produced {messages} x {} B in {:.1}s",
        args.size,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn stop(child: &mut Child) -> anyhow::Result<()> {
    Command::new("kill").arg(child.id().to_string()).status()?;
    child.wait()?;
    Ok(())
}

/// utime + stime of a running process, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Resident set size in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
