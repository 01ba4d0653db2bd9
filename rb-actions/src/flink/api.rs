//! The few Flink REST answers the remediations read, and the calls they make.

use std::time::Duration;

use rb_core::{ErrorKind, RemediationError};
use rb_probes::transport::{HttpClient, HttpRequest, Method};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::rest::{is_hex32, Site};

/// `GET /jobs/<id>/status`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct JobStatus {
    pub status: String,
}

/// `GET /jobs/overview`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct JobsOverview {
    pub jobs: Vec<JobOverview>,
}

/// One job of `/jobs/overview`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct JobOverview {
    pub jid: String,
    pub name: String,
    pub state: String,
    #[serde(rename = "start-time", default)]
    pub start_time: i64,
}

/// `GET /jobs/<id>` (only what is read).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct JobDetail {
    pub jid: String,
    #[serde(rename = "schedulerType", default)]
    pub scheduler_type: Option<String>,
    pub vertices: Vec<VertexDetail>,
}

/// One vertex of `/jobs/<id>`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct VertexDetail {
    pub id: String,
    pub name: String,
    pub parallelism: u32,
    #[serde(rename = "maxParallelism")]
    pub max_parallelism: i64,
}

/// `GET /jobs/<id>/resource-requirements`: per vertex id, the parallelism bounds.
pub(crate) type Requirements = std::collections::BTreeMap<String, VertexRequirement>;

/// One vertex's requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub(crate) struct VertexRequirement {
    pub parallelism: Bounds,
}

/// `{"lowerBound", "upperBound"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub(crate) struct Bounds {
    #[serde(rename = "lowerBound")]
    pub lower: i64,
    #[serde(rename = "upperBound")]
    pub upper: i64,
}

/// `GET /jobs/<id>/checkpoints` (only `latest`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Checkpoints {
    pub latest: Latest,
}

/// `latest` of `/checkpoints`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Latest {
    pub completed: Option<CheckpointRef>,
    pub savepoint: Option<CheckpointRef>,
    pub restored: Option<Restored>,
}

/// A completed checkpoint or savepoint.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CheckpointRef {
    pub id: u64,
    pub external_path: Option<String>,
    #[serde(default)]
    pub discarded: bool,
}

/// `latest.restored`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Restored {
    pub id: u64,
    pub is_savepoint: bool,
    pub external_path: Option<String>,
}

/// `POST /jobs/<id>/savepoints` and `/stop`: `{"request-id"}`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TriggerResponse {
    #[serde(rename = "request-id")]
    pub request_id: String,
}

/// `GET /jobs/<id>/savepoints/<trigger>`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct OperationStatus {
    pub status: OperationState,
    pub operation: Option<Operation>,
}

/// `status` of an asynchronous operation.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct OperationState {
    pub id: String,
}

/// `operation`: a location, or (a failed savepoint is COMPLETED too) a failure cause.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Operation {
    pub location: Option<String>,
    #[serde(rename = "failure-cause")]
    pub failure_cause: Option<FailureCause>,
}

/// `failure-cause`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct FailureCause {
    #[serde(default)]
    pub class: Option<String>,
    #[serde(rename = "stack-trace", default)]
    pub stack_trace: Option<String>,
}

impl FailureCause {
    /// The most telling line: the deepest `Caused by:` if any, else the first line.
    pub(crate) fn summary(&self) -> String {
        let trace = self.stack_trace.as_deref().unwrap_or_default();
        let caused = trace
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("Caused by: "));
        caused
            .or_else(|| trace.lines().next())
            .map(str::to_string)
            .or_else(|| self.class.clone())
            .unwrap_or_else(|| "no failure cause given".to_string())
    }
}

/// `GET /jars`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Jars {
    pub files: Vec<JarFile>,
}

/// One uploaded jar.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct JarFile {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub uploaded: i64,
}

/// `POST /jars/upload`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Uploaded {
    pub filename: String,
}

/// `POST /jars/<jar>/run`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RunResponse {
    pub jobid: String,
}

