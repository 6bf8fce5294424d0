//! Settings read from the environment, once per process.

use crate::auth::AuthMode;
use crate::engine::EngineConfig;

/// Default request body limit: 5 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

/// Process settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `TABLE_NAME`: the DynamoDB table; `None` selects the in-memory store where allowed.
    pub table_name: Option<String>,
    /// `AUTH_MODE`: `jwt` or `header`.
    pub auth_mode: AuthMode,
    /// `SCHEMA_VERSION`: the schema version clients must send; empty or unset: any.
    pub schema_version: Option<String>,
    /// `MAX_BODY_BYTES`: largest request body accepted.
    pub max_body_bytes: usize,
}

/// A setting with a value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {message}")]
pub struct ConfigError {
    name: &'static str,
    message: String,
}

impl Settings {
    /// The engine's configuration under these settings.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            schema_version: self.schema_version.clone(),
            ..EngineConfig::default()
        }
    }

    /// Reads the settings, with `default_auth` where `AUTH_MODE` is unset.
    pub fn from_env(default_auth: AuthMode) -> Result<Settings, ConfigError> {
        Self::from_lookup(default_auth, |name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the environment, or a test's map).
    pub fn from_lookup(
        default_auth: AuthMode,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let auth_mode = match non_empty("AUTH_MODE") {
            None => default_auth,
            Some(v) => v.parse().map_err(|message| ConfigError {
                name: "AUTH_MODE",
                message,
            })?,
        };
        let max_body_bytes = match non_empty("MAX_BODY_BYTES") {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(v) => v.trim().parse().map_err(|_| ConfigError {
                name: "MAX_BODY_BYTES",
                message: format!("{v:?} is not a number of bytes"),
            })?,
        };
        Ok(Settings {
            table_name: non_empty("TABLE_NAME"),
            auth_mode,
            schema_version: non_empty("SCHEMA_VERSION"),
            max_body_bytes,
        })
    }
}
