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
            step_id: String::new(), // a journal from before step events carried ids
            holder: None,
            token: None,
        },
        Event::Finished {
            step: 0,
            action: "a".into(),
            ok: true,
            outcome: Some(Outcome::new("ok")),
            error: None,
            error_detail: None,
            outcome_unknown: false,
            step_id: String::new(),
        },
        Event::Started {
            step: 1,
            action: "b".into(),
            attempt: 1,
            step_id: String::new(), // a journal from before step events carried ids
            holder: None,
            token: None,
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

/// The journal of an incident opened when the playbook's steps were a, b, c, written as rb wrote it
/// before step events carried ids (indexes, and a `step_ids` entry at Mitigate): step a done, and
/// step b started and never finished (`b_started`) or not started.
async fn opened_under_steps_abc(
    dir: &std::path::Path,
    b_started: bool,
) -> (std::path::PathBuf, String) {
    let scratch = dir.join("scratch.db");
    let id = crashed_mid_step(&scratch).await;
    let j = SqliteJournal::open(&scratch).await.unwrap();
    let entries = j.entries(&id).await.unwrap();
    j.close().await;
    let db = dir.join("journal.db");
    let j = SqliteJournal::open(&db).await.unwrap();
    for e in entries {
        if !b_started && matches!(e.event, Event::Started { step: 1, .. }) {
            break;
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
    (db, id)
}

fn notes(inc: &rb_core::Incident) -> Vec<String> {
    inc.timeline
        .iter()
        .filter_map(|e| match &e.event {
            Event::Note { text } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// A playbook over `g` whose steps are `ids`, each a recorder named by its id.
fn steps(g: &Gauge, ids: &[&str]) -> (Playbook, Vec<Recorder>) {
    let rems: Vec<Recorder> = ids
        .iter()
        .map(|id| Recorder::new(id, Risk::Safe, vec![kafka()]))
        .collect();
    (backlog(g, rems.iter().map(Recorder::arc).collect()), rems)
}

#[tokio::test(start_paused = true)]
async fn an_incident_whose_playbook_lost_a_step_resumes_by_id_and_says_which_step_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (db, id) = opened_under_steps_abc(dir.path(), false).await;
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let (pb, rems) = steps(&g, &["a", "c"]);
    let pager = Pager::default();
    let e = engine_on(&db, pb, &pager).await;
    run(&e, mins(1), secs(30)).await;
    let applied: Vec<usize> = rems.iter().map(Recorder::applied).collect();
    assert_eq!(
        applied,
        vec![0, 1],
        "a was done before; c, where it is now, runs once"
    );
    let inc = e.incident(&id).await.unwrap();
    let notes = notes(&inc);
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("step b (step 1 when the incident opened")
                && n.contains("is no longer in the playbook: it had not run")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("step c (step 2") && n.contains("is now step 1")),
        "{notes:?}"
    );
    assert!(
        !pager
            .all()
            .iter()
            .any(|p| p.reason == EscalationReason::NeedsHuman),
        "nothing for a human: the lost step had not run"
    );
    assert_eq!(
        inc.step_state(0),
        StepState::Done,
        "a, by the index it was journaled with"
    );
    assert_eq!(
        rb_core::incident::step_state_of(&inc.timeline, "c", 1),
        StepState::Done
    );
    let review = e.review(&id).await.unwrap().to_markdown();
    assert!(review.contains("is no longer in the playbook"), "{review}");
}

#[tokio::test(start_paused = true)]
async fn an_incident_whose_playbook_reordered_its_steps_runs_each_remaining_step_once_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let (db, id) = opened_under_steps_abc(dir.path(), false).await;
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let (pb, rems) = steps(&g, &["c", "b", "a"]);
    let e = engine_on(&db, pb, &Pager::default()).await;
    run(&e, mins(1), secs(30)).await;
    let applied: Vec<usize> = rems.iter().map(Recorder::applied).collect();
    assert_eq!(
        applied,
        vec![1, 1, 0],
        "c and b run once each; a (done) is not run again"
    );
    let inc = e.incident(&id).await.unwrap();
    let notes = notes(&inc);
    for (sid, was, now) in [("a", 0, 2), ("c", 2, 0)] {
        assert!(
            notes.iter().any(|n| n
                .starts_with(&format!("step {sid} (step {was} when the incident opened"))
                && n.contains(&format!("is now step {now}"))),
            "{notes:?}"
        );
    }
    // c ran before b, as the playbook now orders them
    let order: Vec<String> = inc
        .timeline
        .iter()
        .filter_map(|e| match &e.event {
            Event::Started { step_id, .. } if !step_id.is_empty() => Some(step_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec!["c", "b"]);
}

#[tokio::test(start_paused = true)]
async fn a_lost_step_whose_outcome_is_unknown_hands_the_incident_to_a_human_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (db, id) = opened_under_steps_abc(dir.path(), true).await;
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let (pb, rems) = steps(&g, &["a", "c"]);
    let pager = Pager::default();
    let e = engine_on(&db, pb, &pager).await;
    run(&e, mins(1), secs(30)).await;
    let applied: Vec<usize> = rems.iter().map(Recorder::applied).collect();
    assert_eq!(
        applied,
        vec![0, 0],
        "nothing runs on top of a step that may have half-happened"
    );
    let inc = e.incident(&id).await.unwrap();
    let notes = notes(&inc);
    assert!(
        notes.iter().any(
            |n| n.starts_with("step b (step 1 when the incident opened, Started)")
                && n.contains("its outcome is unknown: a human must check it")
        ),
        "{notes:?}"
    );
    let page = pager
        .all()
        .into_iter()
        .find(|p| p.reason == EscalationReason::NeedsHuman)
        .expect("a human is paged");
    assert!(page.message.contains("b (Started)"), "{}", page.message);
}

/// An approver that counts the questions it is asked and answers `answer` after `after`.
fn counting_approver(
    asked: &Arc<std::sync::atomic::AtomicUsize>,
    after: std::time::Duration,
    answer: rb_core::policy::Decision,
) -> rb_core::policy::CallbackApprover {
    let asked = asked.clone();
    rb_core::policy::CallbackApprover::new(mins(30), move |_| {
        asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let answer = answer.clone();
        async move {
            tokio::time::sleep(after).await;
            answer
        }
    })
}

/// A disruptive step over a firing gauge, asked of an approver that never answers in time; the
/// engine stops while the question is pending. Returns the journal file, the incident, the count
/// of questions and the wall clock.
async fn stopped_while_asking(
    dir: &std::path::Path,
    g: &Gauge,
) -> (
    std::path::PathBuf,
    String,
    Arc<std::sync::atomic::AtomicUsize>,
    Clock,
) {
    let db = dir.join("journal.db");
    // one wall clock for both runs: the second engine starts where the first one's time is now
    let wall = clock();
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let rem = Recorder::new("flink.rescale", Risk::Disruptive, vec![kafka()]);
    let first = Engine::builder(Runbook::new("t").playbook(approval_pb(g, &rem)))
        .journal(Arc::new(SqliteJournal::open(&db).await.unwrap()))
        .clock(wall)
        .approver(Arc::new(counting_approver(
            &asked,
            hours(24),
            rb_core::policy::Decision::TimedOut,
        )))
        .build()
        .await
        .unwrap();
    run(&first, secs(30), secs(30)).await;
    let id = first.open_incidents().await.pop().unwrap();
    drop(first);
    assert_eq!(rem.applied(), 0);
    (db, id, asked, wall)
}

fn approval_pb(g: &Gauge, rem: &Recorder) -> Playbook {
    Playbook::new("p", "P")
        .detect(
            g.arc(),
            Schedule::every(secs(30)),
            metric("records_lag_max").above(5_000.0),
        )
        .mitigate(rem.arc())
}

async fn second_engine(
    db: &std::path::Path,
    g: &Gauge,
    rem: &Recorder,
    approver: rb_core::policy::CallbackApprover,
    wall: Clock,
) -> Engine {
    Engine::builder(Runbook::new("t").playbook(approval_pb(g, rem)))
        .journal(Arc::new(SqliteJournal::open(db).await.unwrap()))
        .clock(wall)
        .approver(Arc::new(approver))
        .build()
        .await
        .unwrap()
}

/// Journal `decision` for the plan the incident's step was planned with, as an engine does just
/// before it stops.
async fn journal_decision(db: &std::path::Path, id: &str, decision: rb_core::policy::Decision) {
    let j = SqliteJournal::open(db).await.unwrap();
    let entries = j.entries(id).await.unwrap();
    let (at, hash) = entries
        .iter()
        .rev()
        .find_map(|e| match &e.event {
            Event::Planned { plan, .. } => Some((e.at, plan.hash())),
            _ => None,
        })
        .unwrap();
    let mut ev = serde_json::json!({
        "event": "approval", "step": 0, "step_id": "flink.rescale", "plan_hash": hash,
    });
    ev["decision"] = serde_json::to_value(&decision).unwrap();
    let ev: Event = serde_json::from_value(ev).unwrap();
    j.append(id, at, &ev).await.unwrap();
    j.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_grant_journaled_before_a_restart_for_the_same_plan_is_honoured_and_not_asked_again() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let (db, id, asked_first, wall) = stopped_while_asking(dir.path(), &g).await;
    assert_eq!(asked_first.load(std::sync::atomic::Ordering::SeqCst), 1);
    journal_decision(
        &db,
        &id,
        rb_core::policy::Decision::Granted { by: "ana".into() },
    )
    .await;
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let rem = Recorder::new("flink.rescale", Risk::Disruptive, vec![kafka()]);
    let approver = counting_approver(&asked, secs(0), rb_core::policy::Decision::TimedOut);
    let second = second_engine(&db, &g, &rem, approver, wall).await;
    run(&second, mins(1), secs(30)).await;
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "not asked again"
    );
    assert_eq!(rem.applied(), 1, "the journaled grant is acted on");
    let inc = second.incident(&id).await.unwrap();
    assert_eq!(inc.step_state(0), StepState::Done);
    assert!(inc.timeline.iter().any(|e| matches!(&e.event,
        Event::Note { text } if text.contains("granted by ana") && text.contains("is honoured"))));
}

#[tokio::test(start_paused = true)]
async fn a_denial_journaled_before_a_restart_is_honoured_and_the_approver_is_not_asked_again() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let (db, id, _, wall) = stopped_while_asking(dir.path(), &g).await;
    journal_decision(
        &db,
        &id,
        rb_core::policy::Decision::Denied {
            by: "ana".into(),
            reason: "not during the freeze".into(),
        },
    )
    .await;
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let rem = Recorder::new("flink.rescale", Risk::Disruptive, vec![kafka()]);
    let grant = rb_core::policy::Decision::Granted { by: "bob".into() };
    let second = second_engine(
        &db,
        &g,
        &rem,
        counting_approver(&asked, secs(0), grant),
        wall,
    )
    .await;
    run(&second, mins(1), secs(30)).await;
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(rem.applied(), 0);
    let inc = second.incident(&id).await.unwrap();
    assert_eq!(inc.step_state(0), StepState::Refused);
}

#[tokio::test(start_paused = true)]
async fn a_question_pending_at_a_restart_keeps_its_first_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let (db, id, _, wall) = stopped_while_asking(dir.path(), &g).await;
    let j = SqliteJournal::open(&db).await.unwrap();
    let first_asked = j
        .entries(&id)
        .await
        .unwrap()
        .iter()
        .find(|e| matches!(e.event, Event::AwaitingApproval { .. }))
        .unwrap()
        .at;
    j.close().await;
    // down for 20 minutes of a 30-minute question
    tokio::time::sleep(mins(20)).await;
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let rem = Recorder::new("flink.rescale", Risk::Disruptive, vec![kafka()]);
    let never = counting_approver(&asked, hours(24), rb_core::policy::Decision::TimedOut);
    let second = second_engine(&db, &g, &rem, never, wall).await;
    run(&second, mins(15), secs(30)).await;
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "asked again once"
    );
    assert_eq!(rem.applied(), 0);
    let inc = second.incident(&id).await.unwrap();
    let timed_out = inc
        .timeline
        .iter()
        .find(|e| {
            matches!(
                e.event,
                Event::Approval {
                    decision: rb_core::policy::Decision::TimedOut,
                    ..
                }
            )
        })
        .expect("the question timed out within the second run");
    let late = timed_out.at.since(first_asked);
    assert!(
        late >= mins(30) && late <= mins(31),
        "timed out {late:?} after it was first asked, not a whole timeout after the restart"
    );
    assert_eq!(inc.step_state(0), StepState::Refused);
}

