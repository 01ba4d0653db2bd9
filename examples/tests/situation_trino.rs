//! Seed §4 "Trino backlog grows" on the fake lakehouse: detected within its for-duration plus one
//! probe interval, the heaviest query killed (and only it), recovery verified; in dry-run nothing
//! is killed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use rb_examples::lakehouse::situations::{play, trino_backlog, Scene};
use rb_testkit::lakehouse::HttpSystem;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_trino_backlog_kills_the_heaviest_query_and_recovers() {
    let (lake, systems) = common::lake().await;
    let engine = common::engine(trino_backlog::playbooks(&systems), false).await;
    let t = systems.timings.clone();
    let scene = trino_backlog::Backlog::new(5);
    let started = engine.clock().now();
    play(
        &scene,
        &lake,
        &engine,
        Duration::from_secs(5),
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    // the world ran the queue once the heavy query was gone; let the stability window pass
    common::run_until_closed(&engine, trino_backlog::PLAYBOOK, t.stable_for * 3).await;

    let incs = common::incidents_of(&engine, trino_backlog::PLAYBOOK).await;
    assert_eq!(incs.len(), 1, "one incident: {incs:#?}");
    let inc = &incs[0];
    assert!(scene.expect().unwrap().matches(inc));
    let after = common::opened_after(inc, started);
    assert!(
        after >= t.for_duration && after <= t.for_duration + t.probe_every,
        "opened {after:?} after the start"
    );
    assert_eq!(inc.record.target.name, "trino-main");
    let v = inc.record.violated.as_ref().expect("violated metric");
    assert_eq!(v.name, trino_backlog::QUEUED);
    assert_eq!(v.value, 5.0);
    assert_eq!(v.threshold, 0.0);
    assert_eq!(v.comparison, ">");

    let sources = common::evidence_sources(inc);
    assert!(sources.iter().any(|s| s == "trino.queries"), "{sources:?}");
    assert!(sources.iter().any(|s| s == "minio.capacity"), "{sources:?}");

    // exactly one kill, of the heavy query, with the user header and a message body
    let heavy = scene.heavy_query().unwrap();
    let kills = lake
        .http(HttpSystem::Trino)
        .requests()
        .matching("PUT", "/v1/query/*/killed");
    assert_eq!(kills.len(), 1, "{kills:#?}");
    assert_eq!(kills[0].path, format!("/v1/query/{heavy}/killed"));
    assert_eq!(kills[0].header("x-trino-user"), Some("rb"));
    assert!(
        kills[0].text().contains("killed by rb"),
        "{}",
        kills[0].text()
    );
    let q = lake.trino().query(&heavy).unwrap();
    assert!(q.state.is_done());
    assert!(
        common::verified(inc, 0),
        "the kill is verified: {:#?}",
        inc.timeline
    );
    let killed = common::outcome(inc, 0).expect("the kill's outcome");
    assert!(killed.to_string().contains(&heavy), "{killed}");

    assert!(common::recovered(inc), "recovered: {:#?}", inc.timeline);
    assert_eq!(lake.trino().queued_count(), 0);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn in_dry_run_no_query_is_killed() {
    let (lake, systems) = common::lake().await;
    let engine = common::engine(trino_backlog::playbooks(&systems), true).await;
    let scene = trino_backlog::Backlog::new(3);
    let ran = play(
        &scene,
        &lake,
        &engine,
        Duration::from_secs(5),
        Duration::from_secs(900),
    )
    .await
    .unwrap();
    assert!(
        ran >= Duration::from_secs(900),
        "the backlog never drains by itself"
    );
    let incs = common::incidents_of(&engine, trino_backlog::PLAYBOOK).await;
    assert_eq!(incs.len(), 1, "{:#?}", engine.status().await);
    assert_eq!(
        common::state(&incs[0], 0),
        rb_core::incident::StepState::Planned,
        "{:#?}",
        incs[0].timeline
    );
    assert_eq!(common::mutating_requests(&lake), Vec::<String>::new());
    let heavy = scene.heavy_query().unwrap();
    assert!(!lake.trino().query(&heavy).unwrap().state.is_done());
}
