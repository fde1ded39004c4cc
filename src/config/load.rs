//! Where the settings come from: the file (its format told by its name or first character), the
//! `.env` file and the environment, then the validation pass.

use std::path::Path;

use super::{env, legacy, native, Config, ConfigError, ConfigFormat};

impl Config {
    /// Reads a config file (format chosen by extension, else by its first character), applies the
    /// optional `.env` file and the environment, and validates the result.
    pub fn load(path: &Path, env_file: Option<&Path>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let format = detect_format(path, &text);
        // The old tool read `.env` from its working directory on its own; keep that for its format.
        let vars = env::Vars::gather(env_file, format == ConfigFormat::Legacy)?;
        let config = match format {
            ConfigFormat::Legacy => legacy::parse(&text, path, &vars)?,
            ConfigFormat::Native => native::parse(&text, path, &vars)?,
        };
        config.validate()?;
        Ok(config)
    }
}

fn detect_format(path: &Path, text: &str) -> ConfigFormat {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => ConfigFormat::Legacy,
        Some("toml") => ConfigFormat::Native,
        _ if text.trim_start().starts_with('{') => ConfigFormat::Legacy,
        _ => ConfigFormat::Native,
    }
}
