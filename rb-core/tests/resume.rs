//! The SQLite journal survives restarts: an engine restarted on the same file resumes its open incidents
//! without repeating any step recorded as started or done.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::*;
use rb_core::escalation::EscalationReason;
use rb_core::incident::StepState;
use rb_core::journal::{Event, Journal, SqliteJournal};
use rb_core::policy::{AutoApprove, SafetyPolicy};
use rb_core::prelude::*;
use rb_core::{IncidentRecord, Phase};

async fn engine_on(path: &std::path::Path, pb: Playbook, pager: &Pager) -> Engine {
    let journal = Arc::new(SqliteJournal::open(path).await.unwrap());
    Engine::builder(Runbook::new("t").playbook(pb))
        .journal(journal)
        .clock(clock())
        .approver(Arc::new(AutoApprove))
        .policy(SafetyPolicy {
            cooldown: secs(0),
            ..SafetyPolicy::default()
        })
        .notifier(Arc::new(pager.clone()))
        .build()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_restarted_engine_resumes_and_does_not_repeat_a_done_step() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("flink.rescale", Risk::Safe, vec![kafka()]);
    let first = engine_on(&db, backlog(&g, vec![rem.arc()]), &Pager::default()).await;
    run(&first, mins(2), secs(30)).await;
    assert_eq!(rem.applied(), 1);
    let id = first.open_incidents().await.pop().unwrap();
    drop(first); // the process dies while the incident is recovering

    let rem2 = Recorder::new("flink.rescale", Risk::Safe, vec![kafka()]);
    let second = engine_on(&db, backlog(&g, vec![rem2.arc()]), &Pager::default()).await;
    assert_eq!(second.open_incidents().await, vec![id.clone()]);
    g.set(0.0);
    run(&second, mins(7), secs(30)).await;
    assert_eq!(rem2.applied(), 0, "step 0 was done before the restart");
    assert!(second.open_incidents().await.is_empty());
    let inc = second.incident(&id).await.unwrap();
    assert_eq!(inc.phases, Phase::ALL.to_vec());
    assert_eq!(inc.applied_actions(), vec!["flink.rescale"]);
    assert!(inc
        .timeline
        .iter()
        .any(|e| matches!(&e.event, Event::Note { text } if text.contains("resumed"))));
}

/// A journal as a crash mid-`apply` leaves it: step 0 done, step 1 started but never finished.
async fn crashed_mid_step(db: &std::path::Path) -> String {
    let j = SqliteJournal::open(db).await.unwrap();
    let id = "INC-20261125-070000-kafka-backlog-1".to_string();
    let at = clock().now();
    let record = IncidentRecord {
        id: id.clone(),
        fingerprint: "kafka-backlog:kafka-main".into(),
        key: Default::default(),
        playbook: "kafka-backlog".into(),
        title: "Kafka backlog grows".into(),
        service: "orders-pipeline".into(),
        opened_at: at,
        target: kafka(),
        finding: rb_core::symptom::Finding::new("lag", "lag", at),
        violated: None,
        nessie_commit: None,
        affected_pipelines: vec![],
        runbook_version: String::new(),
    };
    for ev in [
        Event::Opened {
            record: Box::new(record),
        },
        Event::Phase {
            phase: Phase::Detect,
        },
        Event::Phase {
            phase: Phase::Diagnose,
        },
        Event::Phase {
            phase: Phase::Mitigate,
        },
        Event::Started {
            step: 0,
            action: "a".into(),
            attempt: 1,
        },
        Event::Finished {
            step: 0,
            action: "a".into(),
            ok: true,
            outcome: Some(Outcome::new("ok")),
            error: None,
            error_detail: None,
            outcome_unknown: false,
        },
        Event::Started {
            step: 1,
            action: "b".into(),
            attempt: 1,
        },
    ] {
        j.append(&id, at, &ev).await.unwrap();
    }
    j.close().await;
    id
}

