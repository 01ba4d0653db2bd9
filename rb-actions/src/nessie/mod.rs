//! Nessie remediations over the REST API v2: a backup branch at a hash, a merge from the backup
//! branch planned with Nessie's own dry run, and assigning a branch back to a known-good hash.
//!
//! Every remediation talks to one [`NessieEndpoint`]: a target and an
//! [`HttpClient`] whose base URL is the v2 API
//! (`http://nessie:19120/api/v2`), with bearer authentication configured on the client
//! ([`HttpAuth::Bearer`](rb_probes::transport::HttpAuth::Bearer)). Every request carries
//! `Nessie-Client-Spec: 2`, so that a 409 lists its conflicts in `errorDetails`.
//!
//! ## The remediations
//!
//! | id | risk | idempotent | reversible (undo) | verifies |
//! | --- | --- | --- | --- | --- |
//! | [`CreateBranch`] `nessie.create_branch` | safe | yes: an existing branch at the same hash is success, at another hash a `Conflict` | delete it: `DELETE /trees/<branch>@<hash>` | `GET /trees/<branch>` is at the hash |
//! | [`MergeFromBackup`] `nessie.merge_from_backup` | disruptive (readers of the branch see the backup's content) | yes: merging the same `fromHash` again merges nothing | assign the branch back to the hash it had ([`AssignBranch`]), given in the plan | the branch's HEAD is (or has in its log) the merge commit |
//! | [`AssignBranch`] `nessie.assign` | destructive (commits after the target hash leave the branch; they stay reachable by hash) | yes: a branch already at the target is success | assign it back to the hash it had (in the plan and the outcome) | `GET /trees/<branch>` is at the target hash |
//!
//! The resulting hash is in every outcome's details as `hash` (with `previous_hash`), so the
//! incident record and the review show it.
//!
//! ## The exact calls
//!
//! - **create branch** — plan: `GET /trees/<from>` (the hash, unless configured), `GET
//!   /trees/<branch>` (404: to create; at the hash: nothing to do; elsewhere: `Conflict`). Apply:
//!   `POST /trees?name=<branch>&type=BRANCH {"type":"BRANCH","name":<from>,"hash":<hash>}`; a 409
//!   `REFERENCE_ALREADY_EXISTS` is read back with `GET /trees/<branch>`.
//! - **merge from backup** — plan: `GET /trees/<into>`, `GET /trees/<from>` (unless the hash is
//!   configured), then Nessie's dry run: `POST /trees/<into>@<head>/history/merge {"fromRefName",
//!   "fromHash", "isDryRun": true, "isReturnConflictAsResult": true}`. The API reads the flags as
//!   **`isDryRun`** and **`isReturnConflictAsResult`**: a body field named `dryRun` is ignored and the
//!   merge happens for real, so this module never sends it. Conflicts (in the dry run or the real
//!   merge) are a `Conflict` error whose details list the conflicting keys; a source already merged
//!   is nothing to do. Apply: the same `POST` without `isDryRun`, with a commit message.
//! - **assign** — plan: `GET /trees/<branch>` (the current hash, pinned as the expected one). Apply:
//!   `PUT /trees/<branch>@<expected>?type=BRANCH {"type":"DETACHED","hash":<target>}`. A commit that
//!   landed in between makes Nessie answer 409 `REFERENCE_CONFLICT` (`UNEXPECTED_HASH`): a
//!   `Conflict`, never an overwrite.
//!
//! ## Errors
//!
//! A 409 is `Conflict` with details `{"error_code", "conflicts": [{"conflict_type", "key",
//! "message"}], "keys": […]}` — read from `errorDetails`, or from the message text ("The following
//! keys have been changed in conflict: 'a.b', 'c'") when the server sent none. 401/403
//! `Unauthorized`, other non-2xx `Rejected` with Nessie's message; transport failures as in
//! the `flink` module: a write that times out or is cut off is `OutcomeUnknown`.
//!
//! ## Least privilege
//!
//! With Nessie's authorization rules on, rb's principal needs `VIEW_REFERENCE`, `READ_ENTRIES`,
//! `COMMIT_CHANGE_AGAINST_REFERENCE`, `CREATE_REFERENCE` and `ASSIGN_REFERENCE_TO_HASH` on the
//! branches it manages (`main`, the backup branch) and nothing else.

