//! Flink probes: cluster capacity, a job's live state, restarts, checkpoint health, classified
//! exceptions, and per-vertex busy and back-pressure ratios — over Flink's REST API (2.x), through
//! the shared [`HttpClient`] seam ([`crate::transport::ReqwestClient`] for a real JobManager).
//!
//! | probe | id | reads |
//! | --- | --- | --- |
//! | [`FlinkClusterProbe`] | `flink.cluster` | `GET /overview` |
//! | [`FlinkJobProbe`] | `flink.job` | `/overview`, `/jobs/overview`, `/jobs/<id>/status`, `/jobs/<id>`, `/jobs/<id>/checkpoints`, `/jobs/<id>/exceptions?maxExceptions=N`, `/jobs/<id>/metrics?get=numRestarts`, per vertex `/jobs/<id>/vertices/<vid>/backpressure` and `/jobs/<id>/vertices/<vid>/subtasks/metrics` |
//!
//! ## What the probes rely on (Flink 2.3 behaviour, from real captures)
//!
//! - **Live state comes from `/jobs/<id>/status`.** `/jobs/<id>` (and the checkpoint, exception and
//!   vertex views) come from an execution graph the JobManager caches for `refresh-interval`
//!   (3 s by default): after a TaskManager loss the detail still says `RUNNING` while `/status`
//!   says `RESTARTING`. The probe reports the `/status` state (`state`) and keeps the cached one
//!   apart (`detail_state`).
//! - **Restarts come from the `numRestarts` metric** (`/jobs/<id>/metrics?get=numRestarts`; the job
//!   detail has no restart count). Metric values are strings, and the metric store is empty for
//!   about 10 s after a job starts: then the restart count is unknown — the observation is marked
//!   incomplete and no `flink_job_restarts_total` sample is emitted (never a zero).
//! - **Checkpoint age is measured on the server's clock**: `now` of the job detail minus
//!   `latest_ack_timestamp` of the latest completed checkpoint, so clock skew between rb and the
//!   JobManager does not matter (the checkpoint statistics can be up to `refresh-interval` old,
//!   which makes the age err on the old side).
//! - **Exceptions** are the adaptive scheduler's `exceptionHistory.entries` (`exceptionName`,
//!   `stacktrace`, `timestamp`); each is classified by [`classify()`] (schema mismatch,
//!   serialization, class not found, out of memory, lost TaskManager, other).
//! - **Vertex load** comes from the subtask metric aggregates
//!   (`subtasks/metrics?get=busyTimeMsPerSecond,backPressuredTimeMsPerSecond,numRecordsInPerSecond&agg=max,avg,sum`):
//!   busy ratio = `busyTimeMsPerSecond` / 1000 (max over subtasks; the average is kept too),
//!   back-pressure ratio = the `/backpressure` view's worst subtask (or
//!   `backPressuredTimeMsPerSecond` / 1000 when the view has no sample yet). A source's input rate
//!   is its source operator's `Source__<name>.numRecordsInPerSecond` summed over subtasks (the
//!   task-level `numRecordsInPerSecond` of a source counts network input, which is zero); a source
//!   that does not count its input (a generator source reports 0) is measured by its operator's
//!   `numRecordsOutPerSecond` (a source emits what it reads), then by the task's
//!   `numRecordsOutPerSecond`. Sources are the plan's nodes without inputs.
//!
//! ## Samples
//!
//! | metric | labels | probe | meaning |
//! | --- | --- | --- | --- |
//! | `flink_taskmanagers` | – | both | registered TaskManagers |
//! | `flink_slots_total` | – | both | slots of all TaskManagers |
//! | `flink_slots_available` | – | both | free slots |
//! | `flink_jobs_running` | – | `flink.cluster` | jobs not in a terminal state |
//! | `flink_jobs_finished` / `flink_jobs_cancelled` / `flink_jobs_failed` | – | `flink.cluster` | ended jobs the dispatcher still lists |
//! | `flink_job_present` | `job` | `flink.job` | 1 when a job matched the selector, else 0 (and nothing below is emitted) |
//! | `flink_job_up` | `job`, `job_id` | `flink.job` | 1 when `/status` says `RUNNING`, else 0 (0 too when no job matched) |
//! | `flink_job_state` | `job`, `job_id`, `state` | `flink.job` | 1, with the live state as a label |
//! | `flink_job_restarts_total` | `job`, `job_id` | `flink.job` | `numRestarts` (absent while the metric store is empty) |
//! | `flink_checkpoints_completed_total` | `job`, `job_id` | `flink.job` | completed checkpoints |
//! | `flink_checkpoints_failed_total` | `job`, `job_id` | `flink.job` | failed checkpoints |
//! | `flink_checkpoints_in_progress` | `job`, `job_id` | `flink.job` | checkpoints running now |
//! | `flink_checkpoint_last_completed_age_seconds` | `job`, `job_id` | `flink.job` | server time minus the latest completed checkpoint's completion (absent when none completed) |
//! | `flink_job_exceptions` | `job`, `job_id`, `category` | `flink.job` | entries of the (bounded) exception history per category, all six categories |
//! | `flink_job_busy_ratio_max` | `job`, `job_id` | `flink.job` | the busiest vertex's busy ratio |
//! | `flink_job_backpressure_ratio_max` | `job`, `job_id` | `flink.job` | the most back-pressured vertex's ratio |
//! | `flink_job_input_records_per_second` | `job`, `job_id` | `flink.job` | sum of the sources' input rates |
//! | `flink_vertex_busy_ratio` | `job`, `job_id`, `vertex`, `vertex_id` | `flink.job` | the top-k busiest vertices (0–1) |
//! | `flink_vertex_backpressure_ratio` | `job`, `job_id`, `vertex`, `vertex_id` | `flink.job` | the top-k most back-pressured vertices (0–1) |
//! | `flink_vertex_input_records_per_second` | `job`, `job_id`, `vertex`, `vertex_id` | `flink.job` | the top-k sources by input rate |
//!
//! ## Facts
//!
//! | kind | type | probe |
//! | --- | --- | --- |
//! | `flink.cluster` | [`FlinkCluster`] | both |
//! | `flink.job` | [`FlinkJob`]: id, name, live and cached state, restarts, [`CheckpointHealth`] (counts, last completed id/time/age/path, latest savepoint, last failure), the latest [`JobException`]s with their [`FailureCategory`], and per vertex ([`FlinkVertex`]) parallelism, max parallelism, source or not, busy ratio, back-pressure ratio and level, input rate — what an autoscaler-style rescale calculation needs | `flink.job` |
//!
//! ## Partial views
//!
//! `/overview`, `/jobs/overview`, `/jobs/<id>/status` and `/jobs/<id>` are required: if one fails
//! the probe fails with its error (unreachable, timeout, rejected, bad response). The checkpoint,
//! exception, metric and vertex views are not: if one fails or has no data yet, its part of the
//! fact is `None`, its samples are not emitted, and the observation is marked incomplete with a
//! gap naming the endpoint and the reason. Vertex metrics are read only while the live state is
//! `RUNNING`: a job that ended (`FINISHED`, `CANCELED`, `FAILED`) has none, and one that is
//! `RESTARTING`, `FAILING`, `CANCELLING`, `CREATED` or `INITIALIZING` has no running subtasks to
//! report them — the observation stays complete, judged on state and restarts.
//!
//! ## Least privilege
//!
//! Read-only `GET`s of the JobManager's REST endpoint; nothing is submitted, cancelled or
//! rescaled. Flink's REST API has no authorization of its own: put it behind a proxy that allows
//! `GET` only for the probe's credentials ([`crate::transport::HttpAuth`] sends bearer or basic
//! credentials, and [`crate::transport::ReqwestClientBuilder`] a CA or client certificate).
//!
//! ```no_run
//! # async fn demo() -> Result<(), rb_core::ProbeError> {
//! use rb_core::{Probe, ProbeContext, Target, time::Clock};
//! use rb_probes::flink::{FlinkJobProbe, JobSelector};
//! use rb_probes::transport::ReqwestClient;
//!
//! let client = ReqwestClient::new("http://127.0.0.1:8081")?;
//! let probe = FlinkJobProbe::new(client, Target::new("flink", "flink-main"), JobSelector::name("orders-enrich"));
//! let ctx = ProbeContext::with_timeout(Clock::system(), std::time::Duration::from_secs(10));
//! let obs = probe.observe(&ctx).await?;
//! let job: rb_probes::flink::FlinkJob = obs.facts.get().unwrap().unwrap();
//! println!("{} is {} after {:?} restarts", job.name, job.state, job.restarts);
//! # Ok(()) }
//! ```

