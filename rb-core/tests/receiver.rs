//! The Alertmanager webhook receiver: bearer token, body-size limit, malformed bodies, idempotency,
//! and an incident opened by a firing notification and closed by its resolution.
#![cfg(feature = "receiver")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use rb_core::journal::Entry;
use rb_core::prelude::*;
use rb_core::receiver::{AlertReceiver, DEFAULT_PATH};
use rb_core::Resolution;
use tower::ServiceExt;

const TOKEN: &str = "wh-token-7f3a";

/// A v4 notification of `KafkaConnectFailed` alerts, each `(connector, status)`, as Alertmanager
/// 0.34 builds it.
fn notification(alerts: &[(&str, &str)]) -> Vec<u8> {
    let alerts: Vec<serde_json::Value> = alerts
        .iter()
        .map(|(connector, status)| {
            serde_json::json!({
                "status": status,
                "labels": {"alertname": "KafkaConnectFailed", "connector": connector},
                "annotations": {"summary": format!("connector {connector} failed")},
                "startsAt": "2026-11-25T07:00:00Z",
                "endsAt": if *status == "firing" { "0001-01-01T00:00:00Z" } else { "2026-11-25T07:20:00Z" },
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": format!("fp-{connector}"),
            })
        })
        .collect();
    let all_resolved = alerts.iter().all(|a| a["status"] == "resolved");
    serde_json::to_vec(&serde_json::json!({
        "version": "4", "groupKey": "{}:{alertname=\"KafkaConnectFailed\"}", "truncatedAlerts": 0,
        "status": if all_resolved { "resolved" } else { "firing" }, "receiver": "rb",
        "groupLabels": {"alertname": "KafkaConnectFailed"}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://am:9093", "notification_reason": "first notification", "routeLabels": {},
        "alerts": alerts,
    }))
    .unwrap()
}

async fn engine() -> Engine {
    let pb = Playbook::new("connect-failed", "A Kafka Connect connector failed")
        .detect_alert(
            "KafkaConnectFailed",
            Target::new("kafka-connect", "connect-main"),
        )
        .stable_for(mins(2));
    Engine::builder(Runbook::new("t").playbook(pb))
        .clock(clock())
        .notifier(Arc::new(Pager::default()))
        .build()
        .await
        .unwrap()
}

