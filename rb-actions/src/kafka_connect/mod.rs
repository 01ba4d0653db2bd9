//! Kafka Connect remediations over the worker's REST API (port 8083 by default).
//!
//! Build a [`KafkaConnect`] handle on an [`HttpClient`] (the [`rb_probes::transport::ReqwestClient`] for
//! a real worker) and take its remediations from it; they share the handle's per-connector restart
//! history, so a restart of the connector and a restart of one of its tasks back off together.
//!
//! | remediation | id | risk | idempotent | reversible (undo) | exact calls |
//! | --- | --- | --- | --- | --- | --- |
//! | [`RestartConnector`] | `kafka_connect.restart` | disruptive | yes | nothing to undo (no config, offset or data changes) | `GET /connectors/<n>/status`; `POST /connectors/<n>/restart?includeTasks=true&onlyFailed=true` (202; a pre-3.0 worker's 204 is followed by `POST /connectors/<n>/tasks/<t>/restart` per failed task) |
//! | [`RestartConnector`] from [`KafkaConnect::restart_after_fix`] | `kafka_connect.restart_after_fix` | disruptive, **a human approves every plan** | yes | nothing to undo | as `kafka_connect.restart` |
//! | [`RestartTask`] | `kafka_connect.restart_task` | disruptive | yes | nothing to undo | `GET /connectors/<n>/status`; `POST /connectors/<n>/tasks/<t>/restart` (204) |
//! | [`PauseConnector`] | `kafka_connect.pause` | disruptive | yes | `PUT /connectors/<n>/resume` | `GET /connectors/<n>/status`; `PUT /connectors/<n>/pause` (202) |
//! | [`ResumeConnector`] | `kafka_connect.resume` | safe | yes | `PUT /connectors/<n>/pause` | `GET /connectors/<n>/status`; `PUT /connectors/<n>/resume` (202) |
//!
//! **Which connector.** Every remediation acts on [`ActionContext::label`]`("connector")`: the
//! incident key (`Playbook::incident_per(&["connector"])`) or the finding's offending series. The
//! task of [`RestartTask`] is `label("task")`, else the lowest FAILED task.
//!
//! **Never blindly.** Each plan reads the connector's status first. Nothing FAILED: the plan is
//! [`Plan::nothing_to_do`]. A FAILED instance whose trace shows a configuration or authorization error
//! ([`classify_trace`]) is not restarted: `plan` returns an [`ErrorKind::Refused`] error whose details
//! carry the connector, the task, the class and the trace, so the engine escalates to a human — the
//! seed's order is "restart **after** fixing the configuration". A playbook that wants the fix first
//! puts a human step before the restart: a `Playbook::escalate_to("Kafka SME")` with no automatic
//! step for that case, or two playbooks — one keyed on the configuration finding (escalation only),
//! one on the transient failure (this restart). When the human has fixed the configuration the task
//! still shows the old trace until it restarts: [`KafkaConnect::restart_after_fix`] is the restart
//! for that moment — it requires a human's approval of every plan (the approval *is* the human saying
//! "fixed"), skips the trace check and starts the backoff history again. A playbook for
//! configuration failures therefore reads `.mitigate(kc.restart_after_fix())` with an approver that
//! asks the on-call: the engine journals the question, the human fixes the config, approves, and
//! the restart runs and verifies.
//!
//! **409 during a rebalance.** A write answered 409 (the worker is rebalancing or its configuration is
//! stale) is tried again after a delay (default 3 tries 5 s apart, [`KafkaConnect::conflict_retry`]); only
//! then is it an [`ErrorKind::Conflict`] error.
//!
//! **Backoff (Strimzi's rule).** Automatic restarts of one connector wait `min(n² + n, 60)` minutes after
//! the `n`-th ([`RestartBackoff`]); the count starts again once the connector has run longer than the
//! next interval (seen by `verify`, or by a later plan through the finding's `since`: it ran until its
//! new failure began). While it waits, `plan` returns [`Plan::nothing_to_do`] naming when the next
//! restart is allowed — waiting is the designed behaviour, not a failure, and the incident stays open
//! until it recovers or its recovery deadline escalates it. After [`KafkaConnect::max_restarts`]
//! restarts (default 6), `plan` returns an [`ErrorKind::Refused`] error: a human must look. The history
//! lives in the handle (memory), per connector.
//!
//! **Verification.** Restarts and resume verify that the connector and its tasks are RUNNING within
//! [`KafkaConnect::verify_within`] (default 2 minutes; status is eventually consistent, so RESTARTING,
//! UNASSIGNED and a lingering FAILED are inconclusive until then; a task failing again on its
//! configuration fails at once). Pause verifies that every instance that was not FAILED is PAUSED.
//!
//! **Errors.** A connector the worker does not know (404) is [`ErrorKind::Invalid`]; 401/403
//! [`ErrorKind::Unauthorized`]; other statuses [`ErrorKind::Rejected`]; a malformed status body
//! [`ErrorKind::BadResponse`] naming the JSON pointer. A write whose answer is lost (timeout, reset,
//! unreadable answer) is [`ErrorKind::OutcomeUnknown`]: the engine never re-runs it blindly.
//!
//! **Least privilege.** Read access to `/connectors/*/status` and write access to `restart`, `pause`,
//! `resume` of the connectors the runbook covers (a `ConnectRestExtension` enforcing per-path access).

