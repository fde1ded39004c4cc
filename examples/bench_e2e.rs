//! A first end-to-end throughput measurement (issue 7 builds the full `bench`).
//!
//! Produces N messages of S bytes over P partitions into a fresh topic, then starts the
//! kafka2redis binary on it with a fresh group and times until the Redis list holds all N.
//!
//! `cargo run --release --example bench_e2e -- --brokers 127.0.0.1:19092 --redis 127.0.0.1:16379`

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:19092")]
    brokers: String,
    #[arg(long, default_value = "127.0.0.1:16379")]
    redis: String,
    #[arg(long, default_value_t = 200_000)]
    messages: usize,
    #[arg(long, default_value_t = 100)]
    size: usize,
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    #[arg(long, default_value = "target/release/kafka2redis")]
    binary: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let topic = format!("bench-{}", std::process::id());
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &args.brokers);
    let admin: AdminClient<DefaultClientContext> = cc.create()?;
    admin
        .create_topics(
            &[NewTopic::new(
                &topic,
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
    for i in 0..args.messages {
        let p = (i % args.partitions as usize) as i32;
        let mut record = BaseRecord::<(), [u8]>::to(&topic)
            .partition(p)
            .payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    producer.poll(Duration::from_millis(10));
                    record = r;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    eprintln!(
        "produced {} x {} B in {:.1}s",
        args.messages,
        args.size,
        started.elapsed().as_secs_f64()
    );

    let client = redis::Client::open(format!("redis://{}/", args.redis))?;
    let mut conn = client.get_connection()?;
    let list = format!("queues:{topic}");
    let config = std::env::temp_dir().join(format!("{topic}.toml"));
    std::fs::write(
        &config,
        format!(
            "topics = [\"{topic}\"]\n[kafka]\nbrokers = [\"{}\"]\ngroup = \"{topic}\"\n[redis]\naddresses = [\"{}\"]\n",
            args.brokers, args.redis
        ),
    )?;
    let started = Instant::now();
    let mut child = Command::new(&args.binary)
        .args(["--config", config.to_str().unwrap(), "--log-level", "warn"])
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut first: Option<Instant> = None;
    loop {
        let n: usize = redis::cmd("LLEN").arg(&list).query(&mut conn)?;
        if n > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if n >= args.messages {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let done = Instant::now();
    let ru = cpu_seconds(child.id());
    unsafe { libc_kill(child.id() as i32, 15) };
    child.wait()?;
    let flowing = done - first.unwrap();
    println!(
        "{} messages x {} B, {} partitions: {:.0} msg/s while flowing ({:.2}s; {:.2}s incl. group join), bridge CPU {:.2}s = {:.2} us/msg",
        args.messages,
        args.size,
        args.partitions,
        args.messages as f64 / flowing.as_secs_f64(),
        flowing.as_secs_f64(),
        (done - started).as_secs_f64(),
        ru,
        ru * 1e6 / args.messages as f64
    );
    redis::cmd("DEL").arg(&list).query::<()>(&mut conn)?;
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

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
