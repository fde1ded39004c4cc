//! The Redis side: connecting to the configured topology and pushing a lane's batch.
//!
//! [`RedisSink`] is cheap to clone and shared by every lane; all lanes' batches are pipelined over
//! shared multiplexed connections that heal by themselves: a standalone server is reconnected, a
//! Sentinel master is asked for again when it fails ([`sentinel`]), a Cluster follows its slot map
//! and failovers ([`cluster`]). With the WAIT guard, each push also needs replicas to confirm it
//! ([`topology::GuardedConnection`]); how many follows the live topology ([`guard`]). Everything
//! else — lease, lag, status, the topology reads — goes over connections of its own, which a
//! push's `WAIT` never holds up. A failed push is reported to the lane, which keeps the batch and
//! retries it ([`crate::pipeline::lane`]); nothing here drops data.

pub mod acl;
pub mod cluster;
pub mod continuity;
pub mod eviction;
pub mod guard;
pub mod masters;
mod node;
pub(crate) mod scripts;
pub mod sentinel;
pub mod stream_groups;
pub mod topology;

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::ConnectionManagerConfig;
use ::redis::{ErrorKind, RedisError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use guard::{Topology, WaitGuard};
use masters::MasterChanges;
use topology::GuardedConnection;
pub use topology::RedisConnection;

use crate::config::{RedisConfig, RedisTopology};
use node::NodeSettings;

/// A connected Redis deployment that batches are pushed to.
#[derive(Clone)]
pub struct RedisSink {
    /// The push path's connection, with the WAIT guard.
    pub(crate) conn: GuardedConnection,
    /// The same deployment over other connections, for everything but pushes.
    control: RedisConnection,
    /// Deliveries in flight, across all lanes (see [`PUSHES_IN_FLIGHT`]).
    pushes: Arc<Semaphore>,
    /// Announced whenever a master changes ([`masters`]).
    pub(crate) masters: MasterChanges,
}

/// How many lanes may have a delivery (a window of batches) in flight at once. Redis runs commands one at a time, so a
/// deeper pipeline than this gains nothing, while every delivery in flight holds its batch twice
/// more (the command's arguments and their encoding) and lets its lane gather the next batch: with
/// hundreds of busy partitions, unbounded, those copies were most of the bridge's memory.
pub const PUSHES_IN_FLIGHT: usize = 32;

/// Why connecting failed: worth retrying (Redis is down or starting) or not (wrong credentials,
/// a master name the sentinels do not know, unusable TLS files).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Retryable(RedisError),
    #[error("{0}")]
    Fatal(String),
}

impl ConnectError {
    /// The same error with any of `secrets` that its text echoes masked.
    fn scrubbed(self, secrets: &[String]) -> ConnectError {
        match self {
            ConnectError::Fatal(why) => ConnectError::Fatal(crate::redact::scrub(&why, secrets)),
            ConnectError::Retryable(e) => {
                let text = e.to_string();
                let clean = crate::redact::scrub(&text, secrets);
                if clean == text {
                    ConnectError::Retryable(e)
                } else {
                    ConnectError::Retryable(RedisError::from(std::io::Error::other(clean)))
                }
            }
        }
    }
}

impl RedisSink {
    /// Connects once; the caller decides whether to retry a [`ConnectError::Retryable`]. The
    /// error's text never holds a configured password.
    pub async fn connect(config: &RedisConfig) -> Result<RedisSink, ConnectError> {
        Self::open(config)
            .await
            .map_err(|e| e.scrubbed(&config.secrets()))
    }

