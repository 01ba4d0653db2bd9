//! Seed §4 **Flink job restarts repeatedly**: alert `FlinkJobRestarting`, logs show schema errors.
//!
//! * **Detect** — rb-probes' [`FlinkJobProbe`] on job [`JOB`] (selected by name, so the job a
//!   restore starts is the same watched job), every probe interval: `numRestarts` grew by more
//!   than [`MAX_RESTARTS`] within [`RESTART_WINDOW`] (the `FlinkJobRestarting` rule), **or** the
//!   job has not been RUNNING for the for-duration (a job that lost its only TaskManager restarts
//!   once and then waits for slots: no more restarts, still down). One incident **per job** (the
//!   `job` label: a job name, stable across restores). A job that restarts once and runs again is
//!   neither. The detector reads the job's state and restart count only ([`RestartWatch`]): a
//!   crash-looping job has no running tasks, so the job probe cannot read its vertices' load, and
//!   those expected gaps must not make the detector's verdict unknown (seen on a real Flink 2.3
//!   job crash-looping in RESTARTING). The Alertmanager alert is not a second detect source here: Prometheus' own `job`
//!   label is the scrape job, so the alert's instance would key a second incident for the same
//!   job; with Alertmanager in front, route `FlinkJobRestarting` to the on-call and let this probe
//!   drive the playbook.
//! * **Diagnose** — the job again (its exception history, each entry classified by rb-probes'
//!   [`classify`](rb_probes::flink::classify()): schema mismatch, serialization, class not found,
//!   out of memory, lost TaskManager, other), and the JobManager's log lines from Loki
//!   (`{container="flink-jobmanager"}`, the seed's "inspect logs via Loki").
//! * **Mitigate**, by the newest exception's class:
//!   * a **schema mismatch** → a task for a human: deploy the fixed JAR (the Paimon type mapping,
//!     e.g. `allow_non_string_to_string`) as [`JAR_NAME`]; once done, rb-actions' [`Restore`]
//!     cancels the old job and runs the new JAR from the job's latest retained checkpoint
//!     (`POST /jars/<jar>/run` with `savepointPath`, `NO_CLAIM`), handing the new job id on;
//!   * a **lost TaskManager** → a task for a human: scale out the TaskManagers (`docker compose up
//!     -d --scale flink-taskmanager=2`, seed §3); the job resumes on the new slots by itself;
//!   * anything else → a task for a human to read the exceptions and the log and fix the cause.
//! * **Recover** — the job RUNNING, and no more than [`MAX_RESTARTS`] restarts within the window,
//!   for the stability window.
//! * **Escalate** — the Data Platform on-call (15 min SLA; the seed's §5 has no Flink SME).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rb_actions::flink::{FlinkEndpoint, JarSubmitter, Restore};
use rb_core::incident::StepState;
use rb_core::prelude::*;
use rb_probes::flink::{FailureCategory, FlinkJob, FlinkJobProbe, JobSelector};
use rb_probes::loki::LokiLogs;
use rb_testkit::http::flink::JobSpec;
use rb_testkit::lakehouse::{FakeLakehouse, FlinkFailure};

use crate::lakehouse::situations::{Expect, Scene, SceneError};
use crate::lakehouse::Systems;

/// The playbook id.
pub const PLAYBOOK: &str = "flink-restarting";
/// The job watched.
pub const JOB: &str = "orders-enrichment";
/// The JAR the fixed job is deployed as (what the restore runs).
pub const JAR_NAME: &str = "orders-enrichment.jar";

/// The restart counter the probe reports (Flink's `numRestarts`).
pub const RESTARTS: &str = "flink_job_restarts_total";
/// 1 while the job is RUNNING.
pub const JOB_UP: &str = "flink_job_up";
/// More restarts than this within [`RESTART_WINDOW`] fire.
pub const MAX_RESTARTS: f64 = 2.0;
/// The window restarts are counted over.
pub const RESTART_WINDOW: Duration = Duration::from_secs(300);

/// Step: a human deploys the fixed JAR.
pub const DEPLOY_STEP: &str = "deploy-fixed-jar";
/// Step: restore from the latest retained checkpoint.
pub const RESTORE_STEP: &str = "restore-from-checkpoint";
/// Step: a human scales out the TaskManagers.
pub const SCALE_OUT_STEP: &str = "scale-out-taskmanagers";
/// Step: a human looks at any other failure.
pub const INVESTIGATE_STEP: &str = "investigate-failure";

