//! JSON bodies, with the field names and JSON types of Flink 2.3's REST API.

use serde_json::{json, Map, Value};

use super::model::{
    CheckpointRecord, Cluster, Job, JobStatus, OpResult, RescaleRecord, SavepointOp, TaskManager,
    Vertex, CHECKPOINT_HISTORY,
};
use super::FLINK_VERSION;

/// Commit id reported next to the version.
pub(crate) const FLINK_COMMIT: &str = "c0f8d1a";

const TASK_STATES: [&str; 10] = [
    "DEPLOYING",
    "RECONCILING",
    "INITIALIZING",
    "FINISHED",
    "CREATED",
    "SCHEDULED",
    "RUNNING",
    "FAILED",
    "CANCELED",
    "CANCELING",
];

pub(crate) fn config(c: &Cluster) -> Value {
    json!({
        "refresh-interval": c.cfg.refresh_interval.as_millis() as u64,
        "timezone-name": "Coordinated Universal Time",
        "timezone-offset": 0,
        "flink-version": FLINK_VERSION,
        "flink-revision": format!("{FLINK_COMMIT} @ 2026-06-14T16:29:03+02:00"),
        "features": {"web-submit": true, "web-cancel": true, "web-rescale": true, "web-history": false}
    })
}

pub(crate) fn overview(c: &Cluster) -> Value {
    let count = |s: JobStatus| c.jobs.iter().filter(|j| j.status == s).count();
    json!({
        "taskmanagers": c.tms.len(),
        "slots-total": c.slots_total(),
        "slots-available": c.slots_free(),
        "jobs-running": c.jobs.iter().filter(|j| !j.status.is_terminal()).count(),
        "jobs-finished": count(JobStatus::Finished),
        "jobs-cancelled": count(JobStatus::Canceled),
        "jobs-failed": count(JobStatus::Failed),
        "flink-version": FLINK_VERSION,
        "flink-commit": FLINK_COMMIT
    })
}

pub(crate) fn jobs(c: &Cluster) -> Value {
    let list: Vec<Value> = c
        .jobs
        .iter()
        .rev()
        .map(|j| json!({"id": j.id, "status": j.status.name()}))
        .collect();
    json!({ "jobs": list })
}

fn duration(j: &Job, now_ms: i64) -> i64 {
    j.end_ms.unwrap_or(now_ms) - j.start_ms
}

/// One job of `/jobs/overview` (also used by `/applications/<id>`).
pub(crate) fn job_overview(j: &Job, now_ms: i64) -> Value {
    let state = j.status.task_state();
    let total = j.total_subtasks();
    let n = |s: &str| if s == state { total } else { 0 };
    json!({
        "jid": j.id,
        "name": j.name,
        "jobType": "STREAMING",
        "schedulerType": "Adaptive",
        "start-time": j.start_ms,
        "end-time": j.end_ms.unwrap_or(-1),
        "duration": duration(j, now_ms),
        "state": j.status.name(),
        "last-modification": j.last_modification_ms,
        "tasks": {
            "running": n("RUNNING"), "canceling": n("CANCELING"), "canceled": n("CANCELED"), "total": total,
            "created": n("CREATED"), "scheduled": 0, "deploying": 0, "reconciling": 0,
            "finished": n("FINISHED"), "initializing": 0, "failed": n("FAILED")
        },
        "pending-operators": 0
    })
}

pub(crate) fn jobs_overview(c: &Cluster, now_ms: i64) -> Value {
    let list: Vec<Value> = c
        .jobs
        .iter()
        .rev()
        .map(|j| job_overview(j, now_ms))
        .collect();
    json!({ "jobs": list })
}

fn task_counts(state: &str, n: u32) -> Value {
    let mut m = Map::new();
    for s in TASK_STATES {
        m.insert(s.to_string(), json!(if s == state { n } else { 0 }));
    }
    Value::Object(m)
}

/// The io metrics of a vertex (or one of its subtasks when `share` < 1).
fn io_metrics(j: &Job, v: &Vertex, now: tokio::time::Instant, now_ms: i64, share: f64) -> Value {
    let run_s = j.running_ms(now) as f64 / 1000.0;
    let records = (v.records_per_second * run_s * share).floor() as u64;
    let complete = j.running_ms(now) >= 10_000 || j.status.is_terminal();
    let (rb, rr, wb, wr) = if v.is_source() {
        (0, 0, records * 20, records)
    } else {
        (records * 21, records, 0, 0)
    };
    let idle = (run_s * 1000.0 * (1.0 - v.backpressure.clamp(0.0, 1.0)) * 0.98).round() as u64;
    // right after a (re)start a downstream vertex has reported no busy time yet: Flink says "NaN"
    let fresh = j.status == JobStatus::Running && now_ms - v.start_ms < 1000 && !v.is_source();
    let busy = if fresh {
        json!("NaN")
    } else {
        json!((run_s * 15.0).round())
    };
    json!({
        "read-bytes": rb, "read-bytes-complete": complete,
        "write-bytes": wb, "write-bytes-complete": complete,
        "read-records": rr, "read-records-complete": complete,
        "write-records": wr, "write-records-complete": complete,
        "accumulated-backpressured-time": (run_s * 1000.0 * v.backpressure.clamp(0.0, 1.0)).round() as u64,
        "accumulated-idle-time": idle,
        "accumulated-busy-time": busy
    })
}

