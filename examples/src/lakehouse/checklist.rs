//! The post-recovery checklist of seed §6, checked by rb where it can, and the ITSM ticket of
//! seed §2 through a [`TicketSink`].
//!
//! | item | how rb checks it |
//! | --- | --- |
//! | Alert cleared in Alertmanager | rb-probes' Alertmanager client (`GET /api/v2/alerts` filtered by `alertname` and the incident's key): no alert of the playbook's alert name still active — a silenced or inhibited one has not cleared (left open when no Alertmanager is configured) |
//! | Checkpoint/savepoint updated | for the Flink playbooks: `GET /jobs/<id>/checkpoints` of the running job — a checkpoint completed after the fix; not applicable elsewhere |
//! | Data cross-checked | the [`CROSS_CHECK_SQL`] query on Trino (`/v1/statement`), its result shown |
//! | ITSM ticket moved to Resolved | the ticket sink resolves the incident's ticket |
//! | RCA document stored | the review written to the output directory (its path) |

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rb_core::report::{md_item, Review};
use rb_core::time::Timestamp;
use rb_core::{IncidentRecord, Matcher, Matchers, Probe, ProbeContext};
use rb_probes::alertmanager::AlertmanagerClient;
use rb_probes::transport::{HttpClient, HttpRequest, Method};
use rb_probes::trino::{TrinoSql, TrinoSqlResult};
use serde::Serialize;

use super::{Systems, CHECKLIST};

/// The data cross-check the runbook names (seed §4 "verify data integrity (Spark/Trino query)").
pub const CROSS_CHECK_SQL: &str =
    "SELECT count(*) AS orders, max(updated_at) AS newest FROM lake.orders";

/// One item of the checklist and what rb found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckedItem {
    /// The item, as in seed §6.
    pub item: String,
    /// What rb found.
    pub state: ItemState,
}

/// Whether an item is ticked.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ItemState {
    /// Checked and true, with the evidence.
    Ticked {
        /// What shows it.
        evidence: String,
    },
    /// Not ticked, and why (not checkable by rb, or checked and false).
    Open {
        /// Why it is left open.
        reason: String,
    },
    /// The item does not apply to this incident.
    NotApplicable {
        /// Why.
        reason: String,
    },
}

/// An error of a ticket sink.
#[derive(Debug, thiserror::Error)]
#[error("ticket sink {endpoint}: {cause}")]
pub struct TicketError {
    /// Where it was sent.
    pub endpoint: String,
    /// What went wrong.
    pub cause: String,
}

/// Where ITSM tickets go (seed §2: "record every incident in the ITSM system: timestamp,
/// service, violated metric, related Nessie commit hash").
#[async_trait]
pub trait TicketSink: Send + Sync + std::fmt::Debug {
    /// Open a ticket for an incident; returns the ticket's id.
    async fn open(&self, record: &IncidentRecord) -> Result<String, TicketError>;
    /// Move a ticket to Resolved.
    async fn resolve(&self, ticket: &str, record: &IncidentRecord) -> Result<(), TicketError>;
}

/// A ticket sink posting JSON to a webhook: `POST <path>` with the ITSM record (answer
/// `{"id": "…"}`), and `POST <path>/<id>/resolve`.
#[derive(Debug, Clone)]
pub struct WebhookTicketSink {
    client: Arc<dyn HttpClient>,
    path: String,
}

impl WebhookTicketSink {
    /// A sink posting to `path` of `client`'s base URL.
    pub fn new(client: Arc<dyn HttpClient>, path: impl Into<String>) -> Self {
        Self {
            client,
            path: path.into(),
        }
    }

    fn err(&self, cause: impl std::fmt::Display) -> TicketError {
        TicketError {
            endpoint: format!("{}{}", self.client.base_url(), self.path),
            cause: cause.to_string(),
        }
    }
}

