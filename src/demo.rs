//! `kafka2redis demo`: the bridge on demo traffic, with nothing to set up but a `redis-server`.
//!
//! Kafka is librdkafka's mock cluster, served by threads of this process as in the bench; a task
//! produces an order to the topic `demo` every so often; the bridge is the daemon itself, on a
//! config written to a temporary file, so that `kafka2redis status --config FILE` and the status
//! page answer for it exactly as they would for a deployment. Redis is a `redis-server` started on
//! a free loopback port, or the one given with `--redis`.
//!
//! The daemon runs in this process, not as a child as in the bench: the bench does that so that
//! the bridge's CPU and memory are its own, and the demo measures nothing. In one process, Ctrl-C
//! reaches the daemon's own signal handling (in-flight batches pushed, offsets committed, the
//! group left), its logs appear in the same terminal, and no second kafka2redis process can be
//! left behind.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::bench::launch;
use crate::config::Config;
use crate::shutdown::Shutdown;

const TOPIC: &str = "demo";
const GROUP: &str = "kafka2redis-demo";
/// How often the list is read for new elements to show.
const WATCH_EVERY: Duration = Duration::from_millis(100);
/// At most this many new elements are printed per read; the rest are counted.
const SHOW_AT_ONCE: usize = 5;

/// `kafka2redis demo` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// A running Redis to push to, HOST:PORT or a redis:// URL (default: start a redis-server on a
    /// free loopback port, stopped with the demo).
    #[arg(long, value_name = "ADDRESS")]
    pub redis: Option<String>,
    /// Time between two demo messages.
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub interval_ms: u64,
    /// Partitions of the demo topic.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=64))]
    pub partitions: i32,
    /// Cap of the demo list: when it is full, the bridge pauses the topic's partitions and new
    /// messages wait in Kafka until something pops.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub cap: u64,
}

/// How a demo ended, for the command line's exit code.
pub enum Ended {
    /// Stopped by SIGINT/SIGTERM; `clean` when the bridge drained and committed.
    Stopped { clean: bool },
    /// The command line asked for something that cannot run (said in one sentence on stderr).
    BadInput,
    /// Something failed while running (said on stderr).
    Failed,
}

/// Runs the demo until SIGINT/SIGTERM; `http` is the global `--http`.
pub fn main(args: DemoArgs, http: Option<String>) -> Ended {
    match run(args, http) {
        Ok(ended) => ended,
        Err(e) => {
            eprintln!("kafka2redis demo: {e:#}");
            Ended::Failed
        }
    }
}

/// One sentence on stderr: the command line asked for something that cannot run.
fn bad_input(sentence: impl std::fmt::Display) -> anyhow::Result<Ended> {
    eprintln!("kafka2redis demo: {sentence}");
    Ok(Ended::BadInput)
}

/// The Redis the demo pushes to: its own `redis-server`, or one given.
struct DemoRedis {
    /// For the config's `redis.addresses`.
    address: String,
    url: String,
    /// The `redis-cli` invocation that reaches it, a URL's password masked.
    cli: String,
    own: Option<OwnRedis>,
}

impl DemoRedis {
    /// HOST:PORT or a `redis://` URL; a problem is one sentence.
    fn given(address: &str) -> Result<DemoRedis, String> {
        let shown = crate::redact::redact_url(address);
        let (url, cli) = if address.contains("://") {
            url::Url::parse(address)
                .ok()
                .filter(|u| matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some())
                .ok_or_else(|| format!("--redis {shown} is not a redis:// URL with a host"))?;
            (address.to_string(), format!("redis-cli -u {shown}"))
        } else {
            crate::config::check_host_port(address)
                .map_err(|why| format!("--redis {address:?} {why} (give HOST:PORT or a URL)"))?;
            let (host, port) = address.rsplit_once(':').unwrap_or((address, "6379"));
            (
                format!("redis://{address}/"),
                format!("redis-cli -h {host} -p {port}"),
            )
        };
        Ok(DemoRedis {
            address: address.to_string(),
            url,
            cli,
            own: None,
        })
    }

    /// A `redis-server` of the demo's own, keeping its files in `dir`.
    fn own(dir: &Path) -> anyhow::Result<DemoRedis> {
        let (own, port) = OwnRedis::start(dir)?;
        Ok(DemoRedis {
            address: format!("127.0.0.1:{port}"),
            url: format!("redis://127.0.0.1:{port}/"),
            cli: format!("redis-cli -p {port}"),
            own: Some(own),
        })
    }
}

/// A `redis-server` for the demo alone, on a free loopback port. It runs in a process group of
/// its own, so that the terminal's Ctrl-C reaches only the demo, which stops the bridge first and
/// Redis after it; and a shell keeps it that stops it when the demo's end of a pipe closes, so
/// that it does not outlive the demo however the demo ends (a second Ctrl-C exits at once).
struct OwnRedis {
    keeper: Child,
}

