//! `flink.savepoint` and `flink.stop_with_savepoint`.

use std::time::Duration;

use async_trait::async_trait;
use rb_core::{
    ActionContext, ErrorKind, Outcome, Plan, Remediation, RemediationError, Risk, Verification,
};
use serde_json::json;

use super::api::{flink_path, Flink};
use super::{job_hint, param_str, trigger_id, FlinkEndpoint};

/// Take a savepoint of a running job (`POST /jobs/<id>/savepoints`), wait for it, and hand its path
/// on to later steps as `savepoint_path`. See the [module docs](super) for the exact calls.
#[derive(Debug, Clone)]
pub struct Savepoint {
    inner: SavepointOp,
}

/// Stop a job with a savepoint (`POST /jobs/<id>/stop`): the job ends FINISHED, the savepoint's path
/// is handed on as `savepoint_path`. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct StopWithSavepoint {
    inner: SavepointOp,
}

#[derive(Debug, Clone)]
struct SavepointOp {
    id: &'static str,
    stop: bool,
    endpoint: FlinkEndpoint,
    job: Option<String>,
    target_directory: Option<String>,
    poll_every: Duration,
    wait: Duration,
}

impl SavepointOp {
    fn new(id: &'static str, stop: bool, endpoint: FlinkEndpoint) -> Self {
        Self {
            id,
            stop,
            endpoint,
            job: None,
            target_directory: None,
            poll_every: Duration::from_millis(500),
            wait: Duration::from_secs(600),
        }
    }
}

macro_rules! builders {
    ($t:ty) => {
        impl $t {
            /// The job (id or name) when the incident does not name one (`job_id` / `job` label,
            /// or an earlier step's `job_id`).
            pub fn job(mut self, job: impl Into<String>) -> Self {
                self.inner.job = Some(job.into());
                self
            }

            /// Where the savepoint goes (`s3://…/savepoints`); the cluster's
            /// `execution.checkpointing.savepoint-dir` when not set.
            pub fn target_directory(mut self, dir: impl Into<String>) -> Self {
                self.inner.target_directory = Some(dir.into());
                self
            }

            /// How often the operation's status is polled (default 500 ms).
            pub fn poll_every(mut self, every: Duration) -> Self {
                self.inner.poll_every = every;
                self
            }

            /// How long to wait for the savepoint before the outcome is unknown (default 10 min).
            pub fn wait_at_most(mut self, wait: Duration) -> Self {
                self.inner.wait = wait;
                self
            }
        }
    };
}

impl Savepoint {
    /// A savepoint on `endpoint`.
    pub fn new(endpoint: FlinkEndpoint) -> Self {
        Self {
            inner: SavepointOp::new("flink.savepoint", false, endpoint),
        }
    }
}

impl StopWithSavepoint {
    /// A stop-with-savepoint on `endpoint`.
    pub fn new(endpoint: FlinkEndpoint) -> Self {
        Self {
            inner: SavepointOp::new("flink.stop_with_savepoint", true, endpoint),
        }
    }
}

builders!(Savepoint);
builders!(StopWithSavepoint);

