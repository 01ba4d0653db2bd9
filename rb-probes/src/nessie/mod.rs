//! Nessie probes: the REST API and the management port's health, reference HEAD hashes, a branch's
//! recent commits, and whether a branch is ahead of or behind its backup branch — by which
//! commits — over Nessie's REST API v2, through the shared [`HttpClient`] seam
//! ([`crate::transport::ReqwestClient`] for a real server).
//!
//! | probe | id | reads |
//! | --- | --- | --- |
//! | [`NessieHealthProbe`] | `nessie.health` | API client: `GET /api/v2/config`; management client: `GET /q/health` |
//! | [`NessieBranchProbe`] | `nessie.branch` | `GET /api/v2/trees` (paged), `GET /api/v2/trees/<branch>@<hash>/history` (paged) and the same for the backup branch |
//!
//! Two clients, because a Nessie ≥ 0.82 serves `/q/health` on the **management port** (9000 by
//! default), not on the API port (19120): configure the API client with the server's root
//! (`http://nessie:19120`, the probes add `/api/v2/…`) and the management client with
//! `http://nessie:9000`.
//!
//! ## Branch versus backup
//!
//! Nessie v2 gives ahead/behind counts only against the default branch (`fetch=ALL` metadata), so
//! the probe computes them itself from the two commit logs, pinned to the HEAD hashes read from
//! `/trees` (`<name>@<hash>`, so both views are of one moment). A log lists first parents, newest
//! first; a merge commit names its merged parents in `parentCommitHashes`. A commit of one log is
//! *contained* in the other branch when it is in that branch's log or is one of the parents it
//! merged. **Ahead** = the branch's commits before the first one contained in the backup,
//! **behind** = the backup's commits before the first one contained in the branch; the first
//! common commit is the **merge base**. Pages are read alternately until both walks stop, at most
//! `max_walk` commits per branch; past that the comparison is unresolved (counts `None`, the
//! observation incomplete).
//!
//! ## Samples
//!
//! | metric | labels | probe | meaning |
//! | --- | --- | --- | --- |
//! | `nessie_api_up` | – | `nessie.health` | 1 when `/api/v2/config` answered (else the probe fails) |
//! | `nessie_health_up` | – | `nessie.health` | 1 when `/q/health` says `UP`, 0 for `DOWN` (absent when the management port could not be read) |
//! | `nessie_health_check_up` | `check` | `nessie.health` | 1 / 0 per health check |
//! | `nessie_references` | – | `nessie.branch` | references listed |
//! | `nessie_reference_present` | `reference` | `nessie.branch` | 1 when the branch (and the backup) exists, else 0 |
//! | `nessie_reference_head` | `reference`, `hash` | `nessie.branch` | 1, with the HEAD hash as a label (branch and backup) |
//! | `nessie_branch_last_commit_age_seconds` | `reference` | `nessie.branch` | age of the HEAD commit's `commitTime` on rb's clock |
//! | `nessie_branch_commits_ahead` | `reference`, `backup` | `nessie.branch` | commits on the branch not on the backup |
//! | `nessie_branch_commits_behind` | `reference`, `backup` | `nessie.branch` | commits on the backup not on the branch |
//! | `nessie_branch_in_sync` | `reference`, `backup` | `nessie.branch` | 1 when both counts are 0 |
//!
//! ## Facts
//!
//! | kind | type | probe |
//! | --- | --- | --- |
//! | `nessie.health` | [`NessieHealth`] (default branch, spec and API version, health status and checks) | `nessie.health` |
//! | `nessie.references` | [`NessieReferences`] (name, type, hash of every reference, bounded) | `nessie.branch` |
//! | `nessie.branch` | [`NessieBranch`] (HEAD hash, recent commits, [`BackupComparison`] with the merge base and the ahead/behind commits) | `nessie.branch` |
//! | `nessie.commit` | [`rb_core::observation::facts::NessieCommit`]: the branch and its HEAD hash — what the incident record carries | `nessie.branch` |
//!
//! A branch that does not exist is seen, not unknown: `present: false` and
//! `nessie_reference_present 0`. A failing `/q/health` read (unreachable, or a status other than
//! 200/503) leaves the health part unknown and the observation incomplete; a failing API read fails
//! the probe.
//!
//! ## Authentication and least privilege
//!
//! Give the API client a bearer token when Nessie requires authentication
//! (`ReqwestClient::builder(url).auth(HttpAuth::Bearer(Secret::new(token)))`, see
//! [`crate::transport::HttpAuth`]); the token is only ever sent in the `Authorization` header and
//! never appears in errors or observations. The probes only `GET`: a principal allowed to
//! `VIEW_REFERENCE` and `READ_COMMIT_LOG` (Nessie's authorization rules) on the watched branches
//! is enough; the management port needs no credentials.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rb_core::ProbeError> {
//! use rb_core::{Probe, ProbeContext, Secret, Target, time::Clock};
//! use rb_probes::nessie::NessieBranchProbe;
//! use rb_probes::transport::{HttpAuth, ReqwestClient};
//!
//! let api = ReqwestClient::builder("http://nessie:19120")
//!     .auth(HttpAuth::Bearer(Secret::from_env("NESSIE_TOKEN").unwrap_or_else(|| Secret::new(""))))
//!     .build()?;
//! let probe = NessieBranchProbe::new(api, Target::new("nessie", "lake"), "main").backup("backup");
//! let ctx = ProbeContext::with_timeout(Clock::system(), std::time::Duration::from_secs(10));
//! let obs = probe.observe(&ctx).await?;
//! let main: rb_probes::nessie::NessieBranch = obs.facts.get().unwrap().unwrap();
//! println!("main at {:?}, ahead of backup by {:?}", main.hash, main.backup.and_then(|b| b.ahead_count));
//! # Ok(()) }
//! ```

