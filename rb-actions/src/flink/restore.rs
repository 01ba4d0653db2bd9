//! `flink.restore` and the job submitters it (and the rescale fallback) resubmit through.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rb_core::{
    ActionContext, ErrorKind, Outcome, Plan, Remediation, RemediationError, Risk, Verification,
};
use rb_probes::transport::{HttpClient, HttpRequest, Method};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::api::{flink_path, is_terminal, Flink, JarFile, Jars, RunResponse, Uploaded};
use super::{job_hint, param_str, progress_error, FlinkEndpoint};

/// How the restored job treats the snapshot it starts from (`claimMode` of `POST /jars/<jar>/run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClaimMode {
    /// The new job never deletes the snapshot; its first checkpoint is a full one (the default,
    /// and the safe choice: the snapshot stays restorable).
    #[default]
    NoClaim,
    /// The new job owns the snapshot and may delete it once it is subsumed.
    Claim,
}

impl ClaimMode {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimMode::NoClaim => "NO_CLAIM",
            ClaimMode::Claim => "CLAIM",
        }
    }
}

/// What to (re)submit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// The remediation submitting (for errors).
    pub action: String,
    /// The target name (for errors).
    pub target: String,
    /// The job being replaced.
    pub previous_job_id: String,
    /// Start from this savepoint or retained checkpoint.
    pub savepoint_path: Option<String>,
    /// How the new job treats it.
    pub claim_mode: ClaimMode,
    /// Skip state that maps to no operator of the new program.
    pub allow_non_restored_state: bool,
    /// Job parallelism (the rescale fallback), or the program's own.
    pub parallelism: Option<u32>,
}

/// Submits a job and returns its id. The default, [`JarSubmitter`], runs an uploaded jar over REST; a
/// deployment in application mode (one cluster per job) plugs in its own.
#[async_trait]
pub trait JobSubmitter: Send + Sync + Debug {
    /// How it submits, for a plan (`POST /jars/<jar>/run`).
    fn describe(&self) -> String;

    /// Submit; the new job's id. A request that was sent but whose answer was lost must be an
    /// [`ErrorKind::OutcomeUnknown`] error (a job may have been started).
    async fn submit(&self, request: &SubmitRequest) -> Result<String, RemediationError>;
}

/// Runs a jar through Flink's REST API: finds it in `GET /jars` by file name (the newest upload),
/// uploads it (`POST /jars/upload`, multipart `jarfile`) when it is gone and its bytes are known,
/// then `POST /jars/<jarid>/run` with `savepointPath`, `claimMode`, `allowNonRestoredState`,
/// `parallelism`, `entryClass` and `programArgsList`.
#[derive(Clone)]
pub struct JarSubmitter {
    client: Arc<dyn HttpClient>,
    jar_name: String,
    jar_bytes: Option<Arc<Vec<u8>>>,
    entry_class: Option<String>,
    program_args: Vec<String>,
}

impl Debug for JarSubmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JarSubmitter")
            .field("client", &self.client)
            .field("jar_name", &self.jar_name)
            .field("jar_bytes", &self.jar_bytes.as_ref().map(|b| b.len()))
            .field("entry_class", &self.entry_class)
            .field("program_args", &self.program_args)
            .finish()
    }
}

impl JarSubmitter {
    /// Run the jar named `jar_name` (`orders-job.jar`) found on the cluster through `client`.
    pub fn new(client: Arc<dyn HttpClient>, jar_name: impl Into<String>) -> Self {
        Self {
            client,
            jar_name: jar_name.into(),
            jar_bytes: None,
            entry_class: None,
            program_args: Vec::new(),
        }
    }

