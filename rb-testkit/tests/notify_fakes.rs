//! The Slack webhook and PagerDuty Events API fakes over HTTP: the documented answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rb_testkit::http::pagerduty::{AlertStatus, FakePagerDuty};
use rb_testkit::http::slack::FakeSlack;
use rb_testkit::http::Fault;
use serde_json::{json, Value};

const KEY: &str = "R0UT1NGKEY0000000000000000000000";

async fn post(url: &str, body: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn slack_answers_like_slack() {
    let s = FakeSlack::start().await.unwrap();
    let url = s.webhook_url();
    assert_eq!(post(&url, r#"{"text":"hi"}"#).await, (200, "ok".into()));
    assert_eq!(
        post(&url, r#"{"username":"rb"}"#).await,
        (400, "no_text".into())
    );
    assert_eq!(post(&url, "text=hi").await, (400, "invalid_payload".into()));
    let wrong = format!("{}/services/T0RB00001/B0RB00002/wrong", s.base_url());
    assert_eq!(
        post(&wrong, r#"{"text":"hi"}"#).await,
        (404, "no_service".into())
    );
    s.rate_limit_next(1, 7);
    let r = reqwest::Client::new()
        .post(&url)
        .body(r#"{"text":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    s.http()
        .faults()
        .inject("POST", "/services/**", Fault::Status(503))
        .times(1);
    assert_eq!(post(&url, r#"{"text":"x"}"#).await.0, 503);
    assert_eq!(post(&url, r#"{"text":"y"}"#).await.0, 200);
    assert_eq!(s.messages().len(), 2, "only accepted messages are kept");
    assert_eq!(s.http().requests().len(), 7, "every request is recorded");
}

#[tokio::test]
async fn pagerduty_validates_events_and_tracks_alerts() {
    let pd = FakePagerDuty::start().await.unwrap();
    let url = pd.enqueue_url();
    let trigger = json!({"routing_key": KEY, "event_action": "trigger",
        "payload": {"summary": "s", "source": "rb", "severity": "warning"}});
    let (st, body) = post(&url, &trigger.to_string()).await;
    assert_eq!(st, 202);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success");
    assert_eq!(v["message"], "Event processed");
    let key = v["dedup_key"].as_str().unwrap().to_string();
    assert_eq!(pd.alert(&key).unwrap().status, AlertStatus::Triggered);

    let (st, body) = post(
        &url,
        &json!({"routing_key": KEY, "event_action": "resolve"}).to_string(),
    )
    .await;
    assert_eq!(st, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "invalid event");
    assert!(v["errors"][0].as_str().unwrap().contains("dedup_key"));
    let (st, body) = post(&url, "{not json").await;
    assert_eq!(st, 400);
    assert!(body.contains("Malformed JSON"));

    let resolve = json!({"routing_key": KEY, "event_action": "resolve", "dedup_key": key});
    assert_eq!(post(&url, &resolve.to_string()).await.0, 202);
    assert_eq!(pd.alert(&key).unwrap().status, AlertStatus::Resolved);
    // a new trigger on a resolved key opens the alert again
    let mut again = trigger.clone();
    again["dedup_key"] = json!(key);
    assert_eq!(post(&url, &again.to_string()).await.0, 202);
    assert_eq!(pd.alert(&key).unwrap().status, AlertStatus::Triggered);
    assert_eq!(pd.alert(&key).unwrap().events, 3);
    assert_eq!(
        post(&format!("{}/v1/enqueue", pd.base_url()), "{}").await.0,
        404
    );
}