impl OwnRedis {
    fn start(dir: &Path) -> anyhow::Result<(OwnRedis, u16)> {
        let port = launch::free_port()?;
        let server = launch::redis_server(port, dir, &["--appendonly", "no"]);
        let keeper = Command::new("sh")
            .arg("-c")
            .arg(r#"redis-server "$@" & read _; kill $!; wait"#)
            .arg("sh")
            .args(server.get_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting redis-server")?;
        let own = OwnRedis { keeper };
        launch::wait_for_ping(&format!("127.0.0.1:{port}"), Duration::from_secs(10))?;
        Ok((own, port))
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        drop(self.keeper.stdin.take()); // the keeper's `read` ends: it stops redis-server
        let _ = self.keeper.wait();
    }
}

fn run(args: DemoArgs, http: Option<String>) -> anyhow::Result<Ended> {
    let started = Instant::now();
    let dir = DemoDir::create()?;
    let redis = match &args.redis {
        Some(address) => match DemoRedis::given(address) {
            Ok(redis) => redis,
            Err(sentence) => return bad_input(sentence),
        },
        None if !on_path("redis-server") => {
            return bad_input(
                "redis-server is not installed: install it (sudo apt-get install redis-server) \
                 or give a running Redis with --redis redis://HOST:PORT",
            );
        }
        None => DemoRedis::own(&dir.0)?,
    };

    let kafka = MockCluster::new(1).context("starting librdkafka's mock cluster")?;
    kafka
        .create_topic(TOPIC, args.partitions, 1)
        .context("creating the demo topic on the mock cluster")?;

    let http_in_file = match http {
        Some(_) => None,
        None => Some(format!("127.0.0.1:{}", launch::free_port()?)),
    };
    let config_path = dir.0.join("kafka2redis.toml");
    // Readable by this user alone: a --redis URL may carry a password.
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&config_path)
        .and_then(|mut f| {
            f.write_all(
                config_text(
                    &kafka.bootstrap_servers(),
                    &redis.address,
                    args.cap,
                    http_in_file.as_deref(),
                )
                .as_bytes(),
            )
        })
        .with_context(|| format!("writing {}", config_path.display()))?;
    let config = match load(&config_path, http.as_deref()) {
        Ok(config) => config,
        Err(sentence) => return bad_input(sentence),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let list = config.topics[0].list_key.clone();
        let mut conn = match connect(&redis.url).await {
            Ok(conn) => conn,
            Err(e) => {
                let address = crate::redact::redact_url(&redis.address);
                return bad_input(format!("cannot reach Redis at {address}: {e}"));
            }
        };
        let already: usize = ::redis::cmd("LLEN")
            .arg(&list)
            .query_async(&mut conn)
            .await?;
        introduce(&args, &kafka, &redis, &config, &config_path);

        let shutdown = Shutdown::listen().context("installing signal handlers")?;
        let stop = shutdown.token().child_token();
        let producer = tokio::spawn(produce(
            kafka.bootstrap_servers(),
            Duration::from_millis(args.interval_ms),
            stop.clone(),
        ));
        let watcher = tokio::spawn(watch(
            conn,
            list.clone(),
            already,
            args.cap,
            started,
            redis.cli.clone(),
            stop.clone(),
        ));
        let outcome = crate::daemon::run(config, shutdown).await;
        stop.cancel();
        let produced = producer.await?;
        let arrived = watcher.await?;
        println!(
            "demo stopped: {produced} orders produced, {arrived} arrived in {list} while it ran."
        );
        Ok(match outcome {
            Ok(clean) => Ended::Stopped { clean },
            Err(e) => {
                error!("{e:#}");
                Ended::Failed
            }
        })
    })
}

/// What runs where, and the command lines that look at it from another terminal.
fn introduce(
    args: &DemoArgs,
    kafka: &MockCluster<'static, DefaultProducerContext>,
    redis: &DemoRedis,
    config: &Config,
    config_path: &Path,
) {
    let list = &config.topics[0].list_key;
    // As this program was invoked, so that the status line can be pasted as it is.
    let this = std::env::args()
        .next()
        .unwrap_or_else(|| "kafka2redis".into());
    let whose = if redis.own.is_some() {
        "a redis-server the demo started and stops"
    } else {
        "the Redis given"
    };
    println!(
        "kafka2redis demo: an order every {} ms to the Kafka topic {TOPIC:?} ({} partitions) on \
         librdkafka's mock cluster at {} (in this process); the bridge pushes each, json \
         envelope, onto the list {list} (cap {}) in {whose} at {}.",
        args.interval_ms,
        args.partitions,
        kafka.bootstrap_servers(),
        args.cap,
        crate::redact::redact_url(&redis.address),
    );
    println!();
    println!("While it runs, from another terminal:");
    println!("  {this} status --config {}", config_path.display());
    println!("  {} LRANGE {list} 0 -1", redis.cli);
    if let Some(address) = config.http {
        println!("  status page: http://{address}/");
    }
    println!("Ctrl-C stops it (the bridge first, cleanly).");
    println!();
}

