//! Trino: kill the heaviest queued or running queries.
//!
//! | remediation | id | risk | idempotent | reversible | exact calls |
//! | --- | --- | --- | --- | --- | --- |
//! | [`KillQueries`] | `trino.kill_queries` | disruptive | yes (a killed query stays killed; a second kill answers 409, counted as done) | **no**: the queries' work is lost, their users must resubmit | `GET /v1/query` (plan); `PUT /v1/query/<id>/killed` with the message as plain-text body (apply, one per query); `GET /v1/query/<id>` (verify). Every call carries `X-Trino-User: <user>` |
//!
//! **Which queries** ([`Criteria`]): unfinished queries (`QUEUED`, `WAITING_FOR_RESOURCES`,
//! `DISPATCHING`, `PLANNING`, `STARTING`, `RUNNING`, `FINISHING`) that have run at least
//! `min_elapsed` and hold at least `min_memory` bytes (`queryStats.totalMemoryReservation`), of the
//! allowed users and never of a protected user; when the incident names a `user`
//! ([`ActionContext::label`]), only that user's queries. They are ranked by memory (or elapsed time,
//! [`RankBy`]) and at most [`KillQueries::max_per_incident`] are killed **per incident**, counting
//! earlier kills of the same incident: once that many are killed, `plan` refuses
//! ([`ErrorKind::Refused`]) and a human decides. No candidate: [`Plan::nothing_to_do`].
//!
//! **The plan** lists each query: id, user, state, elapsed, memory and its SQL cut to 200 characters.
//!
//! **Apply** sends one `PUT /v1/query/<id>/killed` per planned query: 202 is killed, 409 means it had
//! already finished (counted as done, not an error), 410 means Trino no longer knows it (done as
//! well). 401/403 are [`ErrorKind::Unauthorized`] (the user needs the `kill` query-owner permission);
//! a lost answer is [`ErrorKind::OutcomeUnknown`], with the queries killed so far in the details.
//!
//! **Verify** (within 1 minute): `GET /v1/query/<id>` of each query answered 202 shows `FAILED` with
//! error code `ADMINISTRATIVELY_KILLED`; still running is inconclusive; anything else fails.
//!
//! **Least privilege:** a Trino user allowed to view and kill other users' queries (file-based access
//! control: `"allow": ["view", "kill"]` on `query_owner` rules), nothing else.

mod units;

pub use units::{parse_data_size, parse_duration};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rb_core::time::human;
use rb_core::{
    ActionContext, ErrorKind, Outcome, Plan, Remediation, RemediationError, Risk, Target,
    Verification,
};
use rb_probes::transport::{HttpClient, HttpRequest, Method};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http_call::{truncate, Caller};
use units::human_bytes;

/// How to rank candidate queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    /// Most memory first, then longest running.
    #[default]
    Memory,
    /// Longest running first, then most memory.
    Elapsed,
}

/// Which queries may be killed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Criteria {
    /// Only queries that have run (elapsed since creation) at least this long.
    pub min_elapsed: Duration,
    /// Only queries holding at least this many bytes of memory.
    pub min_memory: u64,
    /// Only these users' queries (empty: any user).
    pub users: Vec<String>,
    /// Never these users' queries (service accounts, the ETL that must finish).
    pub protected_users: Vec<String>,
    /// The ranking.
    pub rank_by: RankBy,
}

impl Default for Criteria {
    fn default() -> Self {
        Self {
            min_elapsed: Duration::from_secs(300),
            min_memory: 0,
            users: Vec::new(),
            protected_users: Vec::new(),
            rank_by: RankBy::Memory,
        }
    }
}

/// One query as `GET /v1/query` lists it (only what the plan needs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BasicQueryInfo {
    query_id: String,
    state: String,
    #[serde(default)]
    query: String,
    session: Session,
    query_stats: QueryStats,
    #[serde(default)]
    error_code: Option<ErrorCode>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Session {
    user: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryStats {
    elapsed_time: String,
    #[serde(default)]
    total_memory_reservation: Option<String>,
    #[serde(default)]
    user_memory_reservation: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct ErrorCode {
    name: String,
}

/// A query chosen for killing, as the plan lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Victim {
    /// The query id.
    pub query_id: String,
    /// Its user.
    pub user: String,
    /// Its state when planned.
    pub state: String,
    /// Elapsed time when planned, in milliseconds.
    pub elapsed_ms: u64,
    /// Memory held when planned, in bytes.
    pub memory_bytes: u64,
    /// The SQL, cut to 200 characters.
    pub sql: String,
}

const UNFINISHED: &[&str] = &[
    "QUEUED",
    "WAITING_FOR_RESOURCES",
    "DISPATCHING",
    "PLANNING",
    "STARTING",
    "RUNNING",
    "FINISHING",
];

/// Kill the heaviest queued or running Trino queries. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct KillQueries {
    client: Arc<dyn HttpClient>,
    target: Target,
    user: String,
    criteria: Criteria,
    max_per_incident: usize,
    message: String,
    killed: Arc<Mutex<HashMap<String, usize>>>,
}