pub mod model;

use std::collections::HashSet;

use async_trait::async_trait;
use rb_core::observation::facts::NessieCommit;
use rb_core::{labels, FactType, Labels, Observation, Probe, ProbeContext, ProbeError, Target};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::common::ProbeSite;
use crate::transport::{check_status, decode_json, parse_json, HttpClient, HttpRequest};
use model::{CommitMeta, Health, LogPage, NessieConfig, ReferencesPage};

/// Probe id of [`NessieHealthProbe`].
pub const HEALTH_PROBE_ID: &str = "nessie.health";
/// Probe id of [`NessieBranchProbe`].
pub const BRANCH_PROBE_ID: &str = "nessie.branch";

/// What the health probe saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NessieHealth {
    /// The default branch.
    pub default_branch: String,
    /// The spec version (`2.2.0`).
    pub spec_version: Option<String>,
    /// The API version of `/api/v2`.
    pub api_version: Option<u32>,
    /// `UP` or `DOWN` from `/q/health` (`None` when it could not be read).
    pub health: Option<String>,
    /// Each check as `(name, status)`.
    pub checks: Vec<(String, String)>,
}

impl FactType for NessieHealth {
    const KIND: &'static str = "nessie.health";
}

/// One reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NessieRef {
    /// Name.
    pub name: String,
    /// `BRANCH` or `TAG`.
    pub kind: String,
    /// HEAD hash.
    pub hash: String,
}

/// Every reference (up to the probe's bound).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NessieReferences {
    /// References in the server's order.
    pub references: Vec<NessieRef>,
    /// Whether there were more than the bound.
    pub truncated: bool,
}

impl FactType for NessieReferences {
    const KIND: &'static str = "nessie.references";
}

/// One commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NessieCommitInfo {
    /// Hash.
    pub hash: String,
    /// Message (bounded).
    pub message: String,
    /// Committer.
    pub committer: Option<String>,
    /// Authors.
    pub authors: Vec<String>,
    /// Commit time (ISO-8601).
    pub commit_time: Option<String>,
    /// Parents: first parent, then merged ones.
    pub parents: Vec<String>,
}

