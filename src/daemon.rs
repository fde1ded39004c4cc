//! The daemon: connect Redis, join the group, run lanes until told to stop, stop in order.
//!
//! Beside the lanes run the lag loop ([`crate::observe::lag`]) and, with `--http`, the HTTP server
//! ([`crate::observe::http`]). With a lease configured ([`crate::lease`]) the group is joined only while
//! the lease is held; a standby waits for it and a holder that loses it goes back to waiting.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use rdkafka::consumer::Consumer;
use tracing::{error, info, warn};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::kafka::context::BridgeContext;
use crate::kafka::lanes::Lanes;
use crate::kafka::members::Membership;
use crate::kafka::poll_thread::{self, Exit};
use crate::kafka::prefetch::{self, Prefetch};
use crate::kafka::watermarks::ConsumerSlot;
use crate::lease::{Fenced, Kept, Lease};
use crate::observe::lag::Readout;
use crate::observe::shared::Shared;
use crate::observe::state::LeaseState;
use crate::pipeline::backoff::Backoff;
use crate::pipeline::key_types;
use crate::redis::{ConnectError, RedisSink};
use crate::shutdown::Shutdown;

/// Extra time the watchdog allows past the shutdown bound for the consumer to leave the group.
const LEAVE_GRACE: Duration = Duration::from_secs(2);

/// The Redis writes of a stop (the lease's release, removing this member's settings) are tried for
/// at least this long each, even when the bound is spent.
const AT_STOP_AT_LEAST: Duration = Duration::from_millis(250);

/// Runs the bridge until `shutdown` fires. `Ok(true)` means a clean stop: every lane drained and
/// the final commit succeeded.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<bool> {
    log_config_notes(&config);
    // The slot lock is held until the process ends (see `instance_id`).
    let (config, _slot) = crate::kafka::instance_id::resolve(config);
    let config = Arc::new(config);
    let shared = Shared::default();
    let consumer = Arc::new(ConsumerSlot::default());
    let background = shutdown.token().child_token();
    let _stop_background = background.clone().drop_guard();
    tokio::spawn(crate::memory::return_free_memory(
        shared.registry.clone(),
        background.clone(),
    ));
    // Serve health first: while Redis is unreachable at start the process is alive (/healthz) but
    // not ready (/readyz), and a liveness probe must not restart it for that.
    if let Some(address) = config.http {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("listening on --http {address}"))?;
        info!(%address, "serving /metrics /healthz /readyz /status and the status page at /");
        let http = crate::observe::http::App::new(config.clone(), &shared);
        tokio::spawn(crate::observe::http::serve(
            listener,
            http,
            background.clone(),
        ));
    }
    let Some(sink) = connect_redis(&config, &shutdown, &shared.readout).await? else {
        return Ok(true); // stopped before Redis was ever reachable: nothing was consumed
    };
    report_wrong_types(&config, &sink).await;
    tokio::spawn(crate::observe::lag::run(
        config.clone(),
        shared.registry.clone(),
        shared.readout.clone(),
        consumer.clone(),
        sink.connection(),
        background.clone(),
    ));

    tokio::spawn(crate::observe::continuity::run(
        config.clone(),
        sink.clone(),
        shared.registry.clone(),
        shared.stats.clone(),
        Lease::token(),
        background.clone(),
    ));

    if config.lease_key.is_some() {
        // With the lease one instance delivers at a time, so a standby whose settings differ is a
        // deploy under way, not a conflict: it takes over only after the holder stopped.
        return deliver(&config, &sink, &shared, &consumer, &shutdown).await;
    }
    // A member whose settings disagree with a live member's refuses to start.
    let membership = Membership::new(&config, sink.connection());
    if !membership.join(&shutdown.token()).await? {
        return Ok(true); // stopped before the settings could be compared: nothing was consumed
    }
    tokio::spawn(membership.clone().keep(background.clone()));
    let outcome = deliver(&config, &sink, &shared, &consumer, &shutdown).await;
    // Inside what is left of the stop's bound: a Redis that does not answer must not hold the
    // process past it (the entry then expires by itself).
    let left = shutdown
        .left_of(config.shutdown_timeout)
        .max(AT_STOP_AT_LEAST);
    if tokio::time::timeout(left, membership.leave())
        .await
        .is_err()
    {
        warn!("Redis did not answer in time to remove this member's settings; they expire by themselves");
    }
    outcome
}