/// What a Flink error body says: the first line of the first message that is not the generic
/// "Internal server error." (`{"errors":["<message and stack trace>", …]}`).
pub(crate) fn flink_error(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Ok(v) = serde_json::from_str::<Value>(&text) {
        if let Some(errs) = v.get("errors").and_then(Value::as_array) {
            let msg = errs
                .iter()
                .filter_map(Value::as_str)
                .map(|s| s.trim_start_matches("<Exception on server side:").trim())
                .find(|s| !s.is_empty() && *s != "Internal server error.")
                .or_else(|| errs.iter().filter_map(Value::as_str).next());
            if let Some(m) = msg {
                return m.lines().next().unwrap_or(m).chars().take(400).collect();
            }
        }
    }
    text.chars().take(300).collect()
}

/// Normalise a Flink path the way Flink prints it: `file:///x` → `file:/x`, no trailing slash.
pub(crate) fn flink_path(p: &str) -> String {
    let d = p.trim_end_matches('/');
    match d.strip_prefix("file://") {
        Some(rest) if rest.starts_with('/') => format!("file:{rest}"),
        _ => d.to_string(),
    }
}

/// Whether a job state is globally terminal (the job will not run again).
pub(crate) fn is_terminal(state: &str) -> bool {
    matches!(state, "FINISHED" | "FAILED" | "CANCELED")
}

/// The calls, for one remediation on one Flink REST endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flink<'a> {
    pub site: Site<'a>,
}

impl<'a> Flink<'a> {
    pub(crate) fn new(action: &'a str, target: &'a str, client: &'a dyn HttpClient) -> Self {
        Self {
            site: Site::new(action, target, client),
        }
    }