impl From<&CommitMeta> for NessieCommitInfo {
    fn from(c: &CommitMeta) -> Self {
        let mut message: String = c.message.chars().take(300).collect();
        if c.message.chars().count() > 300 {
            message.push('…');
        }
        Self {
            hash: c.hash.clone(),
            message,
            committer: c.committer.clone(),
            authors: c.authors.clone(),
            commit_time: c.commit_time.clone(),
            parents: c.parent_commit_hashes.clone(),
        }
    }
}

/// A branch compared with its backup branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupComparison {
    /// The backup branch's name.
    pub backup: String,
    /// Whether it exists.
    pub backup_present: bool,
    /// Its HEAD hash.
    pub backup_hash: Option<String>,
    /// Whether the comparison finished within the walk bound.
    pub resolved: bool,
    /// The first common commit (`None` when they share none, or unresolved).
    pub merge_base: Option<String>,
    /// Commits on the branch not on the backup (`None` when unresolved).
    pub ahead_count: Option<usize>,
    /// Commits on the backup not on the branch.
    pub behind_count: Option<usize>,
    /// The ahead commits, newest first (at most 50).
    pub ahead: Vec<NessieCommitInfo>,
    /// The behind commits, newest first (at most 50).
    pub behind: Vec<NessieCommitInfo>,
}

/// A branch as the probe saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NessieBranch {
    /// The branch name.
    pub reference: String,
    /// Whether it exists.
    pub present: bool,
    /// `BRANCH` or `TAG`.
    pub kind: Option<String>,
    /// HEAD hash.
    pub hash: Option<String>,
    /// The newest commits, newest first.
    pub recent_commits: Vec<NessieCommitInfo>,
    /// The comparison with the backup branch, when one is configured.
    pub backup: Option<BackupComparison>,
}

impl FactType for NessieBranch {
    const KIND: &'static str = "nessie.branch";
}

/// GET `path` and decode it, errors naming the probe, target and full URL.
async fn get_json<C: HttpClient + ?Sized, T: DeserializeOwned>(
    client: &C,
    probe: &str,
    target: &str,
    path: &str,
) -> Result<T, ProbeError> {
    let url = client.url(path);
    let site = ProbeSite {
        probe,
        target,
        endpoint: &url,
    };
    let resp = client
        .send(HttpRequest::get(path))
        .await
        .map_err(|e| e.at(&site))?;
    decode_json(&site, &resp)
}

/// Percent-encode a reference for a path segment (`my/branch@hash` keeps its `/` and `@`, which
/// Nessie's v2 syntax gives a meaning).
fn ref_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~' | b'@' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encode a query value.
fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------- health

/// The API is reachable (`/api/v2/config`) and the management port's `/q/health` is `UP`.
#[derive(Debug)]
pub struct NessieHealthProbe<A, M> {
    api: A,
    management: M,
    target: Target,
}

impl<A: HttpClient, M: HttpClient> NessieHealthProbe<A, M> {
    /// `api` is the server root (`http://nessie:19120`), `management` the management port
    /// (`http://nessie:9000`).
    pub fn new(api: A, management: M, target: Target) -> Self {
        Self {
            api,
            management,
            target,
        }
    }

    async fn health(&self) -> Result<Health, ProbeError> {
        let path = "/q/health";
        let url = self.management.url(path);
        let site = ProbeSite {
            probe: HEALTH_PROBE_ID,
            target: &self.target.name,
            endpoint: &url,
        };
        let resp = self
            .management
            .send(HttpRequest::get(path))
            .await
            .map_err(|e| e.at(&site))?;
        // DOWN is an answer: 503 with the same body
        if resp.status != 503 {
            check_status(&site, &resp)?;
        }
        parse_json(&site, &resp.body)
    }
}