#[tokio::test(start_paused = true)]
async fn a_step_started_but_not_finished_is_reported_for_a_human_not_re_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let id = crashed_mid_step(&db).await;
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let (a, b, c) = (
        Recorder::new("a", Risk::Safe, vec![kafka()]),
        Recorder::new("b", Risk::Safe, vec![kafka()]),
        Recorder::new("c", Risk::Safe, vec![kafka()]),
    );
    let pager = Pager::default();
    let e = engine_on(&db, backlog(&g, vec![a.arc(), b.arc(), c.arc()]), &pager).await;
    e.tick().await.unwrap();
    assert_eq!((a.applied(), b.applied(), c.applied()), (0, 0, 0));
    let inc = e.incident(&id).await.unwrap();
    assert_eq!(inc.step_state(0), StepState::Done);
    assert_eq!(inc.step_state(1), StepState::Interrupted);
    assert_eq!(inc.step_state(2), StepState::Skipped);
    assert_eq!(pager.all()[0].reason, EscalationReason::StepInterrupted);
    assert!(pager.all()[0].message.contains("not idempotent"));
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_idempotent_step_is_applied_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let id = crashed_mid_step(&db).await;
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let (a, b) = (
        Recorder::new("a", Risk::Safe, vec![kafka()]),
        Recorder::new("b", Risk::Safe, vec![kafka()]).idempotent(),
    );
    let e = engine_on(&db, backlog(&g, vec![a.arc(), b.arc()]), &Pager::default()).await;
    e.tick().await.unwrap();
    assert_eq!((a.applied(), b.applied()), (0, 1));
    assert_eq!(
        e.incident(&id).await.unwrap().step_state(1),
        StepState::Done
    );
}

#[tokio::test(start_paused = true)]
async fn no_action_on_unknown_data_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let id = crashed_mid_step(&db).await;
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    g.fail();
    let (a, b) = (
        Recorder::new("a", Risk::Safe, vec![kafka()]),
        Recorder::new("b", Risk::Safe, vec![kafka()]).idempotent(),
    );
    let e = engine_on(&db, backlog(&g, vec![a.arc(), b.arc()]), &Pager::default()).await;
    e.tick().await.unwrap();
    assert_eq!(b.applied(), 0);
    let inc = e.incident(&id).await.unwrap();
    assert!(inc.timeline.iter().any(|e| matches!(&e.event, Event::Refused { reason, .. } if reason.starts_with("no action on unknown data"))));
}

