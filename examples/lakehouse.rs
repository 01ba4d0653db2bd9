//! The lakehouse runbook, end to end, on an embedded fake lakehouse.
//!
//! Run: `cargo run -p rb-examples --example lakehouse`
//!
//! This first version plays two situations of the seed runbook (§4 "Kafka Connect connector fails", and a
//! user's manual report) through all five phases on rb-testkit's fakes, on a virtual clock: minutes of
//! incident pass in well under a second. The other situations come with the probes, actions and lakehouse
//! issues. It writes each review (Markdown with a Mermaid timeline, and JSON) and the SQLite journal into
//! an output directory it names at the end (`RB_OUT` overrides it), and exits 0.
//!
//! The probe and the remediation below are small and written against the real Kafka Connect REST API;
//! rb-probes / rb-actions will ship hardened versions. Nothing in the playbook names a connector: the
//! incident is keyed per failed connector, and the restart reads which one from the finding.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use rb_core::journal::{Entry, Event, Journal, SqliteJournal};
use rb_core::policy::{CallbackApprover, Decision, SafetyPolicy};
use rb_core::prelude::*;
use rb_core::report::describe;
use rb_core::{ErrorKind, ImpactMap, JournalError};
use rb_testkit::http::kafka_connect::{ConnectorType, FakeKafkaConnect};
use serde_json::Value;

/// Reads `GET /connectors?expand=status` and reports, per connector, the failed task count
/// (`kafka_connect_connector_failed_task_count`) and the worker's connector count.
#[derive(Debug)]
struct ConnectStatus {
    target: Target,
    base_url: String,
    http: reqwest::Client,
}

fn http_client() -> reqwest::Client {
    // no idle-pool timer: on a paused clock it would make time jump
    reqwest::Client::builder()
        .pool_idle_timeout(None)
        .build()
        .unwrap_or_default()
}

#[async_trait]
impl Probe for ConnectStatus {
    fn id(&self) -> &str {
        "kafka_connect.status"
    }
    fn target(&self) -> &Target {
        &self.target
    }
    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let url = format!("{}/connectors?expand=status", self.base_url);
        let err =
            |kind, msg: String| ProbeError::new(self.id(), &self.target.name, &url, kind, msg);
        let resp = self
            .http
            .get(&url)
            .timeout(ctx.remaining())
            .send()
            .await
            .map_err(|e| {
                err(
                    if e.is_timeout() {
                        ErrorKind::Timeout
                    } else {
                        ErrorKind::Unreachable
                    },
                    e.to_string(),
                )
            })?;
        if !resp.status().is_success() {
            return Err(err(ErrorKind::Rejected, format!("HTTP {}", resp.status())));
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|e| err(ErrorKind::BadResponse, format!("not JSON: {e}")))?;
        let map = body.as_object().ok_or_else(|| {
            err(
                ErrorKind::BadResponse,
                "expected an object of connectors".into(),
            )
        })?;
        let mut obs = Observation::new(self.id(), &self.target.name, ctx.now());
        for (name, c) in map {
            let tasks = c["status"]["tasks"].as_array().ok_or_else(|| {
                err(
                    ErrorKind::BadResponse,
                    format!("connector {name} has no status.tasks"),
                )
            })?;
            let failed = tasks.iter().filter(|t| t["state"] == "FAILED").count();
            obs.push_sample(
                "kafka_connect_connector_failed_task_count",
                labels(&[("connector", name)]),
                failed as f64,
            );
            for t in tasks.iter().filter(|t| t["state"] == "FAILED") {
                let first = t["trace"]
                    .as_str()
                    .and_then(|s| s.lines().next())
                    .unwrap_or("")
                    .to_string();
                obs.facts.insert_json(
                    format!("kafka_connect.trace.{name}.{}", t["id"]),
                    Value::String(first),
                );
            }
        }
        obs.push_sample(
            "kafka_connect_worker_connector_count",
            Default::default(),
            map.len() as f64,
        );
        Ok(obs)
    }
}

/// Restarts a connector's failed tasks: `POST /connectors/{n}/restart?includeTasks=true&onlyFailed=true`
/// (without the parameters, Connect restarts only the connector object and the failed tasks stay FAILED).
/// Which connector: the one the incident is about (`connector` label of the offending series).
#[derive(Debug)]
struct RestartFailedTasks {
    target: Target,
    base_url: String,
    http: reqwest::Client,
}

