//! A real Apache Flink 2.3 session cluster started by `peers/scripts/flink.sh` (JobManager with the
//! adaptive scheduler, one TaskManager, our keyed-state job running).
//!
//! [`FlinkCluster`] brings about the runbook's Flink situations for real — the TaskManager JVM killed
//! and started again, a savepoint, a rescale through `PUT /jobs/<id>/resource-requirements` — and reads
//! the ground truth from Flink's own REST API (`/jobs/<id>/status` for live state, `numRestarts` from
//! `/jobs/<id>/metrics`, because `/jobs/<id>` is cached for a few seconds and has no restart count).
//!
//! The lakehouse runbook's Flink situations run two more programs the start script builds but does
//! not submit ([`FlinkCluster::orders_jar`], [`FlinkCluster::kafka_jar`]): `orders-enrichment` on
//! generated data (a broken build that crash-loops on a schema change, the fixed build), and
//! `orders-enrichment` reading a Kafka topic through `flink-connector-kafka` as a consumer group.
//! [`FlinkCluster::submit_jar`] runs either; [`FlinkCluster::upload_jar`] leaves a jar on the cluster
//! (a human's deploy), [`FlinkCluster::cancel_named`] and [`FlinkCluster::delete_jars_named`] clean up.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tokio::process::Command;

use crate::env::PeerEnv;

/// One REST answer: the HTTP status and the body (JSON, or a JSON string holding a non-JSON body).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// The body.
    pub body: Value,
}

/// A status seen while watching a job, with when it was first seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSeen {
    /// Time since the watch began.
    pub after: Duration,
    /// The job status (`RUNNING`, `RESTARTING`, `CREATED`, …).
    pub status: String,
}

/// How a savepoint ended, from `GET /jobs/<id>/savepoints/<trigger>`.
#[derive(Debug, Clone)]
pub struct SavepointOutcome {
    /// `operation.location` when it succeeded.
    pub location: Option<String>,
    /// `operation.failure-cause` when it failed (a failed savepoint is also `COMPLETED`).
    pub failure: Option<Value>,
    /// The final answer as Flink gave it.
    pub raw: Value,
}

/// The cluster and job the start script recorded.
#[derive(Debug, Clone)]
pub struct FlinkCluster {
    url: String,
    job_id: String,
    script: PathBuf,
    savepoint_dir: String,
    jar: PathBuf,
    orders_jar: Option<PathBuf>,
    kafka_jar: Option<PathBuf>,
    http: reqwest::Client,
}