#[async_trait]
impl<A: HttpClient, M: HttpClient> Probe for NessieHealthProbe<A, M> {
    fn id(&self) -> &str {
        HEALTH_PROBE_ID
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let site = ProbeSite {
            probe: HEALTH_PROBE_ID,
            target: &self.target.name,
            endpoint: self.api.base_url(),
        };
        site.within(ctx, async {
            let (config, health) = futures::join!(
                get_json::<_, NessieConfig>(
                    &self.api,
                    HEALTH_PROBE_ID,
                    &self.target.name,
                    "/api/v2/config"
                ),
                self.health()
            );
            let config = config?;
            let mut obs = Observation::new(HEALTH_PROBE_ID, &self.target.name, ctx.now());
            obs.push_sample("nessie_api_up", Labels::new(), 1.0);
            let mut fact = NessieHealth {
                default_branch: config.default_branch.clone(),
                spec_version: config.spec_version.clone(),
                api_version: config.actual_api_version,
                health: None,
                checks: Vec::new(),
            };
            match health {
                Ok(h) => {
                    obs.push_sample(
                        "nessie_health_up",
                        Labels::new(),
                        if h.status == "UP" { 1.0 } else { 0.0 },
                    );
                    for c in &h.checks {
                        obs.push_sample(
                            "nessie_health_check_up",
                            labels(&[("check", &c.name)]),
                            if c.status == "UP" { 1.0 } else { 0.0 },
                        );
                    }
                    fact.checks = h
                        .checks
                        .iter()
                        .map(|c| (c.name.clone(), c.status.clone()))
                        .collect();
                    fact.health = Some(h.status);
                }
                Err(e) => obs.mark_incomplete(e.to_string()),
            }
            Ok(obs.fact(&fact))
        })
        .await
    }
}

// ---------------------------------------------------------------- branch

/// The result of comparing two first-parent logs (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// Index in the branch log of its first commit contained in the backup (= commits ahead).
    pub ahead: Option<usize>,
    /// Index in the backup log of its first commit contained in the branch (= commits behind).
    pub behind: Option<usize>,
    /// The first common commit of the branch log.
    pub merge_base: Option<String>,
}

/// Compare a branch log with a backup log (each newest first, first parents). A commit is
/// contained in a branch when it is in its log or among the parents of one of its commits (a
/// merged commit). `None` counts mean "not found in what was read".
pub fn diverge(branch: &[CommitMeta], backup: &[CommitMeta]) -> Divergence {
    fn contained(log: &[CommitMeta]) -> HashSet<&str> {
        let mut s = HashSet::new();
        for c in log {
            s.insert(c.hash.as_str());
            for p in c.parent_commit_hashes.iter().skip(1) {
                s.insert(p.as_str());
            }
        }
        s
    }
    let in_backup = contained(backup);
    let in_branch = contained(branch);
    let ahead = branch
        .iter()
        .position(|c| in_backup.contains(c.hash.as_str()));
    let behind = backup
        .iter()
        .position(|c| in_branch.contains(c.hash.as_str()));
    Divergence {
        ahead,
        behind,
        merge_base: ahead.map(|i| branch[i].hash.clone()),
    }
}

/// A paged commit log of one `name@hash`.
struct Log {
    spec: String,
    commits: Vec<CommitMeta>,
    token: Option<String>,
    done: bool,
}

impl Log {
    fn new(name: &str, hash: &str) -> Self {
        Self {
            spec: format!("{name}@{hash}"),
            commits: Vec::new(),
            token: None,
            done: false,
        }
    }
}

/// A branch's HEAD and recent commits, and how it stands against its backup branch.
#[derive(Debug)]
pub struct NessieBranchProbe<C> {
    client: C,
    target: Target,
    branch: String,
    backup: Option<String>,
    recent: usize,
    max_walk: usize,
    max_refs: usize,
}