/// The ITSM record of seed §2 as the webhook receives it.
pub fn ticket_body(record: &IncidentRecord) -> serde_json::Value {
    serde_json::json!({
        "incident": record.id,
        "opened_at": record.opened_at.rfc3339(),
        "service": record.service,
        "title": record.title,
        "target": record.target.to_string(),
        "violated_metric": record.violated.as_ref().map(|v| serde_json::json!({
            "name": v.name,
            "labels": v.labels,
            "value": v.value,
            "threshold": v.threshold,
        })),
        "nessie_commit": record.nessie_commit,
        "affected_pipelines": record.affected_pipelines,
    })
}

#[async_trait]
impl TicketSink for WebhookTicketSink {
    async fn open(&self, record: &IncidentRecord) -> Result<String, TicketError> {
        let req = HttpRequest::json(Method::Post, self.path.clone(), &ticket_body(record));
        let resp = self.client.send(req).await.map_err(|e| self.err(e))?;
        if !resp.is_success() {
            return Err(self.err(format!("HTTP {}: {}", resp.status, resp.snippet(200))));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&resp.body).map_err(|e| self.err(format!("not JSON: {e}")))?;
        v["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.err("the answer has no string `id`"))
    }

    async fn resolve(&self, ticket: &str, record: &IncidentRecord) -> Result<(), TicketError> {
        let req = HttpRequest::json(
            Method::Post,
            format!("{}/{ticket}/resolve", self.path),
            &serde_json::json!({ "incident": record.id, "state": "Resolved" }),
        );
        let resp = self.client.send(req).await.map_err(|e| self.err(e))?;
        if !resp.is_success() {
            return Err(self.err(format!("HTTP {}: {}", resp.status, resp.snippet(200))));
        }
        Ok(())
    }
}

/// The Alertmanager alert name that stands for each playbook (the alert rules of the lakehouse's
/// Prometheus).
pub fn alertname_of(playbook: &str) -> &'static str {
    match playbook {
        "kafka-backlog" => "KafkaConsumerLagHigh",
        "flink-restarting" => "FlinkJobRestarting",
        "cassandra-node-down" => "CassandraNodeDown",
        "nessie-commit" => "NessieCommitFailing",
        "connect-failed" => "KafkaConnectTaskFailed",
        "connect-count-drop" => "KafkaConnectConnectorCountDrop",
        "trino-backlog" => "TrinoQueriesQueued",
        "postgres-saturation" => "PostgresConnectionsSaturated",
        "mysql-saturation" => "MysqlConnectionsSaturated",
        "nessie-commit-minio-space" => "MinioLowOnSpace",
        "cassandra-node-missing" => "CassandraNodeMissing",
        _ => "RunbookIncident",
    }
}

fn ticked(item: &str, evidence: impl Into<String>) -> CheckedItem {
    CheckedItem {
        item: item.to_string(),
        state: ItemState::Ticked {
            evidence: evidence.into(),
        },
    }
}

fn open(item: &str, reason: impl Into<String>) -> CheckedItem {
    CheckedItem {
        item: item.to_string(),
        state: ItemState::Open {
            reason: reason.into(),
        },
    }
}

fn not_applicable(item: &str, reason: impl Into<String>) -> CheckedItem {
    CheckedItem {
        item: item.to_string(),
        state: ItemState::NotApplicable {
            reason: reason.into(),
        },
    }
}

async fn alert_cleared(systems: &Systems, review: &Review) -> CheckedItem {
    let item = CHECKLIST[0];
    let Some(am) = &systems.alertmanager_http else {
        return open(item, "no Alertmanager API configured: check it by hand");
    };
    let name = alertname_of(&review.incident.record.playbook);
    let matchers = review.incident.record.key.iter().fold(
        Matchers::new().and(Matcher::equal("alertname", name)),
        |m, (k, v)| m.and(Matcher::equal(k.clone(), v.clone())),
    );
    let client = AlertmanagerClient::new(
        am.clone(),
        rb_core::Target::new("alertmanager", "alertmanager-main"),
    );
    match client.still_active(&matchers).await {
        Ok(None) => ticked(
            item,
            format!("Alertmanager has no active {name} alert for this key"),
        ),
        Ok(Some(alerts)) => open(
            item,
            format!(
                "{} {name} alert(s) still active (fingerprint {})",
                alerts.len(),
                alerts[0].fingerprint
            ),
        ),
        Err(e) => open(item, format!("Alertmanager could not be asked: {e}")),
    }
}

