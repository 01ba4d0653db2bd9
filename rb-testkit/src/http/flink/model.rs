//! The state of the fake cluster and how it moves with (tokio) time.
//!
//! Nothing runs in the background: every request and every call on the handle first calls
//! [`Cluster::advance`], which replays the timed transitions (restarts, checkpoints, savepoints,
//! rescales, metric fetches) due up to "now", in time order. With a paused tokio clock the fake
//! is therefore fully deterministic.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::{FakeFlinkError, FlinkConfig, JobSpec};

/// How many checkpoints `/checkpoints` lists in `history` (Flink's `web.checkpoints.history`).
pub(crate) const CHECKPOINT_HISTORY: usize = 10;
/// How many checkpoint records are kept for `/checkpoints/details/<id>`.
const CHECKPOINT_KEEP: usize = 200;
/// How many duration/size samples feed the checkpoint summary.
const SUMMARY_SAMPLES: usize = 1000;
/// Time between the adaptive scheduler going RESTARTING for a rescale and running again.
const RESCALE_RESTART_GAP: Duration = Duration::from_millis(120);
/// How long a crash-looping job runs before its next failure.
const CRASH_AFTER: Duration = Duration::from_millis(800);
/// How long CANCELLING lasts.
const CANCEL_TIME: Duration = Duration::from_millis(50);

/// Job states as Flink names them in `/jobs/<id>` and `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum JobStatus {
    Initializing,
    Created,
    Running,
    Failing,
    Failed,
    Cancelling,
    Canceled,
    Finished,
    Restarting,
    Suspended,
    Reconciling,
}

impl JobStatus {
    pub(crate) const ALL: [JobStatus; 11] = [
        JobStatus::Created,
        JobStatus::Running,
        JobStatus::Failed,
        JobStatus::Restarting,
        JobStatus::Failing,
        JobStatus::Suspended,
        JobStatus::Finished,
        JobStatus::Reconciling,
        JobStatus::Canceled,
        JobStatus::Cancelling,
        JobStatus::Initializing,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            JobStatus::Initializing => "INITIALIZING",
            JobStatus::Created => "CREATED",
            JobStatus::Running => "RUNNING",
            JobStatus::Failing => "FAILING",
            JobStatus::Failed => "FAILED",
            JobStatus::Cancelling => "CANCELLING",
            JobStatus::Canceled => "CANCELED",
            JobStatus::Finished => "FINISHED",
            JobStatus::Restarting => "RESTARTING",
            JobStatus::Suspended => "SUSPENDED",
            JobStatus::Reconciling => "RECONCILING",
        }
    }

    /// Globally terminal: the job will never run again.
    pub(crate) fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Failed | JobStatus::Canceled | JobStatus::Finished
        )
    }

    /// The execution state its tasks show.
    pub(crate) fn task_state(self) -> &'static str {
        match self {
            JobStatus::Running => "RUNNING",
            JobStatus::Finished => "FINISHED",
            JobStatus::Canceled => "CANCELED",
            JobStatus::Failed => "FAILED",
            JobStatus::Cancelling | JobStatus::Failing => "CANCELING",
            _ => "CREATED",
        }
    }
}

/// Wall-clock milliseconds derived from tokio time, so timestamps move with a paused clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base: Instant,
    base_ms: i64,
}

impl Clock {
    pub(crate) fn new() -> Self {
        let base_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Self {
            base: Instant::now(),
            base_ms,
        }
    }

    pub(crate) fn ms(&self, t: Instant) -> i64 {
        self.base_ms + t.saturating_duration_since(self.base).as_millis() as i64
    }
}

/// 32 lower-case hex digits, random.
pub(crate) fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// 32 lower-case hex digits derived from `parts` (stable across runs: the same program gets the
/// same vertex ids, as in Flink).
pub(crate) fn stable_id(parts: &[&str]) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x8422_2325_cbf2_9ce4;
    for p in parts {
        for byte in p.bytes().chain(std::iter::once(0xff)) {
            a ^= u64::from(byte);
            a = a.wrapping_mul(0x0000_0100_0000_01b3);
            b = b.rotate_left(5) ^ u64::from(byte);
            b = b
                .wrapping_mul(0x0000_0100_0000_01b3)
                .wrapping_add(0x9e37_79b9);
        }
    }
    format!("{a:016x}{b:016x}")
}