    /// The jar's bytes, uploaded when the cluster no longer has it (a JobManager restart forgets
    /// uploads).
    pub fn jar_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.jar_bytes = Some(Arc::new(bytes.into()));
        self
    }

    /// The entry class, when the jar's manifest names none.
    pub fn entry_class(mut self, class: impl Into<String>) -> Self {
        self.entry_class = Some(class.into());
        self
    }

    /// Program arguments.
    pub fn program_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.program_args = args.into_iter().map(Into::into).collect();
        self
    }

    async fn find_or_upload(&self, f: &Flink<'_>) -> Result<String, RemediationError> {
        let jars: Jars = f.get("/jars").await?;
        let newest: Option<&JarFile> = jars
            .files
            .iter()
            .filter(|j| j.name == self.jar_name)
            .max_by_key(|j| j.uploaded);
        if let Some(j) = newest {
            return Ok(j.id.clone());
        }
        let Some(bytes) = &self.jar_bytes else {
            return Err(f.site.err(
                "/jars",
                ErrorKind::Invalid,
                format!(
                    "jar {} is not on the cluster and its bytes are not configured",
                    self.jar_name
                ),
            ));
        };
        let boundary = format!("rb-{}", crate::rest::fresh_hex32(&self.jar_name));
        let mut body = Vec::with_capacity(bytes.len() + 256);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"jarfile\"; filename=\"{}\"\r\nContent-Type: application/x-java-archive\r\n\r\n",
                self.jar_name.replace('"', "")
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let mut req = HttpRequest::new(Method::Post, "/jars/upload").header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        );
        req.body = Some(body);
        let up: Uploaded = f.call(req).await?;
        let id = up
            .filename
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or(&up.filename)
            .to_string();
        Ok(id)
    }
}

#[async_trait]
impl JobSubmitter for JarSubmitter {
    fn describe(&self) -> String {
        format!(
            "POST /jars/<id of {}>/run (uploaded with POST /jars/upload if the cluster no longer has it)",
            self.jar_name
        )
    }

    async fn submit(&self, r: &SubmitRequest) -> Result<String, RemediationError> {
        let f = Flink::new(&r.action, &r.target, &*self.client);
        let jar = self.find_or_upload(&f).await?;
        let mut body = json!({
            "claimMode": r.claim_mode.as_str(),
            "allowNonRestoredState": r.allow_non_restored_state,
        });
        if let Some(p) = &r.savepoint_path {
            body["savepointPath"] = json!(p);
        }
        if let Some(p) = r.parallelism {
            body["parallelism"] = json!(p);
        }
        if let Some(c) = &self.entry_class {
            body["entryClass"] = json!(c);
        }
        if !self.program_args.is_empty() {
            body["programArgsList"] = json!(self.program_args);
        }
        let run: RunResponse = f
            .call(HttpRequest::json(
                Method::Post,
                format!("/jars/{jar}/run"),
                &body,
            ))
            .await?;
        Ok(run.jobid)
    }
}

/// Restore a job from a savepoint an earlier step handed on (`savepoint_path`), else from its
/// latest retained checkpoint, by resubmitting it through a [`JobSubmitter`]; hands the new job id
/// on as `job_id`. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct Restore {
    endpoint: FlinkEndpoint,
    submitter: Arc<dyn JobSubmitter>,
    job: Option<String>,
    savepoint_step: Option<String>,
    claim_mode: ClaimMode,
    allow_non_restored_state: bool,
    wait: Duration,
}

impl Restore {
    /// Restore on `endpoint`, resubmitting through `submitter`.
    pub fn new(endpoint: FlinkEndpoint, submitter: Arc<dyn JobSubmitter>) -> Self {
        Self {
            endpoint,
            submitter,
            job: None,
            savepoint_step: None,
            claim_mode: ClaimMode::NoClaim,
            allow_non_restored_state: false,
            wait: Duration::from_secs(60),
        }
    }

    /// The job (id or name) when the incident names none.
    pub fn job(mut self, job: impl Into<String>) -> Self {
        self.job = Some(job.into());
        self
    }

    /// Read `savepoint_path` from this step only (default: the newest earlier step that left one).
    pub fn savepoint_from_step(mut self, step_id: impl Into<String>) -> Self {
        self.savepoint_step = Some(step_id.into());
        self
    }

    /// The claim mode (default [`ClaimMode::NoClaim`]).
    pub fn claim_mode(mut self, mode: ClaimMode) -> Self {
        self.claim_mode = mode;
        self
    }

