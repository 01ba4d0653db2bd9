//! A fake Apache Flink 2.3 REST API (JobManager with the adaptive scheduler), stateful and driven by
//! tokio time.
//!
//! [`FakeFlink`] answers the calls rb's Flink probes and actions make with the status codes, field
//! names and JSON types a real Flink 2.3.0 cluster answered with (the captures under
//! `rb-testkit/fixtures/flink/` are the reference, and `tests/flink_fake.rs` compares every one of
//! them with the fake's answer). The behaviours a runbook depends on are reproduced:
//!
//! - `/jobs/<id>` (and the other execution-graph views: checkpoints, exceptions, vertices, plan,
//!   config) is **cached** for `refresh-interval` (3 s); `/jobs/<id>/status` is live.
//! - metrics are fetched every 10 s: `[]` right after a job starts, values are **strings**, and
//!   `agg` queries answer numbers.
//! - checkpoints complete every `checkpoint_interval` while a job runs; a rescale
//!   (`PUT /jobs/<id>/resource-requirements`) restarts the job (`numRestarts` + 1, `numRescales` + 1)
//!   and restores from the latest checkpoint; a lost TaskManager sends jobs to RESTARTING then
//!   CREATED until slots come back.
//! - savepoints are asynchronous operations (IN_PROGRESS, then COMPLETED — a failed savepoint is
//!   COMPLETED too, with `operation.failure-cause`); stop-with-savepoint ends the job FINISHED;
//!   `POST /jars/<jar>/run` with `savepointPath` restores into a new job.
//! - errors are `{"errors":[…]}` with Flink's statuses: unknown job 404, malformed id 400, unknown
//!   route 404, legacy `PATCH /jobs/<id>/rescaling` 503, `POST /jobs/<id>/rescale` 404.
//!
//! Nothing runs in the background: state is computed from elapsed tokio time when a request (or a
//! handle method) looks at it, so a test on a paused clock is deterministic.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use rb_testkit::http::flink::{FakeFlink, JobSpec};
//!
//! let flink = FakeFlink::start().await?;
//! let job = flink.add_job(JobSpec::new("orders").vertex("Source: kafka", 2).vertex("enrich -> sink: paimon", 2))?;
//! flink.lose_taskmanager()?; // the job restarts, then waits for slots in CREATED
//! tokio::time::advance(Duration::from_secs(5)).await;
//! let status: serde_json::Value = reqwest::get(format!("{}/jobs/{job}/status", flink.base_url())).await?.json().await?;
//! assert_eq!(status["status"], "CREATED");
//! flink.add_taskmanager();
//! tokio::time::advance(Duration::from_secs(5)).await;
//! assert_eq!(flink.job_status(&job)?, "RUNNING");
//! assert_eq!(flink.num_restarts(&job)?, 1);
//! assert_eq!(flink.requests().matching("GET", "/jobs/*/status").len(), 1);
//! # Ok(()) }
//! ```

mod model;
mod render;
mod routes;

use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use tokio::time::Instant;

use super::FakeHttp;
use model::Cluster;
use routes::{lock, Shared};

/// The Flink version the fake reports.
pub const FLINK_VERSION: &str = "2.3.0";

/// Errors of the [`FakeFlink`] handle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FakeFlinkError {
    /// The server could not start.
    #[error("fake flink: cannot start the server: {0}")]
    Io(#[from] std::io::Error),
    /// No job with this id.
    #[error("fake flink: no job with id {0}")]
    UnknownJob(String),
    /// No TaskManager with this id (or none at all).
    #[error("fake flink: no TaskManager {0}")]
    UnknownTaskManager(String),
    /// A job specification that Flink would reject (what is wrong is named).
    #[error("fake flink: invalid job spec: {0}")]
    InvalidSpec(String),
    /// The job is in a state where the scripted situation cannot apply.
    #[error("fake flink: job {job} is {state}: {what}")]
    WrongState {
        /// The job id.
        job: String,
        /// Its current state.
        state: String,
        /// What was attempted.
        what: String,
    },
}

