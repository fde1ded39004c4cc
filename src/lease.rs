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
//! Redis ([`Lease::fence`]): every list has a fence key holding the holder's fence value,
//! `"<fencing number> <token>"`, and a push that presents another value is refused by the push
//! script, so a holder that was replaced cannot land one. The fencing number is taken with the
//! lease, as max(`INCR` of a counter, the highest number any fence holds + 1), so it only grows even
//! when the counter is lost; a fence is written only over a lower (or equal) number, so it only
//! moves forward.
//!
//! The fence follows the live state: a fence key can vanish while the lease survives (an operator's
//! `DEL`, eviction, a replica promoted before the fence reached it). A lane whose push the fence
//! refused tells the keeper ([`Gate::refuse`]), which verifies the lease at once — still ours: it
//! writes the fences again and pushing goes on; not ours, or a fence holds a higher number: it
//! steps down.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::keys::fencing_counter_key;
use crate::logging::RateLimit;
use crate::observe::state::Gate;
use crate::redis::scripts::{FENCE_WRITE, FENCING_NUMBER, LEASE_EXTEND, LEASE_RELEASE};
use crate::redis::RedisConnection;

/// A standby retries every tenth of the TTL; while Redis is unreachable a line now and then is enough.
static LEASE_ERRORS: RateLimit = RateLimit::new(Duration::from_secs(30));

/// A lease this instance holds (or held until it was lost).
pub struct Lease {
    conn: RedisConnection,
    key: String,
    token: String,
    ttl: Duration,
    /// The fence keys this holder writes, and their fencing number once [`Lease::fence`] took it.
    fences: Vec<String>,
    number: u64,
}

/// Why keeping the lease ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Kept {
    /// `stop` fired while the lease was held.
    Stopped,
    /// The key expired or holds another token, or a fence holds a newer holder's value: someone
    /// else may be pushing now.
    Lost,
}

/// How writing the fences ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Fenced {
    /// Every fence holds this holder's value: pushes may start.
    Written,
    /// A fence holds a higher fencing number (or, when healing, an older release's token): another
    /// holder came after this one, which must not push.
    Superseded,
    /// `stop` fired first.
    Stopped,
}

/// What a fence key holds, as [`FENCE_WRITE`] reports it.
enum FenceWrite {
    Written,
    /// It holds this, which must not be overwritten.
    Newer(String),
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
            fences: Vec::new(),
            number: 0,
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

    /// The value this holder's fences hold and its pushes present: `"<fencing number> <token>"`.
    pub fn fence_value(&self) -> String {
        format!("{} {}", self.number, self.token)
    }