/// Applies at once; its verification is inconclusive until `ok` is set.
#[derive(Debug)]
struct Restore {
    ok: std::sync::atomic::AtomicBool,
    applies: std::sync::atomic::AtomicUsize,
    verifies: std::sync::atomic::AtomicUsize,
    within: std::time::Duration,
}

#[async_trait::async_trait]
impl Remediation for Restore {
    fn id(&self) -> &str {
        "flink.restore"
    }
    fn risk(&self) -> Risk {
        Risk::Safe
    }
    fn verify_within(&self) -> std::time::Duration {
        self.within
    }
    async fn plan(&self, _ctx: &ActionContext) -> Result<Plan, RemediationError> {
        Ok(Plan::new(self.id(), vec![kafka()], "restore"))
    }
    async fn apply(&self, _plan: &Plan, _ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        self.applies
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Outcome::new("resubmitted from chk-17"))
    }
    async fn verify(
        &self,
        _p: &Plan,
        o: &Outcome,
        _ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        assert_eq!(
            o.summary, "resubmitted from chk-17",
            "the journaled outcome"
        );
        self.verifies
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(if self.ok.load(std::sync::atomic::Ordering::SeqCst) {
            Verification::Succeeded {
                evidence: "job RUNNING".into(),
            }
        } else {
            Verification::Inconclusive {
                why: "job still RESTARTING".into(),
            }
        })
    }
}