pub(crate) fn plan(j: &Job) -> Value {
    plan_parts(&j.id, &j.name, &j.vertices)
}

/// A job graph plan for job `id` named `name` over `vertices`.
pub(crate) fn plan_parts(id: &str, name: &str, vertices: &[Vertex]) -> Value {
    let nodes: Vec<Value> = vertices
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let desc = v.name.split(" -> ").enumerate().map(|(k, op)| {
                if k == 0 { format!("{op}<br/>") } else { format!("+- {op}<br/>") }
            });
            let mut node = json!({
                "id": v.id, "operator": "", "parallelism": v.parallelism, "operator_strategy": "",
                "description": desc.collect::<String>(), "optimizer_properties": {}
            });
            if i > 0 {
                if let Some(obj) = node.as_object_mut() {
                    obj.insert(
                        "inputs".into(),
                        json!([{"id": vertices[i - 1].id, "num": 0, "exchange": "pipelined_bounded", "ship_strategy": if i == 1 { "HASH" } else { "FORWARD" }}]),
                    );
                }
            }
            node
        })
        .collect();
    json!({"jid": id, "name": name, "type": "STREAMING", "nodes": nodes})
}

pub(crate) fn job_detail(j: &Job, now: tokio::time::Instant, now_ms: i64) -> Value {
    let state = j.status.task_state();
    let mut timestamps = Map::new();
    for (s, ms) in &j.timestamps {
        timestamps.insert(s.name().to_string(), json!(ms));
    }
    let vertices: Vec<Value> = j
        .vertices
        .iter()
        .map(|v| {
            json!({
                "id": v.id, "slotSharingGroupId": j.slot_sharing_group, "name": v.name,
                "maxParallelism": v.max_parallelism, "parallelism": v.parallelism, "status": state,
                "start-time": v.start_ms, "end-time": v.end_ms.unwrap_or(-1),
                "duration": v.end_ms.unwrap_or(now_ms) - v.start_ms,
                "tasks": task_counts(state, v.parallelism),
                "metrics": io_metrics(j, v, now, now_ms, 1.0)
            })
        })
        .collect();
    json!({
        "jid": j.id, "application-id": j.id, "name": j.name, "isStoppable": false,
        "state": j.status.name(), "job-type": "STREAMING", "schedulerType": "Adaptive",
        "start-time": j.start_ms, "end-time": j.end_ms.unwrap_or(-1), "duration": duration(j, now_ms),
        "maxParallelism": -1, "now": now_ms,
        "timestamps": timestamps,
        "vertices": vertices,
        "status-counts": task_counts(state, j.vertices.len() as u32),
        "plan": plan(j),
        "pending-operators": 0
    })
}

pub(crate) fn job_status(j: &Job) -> Value {
    json!({"status": j.status.name()})
}

fn stats(samples: &[u64]) -> Value {
    if samples.is_empty() {
        return json!({"min": 0, "max": 0, "avg": 0, "p50": "NaN", "p90": "NaN", "p95": "NaN", "p99": "NaN", "p999": "NaN"});
    }
    let mut s = samples.to_vec();
    s.sort_unstable();
    let min = s[0];
    let max = s[s.len() - 1];
    let avg = s.iter().sum::<u64>() / s.len() as u64;
    let q = |p: f64| -> f64 {
        // Flink's Percentile (R-6 style estimation): position p*(n+1)
        let n = s.len() as f64;
        let pos = p * (n + 1.0);
        if pos < 1.0 {
            s[0] as f64
        } else if pos >= n {
            s[s.len() - 1] as f64
        } else {
            let lo = pos.floor();
            let d = pos - lo;
            let a = s[lo as usize - 1] as f64;
            let b = s[lo as usize] as f64;
            a + d * (b - a)
        }
    };
    json!({"min": min, "max": max, "avg": avg, "p50": q(0.5), "p90": q(0.9), "p95": q(0.95), "p99": q(0.99), "p999": q(0.999)})
}

pub(crate) fn checkpoint_record(
    j: &Job,
    r: &CheckpointRecord,
    retained: usize,
    with_tasks: bool,
) -> Value {
    let tasks = if with_tasks {
        let mut m = Map::new();
        for (vid, size, p) in &r.per_vertex {
            m.insert(
                vid.clone(),
                json!({
                    "id": r.id, "status": if r.failed { "FAILED" } else { "COMPLETED" },
                    "latest_ack_timestamp": r.ack_ms, "checkpointed_size": if r.failed { 0 } else { *size },
                    "state_size": if r.failed { 0 } else { *size }, "end_to_end_duration": r.duration,
                    "alignment_buffered": 0, "processed_data": 0, "persisted_data": 0,
                    "num_subtasks": p, "num_acknowledged_subtasks": if r.failed { 0 } else { *p }
                }),
            );
        }
        Value::Object(m)
    } else {
        json!({})
    };
    let mut v = json!({
        "className": if r.failed { "failed" } else { "completed" },
        "id": r.id,
        "status": if r.failed { "FAILED" } else { "COMPLETED" },
        "is_savepoint": r.is_savepoint,
        "savepointFormat": r.format,
        "trigger_timestamp": r.trigger_ms,
        "latest_ack_timestamp": r.ack_ms,
        "checkpointed_size": r.size,
        "state_size": r.size,
        "end_to_end_duration": r.duration,
        "alignment_buffered": 0,
        "processed_data": 0,
        "persisted_data": 0,
        "num_subtasks": r.num_subtasks,
        "num_acknowledged_subtasks": r.acked,
        "checkpoint_type": r.ctype,
        "tasks": tasks
    });
    if let Some(obj) = v.as_object_mut() {
        if r.failed {
            obj.insert("failure_timestamp".into(), json!(r.failure_ms));
            obj.insert("failure_message".into(), json!(r.failure_message));
        } else {
            obj.insert("external_path".into(), json!(r.external_path));
            obj.insert(
                "discarded".into(),
                json!(j.checkpoints.is_discarded(r, retained)),
            );
        }
    }
    v
}

