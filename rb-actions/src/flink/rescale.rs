//! `flink.rescale`: in place on the adaptive scheduler, else stop-with-savepoint and resubmit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rb_core::{
    ActionContext, ErrorKind, FactType, Outcome, Plan, Remediation, RemediationError, Risk,
    Verification,
};
use rb_probes::transport::{HttpRequest, Method};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::api::{is_terminal, Bounds, Flink, JobDetail, Requirements, VertexRequirement};
use super::autoscale::{target_parallelism, AutoscalerSettings, ScalingDecision, VertexLoad};
use super::restore::{verify_restored, JobSubmitter, SubmitRequest};
use super::{job_hint, param_str, progress_error, trigger_id, FlinkEndpoint};

/// The rates the autoscaler reads, as a diagnosis fact (`flink.scaling_inputs`): a probe (or a
/// test) attaches it, [`Rescale`] reads it with [`ActionContext::fact`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingInputs {
    /// Records/s arriving at the source (the rate every vertex must sustain).
    pub input_rate: f64,
    /// Records pending at the source (the consumer lag).
    pub lag: f64,
    /// Partitions the source reads, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_partitions: Option<u32>,
    /// Per vertex id: what it processes now and how busy it is. The job's first vertex is taken as
    /// the source (its partitions align the target); a vertex missing here, or with no throughput or
    /// busy time observed, keeps its parallelism (the plan says so).
    pub vertices: BTreeMap<String, VertexRates>,
}

/// What one vertex does now.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VertexRates {
    /// Records/s over all its subtasks.
    pub processing_rate: f64,
    /// `busyTimeMsPerSecond / 1000`, averaged over subtasks.
    pub busy_ratio: f64,
}

impl FactType for ScalingInputs {
    const KIND: &'static str = "flink.scaling_inputs";
}

/// How the new parallelism is chosen.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RescaleTo {
    /// Every vertex at this parallelism (capped by its max parallelism).
    Parallelism(u32),
    /// Per vertex, as Flink's autoscaler would ([`super::autoscale`]), from the
    /// [`ScalingInputs`] fact of the diagnosis, else from the job's metrics over REST.
    Autoscaler(AutoscalerSettings),
}

/// Rescale a running job. On the adaptive scheduler (Flink ≥ 1.18) in place:
/// `PUT /jobs/<id>/resource-requirements`; where that API is absent (another scheduler) or refused,
/// a riskier plan: stop with a savepoint and resubmit at the new parallelism. See the
/// [module docs](super).
#[derive(Debug, Clone)]
pub struct Rescale {
    endpoint: FlinkEndpoint,
    to: RescaleTo,
    job: Option<String>,
    submitter: Option<Arc<dyn JobSubmitter>>,
    target_directory: Option<String>,
    poll_every: Duration,
    wait: Duration,
}

impl Rescale {
    /// Rescale on `endpoint` as `to` says.
    pub fn new(endpoint: FlinkEndpoint, to: RescaleTo) -> Self {
        Self {
            endpoint,
            to,
            job: None,
            submitter: None,
            target_directory: None,
            poll_every: Duration::from_millis(500),
            wait: Duration::from_secs(600),
        }
    }

    /// Every vertex at `n`.
    pub fn to_parallelism(endpoint: FlinkEndpoint, n: u32) -> Self {
        Self::new(endpoint, RescaleTo::Parallelism(n))
    }

    /// As the autoscaler would, with its default settings.
    pub fn autoscaled(endpoint: FlinkEndpoint) -> Self {
        Self::new(
            endpoint,
            RescaleTo::Autoscaler(AutoscalerSettings::default()),
        )
    }

    /// The job (id or name) when the incident names none.
    pub fn job(mut self, job: impl Into<String>) -> Self {
        self.job = Some(job.into());
        self
    }

    /// How to resubmit when the job cannot be rescaled in place (without one, such a job is an
    /// error, never a silent stop).
    pub fn fallback_submitter(mut self, submitter: Arc<dyn JobSubmitter>) -> Self {
        self.submitter = Some(submitter);
        self
    }

    /// Where the fallback's savepoint goes (default: the cluster's savepoint directory).
    pub fn target_directory(mut self, dir: impl Into<String>) -> Self {
        self.target_directory = Some(dir.into());
        self
    }

