//! What each assigned partition is doing right now, and whether pushing is allowed at all.
//!
//! Lanes write their [`PartitionState`] (position, pause, oldest undelivered message) as they go;
//! lag reporting, metrics and `/status` read it through the [`Registry`]. The [`Gate`] lets the
//! exclusive lease stop every lane's pushes at once when the lease is not (or no longer) held.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::pushlog::PushLog;
pub use crate::clock::now_ms;

/// One assigned partition, as its lane last reported it.
#[derive(Debug)]
pub struct PartitionState {
    pub topic: String,
    pub partition: i32,
    pub list_key: String,
    /// The next offset to deliver (everything before it is in Redis); -1 until known.
    next_offset: AtomicI64,
    paused: AtomicBool,
    /// Kafka timestamp (ms) of the oldest message the lane holds that Redis has not acknowledged;
    /// 0 when it holds none.
    oldest_pending_ms: AtomicI64,
    /// When the lane last delivered something (ms since the epoch); 0 = never.
    last_delivery_ms: AtomicI64,
    /// Why the partition is held (its position is out of range and `auto.offset.reset = error`):
    /// it delivers nothing more until it is assigned again.
    held: Mutex<Option<String>>,
    /// The topic's running totals, which outlive this partition's assignment (metrics counters
    /// must not go backwards when a partition moves away).
    totals: Arc<TopicTotals>,
    /// When what went onto the list was pushed (shared by every partition feeding the list).
    pushes: Arc<PushLog>,
}

impl PartitionState {
    #[cfg(test)]
    pub fn new(topic: &str, partition: i32, list_key: &str) -> PartitionState {
        let pushes = Arc::new(PushLog::new(now_ms()));
        Self::with_totals(topic, partition, list_key, Arc::default(), pushes)
    }

    fn with_totals(
        topic: &str,
        partition: i32,
        list_key: &str,
        totals: Arc<TopicTotals>,
        pushes: Arc<PushLog>,
    ) -> PartitionState {
        PartitionState {
            totals,
            pushes,
            topic: topic.to_string(),
            partition,
            list_key: list_key.to_string(),
            next_offset: AtomicI64::new(-1),
            paused: AtomicBool::new(false),
            oldest_pending_ms: AtomicI64::new(0),
            last_delivery_ms: AtomicI64::new(0),
            held: Mutex::new(None),
        }
    }