fn connector_of(plan: &Plan) -> String {
    plan.params["connector"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[async_trait]
impl Remediation for RestartFailedTasks {
    fn id(&self) -> &str {
        "kafka_connect.restart_failed_tasks"
    }
    fn risk(&self) -> Risk {
        Risk::Disruptive
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError> {
        let connector = ctx.label("connector").ok_or_else(|| {
            RemediationError::new(
                self.id(),
                &self.target.name,
                &self.base_url,
                ErrorKind::Invalid,
                "the finding names no connector",
            )
        })?;
        Ok(Plan::new(
            self.id(),
            vec![self.target.clone()],
            format!("POST /connectors/{connector}/restart?includeTasks=true&onlyFailed=true"),
        )
        .params(serde_json::json!({ "connector": connector }))
        .expect("failed tasks go RESTARTING then RUNNING; healthy tasks are not touched"))
    }
    async fn apply(&self, plan: &Plan, ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        let url = format!(
            "{}/connectors/{}/restart?includeTasks=true&onlyFailed=true",
            self.base_url,
            connector_of(plan)
        );
        let err = |kind, msg: String| {
            RemediationError::new(self.id(), &self.target.name, &url, kind, msg)
        };
        let resp = self
            .http
            .post(&url)
            .timeout(ctx.timeout)
            .send()
            .await
            .map_err(|e| {
                err(
                    if e.is_timeout() {
                        ErrorKind::Timeout
                    } else {
                        ErrorKind::Unreachable
                    },
                    e.to_string(),
                )
            })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.as_u16() != 202 {
            return Err(err(ErrorKind::Rejected, format!("HTTP {status}: {body}")));
        }
        Ok(Outcome::new(format!(
            "202 Accepted; connector {}",
            body["connector"]["state"]
        ))
        .details(body))
    }
    async fn verify(
        &self,
        plan: &Plan,
        _o: &Outcome,
        ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        let url = format!("{}/connectors/{}/status", self.base_url, connector_of(plan));
        let err = |kind, msg: String| {
            RemediationError::new(self.id(), &self.target.name, &url, kind, msg)
        };
        for _ in 0..10 {
            let body: Value = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| err(ErrorKind::Unreachable, e.to_string()))?
                .json()
                .await
                .map_err(|e| err(ErrorKind::BadResponse, e.to_string()))?;
            let states: Vec<String> = body["tasks"]
                .as_array()
                .map(|ts| {
                    ts.iter()
                        .map(|t| t["state"].as_str().unwrap_or("?").to_string())
                        .collect()
                })
                .unwrap_or_default();
            if !states.is_empty() && states.iter().all(|s| s == "RUNNING") {
                return Ok(Verification::Succeeded {
                    evidence: format!("all {} tasks RUNNING", states.len()),
                });
            }
            tokio::time::sleep(secs(1)).await;
            let _ = ctx;
        }
        Ok(Verification::Failed {
            evidence: "tasks not RUNNING 10 s after the restart".into(),
        })
    }
}

/// A journal that prints each event as it is recorded: the terminal timeline.
#[derive(Debug)]
struct Printing<J>(J);

#[async_trait]
impl<J: Journal> Journal for Printing<J> {
    async fn append(
        &self,
        incident: &str,
        at: Timestamp,
        event: &Event,
    ) -> Result<u64, JournalError> {
        let seq = self.0.append(incident, at, event).await?;
        let marker = match event {
            Event::Phase { .. } => "▶",
            Event::Opened { .. } => "●",
            Event::Closed { .. } => "■",
            Event::Escalated { .. } => "☎",
            _ => " ",
        };
        println!(
            "{} {marker} {:<40} {}",
            &at.rfc3339()[11..19],
            incident,
            describe(event)
        );
        Ok(seq)
    }
    async fn entries(&self, incident: &str) -> Result<Vec<Entry>, JournalError> {
        self.0.entries(incident).await
    }
    async fn open_incidents(&self) -> Result<Vec<String>, JournalError> {
        self.0.open_incidents().await
    }
    async fn incidents(&self) -> Result<Vec<String>, JournalError> {
        self.0.incidents().await
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tokio::time::pause(); // virtual time: the scripted hour passes at once
    let out = match std::env::var_os("RB_OUT") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from("out").join(format!("lakehouse-{}", std::process::id())),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    // The fake lakehouse (this version: Kafka Connect).
    let connect = FakeKafkaConnect::start().await?;
    connect.add_connector("orders-cdc", ConnectorType::Source, 2)?;
    connect.add_connector("payments-sink", ConnectorType::Sink, 1)?;
    let connect_target = Target::new("kafka-connect", "connect-main");
    let http = http_client();

    let runbook = Runbook::new("lakehouse")
        .impact(
            ImpactMap::new()
                .pipeline(
                    "orders CDC → Paimon",
                    &["connect-main", "kafka-main", "flink-main"],
                )
                .pipeline("payments → Doris", &["connect-main"]),
        )
        .playbook(
            Playbook::new("kafka-connect-failed", "Kafka Connect connector fails")
                .service("orders-cdc")
                .detect(
                    Arc::new(ConnectStatus {
                        target: connect_target.clone(),
                        base_url: connect.base_url(),
                        http: http.clone(),
                    }),
                    Schedule::every(secs(30)).deadline(secs(5)),
                    metric("kafka_connect_connector_failed_task_count")
                        .max()
                        .above(0.0)
                        .for_at_least(mins(1)),
                )
                // one incident per failed connector; the restart reads which from the finding
                .incident_per(&["connector"])
                .mitigate(Arc::new(RestartFailedTasks {
                    target: connect_target.clone(),
                    base_url: connect.base_url(),
                    http: http.clone(),
                }))
                .stable_for(mins(5))
                .review_item("Was the connector config fixed before the restart? (seed §4)")
                .review_item("Should a failed-task alert page earlier?")
                .escalate_to("Kafka SME"),
        )
        .playbook(
            Playbook::new("user-report", "A user reports a fault")
                .detect_manual(Target::new("service", "dashboard"))
                .escalate_to("Data Platform On-call"),
        );

    let journal = Arc::new(Printing(SqliteJournal::open(out.join("journal.db")).await?));
    let approver = CallbackApprover::new(mins(15), |req| async move {
        println!(
            "         ? approval asked for: {} (risk {:?}) — granted by the demo's on-call",
            req.plan.description, req.risk
        );
        Decision::Granted {
            by: "on-call (demo)".into(),
        }
    });
    let dry_run = std::env::var("RB_DRY_RUN")
        .map(|v| v == "1")
        .unwrap_or(false);
    let engine = Engine::builder(runbook)
        .journal(journal)
        .approver(Arc::new(approver))
        .policy(SafetyPolicy {
            dry_run,
            ..SafetyPolicy::default()
        })
        .build()
        .await?;

    println!("rb lakehouse demo — virtual clock; dry-run: {dry_run}\n");
    // The scripted day: at 00:02 task 1 of orders-cdc fails, at 00:03 task 0 of payments-sink (two
    // incidents, each restarting its own connector); at 00:10 a user files a ticket.
    engine.run_for(mins(2)).await?;
    connect.fail_task("orders-cdc", 1, "org.apache.kafka.connect.errors.ConnectException: Debezium lost its binlog position\n\tat ...")?;
    engine.run_for(mins(1)).await?;
    connect.fail_task(
        "payments-sink",
        0,
        "org.apache.kafka.connect.errors.RetriableException: Doris stream load timed out\n\tat ...",
    )?;
    engine.run_for(mins(7)).await?;
    engine.ingest(Signal::manual(
        "user-report",
        "ITSM-4711",
        "support desk",
        "orders dashboard shows data from yesterday",
    ));
    engine.run_for(mins(20)).await?;
    for id in engine.open_incidents().await {
        // the human handling the ticket closes it
        engine.acknowledge(&id, "alice").await?;
        engine.close(&id, "alice").await?;
    }

    println!();
    for inc in engine.incidents().await? {
        let review = engine.review(&inc.record.id).await?;
        let md = out.join(format!("{}.md", inc.record.id));
        std::fs::write(&md, review.to_markdown())?;
        std::fs::write(
            out.join(format!("{}.json", inc.record.id)),
            review.to_json(),
        )?;
        let status = match &inc.resolution {
            Some(rb_core::Resolution::Recovered) => "recovered".to_string(),
            Some(rb_core::Resolution::ClosedByHuman { by }) => format!("closed by {by}"),
            Some(rb_core::Resolution::Escalated) => "escalated".to_string(),
            None => "open".to_string(),
        };
        let phases: Vec<&str> = inc.phases.iter().map(|p| p.name()).collect();
        println!(
            "{:<44} {:<16} {}",
            inc.record.id,
            status,
            phases.join(" → ")
        );
        for a in inc.applied_actions() {
            println!("{:<44} applied: {a}", "");
        }
    }
    let mutating = connect.http().requests().mutating();
    println!(
        "\nrequests that changed the fake lakehouse: {}",
        mutating.len()
    );
    for r in &mutating {
        println!("  {}", r.line());
    }
    println!("\nreports and journal: {}", out.display());
    Ok(())
}
