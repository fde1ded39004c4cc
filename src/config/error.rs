//! Configuration errors: each one a plain sentence that names the file or key at fault.

use thiserror::Error;

/// A config that cannot run. The CLI prints it and exits with code 2 before connecting anywhere.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },

    #[error("{path}: {reason}")]
    Syntax { path: String, reason: String },

    #[error("config key `{key}` {reason}")]
    Invalid { key: String, reason: String },

    #[error("cannot read env file {path}: {reason}")]
    EnvFile { path: String, reason: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// A mistake in one topic's setting. Every such error names the key `topics.<topic>.<key>`,
    /// whether the file wrote the topic as a bare name or as a table.
    pub fn in_topic(topic: &str, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::invalid(format!("topics.{topic}.{key}"), reason)
    }

    pub fn syntax(path: &std::path::Path, reason: impl Into<String>) -> ConfigError {
        ConfigError::Syntax {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }
}