pub mod classify;
pub mod model;

use std::fmt;

use async_trait::async_trait;
use futures::future::join_all;
use rb_core::{labels, FactType, Labels, Observation, Probe, ProbeContext, ProbeError, Target};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use classify::{classify, FailureCategory};

use crate::common::{ProbeSite, TopK};
use crate::transport::{decode_json, HttpClient, HttpRequest};
use model::{
    AggregatedMetric, Backpressure, Checkpoints, Exceptions, JobDetail, JobStatusBody,
    JobsOverview, MetricValue, Overview,
};

/// Probe id of [`FlinkClusterProbe`].
pub const CLUSTER_PROBE_ID: &str = "flink.cluster";
/// Probe id of [`FlinkJobProbe`].
pub const JOB_PROBE_ID: &str = "flink.job";

/// States in which a job will not run again.
const TERMINAL: [&str; 3] = ["FINISHED", "CANCELED", "FAILED"];

/// The cluster's capacity and job counts, from `/overview`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlinkCluster {
    /// Registered TaskManagers.
    pub taskmanagers: u64,
    /// Slots of all TaskManagers.
    pub slots_total: u64,
    /// Free slots.
    pub slots_available: u64,
    /// Jobs not in a terminal state.
    pub jobs_running: u64,
    /// Finished jobs still listed.
    pub jobs_finished: u64,
    /// Cancelled jobs still listed.
    pub jobs_cancelled: u64,
    /// Failed jobs still listed.
    pub jobs_failed: u64,
    /// The Flink version.
    pub flink_version: Option<String>,
}

