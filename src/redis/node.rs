//! How to open a connection to one Redis node: address, credentials, database and TLS.
//!
//! Every topology connects to plain nodes in the end — the standalone server, the master a
//! sentinel names, each cluster node — and they all need the same settings applied the same way.
//! [`NodeSettings`] holds them once, so a sentinel's answer or a cluster's `MOVED` turns into a
//! connection with exactly the configured credentials and certificates.
//!
//! TLS goes through native-tls (OpenSSL, which librdkafka links already). The `redis` crate applies
//! custom CAs and client certificates from [`TlsCertificates`] only where it builds the client
//! itself (`Client::build_with_tls`); that is why sentinel and cluster connections are opened
//! through here rather than left to the crate's own sentinel and cluster clients, which ignore
//! certificates under native-tls.

use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, ConnectionAddr, ConnectionInfo, ErrorKind,
    IntoConnectionInfo, RedisError, RedisResult, TlsCertificates,
};

use crate::config::{RedisConfig, TlsConfig};
use crate::redact::Secret;

/// TLS as it applies to a connection.
#[derive(Clone, Debug)]
pub(crate) struct Tls {
    /// Accept any certificate (`tls_insecure_skip_verify`).
    pub insecure: bool,
    /// Custom CA and/or client identity; `None` trusts the system's CAs.
    pub certificates: Option<TlsCertificates>,
}

/// Credentials, database, TLS and timeouts for connections to one kind of node.
#[derive(Clone, Debug)]
pub(crate) struct NodeSettings {
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub db: i64,
    pub tls: Option<Tls>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

impl NodeSettings {
    /// Settings for the data nodes: standalone server, Sentinel's master, Cluster nodes.
    pub fn data(config: &RedisConfig) -> RedisResult<NodeSettings> {
        Ok(NodeSettings {
            username: config.username.clone(),
            password: config.password.clone(),
            db: config.db,
            tls: tls(config)?,
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
        })
    }

    /// Settings for the sentinels: their own credentials, no database, the same TLS.
    pub fn sentinel(config: &RedisConfig) -> RedisResult<NodeSettings> {
        Ok(NodeSettings {
            username: config.sentinel_username.clone(),
            password: config.sentinel_password.clone(),
            db: 0,
            ..NodeSettings::data(config)?
        })
    }

    /// The connection info for `address` (`host:port` or a `redis://` / `rediss://` URL) with
    /// these settings applied. Credentials in a URL are kept unless the config sets its own.
    pub fn info(&self, address: &str) -> RedisResult<ConnectionInfo> {
        let info = if address.contains("://") {
            address.into_connection_info()?
        } else {
            format!("redis://{address}").into_connection_info()?
        };
        let (host, port) = match info.addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                (host.clone(), *port)
            }
            _ => {
                return Err(RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "only TCP addresses are supported",
                )))
            }
        };
        let url_tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        let mut settings = info.redis_settings().clone();
        if let Some(username) = &self.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password.expose());
        }
        if self.db != 0 {
            settings = settings.set_db(self.db);
        }
        let addr = match (&self.tls, url_tls) {
            (Some(tls), _) => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: tls.insecure,
                tls_params: None,
            },
            (None, true) => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            },
            (None, false) => ConnectionAddr::Tcp(host, port),
        };
        Ok(info.set_addr(addr).set_redis_settings(settings))
    }

    /// A client for `address`, with certificates attached when configured.
    pub fn client(&self, address: &str) -> RedisResult<Client> {
        self.client_for_info(self.info(address)?)
    }

    /// A client for an already built connection info (a cluster node the crate discovered).
    pub fn client_for_info(&self, info: ConnectionInfo) -> RedisResult<Client> {
        match self.tls.as_ref().and_then(|t| t.certificates.clone()) {
            Some(certificates) if matches!(info.addr(), ConnectionAddr::TcpTls { .. }) => {
                Client::build_with_tls(info, certificates)
            }
            _ => Client::open(info),
        }
    }

    pub fn async_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
    }

    /// Opens one multiplexed connection to `address`.
    pub async fn connect(&self, address: &str) -> RedisResult<MultiplexedConnection> {
        self.client(address)?
            .get_multiplexed_async_connection_with_config(&self.async_config())
            .await
    }
}

/// The TLS settings of `config`, with the PEM files read; `None` for plain TCP.
fn tls(config: &RedisConfig) -> RedisResult<Option<Tls>> {
    if !config.tls_enabled() {
        return Ok(None);
    }
    let options = config.tls.clone().unwrap_or_default();
    Ok(Some(Tls {
        insecure: options.insecure_skip_verify,
        certificates: certificates(&options)?,
    }))
}

fn certificates(options: &TlsConfig) -> RedisResult<Option<TlsCertificates>> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            RedisError::from((
                ErrorKind::InvalidClientConfig,
                "cannot read a TLS file",
                format!("{}: {e}", path.display()),
            ))
        })
    };
    let root_cert = options.ca_file.as_deref().map(read).transpose()?;
    let client_tls = match (&options.cert_file, &options.key_file) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
        _ => None,
    };
    if root_cert.is_none() && client_tls.is_none() {
        return Ok(None);
    }
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_apply_to_plain_and_tls_addresses() {
        let mut config = RedisConfig::standalone("127.0.0.1:6379");
        config.username = Some("bridge".into());
        config.password = Some("pw".into());
        config.db = 3;
        let node = NodeSettings::data(&config).unwrap();
        let info = node.info("10.0.0.1:7000").unwrap();
        assert!(matches!(info.addr(), ConnectionAddr::Tcp(h, 7000) if h == "10.0.0.1"));
        assert_eq!(info.redis_settings().username(), Some("bridge"));
        assert_eq!(info.redis_settings().password(), Some("pw"));
        assert_eq!(info.redis_settings().db(), 3);

        // A rediss:// URL turns TLS on by itself; its own password is kept when the config has none.
        config.password = None;
        let node = NodeSettings::data(&config).unwrap();
        let info = node.info("rediss://:urlpw@h:6380").unwrap();
        assert!(matches!(
            info.addr(),
            ConnectionAddr::TcpTls {
                insecure: false,
                ..
            }
        ));
        assert_eq!(info.redis_settings().password(), Some("urlpw"));

        config.tls = Some(TlsConfig {
            insecure_skip_verify: true,
            ..TlsConfig::default()
        });
        config.sentinel_password = Some("spw".into());
        let sentinel = NodeSettings::sentinel(&config).unwrap();
        let info = sentinel.info("h:26379").unwrap();
        assert!(matches!(
            info.addr(),
            ConnectionAddr::TcpTls { insecure: true, .. }
        ));
        assert_eq!(info.redis_settings().password(), Some("spw"));
        assert_eq!(info.redis_settings().username(), None);
        assert_eq!(info.redis_settings().db(), 0);
    }
}
