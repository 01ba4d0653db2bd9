//! Seed §4 "MySQL/PostgreSQL connection saturation" on the fake lakehouse: > 90 % opens an
//! incident per database with the sessions listed; 85 % opens nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use rb_core::policy::AutoApprove;
use rb_core::{Engine, MemoryJournal, Resolution, Runbook};
use rb_examples::lakehouse::situations::{db_saturation, play, Scene};
use rb_examples::lakehouse::{Credentials, Endpoints, Systems, Timings};
use rb_testkit::lakehouse::{Database, FakeLakehouse};

async fn engine(lake: &FakeLakehouse) -> Engine {
    let systems = Systems::new(
        Endpoints::from_fake(lake),
        Credentials::default(),
        Timings::seed(),
    )
    .expect("clients");
    let mut runbook = Runbook::new("lakehouse");
    for p in db_saturation::playbooks(&systems) {
        runbook = runbook.playbook(p);
    }
    Engine::builder(runbook)
        .journal(Arc::new(MemoryJournal::new()))
        .approver(Arc::new(AutoApprove))
        .build()
        .await
        .expect("engine")
}

async fn saturated(db: Database, playbook: &str) {
    let lake = FakeLakehouse::start().await.expect("lakehouse");
    let engine = engine(&lake).await;
    engine
        .run_for(Duration::from_secs(60))
        .await
        .expect("warm up");
    let scene = db_saturation::Saturated { db, percent: 95.0 };
    let t = play(
        &scene,
        &lake,
        &engine,
        Duration::from_secs(30),
        Duration::from_secs(3600),
    )
    .await
    .expect("scene");
    assert!(t < Duration::from_secs(3600), "never healed");
    // the staged human task waits a stage (15 min) and is skipped; then the stability window
    engine
        .run_for(Duration::from_secs(1500))
        .await
        .expect("run");
    let incidents = engine.incidents().await.expect("incidents");
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let inc = &incidents[0];
    assert_eq!(inc.record.playbook, playbook);
    let v = inc.record.violated.as_ref().expect("violated metric");
    assert_eq!(v.name, db_saturation::USED_PERCENT);
    assert!(v.value > 90.0 && v.value <= 100.0, "{v:?}");
    let story: Vec<String> = inc
        .timeline
        .iter()
        .map(|e| rb_core::report::describe(&e.event))
        .collect();
    assert_eq!(
        inc.resolution,
        Some(Resolution::Recovered),
        "{}",
        story.join("\n")
    );
    // the shedding step ran, and only the application's sessions idle in a transaction went
    assert_eq!(inc.applied_actions().len(), 1, "{}", story.join("\n"));
    // the diagnosis lists the sessions idle in a transaction
    let evidence = serde_json::to_string(&inc.evidence).expect("json");
    assert!(evidence.contains("idle in transaction"), "{evidence}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn postgres_saturation_is_detected_diagnosed_and_recovers() {
    saturated(Database::Postgres, db_saturation::POSTGRES).await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn mysql_saturation_is_detected_diagnosed_and_recovers() {
    saturated(Database::Mysql, db_saturation::MYSQL).await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_database_at_85_percent_opens_nothing() {
    let lake = FakeLakehouse::start().await.expect("lakehouse");
    let engine = engine(&lake).await;
    for db in [Database::Postgres, Database::Mysql] {
        let scene = db_saturation::Busy {
            db,
            percent: 85.0,
            for_how_long: Duration::from_secs(1200),
        };
        assert!(scene.expect().is_none());
        play(
            &scene,
            &lake,
            &engine,
            Duration::from_secs(30),
            Duration::from_secs(3600),
        )
        .await
        .expect("scene");
    }
    let incidents = engine.incidents().await.expect("incidents");
    assert!(incidents.is_empty(), "{incidents:#?}");
}
