//! Seed §4 "Kafka Connect connector fails" on the fake lakehouse: detected per connector, restarted
//! with its failed tasks, recovered; a connector paused on purpose opens nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use rb_core::policy::{CallbackApprover, Decision, SafetyPolicy};
use rb_core::{Engine, MemoryJournal, Resolution, Runbook};
use rb_examples::lakehouse::situations::{connect_failed, play, Scene};
use rb_examples::lakehouse::{Credentials, Endpoints, Systems, Timings};
use rb_testkit::lakehouse::{FakeLakehouse, CDC_CONNECTOR, SINK_CONNECTOR};

async fn engine(lake: &FakeLakehouse, dry_run: bool) -> Engine {
    let systems = Systems::new(
        Endpoints::from_fake(lake),
        Credentials::default(),
        Timings::seed(),
    )
    .expect("clients");
    let mut runbook = Runbook::new("lakehouse");
    for p in connect_failed::playbooks(&systems) {
        runbook = runbook.playbook(p);
    }
    Engine::builder(runbook)
        .journal(Arc::new(MemoryJournal::new()))
        // a scripted human on call: approves what is asked (the restart after a fix needs a human)
        .approver(Arc::new(CallbackApprover::new(
            Duration::from_secs(900),
            |_req| async {
                Decision::Granted {
                    by: "on-call (scripted)".into(),
                }
            },
        )))
        .policy(SafetyPolicy {
            dry_run,
            ..SafetyPolicy::default()
        })
        .build()
        .await
        .expect("engine")
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failed_connector_is_detected_restarted_and_recovers() {
    let lake = FakeLakehouse::start().await.expect("lakehouse");
    let engine = engine(&lake, false).await;
    engine
        .run_for(Duration::from_secs(60))
        .await
        .expect("warm up");
    let scene = connect_failed::ConnectorFails::orders_cdc();
    let t = play(
        &scene,
        &lake,
        &engine,
        Duration::from_secs(30),
        Duration::from_secs(3600),
    )
    .await
    .expect("scene");
    assert!(
        t < Duration::from_secs(3600),
        "the connector never ran again"
    );
    // let recovery hold for the stability window
    engine.run_for(Duration::from_secs(400)).await.expect("run");

    let incidents = engine.incidents().await.expect("incidents");
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let inc = &incidents[0];
    let expect = scene.expect().expect("a real situation");
    assert!(expect.matches(inc), "{:?}", inc.record);
    let v = inc.record.violated.as_ref().expect("violated metric");
    assert_eq!(v.name, connect_failed::FAILED_TASKS);
    assert_eq!(v.value, 2.0, "both tasks of orders-cdc failed");
    let story: Vec<String> = inc
        .timeline
        .iter()
        .map(|e| format!("{} {}", e.at.rfc3339(), rb_core::report::describe(&e.event)))
        .collect();
    assert_eq!(
        inc.resolution,
        Some(Resolution::Recovered),
        "{}",
        story.join("\n")
    );
    assert!(
        !inc.evidence.is_empty(),
        "diagnosis attached the status and the logs"
    );
    let restarts = lake
        .connect()
        .http()
        .requests()
        .matching("POST", "/connectors/*/restart");
    assert_eq!(restarts.len(), 1, "{restarts:#?}");
    assert_eq!(
        restarts[0].path,
        format!("/connectors/{CDC_CONNECTOR}/restart")
    );
    assert_eq!(
        restarts[0].query.as_deref(),
        Some("includeTasks=true&onlyFailed=true")
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_connector_paused_on_purpose_opens_nothing() {
    let lake = FakeLakehouse::start().await.expect("lakehouse");
    let engine = engine(&lake, false).await;
    let scene = connect_failed::ConnectorPaused {
        connector: SINK_CONNECTOR.to_string(),
        for_how_long: Duration::from_secs(900),
    };
    play(
        &scene,
        &lake,
        &engine,
        Duration::from_secs(30),
        Duration::from_secs(3600),
    )
    .await
    .expect("scene");
    engine.run_for(Duration::from_secs(600)).await.expect("run");
    let incidents = engine.incidents().await.expect("incidents");
    assert!(incidents.is_empty(), "{incidents:#?}");
    assert!(
        lake.connect().http().requests().mutating().len() <= 2,
        "only the pause and resume"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn dry_run_sends_no_mutating_request() {
    let lake = FakeLakehouse::start().await.expect("lakehouse");
    let engine = engine(&lake, true).await;
    let scene = connect_failed::ConnectorFails::orders_cdc();
    play(
        &scene,
        &lake,
        &engine,
        Duration::from_secs(30),
        Duration::from_secs(900),
    )
    .await
    .expect("scene");
    let incidents = engine.incidents().await.expect("incidents");
    assert_eq!(incidents.len(), 1);
    assert!(incidents[0].applied_actions().is_empty());
    assert!(
        lake.connect().http().requests().mutating().is_empty(),
        "{}",
        lake.connect().http().requests().describe()
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_configuration_error_waits_for_a_human_fix_then_restarts() {
    let lake = FakeLakehouse::start().await.expect("lakehouse");
    let engine = engine(&lake, false).await;
    let scene = connect_failed::ConnectorMisconfigured::payments_sink();
    let t = play(
        &scene,
        &lake,
        &engine,
        Duration::from_secs(30),
        Duration::from_secs(3600),
    )
    .await
    .expect("scene");
    let story = story(&engine).await;
    assert!(
        t < Duration::from_secs(3600),
        "the connector never ran again:\n{story}"
    );
    engine.run_for(Duration::from_secs(400)).await.expect("run");
    let incidents = engine.incidents().await.expect("incidents");
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let inc = &incidents[0];
    assert!(scene.expect().unwrap().matches(inc));
    assert_eq!(
        inc.applied_actions(),
        vec!["kafka_connect.restart_after_fix".to_string()]
    );
    assert!(inc
        .timeline
        .iter()
        .any(|e| matches!(&e.event, rb_core::Event::TaskDone { .. })));
    assert_eq!(inc.resolution, Some(Resolution::Recovered));
    // no automatic restart before the fix: exactly one restart request
    let restarts = lake
        .connect()
        .http()
        .requests()
        .matching("POST", "/connectors/*/restart");
    assert_eq!(restarts.len(), 1, "{restarts:#?}");
    assert_eq!(
        restarts[0].path,
        format!("/connectors/{SINK_CONNECTOR}/restart")
    );
}

async fn story(engine: &Engine) -> String {
    let mut out = Vec::new();
    for inc in engine.incidents().await.expect("incidents") {
        for e in &inc.timeline {
            out.push(format!(
                "{} {} {}",
                e.at.rfc3339(),
                inc.record.id,
                rb_core::report::describe(&e.event)
            ));
        }
    }
    out.join("\n")
}
