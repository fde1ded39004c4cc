//! What each assigned partition is doing right now, and whether pushing is allowed at all.
//!
//! Lanes write their [`PartitionState`] (position, pause, oldest undelivered message) as they go;
//! lag reporting, metrics and `/status` read it through the [`Registry`]. The [`Gate`] lets the
//! exclusive lease stop every lane's pushes at once when the lease is not (or no longer) held.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

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
    delivered: AtomicU64,
    dead_letters: AtomicU64,
}

impl PartitionState {
    pub fn new(topic: &str, partition: i32, list_key: &str) -> PartitionState {
        PartitionState {
            topic: topic.to_string(),
            partition,
            list_key: list_key.to_string(),
            next_offset: AtomicI64::new(-1),
            paused: AtomicBool::new(false),
            oldest_pending_ms: AtomicI64::new(0),
            last_delivery_ms: AtomicI64::new(0),
            delivered: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
        }
    }

    /// A message entered the lane's (so far empty) batch.
    pub fn on_pending(&self, timestamp_ms: Option<i64>) {
        let ts = timestamp_ms.filter(|t| *t > 0).unwrap_or_else(now_ms);
        let _ =
            self.oldest_pending_ms
                .compare_exchange(0, ts, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Redis acknowledged everything before `next_offset`. `oldest_left` is the timestamp of the
    /// oldest message the lane still holds, if any.
    pub fn on_delivered(
        &self,
        next_offset: i64,
        messages: u64,
        dead_letters: u64,
        oldest_left: Option<i64>,
    ) {
        self.next_offset.store(next_offset, Ordering::Relaxed);
        self.delivered.fetch_add(messages, Ordering::Relaxed);
        self.dead_letters.fetch_add(dead_letters, Ordering::Relaxed);
        self.oldest_pending_ms
            .store(oldest_left.unwrap_or(0), Ordering::Relaxed);
        self.last_delivery_ms.store(now_ms(), Ordering::Relaxed);
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

    pub fn last_delivery_ms(&self) -> Option<i64> {
        Some(self.last_delivery_ms.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    pub fn dead_letters(&self) -> u64 {
        self.dead_letters.load(Ordering::Relaxed)
    }
}

/// The partitions this instance owns right now. Revoked partitions leave it at once.
#[derive(Debug, Default)]
pub struct Registry {
    partitions: Mutex<BTreeMap<(String, i32), Arc<PartitionState>>>,
}

impl Registry {
    pub fn register(&self, topic: &str, partition: i32, list_key: &str) -> Arc<PartitionState> {
        let state = Arc::new(PartitionState::new(topic, partition, list_key));
        self.partitions
            .lock()
            .expect("registry lock")
            .insert((topic.to_string(), partition), state.clone());
        state
    }

    pub fn remove(&self, topic: &str, partition: i32) {
        self.partitions
            .lock()
            .expect("registry lock")
            .remove(&(topic.to_string(), partition));
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

/// Whether lanes may push. Open unless something (the exclusive lease) closes it; lanes wait at a
/// closed gate with their batch, storing nothing, until it opens or they are stopped.
#[derive(Debug, Clone)]
pub struct Gate {
    open: Arc<watch::Sender<bool>>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new(true)
    }
}

impl Gate {
    pub fn new(open: bool) -> Gate {
        Gate {
            open: Arc::new(watch::channel(open).0),
        }
    }

    pub fn set(&self, open: bool) {
        self.open.send_replace(open);
    }

    pub fn is_open(&self) -> bool {
        *self.open.borrow()
    }

    /// Resolves once the gate is open.
    pub async fn opened(&self) {
        let mut rx = self.open.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }
}