fn category(ctx: &ActionContext) -> Option<FailureCategory> {
    let job = ctx.fact::<FlinkJob>()?;
    if job.present && job.cluster.taskmanagers == 0 {
        return Some(FailureCategory::LostTaskManager);
    }
    job.latest_failure()
}

fn is_schema(ctx: &ActionContext) -> bool {
    category(ctx) == Some(FailureCategory::SchemaMismatch)
}

fn is_lost_taskmanager(ctx: &ActionContext) -> bool {
    category(ctx) == Some(FailureCategory::LostTaskManager)
}

/// The situation's playbook.
pub fn playbooks(s: &Systems) -> Vec<Playbook> {
    vec![playbook(s)]
}

/// The detector's probe: rb-probes' [`FlinkJobProbe`], keeping what the restart rule reads — the
/// job's presence, state, `flink_job_up` and `flink_job_restarts_total`, and the `flink.job` fact —
/// and dropping the per-vertex load, which a job whose tasks are not running (RESTARTING, CREATED)
/// cannot report. The observation is incomplete only when the restart count is missing for a job
/// that is there (Flink's metric store not filled yet), so "unknown" still means unknown.
#[derive(Debug)]
pub struct RestartWatch {
    inner: Arc<dyn Probe>,
}

impl RestartWatch {
    /// The watch over `JOB` on the systems' Flink.
    pub fn new(s: &Systems) -> Self {
        Self {
            inner: job_probe(s),
        }
    }
}

/// The samples the restart rule reads.
const WATCHED: [&str; 4] = [
    "flink_job_present",
    "flink_job_up",
    "flink_job_state",
    RESTARTS,
];

#[async_trait::async_trait]
impl Probe for RestartWatch {
    fn id(&self) -> &str {
        "flink.job_restarts"
    }

    fn target(&self) -> &Target {
        self.inner.target()
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let full = self.inner.observe(ctx).await?;
        let mut obs = Observation::new(self.id(), &full.target, full.at);
        obs.samples = full
            .samples
            .iter()
            .filter(|s| WATCHED.contains(&s.name.as_str()))
            .cloned()
            .collect();
        obs.facts = full.facts.clone();
        let present = full
            .samples_named("flink_job_present")
            .any(|s| s.value > 0.0);
        if present && full.samples_named(RESTARTS).next().is_none() {
            let why: Vec<&String> = full
                .gaps
                .iter()
                .filter(|g| g.contains("numRestarts"))
                .collect();
            if why.is_empty() {
                obs.mark_incomplete("the job's restart count (numRestarts) is missing");
            } else {
                for g in why {
                    obs.mark_incomplete(g.clone());
                }
            }
        }
        Ok(obs)
    }
}

fn job_probe(s: &Systems) -> Arc<dyn Probe> {
    Arc::new(FlinkJobProbe::new(
        s.flink_http.clone(),
        s.flink.clone(),
        JobSelector::name(JOB),
    ))
}