/// Delivers until `shutdown`: as the one member of a shared group, or, with a lease, while it is held.
async fn deliver(
    config: &Arc<Config>,
    sink: &RedisSink,
    shared: &Shared,
    consumer: &Arc<ConsumerSlot>,
    shutdown: &Shutdown,
) -> anyhow::Result<bool> {
    let Some(key) = config.lease_key.clone() else {
        return session(config, sink, shared, consumer, shutdown.token()).await;
    };
    // Exclusive mode: wait as a standby, push while the lease is held, stand by again if it is lost.
    // The gate stays closed until the lease is held and its fences are written.
    shared.gate.close();
    let fence_keys = config.fence_keys();
    loop {
        shared.readout.health.set_lease(LeaseState::Standby);
        let stop = shutdown.token();
        let Some(mut lease) =
            Lease::acquire(sink.connection(), &key, config.lease_ttl, &stop).await
        else {
            return Ok(true); // stopped while standing by
        };
        match lease.fence(&fence_keys, &stop).await {
            Fenced::Written => {}
            Fenced::Stopped => {
                lease.release().await;
                return Ok(true); // stopped before pushing anything
            }
            Fenced::Superseded => {
                // A newer holder's fence: this lease is stale (Redis lost writes, say).
                lease.release().await;
                continue;
            }
        }
        shared.readout.health.set_lease(LeaseState::Held);
        let session_stop = stop.child_token();
        let outcome = {
            let keeper = async {
                if lease.keep(&shared.gate, &session_stop).await == Kept::Lost {
                    session_stop.cancel(); // stop the session: another instance may push now
                }
                // The session ends by itself now (stopped, or cancelled just above).
                std::future::pending::<()>().await;
            };
            tokio::select! {
                outcome = session(config, sink, shared, consumer, session_stop.clone()) => outcome,
                _ = keeper => unreachable!("the keeper never finishes"),
            }
        };
        if shutdown.is_triggered() {
            // After the final commit: the standby then starts exactly where this instance stopped.
            // Within what is left of the stop's bound: a Redis that does not answer must not hold
            // the process past it (the lease then expires by itself).
            let left = shutdown.left_of(config.shutdown_timeout);
            lease.release_within(left.max(AT_STOP_AT_LEAST)).await;
            shared.readout.health.set_lease(LeaseState::Standby);
            return outcome;
        }
        shared.gate.close();
        warn!("lease lost: back to standby");
        outcome?;
    }
}