impl FactType for FlinkCluster {
    const KIND: &'static str = "flink.cluster";
}

impl From<&Overview> for FlinkCluster {
    fn from(o: &Overview) -> Self {
        Self {
            taskmanagers: o.taskmanagers,
            slots_total: o.slots_total,
            slots_available: o.slots_available,
            jobs_running: o.jobs_running,
            jobs_finished: o.jobs_finished,
            jobs_cancelled: o.jobs_cancelled,
            jobs_failed: o.jobs_failed,
            flink_version: o.flink_version.clone(),
        }
    }
}

/// Checkpoint health of a job, from `/jobs/<id>/checkpoints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointHealth {
    /// Completed checkpoints (savepoints included).
    pub completed: u64,
    /// Failed checkpoints.
    pub failed: u64,
    /// Checkpoints running now.
    pub in_progress: u64,
    /// Restores.
    pub restored: u64,
    /// Id of the latest completed checkpoint.
    pub last_completed_id: Option<u64>,
    /// When it completed (epoch ms, server clock).
    pub last_completed_at_ms: Option<i64>,
    /// Its age at observation time (server clock), ms.
    pub last_completed_age_ms: Option<u64>,
    /// Its path.
    pub last_completed_path: Option<String>,
    /// The latest savepoint's path.
    pub latest_savepoint_path: Option<String>,
    /// The newest of the two paths above: where a restore would start from.
    pub latest_external_path: Option<String>,
    /// The latest failure's message.
    pub last_failure_message: Option<String>,
    /// When it failed (epoch ms).
    pub last_failure_at_ms: Option<i64>,
    /// The path the job was last restored from.
    pub restored_from: Option<String>,
}

/// One entry of a job's exception history, classified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobException {
    /// Java class of the exception.
    pub class: String,
    /// The first line's message (bounded).
    pub message: String,
    /// When (epoch ms).
    pub timestamp: i64,
    /// What kind of failure it is.
    pub category: FailureCategory,
    /// The failing task, when Flink says.
    pub task: Option<String>,
}

/// One vertex of a job: what a rescale decision needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlinkVertex {
    /// Vertex id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Current parallelism (from the job detail).
    pub parallelism: u32,
    /// Max parallelism (`None` when Flink says -1).
    pub max_parallelism: Option<u32>,
    /// Whether it is a source (no inputs in the plan).
    pub is_source: bool,
    /// Busy share of time of its busiest subtask (0–1).
    pub busy_ratio: Option<f64>,
    /// Average busy share over its subtasks (0–1).
    pub busy_ratio_avg: Option<f64>,
    /// Back-pressured share of time of its worst subtask (0–1).
    pub backpressure_ratio: Option<f64>,
    /// `ok`, `low` or `high`, when sampled.
    pub backpressure_level: Option<String>,
    /// Records per second into the vertex over all subtasks (for a source: records read).
    pub input_records_per_second: Option<f64>,
}

impl FlinkVertex {
    /// Records per second the vertex could take at full busy time, over all its subtasks: the
    /// input rate divided by the average busy ratio (the "true processing rate" an autoscaler
    /// scales by). `None` when either is unknown or the vertex is idle (busy ratio 0).
    ///
    /// ```
    /// # use rb_probes::flink::FlinkVertex;
    /// let v = FlinkVertex { id: "v".into(), name: "enrich".into(), parallelism: 2, max_parallelism: Some(128),
    ///     is_source: false, busy_ratio: Some(0.9), busy_ratio_avg: Some(0.8), backpressure_ratio: Some(0.0),
    ///     backpressure_level: None, input_records_per_second: Some(4000.0) };
    /// assert_eq!(v.processing_capacity(), Some(5000.0));
    /// ```
    pub fn processing_capacity(&self) -> Option<f64> {
        let busy = self.busy_ratio_avg.or(self.busy_ratio)?;
        let rate = self.input_records_per_second?;
        (busy > 0.0).then(|| rate / busy)
    }
}