impl<C: HttpClient> NessieBranchProbe<C> {
    /// Watch `branch` on the Nessie API behind `client` (the server root, `http://nessie:19120`);
    /// 10 recent commits, up to 1000 commits walked per branch, up to 1000 references listed.
    pub fn new(client: C, target: Target, branch: impl Into<String>) -> Self {
        Self {
            client,
            target,
            branch: branch.into(),
            backup: None,
            recent: 10,
            max_walk: 1000,
            max_refs: 1000,
        }
    }

    /// Compare the branch with `backup`.
    pub fn backup(mut self, backup: impl Into<String>) -> Self {
        self.backup = Some(backup.into());
        self
    }

    /// Report the `n` newest commits (at least 1).
    pub fn recent_commits(mut self, n: usize) -> Self {
        self.recent = n.max(1);
        self
    }

    /// Walk at most `n` commits of each log to find where the branches diverge (at least 1).
    pub fn max_walk(mut self, n: usize) -> Self {
        self.max_walk = n.max(1);
        self
    }

    /// List at most `n` references (at least 1).
    pub fn max_references(mut self, n: usize) -> Self {
        self.max_refs = n.max(1);
        self
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ProbeError> {
        get_json(&self.client, BRANCH_PROBE_ID, &self.target.name, path).await
    }

    async fn references(&self) -> Result<(Vec<NessieRef>, bool), ProbeError> {
        let mut refs = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page_size = (self.max_refs - refs.len()).min(500);
            let mut path = format!("/api/v2/trees?max-records={page_size}");
            if let Some(t) = &token {
                path.push_str(&format!("&page-token={}", query_value(t)));
            }
            let page: ReferencesPage = self.get(&path).await?;
            for r in page.references {
                if let (Some(name), Some(hash)) = (r.name, r.hash) {
                    refs.push(NessieRef {
                        name,
                        kind: r.kind,
                        hash,
                    });
                }
            }
            let more = page.has_more && page.token.is_some();
            if !more {
                return Ok((refs, false));
            }
            if refs.len() >= self.max_refs {
                refs.truncate(self.max_refs);
                return Ok((refs, true));
            }
            if token == page.token {
                // a server that repeats its token would loop forever
                return Ok((refs, true));
            }
            token = page.token;
        }
    }

    /// Read the next page of `log` (up to `n` commits).
    async fn next_page(&self, log: &mut Log, n: usize) -> Result<(), ProbeError> {
        let mut path = format!(
            "/api/v2/trees/{}/history?max-records={n}",
            ref_path(&log.spec)
        );
        if let Some(t) = &log.token {
            path.push_str(&format!("&page-token={}", query_value(t)));
        }
        let page: LogPage = self.get(&path).await?;
        let got = page.log_entries.len();
        log.commits
            .extend(page.log_entries.into_iter().map(|e| e.commit_meta));
        log.done = !page.has_more || page.token.is_none() || got == 0 || page.token == log.token;
        log.token = page.token;
        Ok(())
    }

    async fn compare(
        &self,
        branch: &mut Log,
        backup_name: &str,
        backup_hash: &str,
    ) -> Result<BackupComparison, ProbeError> {
        let mut backup = Log::new(backup_name, backup_hash);
        let page = 100.min(self.max_walk);
        let mut d;
        loop {
            d = diverge(&branch.commits, &backup.commits);
            if d.ahead.is_some() && d.behind.is_some() {
                break;
            }
            let more_branch = !branch.done && branch.commits.len() < self.max_walk;
            let more_backup = !backup.done && backup.commits.len() < self.max_walk;
            if !more_branch && !more_backup {
                break;
            }
            let (a, b) = futures::join!(
                async {
                    if more_branch {
                        self.next_page(branch, page).await
                    } else {
                        Ok(())
                    }
                },
                async {
                    if more_backup {
                        self.next_page(&mut backup, page).await
                    } else {
                        Ok(())
                    }
                }
            );
            a?;
            b?;
        }
        // Both logs read to their first commit: a side that never met the other is all its own
        // (two branches with no common history at all are resolved this way too).
        let both = branch.done && backup.done;
        let ahead = d.ahead.or(both.then_some(branch.commits.len()));
        let behind = d.behind.or(both.then_some(backup.commits.len()));
        let resolved = ahead.is_some() && behind.is_some();
        let list = |log: &[CommitMeta], n: Option<usize>| -> Vec<NessieCommitInfo> {
            log.iter()
                .take(n.unwrap_or(0).min(50))
                .map(NessieCommitInfo::from)
                .collect()
        };
        Ok(BackupComparison {
            backup: backup_name.to_string(),
            backup_present: true,
            backup_hash: Some(backup_hash.to_string()),
            resolved,
            merge_base: if resolved { d.merge_base } else { None },
            ahead_count: if resolved { ahead } else { None },
            behind_count: if resolved { behind } else { None },
            ahead: if resolved {
                list(&branch.commits, ahead)
            } else {
                Vec::new()
            },
            behind: if resolved {
                list(&backup.commits, behind)
            } else {
                Vec::new()
            },
        })
    }