/// An engine on `db` whose clock is `clock` (one clock across the "crash": the wall clock goes on).
async fn restore_engine(
    db: &std::path::Path,
    clock: Clock,
    g: &Gauge,
    rem: Arc<Restore>,
    pager: &Pager,
) -> Engine {
    Engine::builder(Runbook::new("t").playbook(backlog(g, vec![rem])))
        .journal(Arc::new(SqliteJournal::open(db).await.unwrap()))
        .clock(clock)
        .approver(Arc::new(AutoApprove))
        .notifier(Arc::new(pager.clone()))
        .build()
        .await
        .unwrap()
}

/// The process dies while step 0 is being verified (applied at about minute 2, killed at minute 6).
async fn killed_while_verifying(
    db: &std::path::Path,
    clock: Clock,
    g: &Gauge,
    rem: Arc<Restore>,
) -> String {
    let first = restore_engine(db, clock, g, rem.clone(), &Pager::default()).await;
    let killed = tokio::time::timeout(mins(6), run(&first, mins(30), secs(30))).await;
    assert!(killed.is_err(), "still verifying when killed");
    let id = first.open_incidents().await.pop().unwrap();
    let inc = first.incident(&id).await.unwrap();
    drop(first);
    assert_eq!(rem.applies.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(inc
        .timeline
        .iter()
        .any(|e| matches!(e.event, Event::Finished { ok: true, .. })));
    assert!(
        !inc.timeline
            .iter()
            .any(|e| matches!(e.event, Event::Verified { .. })),
        "the kill fell between the apply and the end of its verification"
    );
    id
}

fn finished_and_verified(inc: &rb_core::Incident) -> (Timestamp, Timestamp, Verification) {
    let finished = inc
        .timeline
        .iter()
        .find(|e| matches!(e.event, Event::Finished { ok: true, .. }))
        .unwrap()
        .at;
    let (at, v) = inc
        .timeline
        .iter()
        .find_map(|e| match &e.event {
            Event::Verified { verification, .. } => Some((e.at, verification.clone())),
            _ => None,
        })
        .expect("the verification is finished after the restart");
    (finished, at, v)
}

#[tokio::test(start_paused = true)]
async fn a_verification_cut_short_by_a_crash_fails_at_its_first_deadline_not_one_counted_from_the_restart(
) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let c = clock();
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Arc::new(Restore {
        ok: false.into(),
        applies: 0.into(),
        verifies: 0.into(),
        within: mins(10),
    });
    let id = killed_while_verifying(&db, c, &g, rem.clone()).await;
    let before = rem.verifies.load(std::sync::atomic::Ordering::SeqCst);

    let pager = Pager::default();
    let second = restore_engine(&db, c, &g, rem.clone(), &pager).await;
    run(&second, mins(15), secs(30)).await;
    let inc = second.incident(&id).await.unwrap();
    let (finished, verified_at, v) = finished_and_verified(&inc);
    match v {
        Verification::Failed { evidence } => {
            assert!(evidence.contains("still inconclusive"), "{evidence}")
        }
        other => panic!("inconclusive at the deadline is not success: {other:?}"),
    }
    // the deadline is 10 minutes after the apply finished (minute ~12), not 10 minutes after the
    // restart at minute 6 (minute 16); the last try is at most one backoff (60 s) before it
    let took = verified_at.since(finished);
    assert!(
        took <= mins(10) + secs(5),
        "verified {took:?} after the apply"
    );
    assert!(took >= mins(9), "verified {took:?} after the apply");
    assert!(rem.verifies.load(std::sync::atomic::Ordering::SeqCst) > before);
    assert_eq!(
        rem.applies.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "never applied again"
    );
    assert!(notes(&inc)
        .iter()
        .any(|n| n.contains("verification was interrupted")));
    assert_eq!(inc.step_state(0), StepState::Failed);
    assert!(pager
        .all()
        .iter()
        .any(|n| n.message.contains("verification failed")));
}