    /// How often the fallback's savepoint is polled (default 500 ms).
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll_every = every;
        self
    }

    fn flink(&self) -> Flink<'_> {
        Flink::new(
            "flink.rescale",
            &self.endpoint.target.name,
            &*self.endpoint.client,
        )
    }

    /// Per vertex id: the target parallelism, and the decision when the autoscaler made it.
    async fn targets(
        &self,
        f: &Flink<'_>,
        ctx: &ActionContext,
        detail: &JobDetail,
    ) -> Result<
        (
            BTreeMap<String, u32>,
            BTreeMap<String, ScalingDecision>,
            Value,
        ),
        RemediationError,
    > {
        let mut targets = BTreeMap::new();
        let mut decisions = BTreeMap::new();
        match &self.to {
            RescaleTo::Parallelism(n) => {
                if *n == 0 {
                    return Err(f.site.err(
                        "-",
                        ErrorKind::Invalid,
                        "target parallelism must be >= 1",
                    ));
                }
                for v in &detail.vertices {
                    let max = u32::try_from(v.max_parallelism.max(1)).unwrap_or(u32::MAX);
                    targets.insert(v.id.clone(), (*n).min(max));
                }
                Ok((targets, decisions, json!({ "parallelism": n })))
            }
            RescaleTo::Autoscaler(settings) => {
                let (inputs, from) = match ctx.fact::<ScalingInputs>() {
                    Some(i) => (i, "the diagnosis fact flink.scaling_inputs"),
                    None => (
                        read_inputs(f, detail).await?,
                        "the job's metrics (subtasks/metrics busyTimeMsPerSecond, numRecordsIn/OutPerSecond; the source's pendingRecords)",
                    ),
                };
                let mut kept: BTreeMap<String, String> = BTreeMap::new();
                for (i, v) in detail.vertices.iter().enumerate() {
                    let key_groups = u32::try_from(v.max_parallelism.max(1)).unwrap_or(u32::MAX);
                    let Some(rates) = inputs.vertices.get(&v.id) else {
                        targets.insert(v.id.clone(), v.parallelism);
                        continue;
                    };
                    let load = VertexLoad {
                        current: v.parallelism.max(1),
                        key_groups,
                        partitions: if i == 0 {
                            inputs.source_partitions
                        } else {
                            None
                        },
                        input_rate: inputs.input_rate,
                        lag: inputs.lag,
                        processing_rate: rates.processing_rate,
                        busy_ratio: rates.busy_ratio,
                    };
                    if !(rates.processing_rate > 0.0 && rates.busy_ratio > 0.0) {
                        // an idle vertex: nothing tells what a subtask can do; left as it is
                        targets.insert(v.id.clone(), v.parallelism);
                        kept.insert(
                            v.id.clone(),
                            format!(
                                "{}: no throughput or busy time observed (rate {}/s, busy {}): kept at {}",
                                v.name, rates.processing_rate, rates.busy_ratio, v.parallelism
                            ),
                        );
                        continue;
                    }
                    let d = target_parallelism(&load, settings).map_err(|e| {
                        f.site.err(
                            &format!("/jobs/{}", detail.jid),
                            ErrorKind::Invalid,
                            format!("vertex {} ({}): {e}", v.name, v.id),
                        )
                    })?;
                    targets.insert(v.id.clone(), d.parallelism);
                    decisions.insert(v.id.clone(), d);
                }
                let settings_json = json!({
                    "utilization": settings.utilization,
                    "catch_up_s": settings.catch_up.as_secs_f64(),
                    "restart_time_s": settings.restart_time.as_secs_f64(),
                    "max_scale_down": settings.max_scale_down,
                    "max_scale_up": settings.max_scale_up,
                    "min_parallelism": settings.min_parallelism,
                    "max_parallelism": settings.max_parallelism,
                });
                Ok((
                    targets,
                    decisions,
                    json!({ "autoscaler": settings_json, "inputs": inputs, "inputs_from": from, "kept": kept }),
                ))
            }
        }
    }
}

