#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Pushed alerts through the engine: each alert instance is judged on its own, and a silenced one
//! does not open an incident.

mod common;

use std::sync::Arc;

use common::*;
use rb_core::prelude::*;

fn webhook(alerts: &[(&str, &str)]) -> Vec<u8> {
    let alerts: Vec<serde_json::Value> = alerts
        .iter()
        .map(|(connector, status)| {
            serde_json::json!({
                "status": status,
                "labels": {"alertname": "KafkaConnectFailed", "connector": connector},
                "annotations": {"summary": format!("connector {connector} failed")},
                "startsAt": "2026-11-25T07:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": format!("fp-{connector}"),
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "version": "4", "groupKey": "{}:{alertname=\"KafkaConnectFailed\"}", "truncatedAlerts": 0,
        "status": "firing", "receiver": "rb", "groupLabels": {}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://am:9093", "alerts": alerts,
    }))
    .unwrap()
}

async fn connect_engine() -> Engine {
    let pb = Playbook::new("connect-failed", "A Kafka Connect connector failed").detect_alert(
        "KafkaConnectFailed",
        Target::new("kafka-connect", "connect-main"),
    );
    Engine::builder(Runbook::new("t").playbook(pb))
        .clock(clock())
        .notifier(Arc::new(Pager::default()))
        .build()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_resolved_instance_does_not_hide_a_firing_one() {
    let e = connect_engine().await;
    e.ingest_alertmanager_webhook(&webhook(&[("orders-1", "firing"), ("orders-2", "firing")]))
        .unwrap();
    let r = e.tick().await.unwrap();
    assert_eq!(r.opened.len(), 1, "one incident per binding");
    // Alertmanager sends the group again: orders-2 resolved, orders-1 still firing
    e.ingest_alertmanager_webhook(&webhook(&[("orders-2", "resolved")]))
        .unwrap();
    run(&e, mins(6), secs(30)).await;
    assert!(e.status().await[0].verdict.is_firing());
    assert_eq!(e.open_incidents().await.len(), 1, "orders-1 still fails");
    e.ingest_alertmanager_webhook(&webhook(&[("orders-1", "resolved")]))
        .unwrap();
    run(&e, mins(6), secs(30)).await;
    assert!(e.status().await[0].verdict.is_ok());
    assert!(e.open_incidents().await.is_empty(), "recovered and closed");
}

#[tokio::test(start_paused = true)]
async fn a_silenced_alert_opens_no_incident() {
    let e = connect_engine().await;
    let body = br#"[{"labels":{"alertname":"KafkaConnectFailed","connector":"orders-1"},
        "annotations":{"summary":"connector orders-1 failed"},"startsAt":"2026-11-25T07:00:00.000Z",
        "endsAt":"2026-11-25T08:00:00.000Z","updatedAt":"2026-11-25T07:00:00.000Z",
        "fingerprint":"fp-orders-1","receivers":[{"name":"rb"}],
        "status":{"state":"suppressed","silencedBy":["maintenance-window"],"inhibitedBy":[],"mutedBy":[]}}]"#;
    for s in Signal::from_alertmanager_v2_alerts(body).unwrap() {
        e.ingest(s);
    }
    let r = e.tick().await.unwrap();
    assert!(r.opened.is_empty());
    assert!(e.status().await[0].verdict.is_ok());
}