    /// A message entered the lane's (so far empty) batch.
    pub fn on_pending(&self, timestamp_ms: Option<i64>) {
        let ts = timestamp_ms.filter(|t| *t > 0).unwrap_or_else(now_ms);
        let _ =
            self.oldest_pending_ms
                .compare_exchange(0, ts, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Redis acknowledged everything before `next_offset`, `messages` of them onto the list just
    /// now. `oldest_left` is the timestamp of the oldest message the lane still holds, if any.
    pub fn on_delivered(
        &self,
        next_offset: i64,
        messages: u64,
        dead_letters: u64,
        oldest_left: Option<i64>,
    ) {
        self.next_offset.store(next_offset, Ordering::Relaxed);
        self.totals.messages.fetch_add(messages, Ordering::Relaxed);
        self.totals
            .dead_letters
            .fetch_add(dead_letters, Ordering::Relaxed);
        self.oldest_pending_ms
            .store(oldest_left.unwrap_or(0), Ordering::Relaxed);
        let now = now_ms();
        self.pushes.record(messages, now);
        self.last_delivery_ms.store(now, Ordering::Relaxed);
    }

    /// One delivery finished: it took `latency` (retries included) and moved `bytes` into Redis.
    pub fn record_push(&self, latency: Duration, bytes: u64) {
        self.totals.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.totals.batches.fetch_add(1, Ordering::Relaxed);
        self.totals.latency.observe(latency);
    }

    /// The position the partition starts from (exactly-once resumes from Redis).
    pub fn set_next_offset(&self, next_offset: i64) {
        self.next_offset.store(next_offset, Ordering::Relaxed);
    }

    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    pub fn next_offset(&self) -> Option<i64> {
        Some(self.next_offset.load(Ordering::Relaxed)).filter(|o| *o >= 0)
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    pub fn oldest_pending_ms(&self) -> Option<i64> {
        Some(self.oldest_pending_ms.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    /// Holds the partition for `why`: nothing more is taken from it, and readiness names it.
    pub fn hold(&self, why: String) {
        *self.held.lock().expect("held lock") = Some(why);
    }

    /// Why the partition is held, if it is.
    pub fn held(&self) -> Option<String> {
        self.held.lock().expect("held lock").clone()
    }

    pub fn is_held(&self) -> bool {
        self.held.lock().expect("held lock").is_some()
    }

    pub fn last_delivery_ms(&self) -> Option<i64> {
        Some(self.last_delivery_ms.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }
}

/// Upper bounds (seconds) of the push latency histogram: a push is ~1 ms on a LAN; retries and
/// full-list waits push it to seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// A fixed-bucket histogram of durations, lock-free (lanes observe, metrics read).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl LatencyHistogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// (sum in seconds, count, (upper bound, count) per bucket, the last bound `f64::MAX` for
    /// +Inf). The counts are each bucket's own, not cumulative: the exposition encoder
    /// (prometheus-client) adds them up.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(&self.buckets)
            .map(|(bound, n)| (bound, n.load(Ordering::Relaxed)))
            .collect();
        (
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            self.count.load(Ordering::Relaxed),
            buckets,
        )
    }
}

/// Per-topic running totals since the process started.
#[derive(Debug, Default)]
pub struct TopicTotals {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub dead_letters: AtomicU64,
    pub batches: AtomicU64,
    pub latency: LatencyHistogram,
}

/// The partitions this instance owns right now. Revoked partitions leave it at once.
#[derive(Debug, Default)]
pub struct Registry {
    partitions: Mutex<BTreeMap<(String, i32), Arc<PartitionState>>>,
    totals: Mutex<BTreeMap<String, Arc<TopicTotals>>>,
    /// Per list, when this instance pushed what onto it.
    pushes: Mutex<BTreeMap<String, Arc<PushLog>>>,
    /// Partitions assigned and revoked since start (the rebalance activity metric).
    assigned: AtomicU64,
    revoked: AtomicU64,
}

impl Registry {
    pub fn register(&self, topic: &str, partition: i32, list_key: &str) -> Arc<PartitionState> {
        let totals = self
            .totals
            .lock()
            .expect("registry lock")
            .entry(topic.to_string())
            .or_default()
            .clone();
        let pushes = self
            .pushes
            .lock()
            .expect("registry lock")
            .entry(list_key.to_string())
            .or_insert_with(|| Arc::new(PushLog::new(now_ms())))
            .clone();
        let state = Arc::new(PartitionState::with_totals(
            topic, partition, list_key, totals, pushes,
        ));
        self.partitions
            .lock()
            .expect("registry lock")
            .insert((topic.to_string(), partition), state.clone());
        self.assigned.fetch_add(1, Ordering::Relaxed);
        state
    }

    pub fn remove(&self, topic: &str, partition: i32) {
        let removed = self
            .partitions
            .lock()
            .expect("registry lock")
            .remove(&(topic.to_string(), partition));
        if removed.is_some() {
            self.revoked.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Per-topic totals of every topic this instance has ever owned a partition of.
    pub fn totals(&self) -> Vec<(String, Arc<TopicTotals>)> {
        self.totals
            .lock()
            .expect("registry lock")
            .iter()
            .map(|(t, v)| (t.clone(), v.clone()))
            .collect()
    }

    /// The push record of `list`, when this instance has fed it.
    pub fn push_log(&self, list: &str) -> Option<Arc<PushLog>> {
        self.pushes
            .lock()
            .expect("registry lock")
            .get(list)
            .cloned()
    }

    /// Forgets every push record: another instance pushes now (this one stands by for the lease),
    /// so what this one pushed says nothing about what waits.
    pub fn forget_pushes(&self) {
        self.pushes.lock().expect("registry lock").clear();
    }

    /// (partitions assigned, partitions revoked) since start.
    pub fn rebalance_counts(&self) -> (u64, u64) {
        (
            self.assigned.load(Ordering::Relaxed),
            self.revoked.load(Ordering::Relaxed),
        )
    }

    /// Every owned partition, ordered by topic and partition.
    pub fn snapshot(&self) -> Vec<Arc<PartitionState>> {
        self.partitions
            .lock()
            .expect("registry lock")
            .values()
            .cloned()
            .collect()
    }
}

/// Whether lanes may push, and with which fence value. Open unless the exclusive lease closes it;
/// lanes wait at a closed gate with their batch, storing nothing, until it opens or they are
/// stopped. Opened by the lease, it carries the holder's fence value, which every push presents to
/// Redis ([`crate::keys::fence_key`]), so Redis itself refuses a push from a holder that was
/// replaced. A lane whose push Redis refused that way closes the gate as [`Gate::refuse`], which
/// sends the lease holder to verify the lease at once ([`Gate::refused`]).
#[derive(Debug, Clone)]
pub struct Gate {
    state: Arc<watch::Sender<Passage>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Passage {
    Closed,
    /// Closed because Redis refused a push's fence; the lease holder is to verify the lease.
    Refused,
    /// Open; with the fence value pushes must present, when a lease is held.
    Open(Option<Arc<str>>),
}

impl Default for Gate {
    /// Open, without a token: no lease, instances share the partitions.
    fn default() -> Self {
        Gate {
            state: Arc::new(watch::channel(Passage::Open(None)).0),
        }
    }
}

impl Gate {
    /// Opens the gate for pushes fenced with `token` (`None`: not fenced).
    pub fn open(&self, token: Option<Arc<str>>) {
        self.state.send_replace(Passage::Open(token));
    }

    pub fn close(&self) {
        self.state.send_replace(Passage::Closed);
    }

    /// Closes the gate because Redis refused a push's fence value: the lease holder verifies the
    /// lease now rather than at its next renewal, and opens the gate again if it is still its own.
    pub fn refuse(&self) {
        self.state.send_replace(Passage::Refused);
    }

    /// Resolves once a lane has refused the gate ([`Gate::refuse`]) and nobody closed or opened
    /// it since.
    pub async fn refused(&self) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|p| matches!(p, Passage::Refused)).await;
    }

    pub fn is_open(&self) -> bool {
        matches!(*self.state.borrow(), Passage::Open(_))
    }

    /// The fence value pushes present while the gate is open with one.
    pub fn token(&self) -> Option<Arc<str>> {
        match &*self.state.borrow() {
            Passage::Open(token) => token.clone(),
            Passage::Closed | Passage::Refused => None,
        }
    }

    /// Resolves once the gate is open.
    pub async fn opened(&self) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|p| matches!(p, Passage::Open(_))).await;
    }
}

/// The exclusive lease, as far as this instance knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// No lease configured: instances share the partitions through the consumer group.
    Shared,
    /// Waiting for the lease held by another instance (hot standby).
    Standby,
    /// This instance holds the lease and pushes.
    Held,
}

/// Liveness and readiness facts that the background loops keep current for `/healthz`, `/readyz`
/// and the metrics.
#[derive(Debug)]
pub struct Health {
    /// When the lag loop last finished a round (ms since the epoch); it turns every `lag_interval`.
    heartbeat_ms: AtomicI64,
    redis_ok: AtomicBool,
    kafka_ok: AtomicBool,
    lease: Mutex<LeaseState>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            heartbeat_ms: AtomicI64::new(now_ms()),
            redis_ok: AtomicBool::new(false),
            kafka_ok: AtomicBool::new(false),
            lease: Mutex::new(LeaseState::Shared),
        }
    }
}

impl Health {
    pub fn beat(&self) {
        self.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
    }
    pub fn heartbeat_ms(&self) -> i64 {
        self.heartbeat_ms.load(Ordering::Relaxed)
    }
    pub fn set_redis_ok(&self, ok: bool) {
        self.redis_ok.store(ok, Ordering::Relaxed);
    }
    pub fn redis_ok(&self) -> bool {
        self.redis_ok.load(Ordering::Relaxed)
    }
    pub fn set_kafka_ok(&self, ok: bool) {
        self.kafka_ok.store(ok, Ordering::Relaxed);
    }
    pub fn kafka_ok(&self) -> bool {
        self.kafka_ok.load(Ordering::Relaxed)
    }
    pub fn set_lease(&self, state: LeaseState) {
        *self.lease.lock().expect("health lock") = state;
    }
    pub fn lease(&self) -> LeaseState {
        *self.lease.lock().expect("health lock")
    }
}