/// The autoscaler's inputs from the job's metrics: per vertex the summed records/s (out for the
/// source, in for the others) and the average busy time; the source's `pendingRecords`.
async fn read_inputs(f: &Flink<'_>, detail: &JobDetail) -> Result<ScalingInputs, RemediationError> {
    #[derive(Deserialize)]
    struct Agg {
        id: String,
        #[serde(default)]
        sum: Option<f64>,
        #[serde(default)]
        avg: Option<f64>,
    }
    #[derive(Deserialize)]
    struct Metric {
        id: String,
        #[serde(default)]
        value: Option<String>,
    }
    let job = &detail.jid;
    let mut vertices = BTreeMap::new();
    let mut input_rate = None;
    let mut lag = 0.0;
    for (i, v) in detail.vertices.iter().enumerate() {
        let path = format!(
            "/jobs/{job}/vertices/{}/subtasks/metrics?get=numRecordsInPerSecond,numRecordsOutPerSecond,busyTimeMsPerSecond&agg=sum,avg",
            v.id
        );
        let aggs: Vec<Agg> = f.get(&path).await?;
        let get = |name: &str| aggs.iter().find(|a| a.id == name);
        let rate = if i == 0 {
            get("numRecordsOutPerSecond").and_then(|a| a.sum)
        } else {
            get("numRecordsInPerSecond").and_then(|a| a.sum)
        };
        let busy = get("busyTimeMsPerSecond").and_then(|a| a.avg);
        let (Some(rate), Some(busy)) = (rate, busy) else {
            return Err(f.site.err(
                &path,
                ErrorKind::Invalid,
                format!("no throughput or busy-time metrics for vertex {} yet (metrics start ~10 s after a job starts)", v.name),
            ));
        };
        if i == 0 {
            input_rate = Some(rate);
            let names: Vec<Metric> = f
                .get(&format!("/jobs/{job}/vertices/{}/metrics", v.id))
                .await?;
            let pending: Vec<&str> = names
                .iter()
                .map(|m| m.id.as_str())
                .filter(|n| n.ends_with(".pendingRecords"))
                .collect();
            if !pending.is_empty() {
                let vals: Vec<Metric> = f
                    .get(&format!(
                        "/jobs/{job}/vertices/{}/metrics?get={}",
                        v.id,
                        pending.join(",")
                    ))
                    .await?;
                lag = vals
                    .iter()
                    .filter_map(|m| m.value.as_deref()?.parse::<f64>().ok())
                    .filter(|x| x.is_finite() && *x >= 0.0)
                    .sum();
            }
        }
        vertices.insert(
            v.id.clone(),
            VertexRates {
                processing_rate: rate,
                busy_ratio: (busy / 1000.0).clamp(0.0, 1.0),
            },
        );
    }
    Ok(ScalingInputs {
        input_rate: input_rate.unwrap_or(0.0),
        lag,
        source_partitions: None,
        vertices,
    })
}

fn changes(detail: &JobDetail, targets: &BTreeMap<String, u32>) -> Vec<String> {
    detail
        .vertices
        .iter()
        .map(|v| {
            let t = targets.get(&v.id).copied().unwrap_or(v.parallelism);
            format!("{} {} → {t}", v.name, v.parallelism)
        })
        .collect()
}

#[async_trait]
impl Remediation for Rescale {
    fn id(&self) -> &str {
        "flink.rescale"
    }

    fn risk(&self) -> Risk {
        Risk::Disruptive
    }

