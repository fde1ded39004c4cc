//! One connection type for every topology, so the push path is written once.
//!
//! [`RedisConnection`] implements the crate's async `ConnectionLike`, so `query_async(&mut conn)`
//! and `Script::invoke_async(&mut conn)` work the same against a standalone server, Sentinel's
//! current master or a Cluster. Every variant is a cheap handle onto shared, self-healing state:
//! clones made by concurrent lanes all pipeline over the same connections.

use ::redis::aio::{ConnectionLike, ConnectionManager};
use ::redis::{Cmd, Pipeline, RedisFuture, Value};

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
