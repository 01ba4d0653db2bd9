//! Seed §4 "Paimon/Nessie cannot commit" on the fake lakehouse: a real conflict between `main`
//! and the backup branch (detected, the merge planned with Nessie's dry run, `main` assigned
//! back to the known-good hash with the expected hash, the Nessie hash in the record, recovery
//! verified); the playbook without a known-good hash hands the conflict to a human; MinIO low on
//! space pages and never merges; `/q/health` timing out once opens nothing; in dry-run nothing
//! but Nessie's own dry runs reaches a fake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use rb_core::incident::StepState;
use rb_core::journal::Event;
use rb_examples::lakehouse::situations::{nessie_commit, play, Scene};
use rb_testkit::lakehouse::{HttpSystem, BACKUP_BRANCH};

const STEP: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_conflict_is_assigned_back_to_the_known_good_hash_and_recovers() {
    let (lake, systems) = common::lake().await;
    let known_good = lake.nessie().head("main").unwrap();
    // the assign is destructive: the scripted on-call engineer approves it
    let engine = common::engine_with_human(
        vec![
            nessie_commit::playbook_with_known_good(&systems, known_good.clone()).unwrap(),
            nessie_commit::minio_space(&systems),
        ],
        false,
    )
    .await;
    let t = systems.timings.clone();
    let scene = nessie_commit::CommitConflict::assigning();
    let started = engine.clock().now();
    play(&scene, &lake, &engine, STEP, Duration::from_secs(3 * 3600))
        .await
        .unwrap();
    let (before, _backup, main) = scene.hashes().unwrap();
    assert_eq!(before, known_good);

    let incs = common::incidents_of(&engine, nessie_commit::PLAYBOOK).await;
    assert_eq!(incs.len(), 1, "{incs:#?}\n{:#?}", engine.status().await);
    let inc = &incs[0];
    assert!(scene.expect().unwrap().matches(inc));
    let after = common::opened_after(inc, started);
    assert!(
        after >= t.for_duration && after <= t.for_duration + t.probe_every,
        "opened {after:?} after the start"
    );
    let v = inc.record.violated.as_ref().expect("violated metric");
    assert!(
        v.name == "nessie_branch_commits_behind" || v.name == "nessie_branch_commits_ahead",
        "{v:?}"
    );
    assert_eq!(v.value, 1.0);
    assert_eq!(v.threshold, 0.0);
    // the record carries main's HEAD when the incident opened: the conflicting commit
    assert_eq!(inc.record.nessie_commit.as_deref(), Some(main.as_str()));

    let sources = common::evidence_sources(inc);
    for s in [
        "nessie.health",
        "nessie.branch",
        "minio.capacity",
        "loki.flink_jobmanager_logs",
    ] {
        assert!(sources.iter().any(|x| x == s), "{s} in {sources:?}");
    }

    // the merge was planned with Nessie's dry run, conflicted, and was never sent for real
    let merges = lake
        .http(HttpSystem::Nessie)
        .requests()
        .matching("POST", "/api/v2/trees/**");
    assert!(!merges.is_empty());
    for m in &merges {
        assert!(m.path.ends_with("/history/merge"), "{}", m.line());
        let body = m.json().unwrap();
        assert_eq!(body["isDryRun"], true, "{body}");
        assert_eq!(body["fromRefName"], BACKUP_BRANCH);
        assert_eq!(m.header("nessie-client-spec"), Some("2"));
    }
    assert_eq!(inc.step_state(0), StepState::Refused, "{:#?}", inc.timeline);
    // then main was assigned back, with the conflicting HEAD as the expected hash
    let assigns = lake
        .http(HttpSystem::Nessie)
        .requests()
        .matching("PUT", "/api/v2/trees/**");
    assert_eq!(assigns.len(), 1, "{:#?}", inc.timeline);
    assert_eq!(assigns[0].path, format!("/api/v2/trees/main@{main}"));
    assert_eq!(assigns[0].query.as_deref(), Some("type=BRANCH"));
    let body = assigns[0].json().unwrap();
    assert_eq!(body["hash"], known_good.as_str());
    assert_eq!(body["type"], "DETACHED");
    assert_eq!(inc.step_state(1), StepState::Done);
    assert!(common::verified(inc, 1));
    let out = common::outcome(inc, 1).unwrap();
    assert_eq!(out["hash"], known_good.as_str());
    assert_eq!(out["previous_hash"], main.as_str());
    assert_eq!(lake.nessie().head("main"), Some(known_good.clone()));

    common::run_until_closed(&engine, nessie_commit::PLAYBOOK, t.stable_for * 3).await;
    let inc = &common::incidents_of(&engine, nessie_commit::PLAYBOOK).await[0];
    assert!(common::recovered(inc), "{:#?}", inc.timeline);
    assert!(common::incidents_of(&engine, nessie_commit::MINIO_SPACE)
        .await
        .is_empty());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn without_a_known_good_hash_a_human_resolves_the_conflict() {
    let (lake, systems) = common::lake().await;
    let engine = common::engine(nessie_commit::playbooks(&systems), false).await;
    let scene = nessie_commit::CommitConflict::new();
    play(&scene, &lake, &engine, STEP, Duration::from_secs(3 * 3600))
        .await
        .unwrap();
    let incs = common::incidents_of(&engine, nessie_commit::PLAYBOOK).await;
    assert_eq!(incs.len(), 1);
    let inc = &incs[0];
    assert!(inc.timeline.iter().any(|e| matches!(
        &e.event,
        Event::TaskAssigned { step: 1, task, .. } if task.contains("assign main back")
    )));
    assert!(inc
        .timeline
        .iter()
        .any(|e| matches!(e.event, Event::TaskDone { step: 1, .. })));
    assert!(lake
        .http(HttpSystem::Nessie)
        .requests()
        .matching("PUT", "/api/v2/trees/**")
        .is_empty());
    assert!(common::recovered(inc), "{:#?}", inc.timeline);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn minio_low_on_space_pages_and_never_merges() {
    let (lake, systems) = common::lake().await;
    let known_good = lake.nessie().head("main").unwrap();
    let engine = common::engine(
        vec![
            nessie_commit::playbook_with_known_good(&systems, known_good).unwrap(),
            nessie_commit::minio_space(&systems),
        ],
        false,
    )
    .await;
    let t = systems.timings.clone();
    let scene = nessie_commit::MinioLowSpace::new(20 << 30);
    let started = engine.clock().now();
    play(&scene, &lake, &engine, STEP, Duration::from_secs(3 * 3600))
        .await
        .unwrap();
    let incs = common::incidents_of(&engine, nessie_commit::MINIO_SPACE).await;
    assert_eq!(incs.len(), 1, "{incs:#?}");
    let inc = &incs[0];
    assert_eq!(inc.record.target.name, "minio-main");
    let after = common::opened_after(inc, started);
    assert!(
        after >= t.for_duration && after <= t.for_duration + t.probe_every,
        "{after:?}"
    );
    let v = inc.record.violated.as_ref().unwrap();
    assert_eq!(v.name, nessie_commit::MINIO_FREE);
    assert_eq!(v.value, (20u64 << 30) as f64);
    assert_eq!(v.threshold, nessie_commit::MINIO_FREE_FLOOR);
    let sources = common::evidence_sources(inc);
    assert!(sources.iter().any(|s| s == "minio.capacity"), "{sources:?}");
    assert!(inc
        .timeline
        .iter()
        .any(|e| matches!(e.event, Event::TaskAssigned { step: 0, .. })));
    assert!(common::recovered(inc), "{:#?}", inc.timeline);
    // Nessie was never written to (not even a dry-run merge) and no cannot-commit incident opened
    assert!(lake
        .http(HttpSystem::Nessie)
        .requests()
        .mutating()
        .is_empty());
    assert!(common::incidents_of(&engine, nessie_commit::PLAYBOOK)
        .await
        .is_empty());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn health_timing_out_once_opens_nothing() {
    let (lake, systems) = common::lake().await;
    let engine = common::engine(nessie_commit::playbooks(&systems), false).await;
    let t = systems.timings.clone();
    let scene = nessie_commit::HealthTimesOutOnce {
        for_how_long: t.for_duration * 4,
    };
    play(&scene, &lake, &engine, STEP, Duration::from_secs(3600))
        .await
        .unwrap();
    // the hang was really served to the health probe, and it answered again afterwards
    let health = lake
        .http(HttpSystem::NessieManagement)
        .requests()
        .matching("GET", "/q/health");
    assert!(health.len() >= 4, "{}", health.len());
    assert!(engine.incidents().await.unwrap().is_empty());
    assert!(
        engine.status().await.iter().all(|b| b.verdict.is_ok()),
        "{:#?}",
        engine.status().await
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn in_dry_run_only_nessies_own_dry_runs_reach_it() {
    let (lake, systems) = common::lake().await;
    let known_good = lake.nessie().head("main").unwrap();
    let engine = common::engine(
        vec![nessie_commit::playbook_with_known_good(&systems, known_good).unwrap()],
        true,
    )
    .await;
    let scene = nessie_commit::CommitConflict::assigning();
    play(&scene, &lake, &engine, STEP, Duration::from_secs(1800))
        .await
        .unwrap();
    let (_, _, main) = scene.hashes().unwrap();
    let incs = common::incidents_of(&engine, nessie_commit::PLAYBOOK).await;
    assert_eq!(incs.len(), 1);
    assert_eq!(
        incs[0].step_state(1),
        StepState::Planned,
        "{:#?}",
        incs[0].timeline
    );
    assert_eq!(common::mutating_requests(&lake), Vec::<String>::new());
    assert_eq!(lake.nessie().head("main"), Some(main));
}
