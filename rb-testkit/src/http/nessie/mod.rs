//! A stateful fake of the Project Nessie REST API v2 and its Quarkus management port.
//!
//! [`FakeNessie`] runs two [`FakeHttp`] servers, like a real Nessie ≥ 0.82:
//!
//! - the **API port** (`/api/v2/...`, 19120 in production): `config`, `trees` (list, get, create,
//!   assign, delete), `trees/{ref}/history`, `history/commit`, `history/merge`,
//!   `history/transplant`, `contents` (GET `?key=`, POST `requestedKeys`), `contents/{key}` and
//!   `entries` (every entry with `"content": null`, as the real server sends it, or the content
//!   object with `?content=true`);
//! - the **management port** (`/q/health`, `/q/health/live`, `/q/health/ready`,
//!   `/q/health/started`, 9000 in production) in SmallRye Health shape
//!   (`{"status":"UP","checks":[…]}`, 503 when DOWN).
//!
//! The repository is real state: references point at commits, commits have metadata, parents and
//! a content tree; `{ref}` accepts the v2 syntax (`name`, `-`, `name@hash`, `@hash`, `my/branch@`,
//! `~N`, `^N`, `*<epoch-ms>` / `*<ISO-8601>`). Write operations require `name@expectedHash`
//! (otherwise 400 "Expected hash must be provided."), assign/delete fail with 409
//! `REFERENCE_CONFLICT` (`UNEXPECTED_HASH`) on a stale hash, and merges detect key conflicts since
//! the merge base. Errors are the real `NessieError` body; like the real server, `errorDetails`
//! (the conflict list) is only sent to clients that send the header `Nessie-Client-Spec: 2`.
//!
//! Behaviour taken from a real Nessie 0.99 (recorded answers in `fixtures/real/nessie/`):
//!
//! - merge and transplant read their flags as **`isDryRun`** and **`isReturnConflictAsResult`**;
//!   the spellings `dryRun` / `returnConflictAsResult` are silently ignored — a "dry run" sent as
//!   `dryRun: true` is applied for real, by the fake as by the server;
//! - a conflicting merge answers 409 even with `isDryRun`; with `isReturnConflictAsResult` it
//!   answers 200 with `wasSuccessful: false`, the conflicts in `details[].conflict` and a null
//!   `resultantTargetHash` (null as well for a successful dry run);
//! - a commit PUT that updates an existing key without its content id is a 400 ("New value to
//!   update existing key 'k' has no content ID"); a commit on a stale `name@hash` is accepted
//!   unless a touched key changed since (409, e.g. "Key 'k' already exists.");
//! - log entries always carry `parentCommitHash` and `operations` (null unless `fetch=ALL`);
//!   commits without authors get the committer (`""` unauthenticated) as author;
//! - the management port reports three readiness checks and no liveness check.
//!
//! Not implemented (answered with a 400 naming the endpoint): `diff`, `recent-changes`, CEL
//! `filter` parameters; the v1 API is not served.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use rb_testkit::http::nessie::FakeNessie;
//!
//! let nessie = FakeNessie::start().await?;
//! nessie.create_branch("backup", "main")?;
//! let good = nessie.commit("backup", &["db.orders"])?;
//! // A remediation merges `backup` into `main` over REST:
//! let main = nessie.head("main").unwrap_or_default();
//! let url = format!("{}/trees/main@{main}/history/merge", nessie.api_url());
//! reqwest::Client::new()
//!     .post(url)
//!     .json(&serde_json::json!({ "fromRefName": "backup", "fromHash": good }))
//!     .send()
//!     .await?;
//! assert_ne!(nessie.head("main"), Some(main));
//! nessie.set_health_down(); // /q/health and /q/health/ready now answer 503 {"status":"DOWN",…}
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod api;
mod repo;

use std::sync::{Arc, Mutex};

use serde_json::Value;

pub use repo::{Conflict, NessieFakeError, RefKind, NO_ANCESTOR_HASH};

use super::FakeHttp;
use api::{lock, Shared};
use repo::{parse_key, Check, Key, Repo};

