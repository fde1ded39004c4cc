//! The `[redis]` TLS keys: the files they name are read and checked when the config loads.

use std::path::Path;

use super::schema::RedisSection;
use crate::config::{ConfigError, TlsConfig};

/// The `[redis]` TLS keys, checked: a key pair is complete, every file is readable PEM of the
/// right kind. `None` when no TLS key is set (`rediss://` addresses alone still turn TLS on, with
/// the system's CAs).
pub(super) fn redis_tls(redis: &RedisSection) -> Result<Option<TlsConfig>, ConfigError> {
    let any = redis.tls
        || redis.tls_ca_file.is_some()
        || redis.tls_cert_file.is_some()
        || redis.tls_key_file.is_some()
        || redis.tls_insecure_skip_verify;
    if !any {
        return Ok(None);
    }
    match (&redis.tls_cert_file, &redis.tls_key_file) {
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                "redis.tls_key_file",
                "is required when redis.tls_cert_file is set",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                "redis.tls_cert_file",
                "is required when redis.tls_key_file is set",
            ))
        }
        _ => {}
    }
    if redis.tls_insecure_skip_verify && redis.tls_cert_file.is_some() {
        // native-tls drops the client identity when verification is off.
        return Err(ConfigError::invalid(
            "redis.tls_insecure_skip_verify",
            "cannot be combined with redis.tls_cert_file: without verification the TLS library \
             presents no client certificate",
        ));
    }
    if let Some(path) = &redis.tls_ca_file {
        check_pem("redis.tls_ca_file", path, PemKind::Certificate)?;
    }
    if let Some(path) = &redis.tls_cert_file {
        check_pem("redis.tls_cert_file", path, PemKind::Certificate)?;
    }
    if let Some(path) = &redis.tls_key_file {
        check_pem("redis.tls_key_file", path, PemKind::Pkcs8Key)?;
    }
    Ok(Some(TlsConfig {
        ca_file: redis.tls_ca_file.clone(),
        cert_file: redis.tls_cert_file.clone(),
        key_file: redis.tls_key_file.clone(),
        insecure_skip_verify: redis.tls_insecure_skip_verify,
    }))
}

enum PemKind {
    Certificate,
    Pkcs8Key,
}

/// Reads a PEM file named by `key` and checks it holds what the TLS library will want, so that a
/// wrong path or a wrong file is a config error now rather than a refused connection later.
fn check_pem(key: &str, path: &Path, kind: PemKind) -> Result<(), ConfigError> {
    let text = std::fs::read(path).map_err(|e| {
        ConfigError::invalid(
            key,
            format!("names {}, which cannot be read: {e}", path.display()),
        )
    })?;
    let text = String::from_utf8_lossy(&text);
    match kind {
        PemKind::Certificate if !text.contains("-----BEGIN CERTIFICATE-----") => {
            Err(ConfigError::invalid(
                key,
                format!("names {}, which holds no PEM certificate", path.display()),
            ))
        }
        // The TLS library (OpenSSL through native-tls) takes PKCS#8 keys only.
        PemKind::Pkcs8Key if !text.contains("-----BEGIN PRIVATE KEY-----") => {
            Err(ConfigError::invalid(
                key,
                format!(
                    "names {}, which holds no PKCS#8 PEM key (\"BEGIN PRIVATE KEY\"); convert an RSA/EC \
                     key with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`",
                    path.display()
                ),
            ))
        }
        _ => Ok(()),
    }
}