mod backoff;
mod classify;

pub use backoff::{BackoffDecision, RestartBackoff};
pub use classify::{classify_trace, TraceClass};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use backon::{ConstantBuilder, Retryable};
use rb_core::time::human;
use rb_core::{
    ActionContext, ErrorKind, Outcome, Plan, Remediation, RemediationError, Risk, Target,
    Verification,
};
use rb_probes::transport::{HttpClient, HttpRequest, HttpResponse, Method};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http_call::{truncate, Caller};

/// Status of a connector (`GET /connectors/<n>/status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorStatus {
    /// The connector name.
    pub name: String,
    /// The connector instance.
    pub connector: InstanceStatus,
    /// Its tasks.
    #[serde(default)]
    pub tasks: Vec<TaskStatus>,
    /// `source`, `sink` or `unknown` (absent on old workers).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// State of the connector instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// `RUNNING`, `FAILED`, `PAUSED`, `RESTARTING`, `UNASSIGNED`, `STOPPED`.
    pub state: String,
    /// `host:port` of the worker running it.
    #[serde(default)]
    pub worker_id: String,
    /// The stack trace of a FAILED instance.
    #[serde(default)]
    pub trace: Option<String>,
}

/// State of one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// The task id.
    pub id: u32,
    /// `RUNNING`, `FAILED`, `PAUSED`, `RESTARTING`, `UNASSIGNED`.
    pub state: String,
    /// `host:port` of the worker running it.
    #[serde(default)]
    pub worker_id: String,
    /// The stack trace of a FAILED task.
    #[serde(default)]
    pub trace: Option<String>,
}

impl ConnectorStatus {
    /// Whether the connector and every task are RUNNING.
    pub fn all_running(&self) -> bool {
        self.connector.state == "RUNNING" && self.tasks.iter().all(|t| t.state == "RUNNING")
    }

    /// Ids of FAILED tasks.
    pub fn failed_tasks(&self) -> Vec<u32> {
        self.tasks
            .iter()
            .filter(|t| t.state == "FAILED")
            .map(|t| t.id)
            .collect()
    }

    /// `connector RUNNING, tasks 0 RUNNING, 1 FAILED` — for plans and evidence.
    pub fn summary(&self) -> String {
        let mut s = format!("connector {}", self.connector.state);
        if !self.tasks.is_empty() {
            s.push_str(", tasks");
            for (i, t) in self.tasks.iter().enumerate() {
                let _ = write!(s, "{} {} {}", if i == 0 { "" } else { "," }, t.id, t.state);
            }
        }
        s
    }
}

#[derive(Debug, Clone)]
struct Ledger {
    backoff: RestartBackoff,
    /// Whether the connector was seen all RUNNING after its last restart.
    ran_after_restart: bool,
}

/// A Kafka Connect worker (cluster) to act on, and the restart history of its connectors.
/// Cloning shares the history.
#[derive(Debug, Clone)]
pub struct KafkaConnect {
    client: Arc<dyn HttpClient>,
    target: Target,
    conflict_tries: usize,
    conflict_delay: Duration,
    max_restarts: u32,
    verify_within: Duration,
    ledger: Arc<Mutex<BTreeMap<String, Ledger>>>,
}