pub(crate) fn checkpoints(j: &Job, retained: usize) -> Value {
    let cp = &j.checkpoints;
    let sizes: Vec<u64> = cp.sizes.iter().copied().collect();
    let durations: Vec<u64> = cp.durations.iter().copied().collect();
    let zeros: Vec<u64> = vec![0; sizes.len()];
    let history: Vec<Value> = cp
        .records
        .iter()
        .rev()
        .take(CHECKPOINT_HISTORY)
        .map(|r| checkpoint_record(j, r, retained, false))
        .collect();
    let opt = |r: &Option<CheckpointRecord>| match r {
        Some(r) => checkpoint_record(j, r, retained, false),
        None => Value::Null,
    };
    let restored = match &cp.restored {
        Some(r) => {
            json!({"id": r.id, "restore_timestamp": r.restore_ms, "is_savepoint": r.is_savepoint, "external_path": r.external_path})
        }
        None => Value::Null,
    };
    json!({
        "counts": {
            "restored": cp.restored_count, "total": cp.completed + cp.failed, "in_progress": 0,
            "completed": cp.completed, "failed": cp.failed
        },
        "summary": {
            "checkpointed_size": stats(&sizes), "state_size": stats(&sizes),
            "end_to_end_duration": stats(&durations), "alignment_buffered": stats(&zeros),
            "processed_data": stats(&zeros), "persisted_data": stats(&zeros)
        },
        "latest": {
            "completed": opt(&cp.latest_completed),
            "savepoint": opt(&cp.latest_savepoint),
            "failed": opt(&cp.latest_failed),
            "restored": restored
        },
        "history": history
    })
}

pub(crate) fn checkpoints_config(c: &Cluster) -> Value {
    json!({
        "mode": "exactly_once",
        "interval": c.cfg.checkpoint_interval.as_millis() as u64,
        "timeout": 600000, "min_pause": 0, "max_concurrent": 1,
        "externalization": {"enabled": false, "delete_on_cancellation": true},
        "state_backend": "HashMapStateBackend", "checkpoint_storage": "FileSystemCheckpointStorage",
        "unaligned_checkpoints": false, "tolerable_failed_checkpoints": 0, "aligned_checkpoint_timeout": 0,
        "checkpoints_after_tasks_finish": true, "state_changelog_enabled": false,
        "changelog_periodic_materialization_interval": 600000, "changelog_storage": "memory"
    })
}

pub(crate) fn exceptions(j: &Job, max: Option<usize>) -> Value {
    let max = max.unwrap_or(usize::MAX);
    let entries: Vec<Value> = j
        .exceptions
        .iter()
        .take(max)
        .map(|e| {
            json!({
                "exceptionName": e.name, "stacktrace": e.stacktrace, "timestamp": e.timestamp,
                "failureLabels": {}, "concurrentExceptions": []
            })
        })
        .collect();
    json!({"exceptionHistory": {"entries": entries, "truncated": j.exceptions.len() > max}})
}

pub(crate) fn resource_requirements(j: &Job) -> Value {
    let mut m = Map::new();
    for v in &j.vertices {
        m.insert(
            v.id.clone(),
            json!({"parallelism": {"lowerBound": v.lower, "upperBound": v.upper}}),
        );
    }
    Value::Object(m)
}

pub(crate) fn job_config(j: &Job) -> Value {
    json!({
        "jid": j.id, "name": j.name,
        "execution-config": {
            "restart-strategy": j.restart_strategy(), "job-parallelism": j.job_parallelism,
            "object-reuse-mode": false, "user-config": {}
        }
    })
}

pub(crate) fn rescales_config(c: &Cluster) -> Value {
    json!({
        "rescaleHistoryMax": 20, "schedulerExecutionMode": null,
        "submissionResourceWaitTimeoutInMillis": 300000,
        "submissionResourceStabilizationTimeoutInMillis": 10000,
        "slotIdleTimeoutInMillis": 50000,
        "executingCooldownTimeoutInMillis": 5000,
        "executingResourceStabilizationTimeoutInMillis": c.cfg.resource_stabilization.as_millis() as u64,
        "maximumDelayForTriggeringRescaleInMillis": 6000,
        "rescaleOnFailedCheckpointCount": 2
    })
}