/// Normalises `file:///x` to Flink's printed form `file:/x`; strips a trailing slash.
pub(crate) fn flink_path(dir: &str) -> String {
    let d = dir.trim_end_matches('/');
    match d.strip_prefix("file://") {
        Some(rest) if rest.starts_with('/') => format!("file:{rest}"),
        _ => d.to_string(),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct TaskManager {
    pub id: String,
    pub data_port: u16,
    pub slots: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Vertex {
    pub id: String,
    pub name: String,
    pub max_parallelism: u32,
    pub lower: u32,
    pub upper: u32,
    /// Parallelism of the current (or last) execution.
    pub parallelism: u32,
    pub records_per_second: f64,
    pub backpressure: f64,
    /// Records waiting in the source (Kafka backlog), over all subtasks.
    pub pending_records: u64,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
}

impl Vertex {
    /// Operator names of the chain, as metric scopes spell them (`Source: datagen` → `Source__datagen`).
    pub(crate) fn operators(&self) -> Vec<String> {
        self.name
            .split(" -> ")
            .map(|op| {
                op.chars()
                    .map(|c| {
                        if c == ' ' || c == ':' || c == '.' {
                            '_'
                        } else {
                            c
                        }
                    })
                    .collect()
            })
            .collect()
    }

    pub(crate) fn is_source(&self) -> bool {
        self.name.starts_with("Source")
    }
}

/// The vertices a job of `spec` gets; ids are stable for the same program.
pub(crate) fn spec_vertices(spec: &JobSpec, ms: i64) -> Vec<Vertex> {
    spec.vertices
        .iter()
        .enumerate()
        .map(|(i, v)| Vertex {
            id: stable_id(&[&spec.program, &i.to_string(), &v.name]),
            name: v.name.clone(),
            max_parallelism: v.max_parallelism,
            lower: 1,
            upper: v.parallelism,
            parallelism: v.parallelism,
            records_per_second: v.records_per_second,
            backpressure: 0.0,
            pending_records: 0,
            start_ms: ms,
            end_ms: None,
        })
        .collect()
}

#[derive(Debug, Clone)]
pub(crate) struct CheckpointRecord {
    pub id: u64,
    pub failed: bool,
    pub is_savepoint: bool,
    pub format: Option<&'static str>,
    pub ctype: &'static str,
    pub trigger_ms: i64,
    pub ack_ms: i64,
    pub size: u64,
    pub duration: u64,
    pub num_subtasks: u32,
    pub acked: u32,
    pub external_path: Option<String>,
    pub failure_ms: i64,
    pub failure_message: String,
    /// Vertex id, state size, parallelism.
    pub per_vertex: Vec<(String, u64, u32)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Restored {
    pub id: u64,
    pub restore_ms: i64,
    pub is_savepoint: bool,
    pub external_path: String,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Checkpoints {
    pub next_id: u64,
    pub records: VecDeque<CheckpointRecord>,
    pub completed: u64,
    pub failed: u64,
    pub restored_count: u64,
    pub latest_completed: Option<CheckpointRecord>,
    pub latest_savepoint: Option<CheckpointRecord>,
    pub latest_failed: Option<CheckpointRecord>,
    pub restored: Option<Restored>,
    pub sizes: VecDeque<u64>,
    pub durations: VecDeque<u64>,
    /// Set when the job finished: every retained checkpoint was discarded.
    pub all_discarded: bool,
}

impl Checkpoints {
    fn push(&mut self, rec: CheckpointRecord) {
        if rec.failed {
            self.failed += 1;
            self.latest_failed = Some(rec.clone());
        } else {
            self.completed += 1;
            if rec.is_savepoint {
                self.latest_savepoint = Some(rec.clone());
            } else {
                self.latest_completed = Some(rec.clone());
            }
            self.sizes.push_back(rec.size);
            self.durations.push_back(rec.duration);
            if self.sizes.len() > SUMMARY_SAMPLES {
                self.sizes.pop_front();
                self.durations.pop_front();
            }
        }
        self.records.push_back(rec);
        if self.records.len() > CHECKPOINT_KEEP {
            self.records.pop_front();
        }
    }

    /// Whether the completed checkpoint `id` has been discarded (subsumed beyond the retained count,
    /// or every checkpoint after the job finished). Savepoints are never discarded.
    pub(crate) fn is_discarded(&self, rec: &CheckpointRecord, retained: usize) -> bool {
        if rec.is_savepoint {
            return false;
        }
        if self.all_discarded {
            return true;
        }
        let newer = self
            .records
            .iter()
            .filter(|r| !r.failed && !r.is_savepoint && r.id > rec.id)
            .count();
        newer >= retained
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ExceptionEntry {
    pub name: String,
    pub stacktrace: String,
    pub timestamp: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct RescaleVertex {
    pub id: String,
    pub name: String,
    pub desired: u32,
    pub sufficient: u32,
    pub pre: u32,
    pub post: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct RescaleRecord {
    pub uuid: String,
    pub requirements_uuid: String,
    pub trigger_cause: &'static str,
    pub start_ms: i64,
    pub end_ms: i64,
    pub vertices: Vec<RescaleVertex>,
    pub pre_slots: u32,
    pub post_slots: u32,
    /// (state, enter, leave)
    pub states: Vec<(&'static str, i64, i64)>,
}

#[derive(Debug, Clone)]
pub(crate) enum Transition {
    /// End of RESTARTING / a waiting period: run if slots allow, else wait in CREATED.
    Schedule,
    /// A crash-looping job fails now.
    Crash,
    /// The adaptive scheduler starts changing the parallelism (new requirements or new slots).
    Rescale {
        requested_ms: i64,
        requirements_uuid: String,
        cause: &'static str,
    },
    /// CANCELLING is over.
    Cancelled,
}

#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub id: String,
    pub name: String,
    pub status: JobStatus,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub last_modification_ms: i64,
    pub timestamps: BTreeMap<JobStatus, i64>,
    pub status_since: Instant,
    pub vertices: Vec<Vertex>,
    pub slot_sharing_group: String,
    pub restart_attempts: u32,
    pub restart_delay: Duration,
    pub failures: u32,
    pub num_restarts: u64,
    pub num_rescales: u64,
    pub running_since: Option<Instant>,
    pub run_ms_before: u64,
    pub pending: Option<(Instant, Transition)>,
    pub next_checkpoint: Option<Instant>,
    pub checkpoints: Checkpoints,
    pub failing_checkpoints: bool,
    pub exceptions: VecDeque<ExceptionEntry>,
    pub crash: Option<String>,
    pub failure: Option<String>,
    pub rescales: VecDeque<RescaleRecord>,
    pub alloc: Vec<(String, u32)>,
    pub job_parallelism: i64,
    pub last_restore_ms: Option<i64>,
    pub submitted: Instant,
    /// The next run restores from the latest checkpoint (after a failover or a rescale).
    pub needs_restore: bool,
    /// What the next successful schedule records in the rescale history: (start ms, requirements
    /// uuid, trigger cause).
    pub rescale_ctx: Option<(i64, String, &'static str)>,
}

impl Job {
    pub(crate) fn running_ms(&self, now: Instant) -> u64 {
        self.run_ms_before
            + self
                .running_since
                .map(|s| now.saturating_duration_since(s).as_millis() as u64)
                .unwrap_or(0)
    }

    pub(crate) fn total_subtasks(&self) -> u32 {
        self.vertices.iter().map(|v| v.parallelism).sum()
    }

    pub(crate) fn slots_needed(&self) -> u32 {
        self.vertices
            .iter()
            .map(|v| v.parallelism)
            .max()
            .unwrap_or(0)
    }

    pub(crate) fn restart_strategy(&self) -> String {
        if self.restart_attempts == 0 {
            "Restart deactivated.".to_string()
        } else {
            format!(
                "Restart with fixed delay (PT{}S). #{} restart attempts.",
                self.restart_delay.as_secs(),
                self.restart_attempts
            )
        }
    }

    fn set_status(&mut self, status: JobStatus, t: Instant, clock: &Clock) {
        let ms = clock.ms(t);
        if self.status == JobStatus::Running {
            if let Some(s) = self.running_since.take() {
                self.run_ms_before += t.saturating_duration_since(s).as_millis() as u64;
            }
            for v in &mut self.vertices {
                v.end_ms = Some(ms);
            }
        }
        self.status = status;
        self.status_since = t;
        self.timestamps.insert(status, ms);
        self.last_modification_ms = ms;
        if status == JobStatus::Running {
            self.running_since = Some(t);
            for v in &mut self.vertices {
                v.start_ms = ms;
                v.end_ms = None;
            }
        }
        if status.is_terminal() {
            self.end_ms = Some(ms);
            self.pending = None;
            self.next_checkpoint = None;
            self.alloc.clear();
        }
        if status != JobStatus::Running {
            self.next_checkpoint = None;
        }
    }

    fn push_exception(&mut self, text: &str, t_ms: i64, history: usize) {
        let name = text.split(':').next().unwrap_or(text).trim().to_string();
        let stacktrace = if text.contains("\n\tat ") {
            text.to_string()
        } else {
            format!("{text}{}", frames_for(&name))
        };
        self.exceptions.push_front(ExceptionEntry {
            name,
            stacktrace,
            timestamp: t_ms,
        });
        while self.exceptions.len() > history.max(1) {
            self.exceptions.pop_back();
        }
    }
}

/// A few plausible stack frames for an exception class.
pub(crate) fn frames_for(class: &str) -> String {
    if class.contains("JobMasterException") {
        "\n\tat org.apache.flink.runtime.jobmaster.JobMaster$TaskManagerHeartbeatListener.notifyTargetUnreachable(JobMaster.java:1680)\n\tat org.apache.flink.runtime.heartbeat.DefaultHeartbeatMonitor.reportHeartbeatRpcFailure(DefaultHeartbeatMonitor.java:126)\n\tat org.apache.flink.runtime.heartbeat.HeartbeatManagerImpl.runIfHeartbeatMonitorExists(HeartbeatManagerImpl.java:275)\n".to_string()
    } else {
        "\n\tat org.apache.flink.streaming.runtime.tasks.OneInputStreamTask$StreamTaskNetworkOutput.emitRecord(OneInputStreamTask.java:238)\n\tat org.apache.flink.streaming.runtime.io.AbstractStreamTaskNetworkInput.processElement(AbstractStreamTaskNetworkInput.java:157)\n\tat org.apache.flink.streaming.runtime.tasks.StreamTask.processInput(StreamTask.java:638)\n\tat org.apache.flink.runtime.taskmanager.Task.run(Task.java:566)\n\tat java.base/java.lang.Thread.run(Thread.java:840)\n".to_string()
    }
}

#[derive(Debug, Clone)]
pub(crate) enum OpKind {
    Savepoint { cancel_job: bool },
    Stop,
}

#[derive(Debug, Clone)]
pub(crate) enum OpResult {
    Location(String),
    Failure { class: String, stack: String },
}

#[derive(Debug, Clone)]
pub(crate) struct SavepointOp {
    pub job: String,
    pub trigger: String,
    pub kind: OpKind,
    pub dir: Option<String>,
    pub format: &'static str,
    pub triggered: Instant,
    pub due: Instant,
    pub result: Option<OpResult>,
}

#[derive(Debug, Clone)]
pub(crate) struct Jar {
    pub id: String,
    pub name: String,
    pub uploaded_ms: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct SnapshotInfo {
    pub id: u64,
    pub is_savepoint: bool,
    pub vertex_ids: Vec<String>,
}

/// Job-scoped and task-scoped metric values as of one fetch, as strings (the REST form).
#[derive(Debug, Clone, Default)]
pub(crate) struct JobMetricSnap {
    pub job: Vec<(String, String)>,
    /// vertex id → per subtask → (metric, value)
    pub vertices: HashMap<String, Vec<Vec<(String, String)>>>,
}

#[derive(Debug)]
pub(crate) struct Cluster {
    pub cfg: FlinkConfig,
    pub clock: Clock,
    pub tms: Vec<TaskManager>,
    pub jobs: Vec<Job>,
    pub ops: Vec<SavepointOp>,
    pub jars: Vec<Jar>,
    pub external_snapshots: HashMap<String, SnapshotInfo>,
    pub metrics: HashMap<String, JobMetricSnap>,
    pub next_fetch: Instant,
    pub caches: HashMap<String, (Instant, std::sync::Arc<Job>)>,
    pub program: JobSpec,
    pub failing_dirs: Vec<String>,
    pub base_url: String,
    pub web_tmp: String,
    tm_seq: u16,
}

impl Cluster {
    pub(crate) fn new(cfg: FlinkConfig) -> Self {
        let now = Instant::now();
        let mut c = Self {
            clock: Clock::new(),
            tms: Vec::new(),
            jobs: Vec::new(),
            ops: Vec::new(),
            jars: Vec::new(),
            external_snapshots: HashMap::new(),
            metrics: HashMap::new(),
            next_fetch: now,
            caches: HashMap::new(),
            program: JobSpec::counter("runbook-counter"),
            failing_dirs: Vec::new(),
            base_url: String::new(),
            web_tmp: format!("/tmp/flink-web-{}", uuid::Uuid::new_v4()),
            tm_seq: 0,
            cfg,
        };
        for _ in 0..c.cfg.taskmanagers {
            c.add_tm(now);
        }
        c
    }

    pub(crate) fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.id == id)
    }

    pub(crate) fn job_idx(&self, id: &str) -> Result<usize, FakeFlinkError> {
        self.jobs
            .iter()
            .position(|j| j.id == id)
            .ok_or_else(|| FakeFlinkError::UnknownJob(id.to_string()))
    }

    pub(crate) fn slots_total(&self) -> u32 {
        self.tms.iter().map(|t| t.slots).sum()
    }

    fn used_on(&self, tm: &str) -> u32 {
        self.jobs
            .iter()
            .flat_map(|j| j.alloc.iter())
            .filter(|(id, _)| id == tm)
            .map(|(_, n)| *n)
            .sum()
    }

    pub(crate) fn free_on(&self, tm: &TaskManager) -> u32 {
        tm.slots.saturating_sub(self.used_on(&tm.id))
    }

    pub(crate) fn slots_free(&self) -> u32 {
        self.tms.iter().map(|t| self.free_on(t)).sum()
    }

    pub(crate) fn add_tm(&mut self, t: Instant) -> String {
        self.tm_seq = self.tm_seq.wrapping_add(1);
        let rpc_port = 40000 + (rand::random::<u16>() % 20000);
        let id = format!(
            "127.0.0.1:{rpc_port}-{:06x}",
            rand::random::<u32>() & 0xff_ffff
        );
        self.tms.push(TaskManager {
            id: id.clone(),
            data_port: rpc_port.wrapping_add(self.tm_seq),
            slots: self.cfg.slots_per_taskmanager,
        });
        self.wake_waiting(t, self.cfg.resource_stabilization);
        // running jobs below their desired parallelism scale up onto the new slots
        let delay = self
            .cfg
            .rescale_duration
            .saturating_sub(RESCALE_RESTART_GAP);
        let ms = self.clock.ms(t);
        for j in &mut self.jobs {
            let below = j
                .vertices
                .iter()
                .any(|v| v.parallelism < v.upper.min(v.max_parallelism));
            if j.status == JobStatus::Running && j.pending.is_none() && below {
                j.pending = Some((
                    t + delay,
                    Transition::Rescale {
                        requested_ms: ms,
                        requirements_uuid: random_id(),
                        cause: "NEW_RESOURCE_AVAILABLE",
                    },
                ));
            }
        }
        id
    }

    /// Jobs waiting for slots (CREATED with nothing pending) try again after `delay`.
    fn wake_waiting(&mut self, t: Instant, delay: Duration) {
        for j in &mut self.jobs {
            if j.status == JobStatus::Created && j.pending.is_none() {
                j.pending = Some((t + delay, Transition::Schedule));
            }
        }
    }

    /// Remove TaskManager `tm`: every job with slots on it fails over.
    pub(crate) fn lose_tm(&mut self, tm: &str, t: Instant) -> Result<(), FakeFlinkError> {
        let pos = self
            .tms
            .iter()
            .position(|x| x.id == tm)
            .ok_or_else(|| FakeFlinkError::UnknownTaskManager(tm.to_string()))?;
        self.tms.remove(pos);
        let text = format!("org.apache.flink.runtime.jobmaster.JobMasterException: TaskManager with id {tm} is no longer reachable.");
        for i in 0..self.jobs.len() {
            if self.jobs[i].alloc.iter().any(|(id, _)| id == tm) {
                self.fail_over(i, &text, t);
            }
        }
        Ok(())
    }

    /// A recoverable failure of job `i` at `t`: restart (or FAILED when attempts are exhausted).
    pub(crate) fn fail_over(&mut self, i: usize, text: &str, t: Instant) {
        let clock = self.clock;
        let history = self.cfg.exception_history_size;
        let j = &mut self.jobs[i];
        j.push_exception(text, clock.ms(t), history);
        j.failures += 1;
        j.alloc.clear();
        if j.failures > j.restart_attempts {
            j.failure = Some(text.to_string());
            j.set_status(JobStatus::Failing, t, &clock);
            j.set_status(JobStatus::Failed, t, &clock);
            self.wake_waiting(t, self.cfg.resource_stabilization);
            return;
        }
        j.num_restarts += 1;
        j.needs_restore = true;
        j.rescale_ctx = Some((clock.ms(t), random_id(), "RECOVERABLE_FAILOVER"));
        j.set_status(JobStatus::Restarting, t, &clock);
        j.pending = Some((t + j.restart_delay, Transition::Schedule));
        self.wake_waiting(t, self.cfg.resource_stabilization);
    }

    /// Permanently fail job `i`.
    pub(crate) fn fail_permanently(&mut self, i: usize, text: &str, t: Instant) {
        let clock = self.clock;
        let history = self.cfg.exception_history_size;
        let j = &mut self.jobs[i];
        if j.status.is_terminal() {
            return;
        }
        j.push_exception(text, clock.ms(t), history);
        j.failure = Some(text.to_string());
        j.crash = None;
        j.set_status(JobStatus::Failing, t, &clock);
        j.set_status(JobStatus::Failed, t, &clock);
        self.wake_waiting(t, self.cfg.resource_stabilization);
    }

    /// Create a job from `spec` (submitted now). Runs at once if slots allow, else waits in CREATED.
    pub(crate) fn submit(
        &mut self,
        spec: &JobSpec,
        name: &str,
        t: Instant,
        restore: Option<(String, SnapshotInfo)>,
    ) -> String {
        let ms = self.clock.ms(t);
        let id = random_id();
        let vertices = spec_vertices(spec, ms);
        let mut timestamps = BTreeMap::new();
        for s in JobStatus::ALL {
            timestamps.insert(s, 0);
        }
        let mut checkpoints = Checkpoints {
            next_id: 1,
            ..Checkpoints::default()
        };
        if let Some((path, info)) = restore {
            checkpoints.next_id = info.id + 1;
            checkpoints.restored_count = 1;
            checkpoints.restored = Some(Restored {
                id: info.id,
                restore_ms: ms,
                is_savepoint: info.is_savepoint,
                external_path: path,
            });
        }
        let last_restore_ms = checkpoints.restored.as_ref().map(|r| r.restore_ms);
        let job = Job {
            id: id.clone(),
            name: name.to_string(),
            status: JobStatus::Initializing,
            start_ms: ms,
            end_ms: None,
            last_modification_ms: ms,
            timestamps,
            status_since: t,
            vertices,
            slot_sharing_group: random_id(),
            restart_attempts: spec.restart_attempts.unwrap_or(self.cfg.restart_attempts),
            restart_delay: self.cfg.restart_delay,
            failures: 0,
            num_restarts: 0,
            num_rescales: 0,
            running_since: None,
            run_ms_before: 0,
            pending: None,
            next_checkpoint: None,
            checkpoints,
            failing_checkpoints: false,
            exceptions: VecDeque::new(),
            crash: None,
            failure: None,
            rescales: VecDeque::new(),
            alloc: Vec::new(),
            job_parallelism: spec
                .vertices
                .iter()
                .map(|v| i64::from(v.parallelism))
                .max()
                .unwrap_or(1),
            last_restore_ms,
            submitted: t,
            needs_restore: false,
            rescale_ctx: Some((ms, random_id(), "INITIAL_SCHEDULE")),
        };
        self.jobs.push(job);
        let i = self.jobs.len() - 1;
        let clock = self.clock;
        self.jobs[i].set_status(JobStatus::Initializing, t, &clock);
        self.jobs[i].set_status(JobStatus::Created, t, &clock);
        self.schedule(i, t);
        id
    }

    /// Try to run job `i` now: takes min(desired, free) slots; waits in CREATED when none are free.
    fn schedule(&mut self, i: usize, t: Instant) {
        let clock = self.clock;
        self.jobs[i].alloc.clear();
        let free = self.slots_free();
        let lower_needed = self.jobs[i]
            .vertices
            .iter()
            .map(|v| v.lower)
            .max()
            .unwrap_or(1);
        if free == 0 || free < lower_needed {
            let j = &mut self.jobs[i];
            if j.status != JobStatus::Created {
                j.set_status(JobStatus::Created, t, &clock);
            }
            j.pending = None;
            return;
        }
        let pre: Vec<u32> = self.jobs[i]
            .vertices
            .iter()
            .map(|v| v.parallelism)
            .collect();
        let pre_slots = self.jobs[i].slots_needed();
        for v in &mut self.jobs[i].vertices {
            v.parallelism = v.upper.min(free).min(v.max_parallelism).max(v.lower);
        }
        // first-fit allocation of the slot sharing group
        let mut need = self.jobs[i].slots_needed();
        let mut alloc = Vec::new();
        for tm in &self.tms {
            if need == 0 {
                break;
            }
            let take = self.free_on(tm).min(need);
            if take > 0 {
                alloc.push((tm.id.clone(), take));
                need -= take;
            }
        }
        let restore_from = self.restore_point(i);
        let interval = self.cfg.checkpoint_interval;
        let j = &mut self.jobs[i];
        j.alloc = alloc;
        let was_restarting = std::mem::take(&mut j.needs_restore);
        j.set_status(JobStatus::Running, t, &clock);
        j.next_checkpoint = Some(t + interval);
        j.pending = j
            .crash
            .as_ref()
            .map(|_| (t + CRASH_AFTER, Transition::Crash));
        let ms = clock.ms(t);
        if was_restarting {
            if let Some(rec) = restore_from {
                j.checkpoints.restored_count += 1;
                j.checkpoints.restored = Some(Restored {
                    id: rec.id,
                    restore_ms: ms,
                    is_savepoint: rec.is_savepoint,
                    external_path: rec.external_path.clone().unwrap_or_default(),
                });
                j.last_restore_ms = Some(ms);
            }
        }
        if let Some((start_ms, req_uuid, cause)) = j.rescale_ctx.take() {
            let post_slots = j.slots_needed();
            let vertices = j
                .vertices
                .iter()
                .zip(pre.iter())
                .map(|(v, p)| RescaleVertex {
                    id: v.id.clone(),
                    name: v.name.clone(),
                    desired: v.upper,
                    sufficient: v.lower,
                    pre: if cause == "INITIAL_SCHEDULE" { 0 } else { *p },
                    post: v.parallelism,
                })
                .collect();
            let states = if cause == "INITIAL_SCHEDULE" {
                vec![
                    ("WaitingForResources", start_ms, ms),
                    ("CreatingExecutionGraph", ms, ms),
                    ("Executing", ms, ms),
                ]
            } else {
                vec![
                    ("Executing", j.start_ms, start_ms),
                    ("Restarting", start_ms, ms),
                    ("CreatingExecutionGraph", ms, ms),
                    ("Executing", ms, ms),
                ]
            };
            j.rescales.push_front(RescaleRecord {
                uuid: random_id(),
                requirements_uuid: req_uuid,
                trigger_cause: cause,
                start_ms,
                end_ms: ms,
                vertices,
                pre_slots: if cause == "INITIAL_SCHEDULE" {
                    0
                } else {
                    pre_slots
                },
                post_slots,
                states,
            });
            while j.rescales.len() > 20 {
                j.rescales.pop_back();
            }
            // a rescale counts when the parallelism actually changed
            let changed = j
                .vertices
                .iter()
                .zip(pre.iter())
                .any(|(v, p)| v.parallelism != *p);
            if cause != "INITIAL_SCHEDULE" && changed {
                j.num_rescales += 1;
            }
        }
    }

    /// The latest retained completed checkpoint of job `i` (what a restart restores from).
    fn restore_point(&self, i: usize) -> Option<CheckpointRecord> {
        let j = &self.jobs[i];
        j.checkpoints.latest_completed.clone().or_else(|| {
            j.checkpoints.restored.as_ref().map(|r| CheckpointRecord {
                id: r.id,
                failed: false,
                is_savepoint: r.is_savepoint,
                format: None,
                ctype: "SAVEPOINT",
                trigger_ms: r.restore_ms,
                ack_ms: r.restore_ms,
                size: 0,
                duration: 0,
                num_subtasks: 0,
                acked: 0,
                external_path: Some(r.external_path.clone()),
                failure_ms: 0,
                failure_message: String::new(),
                per_vertex: Vec::new(),
            })
        })
    }

    /// New resource requirements for job `i` (already validated).
    pub(crate) fn set_requirements(&mut self, i: usize, req: &[(String, u32, u32)], t: Instant) {
        let ms = self.clock.ms(t);
        let delay = self
            .cfg
            .rescale_duration
            .saturating_sub(RESCALE_RESTART_GAP);
        let free = self.slots_free() + self.jobs[i].slots_needed();
        let j = &mut self.jobs[i];
        for (vid, lo, hi) in req {
            if let Some(v) = j.vertices.iter_mut().find(|v| &v.id == vid) {
                v.lower = *lo;
                v.upper = *hi;
            }
        }
        if j.status != JobStatus::Running {
            return;
        }
        let changes = j
            .vertices
            .iter()
            .any(|v| v.upper.min(free).min(v.max_parallelism).max(v.lower) != v.parallelism);
        if changes {
            j.pending = Some((
                t + delay,
                Transition::Rescale {
                    requested_ms: ms,
                    requirements_uuid: random_id(),
                    cause: "UPDATE_REQUIREMENT",
                },
            ));
        }
    }

    /// The next timed transition other than a metric fetch.
    fn next_event(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for j in &self.jobs {
            consider(j.pending.as_ref().map(|(t, _)| *t));
            consider(j.next_checkpoint);
        }
        for op in &self.ops {
            if op.result.is_none() {
                consider(Some(op.due));
            }
        }
        next
    }

    /// Replay every timed transition due up to `now`, in time order.
    pub(crate) fn advance(&mut self, now: Instant) {
        // bounded: one turn per event; events are spaced by the configured intervals
        for _ in 0..5_000_000u32 {
            let event = self.next_event().filter(|t| *t <= now);
            if self.next_fetch <= now && event.is_none_or(|e| self.next_fetch <= e) {
                // metric fetches with nothing happening in between would all be overwritten:
                // take only the last one before the next event (or now)
                let limit = event.unwrap_or(now);
                let every = self
                    .cfg
                    .metrics_fetch_interval
                    .max(Duration::from_millis(1));
                let skipped =
                    limit.saturating_duration_since(self.next_fetch).as_nanos() / every.as_nanos();
                let at = u32::try_from(skipped)
                    .ok()
                    .and_then(|n| every.checked_mul(n))
                    .and_then(|d| self.next_fetch.checked_add(d))
                    .unwrap_or(limit);
                self.fetch_metrics(at);
                self.next_fetch = at.checked_add(every).unwrap_or(at);
                continue;
            }
            match event {
                Some(t) => self.fire(t),
                None => return,
            }
        }
    }

    fn fire(&mut self, t: Instant) {
        // 1. job transitions
        for i in 0..self.jobs.len() {
            if matches!(self.jobs[i].pending, Some((at, _)) if at == t) {
                if let Some((_, tr)) = self.jobs[i].pending.take() {
                    self.transition(i, tr, t);
                }
                return;
            }
        }
        // 2. savepoint / stop operations
        if let Some(k) = self
            .ops
            .iter()
            .position(|o| o.result.is_none() && o.due == t)
        {
            self.complete_op(k, t);
            return;
        }
        // 3. checkpoints
        for i in 0..self.jobs.len() {
            if self.jobs[i].next_checkpoint == Some(t) {
                self.checkpoint(i, t);
                return;
            }
        }
        // 4. the metric fetcher
        if self.next_fetch == t {
            self.fetch_metrics(t);
            self.next_fetch = t + self
                .cfg
                .metrics_fetch_interval
                .max(Duration::from_millis(1));
        }
    }

    fn transition(&mut self, i: usize, tr: Transition, t: Instant) {
        let clock = self.clock;
        match tr {
            Transition::Schedule => self.schedule(i, t),
            Transition::Crash => {
                if let Some(text) = self.jobs[i].crash.clone() {
                    self.fail_over(i, &text, t);
                }
            }
            Transition::Rescale {
                requested_ms,
                requirements_uuid,
                cause,
            } => {
                let j = &mut self.jobs[i];
                j.num_restarts += 1;
                j.needs_restore = true;
                j.rescale_ctx = Some((requested_ms, requirements_uuid, cause));
                j.alloc.clear();
                j.set_status(JobStatus::Restarting, t, &clock);
                j.pending = Some((t + RESCALE_RESTART_GAP, Transition::Schedule));
            }
            Transition::Cancelled => {
                self.jobs[i].set_status(JobStatus::Canceled, t, &clock);
                self.wake_waiting(t, self.cfg.resource_stabilization);
            }
        }
    }

    fn checkpoint(&mut self, i: usize, t: Instant) {
        let clock = self.clock;
        let dir = flink_path(&self.cfg.checkpoint_dir);
        let interval = self.cfg.checkpoint_interval;
        let j = &mut self.jobs[i];
        j.next_checkpoint = Some(t + interval);
        let id = j.checkpoints.next_id;
        j.checkpoints.next_id += 1;
        let trigger_ms = clock.ms(t);
        let subtasks = j.total_subtasks();
        let per_vertex: Vec<(String, u64, u32)> = j
            .vertices
            .iter()
            .map(|v| (v.id.clone(), state_size(v), v.parallelism))
            .collect();
        let size: u64 = per_vertex.iter().map(|(_, s, _)| *s).sum();
        let duration = 18 + (id % 9);
        let rec = if j.failing_checkpoints {
            CheckpointRecord {
                id,
                failed: true,
                is_savepoint: false,
                format: None,
                ctype: "CHECKPOINT",
                trigger_ms,
                ack_ms: trigger_ms + 1,
                size: 0,
                duration: 11,
                num_subtasks: subtasks,
                acked: 1.min(subtasks),
                external_path: None,
                failure_ms: trigger_ms + 11,
                failure_message: "Trigger checkpoint failure.".to_string(),
                per_vertex,
            }
        } else {
            CheckpointRecord {
                id,
                failed: false,
                is_savepoint: false,
                format: None,
                ctype: "CHECKPOINT",
                trigger_ms,
                ack_ms: trigger_ms + duration as i64,
                size,
                duration,
                num_subtasks: subtasks,
                acked: subtasks,
                external_path: Some(format!("{dir}/{}/chk-{id}", j.id)),
                failure_ms: 0,
                failure_message: String::new(),
                per_vertex,
            }
        };
        j.checkpoints.push(rec);
    }

    fn complete_op(&mut self, k: usize, t: Instant) {
        let clock = self.clock;
        let op = self.ops[k].clone();
        let ms = clock.ms(t);
        let not_found = || {
            OpResult::Failure {
            class: "java.util.concurrent.CompletionException".to_string(),
            stack: format!(
                "java.util.concurrent.CompletionException: org.apache.flink.runtime.messages.FlinkJobNotFoundException: Could not find Flink job ({})\n\tat java.base/java.util.concurrent.CompletableFuture.encodeThrowable(CompletableFuture.java:332)\n\tat java.base/java.util.concurrent.CompletableFuture.completeThrowable(CompletableFuture.java:347)\nCaused by: org.apache.flink.runtime.messages.FlinkJobNotFoundException: Could not find Flink job ({})\n\tat org.apache.flink.runtime.dispatcher.Dispatcher.getJobMasterGateway(Dispatcher.java:2432)\n",
                op.job, op.job
            ),
        }
        };
        let Some(i) = self
            .jobs
            .iter()
            .position(|j| j.id == op.job && !j.status.is_terminal())
        else {
            self.ops[k].result = Some(not_found());
            return;
        };
        let dir = op.dir.clone().or_else(|| self.cfg.savepoint_dir.clone());
        let checkpoint_failure = |msg: &str| {
            OpResult::Failure {
            class: "java.util.concurrent.CompletionException".to_string(),
            stack: format!(
                "java.util.concurrent.CompletionException: org.apache.flink.runtime.checkpoint.CheckpointException: {msg}\n\tat java.base/java.util.concurrent.CompletableFuture.encodeRelay(CompletableFuture.java:368)\n\tat java.base/java.util.concurrent.CompletableFuture.completeRelay(CompletableFuture.java:377)\nCaused by: org.apache.flink.runtime.checkpoint.CheckpointException: {msg}\n\tat org.apache.flink.runtime.checkpoint.PendingCheckpoint.abort(PendingCheckpoint.java:561)\n\tat org.apache.flink.runtime.checkpoint.CheckpointCoordinator.abortPendingCheckpoint(CheckpointCoordinator.java:2269)\n"
            ),
        }
        };
        let Some(dir) = dir else {
            self.ops[k].result = Some(OpResult::Failure {
                class: "java.util.concurrent.CompletionException".to_string(),
                stack: "java.util.concurrent.CompletionException: java.lang.IllegalStateException: No savepoint directory configured. You can either specify a directory while cancelling via -s :targetDirectory or configure a cluster-wide default via key 'execution.checkpointing.savepoint-dir'.\n\tat java.base/java.util.concurrent.CompletableFuture.encodeThrowable(CompletableFuture.java:315)\n".to_string(),
            });
            return;
        };
        if self.jobs[i].status != JobStatus::Running {
            self.ops[k].result = Some(checkpoint_failure(
                "Checkpoint triggering task Source of job is not being executed at the moment. Aborting checkpoint. Failure reason: Not all required tasks are currently running.",
            ));
            return;
        }
        let bad_dir = self
            .failing_dirs
            .iter()
            .any(|p| dir.starts_with(p.as_str()));
        let j = &mut self.jobs[i];
        let id = j.checkpoints.next_id;
        j.checkpoints.next_id += 1;
        let trigger_ms = clock.ms(op.triggered);
        let subtasks = j.total_subtasks();
        let per_vertex: Vec<(String, u64, u32)> = j
            .vertices
            .iter()
            .map(|v| (v.id.clone(), state_size(v), v.parallelism))
            .collect();
        let size: u64 = per_vertex.iter().map(|(_, s, _)| *s).sum();
        let ctype = if matches!(op.kind, OpKind::Stop) {
            "SYNC_SAVEPOINT"
        } else {
            "SAVEPOINT"
        };
        if bad_dir {
            let msg = "An Exception occurred while triggering the checkpoint. IO-problem detected.";
            j.checkpoints.push(CheckpointRecord {
                id,
                failed: true,
                is_savepoint: true,
                format: Some(op.format),
                ctype,
                trigger_ms,
                ack_ms: trigger_ms + 1,
                size: 0,
                duration: (ms - trigger_ms).max(0) as u64,
                num_subtasks: subtasks,
                acked: 1.min(subtasks),
                external_path: None,
                failure_ms: ms,
                failure_message: msg.to_string(),
                per_vertex,
            });
            self.ops[k].result = Some(checkpoint_failure(msg));
            return;
        }
        let location = format!(
            "{}/savepoint-{}-{:012x}",
            flink_path(&dir),
            &j.id[..6.min(j.id.len())],
            rand::random::<u64>() & 0xffff_ffff_ffff
        );
        j.checkpoints.push(CheckpointRecord {
            id,
            failed: false,
            is_savepoint: true,
            format: Some(op.format),
            ctype,
            trigger_ms,
            ack_ms: ms,
            size,
            duration: (ms - trigger_ms).max(0) as u64,
            num_subtasks: subtasks,
            acked: subtasks,
            external_path: Some(location.clone()),
            failure_ms: 0,
            failure_message: String::new(),
            per_vertex,
        });
        let vertex_ids = j.vertices.iter().map(|v| v.id.clone()).collect();
        match op.kind {
            OpKind::Stop => {
                j.checkpoints.all_discarded = true;
                j.crash = None;
                j.set_status(JobStatus::Finished, t, &clock);
                self.wake_waiting(t, self.cfg.resource_stabilization);
            }
            OpKind::Savepoint { cancel_job: true } => {
                j.crash = None;
                j.set_status(JobStatus::Canceled, t, &clock);
                self.wake_waiting(t, self.cfg.resource_stabilization);
            }
            OpKind::Savepoint { cancel_job: false } => {}
        }
        self.external_snapshots.insert(
            location.clone(),
            SnapshotInfo {
                id,
                is_savepoint: true,
                vertex_ids,
            },
        );
        self.ops[k].result = Some(OpResult::Location(location));
    }

    /// Start a savepoint / stop-with-savepoint operation; returns the trigger id.
    pub(crate) fn trigger_op(
        &mut self,
        job: &str,
        trigger: Option<String>,
        kind: OpKind,
        dir: Option<String>,
        format: &'static str,
        t: Instant,
    ) -> String {
        let trigger = trigger.unwrap_or_else(random_id);
        if self
            .ops
            .iter()
            .any(|o| o.job == job && o.trigger == trigger)
        {
            return trigger;
        }
        self.ops.push(SavepointOp {
            job: job.to_string(),
            trigger: trigger.clone(),
            kind,
            dir,
            format,
            triggered: t,
            due: t + self.cfg.savepoint_duration,
            result: None,
        });
        trigger
    }

    /// Cancel job `i` (it must not be terminal).
    pub(crate) fn cancel(&mut self, i: usize, t: Instant) {
        let clock = self.clock;
        let j = &mut self.jobs[i];
        j.crash = None;
        j.set_status(JobStatus::Cancelling, t, &clock);
        j.pending = Some((t + CANCEL_TIME, Transition::Cancelled));
    }

    /// Find a restorable snapshot at `path` (a retained checkpoint or a savepoint).
    pub(crate) fn find_snapshot(&self, path: &str) -> Option<SnapshotInfo> {
        let norm = flink_path(path);
        if let Some(s) = self
            .external_snapshots
            .get(&norm)
            .or_else(|| self.external_snapshots.get(path))
        {
            return Some(s.clone());
        }
        for j in &self.jobs {
            for r in &j.checkpoints.records {
                if !r.failed
                    && r.external_path.as_deref() == Some(norm.as_str())
                    && !j.checkpoints.is_discarded(r, self.cfg.checkpoints_retained)
                {
                    return Some(SnapshotInfo {
                        id: r.id,
                        is_savepoint: r.is_savepoint,
                        vertex_ids: r.per_vertex.iter().map(|(v, _, _)| v.clone()).collect(),
                    });
                }
            }
        }
        None
    }

    fn fetch_metrics(&mut self, t: Instant) {
        let mut snaps = HashMap::new();
        for j in &self.jobs {
            if j.submitted >= t {
                continue;
            }
            snaps.insert(j.id.clone(), job_metrics(j, t, &self.clock));
        }
        self.metrics = snaps;
    }

    /// The job as `/jobs/<id>` and its siblings see it: a copy refreshed every `refresh_interval`.
    /// A fresh copy is taken only when the cached one is older than the interval (one clone per
    /// refresh; a read within the interval shares the cached copy).
    pub(crate) fn cached_job(&mut self, id: &str, now: Instant) -> Option<std::sync::Arc<Job>> {
        self.job(id)?;
        let interval = self.cfg.refresh_interval;
        if let Some((at, job)) = self.caches.get(id) {
            if now.saturating_duration_since(*at) < interval {
                return Some(std::sync::Arc::clone(job));
            }
        }
        let live = std::sync::Arc::new(self.job(id)?.clone());
        self.caches
            .insert(id.to_string(), (now, std::sync::Arc::clone(&live)));
        Some(live)
    }
}

/// State size of a vertex: grows with parallelism (keyed state is spread, plus per-subtask overhead).
fn state_size(v: &Vertex) -> u64 {
    if v.is_source() {
        265 * u64::from(v.parallelism)
    } else {
        2733 + 235 * u64::from(v.parallelism.saturating_sub(1))
    }
}

fn ms_since(t: Instant, since: Instant) -> u64 {
    t.saturating_duration_since(since).as_millis() as u64
}

/// Task-level metric names every subtask exposes (as in a Flink 2.3 capture).
pub(crate) const TASK_METRICS: &[&str] = &[
    "numBytesInRemotePerSecond",
    "accumulateBackPressuredTimeMs",
    "numBuffersInLocalPerSecond",
    "maxSoftBackPressureTimeMs",
    "mailboxLatencyMs_p75",
    "accumulateBusyTimeMs",
    "Shuffle.Netty.Input.Buffers.inputQueueSize",
    "numBytesIn",
    "checkpointStartDelayNanos",
    "softBackPressuredTimeMsPerSecond",
    "numRecordsInPerSecond",
    "numFiredTimersPerSecond",
    "checkpointAlignmentTime",
    "numBuffersInRemotePerSecond",
    "numRecordsOut",
    "mailboxLatencyMs_mean",
    "backPressuredTimeMsPerSecond",
    "Shuffle.Netty.Input.numBuffersInRemote",
    "numFiredTimers",
    "Shuffle.Netty.Input.numBytesInLocal",
    "accumulateIdleTimeMs",
    "mailboxLatencyMs_p999",
    "Shuffle.Netty.Output.Buffers.outputQueueLength",
    "idleTimeMsPerSecond",
    "Shuffle.Netty.Input.Buffers.inPoolUsage",
    "Shuffle.Netty.Input.Buffers.inputQueueLength",
    "mailboxLatencyMs_median",
    "numBytesOutPerSecond",
    "numBytesInRemote",
    "busyTimeMsPerSecond",
    "mailboxLatencyMs_p95",
    "Shuffle.Netty.Output.Buffers.outputQueueSize",
    "numRecordsOutPerSecond",
    "Shuffle.Netty.Input.numBuffersInLocalPerSecond",
    "Shuffle.Netty.Input.Buffers.inputFloatingBuffersUsage",
    "mailboxLatencyMs_p99",
    "mailboxLatencyMs_p98",
    "Shuffle.Netty.Input.Buffers.inputExclusiveBuffersUsage",
    "numBytesOut",
    "Shuffle.Netty.Input.numBuffersInLocal",
    "Shuffle.Netty.Input.numBuffersInRemotePerSecond",
    "maxHardBackPressureTimeMs",
    "mailboxLatencyMs_p90",
    "changelogBusyTimeMsPerSecond",
    "numBytesInLocal",
    "mailboxLatencyMs_stddev",
    "numBuffersOut",
    "numBytesInLocalPerSecond",
    "Shuffle.Netty.Input.numBytesInRemotePerSecond",
    "isBackPressured",
    "initializationTime",
    "mailboxQueueSize",
    "currentInputWatermark",
    "numBytesInPerSecond",
    "hardBackPressuredTimeMsPerSecond",
    "mailboxLatencyMs_max",
    "Shuffle.Netty.Input.numBytesInRemote",
    "mailboxMailsPerSecond",
    "Shuffle.Netty.Input.numBytesInLocalPerSecond",
    "Shuffle.Netty.Output.Buffers.outPoolUsage",
    "numRecordsIn",
    "numBuffersInLocal",
    "mailboxLatencyMs_min",
    "numBuffersInRemote",
    "numBuffersOutPerSecond",
];

/// Operator-level metric names per operator of a chain.
const OPERATOR_METRICS: &[&str] = &[
    "currentInputWatermark",
    "currentOutputWatermark",
    "numBytesIn",
    "numBytesInPerSecond",
    "numBytesOut",
    "numBytesOutPerSecond",
    "numRecordsIn",
    "numRecordsInPerSecond",
    "numRecordsOut",
    "numRecordsOutPerSecond",
];

fn fmt_f64(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Metric values of job `j` as of `t`.
pub(crate) fn job_metrics(j: &Job, t: Instant, clock: &Clock) -> JobMetricSnap {
    let running = j.status == JobStatus::Running;
    let in_state = |s: JobStatus| {
        if j.status == s {
            ms_since(t, j.status_since)
        } else {
            0
        }
    };
    let uptime = if running {
        j.running_since.map(|s| ms_since(t, s)).unwrap_or(0)
    } else {
        0
    };
    let cp = &j.checkpoints;
    let last = cp.latest_completed.as_ref();
    let last_any = cp.records.iter().rev().find(|r| !r.failed);
    let num = |v: u64| v.to_string();
    // uptime and downtime of a job that ended are -1 (no longer running)
    let gone_or = |v: u64| {
        if j.status.is_terminal() {
            "-1".to_string()
        } else {
            v.to_string()
        }
    };
    let mut job = vec![
        (
            "lastCheckpointSize".to_string(),
            num(last_any.map(|r| r.size).unwrap_or(0)),
        ),
        (
            "lastCheckpointExternalPath".to_string(),
            last_any
                .and_then(|r| r.external_path.clone())
                .unwrap_or_else(|| "n/a".to_string()),
        ),
        ("failingTime".to_string(), num(in_state(JobStatus::Failing))),
        ("numRescales".to_string(), num(j.num_rescales)),
        (
            "restartingTime".to_string(),
            num(in_state(JobStatus::Restarting)),
        ),
        ("numberOfInProgressCheckpoints".to_string(), "0".to_string()),
        (
            "lastCheckpointMetadataSize".to_string(),
            num(last_any.map(|_| 1180).unwrap_or(0)),
        ),
        (
            "numberOfCompletedCheckpoints".to_string(),
            num(cp.completed),
        ),
        ("lastCheckpointProcessedData".to_string(), "0".to_string()),
        ("numRestarts".to_string(), num(j.num_restarts)),
        ("deployingTime".to_string(), "0".to_string()),
        ("createdTime".to_string(), num(in_state(JobStatus::Created))),
        (
            "lastCheckpointDuration".to_string(),
            num(last_any.map(|r| r.duration).unwrap_or(0)),
        ),
        ("numberOfFailedCheckpoints".to_string(), num(cp.failed)),
        (
            "lastCheckpointCompletedTimestamp".to_string(),
            last_any
                .map(|r| r.ack_ms.to_string())
                .unwrap_or_else(|| "-1".to_string()),
        ),
        (
            "cancellingTime".to_string(),
            num(in_state(JobStatus::Cancelling)),
        ),
        (
            "totalNumberOfCheckpoints".to_string(),
            num(cp.completed + cp.failed),
        ),
        (
            "lastCompletedCheckpointId".to_string(),
            last_any
                .map(|r| r.id.to_string())
                .unwrap_or_else(|| "-1".to_string()),
        ),
        (
            "lastCheckpointRestoreTimestamp".to_string(),
            j.last_restore_ms
                .map(|m| m.to_string())
                .unwrap_or_else(|| "-1".to_string()),
        ),
        ("runningTime".to_string(), num(uptime)),
        ("uptime".to_string(), gone_or(uptime)),
        (
            "initializingTime".to_string(),
            num(in_state(JobStatus::Initializing)),
        ),
        ("allSubTasksRunningOrFinishedTime".to_string(), num(uptime)),
        (
            "downtime".to_string(),
            gone_or(
                if matches!(j.status, JobStatus::Restarting | JobStatus::Failing) {
                    ms_since(t, j.status_since)
                } else {
                    0
                },
            ),
        ),
        (
            "lastCheckpointFullSize".to_string(),
            num(last.map(|r| r.size).unwrap_or(0)),
        ),
        ("lastCheckpointPersistedData".to_string(), "0".to_string()),
    ];
    job.shrink_to_fit();
    let run_s = j.running_ms(t) as f64 / 1000.0;
    let mut vertices = HashMap::new();
    for v in &j.vertices {
        let p = v.parallelism.max(1);
        let rate = if running {
            v.records_per_second / f64::from(p)
        } else {
            0.0
        };
        let records = (v.records_per_second * run_s / f64::from(p)).floor();
        let bp = if running {
            v.backpressure.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let busy = if running {
            // a light job: about half a millisecond of work per record, capped at 5 %
            (rate * 0.5)
                .clamp(0.0, 50.0)
                .min((1000.0 - bp * 1000.0).max(0.0))
        } else {
            0.0
        };
        let idle = (1000.0 - bp * 1000.0 - busy).max(0.0);
        let mut subtasks = Vec::new();
        for s in 0..p {
            let mut m: Vec<(String, String)> = Vec::new();
            let source = v.is_source();
            for name in TASK_METRICS {
                let val = match *name {
                    "numRecordsIn" => {
                        if source {
                            "0".to_string()
                        } else {
                            format!("{records}")
                        }
                    }
                    "numRecordsOut" => {
                        if source {
                            format!("{records}")
                        } else {
                            "0".to_string()
                        }
                    }
                    "numRecordsInPerSecond" => {
                        if source {
                            "0.0".to_string()
                        } else {
                            fmt_f64(rate)
                        }
                    }
                    "numRecordsOutPerSecond" => {
                        if source {
                            fmt_f64(rate)
                        } else {
                            "0.0".to_string()
                        }
                    }
                    "numBytesIn" => {
                        if source {
                            "0".to_string()
                        } else {
                            format!("{}", records * 21.0)
                        }
                    }
                    "numBytesOut" => {
                        if source {
                            format!("{}", records * 20.0)
                        } else {
                            "0".to_string()
                        }
                    }
                    "busyTimeMsPerSecond" => fmt_f64(busy),
                    "idleTimeMsPerSecond" => format!("{}", idle.round() as i64),
                    "backPressuredTimeMsPerSecond" | "hardBackPressuredTimeMsPerSecond" => {
                        format!("{}", (bp * 1000.0).round() as i64)
                    }
                    "isBackPressured" => (bp > 0.5).to_string(),
                    "currentInputWatermark" => i64::MIN.to_string(),
                    "accumulateIdleTimeMs" => format!("{}", (idle * run_s).round() as i64),
                    "accumulateBusyTimeMs" => format!("{}", (busy * run_s).round() as i64),
                    "accumulateBackPressuredTimeMs" => {
                        format!("{}", (bp * 1000.0 * run_s).round() as i64)
                    }
                    "initializationTime" => "238".to_string(),
                    _ => "0".to_string(),
                };
                m.push((format!("{s}.{name}"), val));
            }
            for op in v.operators() {
                for name in OPERATOR_METRICS {
                    let val = match *name {
                        "numRecordsIn" => format!("{records}"),
                        "numRecordsOut" => format!("{records}"),
                        "numRecordsInPerSecond" | "numRecordsOutPerSecond" => fmt_f64(rate),
                        "currentInputWatermark" | "currentOutputWatermark" => i64::MIN.to_string(),
                        _ => "0".to_string(),
                    };
                    m.push((format!("{s}.{op}.{name}"), val));
                }
            }
            if v.is_source() {
                // the source operator (first of the chain) reports its backlog, split over subtasks
                if let Some(op) = v.operators().first() {
                    let share = v.pending_records / u64::from(p)
                        + u64::from(u64::from(s) < v.pending_records % u64::from(p));
                    m.push((format!("{s}.{op}.pendingRecords"), share.to_string()));
                }
            }
            subtasks.push(m);
        }
        vertices.insert(v.id.clone(), subtasks);
    }
    let _ = clock;
    JobMetricSnap { job, vertices }
}
