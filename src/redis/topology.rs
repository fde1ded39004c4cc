//! One connection type for every topology, so the push path is written once, and the WAIT guard
//! on top of it.
//!
//! [`RedisConnection`] implements the crate's async `ConnectionLike`, so `query_async(&mut conn)`
//! and `Script::invoke_async(&mut conn)` work the same against a standalone server, Sentinel's
//! current master or a Cluster. Every variant is a cheap handle onto shared, self-healing state:
//! clones made by concurrent lanes all pipeline over the same connections. [`GuardedConnection`]
//! adds the WAIT guard ([`super::guard`]) to the writes of the push path.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager};
use ::redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use tracing::warn;

use super::cluster::ClusterConn;
use super::guard::WaitGuard;
use super::sentinel::SentinelConnection;
use crate::logging::RateLimit;

#[derive(Clone)]
pub enum RedisConnection {
    /// Reconnects to the same address by itself.
    Standalone(ConnectionManager),
    /// Asks the sentinels for the master again when it fails.
    Sentinel(SentinelConnection),
    /// Follows the slot map, `MOVED`/`ASK` and failovers.
    Cluster(ClusterConn),
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Standalone(c) => c.req_packed_command(cmd),
            RedisConnection::Sentinel(c) => c.req_packed_command(cmd),
            RedisConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConnection::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConnection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Standalone(c) => c.get_db(),
            RedisConnection::Sentinel(c) => c.get_db(),
            RedisConnection::Cluster(c) => c.get_db(),
        }
    }
}

/// The push path's connection: with the WAIT guard on, every write it sends carries a `WAIT` in the
/// same pipeline, so both travel on the same connection to the same node.
///
/// That is what makes the guard sound. `WAIT` only covers writes made earlier on its own connection;
/// sent separately, it can land elsewhere — the cluster client retries a command whose connection
/// broke on a fresh connection, possibly to the newly promoted master, where `WAIT` has nothing to
/// wait for and confirms at once (a test that froze a replica and killed its master lost a batch that
/// way). As one pipeline, a retry repeats the write and the `WAIT` together.
///
/// Only data writes are guarded (`RPUSH`, `LPUSH`, `EVAL`, `EVALSHA`, `FCALL`); reads pass through.
/// How many replicas a write needs is asked of the [`WaitGuard`] at each write, since it follows the
/// topology. Other users (lag, lease, status) have a connection of their own, which a `WAIT` never
/// holds up ([`super::RedisSink::connection`]).
#[derive(Clone)]
pub(crate) struct GuardedConnection {
    pub inner: RedisConnection,
    pub guard: Arc<WaitGuard>,
    /// The same deployment without pushes, for looking into a failure (a stuck slot migration).
    pub control: RedisConnection,
    /// False for a lane's batches sent ahead of the last one of its window: the `WAIT` that
    /// follows the window's last batch covers them too (`WAIT` waits for the replication offset
    /// of everything written before it), and the lane stores their offsets only after it returned.
    pub wait: bool,
}

/// A stuck slot migration is reported at most this often.
static MIGRATION_RETRIES: RateLimit = RateLimit::new(Duration::from_secs(30));

fn is_guarded_write(cmd: &Cmd) -> bool {
    match cmd.args_iter().next() {
        Some(::redis::Arg::Simple(name)) => ["RPUSH", "LPUSH", "EVALSHA", "EVAL", "FCALL"]
            .iter()
            .any(|w| name.eq_ignore_ascii_case(w.as_bytes())),
        _ => false,
    }
}

/// Whether a reply or error is `TRYAGAIN`: a multi-key script met a slot that is being migrated
/// with some of its keys moved and some not. The lane retries the batch with backoff; the
/// migration has to finish (or be undone) before it can land.
fn is_try_again(code: Option<&str>) -> bool {
    code == Some("TRYAGAIN")
}

fn report_try_again(cmd: &Cmd) {
    if let Some(held) = MIGRATION_RETRIES.check() {
        let key = super::guard::first_key(cmd)
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        warn!(key, suppressed = held,
              "Redis Cluster answered TRYAGAIN: the slot of this list is being migrated and its keys are \
               split between two nodes; the push is retried with backoff until the migration finishes \
               (redis-cli --cluster fix completes a stuck one)");
    }
}

/// A failed multi-key script is looked into at most this often.
static MIGRATION_PROBES: RateLimit = RateLimit::new(Duration::from_secs(5));

/// Whether `cmd` is a script over more than one key (exactly-once, a fence, a companion).
fn is_multi_key_script(cmd: &Cmd) -> bool {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        ::redis::Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let is_script = args.next().is_some_and(|name| {
        [&b"EVALSHA"[..], b"EVAL", b"FCALL"]
            .iter()
            .any(|w| name.eq_ignore_ascii_case(w))
    });
    let numkeys = args
        .nth(1)
        .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok());
    is_script && numkeys.is_some_and(|n| n > 1)
}

