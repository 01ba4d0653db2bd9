//! What the situation tests share: the lakehouse, an engine on a memory journal with only the
//! playbooks under test, and readers of the incident's journal.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use rb_core::incident::StepState;
use rb_core::journal::{Event, MemoryJournal};
use rb_core::prelude::*;
use rb_core::Incident;
use rb_examples::lakehouse::{self, Credentials, Endpoints, Systems, Timings};
use rb_testkit::lakehouse::FakeLakehouse;

/// The lakehouse and the systems pointed at it (seed timings).
pub async fn lake() -> (FakeLakehouse, Systems) {
    let lake = FakeLakehouse::start()
        .await
        .expect("the fake lakehouse starts");
    let systems = Systems::new(
        Endpoints::from_fake(&lake),
        Credentials::default(),
        Timings::seed(),
    )
    .expect("the systems build");
    (lake, systems)
}

/// An engine running only `playbooks`, auto-approving, on a memory journal; `dry_run` as told.
pub async fn engine(playbooks: Vec<Playbook>, dry_run: bool) -> Engine {
    engine_with(playbooks, dry_run, Arc::new(AutoApprove)).await
}

/// Like [`engine`], with a scripted on-call engineer who grants every request at once: unlike
/// the automatic approver, a human may grant destructive steps (a Nessie assign).
pub async fn engine_with_human(playbooks: Vec<Playbook>, dry_run: bool) -> Engine {
    let human = rb_core::policy::CallbackApprover::new(Duration::from_secs(600), |_req| async {
        rb_core::policy::Decision::Granted {
            by: "scripted on-call".into(),
        }
    });
    engine_with(playbooks, dry_run, Arc::new(human)).await
}

async fn engine_with(
    playbooks: Vec<Playbook>,
    dry_run: bool,
    approver: Arc<dyn rb_core::policy::Approver>,
) -> Engine {
    let mut rb = Runbook::new(lakehouse::RUNBOOK)
        .impact(lakehouse::impact())
        .on_call(lakehouse::on_call())
        .default_role("Data Platform On-call");
    for p in playbooks {
        rb = rb.playbook(p);
    }
    Engine::builder(rb)
        .journal(Arc::new(MemoryJournal::new()))
        .approver(approver)
        // the fakes (Prometheus, Loki) stamp their answers on the system clock moved by tokio time
        .clock(Clock::system())
        .incident_id_seed(7)
        .jitter_seed(7)
        .dry_run(dry_run)
        .build()
        .await
        .expect("the engine builds")
}

/// The incidents of `playbook`.
pub async fn incidents_of(engine: &Engine, playbook: &str) -> Vec<Incident> {
    engine
        .incidents()
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.record.playbook == playbook)
        .collect()
}

/// How long after `started` (engine clock) the incident opened.
pub fn opened_after(inc: &Incident, started: Timestamp) -> Duration {
    Duration::from_millis(
        inc.record
            .opened_at
            .as_millis()
            .saturating_sub(started.as_millis()),
    )
}

/// The outcome details of step `step` when it finished ok.
pub fn outcome(inc: &Incident, step: usize) -> Option<serde_json::Value> {
    inc.timeline.iter().find_map(|e| match &e.event {
        Event::Finished {
            step: s,
            ok: true,
            outcome: Some(o),
            ..
        } if *s == step => Some(o.details.clone()),
        _ => None,
    })
}

/// Whether step `step` was verified as succeeded.
pub fn verified(inc: &Incident, step: usize) -> bool {
    inc.timeline.iter().any(|e| {
        matches!(&e.event, Event::Verified { step: s, verification: Verification::Succeeded { .. }, .. } if *s == step)
    })
}

/// Whether the incident closed as recovered (every recovery check held).
pub fn recovered(inc: &Incident) -> bool {
    inc.resolution == Some(rb_core::Resolution::Recovered)
}

/// The evidence sources attached.
pub fn evidence_sources(inc: &Incident) -> Vec<String> {
    inc.evidence.iter().map(|e| e.source.clone()).collect()
}

/// Step `step`'s state.
pub fn state(inc: &Incident, step: usize) -> StepState {
    inc.step_state(step)
}

/// Why step `step` was skipped, if it was.
pub fn skipped_why(inc: &Incident, step: usize) -> Option<String> {
    inc.timeline.iter().find_map(|e| match &e.event {
        Event::Skipped {
            step: s, reason, ..
        } if *s == step => Some(reason.clone()),
        _ => None,
    })
}

/// Mutating requests of every HTTP fake of the lakehouse, as `SYSTEM METHOD /path`, except
/// Nessie's own dry runs (`isDryRun: true`: Nessie changes nothing).
pub fn mutating_requests(lake: &FakeLakehouse) -> Vec<String> {
    use rb_testkit::lakehouse::HttpSystem as H;
    let mut out = Vec::new();
    for (name, sys) in [
        ("connect", H::Connect),
        ("flink", H::Flink),
        ("nessie", H::Nessie),
        ("nessie-management", H::NessieManagement),
        ("minio", H::Minio),
        ("trino", H::Trino),
        ("prometheus", H::Prometheus),
        ("loki", H::Loki),
    ] {
        for r in lake.http(sys).requests().mutating() {
            let dry = r
                .json()
                .is_some_and(|b| b["isDryRun"].as_bool() == Some(true));
            // Loki's and Prometheus' query APIs accept POST for reads
            let read_api =
                r.path.starts_with("/loki/api/v1/query") || r.path.starts_with("/api/v1/query");
            if !dry && !read_api {
                out.push(format!("{name} {}", r.line()));
            }
        }
    }
    out
}

/// Run the engine (in steps of 5 s) until every incident of `playbook` is closed, at most `max`.
pub async fn run_until_closed(engine: &Engine, playbook: &str, max: Duration) {
    let until = tokio::time::Instant::now() + max;
    while tokio::time::Instant::now() < until {
        engine.run_for(Duration::from_secs(5)).await.unwrap();
        let incs = incidents_of(engine, playbook).await;
        if !incs.is_empty() && incs.iter().all(Incident::is_closed) {
            return;
        }
    }
}