    async fn observe_inner(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let (refs, truncated) = self.references().await?;
        let mut obs = Observation::new(BRANCH_PROBE_ID, &self.target.name, ctx.now());
        obs.push_sample("nessie_references", Labels::new(), refs.len() as f64);
        let find = |name: &str| refs.iter().find(|r| r.name == name);
        let missing_gap = |name: &str| {
            format!(
                "{}: reference {name:?} not among the first {} references",
                self.client.url("/api/v2/trees"),
                refs.len()
            )
        };

        let Some(head) = find(&self.branch) else {
            if truncated {
                obs.mark_incomplete(missing_gap(&self.branch));
            } else {
                obs.push_sample(
                    "nessie_reference_present",
                    labels(&[("reference", &self.branch)]),
                    0.0,
                );
            }
            obs = obs.fact(&NessieReferences {
                references: refs.clone(),
                truncated,
            });
            return Ok(obs.fact(&NessieBranch {
                reference: self.branch.clone(),
                present: false,
                kind: None,
                hash: None,
                recent_commits: Vec::new(),
                backup: None,
            }));
        };
        obs.push_sample(
            "nessie_reference_present",
            labels(&[("reference", &self.branch)]),
            1.0,
        );
        obs.push_sample(
            "nessie_reference_head",
            labels(&[("reference", &self.branch), ("hash", &head.hash)]),
            1.0,
        );

        let mut log = Log::new(&head.name, &head.hash);
        self.next_page(&mut log, self.recent).await?;
        let recent: Vec<NessieCommitInfo> = log
            .commits
            .iter()
            .take(self.recent)
            .map(NessieCommitInfo::from)
            .collect();
        if let Some(t) = recent.first().and_then(|c| c.commit_time.as_deref()) {
            if let Ok(at) =
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            {
                let now_ms = i128::from(ctx.now().as_millis());
                let at_ms = at.unix_timestamp_nanos() / 1_000_000;
                obs.push_sample(
                    "nessie_branch_last_commit_age_seconds",
                    labels(&[("reference", &self.branch)]),
                    ((now_ms - at_ms).max(0) as f64) / 1000.0,
                );
            }
        }

        let backup = match &self.backup {
            None => None,
            Some(b) => match find(b) {
                None => {
                    if truncated {
                        obs.mark_incomplete(missing_gap(b));
                    } else {
                        obs.push_sample(
                            "nessie_reference_present",
                            labels(&[("reference", b)]),
                            0.0,
                        );
                    }
                    Some(BackupComparison {
                        backup: b.clone(),
                        backup_present: false,
                        backup_hash: None,
                        resolved: false,
                        merge_base: None,
                        ahead_count: None,
                        behind_count: None,
                        ahead: Vec::new(),
                        behind: Vec::new(),
                    })
                }
                Some(bref) => {
                    obs.push_sample("nessie_reference_present", labels(&[("reference", b)]), 1.0);
                    obs.push_sample(
                        "nessie_reference_head",
                        labels(&[("reference", b), ("hash", &bref.hash)]),
                        1.0,
                    );
                    let cmp = self.compare(&mut log, b, &bref.hash).await?;
                    let l = labels(&[("reference", &self.branch), ("backup", b)]);
                    match (cmp.ahead_count, cmp.behind_count) {
                        (Some(a), Some(bh)) => {
                            obs.push_sample("nessie_branch_commits_ahead", l.clone(), a as f64);
                            obs.push_sample("nessie_branch_commits_behind", l.clone(), bh as f64);
                            obs.push_sample(
                                "nessie_branch_in_sync",
                                l,
                                if a == 0 && bh == 0 { 1.0 } else { 0.0 },
                            );
                        }
                        _ => obs.mark_incomplete(format!(
                            "{}: {} and {b} share no commit within the {} newest of each",
                            self.client
                                .url(&format!("/api/v2/trees/{}/history", ref_path(&log.spec))),
                            self.branch,
                            self.max_walk
                        )),
                    }
                    Some(cmp)
                }
            },
        };

        obs = obs.fact(&NessieReferences {
            references: refs.clone(),
            truncated,
        });
        obs = obs.fact(&NessieCommit {
            reference: self.branch.clone(),
            hash: head.hash.clone(),
        });
        Ok(obs.fact(&NessieBranch {
            reference: self.branch.clone(),
            present: true,
            kind: Some(head.kind.clone()),
            hash: Some(head.hash.clone()),
            recent_commits: recent,
            backup,
        }))
    }
}