pub(crate) fn rescale(r: &RescaleRecord, details: bool) -> Value {
    let (vertices, slots, states) = if details {
        let mut vm = Map::new();
        for v in &r.vertices {
            vm.insert(
                v.id.clone(),
                json!({
                    "jobVertexId": v.id, "jobVertexName": v.name,
                    "slotSharingGroupId": r.requirements_uuid, "slotSharingGroupName": "default",
                    "desiredParallelism": v.desired, "sufficientParallelism": v.sufficient,
                    "preRescaleParallelism": v.pre, "postRescaleParallelism": v.post
                }),
            );
        }
        let mut sm = Map::new();
        sm.insert(
            r.requirements_uuid.clone(),
            json!({
                "slotSharingGroupId": r.requirements_uuid, "slotSharingGroupName": "default",
                "requestResourceProfile": {"cpuCores": -1.0, "taskHeapMemory": -1, "taskOffHeapMemory": -1, "managedMemory": -1, "networkMemory": -1, "extendedResources": {}},
                "desiredSlots": r.vertices.iter().map(|v| v.desired).max().unwrap_or(0),
                "minimalRequiredSlots": r.vertices.iter().map(|v| v.sufficient).max().unwrap_or(0),
                "preRescaleSlots": r.pre_slots, "postRescaleSlots": r.post_slots,
                "acquiredResourceProfile": {"cpuCores": 1.0, "taskHeapMemory": 71, "taskOffHeapMemory": 0, "managedMemory": 108, "networkMemory": 27, "extendedResources": {}}
            }),
        );
        let st: Vec<Value> = r
            .states
            .iter()
            .map(|(s, enter, leave)| {
                json!({"state": s, "enterTimestampInMillis": enter, "leaveTimestampInMillis": leave, "durationInMillis": leave - enter, "stringifiedException": null})
            })
            .collect();
        (Value::Object(vm), Value::Object(sm), Value::Array(st))
    } else {
        (json!({}), json!({}), json!([]))
    };
    json!({
        "rescaleUuid": r.uuid, "resourceRequirementsUuid": r.requirements_uuid, "rescaleAttemptId": 1,
        "vertices": vertices, "slots": slots, "schedulerStates": states,
        "startTimestampInMillis": r.start_ms, "endTimestampInMillis": r.end_ms,
        "terminalState": "COMPLETED", "triggerCause": r.trigger_cause, "terminatedReason": "SUCCEEDED"
    })
}

fn rescale_counts(j: &Job) -> Value {
    json!({"ignored": 0, "inProgress": 0, "completed": j.rescales.len(), "failed": 0})
}

pub(crate) fn rescales_overview(j: &Job) -> Value {
    let latest = j
        .rescales
        .front()
        .map(|r| rescale(r, false))
        .unwrap_or(Value::Null);
    json!({"rescalesCounts": rescale_counts(j), "latest": {"completed": latest, "failed": null, "ignored": null}})
}

pub(crate) fn rescales_history(j: &Job) -> Value {
    Value::Array(j.rescales.iter().map(|r| rescale(r, false)).collect())
}

pub(crate) fn rescales_summary(j: &Job) -> Value {
    let d: Vec<u64> = j
        .rescales
        .iter()
        .map(|r| (r.end_ms - r.start_ms).max(0) as u64)
        .collect();
    json!({
        "rescalesCounts": rescale_counts(j),
        "rescalesDurationStatsInMillis": stats(&d),
        "completedRescalesDurationStatsInMillis": stats(&d),
        "ignoredRescalesDurationStatsInMillis": stats(&[]),
        "failedRescalesDurationStatsInMillis": stats(&[])
    })
}

fn agg_stats(value: u64) -> Value {
    json!({"p25": value, "min": value, "avg": value, "median": value, "max": value, "sum": value, "p95": value, "p75": value})
}

fn status_duration(j: &Job, v: &Vertex, now_ms: i64) -> Value {
    let running = (v.end_ms.unwrap_or(now_ms) - v.start_ms).max(0);
    json!({"DEPLOYING": 159, "INITIALIZING": 238, "CREATED": 30, "SCHEDULED": 59, (j.status.task_state()): running})
}

fn aggregated(j: &Job, v: &Vertex, now: tokio::time::Instant, now_ms: i64) -> Value {
    let io = io_metrics(j, v, now, now_ms, 1.0);
    let mut metrics = Map::new();
    for k in [
        "write-records",
        "accumulated-backpressured-time",
        "accumulated-idle-time",
        "write-bytes",
        "read-bytes",
        "read-records",
        "accumulated-busy-time",
    ] {
        let val = io.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0) as u64;
        metrics.insert(k.to_string(), agg_stats(val));
    }
    let mut sd = Map::new();
    if let Some(obj) = status_duration(j, v, now_ms).as_object() {
        for (k, val) in obj {
            sd.insert(k.clone(), agg_stats(val.as_u64().unwrap_or(0)));
        }
    }
    json!({"metrics": metrics, "status-duration": sd})
}

fn tm_for_subtask(j: &Job, s: u32) -> &str {
    let mut acc = 0u32;
    for (tm, n) in &j.alloc {
        acc += n;
        if s < acc {
            return tm;
        }
    }
    j.alloc
        .first()
        .map(|(t, _)| t.as_str())
        .unwrap_or("(unassigned)")
}

fn endpoint(c: &Cluster, tm: &str) -> String {
    c.tms
        .iter()
        .find(|t| t.id == tm)
        .map(|t| format!("localhost:{}", t.data_port))
        .unwrap_or_else(|| "(unassigned)".to_string())
}

