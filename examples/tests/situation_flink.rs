//! Seed §4 "Flink job restarts repeatedly" on the fake lakehouse, on a paused clock: a schema crash
//! loop waits for a human to deploy the fixed JAR, then the job is restored from its latest
//! checkpoint; a lost TaskManager waits for a human to scale out; a job that restarts once opens
//! nothing; in dry-run nothing mutating reaches any fake.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use rb_core::incident::StepState;
use rb_core::journal::Event;
use rb_core::prelude::*;
use rb_core::{Incident, MemoryJournal, Resolution};
use rb_examples::lakehouse::situations::flink_restarting::{
    self, LostTaskManager, RestartOnce, SchemaCrashLoop, DEPLOY_STEP, INVESTIGATE_STEP, JAR_NAME,
    JOB, MAX_RESTARTS, PLAYBOOK, RESTORE_STEP, SCALE_OUT_STEP,
};
use rb_examples::lakehouse::situations::{play, Scene};
use rb_examples::lakehouse::{Credentials, Endpoints, Systems, Timings, RUNBOOK};
use rb_probes::flink::{FailureCategory, FlinkJob};
use rb_testkit::lakehouse::{self as fake, FakeLakehouse, HttpSystem};

const STEP: Duration = Duration::from_secs(5);

async fn setup(dry_run: bool) -> (FakeLakehouse, Engine, Timings) {
    let lake = FakeLakehouse::start().await.unwrap();
    let timings = Timings::seed();
    let systems = Systems::new(
        Endpoints::from_fake(&lake),
        Credentials::default(),
        timings.clone(),
    )
    .unwrap();
    let mut runbook = Runbook::new(RUNBOOK);
    for p in flink_restarting::playbooks(&systems) {
        runbook = runbook.playbook(p);
    }
    let engine = Engine::builder(runbook)
        .journal(Arc::new(MemoryJournal::new()))
        .approver(Arc::new(AutoApprove))
        .dry_run(dry_run)
        .incident_id_seed(11)
        .build()
        .await
        .unwrap();
    // a healthy minute first: the job checkpoints, the probes see it running
    engine.run_for(Duration::from_secs(60)).await.unwrap();
    assert!(engine.incidents().await.unwrap().is_empty());
    (lake, engine, timings)
}

async fn until_closed(engine: &Engine, id: &str, max: Duration) -> Incident {
    let mut waited = Duration::ZERO;
    loop {
        let inc = engine.incident(id).await.unwrap();
        if inc.is_closed() || waited >= max {
            return inc;
        }
        engine.run_for(Duration::from_secs(30)).await.unwrap();
        waited += Duration::from_secs(30);
    }
}

fn step_index(engine: &Engine, id: &str) -> usize {
    engine
        .runbook()
        .playbooks()
        .iter()
        .find(|p| p.id() == PLAYBOOK)
        .unwrap()
        .mitigations()
        .iter()
        .position(|s| s.id == id)
        .unwrap()
}