    /// Allow state that maps to no operator of the program (default no).
    pub fn allow_non_restored_state(mut self, allow: bool) -> Self {
        self.allow_non_restored_state = allow;
        self
    }

    fn flink(&self) -> Flink<'_> {
        Flink::new(
            "flink.restore",
            &self.endpoint.target.name,
            &*self.endpoint.client,
        )
    }
}

#[async_trait]
impl Remediation for Restore {
    fn id(&self) -> &str {
        "flink.restore"
    }

    fn risk(&self) -> Risk {
        Risk::Disruptive
    }

    fn verify_within(&self) -> Duration {
        Duration::from_secs(300)
    }

    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError> {
        let f = self.flink();
        let (hint, from) = job_hint(ctx, self.job.as_deref()).ok_or_else(|| {
            f.site.err(
                "/jobs",
                ErrorKind::Invalid,
                "no job: the incident names none (labels job_id / job) and none is configured",
            )
        })?;
        let job = f.resolve(&hint).await?;
        let state = f.status(&job).await?;
        let earlier: Option<String> =
            ctx.output_value(self.savepoint_step.as_deref(), "savepoint_path");
        let (path, source) = match earlier {
            Some(p) => (p, "the savepoint an earlier step took".to_string()),
            None => {
                let cps = f.checkpoints(&job).await?;
                let retained = cps
                    .latest
                    .completed
                    .as_ref()
                    .filter(|c| !c.discarded)
                    .and_then(|c| c.external_path.clone().map(|p| (p, c.id)));
                match retained {
                    Some((p, id)) => (p, format!("its latest retained checkpoint {id}")),
                    None => match cps.latest.savepoint.and_then(|s| s.external_path.map(|p| (p, s.id))) {
                        Some((p, id)) => (p, format!("its latest savepoint {id}")),
                        None => {
                            return Err(f.site.err(
                                &format!("/jobs/{job}/checkpoints"),
                                ErrorKind::Invalid,
                                format!("job {job} has no retained checkpoint and no savepoint to restore from, and no earlier step handed on a savepoint_path"),
                            ))
                        }
                    },
                }
            }
        };
        let cancel_first = !is_terminal(&state);
        let mut description = String::new();
        if cancel_first {
            description.push_str(&format!(
                "job {job} is {state}: cancel it first (PATCH /jobs/{job}?mode=cancel) so that two copies never run; "
            ));
        }
        description.push_str(&format!(
            "resubmit it from {source} {path} ({}, savepointPath, claimMode {}), then check that the new job is RUNNING and that /jobs/<new>/checkpoints reports latest.restored.external_path = {path} (job from {from})",
            self.submitter.describe(),
            self.claim_mode.as_str()
        ));
        Ok(Plan::new(self.id(), vec![self.endpoint.target.clone()], description)
            .expect(format!("a new job RUNNING from {path}; its id handed on as job_id"))
            .undo("cancel the new job (PATCH /jobs/<new>?mode=cancel); the snapshot it started from is left untouched (NO_CLAIM)")
            .params(json!({
                "job_id": job,
                "state": state,
                "restore_path": path,
                "cancel_first": cancel_first,
                "claim_mode": self.claim_mode,
                "allow_non_restored_state": self.allow_non_restored_state,
            })))
    }

    async fn apply(&self, plan: &Plan, ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        let f = self.flink();
        let old = param_str(&f, plan, "job_id")?;
        let path = param_str(&f, plan, "restore_path")?;
        // an interrupted earlier attempt already submitted: never start a second copy
        if let Some(new) = ctx.own_artifacts().get("job_id").and_then(|v| v.as_str()) {
            return Ok(restored(&old, new, &path, true));
        }
        if plan.params["cancel_first"].as_bool() == Some(true) {
            cancel_and_wait(&f, &old, self.wait).await?;
        }
        ctx.progress("restore_path", json!(path))
            .await
            .map_err(|e| progress_error(&f, e))?;
        let request = SubmitRequest {
            action: self.id().to_string(),
            target: self.endpoint.target.name.clone(),
            previous_job_id: old.clone(),
            savepoint_path: Some(path.clone()),
            claim_mode: serde_json::from_value(plan.params["claim_mode"].clone())
                .unwrap_or(self.claim_mode),
            allow_non_restored_state: plan.params["allow_non_restored_state"]
                .as_bool()
                .unwrap_or(false),
            parallelism: None,
        };
        let new = self.submitter.submit(&request).await?;
        ctx.progress("job_id", json!(new))
            .await
            .map_err(|e| progress_error(&f, e))?;
        Ok(restored(&old, &new, &path, false))
    }

