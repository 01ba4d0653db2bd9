//! The env file the start scripts write.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};

/// What the start scripts recorded about the running servers. `Debug` hides passwords.
#[derive(Clone)]
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

impl std::fmt::Debug for PeerEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: BTreeMap<&str, String> = self
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), redact(k, v)))
            .collect();
        f.debug_struct("PeerEnv")
            .field("vars", &shown)
            .field("path", &self.path)
            .finish()
    }
}

/// `value` with any password hidden: whole values of `*PASSWORD*` / `*PWD*` keys, and the password
/// part of `scheme://user:password@host` URLs.
pub fn redact(key: &str, value: &str) -> String {
    let k = key.to_ascii_uppercase();
    if k.contains("PASSWORD") || k.contains("PWD") || k.contains("SECRET") || k.contains("TOKEN") {
        return "[redacted]".to_string();
    }
    match (value.find("://"), value.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => {
            let userinfo = &value[s + 3..at];
            match userinfo.find(':') {
                Some(c) => format!(
                    "{}{}:[redacted]{}",
                    &value[..s + 3],
                    &userinfo[..c],
                    &value[at..]
                ),
                None => value.to_string(),
            }
        }
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_passwords() {
        let env = PeerEnv {
            vars: [
                ("PG_PASSWORD".to_string(), "rb-peer-pass".to_string()),
                (
                    "PG_URL".to_string(),
                    "postgres://rb:rb-peer-pass@127.0.0.1:15432/rb".to_string(),
                ),
                ("PG_PORT".to_string(), "15432".to_string()),
            ]
            .into(),
            path: PathBuf::from("/x"),
        };
        let shown = format!("{env:?}");
        assert!(!shown.contains("rb-peer-pass"), "{shown}");
        assert!(
            shown.contains("postgres://rb:[redacted]@127.0.0.1:15432/rb")
                && shown.contains("15432")
        );
    }
}
