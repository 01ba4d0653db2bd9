//! Recording real answers as fixtures for the fast tier: `rb-testkit/fixtures/real/<system>/<name>.json`
//! plus an `_index.tsv` (`name`, `method`, `path`, `status`). Files are written only when
//! `RB_PEERS_RECORD=1`; otherwise the recorder just keeps what it saw (tests still assert on it).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::Value;

/// Is this a recording run (`RB_PEERS_RECORD=1`)?
pub fn recording() -> bool {
    std::env::var("RB_PEERS_RECORD").is_ok_and(|v| v == "1")
}

/// The fixture directory of one system.
pub fn fixture_dir(system: &str) -> PathBuf {
    crate::PeerEnv::repo_root()
        .join("rb-testkit")
        .join("fixtures")
        .join("real")
        .join(system)
}

/// One recorded exchange.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// File stem under the system's directory.
    pub name: String,
    /// HTTP method (or `SQL`, `CLI`).
    pub method: String,
    /// Path with query (or the statement).
    pub path: String,
    /// HTTP status (0 for non-HTTP).
    pub status: u16,
    /// The body (JSON; `null` for an empty body, a string for a non-JSON body).
    pub body: Value,
}

/// Collects the answers of one system.
#[derive(Debug)]
pub struct Recorder {
    system: String,
    entries: Vec<Recorded>,
}

impl Recorder {
    /// A recorder for `system` (`kafka-connect`, `nessie`, …).
    pub fn new(system: &str) -> Self {
        Self {
            system: system.to_string(),
            entries: Vec::new(),
        }
    }

    /// Keep one answer (a later one with the same name replaces it).
    pub fn add(&mut self, name: &str, method: &str, path: &str, status: u16, body: &Value) {
        self.entries.retain(|e| e.name != name);
        self.entries.push(Recorded {
            name: name.to_string(),
            method: method.to_string(),
            path: path.to_string(),
            status,
            body: body.clone(),
        });
    }

    /// What was kept so far.
    pub fn entries(&self) -> &[Recorded] {
        &self.entries
    }

    /// Write every answer and the index when recording; returns the directory written (or `None`).
    pub fn finish(&self) -> Result<Option<PathBuf>> {
        if !recording() {
            return Ok(None);
        }
        let dir = fixture_dir(&self.system);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let idx = dir.join("_index.tsv");
        let mut index = String::from("name\tmethod\tpath\tstatus\n");
        // Rows another recorder of the same system wrote (and whose file is still there) stay.
        if let Ok(old) = std::fs::read_to_string(&idx) {
            for line in old.lines().skip(1) {
                let name = line.split('\t').next().unwrap_or("");
                let mine = self.entries.iter().any(|e| e.name == name);
                if !name.is_empty() && !mine && dir.join(format!("{name}.json")).exists() {
                    index.push_str(line);
                    index.push('\n');
                }
            }
        }
        for e in &self.entries {
            let file = dir.join(format!("{}.json", e.name));
            let text = serde_json::to_string_pretty(&e.body).context("serialising a fixture")?;
            std::fs::write(&file, text + "\n")
                .with_context(|| format!("writing {}", file.display()))?;
            let _ = writeln!(index, "{}\t{}\t{}\t{}", e.name, e.method, e.path, e.status);
        }
        std::fs::write(&idx, index).with_context(|| format!("writing {}", idx.display()))?;
        Ok(Some(dir))
    }
}
