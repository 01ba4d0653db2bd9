//! Every incident records the version of the runbook that opened it (a stable hash of the runbook's
//! structure), and its review shows it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

mod common;

use common::*;
use rb_core::incident::IncidentRecord;
use rb_core::journal::Event;
use rb_core::prelude::*;

fn runbook(g: &Gauge, step: &str) -> Runbook {
    let r = Recorder::new("restart", Risk::Safe, vec![kafka()]);
    Runbook::new("t").playbook(backlog(g, vec![]).mitigate_as(step, r.arc()))
}

#[tokio::test(start_paused = true)]
async fn the_opened_record_carries_the_runbook_version_and_the_review_shows_it() {
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let version = runbook(&g, "restart-consumer").version();
    assert_eq!(version.len(), 16);
    assert!(version.chars().all(|c| c.is_ascii_hexdigit()));
    // stable: the same structure built again hashes the same
    assert_eq!(runbook(&g, "restart-consumer").version(), version);
    // and it follows the structure: a renamed step, another threshold, another probe name
    assert_ne!(runbook(&g, "restart-consumers").version(), version);
    let other_threshold = Runbook::new("t").playbook(
        Playbook::new("kafka-backlog", "Kafka backlog grows")
            .service("orders-pipeline")
            .detect(
                g.arc(),
                Schedule::every(secs(30)),
                metric("records_lag_max").above(6_000.0),
            )
            .escalate_to("Kafka SME"),
    );
    assert_ne!(other_threshold.version(), version);

    let e = Engine::builder(runbook(&g, "restart-consumer"))
        .clock(clock())
        .build()
        .await
        .unwrap();
    run(&e, mins(3), secs(30)).await;
    let incidents = e.incidents().await.unwrap();
    assert_eq!(incidents.len(), 1);
    let id = &incidents[0].record.id;
    let opened = e.journal().entries(id).await.unwrap();
    match &opened[0].event {
        Event::Opened { record } => assert_eq!(record.runbook_version, version),
        other => panic!("{other:?}"),
    }
    let review = e.review(id).await.unwrap();
    let json: serde_json::Value = serde_json::from_str(&review.to_json()).unwrap();
    assert_eq!(
        json["incident"]["record"]["runbook_version"],
        version.as_str()
    );
    let md = review.to_markdown();
    assert!(
        md.contains(&format!("| Runbook version | `{version}` |")),
        "{md}"
    );
}

#[test]
fn a_record_journaled_before_versions_reads_with_none() {
    let old = r#"{"id":"INC-1","fingerprint":"p:t","playbook":"p","title":"T","service":"s",
        "opened_at":0,"target":{"kind":"kafka","name":"t"},
        "finding":{"symptom":"s","summary":"x","since":0},
        "violated":null,"nessie_commit":null,"affected_pipelines":[]}"#;
    let r: IncidentRecord = serde_json::from_str(old).unwrap();
    assert_eq!(r.runbook_version, "");
    // and an empty version is not written
    assert!(!serde_json::to_string(&r)
        .unwrap()
        .contains("runbook_version"));
}
