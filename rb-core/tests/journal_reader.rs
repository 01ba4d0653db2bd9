//! The journal reader: list, events and review of a journal written by an engine, with no engine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::*;
use rb_core::journal::reader::{self, Status};
use rb_core::journal::{Journal, MemoryJournal, MAINTENANCE};
use rb_core::policy::{AutoApprove, MaintenanceWindow, SafetyPolicy};
use rb_core::prelude::*;
use rb_core::{ErrorKind, Resolution};

fn runbook(g: &Gauge, rem: &Recorder) -> Runbook {
    Runbook::new("t")
        .checklist(vec!["Lag back under 1000 on every partition.".into()])
        .playbook(backlog(g, vec![rem.arc()]).review_item("Why did the backlog grow?"))
}

/// An engine on `journal`: one incident resolved, one left open, a maintenance window.
async fn write(journal: Arc<dyn Journal>) -> (String, String) {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("flink.rescale", Risk::Safe, vec![kafka()]);
    let engine = Engine::builder(runbook(&g, &rem))
        .journal(journal)
        .clock(clock())
        .approver(Arc::new(AutoApprove))
        .policy(SafetyPolicy {
            cooldown: secs(0),
            ..SafetyPolicy::default()
        })
        .build()
        .await
        .unwrap();
    run(&engine, mins(3), secs(30)).await;
    let first = engine.open_incidents().await.pop().unwrap();
    g.set(0.0);
    run(&engine, mins(7), secs(30)).await;
    assert!(engine.open_incidents().await.is_empty());
    g.set(12_000.0);
    run(&engine, mins(3), secs(30)).await;
    let second = engine.open_incidents().await.pop().unwrap();
    engine
        .maintenance(MaintenanceWindow::new(
            "flink-main",
            Timestamp(1_795_600_000_000),
            "ana",
            "Flink upgrade, CHG-1234",
        ))
        .await
        .unwrap();
    (first, second)
}

async fn check(journal: &dyn Journal, first: &str, second: &str) {
    let list = reader::list(journal).await.unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0].id, first);
    assert_eq!(list[0].playbook, "kafka-backlog");
    assert_eq!(list[0].target, "kafka/kafka-main");
    assert_eq!(
        list[0].status,
        Status::Closed {
            resolution: Resolution::Recovered
        }
    );
    assert!(list[0].opened_at < list[1].opened_at);
    assert_eq!(list[1].id, second);
    assert_eq!(list[1].status, Status::Open);
    let text = list[0].to_string();
    assert!(
        text.contains(first) && text.contains("closed (recovered)"),
        "{text}"
    );
    assert!(list[1].to_string().contains("open"));

    let lines = reader::events(journal, first).await.unwrap();
    assert_eq!(lines.len(), list[0].events);
    assert!(lines[0].contains("Incident opened"), "{}", lines[0]);
    assert!(lines[0].starts_with("2026-11-25T07:"), "{}", lines[0]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Step 0 flink.rescale done")),
        "{lines:#?}"
    );
    assert!(lines.last().unwrap().contains("Closed: recovered"));
    let maint = reader::events(journal, MAINTENANCE).await.unwrap();
    assert_eq!(maint.len(), 1);
    assert!(maint[0].contains("Maintenance window on flink-main") && maint[0].contains("CHG-1234"));

    // with the runbook: the same review the engine would write
    let g = Gauge::new(kafka(), "records_lag_max", 0.0);
    let rem = Recorder::new("flink.rescale", Risk::Safe, vec![kafka()]);
    let rb = runbook(&g, &rem);
    let full = reader::review(journal, first, Some(&rb)).await.unwrap();
    assert!(full.missing.is_empty());
    let md = full.to_markdown();
    assert!(md.contains(&format!("# {first}")), "{md}");
    assert!(md.contains("| Status | Recovered |"), "{md}");
    assert!(
        md.contains("- [ ] Lag back under 1000 on every partition."),
        "{md}"
    );
    assert!(md.contains("Why did the backlog grow?"), "{md}");
    assert!(!md.contains("Not in this rendering"));
    assert_eq!(full.review.actions.len(), 1);
    assert_eq!(full.review.actions[0].status, "applied");

    // without it: what the journal holds, and a note on what is missing
    let bare = reader::review(journal, first, None).await.unwrap();
    assert_eq!(bare.missing.len(), 2);
    assert!(bare.review.checklist.is_empty() && bare.review.review_items.is_empty());
    let md = bare.to_markdown();
    assert!(md.contains("| Status | Recovered |"));
    assert!(md.contains("## Not in this rendering"));
    assert!(md.contains("post-recovery checklist"));
    assert!(!md.contains("Why did the backlog grow?"));
    let json: serde_json::Value = serde_json::from_str(&bare.to_json()).unwrap();
    assert_eq!(json["incident"]["record"]["id"], first);
    assert_eq!(json["missing"].as_array().unwrap().len(), 2);
    let json: serde_json::Value = serde_json::from_str(&full.to_json()).unwrap();
    assert!(json.get("missing").is_none());
    assert_eq!(
        json["checklist"][0],
        "Lag back under 1000 on every partition."
    );

    // an id the journal does not hold is an error value naming it
    let e = reader::review(journal, "INC-nope", None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message.contains("INC-nope"));
}

#[tokio::test(start_paused = true)]
async fn the_reader_lists_shows_and_reviews_a_memory_journal() {
    let j = Arc::new(MemoryJournal::new());
    let (first, second) = write(j.clone()).await;
    check(j.as_ref(), &first, &second).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(start_paused = true)]
async fn the_reader_opens_an_engines_sqlite_file_read_only_with_no_engine() {
    use rb_core::journal::SqliteJournal;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let j = Arc::new(SqliteJournal::open(&path).await.unwrap());
    let (first, second) = write(j.clone()).await;
    j.close().await;
    let before = std::fs::read(&path).unwrap();

    let r = reader::open_sqlite(&path).await.unwrap();
    check(&r, &first, &second).await;
    // read-only: a write is refused, the file is as the engine left it
    let e = r
        .append(
            "INC-x",
            Timestamp(0),
            &rb_core::Event::Note { text: "x".into() },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Storage);
    r.close().await;
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // a missing file is an error, and is not created
    let missing = dir.path().join("nope.db");
    let e = reader::open_sqlite(&missing).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(!missing.exists());
}