/// A Flink job as the probe saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlinkJob {
    /// The selector the probe was given (`name:orders` or `id:…`).
    pub selector: String,
    /// Whether a job matched.
    pub present: bool,
    /// Job id (`None` when no job matched).
    pub job_id: Option<String>,
    /// Job name (the selector's name when no job matched).
    pub name: String,
    /// Live state from `/jobs/<id>/status` (`NOT_FOUND` when no job matched).
    pub state: String,
    /// State in the cached job detail (may lag `state`).
    pub detail_state: Option<String>,
    /// `numRestarts` (`None` while the metric store has no value).
    pub restarts: Option<u64>,
    /// Checkpoint health (`None` when the view could not be read).
    pub checkpoints: Option<CheckpointHealth>,
    /// The latest exceptions, newest first.
    pub exceptions: Vec<JobException>,
    /// Whether the history has more entries than were read.
    pub exceptions_truncated: bool,
    /// Vertices, in the job detail's order.
    pub vertices: Vec<FlinkVertex>,
    /// The server's clock at the job detail (epoch ms).
    pub server_time_ms: Option<i64>,
    /// Cluster capacity at the same time.
    pub cluster: FlinkCluster,
}

impl FactType for FlinkJob {
    const KIND: &'static str = "flink.job";
}

impl FlinkJob {
    /// The category of the newest exception, if any.
    pub fn latest_failure(&self) -> Option<FailureCategory> {
        self.exceptions.first().map(|e| e.category)
    }
}

/// Which job a [`FlinkJobProbe`] watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSelector {
    /// The job with this id (32 hex digits).
    Id(String),
    /// The job with this name: the newest one not in a terminal state, else the newest one (a job
    /// restored from a savepoint gets a new id but keeps its name).
    Name(String),
}

impl JobSelector {
    /// Select by id.
    pub fn id(id: impl Into<String>) -> Self {
        JobSelector::Id(id.into())
    }

    /// Select by name.
    pub fn name(name: impl Into<String>) -> Self {
        JobSelector::Name(name.into())
    }

    /// Pick the job from `/jobs/overview`.
    pub fn pick<'a>(&self, jobs: &'a [model::JobSummary]) -> Option<&'a model::JobSummary> {
        match self {
            JobSelector::Id(id) => jobs.iter().find(|j| j.jid.eq_ignore_ascii_case(id)),
            JobSelector::Name(name) => {
                let newest = |live: bool| {
                    jobs.iter()
                        .filter(|j| &j.name == name)
                        .filter(|j| !live || !TERMINAL.contains(&j.state.as_str()))
                        .max_by_key(|j| j.start_time)
                };
                newest(true).or_else(|| newest(false))
            }
        }
    }
}

impl fmt::Display for JobSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobSelector::Id(id) => write!(f, "id:{id}"),
            JobSelector::Name(n) => write!(f, "name:{n}"),
        }
    }
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

fn cluster_samples(obs: &mut Observation, o: &Overview, with_jobs: bool) {
    let none = Labels::new();
    obs.push_sample("flink_taskmanagers", none.clone(), o.taskmanagers as f64);
    obs.push_sample("flink_slots_total", none.clone(), o.slots_total as f64);
    obs.push_sample(
        "flink_slots_available",
        none.clone(),
        o.slots_available as f64,
    );
    if with_jobs {
        obs.push_sample("flink_jobs_running", none.clone(), o.jobs_running as f64);
        obs.push_sample("flink_jobs_finished", none.clone(), o.jobs_finished as f64);
        obs.push_sample(
            "flink_jobs_cancelled",
            none.clone(),
            o.jobs_cancelled as f64,
        );
        obs.push_sample("flink_jobs_failed", none, o.jobs_failed as f64);
    }
}

/// Cluster capacity and job counts (`GET /overview`).
#[derive(Debug)]
pub struct FlinkClusterProbe<C> {
    client: C,
    target: Target,
}

impl<C: HttpClient> FlinkClusterProbe<C> {
    /// A probe of the JobManager behind `client`.
    pub fn new(client: C, target: Target) -> Self {
        Self { client, target }
    }
}