fn fixed_at(review: &Review) -> Option<Timestamp> {
    review
        .incident
        .timeline
        .iter()
        .filter(|e| matches!(e.event, rb_core::Event::Finished { .. }))
        .map(|e| e.at)
        .max()
}

async fn checkpoint_updated(systems: &Systems, review: &Review) -> CheckedItem {
    let item = CHECKLIST[1];
    let pb = review.incident.record.playbook.as_str();
    if pb != "kafka-backlog" && pb != "flink-restarting" {
        return not_applicable(item, "no Flink job involved");
    }
    let Some(fixed) = fixed_at(review) else {
        return open(item, "no remediation was applied");
    };
    let overview = match systems
        .flink_http
        .send(HttpRequest::get("/jobs/overview"))
        .await
    {
        Ok(r) if r.is_success() => serde_json::from_slice::<serde_json::Value>(&r.body).ok(),
        _ => None,
    };
    let Some(jobs) = overview.and_then(|o| o["jobs"].as_array().cloned()) else {
        return open(item, "Flink's /jobs/overview could not be read");
    };
    for job in jobs.iter().filter(|j| j["state"] == "RUNNING") {
        let Some(jid) = job["jid"].as_str() else {
            continue;
        };
        let path = format!("/jobs/{jid}/checkpoints");
        let Ok(resp) = systems.flink_http.send(HttpRequest::get(path)).await else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&resp.body) else {
            continue;
        };
        let latest = &v["latest"]["completed"];
        if let Some(ts) = latest["latest_ack_timestamp"].as_u64() {
            if ts >= fixed.as_millis() {
                return ticked(
                    item,
                    format!(
                        "checkpoint {} of job {jid} completed at {} (after the fix at {})",
                        latest["id"],
                        Timestamp(ts).rfc3339(),
                        fixed.rfc3339()
                    ),
                );
            }
        }
    }
    open(
        item,
        format!(
            "no checkpoint of a running job completed after the fix at {}",
            fixed.rfc3339()
        ),
    )
}