impl KafkaConnect {
    /// The worker behind `client`, known to the runbook as `target` (`kafka-connect/connect-main`).
    pub fn new(client: Arc<dyn HttpClient>, target: Target) -> Self {
        Self {
            client,
            target,
            conflict_tries: 3,
            conflict_delay: Duration::from_secs(5),
            max_restarts: 6,
            verify_within: Duration::from_secs(120),
            ledger: Arc::default(),
        }
    }

    /// Retry a write answered 409 (rebalance in progress) up to `retries` more times, `delay` apart.
    pub fn conflict_retry(mut self, retries: usize, delay: Duration) -> Self {
        self.conflict_tries = retries;
        self.conflict_delay = delay;
        self
    }

    /// Automatic restarts of one connector before a human must look (default 6).
    pub fn max_restarts(mut self, n: u32) -> Self {
        self.max_restarts = n;
        self
    }

    /// How long restarts and resume may take to show RUNNING (default 2 minutes).
    pub fn verify_within(mut self, d: Duration) -> Self {
        self.verify_within = d;
        self
    }

    /// The backoff state of `connector`, if it was ever restarted through this handle.
    pub fn backoff(&self, connector: &str) -> Option<RestartBackoff> {
        self.lock().get(connector).map(|l| l.backoff)
    }

    /// Restart a connector with its failed tasks.
    pub fn restart(&self) -> RestartConnector {
        RestartConnector {
            kc: self.clone(),
            after_fix: false,
        }
    }

    /// The restart that follows a human's fix of the configuration (`kafka_connect.restart_after_fix`):
    /// it does not refuse on a configuration or authorization trace (the trace is the old one until
    /// the restart) and ignores the backoff (the history starts again), but a human must approve every
    /// plan of it ([`Remediation::requires_human`]): the approval is the human saying "fixed".
    pub fn restart_after_fix(&self) -> RestartConnector {
        RestartConnector {
            kc: self.clone(),
            after_fix: true,
        }
    }

    /// Restart one failed task.
    pub fn restart_task(&self) -> RestartTask {
        RestartTask(self.clone())
    }

    /// Pause a connector.
    pub fn pause(&self) -> PauseConnector {
        PauseConnector(self.clone())
    }

