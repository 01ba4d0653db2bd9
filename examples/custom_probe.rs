//! A probe for a system rb does not ship, used in a playbook.
//!
//! Run: `cargo run -p rb-examples --example custom_probe`
//!
//! The system: `invoice-exporter`, an in-house service whose workers drain a queue of invoices. It
//! publishes its state on `GET /health` as JSON. A small fake of it runs inside this example on
//! 127.0.0.1 (an axum router hosted by rb-testkit's `FakeHttp`, which adds fault injection and a
//! record of requests), on tokio's paused clock, so the scripted quarter of an hour passes in well
//! under a second.
//!
//! What the example shows:
//! 1. the probe, written against `rb_core::Probe`: one request under the engine's deadline; every
//!    failure a typed `ProbeError` naming the target, the endpoint and the cause; a service that
//!    cannot say how deep its queue is gives an error, never "healthy" (unknown ≠ healthy);
//! 2. the probe under faults (a hang past the deadline, a 503, a malformed body, a service that is
//!    still starting), printed;
//! 3. a playbook: the symptom (queue deeper than 1,000 for two minutes), a remediation that
//!    restarts the crashed workers, recovery over a stability window — run by the engine on the
//!    virtual clock, with the incident's timeline printed at the end.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context as _};
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use rb_core::report::describe;
use rb_core::{prelude::*, Resolution};
use rb_testkit::http::{FakeHttp, Fault};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

// ------------------------------------------------------------------------------------------------
// The probe
// ------------------------------------------------------------------------------------------------

/// What `GET /health` of invoice-exporter answers.
#[derive(Debug, Deserialize)]
struct Health {
    /// `ok`, `degraded` or `starting`.
    status: String,
    /// Absent while the service starts.
    queue: Option<QueueHealth>,
    /// Absent on old versions.
    workers: Option<Workers>,
}

#[derive(Debug, Deserialize)]
struct QueueHealth {
    name: String,
    depth: u64,
    oldest_age_seconds: f64,
}

#[derive(Debug, Deserialize)]
struct Workers {
    running: u32,
    wanted: u32,
}

/// Reads invoice-exporter's `/health`: queue depth and age, workers running and wanted.
///
/// | metric | labels |
/// | --- | --- |
/// | `invoice_queue_depth` | `queue` |
/// | `invoice_queue_oldest_age_seconds` | `queue` |
/// | `invoice_workers_running`, `invoice_workers_wanted` | — |
#[derive(Debug)]
struct InvoiceExporterHealth {
    target: Target,
    url: String,
    http: reqwest::Client,
}

impl InvoiceExporterHealth {
    fn new(target: Target, base_url: &str, http: reqwest::Client) -> Self {
        Self {
            target,
            url: format!("{base_url}/health"),
            http,
        }
    }

    fn error(&self, kind: ErrorKind, message: impl Into<String>) -> ProbeError {
        ProbeError::new(self.id(), &self.target.name, &self.url, kind, message)
    }

    /// One `GET /health`: its status and body.
    async fn fetch(&self) -> Result<(reqwest::StatusCode, Vec<u8>), ProbeError> {
        let resp = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| self.error(ErrorKind::Unreachable, format!("GET /health: {e}")))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| {
            self.error(ErrorKind::BadResponse, format!("the answer broke off: {e}"))
        })?;
        Ok((status, body.to_vec()))
    }
}