async fn data_cross_checked(systems: &Systems) -> CheckedItem {
    let item = CHECKLIST[2];
    let probe = TrinoSql::new(
        systems.trino_http.clone(),
        systems.trino.clone(),
        "rb",
        CROSS_CHECK_SQL,
    )
    .max_rows(5);
    let ctx = ProbeContext::with_timeout(
        rb_core::time::Clock::system(),
        std::time::Duration::from_secs(30),
    );
    match probe.observe(&ctx).await {
        Ok(obs) => match obs.facts.get::<TrinoSqlResult>() {
            Some(Ok(r)) => {
                let cols: Vec<&str> = r.columns.iter().map(|c| c.name.as_str()).collect();
                let rows: Vec<String> = r
                    .rows
                    .iter()
                    .map(|row| {
                        row.iter()
                            .map(|v| v.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .collect();
                ticked(
                    item,
                    format!(
                        "Trino query {}: {CROSS_CHECK_SQL} → ({}) = ({})",
                        r.query_id,
                        cols.join(", "),
                        rows.join("; ")
                    ),
                )
            }
            _ => open(item, "the Trino query returned no result"),
        },
        Err(e) => open(item, format!("the Trino query failed: {e}")),
    }
}

/// Check every item of seed §6 for a closed incident: ask Alertmanager, Flink and Trino, resolve
/// the ITSM ticket, and name where the review is stored (`out_dir`).
pub async fn check(
    systems: &Systems,
    review: &Review,
    ticket: Option<&str>,
    tickets: &dyn TicketSink,
    out_dir: &Path,
) -> Vec<CheckedItem> {
    let record = &review.incident.record;
    let ticket_item = match ticket {
        None => open(CHECKLIST[3], "no ticket was opened"),
        Some(t) => match tickets.resolve(t, record).await {
            Ok(()) => ticked(CHECKLIST[3], format!("ticket {t} resolved")),
            Err(e) => open(CHECKLIST[3], format!("ticket {t} not resolved: {e}")),
        },
    };
    vec![
        alert_cleared(systems, review).await,
        checkpoint_updated(systems, review).await,
        data_cross_checked(systems).await,
        ticket_item,
        ticked(
            CHECKLIST[4],
            format!(
                "review stored at {}",
                review_path(out_dir, record, "md").display()
            ),
        ),
    ]
}

/// Where the review of `record` is written (`<out>/<incident id>.<ext>`).
pub fn review_path(out_dir: &Path, record: &IncidentRecord, ext: &str) -> PathBuf {
    out_dir.join(format!("{}.{ext}", record.id))
}

/// Write the review as Markdown (with each checklist item ticked with its evidence, or left open
/// with the reason) and as JSON (with a `checklist_checked` list).
pub fn write_review(
    review: &Review,
    items: &[CheckedItem],
    out_dir: &Path,
) -> Result<(), (PathBuf, std::io::Error)> {
    let record = &review.incident.record;
    let mut md = review.to_markdown();
    for c in items {
        let line = format!("- [ ] {}", md_item(&c.item));
        let new = match &c.state {
            ItemState::Ticked { evidence } => {
                format!("- [x] {} — {}", md_item(&c.item), md_item(evidence))
            }
            ItemState::Open { reason } => {
                format!("- [ ] {} — _open:_ {}", md_item(&c.item), md_item(reason))
            }
            ItemState::NotApplicable { reason } => {
                format!(
                    "- [x] {} — _not applicable:_ {}",
                    md_item(&c.item),
                    md_item(reason)
                )
            }
        };
        md = md.replacen(&line, &new, 1);
    }
    let path = review_path(out_dir, record, "md");
    std::fs::write(&path, md).map_err(|e| (path.clone(), e))?;
    let mut json: serde_json::Value =
        serde_json::from_str(&review.to_json()).unwrap_or(serde_json::Value::Null);
    if let Some(obj) = json.as_object_mut() {
        obj.insert(
            "checklist_checked".into(),
            serde_json::to_value(items).unwrap_or_default(),
        );
    }
    let path = review_path(out_dir, record, "json");
    let text = serde_json::to_string_pretty(&json).unwrap_or_else(|_| review.to_json());
    std::fs::write(&path, text).map_err(|e| (path.clone(), e))?;
    Ok(())
}

/// A fake ITSM webhook for the scripted day and the tests: `POST /tickets` answers
/// `{"id": "ITSM-<n>"}` (201), `POST /tickets/<id>/resolve` answers 200 (404 for an unknown id).
/// Requests are recorded by the underlying [`FakeHttp`](rb_testkit::http::FakeHttp).
pub async fn start_fake_itsm() -> std::io::Result<rb_testkit::http::FakeHttp> {
    use axum::extract::{Path as AxPath, State};
    use axum::http::StatusCode;
    use axum::routing::post;
    use axum::{Json, Router};
    use std::sync::Mutex;
    type Tickets = Arc<Mutex<Vec<String>>>;
    async fn create(State(t): State<Tickets>) -> (StatusCode, Json<serde_json::Value>) {
        let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
        let id = format!("ITSM-{}", 1001 + t.len());
        t.push(id.clone());
        (StatusCode::CREATED, Json(serde_json::json!({ "id": id })))
    }
    async fn resolve(State(t): State<Tickets>, AxPath(id): AxPath<String>) -> StatusCode {
        let known = t.lock().unwrap_or_else(|e| e.into_inner()).contains(&id);
        if known {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        }
    }
    let router = Router::new()
        .route("/tickets", post(create))
        .route("/tickets/{id}/resolve", post(resolve))
        .with_state(Tickets::default());
    rb_testkit::http::FakeHttp::start(router).await
}