    /// Send `req`, check the status, decode the answer.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        req: HttpRequest,
    ) -> Result<T, RemediationError> {
        let method = req.method;
        let path = req.path.clone();
        let resp = self.site.send(req).await?;
        if !resp.is_success() {
            return Err(self.site.status_error(
                method.as_str(),
                &path,
                resp.status,
                &flink_error(&resp.body),
            ));
        }
        self.site
            .decode(method.as_str(), method.is_mutating(), &path, &resp.body)
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, RemediationError> {
        self.call(HttpRequest::get(path)).await
    }

    pub(crate) async fn status(&self, job: &str) -> Result<String, RemediationError> {
        Ok(self
            .get::<JobStatus>(&format!("/jobs/{job}/status"))
            .await?
            .status)
    }

    pub(crate) async fn detail(&self, job: &str) -> Result<JobDetail, RemediationError> {
        self.get(&format!("/jobs/{job}")).await
    }

    pub(crate) async fn checkpoints(&self, job: &str) -> Result<Checkpoints, RemediationError> {
        self.get(&format!("/jobs/{job}/checkpoints")).await
    }

    /// A job id from an id or a name: a name picks the newest job of that name that still runs,
    /// else the newest of that name.
    pub(crate) async fn resolve(&self, job: &str) -> Result<String, RemediationError> {
        if is_hex32(job) {
            return Ok(job.to_ascii_lowercase());
        }
        let all: JobsOverview = self.get("/jobs/overview").await?;
        let mut named: Vec<&JobOverview> = all.jobs.iter().filter(|j| j.name == job).collect();
        named.sort_by_key(|j| (!is_terminal(&j.state), j.start_time));
        named.last().map(|j| j.jid.clone()).ok_or_else(|| {
            self.site.err(
                "/jobs/overview",
                ErrorKind::Invalid,
                format!("no job named {job:?} on the cluster"),
            )
        })
    }

    /// Trigger a savepoint (`stop` = stop-with-savepoint) with our own trigger id.
    pub(crate) async fn trigger(
        &self,
        job: &str,
        stop: bool,
        dir: Option<&str>,
        trigger: &str,
    ) -> Result<String, RemediationError> {
        let (path, body) = if stop {
            let mut b = serde_json::json!({ "drain": false, "triggerId": trigger });
            if let Some(d) = dir {
                b["targetDirectory"] = d.into();
            }
            (format!("/jobs/{job}/stop"), b)
        } else {
            let mut b = serde_json::json!({ "cancel-job": false, "triggerId": trigger });
            if let Some(d) = dir {
                b["target-directory"] = d.into();
            }
            (format!("/jobs/{job}/savepoints"), b)
        };
        let r: TriggerResponse = self
            .call(HttpRequest::json(Method::Post, path, &body))
            .await?;
        Ok(r.request_id)
    }

    /// Poll `GET /jobs/<id>/savepoints/<trigger>` every `every` until COMPLETED or `within` passed.
    /// A COMPLETED operation with a `failure-cause` is an error (kind `Rejected`, the cause in the
    /// details); still in progress at the end is an unknown outcome.
    pub(crate) async fn await_savepoint(
        &self,
        job: &str,
        trigger: &str,
        every: Duration,
        within: Duration,
    ) -> Result<String, RemediationError> {
        let path = format!("/jobs/{job}/savepoints/{trigger}");
        let deadline = tokio::time::Instant::now() + within;
        let mut last_err: Option<RemediationError>;
        loop {
            match self.get::<OperationStatus>(&path).await {
                Ok(st) if st.status.id == "COMPLETED" => {
                    let op = st.operation.unwrap_or(Operation {
                        location: None,
                        failure_cause: None,
                    });
                    if let Some(cause) = op.failure_cause {
                        let summary = cause.summary();
                        return Err(self
                            .site
                            .err(
                                &path,
                                ErrorKind::Rejected,
                                format!("savepoint {trigger} of job {job} failed: {summary}"),
                            )
                            .with_details(serde_json::json!({
                                "trigger_id": trigger,
                                "failure_class": cause.class,
                                "failure": summary,
                            })));
                    }
                    return op.location.ok_or_else(|| {
                        self.site.err(
                            &path,
                            ErrorKind::BadResponse,
                            "savepoint COMPLETED with neither a location nor a failure-cause",
                        )
                    });
                }
                Ok(_) => last_err = None,
                // a savepoint that is unknown, or a 4xx, will not get better
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => last_err = Some(e),
            }
            if tokio::time::Instant::now() + every > deadline {
                let why = last_err
                    .map(|e| format!("last poll failed: {e}"))
                    .unwrap_or_else(|| "still IN_PROGRESS".to_string());
                return Err(self
                    .site
                    .err(
                        &path,
                        ErrorKind::OutcomeUnknown,
                        format!("savepoint {trigger} of job {job} not completed within {within:?} ({why}); it may still complete"),
                    )
                    .with_details(serde_json::json!({ "trigger_id": trigger })));
            }
            tokio::time::sleep(every).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flink_errors_give_their_first_telling_line() {
        let body = br#"{"errors":["Internal server error.","<Exception on server side:\norg.apache.flink.runtime.messages.FlinkJobNotFoundException: Could not find Flink job (x)\n\tat a.b(C.java:1)\n\nEnd of exception on server side>"]}"#;
        assert_eq!(
            flink_error(body),
            "org.apache.flink.runtime.messages.FlinkJobNotFoundException: Could not find Flink job (x)"
        );
        assert_eq!(flink_error(b"plain text"), "plain text");
    }

    #[test]
    fn a_failure_cause_is_summed_up_by_its_deepest_cause() {
        let c = FailureCause {
            class: Some("java.util.concurrent.CompletionException".into()),
            stack_trace: Some("java.util.concurrent.CompletionException: outer\n\tat x\nCaused by: a.B: middle\n\tat y\nCaused by: c.D: IO-problem detected.\n\tat z".into()),
        };
        assert_eq!(c.summary(), "c.D: IO-problem detected.");
        let c = FailureCause {
            class: Some("k.L".into()),
            stack_trace: None,
        };
        assert_eq!(c.summary(), "k.L");
    }

    #[test]
    fn paths_are_compared_as_flink_prints_them() {
        assert_eq!(flink_path("file:///tmp/sp/"), "file:/tmp/sp");
        assert_eq!(flink_path("s3://b/sp"), "s3://b/sp");
    }
}
