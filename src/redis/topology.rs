//! One connection type for every topology, so the push path is written once, and the WAIT guard
//! on top of it.
//!
//! [`RedisConnection`] implements the crate's async `ConnectionLike`, so `query_async(&mut conn)`
//! and `Script::invoke_async(&mut conn)` work the same against a standalone server, Sentinel's
//! current master or a Cluster. Every variant is a cheap handle onto shared, self-healing state:
//! clones made by concurrent lanes all pipeline over the same connections. [`GuardedConnection`]
//! adds `redis.wait_replicas` to the writes of the push path.

use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager};
use ::redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use super::cluster::ClusterConn;
use super::sentinel::SentinelConnection;

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

/// `redis.wait_replicas` / `redis.wait_timeout_ms`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WaitGuard {
    pub replicas: u32,
    pub timeout: Duration,
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
/// Other users of the sink's connection (lag, lease, status) get it without the guard.
#[derive(Clone)]
pub(crate) struct GuardedConnection {
    pub inner: RedisConnection,
    pub guard: Option<WaitGuard>,
}

fn is_guarded_write(cmd: &Cmd) -> bool {
    match cmd.args_iter().next() {
        Some(::redis::Arg::Simple(name)) => ["RPUSH", "LPUSH", "EVALSHA", "EVAL", "FCALL"]
            .iter()
            .any(|w| name.eq_ignore_ascii_case(w.as_bytes())),
        _ => false,
    }
}

impl GuardedConnection {
    /// Checks the `WAIT` reply that followed a successful write; Sentinel mode asks the sentinels
    /// again when replicas are missing (a master cut off from them may have been replaced).
    fn check_wait(&self, guard: WaitGuard, reply: &Value) -> RedisResult<()> {
        let acknowledged = match reply {
            Value::Int(n) => *n,
            other => {
                return Err(::redis::make_extension_error(
                    "NOREPLICAS".into(),
                    Some(format!("WAIT answered {other:?}")),
                ))
            }
        };
        if acknowledged >= i64::from(guard.replicas) {
            return Ok(());
        }
        if let RedisConnection::Sentinel(sentinel) = &self.inner {
            sentinel.replicas_missing();
        }
        Err(::redis::make_extension_error(
            "NOREPLICAS".into(),
            Some(format!(
                "WAIT: {acknowledged} of {} replica(s) acknowledged the write within {} ms",
                guard.replicas,
                guard.timeout.as_millis()
            )),
        ))
    }

    fn wait_command(guard: WaitGuard) -> Cmd {
        let mut wait = ::redis::cmd("WAIT");
        wait.arg(guard.replicas)
            .arg(guard.timeout.as_millis() as u64);
        wait
    }
}

impl ConnectionLike for GuardedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let Some(guard) = self.guard.filter(|_| is_guarded_write(cmd)) else {
            return self.inner.req_packed_command(cmd);
        };
        Box::pin(async move {
            let mut pipe = ::redis::pipe();
            pipe.add_command(cmd.clone())
                .add_command(Self::wait_command(guard));
            let mut replies = self.inner.req_packed_commands(&pipe, 0, 2).await?;
            let wait = replies.pop().unwrap_or(Value::Nil);
            let reply = replies.pop().unwrap_or(Value::Nil);
            // A failed write (NOSCRIPT, WRONGTYPE, …) is answered as it would be without the guard.
            if matches!(reply, Value::ServerError(_)) {
                return Ok(reply);
            }
            self.check_wait(guard, &wait)?;
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
        let guard = self
            .guard
            .filter(|_| !pipeline.is_transaction() && pipeline.cmd_iter().any(is_guarded_write));
        let Some(guard) = guard else {
            return self.inner.req_packed_commands(pipeline, offset, count);
        };
        Box::pin(async move {
            let mut pipe = pipeline.clone();
            pipe.add_command(Self::wait_command(guard));
            let mut replies = self
                .inner
                .req_packed_commands(&pipe, offset, count + 1)
                .await?;
            let wait = replies.pop().unwrap_or(Value::Nil);
            if !replies.iter().any(|r| matches!(r, Value::ServerError(_))) {
                self.check_wait(guard, &wait)?;
            }
            Ok(replies)
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}
