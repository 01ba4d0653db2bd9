//! Seed §4 "Cassandra node down" on the fake ring: node 127.0.0.3 down, one incident for it,
//! detected within the for-duration plus one probe interval; healed before the stage the
//! replacement step is skipped, still down after it a human is asked to start a replacement;
//! recovery verified either way. In dry-run nothing reaches any fake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use rb_core::incident::StepState;
use rb_core::journal::Event;
use rb_examples::lakehouse::situations::{cassandra_down, play, Scene};

async fn node_down_healing_after(
    heal_after: Duration,
    dry_run: bool,
) -> (rb_core::Incident, rb_testkit::lakehouse::FakeLakehouse) {
    let (lake, systems) = common::lake().await;
    let engine = common::engine(cassandra_down::playbooks(&systems), dry_run).await;
    let t = systems.timings.clone();
    let scene = cassandra_down::NodeDown::new(2, heal_after);
    let started = engine.clock().now();
    play(
        &scene,
        &lake,
        &engine,
        Duration::from_secs(5),
        Duration::from_secs(3 * 3600),
    )
    .await
    .unwrap();
    let incs = common::incidents_of(&engine, cassandra_down::PLAYBOOK).await;
    assert_eq!(
        incs.len(),
        1,
        "one incident: {incs:#?}\n{:#?}",
        engine.status().await
    );
    let inc = incs[0].clone();
    assert!(scene.expect().unwrap().matches(&inc));
    assert_eq!(
        inc.record.key.get("address").map(String::as_str),
        Some("127.0.0.3")
    );
    let after = common::opened_after(&inc, started);
    assert!(
        after >= t.for_duration && after <= t.for_duration + t.probe_every,
        "opened {after:?} after the start"
    );
    let v = inc.record.violated.as_ref().expect("violated metric");
    assert_eq!(v.name, "cassandra_node_up");
    assert_eq!(v.value, 0.0);
    assert_eq!(v.threshold, 1.0);
    assert_eq!(v.comparison, "<");
    assert_eq!(inc.record.target.name, "cassandra-main");
    assert!(inc
        .record
        .affected_pipelines
        .iter()
        .any(|p| p.contains("customer profiles")));
    // the ring (with each node's load on disk), the container logs and the heap were asked
    let sources = common::evidence_sources(&inc);
    for s in [
        "cassandra.ring",
        "loki.cassandra_logs",
        "prometheus.cassandra_heap",
    ] {
        assert!(sources.iter().any(|x| x == s), "{s} in {sources:?}");
    }
    let ring = inc
        .evidence
        .iter()
        .find(|e| e.source == "cassandra.ring")
        .and_then(|e| e.observation.as_ref())
        .and_then(|o| o.facts.get::<rb_probes::cassandra::Ring>())
        .and_then(Result::ok)
        .expect("the ring fact");
    let down: Vec<&str> = ring
        .nodes
        .iter()
        .filter(|n| n.status == rb_probes::cassandra::Liveness::Down)
        .map(|n| n.address.as_str())
        .collect();
    assert_eq!(down, vec!["127.0.0.3"]);
    // nothing speaks HTTP to Cassandra: no fake got a write
    assert_eq!(common::mutating_requests(&lake), Vec::<String>::new());
    // no second node was reported
    assert!(common::incidents_of(&engine, cassandra_down::MISSING)
        .await
        .is_empty());
    (inc, lake)
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_node_back_before_the_stage_needs_no_replacement() {
    // down 10 minutes: back before the 15-minute stage
    let (inc, _lake) = node_down_healing_after(Duration::from_secs(600), false).await;
    assert_eq!(inc.step_state(0), StepState::Skipped, "{:#?}", inc.timeline);
    assert!(
        common::skipped_why(&inc, 0)
            .unwrap()
            .contains("recovered within"),
        "{:?}",
        common::skipped_why(&inc, 0)
    );
    assert!(!inc
        .timeline
        .iter()
        .any(|e| matches!(e.event, Event::TaskAssigned { .. })));
    assert!(common::recovered(&inc), "{:#?}", inc.timeline);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_node_still_down_after_the_stage_gets_a_human_replacement() {
    // down 30 minutes: the stage passes, the on-call engineer starts a replacement
    let (inc, _lake) = node_down_healing_after(Duration::from_secs(1800), false).await;
    let assigned = inc.timeline.iter().find_map(|e| match &e.event {
        Event::TaskAssigned { step: 0, task, .. } => Some((e.at, task.clone())),
        _ => None,
    });
    let (at, task) = assigned.expect("the replacement task was handed out");
    assert!(task.contains("replace_address_first_boot"), "{task}");
    let opened = inc.record.opened_at;
    assert!(
        at.as_millis() - opened.as_millis() >= 900_000,
        "the task waited a stage after the incident opened"
    );
    assert!(inc.timeline.iter().any(
        |e| matches!(&e.event, Event::TaskDone { step: 0, by, .. } if by == "scripted on-call")
    ));
    assert!(inc
        .timeline
        .iter()
        .any(|e| matches!(e.event, Event::Escalated { .. })));
    assert!(common::recovered(&inc), "{:#?}", inc.timeline);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn in_dry_run_the_node_is_detected_and_nothing_is_written() {
    let (inc, lake) = node_down_healing_after(Duration::from_secs(600), true).await;
    assert_eq!(common::mutating_requests(&lake), Vec::<String>::new());
    assert_ne!(inc.step_state(0), StepState::Done);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_node_missing_from_the_ring_pages_a_human() {
    let (lake, systems) = common::lake().await;
    let engine = common::engine(cassandra_down::playbooks(&systems), false).await;
    let t = systems.timings.clone();
    let started = engine.clock().now();
    // `nodetool removenode`: 127.0.0.3 leaves the ring altogether (no DN line, just absent)
    lake.cassandra().remove_node(2).unwrap();
    let until = tokio::time::Instant::now() + t.for_duration + t.probe_every * 2;
    while tokio::time::Instant::now() < until {
        engine.run_for(Duration::from_secs(5)).await.unwrap();
    }
    let incs = common::incidents_of(&engine, cassandra_down::MISSING).await;
    assert_eq!(incs.len(), 1, "{incs:#?}\n{:#?}", engine.status().await);
    let inc = &incs[0];
    let after = common::opened_after(inc, started);
    assert!(
        after >= t.for_duration && after <= t.for_duration + t.probe_every,
        "opened {after:?} after the start"
    );
    let v = inc.record.violated.as_ref().unwrap();
    assert_eq!(v.name, "cassandra_nodes_missing_expected");
    assert_eq!(v.value, 1.0);
    assert_eq!(v.threshold, 0.0);
    assert!(inc
        .timeline
        .iter()
        .any(|e| matches!(e.event, Event::TaskAssigned { step: 0, .. })));
    // a node that is gone is not a node that is down
    assert!(common::incidents_of(&engine, cassandra_down::PLAYBOOK)
        .await
        .is_empty());
}
