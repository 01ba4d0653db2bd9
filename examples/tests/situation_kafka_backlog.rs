//! Seed §4 "Kafka backlog grows" on the fake lakehouse, on a paused clock: the real backlog is
//! detected, diagnosed, rescaled to the autoscaler's parallelism and recovered; the decoys open
//! nothing; in dry-run nothing mutating reaches any fake.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use rb_actions::flink::autoscale::{target_parallelism, VertexLoad};
use rb_core::journal::Event;
use rb_core::prelude::*;
use rb_core::{Incident, MemoryJournal, Resolution};
use rb_examples::lakehouse::situations::kafka_backlog::{
    self, Backlog, LagSpike, QuietTopic, Rebalance, GROUP, JOB, PLAYBOOK, RECORDS_LAG_MAX,
    RESCALE_STEP, THRESHOLD, TOPIC,
};
use rb_examples::lakehouse::situations::{play, Scene};
use rb_examples::lakehouse::{Credentials, Endpoints, Systems, Timings, RUNBOOK};
use rb_testkit::kafka::KafkaApi;
use rb_testkit::lakehouse::{self as fake, FakeLakehouse, HttpSystem};

const STEP: Duration = Duration::from_secs(5);

async fn setup(dry_run: bool) -> (FakeLakehouse, Engine, Timings) {
    setup_with(dry_run, Timings::seed()).await
}

async fn setup_with(dry_run: bool, timings: Timings) -> (FakeLakehouse, Engine, Timings) {
    let lake = FakeLakehouse::start().await.unwrap();
    let systems = Systems::new(
        Endpoints::from_fake(&lake),
        Credentials::default(),
        timings.clone(),
    )
    .unwrap();
    let mut runbook = Runbook::new(RUNBOOK);
    for p in kafka_backlog::playbooks(&systems).unwrap() {
        runbook = runbook.playbook(p);
    }
    let engine = Engine::builder(runbook)
        .journal(Arc::new(MemoryJournal::new()))
        .approver(Arc::new(AutoApprove))
        .dry_run(dry_run)
        .incident_id_seed(7)
        .build()
        .await
        .unwrap();
    // a healthy minute first: the probes see the pipeline at its baseline lag
    engine.run_for(Duration::from_secs(60)).await.unwrap();
    assert!(engine.incidents().await.unwrap().is_empty());
    (lake, engine, timings)
}

async fn incidents(engine: &Engine) -> Vec<Incident> {
    engine.incidents().await.unwrap()
}

/// Run the engine until `id` closes (at most `max`).
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

#[test]
fn the_names_are_the_fake_lakehouses() {
    assert_eq!(GROUP, fake::FLINK_GROUP);
    assert_eq!(TOPIC, fake::ORDERS_TOPIC);
    assert_eq!(JOB, fake::FLINK_JOB);
}