pub(crate) fn vertex_detail(
    c: &Cluster,
    j: &Job,
    v: &Vertex,
    now: tokio::time::Instant,
    now_ms: i64,
) -> Value {
    let p = v.parallelism.max(1);
    let subtasks: Vec<Value> = (0..v.parallelism)
        .map(|s| {
            let tm = tm_for_subtask(j, s);
            json!({
                "subtask": s, "status": j.status.task_state(), "attempt": j.num_restarts,
                "endpoint": endpoint(c, tm), "start-time": v.start_ms, "end-time": v.end_ms.unwrap_or(-1),
                "duration": v.end_ms.unwrap_or(now_ms) - v.start_ms,
                "metrics": io_metrics(j, v, now, now_ms, 1.0 / f64::from(p)),
                "taskmanager-id": tm, "status-duration": status_duration(j, v, now_ms), "start_time": v.start_ms
            })
        })
        .collect();
    json!({
        "id": v.id, "name": v.name, "parallelism": v.parallelism, "maxParallelism": v.max_parallelism,
        "now": now_ms, "subtasks": subtasks, "aggregated": aggregated(j, v, now, now_ms)
    })
}

pub(crate) fn vertex_taskmanagers(
    c: &Cluster,
    j: &Job,
    v: &Vertex,
    now: tokio::time::Instant,
    now_ms: i64,
) -> Value {
    let tms: Vec<Value> = j
        .alloc
        .iter()
        .map(|(tm, n)| {
            let n = (*n).min(v.parallelism);
            json!({
                "endpoint": endpoint(c, tm), "status": j.status.task_state(), "start-time": v.start_ms,
                "end-time": v.end_ms.unwrap_or(-1), "duration": v.end_ms.unwrap_or(now_ms) - v.start_ms,
                "metrics": io_metrics(j, v, now, now_ms, f64::from(n) / f64::from(v.parallelism.max(1))),
                "status-counts": task_counts(j.status.task_state(), n),
                "taskmanager-id": tm, "aggregated": aggregated(j, v, now, now_ms)
            })
        })
        .collect();
    json!({"id": v.id, "name": v.name, "now": now_ms, "taskmanagers": tms})
}

pub(crate) fn subtask_times(c: &Cluster, j: &Job, v: &Vertex, now_ms: i64) -> Value {
    let subtasks: Vec<Value> = (0..v.parallelism)
        .map(|s| {
            let mut ts = Map::new();
            for st in TASK_STATES {
                let val = match st {
                    "CREATED" => v.start_ms - 91,
                    "SCHEDULED" => v.start_ms - 61,
                    "DEPLOYING" => v.start_ms,
                    "INITIALIZING" => v.start_ms + 173,
                    "RUNNING" if v.end_ms.is_none() || j.status == JobStatus::Finished => {
                        v.start_ms + 397
                    }
                    "FINISHED" if j.status == JobStatus::Finished => v.end_ms.unwrap_or(0),
                    "CANCELED" if j.status == JobStatus::Canceled => v.end_ms.unwrap_or(0),
                    "FAILED" if j.status == JobStatus::Failed => v.end_ms.unwrap_or(0),
                    _ => 0,
                };
                ts.insert(st.to_string(), json!(val));
            }
            json!({
                "subtask": s, "endpoint": endpoint(c, tm_for_subtask(j, s)),
                "duration": v.end_ms.unwrap_or(now_ms) - v.start_ms, "timestamps": ts
            })
        })
        .collect();
    json!({"id": v.id, "name": v.name, "now": now_ms, "subtasks": subtasks})
}

fn bp_level(ratio: f64) -> &'static str {
    if ratio <= 0.1 {
        "ok"
    } else if ratio <= 0.5 {
        "low"
    } else {
        "high"
    }
}

/// `/backpressure`: computed from the fetched task metrics; `{"status":"deprecated"}` when the
/// metric store has none for the vertex (just started, or not running).
pub(crate) fn backpressure(j: &Job, v: &Vertex, now_ms: i64, has_metrics: bool) -> Value {
    if !has_metrics || j.status != JobStatus::Running {
        return json!({"status": "deprecated"});
    }
    let r = v.backpressure.clamp(0.0, 1.0);
    let level = bp_level(r);
    let subtasks: Vec<Value> = (0..v.parallelism)
        .map(|s| {
            json!({"subtask": s, "backpressureLevel": level, "ratio": r, "idleRatio": 1.0 - r, "busyRatio": 0.0, "backpressure-level": level})
        })
        .collect();
    json!({"status": "ok", "backpressureLevel": level, "end-timestamp": now_ms, "subtasks": subtasks, "backpressure-level": level})
}

pub(crate) fn watermarks(v: &Vertex) -> Value {
    Value::Array(
        (0..v.parallelism)
            .map(|s| json!({"id": format!("{s}.currentInputWatermark"), "value": i64::MIN.to_string()}))
            .collect(),
    )
}

fn resource(cpu: f64, heap: u64, managed: u64, network: u64) -> Value {
    json!({"cpuCores": cpu, "taskHeapMemory": heap, "taskOffHeapMemory": 0, "managedMemory": managed, "networkMemory": network, "extendedResources": {}})
}

