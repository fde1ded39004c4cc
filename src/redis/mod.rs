//! The Redis side: connecting to the configured topology and pushing a lane's batch.
//!
//! [`RedisSink`] is cheap to clone and shared by every lane; all lanes' batches are pipelined over
//! one multiplexed connection that reconnects by itself. A failed push is reported to the lane, which
//! keeps the batch and retries it ([`crate::kafka::lane`]); nothing here drops data.

pub mod batch;
mod push;
mod scripts;

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{ConnectionInfo, IntoConnectionInfo, RedisError};

pub use batch::Batch;
pub use push::Pushed;

use crate::config::{RedisConfig, RedisTopology};

/// A connected Redis deployment that batches are pushed to.
#[derive(Clone)]
pub struct RedisSink {
    pub(super) conn: ConnectionManager,
}

/// Why connecting failed: worth retrying (Redis is down or starting) or not (wrong credentials,
/// a topology this version does not speak).
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
        let address = match &config.topology {
            RedisTopology::Standalone { address } => address,
            RedisTopology::Sentinel { .. } => {
                return Err(ConnectError::Fatal(
                    "Redis Sentinel is not supported by this version yet; point redis_host/redis_port at the master"
                        .into(),
                ))
            }
            RedisTopology::Cluster { .. } => {
                return Err(ConnectError::Fatal(
                    "Redis Cluster is not supported by this version yet".into(),
                ))
            }
        };
        let info =
            connection_info(address, config).map_err(|e| ConnectError::Fatal(e.to_string()))?;
        let client = ::redis::Client::open(info).map_err(|e| ConnectError::Fatal(e.to_string()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            // Reconnects happen in the background; a lane whose push failed retries on its own
            // schedule, so the manager itself need not retry for long.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let conn = client
            .get_connection_manager_with_config(manager_config)
            .await
            .map_err(classify)?;
        Ok(RedisSink { conn })
    }

    /// `PING`, for `check` and start-up.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut conn = self.conn.clone();
        ::redis::cmd("PING").query_async::<()>(&mut conn).await
    }

    /// The multiplexed connection, for callers (tests, `check`) that need other commands.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

fn classify(e: RedisError) -> ConnectError {
    use ::redis::ErrorKind;
    match e.kind() {
        ErrorKind::AuthenticationFailed | ErrorKind::InvalidClientConfig => {
            ConnectError::Fatal(format!("Redis refused the connection: {e}"))
        }
        _ if e.to_string().contains("NOAUTH") || e.to_string().contains("WRONGPASS") => {
            ConnectError::Fatal(format!("Redis refused the credentials: {e}"))
        }
        _ => ConnectError::Retryable(e),
    }
}

/// `host:port` or a `redis://` URL, with the configured credentials and database applied.
fn connection_info(address: &str, config: &RedisConfig) -> ::redis::RedisResult<ConnectionInfo> {
    let info = if address.contains("://") {
        address.into_connection_info()?
    } else {
        format!("redis://{address}").into_connection_info()?
    };
    let mut settings = info.redis_settings().clone();
    if let Some(username) = &config.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password);
    }
    if config.db != 0 {
        settings = settings.set_db(config.db);
    }
    Ok(info.set_redis_settings(settings))
}