    async fn open(config: &RedisConfig) -> Result<RedisSink, ConnectError> {
        let fatal = |e: RedisError| ConnectError::Fatal(e.to_string());
        if config
            .tls
            .as_ref()
            .is_some_and(|tls| tls.insecure_skip_verify)
        {
            warn!("redis.tls_insecure_skip_verify is set: Redis server certificates are NOT verified; \
                   anyone on the network path can read and change what is pushed. Use it for tests only");
        }
        let data = NodeSettings::data(config).map_err(fatal)?;
        let masters = MasterChanges::default();
        let topology = match &config.topology {
            RedisTopology::Standalone { .. } => Topology::Standalone,
            RedisTopology::Sentinel { .. } => Topology::Sentinel,
            RedisTopology::Cluster { .. } => Topology::Cluster,
        };
        let guard = Arc::new(WaitGuard::new(
            config.wait_replicas,
            config.wait_timeout,
            topology,
        ));
        let (conn, control) = match &config.topology {
            RedisTopology::Standalone { address } => {
                let client = data.client(address).map_err(fatal)?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    .set_response_timeout(Some(config.response_timeout))
                    // Reconnects happen in the background; a lane whose push failed retries on its
                    // own schedule, so the manager itself need not retry for long.
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(2));
                let mut manager = client
                    .get_connection_manager_with_config(manager_config.clone())
                    .await
                    .map_err(classify)?;
                if is_sentinel(&mut manager).await {
                    return Err(ConnectError::Fatal(format!(
                        "{} is a Redis Sentinel, not a Redis server: to reach Redis through \
                         Sentinel, set redis.mode = \"sentinel\", redis.master_name and the sentinels \
                         in redis.addresses (in the old conf.json: list the sentinels in redis_host \
                         with one redis_port, and set sentinel_master_name)",
                        crate::redact::redact_url(address)
                    )));
                }
                let control = client
                    .get_connection_manager_with_config(manager_config)
                    .await
                    .map_err(classify)?;
                (
                    RedisConnection::Standalone(manager),
                    RedisConnection::Standalone(control),
                )
            }
            RedisTopology::Sentinel {
                master_name,
                addresses,
            } => {
                let sentinel = NodeSettings::sentinel(config).map_err(fatal)?;
                let conn = sentinel::SentinelConnection::connect(
                    master_name,
                    addresses,
                    sentinel,
                    data,
                    masters.clone(),
                    guard.clone(),
                )
                .await
                .map_err(classify)?;
                let control = conn.control();
                (
                    RedisConnection::Sentinel(conn),
                    RedisConnection::Sentinel(control),
                )
            }
            RedisTopology::Cluster { addresses } => {
                let conn = cluster::connect(addresses, &data).await.map_err(classify)?;
                let mut control = cluster::connect(addresses, &data).await.map_err(classify)?;
                // Decided before the first push, then kept current by the master-change watch.
                match cluster::masters(&mut control).await {
                    Ok(view) => guard.observe_cluster(Ok(&view)),
                    Err((command, e)) => guard.observe_cluster(Err((command, &e))),
                }
                masters.follow_cluster(control.clone(), guard.clone());
                (
                    RedisConnection::Cluster(conn),
                    RedisConnection::Cluster(control),
                )
            }
        };
        Ok(RedisSink {
            conn: GuardedConnection {
                inner: conn,
                guard,
                control: control.clone(),
                wait: true,
            },
            control,
            pushes: Arc::new(Semaphore::new(PUSHES_IN_FLIGHT)),
            masters,
        })
    }

    /// Waits for a turn to deliver a batch; the delivery holds the permit until it settled.
    pub async fn delivery_turn(&self) -> OwnedSemaphorePermit {
        self.pushes
            .clone()
            .acquire_owned()
            .await
            .expect("the push semaphore is never closed")
    }

    /// Changes each time a master changes (a failover): exactly-once lanes then re-read their
    /// offset records.
    pub fn master_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.masters.watch()
    }

    /// Advances the continuity marker through the push path, with the WAIT guard like the pushes
    /// it stands for, so that a failover to a replica keeps the marker exactly when it keeps them.
    pub async fn advance_marker(
        &self,
        marker: &mut continuity::Marker,
        value: u64,
    ) -> Result<continuity::Continuity, RedisError> {
        let mut conn = self.conn.clone();
        marker.advance(value, &mut conn).await
    }

    /// Tells the exactly-once lanes to re-read their records now, as after a failover.
    pub fn announce_master_change(&self) {
        self.masters.announce();
    }

    /// The same sink for writes that a later write's `WAIT` covers: a lane's batches sent ahead
    /// of the last one of its window go without a `WAIT` of their own.
    pub fn without_wait(&self) -> RedisSink {
        let mut sink = self.clone();
        sink.conn.wait = false;
        sink
    }

    /// Whether a lane asking for a turn now would wait for one.
    pub fn delivery_turns_taken(&self) -> bool {
        self.pushes.available_permits() == 0
    }

    /// Whether this is a Redis Cluster, where one script may only touch keys of one slot.
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn.inner, RedisConnection::Cluster(_))
    }

    /// How many replicas a push to `list` must reach now (0: the WAIT guard is off for it); any
    /// list's master when `None`. It follows the topology ([`guard`]).
    pub fn wait_replicas(&self, list: Option<&str>) -> u32 {
        self.conn.guard.required_for(list)
    }

    /// `PING`, for `check` and start-up.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut conn = self.control.clone();
        ::redis::cmd("PING").query_async::<()>(&mut conn).await
    }

    /// A connection without the WAIT guard, and apart from the pushes, for callers (lag, lease,
    /// status, `check`) that need other commands: a push's `WAIT` holds up the connection it is
    /// sent on for up to `redis.wait_timeout_ms`, and a lease renewal must not wait behind it.
    pub fn connection(&self) -> RedisConnection {
        self.control.clone()
    }
}

/// Whether the server is a Sentinel (`INFO server` says `redis_mode:sentinel`). A sentinel
/// accepts the connection but refuses every data command, so a standalone config pointing at one
/// would retry forever. An `INFO` the server refuses (an ACL) counts as not a sentinel.
async fn is_sentinel<C: ::redis::aio::ConnectionLike>(conn: &mut C) -> bool {
    let info: Result<String, RedisError> =
        ::redis::cmd("INFO").arg("server").query_async(conn).await;
    info.is_ok_and(|info| info.lines().any(|l| l.trim() == "redis_mode:sentinel"))
}

/// Whether Redis refused the credentials.
pub(crate) fn is_auth_error(e: &RedisError) -> bool {
    let text = e.to_string();
    e.kind() == ErrorKind::AuthenticationFailed
        || text.contains("NOAUTH")
        || text.contains("WRONGPASS")
        || text.contains("invalid password")
        || text.contains("invalid username-password")
}

fn classify(e: RedisError) -> ConnectError {
    if is_auth_error(&e) {
        return ConnectError::Fatal(format!("Redis refused the credentials: {e}"));
    }
    match e.kind() {
        ErrorKind::InvalidClientConfig => {
            ConnectError::Fatal(format!("Redis refused the connection: {e}"))
        }
        ErrorKind::MasterNameNotFoundBySentinel => {
            ConnectError::Fatal(format!("the sentinels know no such master: {e}"))
        }
        _ => ConnectError::Retryable(e),
    }
}