    async fn verify(
        &self,
        plan: &Plan,
        outcome: &Outcome,
        _ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        let f = self.flink();
        let path = param_str(&f, plan, "restore_path")?;
        let Some(new) = outcome.details["job_id"].as_str() else {
            return Ok(Verification::Failed {
                evidence: "the outcome names no new job".into(),
            });
        };
        verify_restored(&f, new, &path, None).await
    }
}

fn restored(old: &str, new: &str, path: &str, earlier: bool) -> Outcome {
    let again = if earlier {
        " (submitted by an earlier attempt of this step)"
    } else {
        ""
    };
    Outcome::new(format!("job {old} restored as {new} from {path}{again}")).details(json!({
        "job_id": new,
        "previous_job_id": old,
        "restored_from": path,
    }))
}

/// `PATCH /jobs/<id>?mode=cancel`, then wait until it is CANCELED (or otherwise terminal).
pub(crate) async fn cancel_and_wait(
    f: &Flink<'_>,
    job: &str,
    wait: Duration,
) -> Result<(), RemediationError> {
    let path = format!("/jobs/{job}?mode=cancel");
    let resp = f
        .site
        .send(HttpRequest::new(Method::Patch, path.clone()))
        .await?;
    // 409: already terminal — fine
    if !resp.is_success() && resp.status != 409 {
        return Err(f.site.status_error(
            "PATCH",
            &path,
            resp.status,
            &super::api::flink_error(&resp.body),
        ));
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let state = f.status(job).await?;
        if is_terminal(&state) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(f.site.err(
                &format!("/jobs/{job}/status"),
                ErrorKind::OutcomeUnknown,
                format!("job {job} still {state} {wait:?} after it was cancelled"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The new job is RUNNING, restored from `path` (and at `parallelism` when given).
pub(crate) async fn verify_restored(
    f: &Flink<'_>,
    new: &str,
    path: &str,
    parallelism: Option<&std::collections::BTreeMap<String, u32>>,
) -> Result<Verification, RemediationError> {
    let state = f.status(new).await?;
    if is_terminal(&state) {
        return Ok(Verification::Failed {
            evidence: format!("the new job {new} ended {state}"),
        });
    }
    if state != "RUNNING" {
        return Ok(Verification::Inconclusive {
            why: format!("the new job {new} is {state}"),
        });
    }
    let cps = f.checkpoints(new).await?;
    let Some(restored) = cps.latest.restored else {
        return Ok(Verification::Inconclusive {
            why: format!("/jobs/{new}/checkpoints reports no restore yet"),
        });
    };
    let got = restored.external_path.as_deref().map(flink_path);
    if got.as_deref() != Some(flink_path(path).as_str()) {
        return Ok(Verification::Failed {
            evidence: format!(
                "the new job {new} restored from {:?}, not from {path}",
                restored.external_path
            ),
        });
    }
    if let Some(want) = parallelism {
        let detail = f.detail(new).await?;
        let off: Vec<String> = detail
            .vertices
            .iter()
            .filter_map(|v| {
                want.get(&v.id)
                    .filter(|w| **w != v.parallelism)
                    .map(|w| format!("{} at {} (wanted {w})", v.name, v.parallelism))
            })
            .collect();
        if !off.is_empty() {
            return Ok(Verification::Inconclusive {
                why: format!("the new job {new} runs {}", off.join(", ")),
            });
        }
    }
    Ok(Verification::Succeeded {
        evidence: format!(
            "job {new} is RUNNING and /jobs/{new}/checkpoints reports latest.restored.external_path = {path} (checkpoint {}, savepoint: {})",
            restored.id, restored.is_savepoint
        ),
    })
}
