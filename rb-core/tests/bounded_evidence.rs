//! Evidence is bounded: a 10,000-partition lag observation is kept as a summary plus the top samples in
//! the journal's entries, in a remediation's context and in the review — never copied whole.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use rb_core::journal::Event;
use rb_core::prelude::*;
use rb_core::{EVIDENCE_MAX_SAMPLES, EVIDENCE_TOP_K};

const PARTITIONS: usize = 10_000;

/// Lag of every partition of `orders` (partition `p` lags `p` records), plus one group total.
fn partitions(id: &'static str) -> Arc<dyn Probe> {
    Arc::new(FnProbe::new(id, kafka(), move |ctx: &ProbeContext| {
        let mut o = Observation::new(id, "kafka-main", ctx.now());
        for p in 0..PARTITIONS {
            o.push_sample(
                "kafka_consumergroup_lag",
                labels(&[("topic", "orders"), ("partition", &p.to_string())]),
                p as f64,
            );
        }
        o.push_sample("records_lag_max", labels(&[("group", "g")]), 9_999.0);
        Ok(o)
    }))
}

/// A safe step that records how many samples its context's evidence holds.
#[derive(Debug)]
struct Count(Arc<Mutex<Vec<usize>>>);

#[async_trait]
impl Remediation for Count {
    fn id(&self) -> &str {
        "count"
    }
    fn risk(&self) -> Risk {
        Risk::Safe
    }
    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError> {
        self.0.lock().unwrap().extend(
            ctx.evidence
                .iter()
                .filter_map(|e| e.observation.as_ref())
                .map(|o| o.samples.len()),
        );
        Ok(Plan::new("count", vec![kafka()], "count samples"))
    }
    async fn apply(&self, _plan: &Plan, _ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        Ok(Outcome::new("counted"))
    }
}

#[tokio::test(start_paused = true)]
async fn a_ten_thousand_partition_observation_is_bounded_in_journal_context_and_report() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rb = Runbook::new("t").playbook(
        Playbook::new("kafka-backlog", "Kafka backlog grows")
            .detect(
                partitions("kafka.consumer_lag"),
                Schedule::every(secs(30)),
                metric("kafka_consumergroup_lag").max().above(5_000.0),
            )
            .diagnose(partitions("kafka.partition_lag"))
            .mitigate(Arc::new(Count(seen.clone())))
            .escalate_to("Kafka SME"),
    );
    let e = Engine::builder(rb).clock(clock()).build().await.unwrap();
    run(&e, secs(60), secs(30)).await;
    let incidents = e.incidents().await.unwrap();
    assert_eq!(incidents.len(), 1);
    let id = incidents[0].record.id.clone();
    let entries = e.journal().entries(&id).await.unwrap();

    // every journaled entry of the incident is small: the Opened record, the detect and diagnosis
    // evidence (10,000 samples of ~80 bytes each would be ~800 KB)
    let mut evidence = 0;
    for entry in &entries {
        let json = serde_json::to_string(&entry.event).unwrap();
        assert!(
            json.len() < 32 * 1024,
            "{} bytes in {:?}",
            json.len(),
            rb_core::report::describe(&entry.event)
        );
        if let Event::Evidence { evidence: ev } = &entry.event {
            evidence += 1;
            let o = ev.observation.as_ref().unwrap();
            let t = o.trimmed.as_ref().expect("a summary of what was left out");
            assert_eq!(t.samples, PARTITIONS + 1);
            assert_eq!(t.kept, o.samples.len());
            assert!(o.samples.len() <= EVIDENCE_MAX_SAMPLES);
            let lag = &t.metrics["kafka_consumergroup_lag"];
            assert_eq!(
                (lag.count, lag.min, lag.max),
                (PARTITIONS, Some(0.0), Some(9_999.0))
            );
            // the top of the lag: the worst partitions, and the group total
            let kept: Vec<f64> = o
                .samples_named("kafka_consumergroup_lag")
                .map(|s| s.value)
                .collect();
            assert_eq!(kept.len(), EVIDENCE_TOP_K);
            assert!(kept
                .iter()
                .all(|v| *v >= (PARTITIONS - EVIDENCE_TOP_K) as f64));
            assert_eq!(o.samples_named("records_lag_max").count(), 1);
        }
    }
    assert_eq!(evidence, 2, "detect and diagnosis evidence");

    // the remediation's context holds the bounded copies
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|n| *n <= EVIDENCE_MAX_SAMPLES), "{seen:?}");

    // and so does the review
    let review = e.review(&id).await.unwrap();
    let json = review.to_json();
    assert!(
        json.len() < 128 * 1024,
        "{} bytes of review JSON",
        json.len()
    );
    let md = review.to_markdown();
    assert!(
        md.contains("10001 samples, the top 11 kept"),
        "the review says what was left out:\n{md}"
    );
}

#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
struct GroupLag {
    group: String,
    lag: u64,
}
impl FactType for GroupLag {
    const KIND: &'static str = "test.group_lag";
}

#[test]
fn facts_of_one_kind_are_kept_typed_and_keyed_and_journaled_as_before() {
    let o = Observation::new("p", "t", Timestamp(0))
        .fact(&GroupLag {
            group: "all".into(),
            lag: 3,
        })
        .fact_keyed(
            "orders",
            GroupLag {
                group: "orders".into(),
                lag: 1,
            },
        )
        .fact_keyed(
            "payments",
            GroupLag {
                group: "payments".into(),
                lag: 2,
            },
        );
    assert_eq!(o.facts.len(), 3);
    assert_eq!(o.facts.get::<GroupLag>().unwrap().unwrap().group, "all");
    assert_eq!(
        o.facts
            .get_keyed::<GroupLag>("payments")
            .unwrap()
            .unwrap()
            .lag,
        2
    );
    let all: Vec<String> = o
        .facts
        .all::<GroupLag>()
        .into_iter()
        .map(|(k, f)| format!("{k}={}", f.unwrap().lag))
        .collect();
    assert_eq!(all, ["=3", "orders=1", "payments=2"]);

    // the JSON form: unkeyed facts as journals always had them, keyed ones as `kind[key]`
    let json = serde_json::to_value(&o).unwrap();
    assert_eq!(json["facts"]["test.group_lag"]["lag"], 3);
    assert_eq!(json["facts"]["test.group_lag[orders]"]["lag"], 1);
    let back: Observation = serde_json::from_value(json).unwrap();
    assert_eq!(back, o);
    assert_eq!(
        back.facts.get_keyed::<GroupLag>("orders").unwrap().unwrap(),
        GroupLag {
            group: "orders".into(),
            lag: 1
        }
    );

    // an entry written before facts had keys reads the same
    let old: Observation = serde_json::from_str(
        r#"{"probe":"p","target":"t","at":0,"facts":{"test.group_lag":{"group":"g","lag":7}}}"#,
    )
    .unwrap();
    assert_eq!(old.facts.get::<GroupLag>().unwrap().unwrap().lag, 7);
    assert_eq!(old.facts.all::<GroupLag>().len(), 1);
}