#[async_trait]
impl Probe for InvoiceExporterHealth {
    fn id(&self) -> &str {
        "acme.invoice_exporter.health"
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        // The deadline is the engine's (the schedule's `deadline`): the whole exchange, connect to
        // last byte, must fit in it.
        let budget = ctx.remaining();
        let (status, body) = match tokio::time::timeout_at(ctx.deadline, self.fetch()).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(ProbeError::timeout(
                    self.id(),
                    &self.target.name,
                    &self.url,
                    budget,
                ))
            }
        };
        let snippet = || String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        match status.as_u16() {
            200 => {}
            401 | 403 => {
                return Err(self.error(ErrorKind::Unauthorized, format!("HTTP {status}")));
            }
            _ => {
                return Err(self.error(ErrorKind::Rejected, format!("HTTP {status}: {}", snippet())))
            }
        }
        let health: Health = serde_json::from_slice(&body).map_err(|e| {
            self.error(
                ErrorKind::BadResponse,
                // serde_json's message ends with the line and column
                format!("not the health JSON: {e} (body starts {:?})", snippet()),
            )
        })?;
        // Unknown is never healthy: without a queue depth there is nothing to judge, so this is
        // an error (the engine counts the probe as blind), not an observation of an empty queue.
        let Some(queue) = health.queue else {
            return Err(self.error(
                ErrorKind::Rejected,
                format!(
                    "the service reports status {:?} and no queue depth",
                    health.status
                ),
            ));
        };
        let q = labels(&[("queue", &queue.name)]);
        let mut obs = Observation::new(self.id(), &self.target.name, ctx.now())
            .sample("invoice_queue_depth", q.clone(), queue.depth as f64)
            .sample(
                "invoice_queue_oldest_age_seconds",
                q,
                queue.oldest_age_seconds,
            );
        match health.workers {
            Some(w) => {
                obs.push_sample(
                    "invoice_workers_running",
                    Default::default(),
                    f64::from(w.running),
                );
                obs.push_sample(
                    "invoice_workers_wanted",
                    Default::default(),
                    f64::from(w.wanted),
                );
            }
            // a partial view is an incomplete observation, not a complete one with zeros
            None => obs.mark_incomplete("the answer has no workers section"),
        }
        Ok(obs)
    }
}

// ------------------------------------------------------------------------------------------------
// The remediation
// ------------------------------------------------------------------------------------------------

/// Restarts crashed workers: `POST /admin/workers/restart`. Plans from the live `/health` (nothing
/// to do when every wanted worker runs), verifies that they all run again.
#[derive(Debug)]
struct RestartCrashedWorkers {
    target: Target,
    base_url: String,
    http: reqwest::Client,
}

impl RestartCrashedWorkers {
    fn error(&self, kind: ErrorKind, message: impl Into<String>) -> RemediationError {
        RemediationError::new(self.id(), &self.target.name, &self.base_url, kind, message)
    }

    async fn workers(&self) -> Result<(u32, u32, u64), RemediationError> {
        let h: serde_json::Value = self
            .http
            .get(format!("{}/health", self.base_url))
            .send()
            .await
            .map_err(|e| self.error(ErrorKind::Unreachable, e.to_string()))?
            .json()
            .await
            .map_err(|e| self.error(ErrorKind::BadResponse, e.to_string()))?;
        let n = |p: &str| h.pointer(p).and_then(serde_json::Value::as_u64);
        match (
            n("/workers/running"),
            n("/workers/wanted"),
            n("/queue/depth"),
        ) {
            (Some(r), Some(w), Some(d)) => Ok((
                u32::try_from(r).unwrap_or(u32::MAX),
                u32::try_from(w).unwrap_or(u32::MAX),
                d,
            )),
            _ => Err(self.error(
                ErrorKind::BadResponse,
                format!("/health has no workers or queue depth: {h}"),
            )),
        }
    }
}

#[async_trait]
impl Remediation for RestartCrashedWorkers {
    fn id(&self) -> &str {
        "acme.invoice_exporter.restart_workers"
    }
    fn risk(&self) -> Risk {
        Risk::Disruptive
    }
    fn idempotent(&self) -> bool {
        true // restarting workers that already run does nothing
    }
    fn verify_within(&self) -> Duration {
        mins(1)
    }

    async fn plan(&self, _ctx: &ActionContext) -> Result<Plan, RemediationError> {
        let (running, wanted, _) = self.workers().await?;
        if running >= wanted {
            return Ok(Plan::nothing_to_do(
                self.id(),
                format!("all {wanted} workers run"),
            ));
        }
        Ok(Plan::new(
            self.id(),
            vec![self.target.clone()],
            format!(
                "POST /admin/workers/restart ({} of {wanted} workers down)",
                wanted - running
            ),
        )
        .expect("every wanted worker runs again; the queue drains"))
    }

