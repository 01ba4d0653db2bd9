//! A binding's history keeps what its symptom reads, not whole observations; what else the probe saw
//! still reaches the incident's evidence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

mod common;

use std::sync::Arc;

use common::*;
use rb_core::journal::{Event, Journal, MemoryJournal, DETECTION};
use rb_core::prelude::*;
use rb_core::symptom::Reads;

#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
struct GroupState {
    state: String,
}
impl FactType for GroupState {
    const KIND: &'static str = "test.group_state";
}

/// The lag the symptom reads, 500 partition samples it does not, and a fact.
fn probe() -> Arc<dyn Probe> {
    Arc::new(FnProbe::new(
        "kafka.consumer_lag",
        kafka(),
        |ctx: &ProbeContext| {
            let mut o = Observation::new("kafka.consumer_lag", "kafka-main", ctx.now())
                .sample("records_lag_max", Default::default(), 12_000.0)
                .fact(&GroupState {
                    state: "Stable".into(),
                });
            for p in 0..500 {
                o.push_sample(
                    "kafka_consumergroup_lag",
                    labels(&[("partition", &p.to_string())]),
                    24.0,
                );
            }
            Ok(o)
        },
    ))
}

#[tokio::test(start_paused = true)]
async fn the_history_keeps_the_samples_the_symptom_reads_and_the_evidence_the_rest() {
    let journal = Arc::new(MemoryJournal::new());
    let rb = Runbook::new("t").playbook(
        Playbook::new("kafka-backlog", "Kafka backlog grows")
            .detect(
                probe(),
                Schedule::every(secs(30)),
                metric("records_lag_max")
                    .above(5_000.0)
                    .for_at_least(mins(2)),
            )
            .escalate_to("Kafka SME"),
    );
    let e = Engine::builder(rb)
        .journal(journal.clone())
        .clock(clock())
        .build()
        .await
        .unwrap();
    run(&e, mins(3), secs(30)).await;

    // the streak journaled its first record as the history holds it: the lag alone
    let began = journal
        .entries(DETECTION)
        .await
        .unwrap()
        .into_iter()
        .find_map(|e| match e.event {
            Event::Streak { began: Some(r), .. } => Some(r),
            _ => None,
        })
        .expect("a streak began");
    let obs = began.result.as_ref().unwrap();
    let names: Vec<&str> = obs.samples.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["records_lag_max"]);
    assert!(obs.facts.is_empty(), "{:?}", obs.facts);

    // the incident's evidence still has what else the probe saw (bounded)
    let incidents = e.incidents().await.unwrap();
    assert_eq!(incidents.len(), 1);
    let ev = incidents[0].evidence[0].observation.as_ref().unwrap();
    assert_eq!(
        ev.facts.get::<GroupState>().unwrap().unwrap().state,
        "Stable"
    );
    assert_eq!(ev.samples_named("records_lag_max").count(), 1);
    assert_eq!(ev.trimmed.as_ref().unwrap().samples, 501);
}

#[test]
fn what_the_library_symptoms_read() {
    let lag = metric("records_lag_max").above(1.0);
    assert_eq!(lag.reads(), Reads::metric("records_lag_max"));
    let both = all_of(vec![
        Box::new(metric("a").above(1.0)),
        Box::new(fact_rule::<GroupState>("dead", |g| {
            (g.state == "Dead").then(|| "dead".to_string())
        })),
    ]);
    let r = both.reads();
    assert!(r.reads_metric("a") && !r.reads_metric("b"));
    assert!(r.reads_fact("test.group_state") && !r.reads_fact("other"));
    // a symptom that does not say reads everything
    assert_eq!(Reads::everything().union(lag.reads()), Reads::everything());

    let mut o = Observation::new("p", "t", Timestamp(0))
        .sample("a", Default::default(), 1.0)
        .sample("b", Default::default(), 2.0)
        .fact(&GroupState {
            state: "Stable".into(),
        });
    let (rest, facts) = Reads::metric("a").split(&mut o);
    assert_eq!(o.samples.len(), 1);
    assert_eq!(rest[0].name, "b");
    assert!(o.facts.is_empty() && facts.get::<GroupState>().is_some());
}