fn tm_json(c: &Cluster, tm: &TaskManager) -> Value {
    let free = c.free_on(tm);
    let assigned: u32 = c
        .jobs
        .iter()
        .filter(|j| j.alloc.iter().any(|(id, _)| id == &tm.id))
        .map(|j| j.total_subtasks())
        .sum();
    let per = |total: u64| total / u64::from(tm.slots.max(1));
    json!({
        "id": tm.id,
        "path": format!("pekko.tcp://flink@{}/user/rpc/taskmanager_0", tm.id.split('-').next().unwrap_or("127.0.0.1:0")),
        "dataPort": tm.data_port, "jmxPort": -1, "timeSinceLastHeartbeat": c.clock.ms(tokio::time::Instant::now()),
        "slotsNumber": tm.slots, "freeSlots": free, "assignedTasks": assigned,
        "totalResource": resource(f64::from(tm.slots), 287, 435, 108),
        "freeResource": resource(f64::from(free), per(287) * u64::from(free), per(435) * u64::from(free), per(108) * u64::from(free)),
        "hardware": {"cpuCores": 2, "physicalMemory": 25276502016u64, "freeMemory": 436207616, "managedMemory": 456340282},
        "memoryConfiguration": {
            "frameworkHeap": 134217728, "taskHeap": 301989880, "frameworkOffHeap": 134217728, "taskOffHeap": 0,
            "networkMemory": 114085070, "managedMemory": 456340282, "jvmMetaspace": 268435456,
            "jvmOverhead": 201326592, "totalFlinkMemory": 1140850688, "totalProcessMemory": 1610612736u64
        }
    })
}

pub(crate) fn taskmanagers(c: &Cluster) -> Value {
    let list: Vec<Value> = c.tms.iter().map(|t| tm_json(c, t)).collect();
    json!({"taskmanagers": list})
}

pub(crate) fn taskmanager_detail(c: &Cluster, tm: &TaskManager) -> Value {
    let mut v = tm_json(c, tm);
    let slots: Vec<Value> = c
        .jobs
        .iter()
        .filter_map(|j| j.alloc.iter().find(|(id, _)| id == &tm.id).map(|(_, n)| (j, *n)))
        .map(|(j, n)| json!({"jobId": j.id, "resource": resource(f64::from(n), 71 * u64::from(n), 108 * u64::from(n), 27 * u64::from(n)), "assignedTasks": j.total_subtasks()}))
        .collect();
    if let Some(o) = v.as_object_mut() {
        o.insert("allocatedSlots".into(), Value::Array(slots));
        o.insert(
            "metrics".into(),
            json!({
                "heapUsed": 102778680, "heapCommitted": 436207616, "heapMax": 436207616, "nonHeapUsed": 70156160,
                "nonHeapCommitted": 72548352, "nonHeapMax": 738197504, "directCount": 3507, "directUsed": 121311053,
                "directMax": 121311051, "mappedCount": 0, "mappedUsed": 0, "mappedMax": 0,
                "nettyShuffleMemorySegmentsAvailable": 3478, "nettyShuffleMemorySegmentsUsed": 3,
                "nettyShuffleMemorySegmentsTotal": 3481, "nettyShuffleMemoryAvailable": 113967104,
                "nettyShuffleMemoryUsed": 98304, "nettyShuffleMemoryTotal": 114065408,
                "garbageCollectors": [
                    {"name": "All", "count": 7, "time": 71},
                    {"name": "G1_Young_Generation", "count": 7, "time": 71},
                    {"name": "G1_Old_Generation", "count": 0, "time": 0}
                ]
            }),
        );
    }
    v
}

pub(crate) fn jobmanager_config(c: &Cluster) -> Value {
    let cfg = &c.cfg;
    let mut pairs: Vec<(&str, String)> = vec![
        ("jobmanager.scheduler", "adaptive".into()),
        ("jobmanager.rpc.address", "127.0.0.1".into()),
        ("jobmanager.bind-host", "127.0.0.1".into()),
        ("rest.address", "127.0.0.1".into()),
        ("rest.bind-address", "127.0.0.1".into()),
        ("taskmanager.host", "127.0.0.1".into()),
        ("taskmanager.bind-host", "127.0.0.1".into()),
        (
            "taskmanager.numberOfTaskSlots",
            cfg.slots_per_taskmanager.to_string(),
        ),
        ("parallelism.default", "1".into()),
        (
            "execution.checkpointing.interval",
            format!("{}ms", cfg.checkpoint_interval.as_millis()),
        ),
        ("execution.checkpointing.dir", cfg.checkpoint_dir.clone()),
        (
            "execution.checkpointing.num-retained",
            cfg.checkpoints_retained.to_string(),
        ),
        (
            "execution.checkpointing.externalized-checkpoint-retention",
            "RETAIN_ON_CANCELLATION".into(),
        ),
        ("state.backend.type", "hashmap".into()),
        ("restart-strategy.type", "fixed-delay".into()),
        (
            "restart-strategy.fixed-delay.attempts",
            cfg.restart_attempts.to_string(),
        ),
        (
            "restart-strategy.fixed-delay.delay",
            format!("{}s", cfg.restart_delay.as_secs()),
        ),
        ("jobmanager.execution.failover-strategy", "region".into()),
        (
            "jobmanager.adaptive-scheduler.executing.cooldown-after-rescaling",
            "5s".into(),
        ),
        ("web.adaptive-scheduler.rescale-history.size", "20".into()),
        (
            "web.refresh-interval",
            format!("{}", cfg.refresh_interval.as_millis()),
        ),
        (
            "metrics.fetcher.update-interval",
            format!("{}", cfg.metrics_fetch_interval.as_millis()),
        ),
        (
            "web.exception-history-size",
            cfg.exception_history_size.to_string(),
        ),
        ("heartbeat.interval", "2000".into()),
        ("heartbeat.timeout", "10000".into()),
        ("jobmanager.memory.process.size", "1024m".into()),
        ("taskmanager.memory.process.size", "1536m".into()),
        ("web.tmpdir", c.web_tmp.clone()),
        ("rest.port", "8081".into()),
    ];
    if let Some(sp) = &cfg.savepoint_dir {
        pairs.push(("execution.checkpointing.savepoint-dir", sp.clone()));
    }
    Value::Array(
        pairs
            .into_iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect(),
    )
}

