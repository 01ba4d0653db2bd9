//! How a platform team unit-tests a playbook before it touches production: rb-testkit's
//! `FakeLakehouse` and tokio's paused clock.
//!
//! Run: `cargo run -p rb-examples --example testing_remediations`
//!
//! The playbook under test is the runbook's "Kafka Connect connector fails" (seed §4), built from
//! shipped parts: rb-probes' `kafka_connect::ConnectStatus` (through the real reqwest adapter) and
//! rb-actions' `kafka_connect` restart (`POST /connectors/<n>/restart?includeTasks=true&onlyFailed=true`
//! with backoff and verification). Two tests, written as a team would write them (here in `main` so
//! the example runs them; in your crate each is a `#[tokio::test(start_paused = true)]`):
//!
//! 1. **the remediation works**: bring about `connector_failed` on the fake lakehouse, tick the
//!    engine on the paused clock, assert that the incident opened for that connector with the
//!    violated metric, that the restart was requested exactly once (from the fake's request
//!    record), that it was verified and that the incident recovered;
//! 2. **dry-run touches nothing**: the same situation under `SafetyPolicy::dry_run()`: the incident
//!    opens and the restart is planned, and not one mutating request reaches the fake.
//!
//! Each prints what it checked; any failed assertion panics and the example exits non-zero.

use std::sync::Arc;
use std::time::Duration;

use rb_actions::kafka_connect::KafkaConnect;
use rb_core::journal::Event;
use rb_core::prelude::*;
use rb_core::{Incident, Resolution};
use rb_probes::kafka_connect::ConnectStatus;
use rb_probes::transport::ReqwestClient;
use rb_testkit::lakehouse::{FakeLakehouse, CDC_CONNECTOR, SINK_CONNECTOR};

/// A transient failure (the kind a restart fixes; a configuration error would be refused and go
/// to a human).
const TRANSIENT: &str = "org.apache.kafka.connect.errors.ConnectException: Exiting WorkerSourceTask due to unrecoverable exception.\n\
    Caused by: org.apache.kafka.common.errors.TimeoutException: Timeout of 60000ms expired before the position for partition orders-0 could be determined\n";

/// The playbook under test, as the team ships it: only the endpoints differ in production.
fn runbook(lake: &FakeLakehouse) -> anyhow::Result<Runbook> {
    let target = lake
        .target("connect-main")
        .ok_or_else(|| anyhow::anyhow!("the lakehouse has no connect-main"))?;
    let client = ReqwestClient::builder(lake.connect().base_url())
        .timeout(secs(10))
        .build()?;
    let probe = ConnectStatus::new(client.clone(), target.clone());
    let connect = KafkaConnect::new(Arc::new(client), target);
    Ok(Runbook::new("lakehouse").playbook(
        Playbook::new("kafka-connect-failed", "Kafka Connect connector fails")
            .service("orders-cdc")
            .detect(
                Arc::new(probe),
                Schedule::every(secs(30)).deadline(secs(5)),
                metric("kafka_connect_connector_failed_task_count")
                    .above(0.0)
                    .for_at_least(mins(1)),
            )
            .incident_per(&["connector"])
            .mitigate(Arc::new(connect.restart()))
            .stable_for(mins(2))
            .escalate_to("Kafka SME"),
    ))
}

/// Tick the engine every 30 s of virtual time for `d` (the paused clock jumps; no real waiting).
async fn tick_for(engine: &Engine, d: Duration) -> anyhow::Result<()> {
    let end = tokio::time::Instant::now() + d;
    loop {
        engine.tick().await?;
        if tokio::time::Instant::now() >= end {
            return Ok(());
        }
        tokio::time::sleep(secs(30)).await;
    }
}

fn verified(inc: &Incident) -> Option<String> {
    inc.timeline.iter().find_map(|e| match &e.event {
        Event::Verified {
            verification: Verification::Succeeded { evidence },
            ..
        } => Some(evidence.clone()),
        _ => None,
    })
}