/// Settings of the fake cluster. Defaults follow the captured cluster (1 TaskManager with 4 slots,
/// checkpoints every 2 s, fixed-delay restarts every 3 s, 1000 attempts).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FlinkConfig {
    /// TaskManagers at start.
    pub taskmanagers: usize,
    /// Slots per TaskManager.
    pub slots_per_taskmanager: u32,
    /// How long `/jobs/<id>` and the other execution-graph views are cached (`refresh-interval`).
    pub refresh_interval: Duration,
    /// How often metrics are fetched (`metrics.fetcher.update-interval`).
    pub metrics_fetch_interval: Duration,
    /// Checkpoint interval of running jobs.
    pub checkpoint_interval: Duration,
    /// Fixed restart delay after a failure.
    pub restart_delay: Duration,
    /// Restart attempts before a job fails for good.
    pub restart_attempts: u32,
    /// How long a savepoint / stop-with-savepoint takes.
    pub savepoint_duration: Duration,
    /// From `PUT resource-requirements` to running at the new parallelism.
    pub rescale_duration: Duration,
    /// From a TaskManager registering to waiting jobs running.
    pub resource_stabilization: Duration,
    /// Checkpoint directory (`execution.checkpointing.dir`).
    pub checkpoint_dir: String,
    /// Default savepoint directory (`execution.checkpointing.savepoint-dir`); `None` = not configured.
    pub savepoint_dir: Option<String>,
    /// Completed checkpoints retained (older ones are `discarded`).
    pub checkpoints_retained: usize,
    /// Entries kept in the exception history.
    pub exception_history_size: usize,
    /// Entry class `GET /jars` reports for uploaded jars.
    pub jar_entry_class: String,
}

impl Default for FlinkConfig {
    fn default() -> Self {
        Self {
            taskmanagers: 1,
            slots_per_taskmanager: 4,
            refresh_interval: Duration::from_millis(3000),
            metrics_fetch_interval: Duration::from_secs(10),
            checkpoint_interval: Duration::from_secs(2),
            restart_delay: Duration::from_secs(3),
            restart_attempts: 1000,
            savepoint_duration: Duration::from_millis(500),
            rescale_duration: Duration::from_secs(4),
            resource_stabilization: Duration::from_secs(1),
            checkpoint_dir: "file:///tmp/rb-fake-flink/ckpt".to_string(),
            savepoint_dir: Some("file:///tmp/rb-fake-flink/savepoints".to_string()),
            checkpoints_retained: 3,
            exception_history_size: 16,
            jar_entry_class: "rb.CounterJob".to_string(),
        }
    }
}

/// One vertex (a chain of operators) of a [`JobSpec`].
#[derive(Debug, Clone, PartialEq)]
pub struct VertexSpec {
    /// Display name, operators joined by ` -> ` (`"enrich -> sink: Writer"`); a name starting with
    /// `Source` is a source.
    pub name: String,
    /// Initial parallelism.
    pub parallelism: u32,
    /// Max parallelism (128 by default, as Flink computes it for small jobs).
    pub max_parallelism: u32,
    /// Records per second through the vertex (all subtasks together) while running.
    pub records_per_second: f64,
}

/// What to submit: a named streaming job and its vertices in topological order (each consumes the
/// previous one).
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Job name.
    pub name: String,
    /// Program identity: the same program gets the same vertex ids (defaults to the name).
    pub program: String,
    /// Vertices, source first.
    pub vertices: Vec<VertexSpec>,
    /// Restart attempts (`None` = the cluster default; `Some(0)` = `restart-strategy.type: none`).
    pub restart_attempts: Option<u32>,
}

