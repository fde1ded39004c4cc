//! Noticing that Redis lost writes it had acknowledged.
//!
//! A Redis that restarts from an older snapshot (RDB only, Redis's default persistence), a flush,
//! or a failover to a replica that lagged hands back an older data set without an error: the lists
//! and the exactly-once records roll back together, and nothing tells the bridge. A `run_id` that
//! changed says only that Redis restarted — it changes on a restart from an intact AOF too.
//!
//! So the bridge compares what Redis holds with what it last acknowledged: it counts up a marker
//! key of its own, through the push path's connection (with its WAIT guard, so the marker is
//! replicated like the pushes it stands for). Each write returns the value it replaced; anything
//! older than the last value Redis acknowledged means Redis went back to the moment it held that
//! older value. Every write acknowledged before that marker was sent is still there; what was
//! acknowledged after it may be gone.
//!
//! A Redis Cluster's masters lose data each on its own (one restarts from its snapshot, the others
//! keep theirs), so there each master holds a marker of its own: one whose hash tag lands in the
//! master's first slot ([`Layout`]). The layout follows the slot map: a master that fails over
//! keeps its slots and so its marker (the promoted replica is checked against what the old master
//! acknowledged), and a master that is down but still owns its slots keeps its marker too, which is
//! how its restart from an older snapshot is noticed.

use redis::aio::ConnectionLike;
use redis::{RedisError, Script};
use std::sync::LazyLock;

use super::cluster::{self, ClusterConn};
use super::guard::{is_unreadable, key_slot, parse_ranges};
use super::topology::RedisConnection;
use super::RedisSink;

/// `KEYS[1]` the marker, `ARGV[1]` its new value, `ARGV[2]` its expiry (ms): sets it and returns
/// the value it replaced (nil when there was none).
static ADVANCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local was = redis.call('GET', KEYS[1]) \
         redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) \
         return was",
    )
});

/// What one marker write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuity {
    /// The first write of this marker: nothing to compare yet.
    Started,
    /// Redis still held what it last acknowledged (or a later value whose reply was lost).
    Intact,
    /// Redis held `holds` (`None`: no marker at all) instead of `expected`: it went back to the
    /// moment marker `holds` was written (or to before this marker's first write).
    RolledBack { holds: Option<u64>, expected: u64 },
}

/// One marker key and the last value Redis acknowledged for it. The values come from the caller,
/// one count for all of a process's markers, so that one history of positions serves them all.
pub struct Marker {
    key: String,
    /// How long the marker outlives the process's last write, so a stopped bridge leaves no key.
    expiry_ms: u64,
    /// The last value Redis acknowledged.
    acknowledged: Option<u64>,
}

impl Marker {
    pub fn new(key: String, expiry_ms: u64) -> Marker {
        Marker {
            key,
            expiry_ms,
            acknowledged: None,
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Writes `value` (greater than every value written before) and compares what it replaced
    /// with what Redis last acknowledged. A write whose reply was lost may or may not have been
    /// applied; either way Redis then holds at least the last acknowledged value, so only an
    /// older one (or none) is a rollback.
    pub async fn advance<C: ConnectionLike + Send>(
        &mut self,
        value: u64,
        conn: &mut C,
    ) -> Result<Continuity, RedisError> {
        let was: Option<u64> = ADVANCE
            .key(&self.key)
            .arg(value)
            .arg(self.expiry_ms)
            .invoke_async(conn)
            .await?;
        let outcome = match self.acknowledged {
            None => Continuity::Started,
            Some(expected) if was.is_some_and(|was| was >= expected) => Continuity::Intact,
            Some(expected) => Continuity::RolledBack {
                holds: was,
                expected,
            },
        };
        self.acknowledged = Some(value);
        Ok(outcome)
    }
}

/// Where the markers go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One marker for the whole deployment: a standalone server or a Sentinel master (or a
    /// Cluster whose slot map could not be read).
    Single,
    /// One marker per Cluster master that owns slots.
    PerMaster(Vec<MasterSlots>),
}

/// A Cluster master and the slots it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterSlots {
    pub address: String,
    /// Inclusive ranges, in order.
    pub slots: Vec<(u16, u16)>,
}

impl MasterSlots {
    /// The slot its marker lives in: its first.
    pub fn marker_slot(&self) -> Option<u16> {
        self.slots.first().map(|&(lo, _)| lo)
    }

    pub fn owns(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(lo, hi)| (lo..=hi).contains(&slot))
    }
}

/// The marker key of process `instance` in `slot`: its hash tag is the smallest decimal number
/// that hashes to that slot. `None` for a slot beyond the Cluster's 16,384.
pub fn marker_key_in(slot: u16, instance: &str) -> Option<String> {
    // CRC16 spreads the decimal numbers evenly: a slot's first is found within some 10^5 tries.
    (0u32..10_000_000)
        .map(|n| n.to_string())
        .find(|tag| key_slot(tag.as_bytes()) == slot)
        .map(|tag| crate::keys::continuity_key(&format!("{{{tag}}}:{instance}")))
}

impl RedisSink {
    /// Where the markers go now: per master on a Cluster, from `CLUSTER NODES` (every master that
    /// owns slots, also one flagged as failing: its marker must outlive its downtime), else
    /// `CLUSTER SLOTS`. `Err` when neither could be read.
    pub async fn marker_layout(&self) -> Result<Layout, RedisError> {
        let RedisConnection::Cluster(control) = &self.control else {
            return Ok(Layout::Single);
        };
        let mut conn: ClusterConn = control.clone();
        let masters = match cluster::nodes(&mut conn).await {
            Ok(nodes) => nodes
                .into_iter()
                .filter(|n| n.master && !n.slots.is_empty())
                .map(|n| MasterSlots {
                    address: n.address,
                    slots: parse_ranges(&n.slots),
                })
                .collect(),
            Err(e) if is_unreadable(&e) => cluster::masters_from_slots(&mut conn)
                .await?
                .into_iter()
                .map(|m| MasterSlots {
                    address: m.address,
                    slots: m.slots,
                })
                .collect(),
            Err(e) => return Err(e),
        };
        let mut masters: Vec<MasterSlots> = masters;
        for master in &mut masters {
            master.slots.sort();
        }
        masters.retain(|m| m.marker_slot().is_some());
        masters.sort_by_key(|m| m.marker_slot());
        Ok(Layout::PerMaster(masters))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_key_lands_in_the_slot_asked_for() {
        for slot in [0, 1, 5460, 5461, 10922, 10923, 16383] {
            let key = marker_key_in(slot, "abc").unwrap();
            assert_eq!(key_slot(key.as_bytes()), slot, "{key}");
            assert!(key.starts_with("kafka2redis:continuity:{"), "{key}");
        }
        assert_eq!(marker_key_in(16384, "abc"), None);
    }

    #[test]
    fn a_master_owns_its_ranges() {
        let m = MasterSlots {
            address: "a".into(),
            slots: vec![(0, 10), (100, 100)],
        };
        assert_eq!(m.marker_slot(), Some(0));
        assert!(m.owns(5) && m.owns(100) && !m.owns(11) && !m.owns(101));
    }
}