pub(crate) fn jobmanager_environment() -> Value {
    json!({
        "jvm": {
            "version": "OpenJDK 64-Bit Server VM - Debian - 17/17.0.15+6-Debian-1deb12u1",
            "arch": "amd64",
            "options": ["-Xmx469762048", "-Xms469762048", "-XX:MaxMetaspaceSize=268435456"]
        },
        "classpath": ["lib/flink-dist-2.3.0.jar", "lib/flink-table-runtime-2.3.0.jar", "lib/log4j-core-2.25.3.jar"]
    })
}

pub(crate) fn application(j: &Job, now_ms: i64) -> Value {
    let status = match j.status {
        JobStatus::Finished => "FINISHED",
        JobStatus::Failed => "FAILED",
        JobStatus::Canceled => "CANCELED",
        JobStatus::Cancelling => "CANCELING",
        _ => "RUNNING",
    };
    let mut jobs = Map::new();
    jobs.insert(j.status.name().to_string(), json!(1));
    json!({
        "id": j.id, "name": format!("SingleJobApplication({})", j.name), "start-time": j.start_ms - 12,
        "end-time": j.end_ms.unwrap_or(-1), "duration": duration(j, now_ms) + 12, "status": status, "jobs": jobs
    })
}

pub(crate) fn application_detail(j: &Job, now_ms: i64) -> Value {
    let mut v = application(j, now_ms);
    let ts = |s: &str| {
        if v.get("status").and_then(Value::as_str) == Some(s) {
            j.end_ms.unwrap_or(0)
        } else {
            0
        }
    };
    let timestamps = json!({
        "CREATED": j.start_ms - 12, "FAILING": 0, "FAILED": ts("FAILED"), "RUNNING": j.start_ms - 5,
        "CANCELED": ts("CANCELED"), "CANCELING": 0, "FINISHED": ts("FINISHED")
    });
    if let Some(o) = v.as_object_mut() {
        o.insert("timestamps".into(), timestamps);
        o.insert("jobs".into(), json!([job_overview(j, now_ms)]));
    }
    v
}

pub(crate) fn jars(c: &Cluster) -> Value {
    let files: Vec<Value> = c
        .jars
        .iter()
        .map(|jar| {
            json!({"id": jar.id, "name": jar.name, "uploaded": jar.uploaded_ms, "entry": [{"name": c.cfg.jar_entry_class, "description": null}]})
        })
        .collect();
    json!({"address": c.base_url, "files": files})
}

/// A Java failure as the REST API serialises it.
pub(crate) fn failure_cause(class: &str, stack: &str) -> Value {
    json!({"class": class, "stack-trace": stack, "serialized-throwable": encode_base64(stack.as_bytes())})
}

pub(crate) fn execution_result(j: &Job) -> Value {
    if !j.status.is_terminal() {
        return json!({"status": {"id": "IN_PROGRESS"}});
    }
    let app = match j.status {
        JobStatus::Finished => "SUCCEEDED",
        JobStatus::Canceled => "CANCELED",
        _ => "FAILED",
    };
    let end = j.end_ms.unwrap_or(j.start_ms);
    let mut res = json!({
        "id": j.id, "name": j.name, "application-status": app, "accumulator-results": {},
        "net-runtime": end - j.start_ms, "application-id": j.id, "start-time": j.start_ms, "end-time": end
    });
    // only a FAILED job carries its failure (a cancelled one has none)
    let cause = (j.status == JobStatus::Failed).then(|| {
        let text = j
            .failure
            .clone()
            .unwrap_or_else(|| "org.apache.flink.util.FlinkException: Job failed.".into());
        let strategy = if j.restart_attempts == 0 {
            "NoRestartBackoffTimeStrategy".to_string()
        } else {
            format!(
                "FixedDelayRestartBackoffTimeStrategy(maxNumberRestartAttempts={}, backoffTimeMS={})",
                j.restart_attempts,
                j.restart_delay.as_millis()
            )
        };
        let stack = format!("org.apache.flink.runtime.JobException: Recovery is suppressed by {strategy}\n\tat org.apache.flink.runtime.executiongraph.failover.ExecutionFailureHandler.handleFailure(ExecutionFailureHandler.java:219)\nCaused by: {text}");
        failure_cause("org.apache.flink.runtime.JobException", &stack)
    });
    if let (Some(c), Some(o)) = (cause, res.as_object_mut()) {
        o.insert("failure-cause".into(), c);
    }
    json!({"status": {"id": "COMPLETED"}, "job-execution-result": res})
}

pub(crate) fn savepoint_status(op: &SavepointOp) -> Value {
    match &op.result {
        None => json!({"status": {"id": "IN_PROGRESS"}, "operation": null}),
        Some(OpResult::Location(l)) => {
            json!({"status": {"id": "COMPLETED"}, "operation": {"location": l}})
        }
        Some(OpResult::Failure { class, stack }) => {
            json!({"status": {"id": "COMPLETED"}, "operation": {"failure-cause": failure_cause(class, stack)}})
        }
    }
}