impl KillQueries {
    /// Kill queries on the coordinator behind `client`, known as `target`, acting as Trino user `user`
    /// (sent as `X-Trino-User`). Defaults: [`Criteria::default`] (at least 5 minutes old), at most
    /// 1 query per incident.
    pub fn new(client: Arc<dyn HttpClient>, target: Target, user: impl Into<String>) -> Self {
        Self {
            client,
            target,
            user: user.into(),
            criteria: Criteria::default(),
            max_per_incident: 1,
            message: "killed by rb: the cluster is overloaded (runbook)".into(),
            killed: Arc::default(),
        }
    }

    /// Which queries may be killed.
    pub fn criteria(mut self, criteria: Criteria) -> Self {
        self.criteria = criteria;
        self
    }

    /// At most `n` queries per incident (at least 1).
    pub fn max_per_incident(mut self, n: usize) -> Self {
        self.max_per_incident = n.max(1);
        self
    }

    /// The message Trino shows the query's user (`Query killed. Message: <message>`).
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    fn caller(&self) -> Caller<'_> {
        Caller {
            action: "trino.kill_queries",
            target: &self.target.name,
        }
    }

    fn request(&self, method: Method, path: String) -> HttpRequest {
        HttpRequest::new(method, path).header("X-Trino-User", self.user.clone())
    }

    fn already_killed(&self, incident: &str) -> usize {
        self.killed
            .lock()
            .map(|m| m.get(incident).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn count_kills(&self, incident: &str, n: usize) {
        if let Ok(mut m) = self.killed.lock() {
            *m.entry(incident.to_string()).or_default() += n;
        }
    }

    /// The candidates, heaviest first (all of them; the plan takes the first few).
    fn candidates(
        &self,
        list: Vec<BasicQueryInfo>,
        only_user: Option<&str>,
    ) -> Result<Vec<Victim>, RemediationError> {
        let c = &self.criteria;
        let mut out = Vec::new();
        for (i, q) in list.into_iter().enumerate() {
            if !UNFINISHED.contains(&q.state.as_str()) {
                continue;
            }
            let bad = |field: &str, e: String| {
                self.caller().error(
                    &self.client.url("/v1/query"),
                    ErrorKind::BadResponse,
                    format!(
                        "GET /v1/query: /{i}/queryStats/{field} of query {}: {e}",
                        q.query_id
                    ),
                )
            };
            let elapsed =
                parse_duration(&q.query_stats.elapsed_time).map_err(|e| bad("elapsedTime", e))?;
            let mem_text = q
                .query_stats
                .total_memory_reservation
                .as_deref()
                .or(q.query_stats.user_memory_reservation.as_deref())
                .unwrap_or("0B");
            let memory = parse_data_size(mem_text).map_err(|e| bad("totalMemoryReservation", e))?;
            let user = &q.session.user;
            if elapsed < c.min_elapsed
                || memory < c.min_memory
                || (!c.users.is_empty() && !c.users.contains(user))
                || c.protected_users.contains(user)
                || only_user.is_some_and(|u| u != user)
            {
                continue;
            }
            out.push(Victim {
                query_id: q.query_id,
                user: user.clone(),
                state: q.state,
                elapsed_ms: elapsed.as_millis() as u64,
                memory_bytes: memory,
                sql: truncate(q.query.trim(), 200),
            });
        }
        match c.rank_by {
            RankBy::Memory => out.sort_by(|a, b| {
                (b.memory_bytes, b.elapsed_ms, &a.query_id).cmp(&(
                    a.memory_bytes,
                    a.elapsed_ms,
                    &b.query_id,
                ))
            }),
            RankBy::Elapsed => out.sort_by(|a, b| {
                (b.elapsed_ms, b.memory_bytes, &a.query_id).cmp(&(
                    a.elapsed_ms,
                    a.memory_bytes,
                    &b.query_id,
                ))
            }),
        }
        Ok(out)
    }
}

fn describe(v: &Victim) -> String {
    format!(
        "{} (user {}, {}, elapsed {}, memory {}): {}",
        v.query_id,
        v.user,
        v.state,
        human(Duration::from_millis(v.elapsed_ms)),
        human_bytes(v.memory_bytes),
        v.sql
    )
}

#[async_trait]
impl Remediation for KillQueries {
    fn id(&self) -> &str {
        "trino.kill_queries"
    }

    fn risk(&self) -> Risk {
        Risk::Disruptive
    }

    /// A killed query stays killed; killing it again answers 409, counted as done.
    fn idempotent(&self) -> bool {
        true
    }

    fn verify_within(&self) -> Duration {
        Duration::from_secs(60)
    }

    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError> {
        let budget = self
            .max_per_incident
            .saturating_sub(self.already_killed(&ctx.incident));
        if budget == 0 {
            return Err(self
                .caller()
                .error(
                    self.client.base_url(),
                    ErrorKind::Refused,
                    format!(
                        "already killed {} query(ies) in this incident, the most allowed: a human decides whether to kill more",
                        self.max_per_incident
                    ),
                )
                .with_details(json!({ "max_per_incident": self.max_per_incident })));
        }
        let list: Vec<BasicQueryInfo> = self
            .caller()
            .get_json(&*self.client, self.request(Method::Get, "/v1/query".into()))
            .await?;
        let total = list.len();
        let only_user = ctx.label("user");
        let all = self.candidates(list, only_user)?;
        if all.is_empty() {
            return Ok(Plan::nothing_to_do(
                self.id(),
                format!(
                    "none of the {total} queries is an unfinished query matching the criteria (at least {} elapsed, {} memory{})",
                    human(self.criteria.min_elapsed),
                    human_bytes(self.criteria.min_memory),
                    only_user.map(|u| format!(", user {u}")).unwrap_or_default()
                ),
            ));
        }
        let chosen: Vec<Victim> = all.iter().take(budget).cloned().collect();
        let lines: Vec<String> = chosen
            .iter()
            .map(|v| format!("- {}", describe(v)))
            .collect();
        Ok(Plan::new(
            self.id(),
            vec![self.target.clone()],
            format!(
                "PUT /v1/query/<id>/killed as user {} for {} of {} candidate queries (heaviest by {:?}; at most {} per incident):\n{}",
                self.user,
                chosen.len(),
                all.len(),
                self.criteria.rank_by,
                self.max_per_incident,
                lines.join("\n")
            ),
        )
        .expect("the killed queries end FAILED with ADMINISTRATIVELY_KILLED; queued queries get their resources")
        .params(json!({ "queries": chosen, "message": self.message }))
        .irreversible())
    }

    async fn apply(&self, plan: &Plan, ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        let victims: Vec<Victim> =
            serde_json::from_value(plan.params["queries"].clone()).map_err(|e| {
                self.caller().error(
                    self.client.base_url(),
                    ErrorKind::Invalid,
                    format!("the plan's queries cannot be read: {e}"),
                )
            })?;
        let mut killed = Vec::new();
        let mut already_done = Vec::new();
        for v in &victims {
            let path = format!("/v1/query/{}/killed", v.query_id);
            let line = format!("PUT {path}");
            let mut req = self.request(Method::Put, path);
            req.body = Some(self.message.clone().into_bytes());
            req.headers
                .push(("content-type".into(), "text/plain".into()));
            let resp = match self.caller().send(&*self.client, req).await {
                Ok(r) => r,
                Err(e) => {
                    let maybe = usize::from(e.kind() == ErrorKind::OutcomeUnknown);
                    self.count_kills(&ctx.incident, killed.len() + maybe);
                    return Err(e.with_details(json!({
                        "request": line,
                        "killed": killed,
                        "unknown": v.query_id,
                    })));
                }
            };
            match resp.status {
                202 | 200 | 204 => killed.push(v.query_id.clone()),
                409 | 410 => already_done.push(v.query_id.clone()),
                _ => {
                    self.count_kills(&ctx.incident, killed.len());
                    let e = self.caller().status_error(&*self.client, &line, &resp);
                    let mut details = (*e.details).clone();
                    details["killed"] = json!(killed);
                    return Err(e.with_details(details));
                }
            }
        }
        self.count_kills(&ctx.incident, killed.len());
        Ok(Outcome::new(format!(
            "killed {} query(ies){}",
            killed.len(),
            if already_done.is_empty() {
                String::new()
            } else {
                format!(", {} had already ended", already_done.len())
            }
        ))
        .details(json!({ "killed": killed, "already_done": already_done })))
    }

    async fn verify(
        &self,
        _plan: &Plan,
        outcome: &Outcome,
        _ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        let ids: Vec<String> =
            serde_json::from_value(outcome.details["killed"].clone()).unwrap_or_default();
        let mut running = Vec::new();
        let mut wrong = Vec::new();
        for id in &ids {
            let q: BasicQueryInfo = self
                .caller()
                .get_json(
                    &*self.client,
                    self.request(Method::Get, format!("/v1/query/{id}")),
                )
                .await?;
            let code = q.error_code.as_ref().map(|c| c.name.as_str());
            match (q.state.as_str(), code) {
                ("FAILED", Some("ADMINISTRATIVELY_KILLED")) => {}
                (s, _) if UNFINISHED.contains(&s) => running.push(format!("{id} {s}")),
                (s, c) => wrong.push(format!("{id} {s} {}", c.unwrap_or("no error code"))),
            }
        }
        Ok(if !wrong.is_empty() {
            Verification::Failed {
                evidence: format!("not ADMINISTRATIVELY_KILLED: {}", wrong.join(", ")),
            }
        } else if !running.is_empty() {
            Verification::Inconclusive {
                why: format!("still running: {}", running.join(", ")),
            }
        } else {
            Verification::Succeeded {
                evidence: format!(
                    "{} query(ies) FAILED with ADMINISTRATIVELY_KILLED: {}",
                    ids.len(),
                    ids.join(", ")
                ),
            }
        })
    }
}
