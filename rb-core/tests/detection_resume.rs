//! Detection state survives a restart: a for-duration streak and a probe's "blind since" are journaled
//! when they change, so an engine restarted every 4 minutes still fires a 5-minute for-duration and
//! still pages a probe that has been blind for 5 minutes.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use rb_core::journal::{Event, Journal, SqliteJournal, DETECTION};
use rb_core::prelude::*;

fn playbook(g: &Gauge) -> Playbook {
    Playbook::new("kafka-backlog", "Kafka backlog grows")
        .detect(
            g.arc(),
            Schedule::every(secs(30)),
            metric("records_lag_max")
                .above(5_000.0)
                .for_at_least(mins(5)),
        )
        .escalate_to("Kafka SME")
}

/// An engine on `path`; `clock` is shared by the engines of a test (one wall clock across restarts).
async fn engine_on(path: &Path, g: &Gauge, pager: &Pager, clock: Clock) -> Engine {
    let journal = Arc::new(SqliteJournal::open(path).await.unwrap());
    Engine::builder(Runbook::new("t").playbook(playbook(g)))
        .journal(journal)
        .clock(clock)
        .notifier(Arc::new(pager.clone()))
        .blind_after(mins(5))
        .build()
        .await
        .unwrap()
}

/// Run engines on `db` one after the other, each for 4 minutes (a process restarted every 4 minutes),
/// for `total` in all; returns the minute (since the start) at which the first incident opened.
async fn restarted_every_4_minutes(
    db: &Path,
    g: &Gauge,
    pager: &Pager,
    total: std::time::Duration,
) -> Option<u64> {
    let clock = clock();
    let start = clock.now();
    let end = tokio::time::Instant::now() + total;
    while tokio::time::Instant::now() < end {
        let e = engine_on(db, g, pager, clock).await;
        run(&e, mins(4) - secs(30), secs(30)).await;
        drop(e);
        tokio::time::sleep(secs(30)).await; // the restart itself
    }
    let j = SqliteJournal::open(db).await.unwrap();
    let ids = j.incidents().await.unwrap();
    let first = ids.first()?;
    let opened = j.entries(first).await.unwrap()[0].at;
    Some(opened.since(start).as_secs() / 60)
}

#[tokio::test(start_paused = true)]
async fn an_engine_restarted_every_4_minutes_still_fires_a_5_minute_for_duration() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let pager = Pager::default();
    let opened = restarted_every_4_minutes(&db, &g, &pager, mins(12)).await;
    assert_eq!(
        opened,
        Some(5),
        "the 5-minute streak began at minute 0 and holds across the restart at minute 4"
    );
    let j = SqliteJournal::open(&db).await.unwrap();
    let streaks: Vec<bool> = j
        .entries(DETECTION)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::Streak { began, .. } => Some(began.is_some()),
            _ => None,
        })
        .collect();
    assert_eq!(
        streaks[..2],
        [true, false],
        "began at minute 0, ended when it fired at minute 5: {streaks:?}"
    );
    assert_eq!(j.incidents().await.unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_broken_streak_is_not_revived_by_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let pager = Pager::default();
    let clock = clock();
    let e = engine_on(&db, &g, &pager, clock).await;
    run(&e, mins(3), secs(30)).await;
    g.set(10.0); // the lag is gone at minute 3
    run(&e, mins(1), secs(30)).await;
    drop(e);
    g.set(12_000.0); // and back at minute 4, after the restart
    let e = engine_on(&db, &g, &pager, clock).await;
    run(&e, mins(3), secs(30)).await;
    assert!(
        e.incidents().await.unwrap().is_empty(),
        "a new streak from minute 4 has not held 5 minutes by minute 7"
    );
    run(&e, mins(3), secs(30)).await;
    assert_eq!(e.incidents().await.unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_engine_restarted_every_4_minutes_still_pages_a_probe_blind_for_5_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let g = Gauge::new(kafka(), "records_lag_max", 10.0);
    g.fail(); // connection refused from the start
    let pager = Pager::default();
    let opened = restarted_every_4_minutes(&db, &g, &pager, mins(12)).await;
    assert_eq!(opened, Some(5), "blind since minute 0, paged at minute 5");
    assert_eq!(pager.roles().len(), 1, "paged once: {:?}", pager.roles());
    let j = SqliteJournal::open(&db).await.unwrap();
    let ids = j.incidents().await.unwrap();
    assert_eq!(ids.len(), 1, "one cannot-see incident across the restarts");
    let inc = rb_core::Incident::from_entries(j.entries(&ids[0]).await.unwrap()).unwrap();
    assert!(
        inc.record
            .finding
            .summary
            .starts_with("cannot see kafka-main"),
        "{}",
        inc.record.finding.summary
    );
    assert_eq!(
        inc.record.finding.since,
        clock().now(),
        "blind since the first observation, before the restarts"
    );
}

/// Lag of 10,000 partitions (partition `p` lags `p` records).
fn ten_thousand_partitions() -> Arc<dyn Probe> {
    Arc::new(FnProbe::new(
        "kafka.consumer_lag",
        kafka(),
        move |ctx: &ProbeContext| {
            let mut o = Observation::new("kafka.consumer_lag", "kafka-main", ctx.now());
            for p in 0..10_000 {
                o.push_sample(
                    "kafka_consumergroup_lag",
                    labels(&[("partition", &p.to_string())]),
                    p as f64,
                );
            }
            Ok(o)
        },
    ))
}

#[tokio::test(start_paused = true)]
async fn a_streak_begun_on_ten_thousand_series_is_journaled_bounded_and_still_holds_across_a_restart(
) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let clock = clock();
    let start = clock.now();
    let engine = || async {
        Engine::builder(
            Runbook::new("t").playbook(
                Playbook::new("kafka-backlog", "Kafka backlog grows").detect(
                    ten_thousand_partitions(),
                    Schedule::every(secs(30)),
                    metric("kafka_consumergroup_lag")
                        .max()
                        .above(5_000.0)
                        .for_at_least(mins(5)),
                ),
            ),
        )
        .journal(Arc::new(SqliteJournal::open(&db).await.unwrap()))
        .clock(clock)
        .build()
        .await
        .unwrap()
    };
    let first = engine().await;
    run(&first, mins(4) - secs(30), secs(30)).await;
    drop(first);
    tokio::time::sleep(secs(30)).await;
    let second = engine().await;
    run(&second, mins(3), secs(30)).await;

    let j = SqliteJournal::open(&db).await.unwrap();
    let began = j
        .entries(DETECTION)
        .await
        .unwrap()
        .into_iter()
        .find_map(|e| match e.event {
            Event::Streak { began, .. } => began,
            _ => None,
        })
        .expect("the streak's start is journaled");
    let json = serde_json::to_string(&began).unwrap();
    assert!(json.len() < 32 * 1024, "{} bytes journaled", json.len());
    let o = began.result.as_ref().unwrap();
    let mut kept: Vec<f64> = o.samples.iter().map(|s| s.value).collect();
    kept.sort_by(f64::total_cmp);
    let expected: Vec<f64> = (0..10).chain(9_990..10_000).map(|v| v as f64).collect();
    assert_eq!(kept, expected, "the 10 lowest and the 10 highest");
    assert_eq!(o.trimmed.as_ref().unwrap().samples, 10_000);

    let ids = j.incidents().await.unwrap();
    assert_eq!(ids.len(), 1);
    let opened = j.entries(&ids[0]).await.unwrap()[0].at;
    assert_eq!(
        opened.since(start).as_secs() / 60,
        5,
        "the streak began at minute 0 and held across the restart at minute 4"
    );
}
