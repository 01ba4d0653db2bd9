//! Flink remediations over the REST API (Flink 1.18 – 2.3): savepoint, stop with savepoint, restore
//! from a savepoint or the latest retained checkpoint, rescale (in place on the adaptive scheduler,
//! with the autoscaler's parallelism).
//!
//! Every remediation talks to one [`FlinkEndpoint`] (a target and an
//! [`HttpClient`], e.g. a
//! [`ReqwestClient`](rb_probes::transport::ReqwestClient) on `http://jobmanager:8081`).
//!
//! **Which job.** In this order: the `job_id` an earlier step of the incident handed on (a restore
//! or a fallback rescale starts a new job), the incident's `job_id` label, its `job` label, the job
//! configured with `.job(…)`. A 32-hex value is a job id; anything else is a job name, looked up in
//! `GET /jobs/overview` (the newest job of that name still running, else the newest).
//!
//! ## The remediations
//!
//! | id | risk | idempotent | reversible (undo) | verifies | verify within |
//! | --- | --- | --- | --- | --- | --- |
//! | [`Savepoint`] `flink.savepoint` | safe | yes: the trigger id is ours and fixed by the plan, Flink answers a repeated trigger with the same operation; a repeated step reuses the path it journaled | nothing to undo (a savepoint changes no job; delete its directory if unwanted) | `/jobs/<id>/checkpoints` reports the savepoint as `latest.savepoint.external_path` | 1 min |
//! | [`StopWithSavepoint`] `flink.stop_with_savepoint` | disruptive | yes (same trigger id rule) | restore from the savepoint ([`Restore`]) | `/jobs/<id>/status` is FINISHED | 2 min |
//! | [`Restore`] `flink.restore` | disruptive | no — but an interrupted attempt that journaled the new `job_id` never submits again | cancel the new job; the snapshot (NO_CLAIM) is untouched | the new job is RUNNING and `/jobs/<new>/checkpoints` reports `latest.restored.external_path` = the path it was given | 5 min |
//! | [`Rescale`] `flink.rescale` in place | disruptive | yes: the same `PUT` twice changes nothing | `PUT` the previous requirements (in the plan) | `/jobs/<id>` RUNNING with every vertex at its target parallelism | 5 min |
//! | [`Rescale`] fallback (stop and resubmit) | **destructive** (the plan's own risk: a human approves it) | an attempt that journaled the savepoint or the new job reuses them | restore the savepoint at the old parallelism | the new job RUNNING, restored from the savepoint, at the target parallelism | 5 min |
//!
//! ## The exact calls
//!
//! - **savepoint** — plan: `GET /jobs/<id>/status` (must be RUNNING). Apply:
//!   `POST /jobs/<id>/savepoints {"cancel-job": false, "target-directory": D, "triggerId": T}` → 202
//!   `{"request-id"}`, then `GET /jobs/<id>/savepoints/T` until `status.id` is COMPLETED. A failed
//!   savepoint is COMPLETED too, with `operation.failure-cause` instead of `operation.location`: it is
//!   an error of kind `Rejected` naming the cause (the deepest `Caused by:`), never a success. Still
//!   IN_PROGRESS after `wait_at_most` (10 min): outcome unknown. The path is journaled
//!   (`ctx.progress("savepoint_path")`) and in the outcome's details (`savepoint_path`, `job_id`).
//! - **stop with savepoint** — the same with `POST /jobs/<id>/stop {"drain": false,
//!   "targetDirectory": D, "triggerId": T}` (camelCase here, as Flink reads it).
//! - **restore** — plan: `GET /jobs/<id>/status`; the path is the `savepoint_path` an earlier step
//!   left, else `GET /jobs/<id>/checkpoints` → `latest.completed.external_path` (when not
//!   `discarded`), else `latest.savepoint.external_path`. Apply: when the old job is not yet
//!   terminal, `PATCH /jobs/<id>?mode=cancel` and wait for it to end (two copies never run); journal
//!   `restore_path`; submit through the [`JobSubmitter`] — the default [`JarSubmitter`]:
//!   `GET /jars` (the newest upload of the jar's file name), `POST /jars/upload` (multipart
//!   `jarfile`) when it is gone, `POST /jars/<jarid>/run {"savepointPath", "claimMode",
//!   "allowNonRestoredState", "parallelism"?, "entryClass"?, "programArgsList"?}` → `{"jobid"}`;
//!   journal `job_id`. Verify: `GET /jobs/<new>/status`, `GET /jobs/<new>/checkpoints`.
//! - **rescale** — plan: `GET /jobs/<id>` (vertices, `schedulerType`), `GET /jobs/<id>/status`,
//!   `GET /jobs/<id>/resource-requirements`; with [`RescaleTo::Autoscaler`] and no
//!   [`ScalingInputs`] fact, `GET /jobs/<id>/vertices/<v>/subtasks/metrics?get=…&agg=sum,avg` per
//!   vertex and the source's `pendingRecords`. In place (adaptive scheduler and readable
//!   requirements): `PUT /jobs/<id>/resource-requirements` with every vertex
//!   `{"parallelism": {"lowerBound": min(target, old lower bound), "upperBound": target}}`. Otherwise
//!   (another scheduler, or the requirements refused) and only with a
//!   [`Rescale::fallback_submitter`]: the stop-with-savepoint calls, then the submitter with
//!   `parallelism`. **`POST /jobs/<id>/rescale` does not exist** (404) and the legacy
//!   `PATCH /jobs/<id>/rescaling` answers 503 since Flink 1.9: neither is ever called. A `PUT`
//!   refused at apply time fails the step (`Rejected`) rather than switch to the riskier plan that
//!   was not approved.
//!
//! Nothing-to-do plans: a rescale whose targets equal the current parallelism (and bounds); a stop
//! of a job already FINISHED with a savepoint an earlier step took.
//!
//! ## Errors
//!
//! Through [`rb_probes::transport`]: a refused connection is `Unreachable`; a read that times out is
//! `Timeout`; a **write** that times out, hangs, is cut off or reset is `OutcomeUnknown` (it was
//! sent: it may have happened), as is a write accepted with an unreadable answer; 401/403
//! `Unauthorized`; 409 `Conflict`; other non-2xx `Rejected` with the first line of Flink's
//! `{"errors": […]}`; a malformed or truncated read `BadResponse` naming the JSON pointer.
//!
//! ## The target parallelism
//!
//! [`autoscale::target_parallelism`] is the autoscaler's computation as a pure function; its module
//! docs give the formula and a table of worked cases. Every input and intermediate value is in the
//! plan's params (`decisions`, `inputs`) and, in words, in its description.
//!
//! ## Least privilege
//!
//! Flink's REST API has no roles: whoever reaches the JobManager's REST port can run all of the
//! above (and submit jars). Put a proxy with authentication in front (the client sends bearer or
//! basic credentials) and let rb reach only `/jobs/*`, `/jars`, `/jars/upload`, `/jars/*/run`.

