//! The set of running lanes, started on assignment and drained on revocation.
//!
//! Starting happens in the rebalance callback *before* librdkafka assigns the partitions: the
//! partition queue is split off first, so not one message of a new partition can land on the main
//! queue (librdkafka keeps an application's queue routing across the assignment). Stopping drains
//! each lane — its gathered batch is pushed and its offset stored — within a deadline, so that the
//! commit that follows covers everything that reached Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use rdkafka::TopicPartitionList;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::context::BridgeContext;
use super::lane::Lane;
use crate::config::Config;
use crate::redis::RedisSink;
use crate::state::{Gate, Registry};
use crate::stats::Stats;

type PartitionId = (String, i32);

struct RunningLane {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

pub struct Lanes {
    runtime: Handle,
    sink: RedisSink,
    config: Arc<Config>,
    stats: Arc<Stats>,
    registry: Arc<Registry>,
    gate: Gate,
    /// Set once the consumer exists; the consumer owns the context that owns this, hence `Weak`.
    consumer: OnceLock<Weak<BaseConsumer<BridgeContext>>>,
    running: Mutex<HashMap<PartitionId, RunningLane>>,
}

impl Lanes {
    pub fn new(
        runtime: Handle,
        sink: RedisSink,
        config: Arc<Config>,
        stats: Arc<Stats>,
        registry: Arc<Registry>,
        gate: Gate,
    ) -> Lanes {
        Lanes {
            runtime,
            sink,
            config,
            stats,
            registry,
            gate,
            consumer: OnceLock::new(),
            running: Mutex::new(HashMap::new()),
        }
    }

    pub fn attach(&self, consumer: &Arc<BaseConsumer<BridgeContext>>) {
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    /// Splits each partition's queue off the consumer and spawns its lane.
    pub fn start(&self, partitions: &TopicPartitionList) {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            error!("rebalance before the consumer was attached; no lanes started");
            return;
        };
        let mut running = self.running.lock().expect("lanes lock");
        for element in partitions.elements() {
            let id = (element.topic().to_string(), element.partition());
            if running.contains_key(&id) {
                continue;
            }
            let Some(topic) = self.config.topic(&id.0).cloned() else {
                warn!(topic = %id.0, "assigned a topic that is not configured; ignoring it");
                continue;
            };
            let Some(mut queue) = consumer.split_partition_queue(&id.0, id.1) else {
                error!(topic = %id.0, partition = id.1, "librdkafka refused to split the partition queue");
                continue;
            };
            let wake = Arc::new(Notify::new());
            let waker = wake.clone();
            queue.set_nonempty_callback(move || waker.notify_one());
            let stop = CancellationToken::new();
            let state = self.registry.register(&id.0, id.1, &topic.list_key);
            let lane = Lane {
                topic,
                partition: id.1,
                queue,
                consumer: consumer.clone(),
                sink: self.sink.clone(),
                batch_config: self.config.batch.clone(),
                retry: self.config.retry.clone(),
                flow_check_interval: self.config.flow_check_interval,
                stats: self.stats.clone(),
                state,
                gate: self.gate.clone(),
                wake,
                stop: stop.clone(),
            };
            let task = self.runtime.spawn(lane.run());
            running.insert(id, RunningLane { stop, task });
        }
        info!(partitions = %describe(partitions), lanes = running.len(), "partitions assigned");
    }

    /// Drains the lanes of `partitions` and waits for them, at most `deadline`. Lanes still busy
    /// then (Redis down, say) are aborted; their offsets were not stored, so nothing is lost.
    /// Blocks the calling thread: call it from the Kafka poll thread, never from the runtime.
    pub fn stop(&self, partitions: &TopicPartitionList, deadline: Duration) {
        let lanes: Vec<(PartitionId, RunningLane)> = {
            let mut running = self.running.lock().expect("lanes lock");
            partitions
                .elements()
                .iter()
                .filter_map(|e| {
                    let id = (e.topic().to_string(), e.partition());
                    // Revoked partitions leave lag and status figures at once.
                    self.registry.remove(&id.0, id.1);
                    running.remove(&id).map(|lane| (id, lane))
                })
                .collect()
        };
        self.drain(lanes, deadline);
        info!(partitions = %describe(partitions), "partitions revoked");
    }

    /// Drains every lane (shutdown).
    pub fn stop_all(&self, deadline: Duration) -> bool {
        let lanes: Vec<(PartitionId, RunningLane)> =
            self.running.lock().expect("lanes lock").drain().collect();
        self.drain(lanes, deadline)
    }

    /// Returns whether every lane finished within the deadline.
    fn drain(&self, lanes: Vec<(PartitionId, RunningLane)>, deadline: Duration) -> bool {
        for (_, lane) in &lanes {
            lane.stop.cancel();
        }
        self.runtime.block_on(async {
            let until = tokio::time::Instant::now() + deadline;
            let mut clean = true;
            for ((topic, partition), mut lane) in lanes {
                if tokio::time::timeout_at(until, &mut lane.task).await.is_err() {
                    lane.task.abort();
                    // Wait for the abort to drop the lane, so its handle on the consumer is gone
                    // before the caller goes on (the consumer must be closed on the poll thread).
                    let _ = lane.task.await;
                    clean = false;
                    warn!(%topic, partition, "lane did not drain in time; its unacknowledged messages will be delivered again");
                }
            }
            clean
        })
    }

    pub fn count(&self) -> usize {
        self.running.lock().expect("lanes lock").len()
    }
}

fn describe(partitions: &TopicPartitionList) -> String {
    partitions
        .elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}