#[async_trait]
impl<C: HttpClient> Probe for NessieBranchProbe<C> {
    fn id(&self) -> &str {
        BRANCH_PROBE_ID
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let site = ProbeSite {
            probe: BRANCH_PROBE_ID,
            target: &self.target.name,
            endpoint: self.client.base_url(),
        };
        site.within(ctx, self.observe_inner(ctx)).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn c(hash: &str, parents: &[&str]) -> CommitMeta {
        CommitMeta {
            hash: hash.into(),
            committer: None,
            authors: vec![],
            message: String::new(),
            commit_time: None,
            parent_commit_hashes: parents.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn ahead_behind_and_merge_base() {
        // base <- x <- y (main), base <- b1 (backup)
        let main = [c("y", &["x"]), c("x", &["base"]), c("base", &["root"])];
        let backup = [c("b1", &["base"]), c("base", &["root"])];
        let d = diverge(&main, &backup);
        assert_eq!(
            d,
            Divergence {
                ahead: Some(2),
                behind: Some(1),
                merge_base: Some("base".into())
            }
        );
        // in sync
        let d = diverge(&backup, &backup);
        assert_eq!((d.ahead, d.behind), (Some(0), Some(0)));
    }

    #[test]
    fn a_merged_backup_is_not_behind() {
        // main merged backup's head b1: m has parents [x, b1]
        let main = [
            c("m", &["x", "b1"]),
            c("x", &["base"]),
            c("base", &["root"]),
        ];
        let backup = [c("b1", &["base"]), c("base", &["root"])];
        let d = diverge(&main, &backup);
        assert_eq!(d.behind, Some(0), "b1 was merged into main");
        assert_eq!(d.ahead, Some(2), "the merge commit and x");
    }

    #[test]
    fn nothing_common_in_what_was_read() {
        let d = diverge(&[c("a", &["b"])], &[c("z", &["y"])]);
        assert_eq!((d.ahead, d.behind, d.merge_base), (None, None, None));
        let d = diverge(&[], &[]);
        assert_eq!((d.ahead, d.behind), (None, None));
    }

    #[test]
    fn paths_are_escaped() {
        assert_eq!(ref_path("my/branch@ab12"), "my/branch@ab12");
        assert_eq!(ref_path("a b?c#"), "a%20b%3Fc%23");
        assert_eq!(query_value("a+b/c="), "a%2Bb%2Fc%3D");
    }
}