    fn idempotent(&self) -> bool {
        true
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
        let detail = f.detail(&job).await?;
        let state = f.status(&job).await?;
        if state != "RUNNING" {
            return Err(f.site.err(
                &format!("/jobs/{job}/status"),
                ErrorKind::Invalid,
                format!("job {job} is {state}: only a RUNNING job is rescaled"),
            ));
        }
        let (targets, decisions, inputs) = self.targets(&f, ctx, &detail).await?;
        let current: BTreeMap<String, u32> = detail
            .vertices
            .iter()
            .map(|v| (v.id.clone(), v.parallelism))
            .collect();
        let why: Vec<String> = decisions
            .iter()
            .map(|(id, d)| {
                let name = detail
                    .vertices
                    .iter()
                    .find(|v| &v.id == id)
                    .map_or(id.as_str(), |v| v.name.as_str());
                format!("{name}: {}", d.reason)
            })
            .collect();
        let mut why = why;
        if let Some(kept) = inputs["kept"].as_object() {
            why.extend(kept.values().filter_map(|v| v.as_str().map(str::to_string)));
        }
        let why_text = if why.is_empty() {
            String::new()
        } else {
            format!(" — {}", why.join("; "))
        };
        // the API: the adaptive scheduler, and resource requirements that can be read
        let adaptive = detail
            .scheduler_type
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("adaptive"));
        let reqs: Result<Requirements, String> = if adaptive {
            match f
                .get::<Requirements>(&format!("/jobs/{job}/resource-requirements"))
                .await
            {
                Ok(r) => Ok(r),
                Err(e) if e.kind() == ErrorKind::Rejected => Err(e.message.clone()),
                Err(e) => return Err(e),
            }
        } else {
            Err(format!(
                "job {job} runs on the {} scheduler, not the adaptive one",
                detail.scheduler_type.as_deref().unwrap_or("default")
            ))
        };
        let unchanged = detail
            .vertices
            .iter()
            .all(|v| targets.get(&v.id) == Some(&v.parallelism));
        let bounds_match = match &reqs {
            Ok(r) => detail.vertices.iter().all(|v| {
                r.get(&v.id).is_some_and(|q| {
                    Some(q.parallelism.upper) == targets.get(&v.id).map(|t| i64::from(*t))
                })
            }),
            Err(_) => true,
        };
        if unchanged && bounds_match {
            let at: Vec<String> = detail
                .vertices
                .iter()
                .map(|v| format!("{} at {}", v.name, v.parallelism))
                .collect();
            return Ok(Plan::nothing_to_do(
                self.id(),
                format!(
                    "job {job} already runs at the target parallelism ({}){why_text}",
                    at.join(", ")
                ),
            ));
        }
        let moves = changes(&detail, &targets).join(", ");
        match reqs {
            Ok(old) => {
                let mut body = serde_json::Map::new();
                for (vid, q) in &old {
                    let t = i64::from(
                        targets
                            .get(vid)
                            .copied()
                            .unwrap_or(u32::try_from(q.parallelism.upper.max(1)).unwrap_or(1)),
                    );
                    let lower = if q.parallelism.lower < 1 {
                        1
                    } else {
                        q.parallelism.lower.min(t)
                    };
                    body.insert(
                        vid.clone(),
                        json!(VertexRequirement {
                            parallelism: Bounds { lower, upper: t },
                        }),
                    );
                }
                Ok(Plan::new(
                    self.id(),
                    vec![self.endpoint.target.clone()],
                    format!(
                        "rescale job {job} in place (adaptive scheduler): PUT /jobs/{job}/resource-requirements upperBound = target, lowerBound = min(target, old lower bound): {moves} (job from {from}){why_text}"
                    ),
                )
                .expect(format!("job {job} RUNNING at {moves} within a few minutes (one restart from its latest checkpoint)"))
                .undo(format!("PUT /jobs/{job}/resource-requirements back to {}", json!(old)))
                .params(json!({
                    "mode": "in_place",
                    "job_id": job,
                    "requirements": Value::Object(body),
                    "previous": old,
                    "current": current,
                    "targets": targets,
                    "decisions": decisions,
                    "inputs": inputs,
                })))
            }
            Err(why_not) => {
                let Some(sub) = &self.submitter else {
                    return Err(f.site.err(
                        &format!("/jobs/{job}/resource-requirements"),
                        ErrorKind::Invalid,
                        format!("job {job} cannot be rescaled in place ({why_not}) and no submitter is configured for the stop-with-savepoint fallback"),
                    ));
                };
                let parallelism = targets.values().copied().max().unwrap_or(1);
                let trigger = trigger_id(ctx, self.id(), &job);
                Ok(Plan::new(
                    self.id(),
                    vec![self.endpoint.target.clone()],
                    format!(
                        "RISKIER FALLBACK — job {job} cannot be rescaled in place ({why_not}): stop it with a savepoint (POST /jobs/{job}/stop, triggerId {trigger}), then resubmit it from that savepoint at parallelism {parallelism} ({}); the job is down between the two and a failed resubmit leaves it stopped: {moves} (job from {from}){why_text}",
                        sub.describe()
                    ),
                )
                .risk(Risk::Destructive)
                .expect(format!("a new job RUNNING at parallelism {parallelism} from the savepoint; its id handed on as job_id"))
                .undo("restore the savepoint at the old parallelism (flink.restore); cancel the new job")
                .params(json!({
                    "mode": "stop_and_resubmit",
                    "job_id": job,
                    "why_not_in_place": why_not,
                    "parallelism": parallelism,
                    "trigger_id": trigger,
                    "target_directory": self.target_directory,
                    "current": current,
                    "targets": targets,
                    "decisions": decisions,
                    "inputs": inputs,
                })))
            }
        }
    }

    async fn apply(&self, plan: &Plan, ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        let f = self.flink();
        let job = param_str(&f, plan, "job_id")?;
        let targets = plan.params["targets"].clone();
        match plan.params["mode"].as_str() {
            Some("in_place") => {
                let body = plan.params["requirements"].clone();
                let path = format!("/jobs/{job}/resource-requirements");
                let resp = f
                    .site
                    .send(HttpRequest::json(Method::Put, path.clone(), &body))
                    .await?;
                if !resp.is_success() {
                    return Err(f
                        .site
                        .status_error("PUT", &path, resp.status, &super::api::flink_error(&resp.body))
                        .with_details(json!({
                            "status": resp.status,
                            "request": format!("PUT {path}"),
                            "fallback": "the in-place rescale was refused: plan again to get the stop-with-savepoint plan (it needs its own approval)",
                        })));
                }
                // Flink answers `{}`; anything that is not JSON leaves the outcome unknown
                let _: Value = f.site.decode("PUT", true, &path, &resp.body)?;
                Ok(
                    Outcome::new(format!("job {job}: resource requirements set to {body}"))
                        .details(json!({ "job_id": job, "parallelism": targets })),
                )
            }
            Some("stop_and_resubmit") => {
                let Some(sub) = &self.submitter else {
                    return Err(f
                        .site
                        .err("-", ErrorKind::Invalid, "no submitter configured"));
                };
                let own = ctx.own_artifacts();
                if let Some(new) = own.get("job_id").and_then(Value::as_str) {
                    return Ok(Outcome::new(format!("job {job} resubmitted as {new} (by an earlier attempt)"))
                        .details(json!({ "job_id": new, "previous_job_id": job, "savepoint_path": own.get("savepoint_path"), "parallelism": targets })));
                }
                let path = match own.get("savepoint_path").and_then(Value::as_str) {
                    Some(p) => p.to_string(),
                    None => {
                        let trigger = param_str(&f, plan, "trigger_id")?;
                        let dir = plan.params["target_directory"].as_str();
                        let got = f.trigger(&job, true, dir, &trigger).await?;
                        let p = f
                            .await_savepoint(&job, &got, self.poll_every, self.wait)
                            .await?;
                        ctx.progress("savepoint_path", json!(p))
                            .await
                            .map_err(|e| progress_error(&f, e))?;
                        p
                    }
                };
                let parallelism = plan.params["parallelism"]
                    .as_u64()
                    .and_then(|p| u32::try_from(p).ok());
                let new = sub
                    .submit(&SubmitRequest {
                        action: self.id().to_string(),
                        target: self.endpoint.target.name.clone(),
                        previous_job_id: job.clone(),
                        savepoint_path: Some(path.clone()),
                        claim_mode: super::restore::ClaimMode::NoClaim,
                        allow_non_restored_state: false,
                        parallelism,
                    })
                    .await?;
                ctx.progress("job_id", json!(new))
                    .await
                    .map_err(|e| progress_error(&f, e))?;
                Ok(Outcome::new(format!(
                    "job {job} stopped with savepoint {path} and resubmitted as {new} at parallelism {}",
                    parallelism.unwrap_or_default()
                ))
                .details(json!({ "job_id": new, "previous_job_id": job, "savepoint_path": path, "parallelism": targets })))
            }
            other => Err(f.site.err(
                "-",
                ErrorKind::Invalid,
                format!("plan mode {other:?} is not one this remediation makes"),
            )),
        }
    }

    async fn verify(
        &self,
        plan: &Plan,
        outcome: &Outcome,
        _ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        let f = self.flink();
        let targets: BTreeMap<String, u32> =
            serde_json::from_value(plan.params["targets"].clone()).unwrap_or_default();
        if plan.params["mode"].as_str() == Some("stop_and_resubmit") {
            let (Some(new), Some(path)) = (
                outcome.details["job_id"].as_str(),
                outcome.details["savepoint_path"].as_str(),
            ) else {
                return Ok(Verification::Failed {
                    evidence: "the outcome names no new job or savepoint".into(),
                });
            };
            return verify_restored(&f, new, path, Some(&targets)).await;
        }
        let job = param_str(&f, plan, "job_id")?;
        let state = f.status(&job).await?;
        if is_terminal(&state) {
            return Ok(Verification::Failed {
                evidence: format!("job {job} ended {state}"),
            });
        }
        let detail = f.detail(&job).await?;
        let off: Vec<String> = detail
            .vertices
            .iter()
            .filter_map(|v| {
                targets
                    .get(&v.id)
                    .filter(|t| **t != v.parallelism)
                    .map(|t| format!("{} at {} (wanted {t})", v.name, v.parallelism))
            })
            .collect();
        Ok(if state == "RUNNING" && off.is_empty() {
            Verification::Succeeded {
                evidence: format!(
                    "job {job} RUNNING at {}",
                    detail
                        .vertices
                        .iter()
                        .map(|v| format!("{} {}", v.name, v.parallelism))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        } else {
            Verification::Inconclusive {
                why: format!("job {job} is {state}; {}", off.join(", ")),
            }
        })
    }
}