#[tokio::test(start_paused = true)]
async fn a_real_backlog_is_rescaled_to_the_autoscalers_parallelism_and_recovers() {
    let (lake, engine, t) = setup(false).await;
    let scene = Backlog::orders();
    let started = engine.clock().now();
    play(&scene, &lake, &engine, STEP, Duration::from_secs(900))
        .await
        .unwrap();

    // Opened within the for-duration plus one probe interval, keyed per group and topic.
    let all = incidents(&engine).await;
    assert_eq!(all.len(), 1, "{all:#?}");
    let inc = &all[0];
    let expect = scene.expect().unwrap();
    assert!(expect.matches(inc), "{:?}", inc.record);
    let latency = inc.record.opened_at.since(started);
    assert!(
        latency <= t.for_duration + t.probe_every,
        "opened after {latency:?}"
    );
    assert!(latency >= t.for_duration, "opened after {latency:?}");
    assert_eq!(inc.record.key.get("group").unwrap(), GROUP);
    assert_eq!(inc.record.key.get("topic").unwrap(), TOPIC);
    let violated = inc.record.violated.as_ref().expect("violated metric");
    assert_eq!(violated.name, RECORDS_LAG_MAX);
    assert_eq!(violated.threshold, THRESHOLD);
    assert_eq!(violated.comparison, ">");
    assert_eq!(violated.value, 30_000.0);
    // The Burrow-style status is part of the finding.
    assert!(
        inc.record
            .finding
            .evidence
            .iter()
            .any(|e| e.contains("Burrow") || e.contains("STALL") || e.contains("ERR")),
        "{:?}",
        inc.record.finding
    );

    // Diagnosis: the lag (in records and time), the job's throughput, the topic, the consumer's view.
    let sources: Vec<&str> = inc.evidence.iter().map(|e| e.source.as_str()).collect();
    for probe in [
        "kafka.consumer_lag",
        "flink.job",
        "kafka.topic_description",
        "prometheus.consumer_records_lag_max",
    ] {
        let ev = inc
            .evidence
            .iter()
            .find(|e| e.source == probe)
            .unwrap_or_else(|| panic!("no {probe} evidence in {sources:?}"));
        assert!(ev.observation.is_some(), "{probe}: {:?}", ev.error);
    }
    let lag_ev = inc
        .evidence
        .iter()
        .find(|e| e.source == "kafka.consumer_lag")
        .unwrap();
    let lag_obs = lag_ev.observation.as_ref().unwrap();
    assert!(
        lag_obs
            .samples
            .iter()
            .any(|s| s.name == "kafka_consumergroup_lag_seconds_max" && s.value > 0.0),
        "lag in time missing: {:?}",
        lag_obs.samples
    );

    // The rescale: planned with its inputs, applied as one PUT of the autoscaler's parallelism.
    let plan = inc
        .timeline
        .iter()
        .find_map(|e| match &e.event {
            Event::Planned { plan, .. } if plan.action == "flink.rescale" => Some(plan.clone()),
            _ => None,
        })
        .expect("a rescale plan");
    let vertices = lake.flink().vertices(lake.flink_job_id()).unwrap();
    let (source, enrich) = (&vertices[0].0, &vertices[1].0);
    let inputs = &plan.params["inputs"]["inputs"];
    let rates = &inputs["vertices"][enrich.as_str()];
    let expected = target_parallelism(
        &VertexLoad {
            current: 2,
            key_groups: 128,
            partitions: None,
            input_rate: inputs["input_rate"].as_f64().unwrap(),
            lag: inputs["lag"].as_f64().unwrap(),
            processing_rate: rates["processing_rate"].as_f64().unwrap(),
            busy_ratio: rates["busy_ratio"].as_f64().unwrap(),
        },
        &kafka_backlog::autoscaler_settings(),
    )
    .unwrap();
    assert_eq!(inputs["lag"].as_f64().unwrap(), 6.0 * 30_000.0);
    assert_eq!(expected.parallelism, 4, "{expected:?}");
    assert_eq!(plan.params["targets"][enrich.as_str()], 4);
    assert_eq!(plan.params["targets"][source.as_str()], 2);

    let puts = lake
        .flink()
        .requests()
        .matching("PUT", "/jobs/*/resource-requirements");
    assert_eq!(puts.len(), 1, "{}", lake.flink().requests().describe());
    let put = &puts[0];
    assert_eq!(
        put.path,
        format!("/jobs/{}/resource-requirements", lake.flink_job_id())
    );
    let body = put.json().unwrap();
    assert_eq!(body[enrich.as_str()]["parallelism"]["upperBound"], 4);
    // lowerBound = min(target, the old lower bound)
    let old_lower = plan.params["previous"][enrich.as_str()]["parallelism"]["lowerBound"]
        .as_i64()
        .unwrap();
    assert_eq!(
        body[enrich.as_str()]["parallelism"]["lowerBound"],
        old_lower.min(4)
    );
    assert_eq!(body[source.as_str()]["parallelism"]["upperBound"], 2);
    // Nothing else was changed: no other mutating request to Flink, none elsewhere.
    assert_eq!(lake.flink().requests().mutating().len(), 1);
    assert!(lake
        .http(HttpSystem::Connect)
        .requests()
        .mutating()
        .is_empty());

    // Recovery: lag back under the threshold for the stability window.
    let closed = until_closed(&engine, &inc.record.id, Duration::from_secs(1200)).await;
    assert_eq!(
        closed.resolution,
        Some(Resolution::Recovered),
        "{:?}\n{}",
        engine.status().await,
        closed
            .timeline
            .iter()
            .filter(|e| !matches!(e.event, Event::Evidence { .. } | Event::Opened { .. }))
            .map(|e| format!("{} {:?}", e.at, e.event))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(closed.applied_actions(), vec!["flink.rescale".to_string()]);
    let steps: Vec<&str> = engine
        .runbook()
        .playbooks()
        .iter()
        .find(|p| p.id() == PLAYBOOK)
        .unwrap()
        .mitigations()
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(steps, expect.applied);
    assert_eq!(steps, vec![RESCALE_STEP]);
    assert_eq!(
        lake.flink()
            .vertices(lake.flink_job_id())
            .unwrap()
            .iter()
            .map(|v| v.2)
            .collect::<Vec<_>>(),
        vec![2, 4]
    );
}

async fn decoy_opens_nothing(scene: &dyn Scene) {
    let (lake, engine, t) = setup(false).await;
    assert!(scene.expect().is_none());
    let ran = play(scene, &lake, &engine, STEP, Duration::from_secs(1800))
        .await
        .unwrap();
    assert!(ran >= t.for_duration * 2, "the decoy ran only {ran:?}");
    // and a while after it
    engine.run_for(t.for_duration * 2).await.unwrap();
    let all = incidents(&engine).await;
    assert!(all.is_empty(), "{}: {all:#?}", scene.name());
    // the detector did look: its verdicts are not unknown
    let status = engine.status().await;
    assert!(
        status.iter().all(|s| s.verdict.is_ok()),
        "{}: {status:#?}",
        scene.name()
    );
    assert!(lake.flink().requests().mutating().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_short_lag_spike_well_above_5000_opens_nothing() {
    let spike = LagSpike::seed();
    assert!(spike.lag as f64 > 2.0 * THRESHOLD);
    assert!(spike.duration < Timings::seed().for_duration);
    decoy_opens_nothing(&spike).await;
}

#[tokio::test(start_paused = true)]
async fn a_quiet_topic_with_a_caught_up_consumer_opens_nothing() {
    decoy_opens_nothing(&QuietTopic {
        for_how_long: Duration::from_secs(900),
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_group_that_stops_committing_while_it_rebalances_opens_nothing() {
    let scene = Rebalance::seed();
    // the rebalance pushes the lag over the threshold for one probe interval
    assert!((scene.rate * scene.pause.as_secs() as i64) as f64 > THRESHOLD);
    assert_eq!(scene.pause, Timings::seed().probe_every);
    decoy_opens_nothing(&scene).await;
}

/// The decoys are sized to tempt: without the for-duration, the spike and the rebalance would
/// each open an incident (so the tests above can fail).
#[tokio::test(start_paused = true)]
async fn without_the_for_duration_the_spike_and_the_rebalance_would_page() {
    let careless = Timings {
        for_duration: Duration::ZERO,
        ..Timings::seed()
    };
    for scene in [
        Box::new(LagSpike::seed()) as Box<dyn Scene>,
        Box::new(Rebalance::seed()),
    ] {
        let (lake, engine, _) = setup_with(false, careless.clone()).await;
        play(
            scene.as_ref(),
            &lake,
            &engine,
            STEP,
            Duration::from_secs(600),
        )
        .await
        .unwrap();
        let all = incidents(&engine).await;
        assert_eq!(all.len(), 1, "{}: {all:#?}", scene.name());
        assert!(all[0].record.violated.as_ref().unwrap().value > THRESHOLD);
    }
}

/// Kafka API keys that change a cluster or a group (a probe joining the group would rebalance
/// it): Produce, OffsetCommit, JoinGroup, LeaveGroup, SyncGroup, CreateTopics, DeleteTopics,
/// DeleteRecords, InitProducerId, TxnOffsetCommit, AlterConfigs, CreatePartitions, DeleteGroups,
/// IncrementalAlterConfigs, OffsetDelete.
const MUTATING_KAFKA: &[i16] = &[0, 8, 11, 13, 14, 19, 20, 21, 22, 28, 33, 37, 42, 44, 47];

#[tokio::test(start_paused = true)]
async fn in_dry_run_the_rescale_is_planned_and_nothing_mutating_reaches_a_fake() {
    let (lake, engine, t) = setup(true).await;
    let scene = Backlog::orders();
    scene.start(&lake).await.unwrap();
    // what the scene itself seeded is not the runbook's doing
    lake.kafka().clear_requests().unwrap();
    let systems = [
        HttpSystem::Connect,
        HttpSystem::Flink,
        HttpSystem::Nessie,
        HttpSystem::NessieManagement,
        HttpSystem::Minio,
        HttpSystem::Trino,
        HttpSystem::Prometheus,
        HttpSystem::Loki,
    ];
    for s in systems {
        lake.http(s).requests().clear();
    }
    engine
        .run_for(t.for_duration + t.probe_every * 4)
        .await
        .unwrap();

    let all = incidents(&engine).await;
    assert_eq!(all.len(), 1, "{all:#?}");
    let inc = &all[0];
    assert_eq!(inc.planned_actions(), vec!["flink.rescale".to_string()]);
    assert!(inc.applied_actions().is_empty());
    for s in systems {
        let m = lake.http(s).requests().mutating();
        assert!(m.is_empty(), "{s:?}: {m:?}");
    }
    // the probes did talk to Flink and Kafka
    assert!(!lake.flink().requests().is_empty());
    let kafka = lake.kafka().requests().unwrap();
    assert!(kafka.iter().any(|r| r.is(KafkaApi::OffsetFetch)));
    let bad: Vec<_> = kafka
        .iter()
        .filter(|r| MUTATING_KAFKA.contains(&r.api_key))
        .map(|r| r.api_name())
        .collect();
    assert!(bad.is_empty(), "mutating Kafka requests: {bad:?}");
}