impl SavepointOp {
    fn flink(&self) -> Flink<'_> {
        Flink::new(self.id, &self.endpoint.target.name, &*self.endpoint.client)
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
        if state != "RUNNING" {
            if self.stop && state == "FINISHED" {
                if let Some(path) = ctx.output_value::<String>(None, "savepoint_path") {
                    return Ok(Plan::nothing_to_do(
                        self.id,
                        format!("job {job} is already FINISHED, stopped with savepoint {path}"),
                    ));
                }
            }
            return Err(f.site.err(
                &format!("/jobs/{job}/status"),
                ErrorKind::Invalid,
                format!("job {job} is {state}: a savepoint needs a RUNNING job"),
            ));
        }
        let trigger = trigger_id(ctx, self.id, &job);
        let dir = self
            .target_directory
            .clone()
            .unwrap_or_else(|| "the cluster's default savepoint directory".to_string());
        let (call, undo, effect) = if self.stop {
            (
                format!(
                    "POST /jobs/{job}/stop {{drain: false, targetDirectory: {dir}, triggerId: {trigger}}}"
                ),
                format!("restore job {job} from the savepoint (flink.restore with the path this step hands on)"),
                format!("job {job} ends FINISHED; its savepoint path is handed on as savepoint_path"),
            )
        } else {
            (
                format!(
                    "POST /jobs/{job}/savepoints {{cancel-job: false, target-directory: {dir}, triggerId: {trigger}}}"
                ),
                "nothing to undo: a savepoint changes no job; delete its directory if unwanted".to_string(),
                format!("a savepoint of job {job}; its path is handed on as savepoint_path"),
            )
        };
        let plan = Plan::new(
            self.id,
            vec![self.endpoint.target.clone()],
            format!(
                "{call}, then poll GET /jobs/{job}/savepoints/{trigger} until COMPLETED (job from {from})"
            ),
        )
        .expect(effect)
        .undo(undo)
        .params(json!({
            "job_id": job,
            "target_directory": self.target_directory,
            "trigger_id": trigger,
        }));
        Ok(plan)
    }

    async fn apply(&self, plan: &Plan, ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        let f = self.flink();
        let job = param_str(&f, plan, "job_id")?;
        let trigger = param_str(&f, plan, "trigger_id")?;
        let dir = plan.params["target_directory"].as_str();
        let own = ctx.own_artifacts();
        // an earlier attempt of this step already has the savepoint: do not take a second one
        if let Some(path) = own.get("savepoint_path").and_then(|v| v.as_str()) {
            if own.get("trigger_id").and_then(|v| v.as_str()) == Some(trigger.as_str()) {
                return Ok(self.outcome(&job, &trigger, path, true));
            }
        }
        let progress = |e: rb_core::JournalError| {
            f.site.err(
                "-",
                ErrorKind::Storage,
                format!("cannot journal progress: {e}"),
            )
        };
        ctx.progress("trigger_id", json!(trigger))
            .await
            .map_err(progress)?;
        let got = f.trigger(&job, self.stop, dir, &trigger).await?;
        let path = f
            .await_savepoint(&job, &got, self.poll_every, self.wait)
            .await?;
        ctx.progress("savepoint_path", json!(path))
            .await
            .map_err(progress)?;
        Ok(self.outcome(&job, &got, &path, false))
    }

    fn outcome(&self, job: &str, trigger: &str, path: &str, reused: bool) -> Outcome {
        let what = if self.stop {
            "stopped with savepoint"
        } else {
            "savepoint"
        };
        let again = if reused {
            " (taken by an earlier attempt of this step)"
        } else {
            ""
        };
        Outcome::new(format!("job {job}: {what} {path}{again}")).details(json!({
            "job_id": job,
            "savepoint_path": path,
            "trigger_id": trigger,
        }))
    }

    async fn verify(
        &self,
        plan: &Plan,
        outcome: &Outcome,
    ) -> Result<Verification, RemediationError> {
        let f = self.flink();
        let job = param_str(&f, plan, "job_id")?;
        let Some(path) = outcome.details["savepoint_path"].as_str() else {
            return Ok(Verification::Failed {
                evidence: "the outcome names no savepoint path".into(),
            });
        };
        if self.stop {
            let state = f.status(&job).await?;
            return Ok(match state.as_str() {
                "FINISHED" => Verification::Succeeded {
                    evidence: format!("job {job} is FINISHED after its savepoint {path}"),
                },
                "FAILED" | "CANCELED" => Verification::Failed {
                    evidence: format!("job {job} ended {state}, not FINISHED"),
                },
                other => Verification::Inconclusive {
                    why: format!("job {job} is still {other}"),
                },
            });
        }
        let cps = f.checkpoints(&job).await?;
        let seen = cps
            .latest
            .savepoint
            .as_ref()
            .and_then(|s| s.external_path.as_deref())
            .map(flink_path);
        Ok(if seen.as_deref() == Some(flink_path(path).as_str()) {
            Verification::Succeeded {
                evidence: format!("/jobs/{job}/checkpoints reports the savepoint {path}"),
            }
        } else {
            Verification::Inconclusive {
                why: format!(
                    "/jobs/{job}/checkpoints reports latest savepoint {seen:?}, not yet {path}"
                ),
            }
        })
    }
}

#[async_trait]
impl Remediation for Savepoint {
    fn id(&self) -> &str {
        self.inner.id
    }
    fn risk(&self) -> Risk {
        Risk::Safe
    }
    fn idempotent(&self) -> bool {
        true
    }
    fn verify_within(&self) -> Duration {
        Duration::from_secs(60)
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError> {
        self.inner.plan(ctx).await
    }
    async fn apply(&self, plan: &Plan, ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        self.inner.apply(plan, ctx).await
    }
    async fn verify(
        &self,
        plan: &Plan,
        outcome: &Outcome,
        _ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        self.inner.verify(plan, outcome).await
    }
}

#[async_trait]
impl Remediation for StopWithSavepoint {
    fn id(&self) -> &str {
        self.inner.id
    }
    fn risk(&self) -> Risk {
        Risk::Disruptive
    }
    fn idempotent(&self) -> bool {
        true
    }
    fn verify_within(&self) -> Duration {
        Duration::from_secs(120)
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError> {
        self.inner.plan(ctx).await
    }
    async fn apply(&self, plan: &Plan, ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        self.inner.apply(plan, ctx).await
    }
    async fn verify(
        &self,
        plan: &Plan,
        outcome: &Outcome,
        _ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        self.inner.verify(plan, outcome).await
    }
}
