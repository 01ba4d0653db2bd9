//! The env file the start scripts write.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};

/// What the start scripts recorded about the running servers.
#[derive(Debug, Clone)]
pub struct PeerEnv {
    vars: BTreeMap<String, String>,
    path: PathBuf,
}

impl PeerEnv {
    /// The repository root (where `peers/` lives).
    pub fn repo_root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// Load `$RB_PEERS_ENV` or `<repo>/.peers/env`.
    pub fn load() -> Result<Self> {
        let path = std::env::var_os("RB_PEERS_ENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| Self::repo_root().join(".peers").join("env"));
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (start the servers with peers/run.sh)",
                path.display()
            )
        })?;
        let vars = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Ok(Self { vars, path })
    }

    /// A required key.
    pub fn get(&self, key: &str) -> Result<&str> {
        self.vars.get(key).map(String::as_str).ok_or_else(|| {
            anyhow!(
                "{} has no {key}: was its server started?",
                self.path.display()
            )
        })
    }

    /// An optional key.
    pub fn opt(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }
}