    /// Takes a fencing number and writes this holder's fence value into every fence key (one per
    /// list, in the list's Cluster slot) before it pushes: from then on Redis refuses pushes that
    /// present an older holder's value, even ones that were already on the wire. A fence that holds
    /// an older release's value (a token without a number) is overwritten. Retried until it
    /// succeeds, finds a newer holder's fence, or `stop` fires.
    pub async fn fence(&mut self, keys: &[String], stop: &CancellationToken) -> Fenced {
        self.fences = keys.to_vec();
        let retry = (self.ttl / 10).max(Duration::from_millis(50));
        loop {
            let written = match self.take_number().await {
                Ok(number) => {
                    self.number = number;
                    self.write_fences(true).await
                }
                Err(e) => Err(e),
            };
            match written {
                Ok(Fenced::Written) => {
                    info!(key = %self.key, fencing_number = self.number, fences = self.fences.len(),
                          "fences written: pushes present fencing number {}", self.number);
                    return Fenced::Written;
                }
                Ok(outcome) => return outcome,
                Err(e) => {
                    if let Some(held) = LEASE_ERRORS.check() {
                        warn!(key = %self.key, error = %e, suppressed = held, "could not write the lease's fence keys; retrying");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = stop.cancelled() => return Fenced::Stopped,
            }
        }
    }

    /// max(`INCR` of the fencing counter, the highest number any fence holds + 1).
    async fn take_number(&self) -> Result<u64, ::redis::RedisError> {
        let mut conn = self.conn.clone();
        let mut highest = 0u64;
        for key in &self.fences {
            let held: Option<String> = match redis::cmd("GET").arg(key).query_async(&mut conn).await
            {
                Ok(held) => held,
                // Not a string: the fence write names it (below); it holds no number.
                Err(e) if e.code() == Some("WRONGTYPE") => None,
                Err(e) => return Err(e),
            };
            highest = highest.max(held.as_deref().and_then(fencing_number).unwrap_or(0));
        }
        FENCING_NUMBER
            .key(fencing_counter_key(&self.key))
            .arg(highest)
            .invoke_async(&mut conn)
            .await
    }

    /// Writes the fence value into every fence key that holds no higher number. `overwrite_old`:
    /// a fence holding an older release's value (no number) is overwritten too — right after the
    /// lease was taken; later such a value means an older release's instance took the lease.
    async fn write_fences(&self, overwrite_old: bool) -> Result<Fenced, ::redis::RedisError> {
        let mut conn = self.conn.clone();
        let value = self.fence_value();
        // Every fence is looked at before any is written: a fence that vanished must not take
        // this holder's value once another fence says a newer holder came (each write alone can
        // only compare with what its own key holds).
        for key in &self.fences {
            let held: Option<String> = match redis::cmd("GET").arg(key).query_async(&mut conn).await
            {
                Ok(held) => held,
                Err(e) if e.code() == Some("WRONGTYPE") => None, // named by the write below
                Err(e) => return Err(e),
            };
            let newer = held
                .as_deref()
                .is_some_and(|held| match fencing_number(held) {
                    Some(number) => number > self.number,
                    None => !overwrite_old,
                });
            if newer {
                warn!(key = %self.key, fence = %key, held = held.as_deref().unwrap_or_default(), ours = %value,
                      "a fence holds a newer holder's value: this instance does not push");
                return Ok(Fenced::Superseded);
            }
        }
        for key in &self.fences {
            let reply: Vec<redis::Value> = FENCE_WRITE
                .key(key)
                .arg(self.number)
                .arg(&value)
                .arg(if overwrite_old { "1" } else { "0" })
                .invoke_async(&mut conn)
                .await?;
            match parse_fence_write(&reply)? {
                FenceWrite::Written => {}
                FenceWrite::Newer(held) => {
                    warn!(key = %self.key, fence = %key, held = %held, ours = %value,
                          "a fence holds a newer holder's value: this instance does not push");
                    return Ok(Fenced::Superseded);
                }
            }
        }
        Ok(Fenced::Written)
    }

    /// Renews the lease every third of the TTL while `stop` has not fired, keeping `gate` open
    /// while renewals succeed and closing it the moment one does not. A lane that finds its push
    /// refused by a fence refuses the gate: the lease is verified (and renewed) at once, and while
    /// it is still ours the fences are written again and the gate opens; a gate closed for any
    /// other reason is opened again the same way, fences first.
    pub async fn keep(&self, gate: &Gate, stop: &CancellationToken) -> Kept {
        let every = self.ttl / 3;
        gate.open(Some(self.fence_value().into()));
        let mut renew_at = Instant::now() + every;
        loop {
            let refused = tokio::select! {
                _ = tokio::time::sleep_until(renew_at) => false,
                _ = gate.refused() => true,
                _ = stop.cancelled() => return Kept::Stopped,
            };
            if refused {
                // Closed, not refused, while this runs: the next refusal is a new one.
                gate.close();
                info!(key = %self.key, "a push was refused by a fence: verifying the lease");
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
            renew_at = Instant::now() + every;
            match renewal {
                Ok(Ok(1)) if gate.is_open() => {}
                Ok(Ok(1)) => match self.reopen(gate).await {
                    Ok(Fenced::Superseded) => {
                        self.release().await;
                        return Kept::Lost;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!(key = %self.key, error = %e, "could not write the fences again: pushing paused until it succeeds");
                    }
                },
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

    /// The lease was just verified as ours while the gate is closed: writes the fences again (a
    /// fence may have vanished meanwhile) and opens the gate.
    async fn reopen(&self, gate: &Gate) -> Result<Fenced, ::redis::RedisError> {
        let written = self.write_fences(false).await?;
        if written == Fenced::Written {
            info!(key = %self.key, fencing_number = self.number,
                  "lease verified and fences written again: pushing resumes");
            gate.open(Some(self.fence_value().into()));
        }
        Ok(written)
    }

    /// [`Lease::release`], given up after `within` (the lease then expires by itself).
    pub async fn release_within(&self, within: Duration) {
        if tokio::time::timeout(within, self.release()).await.is_err() {
            warn!(key = %self.key, within_ms = within.as_millis() as u64,
                  "Redis did not answer the lease's release in time; it expires by itself");
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

/// The fencing number a fence value holds (`None` for an older release's value: a token alone).
fn fencing_number(value: &str) -> Option<u64> {
    value.split_once(' ')?.0.parse().ok()
}

fn parse_fence_write(reply: &[redis::Value]) -> Result<FenceWrite, ::redis::RedisError> {
    let int = |v: &redis::Value| -> Result<i64, ::redis::RedisError> {
        Ok(redis::from_redis_value_ref(v)?)
    };
    let text = |v: &redis::Value| -> Result<String, ::redis::RedisError> {
        Ok(redis::from_redis_value_ref(v)?)
    };
    match reply {
        [status, _] if int(status)? == 1 => Ok(FenceWrite::Written),
        [status, held] if int(status)? == 0 => Ok(FenceWrite::Newer(text(held)?)),
        [_, key, found, _] => {
            let (key, found) = (text(key)?, text(found)?);
            error!(fence = %key, found = %found, "the fence key {key:?} is a {found}, not a string: delete or rename it");
            Err(::redis::RedisError::from((
                ::redis::ErrorKind::Client,
                "fence key of the wrong type",
                format!("{key} is a {found}"),
            )))
        }
        _ => Err(::redis::RedisError::from((
            ::redis::ErrorKind::UnexpectedReturnType,
            "fence script: unexpected reply",
        ))),
    }
}

#[cfg(test)]
mod tests;
