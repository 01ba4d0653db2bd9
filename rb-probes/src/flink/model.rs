//! The JSON shapes of Flink 2.3's REST API that the probes read, as typed values.
//!
//! Every shape is decoded with [`crate::transport::parse_json`], so a body that is not what Flink
//! sends gives an [`rb_core::ErrorKind::BadResponse`] naming the JSON pointer, line and column. Fields
//! a probe does not need are ignored; fields Flink omits in some states are optional. Numbers that
//! Flink sends as strings (metric values, `"NaN"` busy times) are read by [`lenient_f64`].

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// `GET /overview`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Overview {
    /// Registered TaskManagers.
    pub taskmanagers: u64,
    /// Slots of all TaskManagers.
    #[serde(rename = "slots-total")]
    pub slots_total: u64,
    /// Free slots.
    #[serde(rename = "slots-available")]
    pub slots_available: u64,
    /// Jobs not yet in a terminal state.
    #[serde(rename = "jobs-running")]
    pub jobs_running: u64,
    /// Jobs that finished.
    #[serde(rename = "jobs-finished")]
    pub jobs_finished: u64,
    /// Jobs that were cancelled.
    #[serde(rename = "jobs-cancelled")]
    pub jobs_cancelled: u64,
    /// Jobs that failed for good.
    #[serde(rename = "jobs-failed")]
    pub jobs_failed: u64,
    /// The Flink version.
    #[serde(rename = "flink-version", default)]
    pub flink_version: Option<String>,
}

/// `GET /jobs/overview`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct JobsOverview {
    /// Every job the dispatcher knows (running and recently ended).
    pub jobs: Vec<JobSummary>,
}

/// One job of `/jobs/overview`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct JobSummary {
    /// Job id (32 hex digits).
    pub jid: String,
    /// Job name.
    pub name: String,
    /// State as the dispatcher reports it.
    pub state: String,
    /// Submission time (epoch ms).
    #[serde(rename = "start-time")]
    pub start_time: i64,
}

/// `GET /jobs/<id>/status`: the live state.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct JobStatusBody {
    /// `RUNNING`, `RESTARTING`, `CREATED`, `FAILED`, …
    pub status: String,
}

/// `GET /jobs/<id>` (cached by the JobManager for `refresh-interval`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct JobDetail {
    /// Job id.
    pub jid: String,
    /// Job name.
    pub name: String,
    /// State as of the cached execution graph (can lag `/status`).
    pub state: String,
    /// The server's clock when it answered (epoch ms).
    pub now: i64,
    /// The job's vertices.
    pub vertices: Vec<VertexDetail>,
    /// The job graph (to tell sources: nodes without inputs).
    #[serde(default)]
    pub plan: Option<Plan>,
}

/// One vertex of the job detail.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VertexDetail {
    /// Vertex id.
    pub id: String,
    /// Display name (operators joined by ` -> `).
    pub name: String,
    /// Current parallelism.
    pub parallelism: u32,
    /// Max parallelism (`-1` when unknown).
    #[serde(rename = "maxParallelism", default = "minus_one")]
    pub max_parallelism: i64,
    /// Vertex status.
    #[serde(default)]
    pub status: Option<String>,
}

fn minus_one() -> i64 {
    -1
}

/// The job graph of the job detail.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Plan {
    /// Nodes (vertices).
    pub nodes: Vec<PlanNode>,
}

/// One node of the plan.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PlanNode {
    /// Vertex id.
    pub id: String,
    /// Upstream vertices; none for a source.
    #[serde(default)]
    pub inputs: Vec<PlanInput>,
}

/// An edge into a plan node.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PlanInput {
    /// Upstream vertex id.
    pub id: String,
}

/// `GET /jobs/<id>/checkpoints`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Checkpoints {
    /// Counters.
    pub counts: CheckpointCounts,
    /// The latest checkpoint of each kind.
    pub latest: LatestCheckpoints,
}

/// Checkpoint counters.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CheckpointCounts {
    /// Restores.
    pub restored: u64,
    /// All checkpoints triggered.
    pub total: u64,
    /// Running now.
    pub in_progress: u64,
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
}

/// `latest` of the checkpoints view.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LatestCheckpoints {
    /// Latest completed checkpoint.
    #[serde(default)]
    pub completed: Option<CheckpointStat>,
    /// Latest savepoint.
    #[serde(default)]
    pub savepoint: Option<CheckpointStat>,
    /// Latest failed checkpoint.
    #[serde(default)]
    pub failed: Option<CheckpointStat>,
    /// Latest restore.
    #[serde(default)]
    pub restored: Option<RestoredCheckpoint>,
}

