//! The Alertmanager webhook sender against a tiny receiver: payloads compared with the real
//! capture and the 0.34 payload, firing then resolved with one fingerprint, receiver failures.

// Test helpers outside #[test] functions unwrap and panic too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use rb_testkit::http::alertmanager::{
    AlertSpec, AlertmanagerSender, PayloadFormat, SendError, ZERO_TIME,
};
use rb_testkit::shape::json_shape;
use serde_json::Value;
use time::OffsetDateTime;

const REAL_CAPTURE: &str =
    include_str!("../fixtures/alertmanager/webhook_payload_real_minio_docs.json");
const V034_PAYLOAD: &str = include_str!("../fixtures/alertmanager/webhook_payload_firing.json");

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    status: Arc<AtomicU16>,
}

async fn hook(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    r.got.lock().unwrap().push((headers, v));
    let code = r.status.load(Ordering::SeqCst);
    (
        StatusCode::from_u16(code).unwrap(),
        if code == 200 { "" } else { "receiver is sad" },
    )
}

/// A receiver on 127.0.0.1 answering `status` (200 by default); returns its URL.
async fn start_receiver() -> (String, Receiver, tokio::task::JoinHandle<()>) {
    let recv = Receiver::default();
    recv.status.store(200, Ordering::SeqCst);
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(recv.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}/hook"), recv, task)
}

fn minio_alert() -> AlertSpec {
    AlertSpec::new("MinioDiskFull")
        .label("instance", "minio-0:9000")
        .label("severity", "critical")
        .annotation("summary", "MinIO usable free capacity below 10%")
        .starts_at(OffsetDateTime::from_unix_timestamp(1_714_557_600).unwrap())
        .generator_url("http://prometheus:9090/graph?g0.expr=...")
}

#[tokio::test]
async fn firing_then_resolved_with_one_fingerprint() {
    let (url, recv, _task) = start_receiver().await;
    let am = AlertmanagerSender::new(&url).receiver("runbook-sdk");
    let alert = minio_alert();

    let d = am.fire(std::slice::from_ref(&alert)).await.unwrap();
    assert_eq!(d.status, 200);
    let resolved = am.resolve(std::slice::from_ref(&alert)).await.unwrap();
    assert_eq!(resolved.status, 200);

    let got = recv.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    let (headers, firing) = &got[0];
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["user-agent"], "Alertmanager/0.34.0");

    // The 0.34 payload, field for field and type for type.
    let reference: Value = serde_json::from_str(V034_PAYLOAD).unwrap();
    assert_eq!(
        json_shape(firing),
        json_shape(&reference),
        "fake: {firing:#}"
    );
    // Same values as the reference except the fingerprint (the reference's is illustrative).
    let mut expected = reference.clone();
    expected["alerts"][0]["fingerprint"] = Value::from(alert.fingerprint());
    assert_eq!(firing, &expected);
    assert_eq!(firing["alerts"][0]["endsAt"], ZERO_TIME);
    assert_eq!(firing["notification_reason"], "first notification");

    let (_, resolved) = &got[1];
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["status"], "resolved");
    assert_eq!(
        resolved["alerts"][0]["fingerprint"],
        firing["alerts"][0]["fingerprint"]
    );
    assert_eq!(resolved["groupKey"], firing["groupKey"]);
    assert_eq!(resolved["notification_reason"], "all alerts resolved");
    let ends = resolved["alerts"][0]["endsAt"].as_str().unwrap();
    assert_ne!(ends, ZERO_TIME);
    let ends = OffsetDateTime::parse(ends, &time::format_description::well_known::Rfc3339).unwrap();
    assert!(ends > OffsetDateTime::from_unix_timestamp(1_714_557_600).unwrap());
    assert_eq!(json_shape(resolved), json_shape(&reference));
}