fn events(inc: &Incident) -> String {
    inc.timeline
        .iter()
        .filter(|e| !matches!(e.event, Event::Evidence { .. } | Event::Opened { .. }))
        .map(|e| format!("{} {:?}", e.at, e.event))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The one incident of the scene, checked against its expectation, opened in time, with the
/// job's classified exceptions and the JobManager's log lines attached.
async fn opened(
    engine: &Engine,
    scene: &dyn Scene,
    started: Timestamp,
    t: &Timings,
) -> (Incident, FlinkJob) {
    let all = engine.incidents().await.unwrap();
    assert_eq!(all.len(), 1, "{all:#?}");
    let inc = all.into_iter().next().unwrap();
    assert!(scene.expect().unwrap().matches(&inc), "{:?}", inc.record);
    assert_eq!(inc.record.key.get("job").unwrap(), JOB);
    let latency = inc.record.opened_at.since(started);
    assert!(
        latency <= t.for_duration + t.probe_every,
        "{}: opened after {latency:?}",
        scene.name()
    );
    let job = inc
        .evidence
        .iter()
        .filter(|e| e.source == "flink.job")
        .find_map(|e| e.observation.as_ref()?.facts.get::<FlinkJob>()?.ok())
        .expect("the job's diagnosis");
    let logs = inc
        .evidence
        .iter()
        .find(|e| e.source == "loki.flink_jobmanager_logs")
        .expect("JobManager log evidence");
    let lines = logs.observation.as_ref().expect("log lines");
    assert!(
        lines
            .samples
            .iter()
            .any(|s| s.name == "loki_lines" && s.value >= 1.0),
        "{:?}",
        lines.samples
    );
    (inc, job)
}

#[test]
fn the_job_is_the_fake_lakehouses() {
    assert_eq!(JOB, fake::FLINK_JOB);
}

#[tokio::test(start_paused = true)]
async fn a_schema_crash_loop_waits_for_the_fixed_jar_then_restores_from_the_checkpoint() {
    let (lake, engine, t) = setup(false).await;
    let old_job = lake.flink_job_id().to_string();
    let scene = SchemaCrashLoop::new();
    let started = engine.clock().now();
    play(&scene, &lake, &engine, STEP, Duration::from_secs(900))
        .await
        .unwrap();

    let (inc, job) = opened(&engine, &scene, started, &t).await;
    let violated = inc.record.violated.as_ref().expect("violated metric");
    assert_eq!(violated.name, flink_restarting::RESTARTS);
    assert_eq!(violated.threshold, MAX_RESTARTS);
    assert!(violated.value > MAX_RESTARTS, "{violated:?}");
    assert_eq!(job.latest_failure(), Some(FailureCategory::SchemaMismatch));
    assert!(job.exceptions[0].class.contains("SchemaChangeException"));

    // The human task came first, and no restore ran before it was done.
    let deploy = step_index(&engine, DEPLOY_STEP);
    let restore = step_index(&engine, RESTORE_STEP);
    let task_done = inc
        .timeline
        .iter()
        .position(|e| matches!(e.event, Event::TaskDone { step, .. } if step == deploy))
        .unwrap_or_else(|| panic!("{}", events(&inc)));
    let restore_started = inc
        .timeline
        .iter()
        .position(|e| matches!(e.event, Event::Started { step, .. } if step == restore));
    if let Some(i) = restore_started {
        assert!(i > task_done, "{}", events(&inc));
    }

    let closed = until_closed(&engine, &inc.record.id, Duration::from_secs(1800)).await;
    assert_eq!(
        closed.resolution,
        Some(Resolution::Recovered),
        "{}",
        events(&closed)
    );
    assert_eq!(
        closed.step_state(restore),
        StepState::Done,
        "{}",
        events(&closed)
    );
    assert_eq!(
        closed.step_state(step_index(&engine, SCALE_OUT_STEP)),
        StepState::Skipped
    );
    assert_eq!(
        closed.step_state(step_index(&engine, INVESTIGATE_STEP)),
        StepState::Skipped
    );
    assert_eq!(closed.applied_actions(), vec!["flink.restore".to_string()]);

    // From the fake's record: the old job cancelled, the fixed JAR run from the latest checkpoint.
    let reqs = lake.flink().requests();
    let cancel = reqs.matching("PATCH", &format!("/jobs/{old_job}"));
    assert_eq!(cancel.len(), 1, "{}", reqs.describe());
    assert_eq!(cancel[0].query.as_deref(), Some("mode=cancel"));
    let runs = reqs.matching("POST", "/jars/*/run");
    assert_eq!(runs.len(), 1, "{}", reqs.describe());
    assert!(runs[0].path.contains(JAR_NAME), "{}", runs[0].path);
    let body = runs[0].json().unwrap();
    let path = body["savepointPath"].as_str().unwrap();
    assert!(path.contains("/chk-"), "{body}");
    assert_eq!(body["claimMode"], "NO_CLAIM");
    // the path was the old job's latest retained checkpoint
    let plan = closed
        .timeline
        .iter()
        .find_map(|e| match &e.event {
            Event::Planned { plan, .. } if plan.action == "flink.restore" => Some(plan.clone()),
            _ => None,
        })
        .unwrap();
    assert!(plan.description.contains(path), "{}", plan.description);
    // the new job runs under the same name, restored from that path
    let new_job: String = lake
        .flink()
        .job_ids()
        .into_iter()
        .find(|j| *j != old_job)
        .expect("a new job");
    assert_eq!(lake.flink().job_status(&new_job).unwrap(), "RUNNING");
    assert_eq!(lake.flink().job_status(&old_job).unwrap(), "CANCELED");
    let handed_on = closed.timeline.iter().any(|e| match &e.event {
        Event::Finished {
            outcome: Some(o), ..
        } => o.details["job_id"] == new_job.as_str(),
        _ => false,
    });
    assert!(handed_on, "{}", events(&closed));
}

#[tokio::test(start_paused = true)]
async fn a_lost_taskmanager_waits_for_a_human_to_scale_out_and_recovers() {
    let (lake, engine, t) = setup(false).await;
    let scene = LostTaskManager::new();
    let started = engine.clock().now();
    play(&scene, &lake, &engine, STEP, Duration::from_secs(900))
        .await
        .unwrap();
    let (inc, job) = opened(&engine, &scene, started, &t).await;
    let violated = inc.record.violated.as_ref().expect("violated metric");
    assert_eq!(violated.name, flink_restarting::JOB_UP);
    assert_eq!(violated.value, 0.0);
    assert_eq!(violated.threshold, 1.0);
    assert_eq!(job.latest_failure(), Some(FailureCategory::LostTaskManager));
    assert_eq!(job.cluster.taskmanagers, 0);

    let closed = until_closed(&engine, &inc.record.id, Duration::from_secs(1800)).await;
    assert_eq!(
        closed.resolution,
        Some(Resolution::Recovered),
        "{}",
        events(&closed)
    );
    assert_eq!(
        closed.step_state(step_index(&engine, DEPLOY_STEP)),
        StepState::Skipped
    );
    assert_eq!(
        closed.step_state(step_index(&engine, RESTORE_STEP)),
        StepState::Skipped
    );
    assert!(closed.timeline.iter().any(|e| matches!(
        e.event,
        Event::TaskDone { step, .. } if step == step_index(&engine, SCALE_OUT_STEP)
    )));
    assert!(closed.applied_actions().is_empty());
    // the job runs again on the new TaskManager: rb sent nothing mutating to Flink
    assert_eq!(lake.flink().taskmanager_ids().len(), 1);
    assert_eq!(
        lake.flink().job_status(lake.flink_job_id()).unwrap(),
        "RUNNING"
    );
    assert!(lake.flink().requests().mutating().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_job_that_restarts_once_and_recovers_opens_nothing() {
    let (lake, engine, t) = setup(false).await;
    let scene = RestartOnce {
        observe_for: Duration::from_secs(600),
    };
    play(&scene, &lake, &engine, STEP, Duration::from_secs(900))
        .await
        .unwrap();
    engine.run_for(t.for_duration * 2).await.unwrap();
    assert_eq!(lake.flink().num_restarts(lake.flink_job_id()).unwrap(), 1);
    let all = engine.incidents().await.unwrap();
    assert!(all.is_empty(), "{all:#?}");
    let status = engine.status().await;
    assert!(status.iter().all(|s| s.verdict.is_ok()), "{status:#?}");
}

/// Kafka API keys that change a cluster or a group: Produce, OffsetCommit, JoinGroup, LeaveGroup,
/// SyncGroup, CreateTopics, DeleteTopics, DeleteRecords, InitProducerId, TxnOffsetCommit,
/// AlterConfigs, CreatePartitions, DeleteGroups, IncrementalAlterConfigs, OffsetDelete.
const MUTATING_KAFKA: &[i16] = &[0, 8, 11, 13, 14, 19, 20, 21, 22, 28, 33, 37, 42, 44, 47];

#[tokio::test(start_paused = true)]
async fn in_dry_run_a_lost_taskmanager_pages_and_nothing_mutating_reaches_a_fake() {
    let (lake, engine, t) = setup(true).await;
    let scene = LostTaskManager::new();
    let started = engine.clock().now();
    lake.kafka().clear_requests().unwrap();
    play(&scene, &lake, &engine, STEP, Duration::from_secs(900))
        .await
        .unwrap();
    let (inc, _) = opened(&engine, &scene, started, &t).await;
    let closed = until_closed(&engine, &inc.record.id, Duration::from_secs(1800)).await;
    assert_eq!(closed.resolution, Some(Resolution::Recovered));
    for s in [
        HttpSystem::Connect,
        HttpSystem::Flink,
        HttpSystem::Nessie,
        HttpSystem::NessieManagement,
        HttpSystem::Minio,
        HttpSystem::Trino,
        HttpSystem::Prometheus,
        HttpSystem::Loki,
    ] {
        let m = lake.http(s).requests().mutating();
        assert!(m.is_empty(), "{s:?}: {m:?}");
    }
    // (the fake's own clients refresh metadata in the background: only mutating APIs count)
    let mutating: Vec<_> = lake
        .kafka()
        .requests()
        .unwrap()
        .into_iter()
        .filter(|r| MUTATING_KAFKA.contains(&r.api_key))
        .map(|r| r.api_name())
        .collect();
    assert!(mutating.is_empty(), "{mutating:?}");
}

#[tokio::test(start_paused = true)]
async fn in_dry_run_the_restore_is_planned_not_applied() {
    let (lake, engine, _t) = setup(true).await;
    let scene = SchemaCrashLoop::new();
    play(&scene, &lake, &engine, STEP, Duration::from_secs(900))
        .await
        .unwrap();
    // what the scripted human did (the JAR upload) is the world's doing, not rb's
    lake.flink().requests().clear();
    engine.run_for(Duration::from_secs(300)).await.unwrap();
    let all = engine.incidents().await.unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[0]
        .planned_actions()
        .contains(&"flink.restore".to_string()));
    assert!(all[0].applied_actions().is_empty());
    assert!(
        lake.flink().requests().mutating().is_empty(),
        "{}",
        lake.flink().requests().describe()
    );
    assert_eq!(lake.flink().job_ids().len(), 1);
}