impl FlinkCluster {
    /// Read `FLINK_URL`, `FLINK_JOB_ID`, `FLINK_SCRIPT`, `FLINK_SAVEPOINT_DIR` from the env file.
    pub fn from_env(env: &PeerEnv) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .context("building the HTTP client")?;
        let job_id = env.get("FLINK_JOB_ID")?.to_string();
        if job_id.len() != 32 || !job_id.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("FLINK_JOB_ID is not a Flink job id: {job_id:?}");
        }
        Ok(Self {
            url: env.get("FLINK_URL")?.trim_end_matches('/').to_string(),
            job_id,
            script: PathBuf::from(env.get("FLINK_SCRIPT")?),
            savepoint_dir: env.get("FLINK_SAVEPOINT_DIR")?.to_string(),
            jar: PathBuf::from(env.get("FLINK_JAR")?),
            orders_jar: env.opt("FLINK_ORDERS_JAR").map(PathBuf::from),
            kafka_jar: env.opt("FLINK_KAFKA_JAR").map(PathBuf::from),
            http,
        })
    }

    /// The same cluster, looking at another job.
    pub fn with_job(&self, job_id: &str) -> Self {
        Self {
            job_id: job_id.to_string(),
            ..self.clone()
        }
    }

    /// Submit another run of our job jar through REST (`POST /jars/upload`, `POST /jars/<jar>/run`)
    /// with `args`; returns a handle on the new job. The uploaded jar is deleted afterwards.
    pub async fn submit_job(&self, args: &[&str]) -> Result<Self> {
        let jar = self.jar.clone();
        self.submit_jar(&jar, "rb-peers-counter.jar", args).await
    }

    /// The `orders-enrichment` program on generated data (`FLINK_ORDERS_JAR`; arguments
    /// `<job name> <records/s> crash` for the build that crash-loops on a schema change, none for the
    /// fixed build).
    pub fn orders_jar(&self) -> Result<&Path> {
        self.orders_jar.as_deref().ok_or_else(|| {
            anyhow!("the env file has no FLINK_ORDERS_JAR: restart the cluster with peers/scripts/flink.sh start")
        })
    }

    /// The `orders-enrichment` program reading Kafka (`FLINK_KAFKA_JAR`; arguments `<job name>
    /// <bootstrap> <topic> <group> <records/s a subtask> [checkpoint ms]`).
    pub fn kafka_jar(&self) -> Result<&Path> {
        self.kafka_jar.as_deref().ok_or_else(|| {
            anyhow!("the env file has no FLINK_KAFKA_JAR: restart the cluster with peers/scripts/flink.sh start")
        })
    }

    /// Upload `jar` as `file_name` (`POST /jars/upload`) and leave it on the cluster; returns the
    /// jar id.
    pub async fn upload_jar(&self, jar: &Path, file_name: &str) -> Result<String> {
        let bytes = tokio::fs::read(jar)
            .await
            .with_context(|| format!("reading {}", jar.display()))?;
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(file_name.to_string())
            .mime_str("application/x-java-archive")
            .context("jar part")?;
        let form = reqwest::multipart::Form::new().part("jarfile", part);
        let url = format!("{}/jars/upload", self.url);
        let resp = self
            .http
            .post(&url)
            .timeout(Duration::from_secs(60))
            .multipart(form)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status().as_u16();
        let up: Value = resp
            .json()
            .await
            .with_context(|| format!("POST {url}: body"))?;
        let filename = up
            .get("filename")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("POST {url}: HTTP {status}, no filename in {up}"))?;
        Ok(filename.rsplit('/').next().unwrap_or(filename).to_string())
    }

    /// Upload `jar` as `file_name`, run it with `args` (`POST /jars/<jar>/run`) and delete the
    /// upload; returns a handle on the new job.
    pub async fn submit_jar(&self, jar: &Path, file_name: &str, args: &[&str]) -> Result<Self> {
        let jar_id = self.upload_jar(jar, file_name).await?;
        let body = json!({"programArgsList": args});
        let run = self
            .call("POST", &format!("/jars/{jar_id}/run"), Some(&body))
            .await;
        let deleted = self.call("DELETE", &format!("/jars/{jar_id}"), None).await;
        let run = run?;
        if run.status != 200 {
            bail!("POST /jars/{jar_id}/run: HTTP {} {}", run.status, run.body);
        }
        deleted?;
        let job = run
            .body
            .get("jobid")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("POST /jars/{jar_id}/run: no jobid in {}", run.body))?;
        Ok(self.with_job(job))
    }

    /// Delete every uploaded jar whose file name is `file_name`; returns how many.
    pub async fn delete_jars_named(&self, file_name: &str) -> Result<usize> {
        let jars = self.get("/jars").await?;
        let ids: Vec<String> = jars
            .get("files")
            .and_then(Value::as_array)
            .map(|fs| {
                fs.iter()
                    .filter(|f| f.get("name").and_then(Value::as_str) == Some(file_name))
                    .filter_map(|f| f.get("id").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for id in &ids {
            let a = self.call("DELETE", &format!("/jars/{id}"), None).await?;
            if !(200..300).contains(&a.status) {
                bail!("DELETE /jars/{id}: HTTP {} {}", a.status, a.body);
            }
        }
        Ok(ids.len())
    }

    /// `(job id, state)` of every job named `name` on the cluster (`/jobs/overview`), oldest first.
    pub async fn jobs_named(&self, name: &str) -> Result<Vec<(String, String)>> {
        let v = self.get("/jobs/overview").await?;
        let mut jobs: Vec<(i64, String, String)> = v
            .get("jobs")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("GET /jobs/overview: no jobs in {v}"))?
            .iter()
            .filter(|j| j.get("name").and_then(Value::as_str) == Some(name))
            .filter_map(|j| {
                Some((
                    j.get("start-time").and_then(Value::as_i64).unwrap_or(0),
                    j.get("jid")?.as_str()?.to_string(),
                    j.get("state")?.as_str()?.to_string(),
                ))
            })
            .collect();
        jobs.sort();
        Ok(jobs.into_iter().map(|(_, id, st)| (id, st)).collect())
    }

    /// Cancel every job named `name` that has not ended, and wait until each is terminal.
    pub async fn cancel_named(&self, name: &str, timeout: Duration) -> Result<()> {
        for (id, state) in self.jobs_named(name).await? {
            if ["FINISHED", "CANCELED", "FAILED"].contains(&state.as_str()) {
                continue;
            }
            let job = self.with_job(&id);
            let path = format!("/jobs/{id}?mode=cancel");
            let a = job.call("PATCH", &path, None).await?;
            if a.status != 202 && a.status != 409 {
                bail!("PATCH {path}: HTTP {} {}", a.status, a.body);
            }
            let deadline = Instant::now() + timeout;
            loop {
                let s = job.job_status().await?;
                if ["FINISHED", "CANCELED", "FAILED"].contains(&s.as_str()) {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!("job {id} ({name}) still {s} {timeout:?} after it was cancelled");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// `GET /jobs/<id>/checkpoints` of this handle's job.
    pub async fn checkpoints(&self) -> Result<Value> {
        self.get(&format!("/jobs/{}/checkpoints", self.job_id))
            .await
    }

    /// Wait until the job is RUNNING with at least `n` completed checkpoints; returns the count.
    pub async fn wait_checkpoints(&self, n: u64, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.job_status().await?;
            let done = self
                .checkpoints()
                .await?
                .pointer("/counts/completed")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if status == "RUNNING" && done >= n {
                return Ok(done);
            }
            if Instant::now() >= deadline {
                bail!(
                    "job {} not RUNNING with {n} completed checkpoints within {timeout:?} ({status}, {done})",
                    self.job_id
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Cancel this handle's job (`PATCH /jobs/<id>?mode=cancel`) and wait until it is CANCELED.
    pub async fn cancel(&self, timeout: Duration) -> Result<()> {
        let path = format!("/jobs/{}?mode=cancel", self.job_id);
        let a = self.call("PATCH", &path, None).await?;
        if a.status != 202 {
            bail!("PATCH {path}: HTTP {} {}", a.status, a.body);
        }
        self.wait_status("CANCELED", timeout).await.map(|_| ())
    }

    /// The REST base URL (`http://127.0.0.1:18081`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The id of our long-running job.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The directory savepoints go to by default.
    pub fn savepoint_dir(&self) -> &str {
        &self.savepoint_dir
    }

    /// Call the REST API: `method` (`GET`, `POST`, `PUT`, `PATCH`, `DELETE`) on `path` (starting with `/`).
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Answer> {
        let m = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| anyhow!("bad HTTP method {method:?}"))?;
        let url = format!("{}{path}", self.url);
        let mut req = self.http.request(m, &url);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .with_context(|| format!("reading the body of {method} {url}"))?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Answer { status, body })
    }

    /// `GET path`, requiring a 2xx answer.
    pub async fn get(&self, path: &str) -> Result<Value> {
        let a = self.call("GET", path, None).await?;
        if !(200..300).contains(&a.status) {
            bail!("GET {path}: HTTP {} {}", a.status, a.body);
        }
        Ok(a.body)
    }

    /// Live job status from `/jobs/<id>/status`.
    pub async fn job_status(&self) -> Result<String> {
        let path = format!("/jobs/{}/status", self.job_id);
        let v = self.get(&path).await?;
        v.get("status")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| anyhow!("GET {path}: no status in {v}"))
    }

    /// `numRestarts` from `/jobs/<id>/metrics?get=numRestarts`; `None` while the metric is not yet
    /// reported (Flink answers `[]` for a while after a (re)start). The value arrives as a string.
    pub async fn num_restarts(&self) -> Result<Option<u64>> {
        let path = format!("/jobs/{}/metrics?get=numRestarts", self.job_id);
        let v = self.get(&path).await?;
        let items = v
            .as_array()
            .ok_or_else(|| anyhow!("GET {path}: not an array: {v}"))?;
        for m in items {
            if m.get("id").and_then(Value::as_str) == Some("numRestarts") {
                let raw = m
                    .get("value")
                    .ok_or_else(|| anyhow!("GET {path}: numRestarts has no value: {m}"))?;
                let n = match raw {
                    Value::String(s) => s
                        .parse::<u64>()
                        .with_context(|| format!("numRestarts value {s:?}"))?,
                    Value::Number(n) => {
                        n.as_u64().ok_or_else(|| anyhow!("numRestarts value {n}"))?
                    }
                    other => bail!("GET {path}: numRestarts value {other}"),
                };
                return Ok(Some(n));
            }
        }
        Ok(None)
    }

    /// Wait until `numRestarts` is reported and satisfies `pred`; returns it.
    pub async fn wait_num_restarts(
        &self,
        pred: impl Fn(u64) -> bool,
        timeout: Duration,
    ) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.num_restarts().await?;
            if let Some(n) = last {
                if pred(n) {
                    return Ok(n);
                }
            }
            if Instant::now() >= deadline {
                bail!("numRestarts did not reach the expected value within {timeout:?} (last {last:?})");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Poll `/jobs/<id>/status` every 200 ms until it says `wanted`; returns every distinct status seen
    /// in order (the first entry is the status at the start).
    pub async fn wait_status(&self, wanted: &str, timeout: Duration) -> Result<Vec<StatusSeen>> {
        let t0 = Instant::now();
        let mut seen: Vec<StatusSeen> = Vec::new();
        loop {
            let s = self.job_status().await?;
            if seen.last().map(|l| l.status.as_str()) != Some(s.as_str()) {
                seen.push(StatusSeen {
                    after: t0.elapsed(),
                    status: s.clone(),
                });
            }
            if s == wanted {
                return Ok(seen);
            }
            if t0.elapsed() >= timeout {
                bail!(
                    "job {} not {wanted} within {timeout:?}; seen {seen:?}",
                    self.job_id
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn script(&self, arg: &str) -> Result<()> {
        let out = Command::new("bash")
            .arg(&self.script)
            .arg(arg)
            .output()
            .await
            .with_context(|| format!("running {} {arg}", self.script.display()))?;
        if !out.status.success() {
            bail!(
                "{} {arg} failed ({}): {}",
                self.script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// SIGKILL the TaskManager JVM (the real process the script started).
    pub async fn kill_taskmanager(&self) -> Result<()> {
        self.script("tm-kill").await
    }

    /// Start a TaskManager again; returns once it has registered with the JobManager.
    pub async fn start_taskmanager(&self) -> Result<()> {
        self.script("tm-start").await
    }

    /// `POST /jobs/<id>/savepoints` (no cancel) into `target` or the cluster's savepoint dir; returns
    /// the trigger id and the raw answer.
    pub async fn trigger_savepoint(&self, target: Option<&str>) -> Result<(String, Answer)> {
        let path = format!("/jobs/{}/savepoints", self.job_id);
        let dir = target.unwrap_or(&self.savepoint_dir);
        let body = json!({"cancel-job": false, "target-directory": dir});
        let a = self.call("POST", &path, Some(&body)).await?;
        if a.status != 202 {
            bail!("POST {path}: HTTP {} {}", a.status, a.body);
        }
        let id = a
            .body
            .get("request-id")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("POST {path}: no request-id in {}", a.body))?
            .to_string();
        Ok((id, a))
    }

    /// Poll `GET /jobs/<id>/savepoints/<trigger>` until `status.id` is `COMPLETED`.
    pub async fn wait_savepoint(
        &self,
        trigger: &str,
        timeout: Duration,
    ) -> Result<SavepointOutcome> {
        let path = format!("/jobs/{}/savepoints/{trigger}", self.job_id);
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.get(&path).await?;
            let state = v
                .pointer("/status/id")
                .and_then(Value::as_str)
                .unwrap_or("");
            if state == "COMPLETED" {
                let op = v.get("operation").cloned().unwrap_or(Value::Null);
                return Ok(SavepointOutcome {
                    location: op
                        .get("location")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    failure: op.get("failure-cause").cloned(),
                    raw: v,
                });
            }
            if state != "IN_PROGRESS" {
                bail!("GET {path}: unexpected status {v}");
            }
            if Instant::now() >= deadline {
                bail!("savepoint {trigger} still IN_PROGRESS after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The job's vertex ids with their current parallelism (from `/jobs/<id>`, cached ~3 s by Flink).
    pub async fn vertices(&self) -> Result<Vec<(String, u64)>> {
        let path = format!("/jobs/{}", self.job_id);
        let v = self.get(&path).await?;
        let vs = v
            .get("vertices")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("GET {path}: no vertices"))?;
        vs.iter()
            .map(|x| {
                let id = x
                    .get("id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("vertex without id: {x}"))?;
                let p = x
                    .get("parallelism")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| anyhow!("vertex without parallelism: {x}"))?;
                Ok((id.to_string(), p))
            })
            .collect()
    }

    /// Ask the adaptive scheduler to run every vertex with parallelism between 1 and `upper`
    /// (`PUT /jobs/<id>/resource-requirements`); returns Flink's answer.
    pub async fn set_parallelism(&self, upper: u32) -> Result<Answer> {
        if upper == 0 {
            bail!("parallelism must be at least 1");
        }
        let mut req = serde_json::Map::new();
        for (id, _) in self.vertices().await? {
            req.insert(
                id,
                json!({"parallelism": {"lowerBound": 1, "upperBound": upper}}),
            );
        }
        let path = format!("/jobs/{}/resource-requirements", self.job_id);
        self.call("PUT", &path, Some(&Value::Object(req))).await
    }

    /// Wait until every vertex runs with `parallelism` and the job is RUNNING.
    pub async fn wait_parallelism(&self, parallelism: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let vs = self.vertices().await?;
            if vs.iter().all(|(_, p)| *p == parallelism) && self.job_status().await? == "RUNNING" {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("vertices not at parallelism {parallelism} within {timeout:?}: {vs:?}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