#[async_trait]
impl<C: HttpClient> Probe for FlinkClusterProbe<C> {
    fn id(&self) -> &str {
        CLUSTER_PROBE_ID
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let site = ProbeSite {
            probe: CLUSTER_PROBE_ID,
            target: &self.target.name,
            endpoint: self.client.base_url(),
        };
        let o: Overview = site
            .within(
                ctx,
                get_json(
                    &self.client,
                    CLUSTER_PROBE_ID,
                    &self.target.name,
                    "/overview",
                ),
            )
            .await?;
        let mut obs = Observation::new(CLUSTER_PROBE_ID, &self.target.name, ctx.now());
        cluster_samples(&mut obs, &o, true);
        Ok(obs.fact(&FlinkCluster::from(&o)))
    }
}

/// One job: live state, restarts, checkpoints, exceptions, vertex load. See the module docs.
#[derive(Debug)]
pub struct FlinkJobProbe<C> {
    client: C,
    target: Target,
    selector: JobSelector,
    top_k: usize,
    max_exceptions: usize,
}

impl<C: HttpClient> FlinkJobProbe<C> {
    /// A probe of the job `selector` picks, on the JobManager behind `client`; reports the 5
    /// worst vertices per metric and reads the 10 newest exceptions.
    pub fn new(client: C, target: Target, selector: JobSelector) -> Self {
        Self {
            client,
            target,
            selector,
            top_k: 5,
            max_exceptions: 10,
        }
    }

    /// Report at most `k` vertices per vertex metric.
    pub fn top_k(mut self, k: usize) -> Self {
        self.top_k = k;
        self
    }