    async fn apply(&self, _plan: &Plan, ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        let resp = self
            .http
            .post(format!("{}/admin/workers/restart", self.base_url))
            .timeout(ctx.timeout)
            .send()
            .await
            .map_err(|e| {
                // sent, answer lost: it may have happened — the engine will not re-run it blindly
                self.error(ErrorKind::OutcomeUnknown, e.to_string())
            })?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        if status.as_u16() != 202 {
            return Err(self.error(ErrorKind::Rejected, format!("HTTP {status}: {body}")));
        }
        Ok(Outcome::new(format!("202 Accepted: {body}")).details(body))
    }

    async fn verify(
        &self,
        _plan: &Plan,
        _outcome: &Outcome,
        _ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        let (running, wanted, depth) = self.workers().await?;
        Ok(if running >= wanted {
            Verification::Succeeded {
                evidence: format!("{running}/{wanted} workers running, queue depth {depth}"),
            }
        } else {
            Verification::Inconclusive {
                why: format!("{running}/{wanted} workers running"),
            }
        })
    }
}

// ------------------------------------------------------------------------------------------------
// The fake invoice-exporter (lives in the example; on tokio's clock)
// ------------------------------------------------------------------------------------------------

/// Invoices arriving per second.
const INFLOW: f64 = 40.0;
/// Invoices one worker exports per second.
const PER_WORKER: f64 = 15.0;

#[derive(Debug)]
struct Exporter {
    depth: f64,
    running: u32,
    wanted: u32,
    at: Instant,
}

impl Exporter {
    /// Bring the queue up to now: inflow minus what the running workers drain.
    fn advance(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.depth = (self.depth + (INFLOW - f64::from(self.running) * PER_WORKER) * dt).max(0.0);
    }
}

type Shared = Arc<Mutex<Exporter>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Exporter> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn health(State(s): State<Shared>) -> Json<serde_json::Value> {
    let mut e = lock(&s);
    e.advance();
    let depth = e.depth.round();
    Json(json!({
        "status": if e.running < e.wanted { "degraded" } else { "ok" },
        "queue": {
            "name": "invoices",
            "depth": depth as u64,
            "oldest_age_seconds": ((depth / INFLOW) * 10.0).round() / 10.0,
        },
        "workers": { "running": e.running, "wanted": e.wanted },
    }))
}

async fn restart_workers(
    State(s): State<Shared>,
) -> (axum::http::StatusCode, Json<serde_json::Value>) {
    let mut e = lock(&s);
    e.advance();
    let restarted = e.wanted - e.running;
    e.running = e.wanted;
    (
        axum::http::StatusCode::ACCEPTED,
        Json(json!({ "restarted": restarted })),
    )
}

async fn start_fake() -> anyhow::Result<(FakeHttp, Shared)> {
    let state: Shared = Arc::new(Mutex::new(Exporter {
        depth: 0.0,
        running: 4,
        wanted: 4,
        at: Instant::now(),
    }));
    let router = Router::new()
        .route("/health", get(health))
        .route("/admin/workers/restart", post(restart_workers))
        .with_state(state.clone());
    Ok((FakeHttp::start(router).await?, state))
}

// ------------------------------------------------------------------------------------------------
// The run
// ------------------------------------------------------------------------------------------------

fn http_client() -> anyhow::Result<reqwest::Client> {
    // no idle-pool timer: on a paused clock it would make time jump
    Ok(reqwest::Client::builder().pool_idle_timeout(None).build()?)
}