// `RemediationError` is rb-core's error type, returned by value by the `Remediation` trait.
#![allow(clippy::result_large_err)]

pub mod autoscale;

mod api;
mod rescale;
mod restore;
mod savepoint;

pub use rescale::{Rescale, RescaleTo, ScalingInputs, VertexRates};
pub use restore::{ClaimMode, JarSubmitter, JobSubmitter, Restore, SubmitRequest};
pub use savepoint::{Savepoint, StopWithSavepoint};

use std::sync::Arc;

use rb_core::{ActionContext, ErrorKind, JournalError, Plan, RemediationError, Target};
use rb_probes::transport::HttpClient;

use api::Flink;

/// One Flink cluster's REST endpoint: the target acted on and the client that reaches it.
#[derive(Debug, Clone)]
pub struct FlinkEndpoint {
    /// The target (`flink/flink-main`).
    pub target: Target,
    /// The client, with the JobManager's REST URL as its base (`http://jobmanager:8081`).
    pub client: Arc<dyn HttpClient>,
}

impl FlinkEndpoint {
    /// An endpoint for `target` through `client`.
    pub fn new(target: Target, client: Arc<dyn HttpClient>) -> Self {
        Self { target, client }
    }
}

/// The job to act on and where it came from (see the module docs).
pub(crate) fn job_hint(ctx: &ActionContext, configured: Option<&str>) -> Option<(String, String)> {
    if let Some(j) = ctx.output_value::<String>(None, "job_id") {
        return Some((j, "the job_id an earlier step handed on".into()));
    }
    for label in ["job_id", "job"] {
        if let Some(v) = ctx.label(label).filter(|v| !v.is_empty()) {
            return Some((v.to_string(), format!("the incident's {label} label")));
        }
    }
    configured.map(|j| (j.to_string(), "the configured job".into()))
}

/// A string parameter of the plan, or an `Invalid` error naming it.
pub(crate) fn param_str(f: &Flink<'_>, plan: &Plan, key: &str) -> Result<String, RemediationError> {
    plan.params[key]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| {
            f.site.err(
                "-",
                ErrorKind::Invalid,
                format!("the plan has no {key} parameter"),
            )
        })
}

/// The trigger id of a savepoint: fixed by the incident, step and job inside an engine (so a repeated
/// step asks Flink for the same operation), fresh outside one.
pub(crate) fn trigger_id(ctx: &ActionContext, action: &str, job: &str) -> String {
    if ctx.incident.is_empty() {
        crate::rest::fresh_hex32(job)
    } else {
        crate::rest::stable_hex32(&[&ctx.incident, &ctx.step_id, action, job])
    }
}

pub(crate) fn progress_error(f: &Flink<'_>, e: JournalError) -> RemediationError {
    f.site.err(
        "-",
        ErrorKind::Storage,
        format!("cannot journal progress: {e}"),
    )
}