    /// Resume a connector.
    pub fn resume(&self) -> ResumeConnector {
        ResumeConnector(self.clone())
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Ledger>> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn caller<'a>(&'a self, action: &'a str) -> Caller<'a> {
        Caller {
            action,
            target: &self.target.name,
        }
    }

    fn connector<'c>(
        &self,
        action: &str,
        ctx: &'c ActionContext,
    ) -> Result<&'c str, RemediationError> {
        ctx.label("connector").ok_or_else(|| {
            self.caller(action).error(
                self.client.base_url(),
                ErrorKind::Invalid,
                "no `connector` label in the incident key or the finding's offending series: which connector is unknown",
            )
        })
    }

    async fn status(&self, action: &str, name: &str) -> Result<ConnectorStatus, RemediationError> {
        let path = format!("/connectors/{}/status", segment(name));
        self.caller(action)
            .get_json(&*self.client, HttpRequest::get(path))
            .await
    }

    /// Send a write; a 409 is tried again after the conflict delay, a bounded number of times.
    async fn write(
        &self,
        action: &str,
        method: Method,
        path: String,
    ) -> Result<HttpResponse, RemediationError> {
        let caller = self.caller(action);
        let line = format!("{method} {path}");
        let once = || async {
            let resp = caller
                .send(&*self.client, HttpRequest::new(method, path.clone()))
                .await?;
            if resp.is_success() {
                Ok(resp)
            } else {
                Err(caller.status_error(&*self.client, &line, &resp))
            }
        };
        once.retry(
            ConstantBuilder::new()
                .with_delay(self.conflict_delay)
                .with_max_times(self.conflict_tries),
        )
        .when(|e: &RemediationError| e.kind() == ErrorKind::Conflict)
        .notify(|e: &RemediationError, after: Duration| {
            tracing::info!(action, error = %e, "Kafka Connect answered 409; trying again in {after:?}");
        })
        .await
    }

    /// The restart plan's checks: failed instances classified, backoff consulted.
    fn refuse_if_needs_human(
        &self,
        action: &str,
        status: &ConnectorStatus,
        tasks: &[u32],
        include_connector: bool,
    ) -> Result<(), RemediationError> {
        let mut blocking = Vec::new();
        if include_connector && status.connector.state == "FAILED" {
            let trace = status.connector.trace.as_deref().unwrap_or("");
            let class = classify_trace(trace);
            if class.needs_human() {
                blocking.push(json!({"instance": "connector", "class": class, "trace": truncate(trace, 4000)}));
            }
        }
        for t in status.tasks.iter().filter(|t| tasks.contains(&t.id)) {
            let trace = t.trace.as_deref().unwrap_or("");
            let class = classify_trace(trace);
            if class.needs_human() {
                blocking.push(json!({"instance": "task", "task": t.id, "class": class, "trace": truncate(trace, 4000)}));
            }
        }
        if blocking.is_empty() {
            return Ok(());
        }
        let first = &blocking[0];
        let what = match first["task"].as_u64() {
            Some(t) => format!("task {t}"),
            None => "the connector instance".to_string(),
        };
        let marker = first["class"]["marker"].as_str().unwrap_or("?");
        Err(self
            .caller(action)
            .error(
                &self.client.url(&format!("/connectors/{}/status", segment(&status.name))),
                ErrorKind::Refused,
                format!(
                    "{what} of {} failed on its configuration or credentials ({marker}): a restart would fail again; a human must fix the configuration first, then restart (restart after fixing the configuration)",
                    status.name
                ),
            )
            .with_details(json!({ "connector": status.name, "needs_human": blocking })))
    }

    /// Consult the backoff of `name` at `ctx.now()`: `Ok(Some(attempt))` to go, `Ok(None)` with a
    /// nothing-to-do plan while waiting, an error once the restarts are used up.
    fn backoff_gate(
        &self,
        action: &str,
        name: &str,
        ctx: &ActionContext,
    ) -> Result<Result<u32, Plan>, RemediationError> {
        let now = ctx.now();
        let mut ledger = self.lock();
        let entry = ledger.entry(name.to_string()).or_insert_with(|| Ledger {
            backoff: RestartBackoff::new(self.max_restarts),
            ran_after_restart: false,
        });
        // It ran after its last restart until this failure began: long enough resets the count.
        if entry.ran_after_restart {
            if let Some(f) = &ctx.finding {
                entry.backoff.observe_running(f.since);
            }
        }
        match entry.backoff.decide(now) {
            BackoffDecision::Restart { attempt } => Ok(Ok(attempt)),
            BackoffDecision::Wait { until, restarts } => Ok(Err(Plan::nothing_to_do(
                action,
                format!(
                    "backing off: {name} was restarted {restarts} time(s), the last {} ago; the next automatic restart is allowed at {until} (min(n²+n, 60) minutes after restart n)",
                    human(now.since(entry.backoff.last_restart().unwrap_or(now))),
                ),
            ))),
            BackoffDecision::GiveUp { restarts } => Err(self
                .caller(action)
                .error(
                    self.client.base_url(),
                    ErrorKind::Refused,
                    format!(
                        "{name} was restarted automatically {restarts} time(s) without staying up: no more automatic restarts, a human must look"
                    ),
                )
                .with_details(json!({ "connector": name, "restarts": restarts, "backoff": entry.backoff }))),
        }
    }

    /// Count a restart that happened — or may have (its answer was lost).
    fn count_restart(
        &self,
        name: &str,
        result: &Result<HttpResponse, RemediationError>,
        ctx: &ActionContext,
    ) {
        match result {
            Ok(_) => self.record_restart(name, ctx),
            Err(e) if e.kind() == ErrorKind::OutcomeUnknown => self.record_restart(name, ctx),
            Err(_) => {}
        }
    }

    fn record_restart(&self, name: &str, ctx: &ActionContext) {
        let mut ledger = self.lock();
        let entry = ledger.entry(name.to_string()).or_insert_with(|| Ledger {
            backoff: RestartBackoff::new(self.max_restarts),
            ran_after_restart: false,
        });
        entry.backoff.record_restart(ctx.now());
        entry.ran_after_restart = false;
    }

    /// Forget the restart history of `name` (a human fixed it).
    fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    fn record_running(&self, name: &str, ctx: &ActionContext) {
        if let Some(entry) = self.lock().get_mut(name) {
            entry.ran_after_restart = true;
            entry.backoff.observe_running(ctx.now());
        }
    }

    /// Verification shared by the restarts and resume: `tasks` (or every task when `None`) and the
    /// connector RUNNING.
    async fn verify_running(
        &self,
        action: &str,
        name: &str,
        tasks: Option<&[u32]>,
        ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        let status = self.status(action, name).await?;
        let watched: Vec<&TaskStatus> = status
            .tasks
            .iter()
            .filter(|t| tasks.is_none_or(|ids| ids.contains(&t.id)))
            .collect();
        if status.connector.state == "RUNNING" && watched.iter().all(|t| t.state == "RUNNING") {
            if status.all_running() {
                self.record_running(name, ctx);
            }
            return Ok(Verification::Succeeded {
                evidence: format!("{name}: {}", status.summary()),
            });
        }
        if status.connector.state == "PAUSED" || status.connector.state == "STOPPED" {
            return Ok(Verification::Failed {
                evidence: format!(
                    "{name} is {} (its target state), so nothing runs: {}",
                    status.connector.state,
                    status.summary()
                ),
            });
        }
        for t in watched.iter().filter(|t| t.state == "FAILED") {
            let trace = t.trace.as_deref().unwrap_or("");
            if classify_trace(trace).needs_human() {
                return Ok(Verification::Failed {
                    evidence: format!(
                        "{name} task {} failed again on its configuration or credentials: {}",
                        t.id,
                        first_line(trace)
                    ),
                });
            }
        }
        let failed: Vec<String> = watched
            .iter()
            .filter(|t| t.state == "FAILED")
            .map(|t| {
                format!(
                    "task {}: {}",
                    t.id,
                    first_line(t.trace.as_deref().unwrap_or(""))
                )
            })
            .collect();
        Ok(Verification::Inconclusive {
            why: if failed.is_empty() {
                format!("{name} not RUNNING yet: {}", status.summary())
            } else {
                format!("{name}: {}; FAILED {}", status.summary(), failed.join("; "))
            },
        })
    }
}