// `RemediationError` is rb-core's error type, returned by value by the `Remediation` trait.
#![allow(clippy::result_large_err)]

use async_trait::async_trait;
use rb_core::{
    ActionContext, ErrorKind, Outcome, Plan, Remediation, RemediationError, Risk, Target,
    Verification,
};
use rb_probes::transport::{HttpClient, HttpRequest, HttpResponse, Method};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

use crate::rest::Site;

/// One Nessie server: the target acted on and the client that reaches its v2 API.
#[derive(Debug, Clone)]
pub struct NessieEndpoint {
    /// The target (`nessie/nessie-main`).
    pub target: Target,
    /// The client, with `…/api/v2` as its base URL.
    pub client: Arc<dyn HttpClient>,
}

impl NessieEndpoint {
    /// An endpoint for `target` through `client`.
    pub fn new(target: Target, client: Arc<dyn HttpClient>) -> Self {
        Self { target, client }
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Reference {
    hash: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct SingleReference {
    reference: Reference,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MergeResponse {
    was_applied: bool,
    was_successful: bool,
    resultant_target_hash: Option<String>,
    common_ancestor: Option<String>,
    #[serde(default)]
    details: Vec<MergeDetail>,
}

#[derive(Debug, Clone, Deserialize)]
struct MergeDetail {
    key: ContentKey,
    #[serde(default)]
    conflict: Option<Conflict>,
}

#[derive(Debug, Clone, Deserialize)]
struct ContentKey {
    elements: Vec<String>,
}

impl ContentKey {
    fn dotted(&self) -> String {
        self.elements.join(".")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Conflict {
    #[serde(default)]
    conflict_type: Option<String>,
    #[serde(default)]
    key: Option<ContentKey>,
    #[serde(default)]
    message: Option<String>,
}

impl Conflict {
    fn to_json(&self) -> Value {
        json!({
            "conflict_type": self.conflict_type.as_deref().unwrap_or("UNKNOWN"),
            "key": self.key.as_ref().map(ContentKey::dotted),
            "message": self.message,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NessieError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    error_details: Option<ErrorDetails>,
}

#[derive(Debug, Clone, Deserialize)]
struct ErrorDetails {
    #[serde(default)]
    conflicts: Vec<Conflict>,
}

/// The keys named in "The following keys have been changed in conflict: 'a.b', 'c'".
fn keys_in_message(msg: &str) -> Vec<String> {
    let Some((_, rest)) = msg.split_once("in conflict:") else {
        return Vec::new();
    };
    rest.split('\'')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, k)| k.to_string())
        .collect()
}

/// A reference in a path: a name with a `/` must end with `@`.
fn ref_path(name: &str) -> String {
    if name.contains('/') {
        format!("{name}@")
    } else {
        name.to_string()
    }
}

#[derive(Debug, Clone, Copy)]
struct Api<'a> {
    site: Site<'a>,
}

impl<'a> Api<'a> {
    fn new(action: &'a str, endpoint: &'a NessieEndpoint) -> Self {
        Self {
            site: Site::new(action, &endpoint.target.name, &*endpoint.client),
        }
    }

    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, RemediationError> {
        self.site.send(req.header("Nessie-Client-Spec", "2")).await
    }

    /// A non-2xx answer as a typed error; a 409 names its conflicting keys.
    fn error(&self, method: &str, path: &str, resp: &HttpResponse) -> RemediationError {
        let parsed: Option<NessieError> = serde_json::from_slice(&resp.body).ok();
        let message = parsed
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_else(|| resp.snippet(300));
        let e = self.site.status_error(method, path, resp.status, &message);
        if resp.status != 409 {
            return e;
        }
        let conflicts: Vec<Conflict> = parsed
            .as_ref()
            .and_then(|p| p.error_details.as_ref())
            .map(|d| d.conflicts.clone())
            .unwrap_or_default();
        let mut keys: Vec<String> = conflicts
            .iter()
            .filter_map(|c| c.key.as_ref().map(ContentKey::dotted))
            .collect();
        if keys.is_empty() {
            keys = keys_in_message(&message);
        }
        e.with_details(json!({
            "status": 409,
            "request": format!("{method} {path}"),
            "error_code": parsed.and_then(|p| p.error_code),
            "conflicts": conflicts.iter().map(Conflict::to_json).collect::<Vec<_>>(),
            "keys": keys,
        }))
    }

    async fn call<T: DeserializeOwned>(&self, req: HttpRequest) -> Result<T, RemediationError> {
        let method = req.method;
        let path = req.path.clone();
        let resp = self.send(req).await?;
        if !resp.is_success() {
            return Err(self.error(method.as_str(), &path, &resp));
        }
        self.site
            .decode(method.as_str(), method.is_mutating(), &path, &resp.body)
    }

    /// The hash of a named reference; `None` when it does not exist.
    async fn head(&self, name: &str) -> Result<Option<String>, RemediationError> {
        let path = format!("/trees/{}", ref_path(name));
        let resp = self.send(HttpRequest::get(path.clone())).await?;
        if resp.status == 404 {
            return Ok(None);
        }
        if !resp.is_success() {
            return Err(self.error("GET", &path, &resp));
        }
        let r: SingleReference = self.site.decode("GET", false, &path, &resp.body)?;
        r.reference.hash.map(Some).ok_or_else(|| {
            self.site.err(
                &path,
                ErrorKind::BadResponse,
                format!("reference {name} has no hash"),
            )
        })
    }

    async fn existing_head(&self, name: &str) -> Result<String, RemediationError> {
        self.head(name).await?.ok_or_else(|| {
            self.site.err(
                &format!("/trees/{}", ref_path(name)),
                ErrorKind::Invalid,
                format!("reference {name} does not exist"),
            )
        })
    }

    /// Merge `from@from_hash` into `into@expected`.
    async fn merge(
        &self,
        into: &str,
        expected: &str,
        from: &str,
        from_hash: &str,
        dry_run: bool,
        message: &str,
    ) -> Result<MergeResponse, RemediationError> {
        let path = format!(
            "/trees/{}@{expected}/history/merge",
            into.trim_end_matches('@')
        );
        let mut body = json!({
            "fromRefName": from,
            "fromHash": from_hash,
            "isReturnConflictAsResult": true,
        });
        if dry_run {
            body["isDryRun"] = json!(true);
        } else {
            body["commitMeta"] = json!({ "message": message });
        }
        let r: MergeResponse = self
            .call(HttpRequest::json(Method::Post, path.clone(), &body))
            .await?;
        if !r.was_successful {
            let conflicts: Vec<&Conflict> = r
                .details
                .iter()
                .filter_map(|d| d.conflict.as_ref())
                .collect();
            let keys: Vec<String> = r
                .details
                .iter()
                .filter(|d| d.conflict.is_some())
                .map(|d| d.key.dotted())
                .collect();
            return Err(self
                .site
                .err(
                    &path,
                    ErrorKind::Conflict,
                    format!(
                        "merging {from}@{from_hash} into {into} conflicts on {}",
                        keys.join(", ")
                    ),
                )
                .with_details(json!({
                    "request": format!("POST {path}"),
                    "dry_run": dry_run,
                    "conflicts": conflicts.iter().map(|c| c.to_json()).collect::<Vec<_>>(),
                    "keys": keys,
                })));
        }
        Ok(r)
    }
}

fn storage(api: &Api<'_>, e: rb_core::JournalError) -> RemediationError {
    api.site.err(
        "-",
        ErrorKind::Storage,
        format!("cannot journal progress: {e}"),
    )
}

fn param(api: &Api<'_>, plan: &Plan, key: &str) -> Result<String, RemediationError> {
    plan.params[key]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| {
            api.site.err(
                "-",
                ErrorKind::Invalid,
                format!("the plan has no {key} parameter"),
            )
        })
}

async fn verify_at(
    api: &Api<'_>,
    branch: &str,
    hash: &str,
) -> Result<Verification, RemediationError> {
    Ok(match api.head(branch).await? {
        Some(h) if h == hash => Verification::Succeeded {
            evidence: format!("GET /trees/{branch}: at {hash}"),
        },
        Some(h) => Verification::Failed {
            evidence: format!("GET /trees/{branch}: at {h}, not {hash}"),
        },
        None => Verification::Failed {
            evidence: format!("GET /trees/{branch}: the branch does not exist"),
        },
    })
}

// ------------------------------------------------------------------------------- create branch

/// Create a (backup) branch at a hash: by default the current HEAD of `main`. See the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct CreateBranch {
    endpoint: NessieEndpoint,
    branch: String,
    from: String,
    at: Option<String>,
}

impl CreateBranch {
    /// Create `branch` at the HEAD of `main`.
    pub fn new(endpoint: NessieEndpoint, branch: impl Into<String>) -> Self {
        Self {
            endpoint,
            branch: branch.into(),
            from: "main".into(),
            at: None,
        }
    }

    /// Branch off this reference (default `main`).
    pub fn from_ref(mut self, from: impl Into<String>) -> Self {
        self.from = from.into();
        self
    }

    /// At this hash of the source reference (default: its HEAD when planned).
    pub fn at_hash(mut self, hash: impl Into<String>) -> Self {
        self.at = Some(hash.into());
        self
    }
}

#[async_trait]
impl Remediation for CreateBranch {
    fn id(&self) -> &str {
        "nessie.create_branch"
    }
    fn risk(&self) -> Risk {
        Risk::Safe
    }
    fn idempotent(&self) -> bool {
        true
    }

    async fn plan(&self, _ctx: &ActionContext) -> Result<Plan, RemediationError> {
        let api = Api::new(self.id(), &self.endpoint);
        let hash = match &self.at {
            Some(h) => h.clone(),
            None => api.existing_head(&self.from).await?,
        };
        match api.head(&self.branch).await? {
            Some(h) if h == hash => {
                return Ok(Plan::nothing_to_do(
                    self.id(),
                    format!("branch {} already exists at {hash}", self.branch),
                ))
            }
            Some(h) => {
                return Err(api
                    .site
                    .err(
                        &format!("/trees/{}", ref_path(&self.branch)),
                        ErrorKind::Conflict,
                        format!(
                            "branch {} already exists at {h}, not at {hash}: not moved",
                            self.branch
                        ),
                    )
                    .with_details(
                        json!({ "branch": self.branch, "existing_hash": h, "wanted_hash": hash }),
                    ))
            }
            None => {}
        }
        Ok(Plan::new(
            self.id(),
            vec![self.endpoint.target.clone()],
            format!(
                "POST /trees?name={}&type=BRANCH from {}@{hash}",
                self.branch, self.from
            ),
        )
        .expect(format!("branch {} at {hash}", self.branch))
        .undo(format!(
            "DELETE /trees/{}@{hash}",
            ref_path(&self.branch).trim_end_matches('@')
        ))
        .params(json!({ "branch": self.branch, "from": self.from, "hash": hash })))
    }

    async fn apply(&self, plan: &Plan, _ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        let api = Api::new(self.id(), &self.endpoint);
        let branch = param(&api, plan, "branch")?;
        let from = param(&api, plan, "from")?;
        let hash = param(&api, plan, "hash")?;
        let path = format!("/trees?name={branch}&type=BRANCH");
        let body = json!({ "type": "BRANCH", "name": from, "hash": hash });
        let resp = api
            .send(HttpRequest::json(Method::Post, path.clone(), &body))
            .await?;
        if resp.status == 409 {
            match api.head(&branch).await? {
                Some(h) if h == hash => {}
                Some(h) => {
                    return Err(api.error("POST", &path, &resp).with_details(
                        json!({ "branch": branch, "existing_hash": h, "wanted_hash": hash }),
                    ))
                }
                None => return Err(api.error("POST", &path, &resp)),
            }
        } else if !resp.is_success() {
            return Err(api.error("POST", &path, &resp));
        } else {
            let _: SingleReference = api.site.decode("POST", true, &path, &resp.body)?;
        }
        Ok(
            Outcome::new(format!("branch {branch} at {hash}")).details(json!({
                "branch": branch,
                "hash": hash,
            })),
        )
    }

    async fn verify(
        &self,
        plan: &Plan,
        _outcome: &Outcome,
        _ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        let api = Api::new(self.id(), &self.endpoint);
        verify_at(
            &api,
            &param(&api, plan, "branch")?,
            &param(&api, plan, "hash")?,
        )
        .await
    }
}

// ------------------------------------------------------------------------------ merge from backup

/// Merge the backup branch into `main` (`fromRefName` + `fromHash`), planned with Nessie's own dry
/// run. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct MergeFromBackup {
    endpoint: NessieEndpoint,
    from: String,
    into: String,
    from_hash: Option<String>,
}

impl MergeFromBackup {
    /// Merge branch `from` (the backup) into `main`.
    pub fn new(endpoint: NessieEndpoint, from: impl Into<String>) -> Self {
        Self {
            endpoint,
            from: from.into(),
            into: "main".into(),
            from_hash: None,
        }
    }

    /// Merge into this branch (default `main`).
    pub fn into_branch(mut self, into: impl Into<String>) -> Self {
        self.into = into.into();
        self
    }

    /// Merge the backup at this hash (default: its HEAD when planned).
    pub fn from_hash(mut self, hash: impl Into<String>) -> Self {
        self.from_hash = Some(hash.into());
        self
    }
}

#[async_trait]
impl Remediation for MergeFromBackup {
    fn id(&self) -> &str {
        "nessie.merge_from_backup"
    }
    fn risk(&self) -> Risk {
        Risk::Disruptive
    }
    fn idempotent(&self) -> bool {
        true
    }

    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError> {
        let api = Api::new(self.id(), &self.endpoint);
        let head = api.existing_head(&self.into).await?;
        let from_hash = match &self.from_hash {
            Some(h) => h.clone(),
            None => api.existing_head(&self.from).await?,
        };
        let dry = api
            .merge(&self.into, &head, &self.from, &from_hash, true, "")
            .await?;
        let keys: Vec<String> = dry.details.iter().map(|d| d.key.dotted()).collect();
        // the source is already an ancestor of the target: the merge base is the source itself
        if dry.common_ancestor.as_deref() == Some(from_hash.as_str()) {
            return Ok(Plan::nothing_to_do(
                self.id(),
                format!(
                    "{} at {head} already has everything of {}@{from_hash}",
                    self.into, self.from
                ),
            ));
        }
        let _ = ctx;
        Ok(Plan::new(
            self.id(),
            vec![self.endpoint.target.clone()],
            format!(
                "POST /trees/{}@{head}/history/merge {{fromRefName: {}, fromHash: {from_hash}}}; Nessie's dry run (isDryRun) merges cleanly and changes {}",
                self.into,
                self.from,
                if keys.is_empty() { "the keys it did not list".to_string() } else { keys.join(", ") }
            ),
        )
        .expect(format!(
            "{} gets the content of {}@{from_hash}; the new hash is in the outcome (hash)",
            self.into, self.from
        ))
        .undo(format!(
            "assign {} back to {head}: PUT /trees/{}@<merge hash> {{hash: {head}}} (nessie.assign)",
            self.into, self.into
        ))
        .params(json!({
            "into": self.into,
            "expected_hash": head,
            "from": self.from,
            "from_hash": from_hash,
            "keys": keys,
        })))
    }

    async fn apply(&self, plan: &Plan, ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        let api = Api::new(self.id(), &self.endpoint);
        let into = param(&api, plan, "into")?;
        let expected = param(&api, plan, "expected_hash")?;
        let from = param(&api, plan, "from")?;
        let from_hash = param(&api, plan, "from_hash")?;
        let message = if ctx.incident.is_empty() {
            format!("rb: merge {from}@{from_hash} into {into}")
        } else {
            format!(
                "rb: merge {from}@{from_hash} into {into} ({})",
                ctx.incident
            )
        };
        let r = api
            .merge(&into, &expected, &from, &from_hash, false, &message)
            .await?;
        let hash = match (&r.resultant_target_hash, r.was_applied) {
            (Some(h), _) => h.clone(),
            (None, _) => api.existing_head(&into).await?,
        };
        ctx.progress("hash", json!(hash))
            .await
            .map_err(|e| storage(&api, e))?;
        let what = if r.was_applied {
            "merged"
        } else {
            "nothing left to merge"
        };
        Ok(Outcome::new(format!(
            "{what}: {from}@{from_hash} into {into}, now at {hash}"
        ))
        .details(json!({
            "hash": hash,
            "previous_hash": expected,
            "branch": into,
            "from": from,
            "from_hash": from_hash,
            "applied": r.was_applied,
        })))
    }

    async fn verify(
        &self,
        plan: &Plan,
        outcome: &Outcome,
        _ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        let api = Api::new(self.id(), &self.endpoint);
        let into = param(&api, plan, "into")?;
        let Some(hash) = outcome.details["hash"].as_str() else {
            return Ok(Verification::Failed {
                evidence: "the outcome names no hash".into(),
            });
        };
        let head = api.existing_head(&into).await?;
        if head == hash {
            return Ok(Verification::Succeeded {
                evidence: format!("{into} is at the merge {hash}"),
            });
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Log {
            log_entries: Vec<Entry>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Entry {
            commit_meta: Meta,
        }
        #[derive(Deserialize)]
        struct Meta {
            hash: String,
        }
        let log: Log = api
            .call(HttpRequest::get(format!(
                "/trees/{}/history?max-records=200",
                ref_path(&into)
            )))
            .await?;
        Ok(
            if log.log_entries.iter().any(|e| e.commit_meta.hash == hash) {
                Verification::Succeeded {
                    evidence: format!(
                        "{into} moved on to {head} and still contains the merge {hash}"
                    ),
                }
            } else {
                Verification::Failed {
                    evidence: format!(
                        "{into} is at {head}; its last 200 commits do not contain {hash}"
                    ),
                }
            },
        )
    }
}

// ---------------------------------------------------------------------------------------- assign

/// Where the hash to assign comes from.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum HashFrom {
    /// This hash.
    Hash(String),
    /// Value `key` an earlier step left (its artifact or outcome detail), from step `step` or the
    /// newest that has it.
    Output {
        /// The step id, or `None` for the newest step with the key.
        step: Option<String>,
        /// The key (`hash`, `previous_hash`).
        key: String,
    },
}

/// Assign a branch to a known-good hash, with the current hash as the expected one: a commit that
/// lands in between is a `Conflict`, never overwritten. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct AssignBranch {
    endpoint: NessieEndpoint,
    branch: String,
    to: HashFrom,
}

impl AssignBranch {
    /// Assign `branch` to the hash `to` names.
    pub fn new(endpoint: NessieEndpoint, branch: impl Into<String>, to: HashFrom) -> Self {
        Self {
            endpoint,
            branch: branch.into(),
            to,
        }
    }

    /// Assign `branch` to `hash`.
    pub fn to_hash(
        endpoint: NessieEndpoint,
        branch: impl Into<String>,
        hash: impl Into<String>,
    ) -> Self {
        Self::new(endpoint, branch, HashFrom::Hash(hash.into()))
    }
}

#[async_trait]
impl Remediation for AssignBranch {
    fn id(&self) -> &str {
        "nessie.assign"
    }
    fn risk(&self) -> Risk {
        Risk::Destructive
    }
    fn idempotent(&self) -> bool {
        true
    }

    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError> {
        let api = Api::new(self.id(), &self.endpoint);
        let target = match &self.to {
            HashFrom::Hash(h) => h.clone(),
            HashFrom::Output { step, key } => ctx
                .output_value::<String>(step.as_deref(), key)
                .ok_or_else(|| {
                    api.site.err(
                        "-",
                        ErrorKind::Invalid,
                        format!(
                            "no earlier step ({}) left a {key}",
                            step.as_deref().unwrap_or("any")
                        ),
                    )
                })?,
        };
        let current = api.existing_head(&self.branch).await?;
        if current == target {
            return Ok(Plan::nothing_to_do(
                self.id(),
                format!("{} is already at {target}", self.branch),
            ));
        }
        let b = ref_path(&self.branch);
        let b = b.trim_end_matches('@');
        Ok(Plan::new(
            self.id(),
            vec![self.endpoint.target.clone()],
            format!(
                "PUT /trees/{b}@{current}?type=BRANCH {{type: DETACHED, hash: {target}}}: {} moves from {current} to {target}; a commit after {current} makes it fail as a conflict",
                self.branch
            ),
        )
        .expect(format!("{} at {target}", self.branch))
        .undo(format!("PUT /trees/{b}@{target}?type=BRANCH {{hash: {current}}}"))
        .params(json!({ "branch": self.branch, "expected_hash": current, "hash": target })))
    }

    async fn apply(&self, plan: &Plan, _ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        let api = Api::new(self.id(), &self.endpoint);
        let branch = param(&api, plan, "branch")?;
        let expected = param(&api, plan, "expected_hash")?;
        let target = param(&api, plan, "hash")?;
        let b = ref_path(&branch);
        let path = format!("/trees/{}@{expected}?type=BRANCH", b.trim_end_matches('@'));
        let body = json!({ "type": "DETACHED", "hash": target });
        let resp = api
            .send(HttpRequest::json(Method::Put, path.clone(), &body))
            .await?;
        if !resp.is_success() {
            let e = api.error("PUT", &path, &resp);
            // already where we want it (an earlier attempt): success, nothing overwritten
            if resp.status == 409 && api.head(&branch).await?.as_deref() == Some(target.as_str()) {
                return Ok(assigned(&branch, &expected, &target, true));
            }
            return Err(e);
        }
        // the answer is the branch's new state: unreadable, the outcome is unknown
        let r: SingleReference = api.site.decode("PUT", true, &path, &resp.body)?;
        if r.reference.hash.as_deref() != Some(target.as_str()) {
            return Err(api.site.err(
                &path,
                ErrorKind::OutcomeUnknown,
                format!(
                    "PUT {path} answered the branch at {:?}, not at {target}",
                    r.reference.hash
                ),
            ));
        }
        Ok(assigned(&branch, &expected, &target, false))
    }

    async fn verify(
        &self,
        plan: &Plan,
        _outcome: &Outcome,
        _ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        let api = Api::new(self.id(), &self.endpoint);
        verify_at(
            &api,
            &param(&api, plan, "branch")?,
            &param(&api, plan, "hash")?,
        )
        .await
    }
}

fn assigned(branch: &str, previous: &str, hash: &str, already: bool) -> Outcome {
    let note = if already { " (already there)" } else { "" };
    Outcome::new(format!("{branch} assigned from {previous} to {hash}{note}")).details(json!({
        "hash": hash,
        "previous_hash": previous,
        "branch": branch,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_of_a_plain_409_are_read_from_its_message() {
        assert_eq!(
            keys_in_message("The following keys have been changed in conflict: 'a.b', 'c'"),
            vec!["a.b".to_string(), "c".to_string()]
        );
        assert!(keys_in_message("named-reference 'main' is not at expected hash").is_empty());
    }

    #[test]
    fn names_with_a_slash_end_with_an_at_in_paths() {
        assert_eq!(ref_path("main"), "main");
        assert_eq!(ref_path("team/backup"), "team/backup@");
    }
}