fn post(auth: Option<&str>, body: Vec<u8>) -> Request<Body> {
    let mut r = Request::post(DEFAULT_PATH).header(header::CONTENT_TYPE, "application/json");
    if let Some(a) = auth {
        r = r.header(header::AUTHORIZATION, a);
    }
    r.body(Body::from(body)).unwrap()
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

async fn send(rx: &AlertReceiver, req: Request<Body>) -> (StatusCode, String) {
    let resp = rx.router().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn all_entries(e: &Engine) -> Vec<Entry> {
    let mut out = Vec::new();
    for i in e.incidents().await.unwrap() {
        out.extend(i.timeline);
    }
    out
}

#[tokio::test(start_paused = true)]
async fn without_the_token_nothing_is_ingested() {
    let e = engine().await;
    let rx = AlertReceiver::new(e.clone(), Secret::new(TOKEN));
    let body = notification(&[("orders-1", "firing")]);
    for auth in [
        None,
        Some("Bearer wrong-token"),
        Some("Bearer wh-token-7f3"),
        Some("Bearer wh-token-7f3aa"),
        Some("Basic d2g6dG9rZW4="),
        Some(TOKEN),
    ] {
        let (status, text) = send(&rx, post(auth, body.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(!text.contains(TOKEN), "the token leaked: {text}");
    }
    let resp = rx.router().oneshot(post(None, body)).await.unwrap();
    assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
    let r = e.tick().await.unwrap();
    assert!(r.opened.is_empty() && r.unrouted_signals == 0);
    assert!(
        !format!("{rx:?}").contains(TOKEN),
        "Debug shows the token: {rx:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_empty_token_accepts_nothing() {
    let e = engine().await;
    let rx = AlertReceiver::new(e.clone(), Secret::new(""));
    let (status, _) = send(
        &rx,
        post(Some("Bearer "), notification(&[("orders-1", "firing")])),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(start_paused = true)]
async fn a_body_past_the_limit_is_413() {
    let e = engine().await;
    let body = notification(&[("orders-1", "firing")]);
    let rx = AlertReceiver::new(e.clone(), Secret::new(TOKEN)).max_body(body.len() - 1);
    // declared by Content-Length
    let (status, text) = send(&rx, post(Some(&bearer()), body.clone())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert!(text.contains(&format!("{}", body.len() - 1)), "{text}");
    // streamed, no Content-Length
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(64).map(|c| Ok(c.to_vec())).collect();
    let streamed = Request::post(DEFAULT_PATH)
        .header(header::AUTHORIZATION, bearer())
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    let (status, _) = send(&rx, streamed).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(e.tick().await.unwrap().opened.is_empty());
    // exactly at the limit is fine
    let rx = AlertReceiver::new(e.clone(), Secret::new(TOKEN)).max_body(body.len());
    let (status, text) = send(&rx, post(Some(&bearer()), body)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(e.tick().await.unwrap().opened.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn malformed_bodies_are_400_with_the_reason() {
    let e = engine().await;
    let rx = AlertReceiver::new(e.clone(), Secret::new(TOKEN));
    let cases: [(&[u8], &str); 4] = [
        (b"{\"version\":\"4\",\"alerts\":[", "not a v4 webhook payload"),
        (b"", "not a v4 webhook payload"),
        (br#"{"version":"3","alerts":[]}"#, "unsupported webhook version"),
        (
            br#"{"version":"4","alerts":[{"status":"firing","labels":{"job":"x"},"fingerprint":"f1"}]}"#,
            "alertname",
        ),
    ];
    for (body, reason) in cases {
        let (status, text) = send(&rx, post(Some(&bearer()), body.to_vec())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(text.contains(reason), "{reason:?} not in {text:?}");
    }
    let r = e.tick().await.unwrap();
    assert!(r.opened.is_empty() && r.unrouted_signals == 0);
}

#[tokio::test(start_paused = true)]
async fn firing_opens_and_resolution_closes_the_incident() {
    let e = engine().await;
    let rx = AlertReceiver::new(e.clone(), Secret::new(TOKEN));
    let (status, text) = send(
        &rx,
        post(Some(&bearer()), notification(&[("orders-1", "firing")])),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text, r#"{"ingested":1}"#);
    let r = e.tick().await.unwrap();
    assert_eq!(r.opened.len(), 1);
    let id = r.opened[0].clone();
    let inc = e.incident(&id).await.unwrap();
    assert_eq!(inc.record.finding.summary, "connector orders-1 failed");
    run(&e, mins(3), secs(30)).await;
    assert_eq!(e.open_incidents().await, vec![id.clone()], "still firing");

    let (status, _) = send(
        &rx,
        post(Some(&bearer()), notification(&[("orders-1", "resolved")])),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    run(&e, mins(4), secs(30)).await;
    assert!(e.open_incidents().await.is_empty());
    assert_eq!(
        e.incident(&id).await.unwrap().resolution,
        Some(Resolution::Recovered)
    );
}

#[tokio::test(start_paused = true)]
async fn the_same_notification_twice_changes_nothing() {
    let e = engine().await;
    let rx = AlertReceiver::new(e.clone(), Secret::new(TOKEN));
    let firing = notification(&[("orders-1", "firing"), ("orders-2", "firing")]);
    assert_eq!(
        send(&rx, post(Some(&bearer()), firing.clone())).await.0,
        StatusCode::OK
    );
    let r = e.tick().await.unwrap();
    assert_eq!(r.opened.len(), 1);
    run(&e, mins(1), secs(30)).await;
    let before = all_entries(&e).await;

    // Alertmanager did not get our answer and sends it again; then group_interval resends the group
    for _ in 0..2 {
        assert_eq!(
            send(&rx, post(Some(&bearer()), firing.clone())).await.0,
            StatusCode::OK
        );
        let r = e.tick().await.unwrap();
        assert!(r.opened.is_empty(), "a second incident: {r:?}");
        tokio::time::sleep(secs(30)).await;
    }
    assert_eq!(all_entries(&e).await, before, "the journal moved");
    assert_eq!(e.incidents().await.unwrap().len(), 1);

    // the resolution, twice: closed once, nothing reopened
    let resolved = notification(&[("orders-1", "resolved"), ("orders-2", "resolved")]);
    for _ in 0..2 {
        assert_eq!(
            send(&rx, post(Some(&bearer()), resolved.clone())).await.0,
            StatusCode::OK
        );
        run(&e, mins(3), secs(30)).await;
    }
    let incidents = e.incidents().await.unwrap();
    assert_eq!(incidents.len(), 1);
    let closed = incidents[0]
        .timeline
        .iter()
        .filter(|x| matches!(x.event, rb_core::Event::Closed { .. }))
        .count();
    assert_eq!(closed, 1);
    assert!(e.open_incidents().await.is_empty());
}

/// Over a real socket: `serve` answers, and what it ingests opens the incident.
#[tokio::test]
async fn serves_over_tcp() {
    let e = engine().await;
    let rx = AlertReceiver::new(e.clone(), Secret::new(TOKEN));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let rx = rx.clone();
        async move {
            rx.serve(listener, async {
                let _ = stopped.await;
            })
            .await
        }
    });
    let url = format!("http://{addr}{DEFAULT_PATH}");
    let http = reqwest::Client::new();
    let resp = http
        .post(&url)
        .body(notification(&[("orders-1", "firing")]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = http
        .post(&url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(notification(&[("orders-1", "firing")]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(e.tick().await.unwrap().opened.len(), 1);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