/// Test 1: a failed connector is restarted once, verified, and recovers.
async fn a_failed_connector_is_restarted_once_and_recovers() -> anyhow::Result<()> {
    println!("test: a failed connector is restarted once and recovers");
    let lake = FakeLakehouse::start().await?;
    let engine = Engine::builder(runbook(&lake)?)
        .approver(Arc::new(AutoApprove))
        .build()
        .await?;

    // a healthy minute first: nothing may open
    tick_for(&engine, mins(1)).await?;
    assert!(engine.open_incidents().await.is_empty());
    println!("  healthy minute: no incident");

    lake.connector_failed(CDC_CONNECTOR, TRANSIENT)?;
    tick_for(&engine, mins(6)).await?;

    let incidents = engine.incidents().await?;
    assert_eq!(
        incidents.len(),
        1,
        "one incident, for the failed connector only"
    );
    let inc = &incidents[0];
    assert_eq!(
        inc.record.key.get("connector").map(String::as_str),
        Some(CDC_CONNECTOR)
    );
    let Some(violated) = inc.record.violated.as_ref() else {
        anyhow::bail!("the incident record names no violated metric");
    };
    assert_eq!(violated.name, "kafka_connect_connector_failed_task_count");
    assert!(violated.value > 0.0);
    println!(
        "  incident {} opened: {} = {} (threshold {})",
        inc.record.id, violated.name, violated.value, violated.threshold
    );

    let requests = lake.connect().http().requests();
    let restarts = requests.matching("POST", &format!("/connectors/{CDC_CONNECTOR}/restart"));
    assert_eq!(restarts.len(), 1, "{}", requests.describe());
    let restart = restarts[0].line();
    assert!(
        restart.contains("includeTasks=true") && restart.contains("onlyFailed=true"),
        "{restart}"
    );
    assert_eq!(
        requests.mutating().len(),
        1,
        "nothing else changed: {}",
        requests.describe()
    );
    assert!(requests
        .matching("POST", &format!("/connectors/{SINK_CONNECTOR}/*"))
        .is_empty());
    println!("  requested exactly once: {restart}");

    let evidence = verified(inc);
    assert!(evidence.is_some(), "the restart was verified");
    println!("  verified: {}", evidence.unwrap_or_default());
    assert_eq!(inc.resolution, Some(Resolution::Recovered));
    let phases: Vec<&str> = inc.phases.iter().map(|p| p.name()).collect();
    assert_eq!(
        phases,
        ["detect", "diagnose", "mitigate", "recover", "review"]
    );
    println!("  recovered: {}", phases.join(" → "));
    Ok(())
}

/// Test 2: in dry-run the restart is planned, never sent.
async fn in_dry_run_nothing_reaches_the_lakehouse() -> anyhow::Result<()> {
    println!("test: in dry-run nothing reaches the lakehouse");
    let lake = FakeLakehouse::start().await?;
    let engine = Engine::builder(runbook(&lake)?)
        .approver(Arc::new(AutoApprove))
        .policy(SafetyPolicy::dry_run())
        .build()
        .await?;
    lake.connector_failed(CDC_CONNECTOR, TRANSIENT)?;
    tick_for(&engine, mins(5)).await?;

    let incidents = engine.incidents().await?;
    assert_eq!(incidents.len(), 1);
    let planned: Vec<String> = incidents[0]
        .timeline
        .iter()
        .filter_map(|e| match &e.event {
            Event::Planned {
                dry_run: true,
                plan,
                ..
            } => Some(plan.description.clone()),
            _ => None,
        })
        .collect();
    assert!(!planned.is_empty(), "the restart was planned");
    println!("  planned (dry-run): {}", planned[0]);
    let mutating = lake.connect().http().requests().mutating();
    assert!(
        mutating.is_empty(),
        "a mutating request reached the fake: {mutating:?}"
    );
    println!("  mutating requests that reached the fake: 0");
    assert!(verified(&incidents[0]).is_none());
    assert_eq!(incidents[0].resolution, None, "still failed: not recovered");
    println!("  the connector is still failed, the incident stays open");
    Ok(())
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> anyhow::Result<()> {
    a_failed_connector_is_restarted_once_and_recovers().await?;
    println!();
    in_dry_run_nothing_reaches_the_lakehouse().await?;
    println!("\n2 tests passed");
    Ok(())
}