#[tokio::test]
async fn sqlite_journal_round_trips_and_lists_open_incidents() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("j.db");
    let j = SqliteJournal::open(&db).await.unwrap();
    let id = crashed_mid_step(&dir.path().join("other.db")).await;
    let other = SqliteJournal::open(dir.path().join("other.db"))
        .await
        .unwrap();
    let entries = other.entries(&id).await.unwrap();
    assert_eq!(entries.len(), 7);
    assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(other.open_incidents().await.unwrap(), vec![id.clone()]);
    other
        .append(
            &id,
            clock().now(),
            &Event::Closed {
                resolution: rb_core::Resolution::Recovered,
            },
        )
        .await
        .unwrap();
    assert!(other.open_incidents().await.unwrap().is_empty());
    assert_eq!(other.incidents().await.unwrap(), vec![id]);
    assert!(j.open_incidents().await.unwrap().is_empty());
    // a file that is not a database is an error value, not a panic
    let bad = dir.path().join("bad.db");
    std::fs::write(&bad, b"this is not sqlite").unwrap();
    let err = match SqliteJournal::open(&bad).await {
        Err(e) => e,
        Ok(j) => j.open_incidents().await.unwrap_err(),
    };
    assert!(err.to_string().contains("bad.db"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_question_pending_at_a_restart_is_asked_again_and_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let pb = |rem: &Recorder| {
        Playbook::new("p", "P")
            .detect(
                g.arc(),
                Schedule::every(secs(30)),
                metric("records_lag_max").above(5_000.0),
            )
            .mitigate(rem.arc())
    };
    let never = rb_core::policy::CallbackApprover::new(mins(30), |_| async {
        tokio::time::sleep(hours(24)).await;
        rb_core::policy::Decision::Granted {
            by: "nobody".into(),
        }
    });
    let rem = Recorder::new("flink.rescale", Risk::Disruptive, vec![kafka()]);
    let first = Engine::builder(Runbook::new("t").playbook(pb(&rem)))
        .journal(Arc::new(SqliteJournal::open(&db).await.unwrap()))
        .clock(clock())
        .approver(Arc::new(never))
        .build()
        .await
        .unwrap();
    run(&first, mins(1), secs(30)).await;
    let id = first.open_incidents().await.pop().unwrap();
    drop(first); // the process dies while a human is being asked

    let rem2 = Recorder::new("flink.rescale", Risk::Disruptive, vec![kafka()]);
    let second = engine_on(&db, pb(&rem2), &Pager::default()).await;
    run(&second, mins(1), secs(30)).await;
    assert_eq!((rem.applied(), rem2.applied()), (0, 1));
    let inc = second.incident(&id).await.unwrap();
    let asked: Vec<&Event> = inc
        .timeline
        .iter()
        .map(|e| &e.event)
        .filter(|e| matches!(e, Event::AwaitingApproval { .. } | Event::Approval { .. }))
        .collect();
    assert!(
        matches!(
            asked.as_slice(),
            [Event::AwaitingApproval { .. }, Event::Approval { .. }]
        ),
        "{asked:?}"
    );
    assert_eq!(inc.step_state(0), StepState::Done);
    let entered = inc
        .timeline
        .iter()
        .filter(|e| {
            matches!(
                e.event,
                Event::Phase {
                    phase: Phase::Mitigate
                }
            )
        })
        .count();
    assert_eq!(
        entered, 1,
        "the resumed engine does not enter Mitigate twice"
    );
}

#[tokio::test(start_paused = true)]
async fn an_incident_whose_playbook_lost_a_step_says_so_per_step_and_runs_nothing_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let id = crashed_mid_step(&db).await;
    // the journal of an incident opened when the playbook's steps were a, b, c
    let j = SqliteJournal::open(&db).await.unwrap();
    let entries = j.entries(&id).await.unwrap();
    j.close().await;
    std::fs::remove_file(&db).unwrap();
    let _ = std::fs::remove_file(dir.path().join("journal.db-wal"));
    let _ = std::fs::remove_file(dir.path().join("journal.db-shm"));
    let j = SqliteJournal::open(&db).await.unwrap();
    for e in entries {
        if matches!(e.event, Event::Started { step: 1, .. }) {
            break; // step a done, b not started
        }
        j.append(&id, e.at, &e.event).await.unwrap();
        if matches!(
            e.event,
            Event::Phase {
                phase: Phase::Mitigate
            }
        ) {
            let ids = vec!["a".to_string(), "b".to_string(), "c".to_string()];
            j.append(&id, e.at, &Event::StepIds { ids }).await.unwrap();
        }
    }
    j.close().await;

    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let (a, c) = (
        Recorder::new("a", Risk::Safe, vec![kafka()]),
        Recorder::new("c", Risk::Safe, vec![kafka()]),
    );
    let pager = Pager::default();
    let e = engine_on(&db, backlog(&g, vec![a.arc(), c.arc()]), &pager).await;
    e.tick().await.unwrap();
    assert_eq!((a.applied(), c.applied()), (0, 0), "nothing runs by index");
    let inc = e.incident(&id).await.unwrap();
    let notes: Vec<&str> = inc
        .timeline
        .iter()
        .filter_map(|e| match &e.event {
            Event::Note { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("step b (step 1 when the incident opened")
                && n.ends_with("is no longer in the playbook")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("step c (step 2") && n.ends_with("is now step 1")),
        "{notes:?}"
    );
    let page = &pager.all()[0];
    assert_eq!(page.reason, EscalationReason::NeedsHuman);
    assert!(
        page.message.contains("step b") && page.message.contains("no longer in the playbook"),
        "{}",
        page.message
    );
    let review = e.review(&id).await.unwrap().to_markdown();
    assert!(review.contains("is no longer in the playbook"), "{review}");
}
