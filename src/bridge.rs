//! The daemon: connect Redis, join the group, run lanes until told to stop, stop in order.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use rdkafka::consumer::Consumer;
use tracing::{info, warn};

use crate::config::Config;
use crate::kafka::context::BridgeContext;
use crate::kafka::lanes::Lanes;
use crate::kafka::poll_thread::{self, Exit};
use crate::redis::{ConnectError, RedisSink};
use crate::shutdown::Shutdown;
use crate::state::{Gate, Registry};
use crate::stats::Stats;

/// Extra time the watchdog allows past the shutdown bound for the consumer to leave the group.
const LEAVE_GRACE: Duration = Duration::from_secs(2);

/// Runs the bridge until `shutdown` fires. `Ok(true)` means a clean stop: every lane drained and
/// the final commit succeeded.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<bool> {
    log_config_notes(&config);
    let config = Arc::new(config);
    let Some(sink) = connect_redis(&config, &shutdown).await? else {
        return Ok(true); // stopped before Redis was ever reachable: nothing was consumed
    };

    let stats = Arc::new(Stats::default());
    let registry = Arc::new(Registry::default());
    let gate = Gate::default();
    let lanes = Arc::new(Lanes::new(
        tokio::runtime::Handle::current(),
        sink,
        config.clone(),
        stats.clone(),
        registry.clone(),
        gate.clone(),
    ));
    let context = BridgeContext {
        lanes: lanes.clone(),
        drain_deadline: config.shutdown_timeout,
    };
    let consumer =
        crate::kafka::create_consumer(&config, context).context("creating the Kafka consumer")?;
    lanes.attach(&consumer);
    let topics: Vec<&str> = config.topics.iter().map(|t| t.name.as_str()).collect();
    consumer
        .subscribe(&topics)
        .context("subscribing to the topics")?;
    info!(group = %config.kafka.group, topics = %topics.join(","), brokers = %config.kafka.brokers.join(","),
          "joined the consumer group; waiting for partitions");

    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let stop = shutdown.token();
    let deadline = config.shutdown_timeout;
    std::thread::Builder::new()
        .name("kafka-poll".into())
        .spawn(move || {
            let _ = done_tx.send(poll_thread::run(consumer, lanes, stop, deadline));
        })
        .context("starting the Kafka poll thread")?;

    tokio::pin!(done_rx);
    let exit = tokio::select! {
        exit = &mut done_rx => exit.map_err(|_| anyhow!("the Kafka poll thread panicked"))?,
        _ = shutdown.wait() => {
            match tokio::time::timeout(config.shutdown_timeout + LEAVE_GRACE, &mut done_rx).await {
                Ok(exit) => exit.map_err(|_| anyhow!("the Kafka poll thread panicked"))?,
                Err(_) => {
                    warn!(bound_ms = config.shutdown_timeout.as_millis() as u64,
                          "stop did not finish within the bound; exiting anyway (uncommitted messages will be delivered again)");
                    Exit::Incomplete
                }
            }
        }
    };
    info!(
        delivered = stats.delivered.get(),
        dead_letters = stats.dead_letters.get(),
        batches = stats.batches.get(),
        redis_errors = stats.redis_errors.get(),
        "stopped"
    );
    match exit {
        Exit::Clean => Ok(true),
        Exit::Incomplete => Ok(false),
        Exit::Fatal(why) => Err(anyhow!(why)),
    }
}

/// Connects to Redis, retrying while it is unreachable; `None` if a stop came first.
async fn connect_redis(config: &Config, shutdown: &Shutdown) -> anyhow::Result<Option<RedisSink>> {
    let mut backoff = config.retry.backoff_min;
    loop {
        match RedisSink::connect(&config.redis).await {
            Ok(sink) => {
                info!(redis = ?config.redis.topology, "connected to Redis");
                return Ok(Some(sink));
            }
            Err(ConnectError::Fatal(why)) => return Err(anyhow!(why)),
            Err(ConnectError::Retryable(e)) => {
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "Redis unreachable; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait() => return Ok(None),
        }
        backoff = (backoff * 2).min(config.retry.backoff_max);
    }
}

fn log_config_notes(config: &Config) {
    for note in &config.not_yet_active {
        warn!("config: {note} is read but not yet active in this version");
    }
    for note in &config.warnings {
        warn!("config: {note}");
    }
}
