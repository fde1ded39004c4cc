//! The Redis side: connecting to the configured topology and pushing a lane's batch.
//!
//! [`RedisSink`] is cheap to clone and shared by every lane; all lanes' batches are pipelined over
//! shared multiplexed connections that heal by themselves: a standalone server is reconnected, a
//! Sentinel master is asked for again when it fails ([`sentinel`]), a Cluster follows its slot map
//! and failovers ([`cluster`]). A failed push is reported to the lane, which keeps the batch and
//! retries it ([`crate::kafka::lane`]); nothing here drops data.

pub mod batch;
pub mod cluster;
mod node;
mod push;
mod scripts;
pub mod sentinel;
pub mod slot;
pub mod topology;

use std::time::Duration;

use ::redis::aio::ConnectionManagerConfig;
use ::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use ::redis::{ErrorKind, RedisError};
use tracing::warn;

pub use batch::Batch;
pub use push::{ExactlyOnce, Pushed};
pub use topology::RedisConnection;

use crate::config::{RedisConfig, RedisTopology};
use node::NodeSettings;

/// A connected Redis deployment that batches are pushed to.
#[derive(Clone)]
pub struct RedisSink {
    pub(super) conn: RedisConnection,
    wait: WaitGuard,
}

/// `redis.wait_replicas` / `redis.wait_timeout_ms`.
#[derive(Clone, Copy, Debug)]
struct WaitGuard {
    replicas: u32,
    timeout: Duration,
}

/// Why connecting failed: worth retrying (Redis is down or starting) or not (wrong credentials,
/// a master name the sentinels do not know, unusable TLS files).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Retryable(RedisError),
    #[error("{0}")]
    Fatal(String),
}

impl RedisSink {
    /// Connects once; the caller decides whether to retry a [`ConnectError::Retryable`].
    pub async fn connect(config: &RedisConfig) -> Result<RedisSink, ConnectError> {
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
        let conn = match &config.topology {
            RedisTopology::Standalone { address } => {
                let client = data.client(address).map_err(fatal)?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    .set_response_timeout(Some(config.response_timeout))
                    // Reconnects happen in the background; a lane whose push failed retries on its
                    // own schedule, so the manager itself need not retry for long.
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(2));
                let manager = client
                    .get_connection_manager_with_config(manager_config)
                    .await
                    .map_err(classify)?;
                RedisConnection::Standalone(manager)
            }
            RedisTopology::Sentinel {
                master_name,
                addresses,
            } => {
                let sentinel = NodeSettings::sentinel(config).map_err(fatal)?;
                let conn =
                    sentinel::SentinelConnection::connect(master_name, addresses, sentinel, data)
                        .await
                        .map_err(classify)?;
                RedisConnection::Sentinel(conn)
            }
            RedisTopology::Cluster { addresses } => {
                let conn = cluster::connect(addresses, &data).await.map_err(classify)?;
                RedisConnection::Cluster(conn)
            }
        };
        Ok(RedisSink {
            conn,
            wait: WaitGuard {
                replicas: config.wait_replicas,
                timeout: config.wait_timeout,
            },
        })
    }

    /// `PING`, for `check` and start-up.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut conn = self.conn.clone();
        ::redis::cmd("PING").query_async::<()>(&mut conn).await
    }

    /// The shared connection, for callers (tests, `check`) that need other commands.
    pub fn connection(&self) -> RedisConnection {
        self.conn.clone()
    }

    /// The WAIT guard: after a push to `key` was acknowledged, `WAIT replicas timeout` on the node
    /// that took it must report at least `redis.wait_replicas` replicas, else the push counts as
    /// failed (the lane retries it, at least once). Does nothing when `wait_replicas` is 0.
    ///
    /// `WAIT` covers the writes made earlier on the same connection; pushes and the `WAIT` after them
    /// share the one multiplexed connection to that node. If that connection was replaced between the
    /// two (it broke right after the push was acknowledged), `WAIT` on the new one has nothing to wait
    /// for and can confirm too early — a narrow window, and only together with a failover.
    pub(crate) async fn confirm_replicas(&self, key: &str) -> Result<(), RedisError> {
        let wanted = self.wait.replicas;
        if wanted == 0 {
            return Ok(());
        }
        let timeout_ms = self.wait.timeout.as_millis() as u64;
        let mut wait = ::redis::cmd("WAIT");
        wait.arg(wanted).arg(timeout_ms);
        let mut conn = self.conn.clone();
        let acknowledged: u32 = match &mut conn {
            // The crate would send WAIT to every master; it belongs on the node owning `key`.
            RedisConnection::Cluster(cluster) => {
                let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::with_key(key, SlotAddr::Master),
                ));
                ::redis::from_redis_value(cluster.route_command(wait, route).await?)?
            }
            _ => wait.query_async(&mut conn).await?,
        };
        if acknowledged >= wanted {
            return Ok(());
        }
        // A master cut off from its replicas may have been replaced by Sentinel while it still
        // takes writes: ask again before the retry.
        if let RedisConnection::Sentinel(sentinel) = &self.conn {
            sentinel.reresolve();
        }
        Err(::redis::make_extension_error(
            "NOREPLICAS".into(),
            Some(format!(
                "WAIT: {acknowledged} of {wanted} replica(s) acknowledged the push to {key} within {timeout_ms} ms"
            )),
        ))
    }
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