fn clock_of(t: Timestamp) -> String {
    t.rfc3339()[11..19].to_string()
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> anyhow::Result<()> {
    let (fake, state) = start_fake().await?;
    let target = Target::new("invoice-exporter", "invoice-exporter-eu1");
    let http = http_client()?;
    let probe = Arc::new(InvoiceExporterHealth::new(
        target.clone(),
        &fake.base_url(),
        http.clone(),
    ));
    let clock = Clock::system();

    println!(
        "rb custom probe — invoice-exporter on {} (virtual clock)\n",
        fake.base_url()
    );
    println!("1. the probe, healthy and under faults (deadline 2 s):");
    let ctx = || ProbeContext::with_timeout(clock, secs(2));
    let healthy = probe.observe(&ctx()).await?;
    let depth = healthy
        .samples_named("invoice_queue_depth")
        .next()
        .map(|s| s.value);
    println!(
        "   healthy             → queue depth {depth:?}, complete: {}",
        healthy.complete
    );
    ensure!(depth == Some(0.0) && healthy.complete);

    let faults: [(&str, Fault, ErrorKind); 4] = [
        ("hangs", Fault::Hang, ErrorKind::Timeout),
        ("503", Fault::Status(503), ErrorKind::Rejected),
        (
            "malformed body",
            Fault::MalformedBody,
            ErrorKind::BadResponse,
        ),
        (
            "still starting",
            Fault::StatusBody(200, r#"{"status":"starting"}"#.into()),
            ErrorKind::Rejected,
        ),
    ];
    for (name, fault, want) in faults {
        fake.faults().inject("GET", "/health", fault).times(1);
        let err = probe
            .observe(&ctx())
            .await
            .err()
            .with_context(|| format!("{name}: the probe reported healthy"))?;
        println!("   {name:<19} → {:?}: {}", err.kind(), err);
        ensure!(
            err.kind() == want,
            "{name}: {:?}, wanted {want:?}",
            err.kind()
        );
    }

    println!("\n2. the playbook, run by the engine:");
    let runbook = Runbook::new("acme")
        .on_call(OnCall::new().contact("Billing On-call", "slack:#billing-ops", mins(15)))
        .playbook(
            Playbook::new("invoice-backlog", "Invoice export falls behind")
                .service("invoicing")
                .detect(
                    probe.clone(),
                    Schedule::every(secs(30)).deadline(secs(5)),
                    metric("invoice_queue_depth")
                        .above(1_000.0)
                        .for_at_least(mins(2))
                        .clears_below(200.0),
                )
                .mitigate(Arc::new(RestartCrashedWorkers {
                    target: target.clone(),
                    base_url: fake.base_url(),
                    http: http.clone(),
                }))
                .stable_for(mins(3))
                .review_item("Why did three workers crash at once?")
                .escalate_to("Billing On-call"),
        );
    let engine = Engine::builder(runbook)
        .approver(Arc::new(AutoApprove))
        .build()
        .await?;

    engine.run_for(mins(1)).await?;
    ensure!(
        engine.open_incidents().await.is_empty(),
        "an incident while healthy"
    );
    {
        let mut e = lock(&state);
        e.advance();
        e.running = 1; // three of four workers crash
    }
    println!("   {} three of four workers crash", clock_of(clock.now()));
    engine.run_for(mins(14)).await?;

    let incidents = engine.incidents().await?;
    ensure!(incidents.len() == 1, "{} incidents", incidents.len());
    let inc = &incidents[0];
    for e in &inc.timeline {
        println!("   {} {}", clock_of(e.at), describe(&e.event));
    }
    let phases: Vec<&str> = inc.phases.iter().map(|p| p.name()).collect();
    println!("\n   {}: {}", inc.record.id, phases.join(" → "));
    if let Some(v) = &inc.record.violated {
        println!(
            "   violated: {}({}) = {} {} {}",
            v.aggregation, v.name, v.value, v.comparison, v.threshold
        );
    }
    let restarts = fake.requests().matching("POST", "/admin/workers/restart");
    println!("   restarts requested: {}", restarts.len());
    ensure!(restarts.len() == 1, "{}", fake.requests().describe());
    ensure!(
        inc.resolution == Some(Resolution::Recovered),
        "resolution {:?}",
        inc.resolution
    );
    let review = engine.review(&inc.record.id).await?;
    ensure!(review.to_markdown().contains("invoice_queue_depth"));
    println!("   recovered; the review names the violated metric");
    Ok(())
}
