//! Where the CLI finds the API: flags, then `MINICLOUD_URL` /
//! `MINICLOUD_TOKEN`, then the file the daemon wrote at first start
//! (`~/.config/minicloud/config.json`).

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The CLI's saved settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CliConfig {
    /// API base URL.
    pub url: String,
    /// API token.
    pub token: String,
}

impl CliConfig {
    /// The config file path.
    pub fn path() -> PathBuf {
        std::env::var_os("MINICLOUD_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::compute::images::home().join(".config/minicloud/config.json"))
    }

    /// Reads the saved config, if any.
    pub fn load() -> Option<CliConfig> {
        let text = std::fs::read_to_string(Self::path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Saves it (mode 0600); returns the path.
    pub fn save(&self) -> anyhow::Result<PathBuf> {
        let path = Self::path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        crate::serve::write_secret(&path, &serde_json::to_string_pretty(self)?)?;
        Ok(path)
    }
}