impl JobSpec {
    /// A job named `name` with no vertices yet.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            program: name.to_string(),
            vertices: Vec::new(),
            restart_attempts: None,
        }
    }

    /// The captured test job: `Source: datagen` → `counter -> sink: Writer`, parallelism 1.
    pub fn counter(name: &str) -> Self {
        let mut s = Self::new(name)
            .vertex("Source: datagen", 1)
            .vertex("counter -> sink: Writer", 1);
        s.program = "rb.CounterJob".to_string();
        s
    }

    /// Append a vertex.
    pub fn vertex(mut self, name: &str, parallelism: u32) -> Self {
        self.vertices.push(VertexSpec {
            name: name.to_string(),
            parallelism,
            max_parallelism: 128,
            records_per_second: 70.0,
        });
        self
    }

    /// Set the parallelism of every vertex.
    pub fn parallelism(mut self, p: u32) -> Self {
        for v in &mut self.vertices {
            v.parallelism = p;
        }
        self
    }

    /// Set the restart attempts (0 = no restarts: the first failure is final).
    pub fn restart_attempts(mut self, n: u32) -> Self {
        self.restart_attempts = Some(n);
        self
    }

    fn validate(&self) -> Result<(), FakeFlinkError> {
        if self.name.trim().is_empty() {
            return Err(FakeFlinkError::InvalidSpec("the job name is empty".into()));
        }
        if self.vertices.is_empty() {
            return Err(FakeFlinkError::InvalidSpec(format!(
                "job {:?} has no vertices",
                self.name
            )));
        }
        for v in &self.vertices {
            if v.parallelism == 0 || v.parallelism > v.max_parallelism {
                return Err(FakeFlinkError::InvalidSpec(format!(
                    "vertex {:?} of job {:?}: parallelism {} is not within 1..={}",
                    v.name, self.name, v.parallelism, v.max_parallelism
                )));
            }
            if !v.records_per_second.is_finite() || v.records_per_second < 0.0 {
                return Err(FakeFlinkError::InvalidSpec(format!(
                    "vertex {:?} of job {:?}: records_per_second must be a finite number >= 0",
                    v.name, self.name
                )));
            }
        }
        Ok(())
    }
}

/// A running fake Flink REST API. Derefs to its [`FakeHttp`] (`base_url()`, `requests()`,
/// `faults()`); the methods below script the cluster.
#[derive(Debug)]
pub struct FakeFlink {
    http: FakeHttp,
    state: Shared,
}

impl Deref for FakeFlink {
    type Target = FakeHttp;
    fn deref(&self) -> &FakeHttp {
        &self.http
    }
}

impl FakeFlink {
    /// Start with [`FlinkConfig::default`] on `127.0.0.1:<ephemeral>`.
    pub async fn start() -> Result<Self, FakeFlinkError> {
        Self::start_with(FlinkConfig::default()).await
    }

    /// Start with `config`.
    pub async fn start_with(config: FlinkConfig) -> Result<Self, FakeFlinkError> {
        let state: Shared = Arc::new(Mutex::new(Cluster::new(config)));
        let router = Router::new()
            .fallback(routes::handle)
            .with_state(state.clone());
        let http = FakeHttp::start(router).await?;
        lock(&state).base_url = http.base_url();
        Ok(Self { http, state })
    }

    /// The underlying HTTP fake.
    pub fn http(&self) -> &FakeHttp {
        &self.http
    }

    fn with<T>(&self, f: impl FnOnce(&mut Cluster, Instant) -> T) -> T {
        let now = Instant::now();
        let mut c = lock(&self.state);
        c.advance(now);
        f(&mut c, now)
    }

    /// Submit a job; it runs at once when slots are free (else waits in CREATED). Returns its id
    /// (32 hex digits).
    pub fn add_job(&self, spec: JobSpec) -> Result<String, FakeFlinkError> {
        spec.validate()?;
        Ok(self.with(|c, now| {
            let name = spec.name.clone();
            c.submit(&spec, &name, now, None)
        }))
    }

    /// Ids of every job, oldest first.
    pub fn job_ids(&self) -> Vec<String> {
        self.with(|c, _| c.jobs.iter().map(|j| j.id.clone()).collect())
    }

    /// The live state of a job (`RUNNING`, `RESTARTING`, …), as `/jobs/<id>/status` says it.
    pub fn job_status(&self, job: &str) -> Result<String, FakeFlinkError> {
        self.with(|c, _| c.job(job).map(|j| j.status.name().to_string()))
            .ok_or_else(|| FakeFlinkError::UnknownJob(job.to_string()))
    }

