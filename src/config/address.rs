//! Addresses as the settings write them: `host:port`, Redis URLs, and the HTTP listen address.

use super::ConfigError;

/// Parses an HTTP listen address (`HOST:PORT`); `key` names where it came from in the error.
pub fn parse_http_address(key: &str, text: &str) -> Result<std::net::SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    check_host_port(text).map_err(|why| ConfigError::invalid(key, format!("{text:?} {why}")))?;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            ConfigError::invalid(key, format!("{text:?} is not an address to listen on"))
        })
}

/// `host:port` with a non-empty host and a port in 1..=65535.
pub(crate) fn check_host_port(address: &str) -> Result<(), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| "is not host:port".to_string())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err("has no valid host".into());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("has an invalid port {port:?}")),
    }
}

/// Accepts `host:port`, `redis://…` and `rediss://…` URLs.
pub(super) fn check_redis_address(address: &str) -> Result<(), String> {
    if address.contains("://") {
        if !(address.starts_with("redis://") || address.starts_with("rediss://")) {
            return Err("must start with redis:// or rediss://".into());
        }
        ::redis::parse_redis_url(address)
            .map(|_| ())
            .ok_or_else(|| "is not a valid Redis URL".into())
    } else {
        check_host_port(address)
    }
}