#[tokio::test(start_paused = true)]
async fn a_verification_cut_short_by_a_crash_passes_when_it_succeeds_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let c = clock();
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Arc::new(Restore {
        ok: false.into(),
        applies: 0.into(),
        verifies: 0.into(),
        within: mins(10),
    });
    let id = killed_while_verifying(&db, c, &g, rem.clone()).await;
    rem.ok.store(true, std::sync::atomic::Ordering::SeqCst);
    g.set(0.0);
    let pager = Pager::default();
    let second = restore_engine(&db, c, &g, rem.clone(), &pager).await;
    run(&second, mins(10), secs(30)).await;
    let inc = second.incident(&id).await.unwrap();
    let (_, _, v) = finished_and_verified(&inc);
    assert!(matches!(v, Verification::Succeeded { .. }), "{v:?}");
    assert_eq!(rem.applies.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(
        pager.roles().is_empty(),
        "nothing to page: {:?}",
        pager.all()
    );
    assert!(
        second.open_incidents().await.is_empty(),
        "recovered and closed"
    );
}

#[tokio::test(start_paused = true)]
async fn an_outcome_unknown_journaled_just_before_a_crash_is_paged_after_it_and_nothing_runs_on_top(
) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let id = crashed_mid_step(&db).await;
    {
        let j = SqliteJournal::open(&db).await.unwrap();
        let at = clock().now();
        let ev = Event::Finished {
            step: 1,
            action: "b".into(),
            ok: false,
            outcome: None,
            error: Some("no answer within 30s: the outcome is unknown".into()),
            error_detail: None,
            outcome_unknown: true,
            step_id: String::new(),
        };
        j.append(&id, at, &ev).await.unwrap();
        j.close().await;
    }
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let (a, b, c) = (
        Recorder::new("a", Risk::Safe, vec![kafka()]),
        Recorder::new("b", Risk::Safe, vec![kafka()]).idempotent(),
        Recorder::new("c", Risk::Safe, vec![kafka()]),
    );
    let pager = Pager::default();
    let e = engine_on(&db, backlog(&g, vec![a.arc(), b.arc(), c.arc()]), &pager).await;
    e.tick().await.unwrap();
    e.tick().await.unwrap();
    assert_eq!((a.applied(), b.applied(), c.applied()), (0, 0, 0));
    let inc = e.incident(&id).await.unwrap();
    assert_eq!(inc.step_state(1), StepState::OutcomeUnknown);
    assert_eq!(inc.step_state(2), StepState::Skipped, "nothing runs on top");
    let pages: Vec<_> = pager
        .all()
        .into_iter()
        .filter(|n| n.message.contains("outcome unknown"))
        .collect();
    assert_eq!(pages.len(), 1, "paged once: {:?}", pager.all());
    assert_eq!(pages[0].reason, EscalationReason::ActionFailed);
}