/// The author recorded on commits made by the scripted helpers.
pub const SCRIPTED_AUTHOR: &str = "rb-testkit <testkit@rb.invalid>";

/// A fake Nessie server: the REST API and the management (health) port, sharing one repository.
#[derive(Debug)]
pub struct FakeNessie {
    api: FakeHttp,
    management: FakeHttp,
    state: Shared,
}

impl FakeNessie {
    /// Start a fake with an empty repository whose default branch is `main` (at
    /// [`NO_ANCESTOR_HASH`]).
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with_default_branch("main").await
    }

    /// Start a fake whose default branch has another name.
    pub async fn start_with_default_branch(default_branch: &str) -> std::io::Result<Self> {
        let state: Shared = Arc::new(Mutex::new(Repo::new(default_branch)));
        let api = FakeHttp::start(api::api_router(state.clone())).await?;
        let management = FakeHttp::start(api::management_router(state.clone())).await?;
        Ok(Self {
            api,
            management,
            state,
        })
    }

    /// The API server (request record, faults, refuse/restore connections).
    pub fn api(&self) -> &FakeHttp {
        &self.api
    }

    /// The management server (`/q/health...`).
    pub fn management(&self) -> &FakeHttp {
        &self.management
    }

    /// `http://127.0.0.1:<api port>/api/v2` — the base URL a Nessie v2 client is configured with.
    pub fn api_url(&self) -> String {
        format!("{}/api/v2", self.api.base_url())
    }

    /// `http://127.0.0.1:<management port>` — where `/q/health` lives.
    pub fn management_url(&self) -> String {
        self.management.base_url()
    }

    /// The default branch name.
    pub fn default_branch(&self) -> String {
        lock(&self.state).default_branch.clone()
    }

    /// Create branch `name` at the current HEAD of reference `from`. Returns its hash.
    pub fn create_branch(&self, name: &str, from: &str) -> Result<String, NessieFakeError> {
        self.create_reference(name, RefKind::Branch, from)
    }

    /// Create tag `name` at the current HEAD of reference `from`. Returns its hash.
    pub fn create_tag(&self, name: &str, from: &str) -> Result<String, NessieFakeError> {
        self.create_reference(name, RefKind::Tag, from)
    }

    fn create_reference(
        &self,
        name: &str,
        kind: RefKind,
        from: &str,
    ) -> Result<String, NessieFakeError> {
        let mut repo = lock(&self.state);
        let (from, _, head) = repo.named(from)?;
        repo.create_ref(name, kind, Some(&from), Some(&head))
    }

    /// Commit on `branch`: for each key (`"db.orders"`), an Iceberg table is created, or the
    /// existing one gets a new snapshot; missing parent namespaces are created in the same commit.
    /// Returns the new HEAD hash.
    pub fn commit(&self, branch: &str, keys: &[&str]) -> Result<String, NessieFakeError> {
        self.commit_with_message(branch, keys, &format!("update {}", keys.join(", ")))
    }

    /// [`FakeNessie::commit`] with a commit message.
    pub fn commit_with_message(
        &self,
        branch: &str,
        keys: &[&str],
        message: &str,
    ) -> Result<String, NessieFakeError> {
        let keys: Vec<Key> = keys
            .iter()
            .map(|k| parse_key(k))
            .collect::<Result<_, _>>()?;
        let mut repo = lock(&self.state);
        let (spec, ops) = repo.scripted_ops(branch, &keys, 0)?;
        let meta = repo::Meta {
            message: message.to_string(),
            authors: vec![SCRIPTED_AUTHOR.to_string()],
            ..repo::Meta::default()
        };
        let (head, _) = repo.commit_ops(&spec, meta, ops)?;
        Ok(head.hash)
    }

    /// Make a merge of `source` into `target` conflict on `key`: commit a different change to
    /// `key` on each branch. If neither has the key yet, both create it (a `KEY_EXISTS` conflict);
    /// if it exists since their common ancestor, both update it (`VALUE_DIFFERS`).
    /// Returns `(source HEAD, target HEAD)`.
    pub fn conflicting_commit(
        &self,
        source: &str,
        target: &str,
        key: &str,
    ) -> Result<(String, String), NessieFakeError> {
        let k = parse_key(key)?;
        let mut repo = lock(&self.state);
        let msg = |side: &str| repo::Meta {
            message: format!("conflicting change to {key} on {side}"),
            authors: vec![SCRIPTED_AUTHOR.to_string()],
            ..repo::Meta::default()
        };
        let (spec, ops) = repo.scripted_ops(source, std::slice::from_ref(&k), 1)?;
        let (s, _) = repo.commit_ops(&spec, msg(source), ops)?;
        let (spec, ops) = repo.scripted_ops(target, std::slice::from_ref(&k), 2)?;
        let (t, _) = repo.commit_ops(&spec, msg(target), ops)?;
        Ok((s.hash, t.hash))
    }

    /// Point branch `name` at the current HEAD of reference `to`, as
    /// `PUT /api/v2/trees/{name}@{its head}` with `to`'s reference does (without a request in the
    /// record). Returns the new hash.
    pub fn assign_branch(&self, name: &str, to: &str) -> Result<String, NessieFakeError> {
        let mut repo = lock(&self.state);
        let (_, _, target) = repo.named(to)?;
        let (_, _, head) = repo.named(name)?;
        let spec = repo::RefSpec::parse(&format!("{name}@{head}"))?;
        repo.assign(&spec, Some(RefKind::Branch), &target)
            .map(|r| r.hash)
    }

    /// The hash `reference` (any v2 ref syntax, e.g. `main`, `main~1`) resolves to, or `None`.
    pub fn head(&self, reference: &str) -> Option<String> {
        let repo = lock(&self.state);
        repo::RefSpec::parse(reference)
            .ok()
            .and_then(|spec| repo.resolve(&spec).ok())
            .map(|r| r.hash)
    }

    /// Named references as `(name, kind, hash)`, sorted by name.
    pub fn references(&self) -> Vec<(String, RefKind, String)> {
        lock(&self.state)
            .refs
            .iter()
            .map(|(n, (k, h))| (n.clone(), *k, h.clone()))
            .collect()
    }

    /// Commit hashes of `reference`'s log, newest first (empty for an unknown reference).
    pub fn log(&self, reference: &str) -> Vec<String> {
        let repo = lock(&self.state);
        let Some(hash) = repo::RefSpec::parse(reference)
            .ok()
            .and_then(|s| repo.resolve(&s).ok())
        else {
            return Vec::new();
        };
        repo.log(&hash.hash)
            .iter()
            .map(|c| c.hash.clone())
            .collect()
    }

    /// The content JSON stored at `key` on `reference`, if any.
    pub fn content(&self, reference: &str, key: &str) -> Option<Value> {
        let repo = lock(&self.state);
        let spec = repo::RefSpec::parse(reference).ok()?;
        let hash = repo.resolve(&spec).ok()?.hash;
        let key = parse_key(key).ok()?;
        repo.commits.get(&hash)?.contents.get(&key).cloned()
    }

    /// The committer name recorded on commits (the real server uses the authenticated user; the
    /// default is the empty string, as for an unauthenticated server).
    pub fn set_committer(&self, committer: &str) {
        lock(&self.state).committer = committer.to_string();
    }

    /// Every health check DOWN: `/q/health` and `/q/health/ready` answer 503
    /// `{"status":"DOWN",…}`. `/q/health/live` stays UP, as on a real Nessie whose store is
    /// unreachable (it has no liveness check); a dead process is
    /// [`FakeHttp::refuse_connections`] on both servers.
    pub fn set_health_down(&self) {
        for c in &mut lock(&self.state).checks {
            c.up = false;
        }
    }

    /// Every health check UP again.
    pub fn set_health_up(&self) {
        for c in &mut lock(&self.state).checks {
            c.up = true;
        }
    }

    /// Set (or add, as a readiness check) the health check `name`.
    pub fn set_check(&self, name: &str, up: bool) {
        let mut repo = lock(&self.state);
        match repo.checks.iter_mut().find(|c| c.name == name) {
            Some(c) => c.up = up,
            None => repo.checks.push(Check {
                name: name.to_string(),
                up,
                liveness: false,
                readiness: true,
            }),
        }
    }
}