/// A connector name as one URL path segment.
fn segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn first_line(trace: &str) -> String {
    truncate(trace.lines().next().unwrap_or(""), 300)
}

fn ids(tasks: &[u32]) -> String {
    tasks
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

const NO_UNDO: &str =
    "nothing to undo: a restart changes no configuration, offsets or data (pause the connector to stop it)";

/// Restart a connector with its failed tasks: `POST /connectors/<n>/restart?includeTasks=true&onlyFailed=true`.
/// See the [module docs](self).
#[derive(Debug, Clone)]
pub struct RestartConnector {
    kc: KafkaConnect,
    after_fix: bool,
}

#[async_trait]
impl Remediation for RestartConnector {
    fn id(&self) -> &str {
        if self.after_fix {
            "kafka_connect.restart_after_fix"
        } else {
            "kafka_connect.restart"
        }
    }

    fn risk(&self) -> Risk {
        Risk::Disruptive
    }

    /// The restart after a fix needs a human's word that the configuration is fixed.
    fn requires_human(&self) -> bool {
        self.after_fix
    }

    /// `onlyFailed=true` restarts only FAILED instances: a second restart of a running connector
    /// changes nothing.
    fn idempotent(&self) -> bool {
        true
    }

    fn verify_within(&self) -> Duration {
        self.kc.verify_within
    }

    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError> {
        let id = self.id();
        let name = self.kc.connector(id, ctx)?;
        let status = self.kc.status(id, name).await?;
        let failed = status.failed_tasks();
        let connector_failed = status.connector.state == "FAILED";
        if failed.is_empty() && !connector_failed {
            if status.all_running() {
                self.kc.record_running(name, ctx);
            }
            return Ok(Plan::nothing_to_do(
                id,
                format!("{name} has nothing FAILED: {}", status.summary()),
            ));
        }
        let attempt = if self.after_fix {
            self.kc.forget(name);
            1
        } else {
            self.kc.refuse_if_needs_human(id, &status, &failed, true)?;
            match self.kc.backoff_gate(id, name, ctx)? {
                Ok(attempt) => attempt,
                Err(wait) => return Ok(wait),
            }
        };
        let mut what = Vec::new();
        if connector_failed {
            what.push("the FAILED connector instance".to_string());
        }
        if !failed.is_empty() {
            what.push(format!("FAILED task(s) {}", ids(&failed)));
        }
        let why = if self.after_fix {
            "after a human fixed its configuration".to_string()
        } else {
            format!("automatic restart #{attempt}")
        };
        Ok(Plan::new(
            id,
            vec![self.kc.target.clone()],
            format!(
                "POST /connectors/{}/restart?includeTasks=true&onlyFailed=true: restart {} of {name} ({why}); now {}",
                segment(name),
                what.join(" and "),
                status.summary()
            ),
        )
        .expect(format!(
            "{name} and its tasks RUNNING within {}",
            human(self.kc.verify_within)
        ))
        .params(json!({
            "connector": name,
            "tasks": failed,
            "connector_failed": connector_failed,
            "attempt": attempt,
        }))
        .undo(NO_UNDO))
    }

    async fn apply(&self, plan: &Plan, ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        let id = self.id();
        let name = param_str(&self.kc, id, plan, "connector")?;
        let tasks = param_tasks(plan);
        let path = format!(
            "/connectors/{}/restart?includeTasks=true&onlyFailed=true",
            segment(&name)
        );
        let resp = self.kc.write(id, Method::Post, path).await;
        self.kc.count_restart(&name, &resp, ctx);
        let resp = resp?;
        let mut details = json!({ "connector": name, "tasks": tasks, "status": resp.status });
        if resp.status == 204 && !tasks.is_empty() {
            // A worker before Kafka 3.0 ignores includeTasks/onlyFailed and restarts only the
            // connector object (204): restart each failed task on its own.
            for t in &tasks {
                self.kc
                    .write(
                        id,
                        Method::Post,
                        format!("/connectors/{}/tasks/{t}/restart", segment(&name)),
                    )
                    .await?;
            }
            details["per_task_fallback"] = json!(true);
        } else if !resp.body.is_empty() {
            // 202 carries the status with the restarted instances RESTARTING; an answer that is
            // not that leaves it open whether the worker acted.
            match serde_json::from_slice::<ConnectorStatus>(&resp.body) {
                Ok(s) => details["answer"] = json!(s.summary()),
                Err(e) => {
                    return Err(self
                        .kc
                        .caller(id)
                        .error(
                            &self.kc.client.url(&format!("/connectors/{}/restart", segment(&name))),
                            ErrorKind::OutcomeUnknown,
                            format!(
                                "the restart of {name} was answered HTTP {} with a body that is not a connector status ({e}): it may or may not have happened",
                                resp.status
                            ),
                        )
                        .with_details(json!({ "connector": name, "status": resp.status, "body": resp.snippet(500) })));
                }
            }
        }
        Ok(Outcome::new(format!(
            "restart of {name} accepted (HTTP {}): tasks [{}]",
            resp.status,
            ids(&tasks)
        ))
        .details(details))
    }

    async fn verify(
        &self,
        plan: &Plan,
        _outcome: &Outcome,
        ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        let name = param_str(&self.kc, self.id(), plan, "connector")?;
        self.kc.verify_running(self.id(), &name, None, ctx).await
    }
}

/// Restart one failed task: `POST /connectors/<n>/tasks/<t>/restart`. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct RestartTask(KafkaConnect);

#[async_trait]
impl Remediation for RestartTask {
    fn id(&self) -> &str {
        "kafka_connect.restart_task"
    }

    fn risk(&self) -> Risk {
        Risk::Disruptive
    }

    /// The plan names a FAILED task; restarting it again once it runs changes nothing lasting.
    fn idempotent(&self) -> bool {
        true
    }

    fn verify_within(&self) -> Duration {
        self.0.verify_within
    }

    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError> {
        let id = self.id();
        let name = self.0.connector(id, ctx)?;
        let status = self.0.status(id, name).await?;
        let task = match ctx.label("task") {
            Some(t) => t.trim().parse::<u32>().map_err(|_| {
                self.0.caller(id).error(
                    self.0.client.base_url(),
                    ErrorKind::Invalid,
                    format!("label task={t:?} is not a task number"),
                )
            })?,
            None => match status.failed_tasks().first() {
                Some(t) => *t,
                None => {
                    return Ok(Plan::nothing_to_do(
                        id,
                        format!("{name} has no FAILED task: {}", status.summary()),
                    ))
                }
            },
        };
        let Some(ts) = status.tasks.iter().find(|t| t.id == task) else {
            return Err(self.0.caller(id).error(
                &self
                    .0
                    .client
                    .url(&format!("/connectors/{}/status", segment(name))),
                ErrorKind::Invalid,
                format!("{name} has no task {task}: {}", status.summary()),
            ));
        };
        if ts.state != "FAILED" {
            return Ok(Plan::nothing_to_do(
                id,
                format!("task {task} of {name} is {}, not FAILED", ts.state),
            ));
        }
        self.0.refuse_if_needs_human(id, &status, &[task], false)?;
        let attempt = match self.0.backoff_gate(id, name, ctx)? {
            Ok(attempt) => attempt,
            Err(wait) => return Ok(wait),
        };
        Ok(Plan::new(
            id,
            vec![self.0.target.clone()],
            format!(
                "POST /connectors/{}/tasks/{task}/restart: restart FAILED task {task} of {name} (automatic restart #{attempt}); failed with: {}",
                segment(name),
                first_line(ts.trace.as_deref().unwrap_or(""))
            ),
        )
        .expect(format!("task {task} of {name} RUNNING within {}", human(self.0.verify_within)))
        .params(json!({ "connector": name, "task": task, "attempt": attempt }))
        .undo(NO_UNDO))
    }

    async fn apply(&self, plan: &Plan, ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        let id = self.id();
        let name = param_str(&self.0, id, plan, "connector")?;
        let task = plan.params["task"].as_u64().ok_or_else(|| {
            self.0.caller(id).error(
                self.0.client.base_url(),
                ErrorKind::Invalid,
                "plan has no task",
            )
        })?;
        let resp = self
            .0
            .write(
                id,
                Method::Post,
                format!("/connectors/{}/tasks/{task}/restart", segment(&name)),
            )
            .await;
        self.0.count_restart(&name, &resp, ctx);
        let resp = resp?;
        Ok(Outcome::new(format!(
            "restart of task {task} of {name} accepted (HTTP {})",
            resp.status
        ))
        .details(json!({ "connector": name, "task": task, "status": resp.status })))
    }

    async fn verify(
        &self,
        plan: &Plan,
        _outcome: &Outcome,
        ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        let name = param_str(&self.0, self.id(), plan, "connector")?;
        let task = plan.params["task"].as_u64().unwrap_or(u64::MAX) as u32;
        self.0
            .verify_running(self.id(), &name, Some(&[task]), ctx)
            .await
    }
}

/// Pause a connector: `PUT /connectors/<n>/pause`. Undo: `PUT /connectors/<n>/resume`.
/// See the [module docs](self).
#[derive(Debug, Clone)]
pub struct PauseConnector(KafkaConnect);

#[async_trait]
impl Remediation for PauseConnector {
    fn id(&self) -> &str {
        "kafka_connect.pause"
    }

    fn risk(&self) -> Risk {
        Risk::Disruptive
    }

    fn idempotent(&self) -> bool {
        true
    }

    fn verify_within(&self) -> Duration {
        self.0.verify_within
    }

    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError> {
        let id = self.id();
        let name = self.0.connector(id, ctx)?;
        let status = self.0.status(id, name).await?;
        let paused = status.connector.state == "PAUSED"
            && status
                .tasks
                .iter()
                .all(|t| t.state == "PAUSED" || t.state == "FAILED");
        if paused {
            return Ok(Plan::nothing_to_do(
                id,
                format!("{name} is already paused: {}", status.summary()),
            ));
        }
        Ok(Plan::new(
            id,
            vec![self.0.target.clone()],
            format!(
                "PUT /connectors/{}/pause: stop {name} and its {} task(s) from processing records (offsets are kept); now {}",
                segment(name),
                status.tasks.len(),
                status.summary()
            ),
        )
        .expect(format!("{name} PAUSED; its lag grows until it is resumed"))
        .params(json!({ "connector": name }))
        .undo(format!("PUT /connectors/{}/resume", segment(name))))
    }

    async fn apply(&self, plan: &Plan, _ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        let id = self.id();
        let name = param_str(&self.0, id, plan, "connector")?;
        let resp = self
            .0
            .write(
                id,
                Method::Put,
                format!("/connectors/{}/pause", segment(&name)),
            )
            .await?;
        Ok(
            Outcome::new(format!("pause of {name} accepted (HTTP {})", resp.status))
                .details(json!({ "connector": name, "status": resp.status })),
        )
    }

    async fn verify(
        &self,
        plan: &Plan,
        _outcome: &Outcome,
        _ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        let id = self.id();
        let name = param_str(&self.0, id, plan, "connector")?;
        let status = self.0.status(id, &name).await?;
        let not_paused: Vec<&TaskStatus> = status
            .tasks
            .iter()
            .filter(|t| t.state != "PAUSED" && t.state != "FAILED")
            .collect();
        let connector_ok = matches!(status.connector.state.as_str(), "PAUSED" | "FAILED");
        Ok(if connector_ok && not_paused.is_empty() {
            Verification::Succeeded {
                evidence: format!("{name}: {}", status.summary()),
            }
        } else {
            Verification::Inconclusive {
                why: format!("{name} not paused yet: {}", status.summary()),
            }
        })
    }
}

/// Resume a connector: `PUT /connectors/<n>/resume`. Undo: `PUT /connectors/<n>/pause`.
/// Safe: it undoes a pause. A playbook should resume only what it paused itself — resuming a
/// connector a human paused on purpose overrides their decision. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct ResumeConnector(KafkaConnect);

#[async_trait]
impl Remediation for ResumeConnector {
    fn id(&self) -> &str {
        "kafka_connect.resume"
    }

    fn risk(&self) -> Risk {
        Risk::Safe
    }

    fn idempotent(&self) -> bool {
        true
    }

    fn verify_within(&self) -> Duration {
        self.0.verify_within
    }

    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError> {
        let id = self.id();
        let name = self.0.connector(id, ctx)?;
        let status = self.0.status(id, name).await?;
        if status.connector.state == "RUNNING" && status.tasks.iter().all(|t| t.state != "PAUSED") {
            return Ok(Plan::nothing_to_do(
                id,
                format!("{name} is not paused: {}", status.summary()),
            ));
        }
        let failed = status.failed_tasks();
        let note = if failed.is_empty() {
            String::new()
        } else {
            format!(
                "; FAILED task(s) {} stay FAILED (a resume does not restart them)",
                ids(&failed)
            )
        };
        Ok(Plan::new(
            id,
            vec![self.0.target.clone()],
            format!(
                "PUT /connectors/{}/resume: resume {name}; now {}{note}",
                segment(name),
                status.summary()
            ),
        )
        .expect(format!(
            "{name} and its tasks RUNNING within {}",
            human(self.0.verify_within)
        ))
        .params(json!({ "connector": name }))
        .undo(format!("PUT /connectors/{}/pause", segment(name))))
    }

    async fn apply(&self, plan: &Plan, _ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        let id = self.id();
        let name = param_str(&self.0, id, plan, "connector")?;
        let resp = self
            .0
            .write(
                id,
                Method::Put,
                format!("/connectors/{}/resume", segment(&name)),
            )
            .await?;
        Ok(
            Outcome::new(format!("resume of {name} accepted (HTTP {})", resp.status))
                .details(json!({ "connector": name, "status": resp.status })),
        )
    }

    async fn verify(
        &self,
        plan: &Plan,
        _outcome: &Outcome,
        ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        let name = param_str(&self.0, self.id(), plan, "connector")?;
        self.0.verify_running(self.id(), &name, None, ctx).await
    }
}

fn param_str(
    kc: &KafkaConnect,
    action: &str,
    plan: &Plan,
    key: &str,
) -> Result<String, RemediationError> {
    plan.params[key]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| {
            kc.caller(action).error(
                kc.client.base_url(),
                ErrorKind::Invalid,
                format!("the plan has no `{key}` parameter"),
            )
        })
}

fn param_tasks(plan: &Plan) -> Vec<u32> {
    plan.params["tasks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_u64())
                .map(|v| v as u32)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn names_are_one_path_segment() {
        assert_eq!(segment("orders-sink.v2_x"), "orders-sink.v2_x");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn status_parses_the_documented_shape_and_summarizes() {
        let s: ConnectorStatus = serde_json::from_str(
            r#"{"name":"hdfs-sink","connector":{"state":"RUNNING","worker_id":"fakehost:8083"},
               "tasks":[{"id":0,"state":"RUNNING","worker_id":"fakehost:8083"},
                        {"id":1,"state":"FAILED","worker_id":"fakehost:8083","trace":"org.apache.kafka.common.errors.RecordTooLargeException\n"}]}"#,
        )
        .unwrap();
        assert_eq!(s.failed_tasks(), vec![1]);
        assert!(!s.all_running());
        assert_eq!(s.summary(), "connector RUNNING, tasks 0 RUNNING, 1 FAILED");
    }
}