#[tokio::test(start_paused = true)]
async fn a_failed_verification_journaled_just_before_a_crash_is_paged_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let id = crashed_mid_step(&db).await;
    {
        let j = SqliteJournal::open(&db).await.unwrap();
        let at = clock().now();
        for ev in [
            Event::Finished {
                step: 1,
                action: "b".into(),
                ok: true,
                outcome: Some(Outcome::new("done")),
                error: None,
                error_detail: None,
                outcome_unknown: false,
                step_id: String::new(),
            },
            Event::Verified {
                step: 1,
                step_id: String::new(),
                verification: Verification::Failed {
                    evidence: "job FAILED again".into(),
                },
            },
        ] {
            j.append(&id, at, &ev).await.unwrap();
        }
        j.close().await;
    }
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let (a, b, c) = (
        Recorder::new("a", Risk::Safe, vec![kafka()]),
        Recorder::new("b", Risk::Safe, vec![kafka()]),
        Recorder::new("c", Risk::Safe, vec![kafka()]),
    );
    let pager = Pager::default();
    let e = engine_on(&db, backlog(&g, vec![a.arc(), b.arc(), c.arc()]), &pager).await;
    e.tick().await.unwrap();
    e.tick().await.unwrap();
    assert_eq!((a.applied(), b.applied(), c.applied()), (0, 0, 0));
    let inc = e.incident(&id).await.unwrap();
    assert_eq!(inc.step_state(1), StepState::Failed);
    assert_eq!(inc.step_state(2), StepState::Skipped);
    let pages: Vec<_> = pager
        .all()
        .into_iter()
        .filter(|n| n.message.contains("verification failed: job FAILED again"))
        .collect();
    assert_eq!(pages.len(), 1, "paged once: {:?}", pager.all());
}