    /// Read at most `n` exceptions (`?maxExceptions=n`; at least 1).
    pub fn max_exceptions(mut self, n: usize) -> Self {
        self.max_exceptions = n.max(1);
        self
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ProbeError> {
        get_json(&self.client, JOB_PROBE_ID, &self.target.name, path).await
    }

    async fn observe_inner(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let (overview, jobs) = futures::try_join!(
            self.get::<Overview>("/overview"),
            self.get::<JobsOverview>("/jobs/overview"),
        )?;
        let cluster = FlinkCluster::from(&overview);
        let mut obs = Observation::new(JOB_PROBE_ID, &self.target.name, ctx.now());
        cluster_samples(&mut obs, &overview, false);

        let Some(summary) = self.selector.pick(&jobs.jobs) else {
            let name = match &self.selector {
                JobSelector::Id(id) => id.clone(),
                JobSelector::Name(n) => n.clone(),
            };
            obs.push_sample("flink_job_present", labels(&[("job", &name)]), 0.0);
            obs.push_sample("flink_job_up", labels(&[("job", &name)]), 0.0);
            return Ok(obs.fact(&FlinkJob {
                selector: self.selector.to_string(),
                present: false,
                job_id: None,
                name,
                state: "NOT_FOUND".into(),
                detail_state: None,
                restarts: None,
                checkpoints: None,
                exceptions: Vec::new(),
                exceptions_truncated: false,
                vertices: Vec::new(),
                server_time_ms: None,
                cluster,
            }));
        };
        let id = summary.jid.clone();
        let jl = |extra: &[(&str, &str)]| {
            let mut l = labels(&[("job", &summary.name), ("job_id", &id)]);
            for (k, v) in extra {
                l.insert((*k).to_string(), (*v).to_string());
            }
            l
        };

        let status_path = format!("/jobs/{id}/status");
        let detail_path = format!("/jobs/{id}");
        let cp_path = format!("/jobs/{id}/checkpoints");
        let exc_path = format!(
            "/jobs/{id}/exceptions?maxExceptions={}",
            self.max_exceptions
        );
        let metrics_path = format!("/jobs/{id}/metrics?get=numRestarts");
        let (status, detail, cps, excs, metrics) = futures::join!(
            self.get::<JobStatusBody>(&status_path),
            self.get::<JobDetail>(&detail_path),
            self.get::<Checkpoints>(&cp_path),
            self.get::<Exceptions>(&exc_path),
            self.get::<Vec<MetricValue>>(&metrics_path),
        );
        let status = status?;
        let detail = detail?;
        let state = status.status;

        obs.push_sample("flink_job_present", labels(&[("job", &summary.name)]), 1.0);
        obs.push_sample(
            "flink_job_up",
            jl(&[]),
            if state == "RUNNING" { 1.0 } else { 0.0 },
        );
        obs.push_sample("flink_job_state", jl(&[("state", &state)]), 1.0);

        // restarts
        let restarts = match metrics {
            Ok(list) => match list.iter().find(|m| m.id == "numRestarts") {
                Some(m) => match m.value.as_ref().and_then(model::metric_number) {
                    Some(n) if n >= 0.0 => Some(n as u64),
                    _ => {
                        obs.mark_incomplete(format!(
                            "{}: numRestarts is not a count: {:?}",
                            self.client.url(&metrics_path),
                            m.value
                        ));
                        None
                    }
                },
                None => {
                    obs.mark_incomplete(format!(
                        "{}: numRestarts not in the metric store yet",
                        self.client.url(&metrics_path)
                    ));
                    None
                }
            },
            Err(e) => {
                obs.mark_incomplete(e.to_string());
                None
            }
        };
        if let Some(r) = restarts {
            obs.push_sample("flink_job_restarts_total", jl(&[]), r as f64);
        }

        // checkpoints
        let checkpoints = match cps {
            Ok(c) => Some(checkpoint_health(&c, detail.now)),
            Err(e) => {
                obs.mark_incomplete(e.to_string());
                None
            }
        };
        if let Some(c) = &checkpoints {
            obs.push_sample(
                "flink_checkpoints_completed_total",
                jl(&[]),
                c.completed as f64,
            );
            obs.push_sample("flink_checkpoints_failed_total", jl(&[]), c.failed as f64);
            obs.push_sample(
                "flink_checkpoints_in_progress",
                jl(&[]),
                c.in_progress as f64,
            );
            if let Some(age) = c.last_completed_age_ms {
                obs.push_sample(
                    "flink_checkpoint_last_completed_age_seconds",
                    jl(&[]),
                    age as f64 / 1000.0,
                );
            }
        }

        // exceptions
        let (exceptions, exceptions_truncated) = match excs {
            Ok(e) => {
                let list: Vec<JobException> = e
                    .history
                    .entries
                    .iter()
                    .map(|x| JobException {
                        class: x.exception_name.clone(),
                        message: classify::message(&x.exception_name, &x.stacktrace, 500),
                        timestamp: x.timestamp,
                        category: classify(&x.exception_name, &x.stacktrace),
                        task: x.task_name.clone(),
                    })
                    .collect();
                for cat in FailureCategory::ALL {
                    let n = list.iter().filter(|x| x.category == cat).count();
                    obs.push_sample(
                        "flink_job_exceptions",
                        jl(&[("category", cat.as_str())]),
                        n as f64,
                    );
                }
                (list, e.history.truncated)
            }
            Err(e) => {
                obs.mark_incomplete(e.to_string());
                (Vec::new(), false)
            }
        };

        // vertices
        let terminal = TERMINAL.contains(&state.as_str());
        let sources: Vec<&str> = detail
            .plan
            .as_ref()
            .map(|p| {
                p.nodes
                    .iter()
                    .filter(|n| n.inputs.is_empty())
                    .map(|n| n.id.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let mut vertices: Vec<FlinkVertex> = detail
            .vertices
            .iter()
            .map(|v| FlinkVertex {
                id: v.id.clone(),
                name: v.name.clone(),
                parallelism: v.parallelism,
                max_parallelism: u32::try_from(v.max_parallelism).ok(),
                is_source: sources.contains(&v.id.as_str()),
                busy_ratio: None,
                busy_ratio_avg: None,
                backpressure_ratio: None,
                backpressure_level: None,
                input_records_per_second: None,
            })
            .collect();
        if detail.plan.is_none() && !vertices.is_empty() {
            obs.mark_incomplete(format!(
                "{}: no plan in the job detail: sources unknown",
                self.client.url(&detail_path)
            ));
        }
        // Vertex load is read only while the job runs: a job that ended has no vertex metrics, and
        // one that is restarting, failing, cancelling or being scheduled has no running subtasks
        // to report them (Flink answers an empty metric list). Their absence is not a gap of this
        // observation: a crash-looping job must still be judged on its state and restart count.
        if !terminal && state == "RUNNING" {
            let loads = join_all(vertices.iter().map(|v| self.vertex_load(&id, v))).await;
            for (v, load) in vertices.iter_mut().zip(loads) {
                for gap in load.gaps {
                    obs.mark_incomplete(gap);
                }
                v.busy_ratio = load.busy_max;
                v.busy_ratio_avg = load.busy_avg;
                v.backpressure_ratio = load.bp_ratio;
                v.backpressure_level = load.bp_level;
                v.input_records_per_second = load.input_rate;
            }
            self.vertex_samples(&mut obs, &vertices, &jl);
        }

        let fact = FlinkJob {
            selector: self.selector.to_string(),
            present: true,
            job_id: Some(id.clone()),
            name: summary.name.clone(),
            state,
            detail_state: Some(detail.state.clone()),
            restarts,
            checkpoints,
            exceptions,
            exceptions_truncated,
            vertices,
            server_time_ms: Some(detail.now),
            cluster,
        };
        Ok(obs.fact(&fact))
    }

    fn vertex_samples(&self, obs: &mut Observation, vertices: &[FlinkVertex], jl: &JobLabels<'_>) {
        let mut busy = TopK::new(self.top_k);
        let mut bp = TopK::new(self.top_k);
        let mut rate = TopK::new(self.top_k);
        let mut busy_max: Option<f64> = None;
        let mut bp_max: Option<f64> = None;
        let mut input_sum: Option<f64> = None;
        for v in vertices {
            if let Some(b) = v.busy_ratio {
                busy.push(b, v);
                busy_max = Some(busy_max.map_or(b, |m| m.max(b)));
            }
            if let Some(b) = v.backpressure_ratio {
                bp.push(b, v);
                bp_max = Some(bp_max.map_or(b, |m| m.max(b)));
            }
            if v.is_source {
                if let Some(r) = v.input_records_per_second {
                    rate.push(r, v);
                    input_sum = Some(input_sum.unwrap_or(0.0) + r);
                }
            }
        }
        let vl = |v: &FlinkVertex| jl(&[("vertex", &v.name), ("vertex_id", &v.id)]);
        for (s, v) in busy.into_sorted() {
            obs.push_sample("flink_vertex_busy_ratio", vl(v), s);
        }
        for (s, v) in bp.into_sorted() {
            obs.push_sample("flink_vertex_backpressure_ratio", vl(v), s);
        }
        for (s, v) in rate.into_sorted() {
            obs.push_sample("flink_vertex_input_records_per_second", vl(v), s);
        }
        if let Some(m) = busy_max {
            obs.push_sample("flink_job_busy_ratio_max", jl(&[]), m);
        }
        if let Some(m) = bp_max {
            obs.push_sample("flink_job_backpressure_ratio_max", jl(&[]), m);
        }
        if let Some(s) = input_sum {
            obs.push_sample("flink_job_input_records_per_second", jl(&[]), s);
        }
    }

    async fn vertex_load(&self, job: &str, v: &FlinkVertex) -> VertexLoad {
        let mut load = VertexLoad::default();
        let base = format!("/jobs/{job}/vertices/{}", v.id);
        let bp_path = format!("{base}/backpressure");
        let metrics_base = format!("{base}/subtasks/metrics");
        let metrics_fut = async {
            let mut wanted = vec![
                "busyTimeMsPerSecond".to_string(),
                "backPressuredTimeMsPerSecond".to_string(),
                "numRecordsInPerSecond".to_string(),
            ];
            // the source operator's own rates (`Source__<name>.numRecordsInPerSecond` / `…Out…`)
            let mut source_metrics: (Option<String>, Option<String>) = (None, None);
            if v.is_source {
                let names: Vec<MetricValue> = self.get(&metrics_base).await?;
                let find = |suffix: &str| {
                    names
                        .iter()
                        .map(|m| m.id.as_str())
                        .find(|n| n.starts_with("Source__") && n.ends_with(suffix))
                        .map(str::to_string)
                };
                source_metrics = (
                    find(".numRecordsInPerSecond"),
                    find(".numRecordsOutPerSecond"),
                );
                wanted.push("numRecordsOutPerSecond".into());
                wanted.extend(source_metrics.0.iter().cloned());
                wanted.extend(source_metrics.1.iter().cloned());
            }
            let names: Vec<String> = wanted.iter().map(|n| query_escape(n)).collect();
            let path = format!("{metrics_base}?get={}&agg=max,avg,sum", names.join(","));
            let values: Vec<AggregatedMetric> = self.get(&path).await?;
            Ok::<_, ProbeError>((path, values, source_metrics))
        };
        let (bp, metrics) = futures::join!(self.get::<Backpressure>(&bp_path), metrics_fut);

        let mut metric_bp = None;
        match metrics {
            Ok((path, values, (source_in, source_out))) => {
                let find = |name: &str| values.iter().find(|m| m.id == name);
                match find("busyTimeMsPerSecond") {
                    Some(m) if m.max.is_some() => {
                        load.busy_max = m.max.map(ms_ratio);
                        load.busy_avg = m.avg.map(ms_ratio);
                    }
                    _ => load.gaps.push(format!(
                        "{}: no busyTimeMsPerSecond for vertex {:?} yet",
                        self.client.url(&path),
                        v.name
                    )),
                }
                metric_bp = find("backPressuredTimeMsPerSecond")
                    .and_then(|m| m.max)
                    .map(ms_ratio);
                load.input_rate = if v.is_source {
                    // Not every source counts its input (a generator source does not): a source
                    // operator emits what it reads, so its output rate stands in, then the task's.
                    let sum = |n: Option<&str>| n.and_then(find).and_then(|m| m.sum);
                    sum(source_in.as_deref())
                        .filter(|r| *r > 0.0)
                        .or_else(|| sum(source_out.as_deref()))
                        .or_else(|| sum(source_in.as_deref()))
                        .or_else(|| sum(Some("numRecordsOutPerSecond")))
                } else {
                    find("numRecordsInPerSecond").and_then(|m| m.sum)
                };
                if v.is_source && load.input_rate.is_none() {
                    load.gaps.push(format!(
                        "{}: no input rate for source vertex {:?} yet",
                        self.client.url(&path),
                        v.name
                    ));
                }
            }
            Err(e) => load.gaps.push(e.to_string()),
        }
        match bp {
            Ok(b) if b.status == "ok" => {
                load.bp_level = b.level.clone().or_else(|| b.level_legacy.clone());
                load.bp_ratio = b
                    .subtasks
                    .iter()
                    .filter_map(|s| s.ratio)
                    .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))))
                    .map(|r| r.clamp(0.0, 1.0))
                    .or(metric_bp);
            }
            Ok(_) => {
                load.bp_ratio = metric_bp;
                if metric_bp.is_none() {
                    load.gaps.push(format!(
                        "{}: no back-pressure sample for vertex {:?} yet",
                        self.client.url(&bp_path),
                        v.name
                    ));
                }
            }
            Err(e) => {
                load.bp_ratio = metric_bp;
                load.gaps.push(e.to_string());
            }
        }
        load
    }
}

