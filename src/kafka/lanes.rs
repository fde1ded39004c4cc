//! The set of running lanes, started on assignment and drained on revocation.
//!
//! Starting happens in the rebalance callback *before* librdkafka assigns the partitions: the
//! partition queue is split off first, so not one message of a new partition can land on the main
//! queue (librdkafka keeps an application's queue routing across the assignment). Stopping drains
//! each lane — its gathered batch is pushed and its offset stored — within a deadline, so that the
//! commit that follows covers everything that reached Redis.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::context::{Assignment, BridgeContext};
use super::ffi::BatchReader;
use super::partition::AssignedPartition;
use crate::config::{Config, Delivery};
use crate::keys::{fence_key, offsets_field, offsets_key};
use crate::observe::state::{Gate, Registry};
use crate::observe::stats::Stats;
use crate::pipeline::lane::{ExactlyOnceLane, FenceKeys, Lane, LaneSettings, LaneSignals};
use crate::redis::RedisSink;

type PartitionId = (String, i32);

struct RunningLane {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

pub struct Lanes {
    runtime: Handle,
    config: Arc<Config>,
    /// What every lane shares.
    settings: LaneSettings,
    registry: Arc<Registry>,
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
        let settings = LaneSettings {
            sink,
            batch: config.batch.clone(),
            retry: config.retry.clone(),
            flow_check_interval: config.flow_check_interval,
            reset_to_end: matches!(
                config
                    .kafka
                    .properties
                    .get("auto.offset.reset")
                    .map(String::as_str),
                Some("latest" | "largest" | "end")
            ),
            stats,
            gate,
        };
        Lanes {
            runtime,
            config,
            settings,
            registry,
            consumer: OnceLock::new(),
            running: Mutex::new(HashMap::new()),
        }
    }

    pub fn attach(&self, consumer: &Arc<BaseConsumer<BridgeContext>>) {
        let _ = self.consumer.set(Arc::downgrade(consumer));
    }

    /// Splits each partition's queue off the consumer and spawns its lane.
    pub fn start(&self, partitions: &TopicPartitionList, unrecorded: &HashSet<PartitionId>) {
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
            let Some(reader) = BatchReader::new(consumer.clone(), &id.0, id.1) else {
                error!(topic = %id.0, partition = id.1, "librdkafka has no queue for the partition");
                continue;
            };
            let wake = Arc::new(Notify::new());
            let waker = wake.clone();
            queue.set_nonempty_callback(move || waker.notify_one());
            let stop = CancellationToken::new();
            let state = self.registry.register(&id.0, id.1, &topic.list_key);
            let partition = AssignedPartition {
                topic: id.0.clone(),
                partition: id.1,
                _queue: queue,
                reader,
                consumer: consumer.clone(),
            };
            let signals = LaneSignals {
                state: state.clone(),
                wake,
                stop: stop.clone(),
            };
            let mut lane = Lane::new(topic.clone(), id.1, partition, &self.settings, signals);
            if topic.delivery == Delivery::ExactlyOnce {
                let start = match element.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                if let Some(o) = start {
                    state.set_next_offset(o);
                }
                if let Some(key) = offsets_key(&topic.list_key) {
                    lane = lane.exactly_once(ExactlyOnceLane::new(
                        key,
                        offsets_field(&id.0, id.1),
                        start,
                        unrecorded.contains(&id),
                    ));
                }
            }
            if self.config.lease_key.is_some() {
                lane = lane.fenced(FenceKeys {
                    list: fence_key(&topic.list_key).expect("validated: the list has a fence key"),
                    dead: fence_key(&topic.dead_letter_key())
                        .expect("validated: the dead-letter list has a fence key"),
                });
            }
            let task = self.runtime.spawn(lane.run());
            running.insert(id, RunningLane { stop, task });
        }
        info!(partitions = %describe(partitions), lanes = running.len(), "partitions assigned");
    }

    /// For exactly-once topics, sets each partition's start offset to the next offset Redis
    /// recorded for it, so it resumes exactly where its list left off. Where Redis has no record
    /// the offset stays unset (Kafka's committed offset, then the reset policy, apply). When Redis
    /// cannot be asked it stays unset too: the lane's first push is then refused with the recorded
    /// offset and the lane seeks there, so this lookup only saves that round.
    /// Returns the partitions Redis was asked about and has no record of.
    pub fn resume_positions(&self, partitions: &mut TopicPartitionList) -> HashSet<PartitionId> {
        let mut unrecorded = HashSet::new();
        let mut lookups: HashMap<String, Vec<(String, i32)>> = HashMap::new();
        for element in partitions.elements() {
            let Some(topic) = self.config.topic(element.topic()) else {
                continue;
            };
            if topic.delivery != Delivery::ExactlyOnce {
                continue;
            }
            if let Some(key) = offsets_key(&topic.list_key) {
                lookups
                    .entry(key)
                    .or_default()
                    .push((topic.name.clone(), element.partition()));
            }
        }
        for (key, members) in lookups {
            let fields: Vec<String> = members.iter().map(|(t, p)| offsets_field(t, *p)).collect();
            let lookup = self.runtime.block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(5),
                    self.settings.sink.recorded_offsets(&key, &fields),
                )
                .await
            });
            match lookup {
                Ok(Ok(recorded)) => {
                    for ((topic, partition), offset) in members.iter().zip(recorded) {
                        let Some(offset) = offset else {
                            unrecorded.insert((topic.clone(), *partition));
                            continue;
                        };
                        if let Err(e) = partitions.set_partition_offset(
                            topic,
                            *partition,
                            Offset::Offset(offset),
                        ) {
                            warn!(%topic, partition, error = %e, "cannot set the start offset");
                        }
                        info!(%topic, partition, offset, "exactly-once: resuming from the offset recorded in Redis");
                    }
                }
                Ok(Err(e)) => {
                    warn!(key = %key, error = %e, "cannot read recorded offsets; the first push will correct the position")
                }
                Err(_) => {
                    warn!(key = %key, "reading recorded offsets timed out; the first push will correct the position")
                }
            }
        }
        unrecorded
    }

    /// Drains the lanes of `partitions` and waits for them, at most `deadline`. Lanes still busy
    /// then (Redis down, say) are aborted; their offsets were not stored, so nothing is lost.
    /// Blocks the calling thread: call it from the Kafka poll thread, never from the runtime.
    pub fn stop(&self, partitions: &TopicPartitionList, deadline: Duration) {
        let lanes = self.take(partitions);
        self.drain(lanes, deadline);
        info!(partitions = %describe(partitions), "partitions revoked");
    }

    /// Removes the lanes of `partitions` from the running set (and their figures from the registry).
    fn take(&self, partitions: &TopicPartitionList) -> Vec<(PartitionId, RunningLane)> {
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

impl Assignment for Lanes {
    fn assigned(&self, partitions: &mut TopicPartitionList) {
        let unrecorded = self.resume_positions(partitions);
        self.start(partitions, &unrecorded);
    }

    fn revoked(&self, partitions: &TopicPartitionList, deadline: Duration) {
        self.stop(partitions, deadline);
    }

    fn lost(&self, partitions: &TopicPartitionList) {
        let lanes = self.take(partitions);
        self.runtime.block_on(async {
            for (_, lane) in lanes {
                lane.task.abort();
                // Wait for the abort to drop the lane and its handles on the consumer.
                let _ = lane.task.await;
            }
        });
        info!(partitions = %describe(partitions), "lost partitions' lanes aborted");
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