/// One consumer-group membership: join, run lanes until `stop`, stop in order.
async fn session(
    config: &Arc<Config>,
    sink: &RedisSink,
    shared: &Shared,
    consumer_slot: &ConsumerSlot,
    stop: CancellationToken,
) -> anyhow::Result<bool> {
    let stats = &shared.stats;
    let lanes = Arc::new(Lanes::new(
        tokio::runtime::Handle::current(),
        sink.clone(),
        config.clone(),
        stats.clone(),
        shared.registry.clone(),
        shared.gate.clone(),
    ));
    let context = BridgeContext {
        lanes: lanes.clone(),
        drain_deadline: config.shutdown_timeout,
    };
    let prefetch = prefetch_for(config).await;
    let consumer = crate::kafka::create_consumer(config, context, prefetch)
        .context("creating the Kafka consumer")?;
    lanes.attach(&consumer);
    consumer_slot.set(Some(Arc::downgrade(&consumer)));
    let topics: Vec<&str> = config.topics.iter().map(|t| t.name.as_str()).collect();
    consumer
        .subscribe(&topics)
        .context("subscribing to the topics")?;
    info!(group = %config.kafka.group, topics = %topics.join(","), brokers = %config.kafka.brokers.join(","),
          "joined the consumer group; waiting for partitions");

    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let deadline = config.shutdown_timeout;
    let poll_stop = stop.clone();
    let static_member = !matches!(
        config.kafka.group_instance_id,
        crate::config::GroupInstanceId::Dynamic
    );
    std::thread::Builder::new()
        .name("kafka-poll".into())
        .spawn(move || {
            let _ = done_tx.send(poll_thread::run(
                consumer,
                lanes,
                poll_stop,
                deadline,
                static_member,
            ));
        })
        .context("starting the Kafka poll thread")?;

    tokio::pin!(done_rx);
    let exit = tokio::select! {
        exit = &mut done_rx => exit.map_err(|_| anyhow!("the Kafka poll thread panicked"))?,
        _ = stop.cancelled() => {
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
    consumer_slot.set(None);
    info!(
        redis_errors = stats.redis_errors.get(),
        refused_batches = stats.refused_batches.get(),
        "stopped"
    );
    match exit {
        Exit::Clean => Ok(true),
        Exit::Incomplete => Ok(false),
        Exit::Fatal(why) => Err(anyhow!(why)),
        // With a lease the holder and its standbys share the id: a standby that joined took over
        // after this instance lost the lease, which the lease keeper notices too.
        Exit::Fenced if config.lease_key.is_some() => {
            warn!("another holder of the lease joined the group with the shared group.instance.id: this instance stops delivering");
            Ok(false)
        }
        Exit::Fenced => Err(crate::kafka::instance_id::fenced(config).into()),
    }
}

/// librdkafka's prefetch per partition, from the partition count of the topics.
async fn prefetch_for(config: &Arc<Config>) -> Prefetch {
    let counting = config.clone();
    let partitions = tokio::task::spawn_blocking(move || prefetch::count_partitions(&counting))
        .await
        .ok()
        .flatten();
    let prefetch = partitions.map_or(Prefetch::UNKNOWN, Prefetch::for_partitions);
    let overrides: Vec<String> = [
        "queued.min.messages",
        "queued.max.messages.kbytes",
        "max.partition.fetch.bytes",
    ]
    .iter()
    .filter_map(|k| config.kafka.properties.get(*k).map(|v| format!("{k}={v}")))
    .collect();
    info!(partitions = ?partitions, queued_min_messages = prefetch.messages, queued_max_kbytes = prefetch.kbytes,
          fetch_kbytes = prefetch.fetch_kbytes(), overridden_by_kafka_properties = %overrides.join(","),
          "prefetch per partition");
    prefetch
}

/// Connects to Redis, retrying while it is unreachable; `None` if a stop came first.
async fn connect_redis(
    config: &Config,
    shutdown: &Shutdown,
    readout: &Readout,
) -> anyhow::Result<Option<RedisSink>> {
    let mut backoff = Backoff::new(&config.retry);
    loop {
        readout.health.beat(); // this loop is turning: alive, though not ready
        match RedisSink::connect(&config.redis).await {
            Ok(sink) => {
                info!(redis = ?config.redis.topology, "connected to Redis");
                sink.warn_if_evicting().await;
                return Ok(Some(sink));
            }
            Err(ConnectError::Fatal(why)) => return Err(anyhow!(why)),
            Err(ConnectError::Retryable(e)) => {
                warn!(error = %e, retry_in_ms = backoff.peek().as_millis() as u64, "Redis unreachable; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_wait()) => {}
            _ = shutdown.wait() => return Ok(None),
        }
    }
}

/// Names every key the bridge writes that holds another type (another application's key): pushes
/// to it are refused and held until it is deleted or renamed, and the lanes say so again now and
/// then.
async fn report_wrong_types(config: &Config, sink: &RedisSink) {
    let keys = key_types::keys_written(config);
    match key_types::wrong_types(&sink.connection(), &keys).await {
        Ok(wrong) => {
            for key in wrong {
                error!(key = %key.key, found = %key.found, wanted = %key.wanted,
                       "Redis key {:?} is a {}, but the bridge writes a {} there: pushes to it are held until it is deleted or renamed",
                       key.key, key.found, key.wanted);
            }
        }
        Err(e) => warn!(error = %e, "could not read the types of the keys the bridge writes"),
    }
}

fn log_config_notes(config: &Config) {
    for note in &config.warnings {
        warn!("config: {note}");
    }
}
