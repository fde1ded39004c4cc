//! Environment variables that override file settings, and the optional `.env` file.
//!
//! Like the old tool (godotenv), a `.env` file never overrides a variable already set in the
//! process environment. Two families of variables are read:
//! - the old tool's `KAFKA_BROKERS`, `REDIS_HOST`, `REDIS_PORT`, `REDIS_SENTINEL_SERVICE` (legacy format);
//! - `K2R_*` variables (both formats), listed in [`Vars::apply_common`].

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::{Config, ConfigError, RedisTopology};

/// Process environment merged with an optional `.env` file (process wins).
#[derive(Debug, Default, Clone)]
pub struct Vars {
    values: HashMap<String, String>,
}

impl Vars {
    /// `explicit` is `--env FILE` (an error if unreadable); otherwise `./.env` is read when
    /// `auto_dotenv` is set and the file exists.
    pub fn gather(explicit: Option<&Path>, auto_dotenv: bool) -> Result<Vars, ConfigError> {
        let mut values = HashMap::new();
        let file = match explicit {
            Some(path) => Some(path.to_path_buf()),
            None if auto_dotenv && Path::new(".env").is_file() => Some(".env".into()),
            None => None,
        };
        if let Some(path) = file {
            let iter = dotenvy::from_path_iter(&path).map_err(|e| ConfigError::EnvFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            for item in iter {
                let (key, value) = item.map_err(|e| ConfigError::EnvFile {
                    path: path.display().to_string(),
                    reason: env_file_reason(e),
                })?;
                values.insert(key, value);
            }
        }
        for (key, value) in std::env::vars() {
            values.insert(key, value);
        }
        Ok(Vars { values })
    }

    /// A set of variables, for tests and callers that do not want the process environment.
    #[cfg(test)]
    pub fn from_pairs<I, K, V>(pairs: I) -> Vars
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Vars {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `key`, if set and not blank.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Splits a list variable on any of `separators`, dropping blanks.
    pub fn list(&self, key: &str, separators: &[char]) -> Option<Vec<String>> {
        self.get(key).map(|v| split_list(v, separators))
    }

    /// Applies the `K2R_*` overrides shared by both formats.
    ///
    /// | variable | overrides |
    /// | --- | --- |
    /// | `K2R_KAFKA_BROKERS` | broker list (comma-separated) |
    /// | `K2R_KAFKA_GROUP` | consumer group |
    /// | `K2R_KAFKA_GROUP_INSTANCE_ID` | `group.instance.id`; set but empty: dynamic membership |
    /// | `K2R_REDIS_ADDRESSES` | Redis address list (comma-separated), keeping the topology |
    /// | `K2R_REDIS_USERNAME`, `K2R_REDIS_PASSWORD` | Redis ACL credentials |
    /// | `K2R_REDIS_SENTINEL_MASTER` | the master name (Sentinel mode only) |
    /// | `K2R_REDIS_SENTINEL_USERNAME`, `K2R_REDIS_SENTINEL_PASSWORD` | the sentinels' own credentials (Sentinel mode only) |
    /// | `K2R_SHUTDOWN_TIMEOUT_MS` | clean-stop bound |
    pub fn apply_common(&self, config: &mut Config) -> Result<(), ConfigError> {
        if let Some(brokers) = self.list("K2R_KAFKA_BROKERS", &[',']) {
            config.kafka.brokers = brokers;
        }
        if let Some(group) = self.get("K2R_KAFKA_GROUP") {
            config.kafka.group = group.to_string();
        }
        // Read raw: set but empty is meaningful here (dynamic membership).
        if let Some(id) = self.values.get("K2R_KAFKA_GROUP_INSTANCE_ID") {
            config.kafka.group_instance_id = super::GroupInstanceId::from_setting(id);
        }
        if let Some(addresses) = self.list("K2R_REDIS_ADDRESSES", &[',']) {
            config.redis.topology = match &config.redis.topology {
                RedisTopology::Standalone { .. } => match addresses.as_slice() {
                    [one] => RedisTopology::Standalone {
                        address: one.clone(),
                    },
                    _ => {
                        return Err(ConfigError::invalid(
                            "K2R_REDIS_ADDRESSES",
                            "must hold exactly one address in standalone mode",
                        ))
                    }
                },
                RedisTopology::Sentinel { master_name, .. } => RedisTopology::Sentinel {
                    master_name: master_name.clone(),
                    addresses,
                },
                RedisTopology::Cluster { .. } => RedisTopology::Cluster { addresses },
            };
        }
        if let Some(username) = self.get("K2R_REDIS_USERNAME") {
            config.redis.username = Some(username.to_string());
        }
        if let Some(password) = self.get("K2R_REDIS_PASSWORD") {
            config.redis.password = Some(password.into());
        }
        self.apply_sentinel(config)?;
        if let Some(ms) = self.get("K2R_SHUTDOWN_TIMEOUT_MS") {
            let ms: u64 = ms.parse().map_err(|_| {
                ConfigError::invalid(
                    "K2R_SHUTDOWN_TIMEOUT_MS",
                    format!("{ms:?} is not a number of milliseconds"),
                )
            })?;
            config.shutdown_timeout = Duration::from_millis(ms);
        }
        Ok(())
    }

    /// The Sentinel variables. The master name has no place outside Sentinel mode, so there it is
    /// an error here; the sentinels' credentials are checked with the file's, by
    /// [`Config::validate`].
    fn apply_sentinel(&self, config: &mut Config) -> Result<(), ConfigError> {
        if let Some(name) = self.get("K2R_REDIS_SENTINEL_MASTER") {
            let RedisTopology::Sentinel { master_name, .. } = &mut config.redis.topology else {
                return Err(ConfigError::invalid(
                    "K2R_REDIS_SENTINEL_MASTER",
                    "only applies when Redis is reached through Sentinel",
                ));
            };
            *master_name = name.to_string();
        }
        if let Some(username) = self.get("K2R_REDIS_SENTINEL_USERNAME") {
            config.redis.sentinel_username = Some(username.to_string());
        }
        if let Some(password) = self.get("K2R_REDIS_SENTINEL_PASSWORD") {
            config.redis.sentinel_password = Some(password.into());
        }
        Ok(())
    }
}

/// Why a `.env` file could not be read, without the text of the line at fault: it may be a
/// password (the parser's own message quotes the whole line).
fn env_file_reason(error: dotenvy::Error) -> String {
    match error {
        dotenvy::Error::LineParse(line, index) => {
            // The variable's name, when the line has one before its `=`.
            let name = line
                .split_once('=')
                .map(|(name, _)| name.trim().trim_start_matches("export ").trim())
                .filter(|name| {
                    !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                });
            match name {
                Some(name) => format!(
                    "cannot parse the line that sets {name} (at character {index}; the line is not \
                     shown, it may hold a secret)"
                ),
                None => format!(
                    "cannot parse a line (at character {index}; the line is not shown, it may hold \
                     a secret)"
                ),
            }
        }
        other => other.to_string(),
    }
}

pub(crate) fn split_list(value: &str, separators: &[char]) -> Vec<String> {
    value
        .split(|c| separators.contains(&c))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}