/// The cluster client retries `TRYAGAIN` itself until the response timeout, so a multi-key script
/// in a slot that is being migrated fails with a timeout that does not say why. After such a failure
/// the master that owns the list's slot is asked: its own line in `CLUSTER NODES` marks a slot it is
/// migrating (`[slot->-target]`).
fn look_into_failed_script(control: &RedisConnection, cmd: &Cmd) {
    let RedisConnection::Cluster(conn) = control else {
        return;
    };
    let Some(key) = super::guard::first_key(cmd).map(<[u8]>::to_vec) else {
        return;
    };
    if MIGRATION_PROBES.check().is_none() {
        return;
    }
    let mut conn = conn.clone();
    tokio::spawn(async move {
        use ::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
        let slot = super::guard::key_slot(&key);
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
            slot,
            SlotAddr::Master,
        )));
        let nodes = conn
            .route_command(::redis::cmd("CLUSTER").arg("NODES").clone(), route)
            .await
            .and_then(Value::extract_error)
            .and_then(|v| ::redis::from_redis_value::<String>(v).map_err(Into::into));
        let Ok(nodes) = nodes else {
            return;
        };
        let marker = format!("[{slot}->-");
        let migrating = nodes
            .lines()
            .filter(|line| line.contains("myself"))
            .any(|line| line.split_whitespace().any(|f| f.starts_with(&marker)));
        if migrating {
            if let Some(held) = MIGRATION_RETRIES.check() {
                warn!(key = %String::from_utf8_lossy(&key), slot, suppressed = held,
                      "Redis Cluster answered TRYAGAIN: the slot of this list is being migrated and its \
                       keys are split between two nodes; the push is retried with backoff until the \
                       migration finishes (redis-cli --cluster fix completes a stuck one)");
            }
        }
    });
}

impl GuardedConnection {
    /// Checks the `WAIT` reply that followed a successful write; Sentinel mode asks the sentinels
    /// again when replicas are missing (a master cut off from them may have been replaced).
    fn check_wait(&self, required: u32, reply: &Value) -> RedisResult<()> {
        let acknowledged = match reply {
            Value::Int(n) => *n,
            other => {
                return Err(::redis::make_extension_error(
                    "NOREPLICAS".into(),
                    Some(format!("WAIT answered {other:?}")),
                ))
            }
        };
        if acknowledged >= i64::from(required) {
            self.guard.acknowledged();
            return Ok(());
        }
        self.guard.unacknowledged(acknowledged, required);
        if let RedisConnection::Sentinel(sentinel) = &self.inner {
            sentinel.replicas_missing();
        }
        Err(::redis::make_extension_error(
            "NOREPLICAS".into(),
            Some(format!(
                "WAIT: {acknowledged} of {required} replica(s) acknowledged the write within {} ms",
                self.guard.timeout.as_millis()
            )),
        ))
    }

    fn wait_command(&self, required: u32) -> Cmd {
        let mut wait = ::redis::cmd("WAIT");
        wait.arg(required)
            .arg(self.guard.timeout.as_millis() as u64);
        wait
    }

    /// How many replicas `cmd` needs (0: none).
    fn required(&self, cmd: &Cmd) -> u32 {
        if self.wait && is_guarded_write(cmd) {
            self.guard.required(cmd)
        } else {
            0
        }
    }
}

fn note_try_again<T>(cmd: &Cmd, result: &RedisResult<T>, replies: &[Value]) {
    let failed = match result {
        Err(e) => is_try_again(e.code()),
        Ok(_) => replies
            .iter()
            .any(|r| matches!(r, Value::ServerError(e) if is_try_again(Some(e.code())))),
    };
    if failed {
        report_try_again(cmd);
    }
}

impl ConnectionLike for GuardedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let required = self.required(cmd);
        Box::pin(async move {
            if required == 0 {
                let result = self.inner.req_packed_command(cmd).await;
                let reply = result.as_ref().map(std::slice::from_ref).unwrap_or(&[]);
                note_try_again(cmd, &result, reply);
                if result.is_err() && is_multi_key_script(cmd) {
                    look_into_failed_script(&self.control, cmd);
                }
                return result;
            }
            let mut pipe = ::redis::pipe();
            pipe.add_command(cmd.clone())
                .add_command(self.wait_command(required));
            let result = self.inner.req_packed_commands(&pipe, 0, 2).await;
            note_try_again(cmd, &result, result.as_deref().unwrap_or(&[]));
            if result.is_err() && is_multi_key_script(cmd) {
                look_into_failed_script(&self.control, cmd);
            }
            let mut replies = result?;
            let wait = replies.pop().unwrap_or(Value::Nil);
            let reply = replies.pop().unwrap_or(Value::Nil);
            // A failed write (NOSCRIPT, WRONGTYPE, …) is answered as it would be without the guard.
            if matches!(reply, Value::ServerError(_)) {
                return Ok(reply);
            }
            self.check_wait(required, &wait)?;
            Ok(reply)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        // WAIT inside MULTI/EXEC would not wait; transactions pass through unguarded.
        let required = if pipeline.is_transaction() {
            0
        } else {
            pipeline
                .cmd_iter()
                .map(|cmd| self.required(cmd))
                .max()
                .unwrap_or(0)
        };
        if required == 0 {
            return self.inner.req_packed_commands(pipeline, offset, count);
        }
        Box::pin(async move {
            let mut pipe = pipeline.clone();
            pipe.add_command(self.wait_command(required));
            let mut replies = self
                .inner
                .req_packed_commands(&pipe, offset, count + 1)
                .await?;
            let wait = replies.pop().unwrap_or(Value::Nil);
            if !replies.iter().any(|r| matches!(r, Value::ServerError(_))) {
                self.check_wait(required, &wait)?;
            }
            Ok(replies)
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}