/// One checkpoint's statistics.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CheckpointStat {
    /// Checkpoint id.
    pub id: u64,
    /// `COMPLETED`, `FAILED`, `IN_PROGRESS`.
    pub status: String,
    /// Whether it is a savepoint.
    pub is_savepoint: bool,
    /// When it was triggered (epoch ms).
    pub trigger_timestamp: i64,
    /// Latest acknowledgement (epoch ms): completion time for a completed one.
    pub latest_ack_timestamp: i64,
    /// Where it was written (completed ones).
    #[serde(default)]
    pub external_path: Option<String>,
    /// When it failed (failed ones).
    #[serde(default)]
    pub failure_timestamp: Option<i64>,
    /// Why it failed (failed ones).
    #[serde(default)]
    pub failure_message: Option<String>,
}

/// The latest restore.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RestoredCheckpoint {
    /// Checkpoint id restored from.
    pub id: u64,
    /// When (epoch ms).
    pub restore_timestamp: i64,
    /// Whether it was a savepoint.
    pub is_savepoint: bool,
    /// Its path.
    #[serde(default)]
    pub external_path: Option<String>,
}

/// `GET /jobs/<id>/exceptions`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Exceptions {
    /// The exception history.
    #[serde(rename = "exceptionHistory")]
    pub history: ExceptionHistory,
}

/// The exception history, newest first.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExceptionHistory {
    /// Entries, newest first.
    pub entries: Vec<ExceptionEntry>,
    /// Whether `maxExceptions` cut the list.
    #[serde(default)]
    pub truncated: bool,
}

/// One failure of the job.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExceptionEntry {
    /// Java class of the exception.
    #[serde(rename = "exceptionName")]
    pub exception_name: String,
    /// The stack trace (first line `<class>: <message>`, then frames and `Caused by:` sections).
    pub stacktrace: String,
    /// When it happened (epoch ms).
    pub timestamp: i64,
    /// The failing task (the default scheduler sends it; the adaptive scheduler does not).
    #[serde(rename = "taskName", default)]
    pub task_name: Option<String>,
    /// Labels a failure enricher attached.
    #[serde(rename = "failureLabels", default)]
    pub failure_labels: BTreeMap<String, String>,
}

/// One value of a `…/metrics?get=…` answer (values are strings).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MetricValue {
    /// Metric id.
    pub id: String,
    /// The value as sent (a string for numeric metrics too; absent when only names were asked).
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

/// One value of a `…/metrics?get=…&agg=…` answer (numbers; `NaN` may come as a string).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AggregatedMetric {
    /// Metric id.
    pub id: String,
    /// Minimum over the components.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub min: Option<f64>,
    /// Maximum.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub max: Option<f64>,
    /// Average.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub avg: Option<f64>,
    /// Sum.
    #[serde(default, deserialize_with = "lenient_f64")]
    pub sum: Option<f64>,
}

/// `GET /jobs/<id>/vertices/<vid>/backpressure`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Backpressure {
    /// `ok` when sampled, `deprecated` when the metric store has nothing for the vertex yet.
    pub status: String,
    /// `ok`, `low` or `high`.
    #[serde(rename = "backpressureLevel", default)]
    pub level: Option<String>,
    /// The same, under its older name (Flink sends both).
    #[serde(rename = "backpressure-level", default)]
    pub level_legacy: Option<String>,
    /// Per subtask.
    #[serde(default)]
    pub subtasks: Vec<BackpressureSubtask>,
}

/// One subtask of the back-pressure view.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BackpressureSubtask {
    /// Subtask index.
    pub subtask: u32,
    /// Back-pressured share of time (0–1).
    #[serde(deserialize_with = "lenient_f64")]
    pub ratio: Option<f64>,
    /// Busy share of time (0–1).
    #[serde(rename = "busyRatio", default, deserialize_with = "lenient_f64")]
    pub busy_ratio: Option<f64>,
}

/// A number that Flink may send as a JSON number, a numeric string, `"NaN"` or `null`; `None` for
/// anything not finite.
pub fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(f64),
        Str(String),
    }
    let raw: Option<Raw> = Option::deserialize(d)?;
    Ok(match raw {
        None => None,
        Some(Raw::Num(n)) => Some(n),
        Some(Raw::Str(s)) => match s.trim().parse::<f64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return Err(serde::de::Error::custom(format!(
                    "expected a number, found the string {s:?}"
                )))
            }
        },
    }
    .filter(|n| n.is_finite()))
}

/// The value of a string metric as a number (`"12"` → 12, `"NaN"` → `None`).
pub fn metric_number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|n| n.is_finite())
}