/// Standard base64 (RFC 4648, padded).
pub(crate) fn encode_base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// JVM metric values for the JobManager / TaskManager metric endpoints.
pub(crate) fn jvm_metric(name: &str) -> f64 {
    match name {
        "Status.JVM.Memory.Heap.Used" => 102_778_680.0,
        "Status.JVM.Memory.Heap.Committed" | "Status.JVM.Memory.Heap.Max" => 436_207_616.0,
        "Status.JVM.Memory.NonHeap.Used" => 70_156_160.0,
        "Status.JVM.Memory.NonHeap.Committed" => 72_548_352.0,
        "Status.JVM.Memory.NonHeap.Max" => 738_197_504.0,
        "Status.JVM.Memory.Metaspace.Used" => 61_000_000.0,
        "Status.JVM.Memory.Metaspace.Committed" => 62_000_000.0,
        "Status.JVM.Memory.Metaspace.Max" => 268_435_456.0,
        "Status.JVM.Threads.Count" => 71.0,
        "Status.JVM.FileDescriptor.Max" => 1_048_576.0,
        "Status.JVM.FileDescriptor.Open" => 212.0,
        "Status.JVM.ClassLoader.ClassesLoaded" => 10_512.0,
        "Status.JVM.GarbageCollector.All.Count"
        | "Status.JVM.GarbageCollector.G1_Young_Generation.Count" => 7.0,
        "Status.JVM.GarbageCollector.All.Time"
        | "Status.JVM.GarbageCollector.G1_Young_Generation.Time" => 71.0,
        "Status.JVM.CPU.Time" => 21_000_000_000.0,
        "Status.Shuffle.Netty.TotalMemory" => 114_065_408.0,
        "Status.Shuffle.Netty.AvailableMemory" => 113_967_104.0,
        "Status.Shuffle.Netty.UsedMemory" => 98_304.0,
        "Status.Shuffle.Netty.TotalMemorySegments" => 3481.0,
        "Status.Shuffle.Netty.AvailableMemorySegments" => 3478.0,
        "Status.Shuffle.Netty.UsedMemorySegments" => 3.0,
        "Status.Flink.Memory.Managed.Total" => 456_340_282.0,
        "Status.JVM.Memory.Direct.Count" => 3507.0,
        "Status.JVM.Memory.Direct.MemoryUsed" | "Status.JVM.Memory.Direct.TotalCapacity" => {
            121_311_053.0
        }
        _ => 0.0,
    }
}

/// Metric names of a JobManager (beyond the cluster gauges).
pub(crate) const JVM_METRICS: &[&str] = &[
    "Status.JVM.Memory.Mapped.TotalCapacity",
    "Status.JVM.Memory.Mapped.MemoryUsed",
    "Status.JVM.GarbageCollector.All.TimeMsPerSecond",
    "Status.JVM.CPU.Time",
    "Status.JVM.GarbageCollector.G1_Young_Generation.Count",
    "Status.JVM.Threads.Count",
    "Status.JVM.GarbageCollector.G1_Old_Generation.TimeMsPerSecond",
    "Status.JVM.Memory.Heap.Committed",
    "Status.JVM.GarbageCollector.All.Count",
    "Status.JVM.FileDescriptor.Max",
    "Status.JVM.Memory.Metaspace.Committed",
    "Status.JVM.GarbageCollector.G1_Young_Generation.TimeMsPerSecond",
    "Status.JVM.Memory.Direct.Count",
    "Status.JVM.Memory.NonHeap.Max",
    "Status.JVM.Memory.NonHeap.Committed",
    "Status.JVM.Memory.NonHeap.Used",
    "Status.JVM.Memory.Metaspace.Max",
    "Status.JVM.GarbageCollector.All.Time",
    "Status.JVM.GarbageCollector.G1_Old_Generation.Count",
    "Status.JVM.Memory.Direct.MemoryUsed",
    "Status.JVM.GarbageCollector.G1_Old_Generation.Time",
    "Status.JVM.Memory.Direct.TotalCapacity",
    "Status.JVM.ClassLoader.ClassesLoaded",
    "Status.JVM.Memory.Mapped.Count",
    "Status.JVM.Memory.Metaspace.Used",
    "Status.JVM.CPU.Load",
    "Status.JVM.Memory.Heap.Max",
    "Status.JVM.Memory.Heap.Used",
    "Status.JVM.ClassLoader.ClassesUnloaded",
    "Status.JVM.GarbageCollector.G1_Young_Generation.Time",
    "Status.JVM.FileDescriptor.Open",
];

/// Extra metric names a TaskManager has.
pub(crate) const TM_EXTRA_METRICS: &[&str] = &[
    "Status.Flink.Memory.Managed.Total",
    "Status.Shuffle.Netty.UsedMemory",
    "Status.Shuffle.Netty.TotalMemory",
    "Status.Shuffle.Netty.RequestedMemoryUsage",
    "Status.Shuffle.Netty.AvailableMemorySegments",
    "Status.Shuffle.Netty.TotalMemorySegments",
    "Status.Shuffle.Netty.UsedMemorySegments",
    "Status.Flink.Memory.Managed.Used",
    "Status.Shuffle.Netty.AvailableMemory",
];
