//! Two probes of one kind on one target (two consumer-lag probes for two groups of one cluster) never
//! collide: their metric series, their detection histories, their journaled streaks and "blind since"
//! and their blind incidents are keyed by the probe's name, not by its kind and target.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use rb_core::journal::{Event, Journal, MemoryJournal, DETECTION};
use rb_core::prelude::*;
use rb_core::ErrorKind;

/// A lag probe of kind `kafka.consumer_lag` for consumer group `group` on `kafka-main`, named after the
/// group; `None` makes it fail as unreachable.
fn lag_probe(group: &str, lag: &Arc<Mutex<Option<f64>>>) -> Arc<dyn Probe> {
    let lag = lag.clone();
    let group_label = group.to_string();
    Arc::new(
        FnProbe::new(
            "kafka.consumer_lag",
            kafka(),
            move |ctx: &ProbeContext| match *lag.lock().unwrap() {
                Some(v) => Ok(
                    Observation::new("kafka.consumer_lag", "kafka-main", ctx.now()).sample(
                        "records_lag_max",
                        labels(&[("group", &group_label)]),
                        v,
                    ),
                ),
                None => Err(ProbeError::new(
                    "kafka.consumer_lag",
                    "kafka-main",
                    "kafka-main:9092",
                    ErrorKind::Unreachable,
                    "connection refused",
                )),
            },
        )
        .named(format!("kafka.consumer_lag/{group}")),
    )
}

fn runbook(a: &Arc<Mutex<Option<f64>>>, b: &Arc<Mutex<Option<f64>>>) -> Runbook {
    let rule = || {
        metric("records_lag_max")
            .above(5_000.0)
            .for_at_least(mins(5))
    };
    Runbook::new("t").playbook(
        Playbook::new("kafka-backlog", "Kafka backlog grows")
            .detect(lag_probe("orders", a), Schedule::every(secs(30)), rule())
            .detect(lag_probe("payments", b), Schedule::every(secs(30)), rule())
            .escalate_to("Kafka SME"),
    )
}

async fn engine(
    journal: &Arc<MemoryJournal>,
    a: &Arc<Mutex<Option<f64>>>,
    b: &Arc<Mutex<Option<f64>>>,
    pager: &Pager,
    clock: Clock,
) -> Engine {
    Engine::builder(runbook(a, b))
        .journal(journal.clone())
        .clock(clock)
        .notifier(Arc::new(pager.clone()))
        .blind_after(mins(5))
        .build()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn two_lag_probes_on_one_target_keep_their_own_metric_series() {
    let (a, b) = (Arc::new(Mutex::new(Some(10.0))), Arc::new(Mutex::new(None)));
    let journal = Arc::new(MemoryJournal::new());
    let e = engine(&journal, &a, &b, &Pager::default(), clock()).await;
    run(&e, secs(60), secs(30)).await; // 3 rounds
    let m = e.metrics();
    let runs = |group: &str, result: &str| {
        m.counter(
            "rb_probe_runs_total",
            &[
                ("probe", &format!("kafka.consumer_lag/{group}")),
                ("target", "kafka-main"),
                ("result", result),
            ],
        )
    };
    assert_eq!(runs("orders", "ok"), 3.0);
    assert_eq!(runs("orders", "error"), 0.0);
    assert_eq!(runs("payments", "ok"), 0.0);
    assert_eq!(runs("payments", "error"), 3.0);
    let text = e.metrics_text();
    assert!(
        text.contains(
            "rb_probe_duration_seconds_count{probe=\"kafka.consumer_lag/payments\",target=\"kafka-main\"} 3"
        ),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_keeps_each_probes_streak_and_blindness_apart() {
    // orders lags from minute 0; payments is blind from minute 0
    let (a, b) = (
        Arc::new(Mutex::new(Some(12_000.0))),
        Arc::new(Mutex::new(None)),
    );
    let journal = Arc::new(MemoryJournal::new());
    let pager = Pager::default();
    let clock = clock();
    let start = clock.now();
    let e = engine(&journal, &a, &b, &pager, clock).await;
    run(&e, mins(4), secs(30)).await;
    assert!(e.open_incidents().await.is_empty());
    drop(e);

    // both were journaled under their own identity, not under one `playbook:target`
    let mut streaks = Vec::new();
    let mut blind = Vec::new();
    for entry in journal.entries(DETECTION).await.unwrap() {
        match entry.event {
            Event::Streak {
                binding,
                began: Some(_),
                ..
            } => streaks.push(binding),
            Event::Blind {
                binding,
                since: Some(_),
                ..
            } => blind.push(binding),
            _ => {}
        }
    }
    assert_eq!(
        streaks,
        ["kafka-backlog:kafka-main/kafka.consumer_lag/orders"]
    );
    assert_eq!(
        blind,
        ["kafka-backlog:kafka-main/kafka.consumer_lag/payments"]
    );

    // a restart at minute 4: the orders streak (minute 0) fires at minute 5, and the payments probe,
    // blind since minute 0, pages at minute 5 — each restored into its own detector
    tokio::time::sleep(secs(30)).await;
    let e = engine(&journal, &a, &b, &pager, clock).await;
    run(&e, mins(2), secs(30)).await;
    let incidents = e.incidents().await.unwrap();
    let mut opened: Vec<(String, u64)> = incidents
        .iter()
        .map(|i| {
            (
                i.record.fingerprint.clone(),
                i.record.opened_at.since(start).as_secs() / 60,
            )
        })
        .collect();
    opened.sort();
    assert_eq!(
        opened,
        [
            (
                "blind:kafka-backlog:kafka-main/kafka.consumer_lag/payments".to_string(),
                5
            ),
            ("kafka-backlog:kafka-main".to_string(), 5),
        ],
        "{incidents:#?}"
    );
    let lag = incidents
        .iter()
        .find(|i| !i.record.fingerprint.starts_with("blind:"))
        .unwrap();
    assert_eq!(lag.record.finding.label("group"), Some("orders"));
}

#[tokio::test(start_paused = true)]
async fn two_detectors_that_cannot_be_told_apart_are_refused() {
    let a = Arc::new(Mutex::new(Some(1.0)));
    let unnamed = |a: &Arc<Mutex<Option<f64>>>| -> Arc<dyn Probe> {
        let a = a.clone();
        Arc::new(FnProbe::new("kafka.consumer_lag", kafka(), move |ctx| {
            Ok(
                Observation::new("kafka.consumer_lag", "kafka-main", ctx.now()).sample(
                    "records_lag_max",
                    Default::default(),
                    a.lock().unwrap().unwrap_or_default(),
                ),
            )
        }))
    };
    let rb = Runbook::new("t").playbook(
        Playbook::new("kafka-backlog", "Kafka backlog grows")
            .detect(
                unnamed(&a),
                Schedule::every(secs(30)),
                metric("records_lag_max").above(1.0),
            )
            .detect(
                unnamed(&a),
                Schedule::every(secs(30)),
                metric("records_lag_max").above(1.0),
            )
            .escalate_to("Kafka SME"),
    );
    let err = Engine::builder(rb).build().await.unwrap_err().to_string();
    assert!(
        err.contains("kafka-backlog:kafka-main/kafka.consumer_lag"),
        "{err}"
    );
    assert!(err.contains("Probe::name"), "{err}");
}