/// Restarts more than twice in five minutes, or down for the for-duration; by the exception's
/// class, a human deploys the fixed JAR then the job is restored from its checkpoint, or a human
/// scales out the TaskManagers.
pub fn playbook(s: &Systems) -> Playbook {
    let t = &s.timings;
    let endpoint = FlinkEndpoint::new(s.flink.clone(), s.flink_http.clone());
    let restore = Restore::new(
        endpoint,
        Arc::new(JarSubmitter::new(s.flink_http.clone(), JAR_NAME)),
    )
    .job(JOB);
    let logs: Arc<dyn Probe> = Arc::new(
        LokiLogs::new(
            s.loki_http.clone(),
            s.loki.clone(),
            r#"{container="flink-jobmanager"}"#,
        )
        .window(t.stage.max(Duration::from_secs(900)))
        .limit(50)
        .id("loki.flink_jobmanager_logs"),
    );
    Playbook::new(PLAYBOOK, "Flink job restarts repeatedly")
        .service("flink")
        .detect(
            Arc::new(RestartWatch::new(s)),
            Schedule::every(t.probe_every).deadline(t.probe_deadline),
            any_of(vec![
                Box::new(
                    metric(RESTARTS)
                        .max()
                        .increase_over(RESTART_WINDOW)
                        .above(MAX_RESTARTS),
                ),
                Box::new(metric(JOB_UP).max().below(1.0).for_at_least(t.for_duration)),
            ]),
        )
        .incident_per(&["job"])
        .diagnose(job_probe(s))
        .diagnose(logs)
        .human_task(
            DEPLOY_STEP,
            format!("Deploy the fixed JAR as {JAR_NAME}: update the Paimon type mapping for the changed column (e.g. allow_non_string_to_string) — the job is then restored from its latest retained checkpoint"),
        )
        .when("the newest exception is a schema mismatch", is_schema)
        .mitigate_as(RESTORE_STEP, Arc::new(restore))
        .when("the newest exception is a schema mismatch", is_schema)
        .human_task(
            SCALE_OUT_STEP,
            "Scale out the TaskManagers (docker compose up -d --scale flink-taskmanager=2) and check why one was lost (container logs, heap, OOM kills)",
        )
        .when("a TaskManager was lost", is_lost_taskmanager)
        .human_task(
            INVESTIGATE_STEP,
            "Read the job's exceptions and the JobManager log (Loki container=\"flink-jobmanager\") and fix the cause",
        )
        .when("the failure is neither a schema mismatch nor a lost TaskManager", |ctx| {
            !is_schema(ctx) && !is_lost_taskmanager(ctx)
        })
        // a recovery check is the bad condition: ok (not firing) for the stability window
        .recover_on_detect(metric(JOB_UP).max().below(1.0))
        .stable_for(t.stable_for)
        .review_item("Which upstream schema change broke the job, and why did the type mapping not allow it? (seed §4)")
        .review_item("Was the job restored from the newest checkpoint, and was data cross-checked after the restore?")
        .review_item("Why was a TaskManager lost (OOM kill, heap, host)? Is one spare TaskManager needed?")
        .escalate_to("Data Platform On-call")
}

/// The index of step `id` of this playbook in the engine's runbook.
fn step_index(engine: &Engine, id: &str) -> Option<usize> {
    engine
        .runbook()
        .playbooks()
        .iter()
        .find(|p| p.id() == PLAYBOOK)?
        .mitigations()
        .iter()
        .position(|s| s.id == id)
}