/// Builds a job's labels plus extra pairs.
type JobLabels<'a> = dyn Fn(&[(&str, &str)]) -> Labels + 'a;

#[derive(Debug, Default)]
struct VertexLoad {
    busy_max: Option<f64>,
    busy_avg: Option<f64>,
    bp_ratio: Option<f64>,
    bp_level: Option<String>,
    input_rate: Option<f64>,
    gaps: Vec<String>,
}

/// Percent-encode a query value (metric names are mostly `[A-Za-z0-9_.]`, but operator names can
/// carry anything).
fn query_escape(s: &str) -> String {
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

/// Milliseconds per second as a 0–1 ratio.
fn ms_ratio(ms_per_s: f64) -> f64 {
    (ms_per_s / 1000.0).clamp(0.0, 1.0)
}

/// Checkpoint health from the checkpoints view, with ages on the server clock `server_now_ms`.
pub fn checkpoint_health(c: &Checkpoints, server_now_ms: i64) -> CheckpointHealth {
    let completed = c.latest.completed.as_ref();
    let savepoint = c.latest.savepoint.as_ref();
    let newest = match (completed, savepoint) {
        (Some(a), Some(b)) if b.latest_ack_timestamp > a.latest_ack_timestamp => Some(b),
        (Some(a), _) => Some(a),
        (None, b) => b,
    };
    CheckpointHealth {
        completed: c.counts.completed,
        failed: c.counts.failed,
        in_progress: c.counts.in_progress,
        restored: c.counts.restored,
        last_completed_id: completed.map(|x| x.id),
        last_completed_at_ms: completed.map(|x| x.latest_ack_timestamp),
        last_completed_age_ms: completed.map(|x| {
            u64::try_from(server_now_ms.saturating_sub(x.latest_ack_timestamp)).unwrap_or(0)
        }),
        last_completed_path: completed.and_then(|x| x.external_path.clone()),
        latest_savepoint_path: savepoint.and_then(|x| x.external_path.clone()),
        latest_external_path: newest.and_then(|x| x.external_path.clone()),
        last_failure_message: c
            .latest
            .failed
            .as_ref()
            .and_then(|x| x.failure_message.clone()),
        last_failure_at_ms: c
            .latest
            .failed
            .as_ref()
            .map(|x| x.failure_timestamp.unwrap_or(x.latest_ack_timestamp)),
        restored_from: c
            .latest
            .restored
            .as_ref()
            .and_then(|x| x.external_path.clone()),
    }
}

#[async_trait]
impl<C: HttpClient> Probe for FlinkJobProbe<C> {
    fn id(&self) -> &str {
        JOB_PROBE_ID
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let site = ProbeSite {
            probe: JOB_PROBE_ID,
            target: &self.target.name,
            endpoint: self.client.base_url(),
        };
        site.within(ctx, self.observe_inner(ctx)).await
    }
}
