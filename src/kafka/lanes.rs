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
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::commits;
use super::commits::StoredOffset;
use super::context::{Assignment, BridgeContext};
use super::ffi::BatchReader;
use super::partition::AssignedPartition;
use super::reconcile::{self, Bounds, Resume, Why};
use crate::config::{Config, Delivery};
use crate::keys::{fence_key, offsets_field, offsets_key};
use crate::observe::state::{Gate, Registry};
use crate::observe::stats::Stats;
use crate::pipeline::lane::{ExactlyOnceLane, FenceKeys, Lane, LaneSettings, LaneSignals};
use crate::pipeline::partition::Committed;
use crate::redis::RedisSink;

type PartitionId = (String, i32);

struct RunningLane {
    stop: CancellationToken,
    task: JoinHandle<()>,
    /// What the lane stored, for the commit after it stopped.
    stored: Arc<StoredOffset>,
}

/// What Redis records for an exactly-once partition, as the assignment found it.
#[derive(Debug, Clone, Copy)]
pub struct Recorded {
    /// The next offset Redis records (`None`: no record).
    pub offset: Option<i64>,
    /// Redis holds no record and the commit was not examined yet: the lane reports what that
    /// means once it knows the commit.
    pub unexamined: bool,
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
    /// `recorded`: what Redis records for the exactly-once partitions it was asked about.
    pub fn start(
        &self,
        partitions: &TopicPartitionList,
        recorded: &HashMap<PartitionId, Recorded>,
    ) {
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
            let stored = Arc::new(StoredOffset::new(
                &id.0,
                id.1,
                topic.delivery,
                self.config.kafka.commit_after_messages,
            ));
            let partition = AssignedPartition {
                topic: id.0.clone(),
                partition: id.1,
                _queue: queue,
                reader,
                consumer: consumer.clone(),
                stored: stored.clone(),
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
                // Without an answer from Redis the lane's first push learns the record.
                let record = recorded.get(&id).copied().unwrap_or(Recorded {
                    offset: None,
                    unexamined: false,
                });
                if let Some(key) = offsets_key(&topic.list_key) {
                    lane = lane.exactly_once(ExactlyOnceLane::new(
                        key,
                        offsets_field(&id.0, id.1),
                        record.offset,
                        record.unexamined,
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
            running.insert(id, RunningLane { stop, task, stored });
        }
        info!(partitions = %describe(partitions), lanes = running.len(), "partitions assigned");
    }

    /// For exactly-once topics, sets each partition's start offset: Redis's record or Kafka's
    /// committed offset, whichever is right, inside the partition ([`reconcile`]). Where neither
    /// exists the offset stays unset (the reset policy applies). When Redis cannot be asked it
    /// stays unset too: the lane's first push is then refused with the recorded offset and the
    /// lane seeks there, so this lookup only saves that round.
    /// Returns what Redis records for the partitions it was asked about.
    pub fn resume_positions(
        &self,
        partitions: &mut TopicPartitionList,
    ) -> HashMap<PartitionId, Recorded> {
        let recorded = self.read_records(partitions);
        if recorded.is_empty() {
            return recorded;
        }
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            return recorded;
        };
        let mut asked = TopicPartitionList::with_capacity(recorded.len());
        for (topic, partition) in recorded.keys() {
            asked.add_partition(topic, *partition);
        }
        let committed = reconcile::committed(&consumer, &asked).unwrap_or_else(|e| {
            warn!(error = %e, "exactly-once: cannot read the committed offsets; resuming from Redis's records");
            vec![None; asked.count()]
        });
        let bounds = reconcile::bounds(&consumer, &asked).unwrap_or_else(|e| {
            warn!(error = %e, "exactly-once: cannot read the partitions' log start and high watermark; not checking the resume positions against them");
            vec![None; asked.count()]
        });
        let mut examined = recorded;
        for ((element, committed), bounds) in asked.elements().iter().zip(committed).zip(bounds) {
            let (topic, partition) = (element.topic(), element.partition());
            let Some(record) = examined.get_mut(&(topic.to_string(), partition)) else {
                continue;
            };
            let resume = reconcile::choose(record.offset, committed, bounds);
            self.report_resume(topic, partition, record.offset, committed, bounds, resume);
            // A missing record is reported here when the commit could be read.
            record.unexamined &= committed.is_none() && record.offset.is_none();
            if let Some(at) = resume.at {
                if let Err(e) =
                    partitions.set_partition_offset(topic, partition, Offset::Offset(at))
                {
                    warn!(%topic, partition, error = %e, "cannot set the start offset");
                }
            }
        }
        examined
    }

    /// What Redis records for each exactly-once partition of `partitions` (partitions whose
    /// lookup failed are left out).
    fn read_records(&self, partitions: &TopicPartitionList) -> HashMap<PartitionId, Recorded> {
        let mut recorded = HashMap::new();
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
                Ok(Ok(offsets)) => {
                    for (id, offset) in members.into_iter().zip(offsets) {
                        let unexamined = offset.is_none();
                        recorded.insert(id, Recorded { offset, unexamined });
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
        recorded
    }

    /// Logs where a partition resumes and why; a position outside the partition at error level,
    /// counted.
    fn report_resume(
        &self,
        topic: &str,
        partition: i32,
        record: Option<i64>,
        committed: Option<Committed>,
        bounds: Option<Bounds>,
        resume: Resume,
    ) {
        let commit = committed.map(|c| c.offset);
        let mark = committed.map(|c| match c.by {
            Some(delivery) => commits::mark(delivery),
            None => "none",
        });
        let (log_start, high_watermark) = (
            bounds.map(|b| b.log_start),
            bounds.map(|b| b.high_watermark),
        );
        if let Some(outside) = resume.outside {
            self.settings.stats.resume_out_of_range.inc();
            error!(%topic, partition, ?record, committed = ?commit, ?mark, ?log_start, ?high_watermark, resume = ?resume.at,
                   "exactly-once: the resume position {outside} is outside the partition's offsets (the topic was \
                    re-created, or retention removed them); resuming from a marked commit inside them, else the log start");
            return;
        }
        let why = match resume.why {
            Why::Record => "resuming from the offset recorded in Redis",
            Why::CommitAhead => {
                "resuming from Kafka's committed offset: an at-least-once run delivered past Redis's record"
            }
            Why::NoRecord if committed.and_then(|c| c.by) != Some(Delivery::AtLeastOnce) => {
                // The record is written with every exactly-once push.
                error!(%topic, partition, committed = ?commit, ?mark,
                       "exactly-once: Redis has no record of this partition although Kafka committed an offset: \
                        unless the topic ran at-least-once until now, Redis lost data, and messages before that \
                        offset that were on the list may be lost; resuming from it");
                return;
            }
            Why::NoRecord => "no record in Redis and the last commit was made at-least-once; resuming from it",
            Why::Nothing => "no record in Redis and no committed offset; the reset policy applies",
        };
        info!(%topic, partition, ?record, committed = ?commit, ?mark, resume = ?resume.at, "exactly-once: {why}");
    }

    /// Drains the lanes of `partitions` and waits for them, at most `deadline`. Lanes still busy
    /// then (Redis down, say) are aborted; their offsets were not stored, so nothing is lost.
    /// Blocks the calling thread: call it from the Kafka poll thread, never from the runtime.
    /// Returns what the lanes stored, for the commit that follows.
    pub fn stop(&self, partitions: &TopicPartitionList, deadline: Duration) -> TopicPartitionList {
        let lanes = self.take(partitions);
        let (_, stored) = self.drain(lanes, deadline);
        info!(partitions = %describe(partitions), "partitions revoked");
        stored
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

    /// Drains every lane (shutdown); see [`Lanes::drain`].
    pub fn stop_all(&self, deadline: Duration) -> (bool, TopicPartitionList) {
        let lanes: Vec<(PartitionId, RunningLane)> =
            self.running.lock().expect("lanes lock").drain().collect();
        self.drain(lanes, deadline)
    }

    /// Returns whether every lane finished within the deadline, and what the lanes stored (with
    /// their marks) for the commit that follows.
    fn drain(
        &self,
        lanes: Vec<(PartitionId, RunningLane)>,
        deadline: Duration,
    ) -> (bool, TopicPartitionList) {
        for (_, lane) in &lanes {
            lane.stop.cancel();
        }
        let stored: Vec<Arc<StoredOffset>> =
            lanes.iter().map(|(_, lane)| lane.stored.clone()).collect();
        let clean = self.runtime.block_on(async {
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
        });
        // After the lanes ended: nothing is stored any more.
        let mut list = TopicPartitionList::with_capacity(stored.len());
        for offset in &stored {
            offset.add_to(&mut list);
        }
        (clean, list)
    }

    pub fn count(&self) -> usize {
        self.running.lock().expect("lanes lock").len()
    }
}

impl Assignment for Lanes {
    fn assigned(&self, partitions: &mut TopicPartitionList) {
        let recorded = self.resume_positions(partitions);
        self.start(partitions, &recorded);
    }

    fn revoked(&self, partitions: &TopicPartitionList, deadline: Duration) -> TopicPartitionList {
        self.stop(partitions, deadline)
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