/// The open incident of this playbook whose human task `step` waits, if any.
async fn waiting_task(engine: &Engine, step: &str) -> Result<Option<String>, String> {
    let Some(i) = step_index(engine, step) else {
        return Err(format!("the runbook has no step {step} in {PLAYBOOK}"));
    };
    for id in engine.open_incidents().await {
        let inc = engine.incident(&id).await.map_err(|e| e.to_string())?;
        if inc.record.playbook == PLAYBOOK && inc.step_state(i) == StepState::Started {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// The lakehouse's job as its fixed JAR runs it (same program, so the same vertex ids).
fn orders_program() -> JobSpec {
    JobSpec::new(JOB)
        .vertex("Source: orders", 2)
        .vertex("enrich -> Sink: paimon", 2)
}

/// **Real:** the job crash-loops on a Paimon `SchemaChangeException`. A scripted human answers the
/// task: uploads the fixed JAR (`POST /jars/upload`), the world heals (`heal_flink`), the task is
/// marked done; the restore follows.
#[derive(Debug, Default)]
pub struct SchemaCrashLoop {
    done: AtomicBool,
}

impl SchemaCrashLoop {
    /// The scene.
    pub fn new() -> Self {
        Self::default()
    }
}

fn err(scene: &dyn Scene, e: impl std::fmt::Display) -> SceneError {
    SceneError::new(scene.name(), e)
}

#[async_trait::async_trait]
impl Scene for SchemaCrashLoop {
    fn name(&self) -> String {
        format!("flink job {JOB} crash-loops on a schema change")
    }

    fn expect(&self) -> Option<Expect> {
        Some(Expect {
            playbook: PLAYBOOK,
            key: vec![("job", JOB.to_string())],
            applied: vec![RESTORE_STEP],
        })
    }

    async fn start(&self, lake: &FakeLakehouse) -> Result<(), SceneError> {
        lake.flink_job_restarting(FlinkFailure::Schema)
            .map_err(|e| err(self, e))
    }

    async fn react(
        &self,
        lake: &FakeLakehouse,
        engine: &Engine,
        _since_start: Duration,
    ) -> Result<bool, SceneError> {
        if self.done.load(Ordering::SeqCst) {
            return Ok(true);
        }
        let Some(incident) = waiting_task(engine, DEPLOY_STEP)
            .await
            .map_err(|e| err(self, e))?
        else {
            return Ok(false);
        };
        // The human's deploy: the fixed JAR uploaded to the JobManager.
        let client = reqwest::Client::builder()
            .pool_idle_timeout(None)
            .build()
            .map_err(|e| err(self, e))?;
        let part = reqwest::multipart::Part::bytes(b"PK\x03\x04 fixed orders job".to_vec())
            .file_name(JAR_NAME)
            .mime_str("application/x-java-archive")
            .map_err(|e| err(self, e))?;
        let url = format!("{}/jars/upload", lake.flink().base_url());
        let resp = client
            .post(&url)
            .multipart(reqwest::multipart::Form::new().part("jarfile", part))
            .send()
            .await
            .map_err(|e| err(self, format!("{url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(err(self, format!("{url}: HTTP {}", resp.status())));
        }
        lake.flink()
            .set_jar_program(orders_program())
            .map_err(|e| err(self, e))?;
        lake.heal_flink().map_err(|e| err(self, e))?;
        engine
            .complete_task(&incident, DEPLOY_STEP, "scripted on-call")
            .await
            .map_err(|e| err(self, e))?;
        self.done.store(true, Ordering::SeqCst);
        Ok(true)
    }
}

/// **Real:** the job's only TaskManager is lost; the job waits for slots. A scripted human answers
/// the scale-out task: a TaskManager joins (`heal_flink`), the task is marked done.
#[derive(Debug, Default)]
pub struct LostTaskManager {
    done: AtomicBool,
}

impl LostTaskManager {
    /// The scene.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl Scene for LostTaskManager {
    fn name(&self) -> String {
        format!("flink job {JOB} loses its only TaskManager")
    }

    fn expect(&self) -> Option<Expect> {
        Some(Expect {
            playbook: PLAYBOOK,
            key: vec![("job", JOB.to_string())],
            applied: vec![],
        })
    }

    async fn start(&self, lake: &FakeLakehouse) -> Result<(), SceneError> {
        lake.flink_job_restarting(FlinkFailure::LostTaskManager)
            .map_err(|e| err(self, e))
    }

    async fn react(
        &self,
        lake: &FakeLakehouse,
        engine: &Engine,
        _since_start: Duration,
    ) -> Result<bool, SceneError> {
        if self.done.load(Ordering::SeqCst) {
            return Ok(true);
        }
        let Some(incident) = waiting_task(engine, SCALE_OUT_STEP)
            .await
            .map_err(|e| err(self, e))?
        else {
            return Ok(false);
        };
        lake.heal_flink().map_err(|e| err(self, e))?;
        engine
            .complete_task(&incident, SCALE_OUT_STEP, "scripted on-call")
            .await
            .map_err(|e| err(self, e))?;
        self.done.store(true, Ordering::SeqCst);
        Ok(true)
    }
}

/// **Decoy:** the job fails once (a transient exception), restarts after the restart delay and
/// runs again by itself. Over after `observe_for`.
#[derive(Debug, Clone)]
pub struct RestartOnce {
    /// How long the scene runs.
    pub observe_for: Duration,
}

#[async_trait::async_trait]
impl Scene for RestartOnce {
    fn name(&self) -> String {
        format!("decoy: flink job {JOB} restarts once and recovers")
    }

    fn expect(&self) -> Option<Expect> {
        None
    }

    async fn start(&self, lake: &FakeLakehouse) -> Result<(), SceneError> {
        let job = lake.flink_job_id();
        lake.flink()
            .crash_loop(
                job,
                "org.apache.flink.util.FlinkRuntimeException: transient failure in enrich, retried by the restart strategy",
            )
            .and_then(|()| lake.flink().heal(job))
            .map_err(|e| err(self, e))
    }

    async fn react(
        &self,
        _lake: &FakeLakehouse,
        _engine: &Engine,
        since_start: Duration,
    ) -> Result<bool, SceneError> {
        Ok(since_start >= self.observe_for)
    }
}
