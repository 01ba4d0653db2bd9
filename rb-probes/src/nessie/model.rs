//! The JSON shapes of Nessie's REST API v2 and its Quarkus health endpoint that the probes read.
//!
//! Decoded with [`crate::transport::parse_json`]: a body that is not what Nessie sends gives an
//! [`rb_core::ErrorKind::BadResponse`] naming the JSON pointer, line and column. Unknown fields are
//! ignored (Nessie adds fields between versions); v1-only fields are not read.

use serde::Deserialize;

/// `GET /api/v2/config`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NessieConfig {
    /// The default branch (`main`).
    #[serde(rename = "defaultBranch")]
    pub default_branch: String,
    /// Lowest API version served.
    #[serde(rename = "minSupportedApiVersion")]
    pub min_supported_api_version: u32,
    /// Highest API version served.
    #[serde(rename = "maxSupportedApiVersion")]
    pub max_supported_api_version: u32,
    /// The API version of this endpoint (absent before Nessie 0.59).
    #[serde(rename = "actualApiVersion", default)]
    pub actual_api_version: Option<u32>,
    /// The spec version (`2.2.0`).
    #[serde(rename = "specVersion", default)]
    pub spec_version: Option<String>,
    /// The hash of the empty repository's "beginning of time".
    #[serde(rename = "noAncestorHash", default)]
    pub no_ancestor_hash: Option<String>,
}

/// `GET /api/v2/trees`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReferencesPage {
    /// Whether there is a next page.
    #[serde(rename = "hasMore", default)]
    pub has_more: bool,
    /// The token of the next page.
    #[serde(default)]
    pub token: Option<String>,
    /// References of this page.
    pub references: Vec<Reference>,
}

/// A reference.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Reference {
    /// `BRANCH`, `TAG` or `DETACHED`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Name (absent for a detached hash).
    #[serde(default)]
    pub name: Option<String>,
    /// HEAD hash.
    #[serde(default)]
    pub hash: Option<String>,
}

/// `GET /api/v2/trees/{ref}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SingleReference {
    /// The reference.
    pub reference: Reference,
}

/// `GET /api/v2/trees/{ref}/history`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LogPage {
    /// Whether there is a next page.
    #[serde(rename = "hasMore", default)]
    pub has_more: bool,
    /// The token of the next page.
    #[serde(default)]
    pub token: Option<String>,
    /// Commits, newest first (first parents).
    #[serde(rename = "logEntries")]
    pub log_entries: Vec<LogEntry>,
}

/// One commit of the log.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LogEntry {
    /// Its metadata.
    #[serde(rename = "commitMeta")]
    pub commit_meta: CommitMeta,
    /// Its first parent.
    #[serde(rename = "parentCommitHash", default)]
    pub parent_commit_hash: Option<String>,
}

/// A commit's metadata (v2).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CommitMeta {
    /// Commit hash.
    pub hash: String,
    /// Committer (`""` on an unauthenticated server).
    #[serde(default)]
    pub committer: Option<String>,
    /// Authors.
    #[serde(default)]
    pub authors: Vec<String>,
    /// Message.
    #[serde(default)]
    pub message: String,
    /// Commit time (ISO-8601).
    #[serde(rename = "commitTime", default)]
    pub commit_time: Option<String>,
    /// Every parent: first parent, then the merged ones.
    #[serde(rename = "parentCommitHashes", default)]
    pub parent_commit_hashes: Vec<String>,
}

/// `GET /q/health` (SmallRye Health; 200 when UP, 503 when DOWN, same body shape).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Health {
    /// `UP` or `DOWN`.
    pub status: String,
    /// The checks.
    #[serde(default)]
    pub checks: Vec<HealthCheck>,
}

/// One health check.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HealthCheck {
    /// Its name.
    pub name: String,
    /// `UP` or `DOWN`.
    pub status: String,
}
