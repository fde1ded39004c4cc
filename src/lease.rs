//! The exclusive lease (`start_lock`): one instance pushes, the others wait as hot standbys.
//!
//! The old tool's lock had no owner: anyone could extend or delete it, and a second instance
//! exited. Here the lease is a Redis string holding a unique owner token with a TTL:
//!
//! - take: `SET key token NX PX ttl`, retried by a standby every tenth of the TTL;
//! - keep: every third of the TTL, extend it *only if it still holds our token* (one Lua script,
//!   compare-and-extend). A renewal that fails, times out or finds another token closes the push
//!   gate at once — well before the TTL could have run out on the last good renewal;
//! - give back: on a clean stop, delete it only if it still holds our token (compare-and-delete),
//!   so a standby takes over at its next try instead of waiting out the TTL.
//!
//! Redis is the single source of truth, so this is as safe as that Redis: with asynchronous
//! replication a failover can lose a fresh lease (docs/operations.md). Pushes are fenced inside
//! Redis by the holder's token ([`Lease::fence`]), so a holder that was replaced cannot land one.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::logging::RateLimit;
use crate::observe::state::Gate;
use crate::redis::scripts::{LEASE_EXTEND, LEASE_RELEASE};
use crate::redis::RedisConnection;

/// A standby retries every tenth of the TTL; while Redis is unreachable a line now and then is enough.
static LEASE_ERRORS: RateLimit = RateLimit::new(Duration::from_secs(30));

/// A lease this instance holds (or held until it was lost).
pub struct Lease {
    conn: RedisConnection,
    key: String,
    token: String,
    ttl: Duration,
}

/// Why keeping the lease ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Kept {
    /// `stop` fired while the lease was held.
    Stopped,
    /// The key expired or holds another token: someone else may be pushing now.
    Lost,
}

impl Lease {
    /// A unique owner token: host, process id and a random-enough suffix, so that a log line (and
    /// `GET key`) says who holds the lease.
    pub fn token() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        format!("{host}:{}:{nanos:08x}", std::process::id())
    }

    /// Waits as a standby until the lease is ours; `None` if `stop` fired first.
    pub async fn acquire(
        conn: RedisConnection,
        key: &str,
        ttl: Duration,
        stop: &CancellationToken,
    ) -> Option<Lease> {
        let lease = Lease {
            conn,
            key: key.to_string(),
            token: Lease::token(),
            ttl,
        };
        let retry = (ttl / 10).max(Duration::from_millis(50));
        let mut announced = false;
        loop {
            let mut conn = lease.conn.clone();
            let taken: Result<Option<String>, _> = redis::cmd("SET")
                .arg(&lease.key)
                .arg(&lease.token)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query_async(&mut conn)
                .await;
            match taken {
                Ok(Some(_)) => {
                    info!(key = %lease.key, token = %lease.token, ttl_ms = ttl.as_millis() as u64,
                          "lease taken: this instance pushes");
                    return Some(lease);
                }
                Ok(None) if !announced => {
                    announced = true;
                    let holder: Option<String> = redis::cmd("GET")
                        .arg(&lease.key)
                        .query_async(&mut conn)
                        .await
                        .unwrap_or(None);
                    info!(key = %lease.key, holder = holder.as_deref().unwrap_or("?"),
                          "lease held by another instance: waiting as a standby");
                }
                Ok(None) => {}
                Err(e) => {
                    if let Some(held) = LEASE_ERRORS.check() {
                        warn!(key = %lease.key, error = %e, suppressed = held, "could not try the lease; retrying");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = stop.cancelled() => return None,
            }
        }
    }

    /// Writes this holder's token into every fence key (one per list, in the list's Cluster slot)
    /// before it pushes: from then on Redis refuses pushes that present an older holder's token,
    /// even ones that were already on the wire. Retried until it succeeds or `stop` fires.
    pub async fn fence(&self, keys: &[String], stop: &CancellationToken) -> bool {
        let retry = (self.ttl / 10).max(Duration::from_millis(50));
        loop {
            let mut conn = self.conn.clone();
            let mut written = Ok(());
            for key in keys {
                written = redis::cmd("SET")
                    .arg(key)
                    .arg(&self.token)
                    .query_async::<()>(&mut conn)
                    .await;
                if written.is_err() {
                    break;
                }
            }
            match written {
                Ok(()) => return true,
                Err(e) => {
                    if let Some(held) = LEASE_ERRORS.check() {
                        warn!(key = %self.key, error = %e, suppressed = held, "could not write the lease's fence keys; retrying");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = stop.cancelled() => return false,
            }
        }
    }

    /// Renews the lease every third of the TTL while `stop` has not fired, keeping `gate` open
    /// while renewals succeed and closing it the moment one does not.
    pub async fn keep(&self, gate: &Gate, stop: &CancellationToken) -> Kept {
        let every = self.ttl / 3;
        gate.open(Some(self.token.as_str().into()));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => return Kept::Stopped,
            }
            let mut conn = self.conn.clone();
            let renewal = tokio::time::timeout(
                every,
                LEASE_EXTEND
                    .key(&self.key)
                    .arg(&self.token)
                    .arg(self.ttl.as_millis() as u64)
                    .invoke_async::<i64>(&mut conn),
            )
            .await;
            match renewal {
                Ok(Ok(1)) => {
                    if !gate.is_open() {
                        info!(key = %self.key, "lease renewed again: pushing resumes");
                        gate.open(Some(self.token.as_str().into()));
                    }
                }
                Ok(Ok(_)) => {
                    gate.close();
                    warn!(key = %self.key, token = %self.token,
                          "lease lost (expired or taken by another instance): pushing stopped");
                    return Kept::Lost;
                }
                Ok(Err(e)) => {
                    gate.close();
                    warn!(key = %self.key, error = %e, "lease renewal failed: pushing paused until it succeeds");
                }
                Err(_) => {
                    gate.close();
                    warn!(key = %self.key, "lease renewal timed out: pushing paused until it succeeds");
                }
            }
        }
    }

    /// Gives the lease back if it is still ours, so a standby takes over at once.
    pub async fn release(&self) {
        let mut conn = self.conn.clone();
        match LEASE_RELEASE
            .key(&self.key)
            .arg(&self.token)
            .invoke_async::<i64>(&mut conn)
            .await
        {
            Ok(1) => info!(key = %self.key, "lease released"),
            Ok(_) => {}
            Err(e) => {
                warn!(key = %self.key, error = %e, "could not release the lease; it expires by itself")
            }
        }
    }
}