#[tokio::test]
async fn legacy_payload_reproduces_the_real_capture() {
    let (url, recv, _task) = start_receiver().await;
    let capture: Value = serde_json::from_str(REAL_CAPTURE).unwrap();
    let am = AlertmanagerSender::new(&url)
        .receiver("web\\.hook")
        .external_url("http://fedora-minio:9093")
        .format(PayloadFormat::Legacy);
    let alert = AlertSpec::new("MinIOClusterTolerance")
        .label("instance", "localhost:9000")
        .label("job", "minio-job-node")
        .label("pool", "0")
        .label("server", "127.0.0.1:9000")
        .label("set", "0")
        .label("severity", "critical")
        .annotation("description", "MinIO instance 127.0.0.1:9000 of job minio-job has tolerance <=0 for more than 5 minutes.")
        .annotation("summary", "Instance 127.0.0.1:9000 unable to tolerate node failures")
        .starts_at(OffsetDateTime::parse("2023-11-18T06:20:09.456Z", &time::format_description::well_known::Rfc3339).unwrap())
        .generator_url("http://fedora-minio:9090/graph?g0.expr=minio_cluster_health_erasure_set_tolerance+%3C%3D+0&g0.tab=1");
    am.fire(&[alert]).await.unwrap();
    let (_, sent) = recv.got.lock().unwrap()[0].clone();
    assert_eq!(json_shape(&sent), json_shape(&capture));
    // Every field equal to what the real Alertmanager sent — fingerprint included — except
    // commonAnnotations, which in the capture come from another evaluation of the rule.
    let mut expected = capture.clone();
    expected["commonAnnotations"] = sent["alerts"][0]["annotations"].clone();
    assert_eq!(sent, expected);
}

#[tokio::test]
async fn groups_reasons_and_truncation() {
    let (url, recv, _task) = start_receiver().await;
    let am = AlertmanagerSender::new(&url)
        .group_by(&["alertname", "cluster"])
        .max_alerts(1);
    let a = AlertSpec::new("KafkaLag")
        .label("cluster", "c1")
        .label("group", "orders")
        .annotation("summary", "lag");
    let b = AlertSpec::new("KafkaLag")
        .label("cluster", "c1")
        .label("group", "billing")
        .annotation("summary", "lag");
    am.fire(std::slice::from_ref(&a)).await.unwrap();
    am.fire(&[a.clone(), b.clone()]).await.unwrap();
    am.send(&[a.clone(), b.clone().ends_at(OffsetDateTime::now_utc())])
        .await
        .unwrap();
    am.fire(std::slice::from_ref(&a)).await.unwrap();
    let got = recv.got.lock().unwrap().clone();
    let reasons: Vec<&str> = got
        .iter()
        .map(|(_, p)| p["notification_reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "first notification",
            "new alerts added",
            "some alerts resolved",
            "repeat interval elapsed"
        ]
    );
    let two = &got[1].1;
    assert_eq!(
        two["groupKey"],
        "{}:{alertname=\"KafkaLag\", cluster=\"c1\"}"
    );
    assert_eq!(
        two["groupLabels"],
        serde_json::json!({"alertname": "KafkaLag", "cluster": "c1"})
    );
    assert_eq!(
        two["commonLabels"],
        serde_json::json!({"alertname": "KafkaLag", "cluster": "c1"})
    );
    assert_eq!(
        two["commonAnnotations"],
        serde_json::json!({"summary": "lag"})
    );
    assert_eq!(two["alerts"].as_array().unwrap().len(), 1, "max_alerts 1");
    assert_eq!(two["truncatedAlerts"], 1);
    assert_eq!(
        got[2].1["status"], "firing",
        "resolved only when all alerts are resolved"
    );
    assert_ne!(a.fingerprint(), b.fingerprint());

    let c = AlertSpec::new("KafkaLag").label("cluster", "c2");
    assert!(matches!(
        am.send(&[a, c]).await,
        Err(SendError::MixedGroups(_, _))
    ));
    assert!(matches!(am.send(&[]).await, Err(SendError::NoAlerts)));
}

#[tokio::test]
async fn receiver_failures_are_reported() {
    let (url, recv, task) = start_receiver().await;
    let am = AlertmanagerSender::new(&url);
    recv.status.store(500, Ordering::SeqCst);
    match am.fire(&[minio_alert()]).await {
        Err(SendError::Status { status, body }) => {
            assert_eq!(status, 500);
            assert_eq!(body, "receiver is sad");
        }
        other => panic!("expected a status error, got {other:?}"),
    }
    // A refused notification does not count as sent: the next one is still the first.
    recv.status.store(200, Ordering::SeqCst);
    let d = am.fire(&[minio_alert()]).await.unwrap();
    assert_eq!(d.payload["notification_reason"], "first notification");

    task.abort();
    let _ = task.await;
    // A fresh sender (no pooled connection) to the closed listener.
    let am = AlertmanagerSender::new(&url);
    match am.fire(&[minio_alert()]).await {
        Err(SendError::Transport { url: u, .. }) => assert_eq!(u, url),
        other => panic!("expected a transport error, got {other:?}"),
    }
}