    /// A closure giving the live `numRestarts` of `job` (what the Prometheus reporter exports as
    /// `flink_jobmanager_job_numRestarts`; 0 for an unknown job), for
    /// [`FakePrometheus::gauge_fn`](super::prometheus::FakePrometheus::gauge_fn).
    pub fn num_restarts_gauge(&self, job: &str) -> impl Fn() -> f64 + Send + Sync + 'static {
        let state = self.state.clone();
        let job = job.to_string();
        move || {
            let mut c = lock(&state);
            c.advance(Instant::now());
            c.job(&job).map_or(0.0, |j| j.num_restarts as f64)
        }
    }

    /// Restarts so far (the live value of the `numRestarts` metric).
    pub fn num_restarts(&self, job: &str) -> Result<u64, FakeFlinkError> {
        self.with(|c, _| c.job(job).map(|j| j.num_restarts))
            .ok_or_else(|| FakeFlinkError::UnknownJob(job.to_string()))
    }

    /// `(vertex id, vertex name, current parallelism)` of each vertex, source first.
    pub fn vertices(&self, job: &str) -> Result<Vec<(String, String, u32)>, FakeFlinkError> {
        self.with(|c, _| {
            c.job(job).map(|j| {
                j.vertices
                    .iter()
                    .map(|v| (v.id.clone(), v.name.clone(), v.parallelism))
                    .collect()
            })
        })
        .ok_or_else(|| FakeFlinkError::UnknownJob(job.to_string()))
    }

    /// Id of the latest completed (non-savepoint) checkpoint, if any.
    pub fn latest_checkpoint_id(&self, job: &str) -> Result<Option<u64>, FakeFlinkError> {
        self.with(|c, _| {
            c.job(job)
                .map(|j| j.checkpoints.latest_completed.as_ref().map(|r| r.id))
        })
        .ok_or_else(|| FakeFlinkError::UnknownJob(job.to_string()))
    }

    /// Ids of the registered TaskManagers.
    pub fn taskmanager_ids(&self) -> Vec<String> {
        self.with(|c, _| c.tms.iter().map(|t| t.id.clone()).collect())
    }

    /// Register a new TaskManager (with the configured slots); jobs waiting for slots run after
    /// `resource_stabilization`, and running jobs below their desired parallelism scale up after
    /// `rescale_duration` (a restart, history cause `NEW_RESOURCE_AVAILABLE`). Returns its id.
    pub fn add_taskmanager(&self) -> String {
        self.with(|c, now| c.add_tm(now))
    }

    /// Lose a TaskManager (the first one hosting a job, else the first one): every job on it goes
    /// RESTARTING (`numRestarts` + 1, exception "TaskManager with id … is no longer reachable"),
    /// then runs on the remaining slots or waits in CREATED. Returns the lost TaskManager's id.
    pub fn lose_taskmanager(&self) -> Result<String, FakeFlinkError> {
        self.with(|c, now| {
            let id = c
                .tms
                .iter()
                .find(|t| {
                    c.jobs
                        .iter()
                        .any(|j| j.alloc.iter().any(|(x, _)| x == &t.id))
                })
                .or_else(|| c.tms.first())
                .map(|t| t.id.clone())
                .ok_or_else(|| FakeFlinkError::UnknownTaskManager("(none registered)".into()))?;
            c.lose_tm(&id, now)?;
            Ok(id)
        })
    }

    /// Lose the TaskManager `id`.
    pub fn lose_taskmanager_id(&self, id: &str) -> Result<(), FakeFlinkError> {
        self.with(|c, now| c.lose_tm(id, now))
    }

    fn live_job(c: &Cluster, job: &str, what: &str) -> Result<usize, FakeFlinkError> {
        let i = c.job_idx(job)?;
        let st = c.jobs[i].status;
        if st.is_terminal() {
            return Err(FakeFlinkError::WrongState {
                job: job.into(),
                state: st.name().into(),
                what: what.into(),
            });
        }
        Ok(i)
    }

    /// Put a job in a crash loop: it fails now (if running) and again shortly after each restart
    /// with `exception` (first line `"<class>: <message>"`, e.g.
    /// `"org.apache.paimon.schema.SchemaChangeException: …"`), restarts after the restart delay,
    /// and so on (`numRestarts` grows, one exception entry per failure) until [`FakeFlink::heal`]
    /// or the restart attempts run out (then FAILED).
    pub fn crash_loop(&self, job: &str, exception: &str) -> Result<(), FakeFlinkError> {
        self.with(|c, now| {
            let i = Self::live_job(c, job, "crash loop")?;
            c.jobs[i].crash = Some(exception.to_string());
            if c.jobs[i].status == JobStatus::Running {
                c.fail_over(i, exception, now);
            }
            Ok(())
        })
    }

    /// End a crash loop: the next restart succeeds.
    pub fn heal(&self, job: &str) -> Result<(), FakeFlinkError> {
        self.with(|c, _| {
            let i = c.job_idx(job)?;
            let j = &mut c.jobs[i];
            j.crash = None;
            if matches!(j.pending, Some((_, model::Transition::Crash))) {
                j.pending = None;
            }
            Ok(())
        })
    }

    /// Fail a job for good (restart strategy exhausted): FAILED, with `exception` in `/exceptions`
    /// and in `/execution-result`'s `failure-cause`.
    pub fn fail_job(&self, job: &str, exception: &str) -> Result<(), FakeFlinkError> {
        self.with(|c, now| {
            let i = Self::live_job(c, job, "fail")?;
            c.fail_permanently(i, exception, now);
            Ok(())
        })
    }

    /// Make a job's periodic checkpoints fail ("Trigger checkpoint failure.") or succeed again.
    pub fn fail_checkpoints(&self, job: &str, failing: bool) -> Result<(), FakeFlinkError> {
        self.with(|c, _| {
            let i = c.job_idx(job)?;
            c.jobs[i].failing_checkpoints = failing;
            Ok(())
        })
    }

    /// Savepoints into a directory starting with `prefix` fail (like an unwritable directory):
    /// the operation is COMPLETED with a `failure-cause` and a failed savepoint is recorded.
    pub fn fail_savepoints_under(&self, prefix: &str) {
        self.with(|c, _| c.failing_dirs.push(prefix.to_string()));
    }

    /// What `POST /jars/<jar>/run` submits (default: [`JobSpec::counter`]); the run's first program
    /// argument, when given, names the job.
    pub fn set_jar_program(&self, spec: JobSpec) -> Result<(), FakeFlinkError> {
        spec.validate()?;
        self.with(|c, _| c.program = spec);
        Ok(())
    }

    /// Make `path` a restorable savepoint (as if taken on another cluster) of a job of `spec`'s
    /// program, with checkpoint id `id`.
    pub fn register_savepoint(&self, path: &str, spec: &JobSpec, id: u64) {
        self.with(|c, _| {
            let vertex_ids = model::spec_vertices(spec, 0)
                .into_iter()
                .map(|v| v.id)
                .collect();
            c.external_snapshots.insert(
                model::flink_path(path),
                model::SnapshotInfo {
                    id,
                    is_savepoint: true,
                    vertex_ids,
                },
            );
        });
    }

    /// Set the throughput of a vertex (records per second over all its subtasks).
    pub fn set_records_per_second(
        &self,
        job: &str,
        vertex_id: &str,
        rps: f64,
    ) -> Result<(), FakeFlinkError> {
        self.with_vertex(job, vertex_id, |v| v.records_per_second = rps.max(0.0))
    }

    /// Set the back-pressure ratio of a vertex (0.0 – 1.0): `/backpressure` level and the
    /// `backPressuredTimeMsPerSecond` / `isBackPressured` metrics follow.
    pub fn set_backpressure(
        &self,
        job: &str,
        vertex_id: &str,
        ratio: f64,
    ) -> Result<(), FakeFlinkError> {
        self.with_vertex(job, vertex_id, |v| v.backpressure = ratio.clamp(0.0, 1.0))
    }

    /// Set the backlog of a source vertex: its `<subtask>.<source>.pendingRecords` metrics (as
    /// Flink's Kafka source reports them) sum to `records`.
    pub fn set_pending_records(
        &self,
        job: &str,
        vertex_id: &str,
        records: u64,
    ) -> Result<(), FakeFlinkError> {
        self.with_vertex(job, vertex_id, |v| v.pending_records = records)
    }

    fn with_vertex(
        &self,
        job: &str,
        vertex_id: &str,
        f: impl FnOnce(&mut model::Vertex),
    ) -> Result<(), FakeFlinkError> {
        self.with(|c, _| {
            let i = c.job_idx(job)?;
            let v = c.jobs[i]
                .vertices
                .iter_mut()
                .find(|v| v.id == vertex_id)
                .ok_or_else(|| {
                    FakeFlinkError::InvalidSpec(format!("job {job} has no vertex {vertex_id}"))
                })?;
            f(v);
            Ok(())
        })
    }
}

use model::JobStatus;