/// The demo's bridge config, in the native format a deployment would use.
fn config_text(brokers: &str, redis: &str, cap: u64, http: Option<&str>) -> String {
    let mut text = format!(
        "# Written by `kafka2redis demo`, removed when it stops.\n\
         topics = [{TOPIC:?}]\n\n\
         [kafka]\nbrokers = [{brokers:?}]\ngroup = {GROUP:?}\ncommit_interval_ms = 1000\n\n\
         [redis]\naddresses = [{redis:?}]\n\n\
         [defaults]\nenvelope = \"json\"\ncap = {cap}\n"
    );
    if let Some(address) = http {
        text.push_str(&format!("\n[http]\naddress = {address:?}\n"));
    }
    text
}

/// Loads the written config as the daemon would, `--http` overriding; a problem is one sentence.
fn load(path: &Path, http: Option<&str>) -> Result<Config, String> {
    let mut config = Config::load(path, None).map_err(|e| e.to_string())?;
    crate::kafka::validate_properties(&config).map_err(|e| e.to_string())?;
    if let Some(address) = http {
        config.http =
            Some(crate::config::parse_http_address("--http", address).map_err(|e| e.to_string())?);
    }
    Ok(config)
}

async fn connect(url: &str) -> anyhow::Result<::redis::aio::MultiplexedConnection> {
    let client = ::redis::Client::open(url)?;
    Ok(tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer in 5 s"))??)
}

/// Produces an order now and then every `interval` until `stop`; returns how many were
/// acknowledged.
async fn produce(bootstrap: String, interval: Duration, stop: CancellationToken) -> u64 {
    const CUSTOMERS: &[&str] = &["ada", "grace", "linus", "barbara", "ken", "margaret"];
    const ITEMS: &[&str] = &["espresso", "croissant", "bagel", "green tea", "muffin"];
    let producer: FutureProducer = match ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "0")
        .create()
    {
        Ok(p) => p,
        Err(e) => {
            error!(error = %e, "demo producer: cannot start");
            return 0;
        }
    };
    let mut produced = 0;
    let mut tick = tokio::time::interval(interval);
    for order in 1.. {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let customer = CUSTOMERS[fastrand::usize(..CUSTOMERS.len())];
        let value = format!(
            r#"{{"order":{order},"customer":"{customer}","item":"{}","quantity":{}}}"#,
            ITEMS[fastrand::usize(..ITEMS.len())],
            fastrand::u8(1..=3),
        );
        // Keyed by customer: one customer's orders share a partition, so they stay in order.
        let record = FutureRecord::to(TOPIC).key(customer).payload(&value);
        tokio::select! {
            _ = stop.cancelled() => break,
            sent = producer.send(record, Duration::from_secs(5)) => match sent {
                Ok(_) => produced += 1,
                Err((e, _)) => error!(error = %e, "demo producer: an order was not produced"),
            }
        }
    }
    produced
}

/// Prints what lands on `list` after its first `seen` elements, until `stop`; returns how many
/// landed. Elements popped by someone else are not shown again.
async fn watch(
    mut conn: ::redis::aio::MultiplexedConnection,
    list: String,
    mut seen: usize,
    cap: u64,
    started: Instant,
    cli: String,
    stop: CancellationToken,
) -> usize {
    let mut arrived = 0;
    let mut full = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return arrived,
            _ = tokio::time::sleep(WATCH_EVERY) => {}
        }
        let Ok(len) = ::redis::cmd("LLEN")
            .arg(&list)
            .query_async::<usize>(&mut conn)
            .await
        else {
            continue; // the daemon reports an unreachable Redis itself
        };
        if len > seen {
            let new: Vec<String> = ::redis::cmd("LRANGE")
                .arg(&list)
                .arg(seen)
                .arg(seen + SHOW_AT_ONCE - 1)
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            if arrived == 0 {
                println!(
                    "first message in {list} {:.1} s after the demo started:",
                    started.elapsed().as_secs_f64()
                );
            }
            for element in &new {
                println!("{list} <- {element}");
            }
            if len - seen > new.len() {
                println!("{list} <- … and {} more", len - seen - new.len());
            }
            arrived += len - seen;
        }
        seen = len;
        if len as u64 >= cap && !full {
            println!(
                "{list} is full ({cap}): the bridge paused the partitions, new orders wait in \
                 Kafka until a worker pops, e.g. {cli} LPOP {list} 100"
            );
        }
        full = len as u64 >= cap;
    }
}

/// Whether `program` is an executable file in a directory of `PATH`.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// The directory holding the demo's config, removed when the demo ends.
struct DemoDir(PathBuf);

impl DemoDir {
    fn create() -> anyhow::Result<DemoDir> {
        let path = std::env::temp_dir().join(format!("kafka2redis-demo-{}", std::process::id()));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(DemoDir(path))
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
