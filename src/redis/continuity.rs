//! Noticing that Redis lost writes it had acknowledged.
//!
//! A Redis that restarts from an older snapshot (RDB only, Redis's default persistence), a flush,
//! or a failover to a replica that lagged hands back an older data set without an error: the lists
//! and the exactly-once records roll back together, and nothing tells the bridge. A `run_id` that
//! changed says only that Redis restarted — it changes on a restart from an intact AOF too.
//!
//! So the bridge compares what Redis holds with what it last acknowledged: it counts up a marker
//! key of its own, one write at a time, through the push path's connection (with its WAIT guard,
//! so the marker is replicated like the pushes it stands for). Each write returns the value it
//! replaced; anything other than the last value Redis acknowledged (or one whose reply was lost)
//! means Redis went back to the moment it held that older value. Every write acknowledged before
//! that marker was sent is still there; what was acknowledged after it may be gone.
//!
//! On a Redis Cluster the marker lives on one master; a rollback of another master is noticed by
//! the exactly-once lanes' refused pushes and the master-change watch, not here.

use redis::aio::ConnectionLike;
use redis::{RedisError, Script};
use std::sync::LazyLock;

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
    /// The first write of this process: nothing to compare yet.
    Started,
    /// Redis still held what it last acknowledged.
    Intact,
    /// Redis held `holds` (`None`: no marker at all) instead of `expected`: it went back to the
    /// moment marker `holds` was written (or to before this process's first marker).
    RolledBack { holds: Option<u64>, expected: u64 },
}

/// The marker of one bridge process and how far it has counted.
pub struct Marker {
    key: String,
    /// How long the marker outlives the process's last write, so a stopped bridge leaves no key.
    expiry_ms: u64,
    /// The last value Redis acknowledged.
    acknowledged: Option<u64>,
    /// A value sent whose reply was lost: Redis may or may not have applied it.
    unanswered: Option<u64>,
}

impl Marker {
    pub fn new(key: String, expiry_ms: u64) -> Marker {
        Marker {
            key,
            expiry_ms,
            acknowledged: None,
            unanswered: None,
        }
    }

    /// The value the next [`Marker::advance`] writes: every write acknowledged before it is sent
    /// is safe for as long as Redis holds this value or a later one.
    pub fn next(&self) -> u64 {
        self.acknowledged.max(self.unanswered).map_or(1, |v| v + 1)
    }

    /// Writes the next value and compares what it replaced with what Redis last acknowledged.
    pub async fn advance<C: ConnectionLike + Send>(
        &mut self,
        conn: &mut C,
    ) -> Result<Continuity, RedisError> {
        let value = self.next();
        let reply: Result<Option<u64>, RedisError> = ADVANCE
            .key(&self.key)
            .arg(value)
            .arg(self.expiry_ms)
            .invoke_async(conn)
            .await;
        let was = match reply {
            Ok(was) => was,
            Err(e) => {
                self.unanswered = Some(value);
                return Err(e);
            }
        };
        let outcome = match self.acknowledged {
            None => Continuity::Started,
            Some(expected) => {
                let kept = was == Some(expected) || (was.is_some() && was == self.unanswered);
                if kept {
                    Continuity::Intact
                } else {
                    Continuity::RolledBack {
                        holds: was,
                        expected,
                    }
                }
            }
        };
        self.acknowledged = Some(value);
        self.unanswered = None;
        Ok(outcome)
    }
}
