//! Notifiers against the fake Slack webhook and the fake PagerDuty Events API, through reqwest.
#![cfg(feature = "notify")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rb_actions::notify::{dedup_key, Delivery, PagerDutyNotifier, SlackNotifier, WebhookNotifier};
use rb_core::escalation::EscalationReason;
use rb_core::prelude::*;
use rb_core::{ErrorKind, Notification};
use rb_probes::transport::ReqwestClient;
use rb_testkit::doubles::GaugeProbe;
use rb_testkit::http::pagerduty::{AlertStatus, FakePagerDuty};
use rb_testkit::http::slack::{FakeSlack, WEBHOOK_PATH};
use rb_testkit::http::{FakeHttp, Fault};

const ROUTING_KEY: &str = "R0UT1NGKEY00000000000000000000AB";

fn delivery() -> Delivery {
    Delivery {
        attempts: 3,
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

fn client(base: &str, timeout: Duration) -> Arc<ReqwestClient> {
    Arc::new(
        ReqwestClient::builder(base)
            .timeout(timeout)
            .build()
            .unwrap(),
    )
}

fn page() -> Notification {
    Notification {
        action: rb_core::escalation::NotifyAction::Trigger,
        dedup_key: "inc-20261125-0007".into(),
        incident: "inc-20261125-0007".into(),
        playbook: "connect-failed".into(),
        role: "Data Platform On-call".into(),
        channel: "pagerduty".into(),
        reason: EscalationReason::ActionRefused,
        message: "task 1 of orders-sink failed on its configuration".into(),
        attempt: 1,
        ack_due: Timestamp(1_795_590_900_000),
    }
}

fn slack(fake: &FakeSlack, timeout: Duration) -> SlackNotifier {
    SlackNotifier::new(client(&fake.base_url(), timeout), Secret::new(WEBHOOK_PATH))
        .channel("slack:#data-ops")
        .delivery(delivery())
}

#[tokio::test]
async fn slack_gets_text_and_blocks_that_the_webhook_accepts() {
    let fake = FakeSlack::start().await.unwrap();
    slack(&fake, secs(5)).notify(&page()).await.unwrap();
    let msgs = fake.messages();
    assert_eq!(msgs.len(), 1);
    let text = msgs[0]["text"].as_str().unwrap();
    assert!(
        text.contains("inc-20261125-0007") && text.contains("orders-sink"),
        "{text}"
    );
    assert!(text.contains("2026-11-25T07:15:00.000Z"), "{text}");
    assert_eq!(msgs[0]["blocks"][0]["type"], "section");
    let req = &fake.http().requests().all()[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", WEBHOOK_PATH)
    );
    assert_eq!(req.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn slack_from_url_splits_the_secret_url() {
    let fake = FakeSlack::start().await.unwrap();
    let n = SlackNotifier::from_url(&Secret::new(fake.webhook_url())).unwrap();
    assert!(!format!("{n:?}").contains("rbtestsecret"), "{n:?}");
    n.notify(&page()).await.unwrap();
    assert_eq!(fake.messages().len(), 1);
    assert_eq!(
        SlackNotifier::from_url(&Secret::new("hooks.slack.com/x"))
            .unwrap_err()
            .kind(),
        ErrorKind::Invalid
    );
}

#[tokio::test]
async fn a_429_and_5xx_are_retried_with_backoff_then_delivered() {
    let fake = FakeSlack::start().await.unwrap();
    fake.rate_limit_next(1, 0);
    fake.http()
        .faults()
        .inject("POST", "/services/**", Fault::Status(503))
        .times(1);
    slack(&fake, secs(5)).notify(&page()).await.unwrap();
    assert_eq!(fake.http().requests().len(), 3, "503, 429, then ok");
    assert_eq!(fake.messages().len(), 1);
}

#[tokio::test]
async fn a_5xx_that_lasts_is_rejected_after_the_last_try() {
    let fake = FakeSlack::start().await.unwrap();
    fake.http().faults().inject_all(Fault::Status(500));
    let e = slack(&fake, secs(5)).notify(&page()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(e.message.contains("after 3 tries"), "{e}");
    assert_eq!(fake.http().requests().len(), 3);
    assert!(
        !e.to_string().contains("rbtestsecret"),
        "secret leaked: {e}"
    );
}

#[tokio::test]
async fn a_4xx_is_a_clear_error_without_retry_and_without_the_secret() {
    let fake = FakeSlack::start().await.unwrap();
    fake.revoke();
    let e = slack(&fake, secs(5)).notify(&page()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized);
    assert!(e.message.contains("invalid_token"), "{e}");
    assert!(
        !e.to_string().contains("rbtestsecret"),
        "secret leaked: {e}"
    );
    assert_eq!(fake.http().requests().len(), 1, "no retry on 4xx");

    let fake = FakeSlack::start().await.unwrap();
    fake.archive_channel();
    let e = slack(&fake, secs(5)).notify(&page()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message.contains("410") && e.message.contains("channel_is_archived"));

    // what the webhook says about a body without text
    let fake = FakeSlack::start().await.unwrap();
    let e = WebhookNotifier::new(client(&fake.base_url(), secs(5)), WEBHOOK_PATH)
        .delivery(delivery())
        .notify(&page())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message.contains("no_text"), "{e}");
}

#[tokio::test]
async fn a_hang_times_out_and_a_dead_endpoint_is_unreachable() {
    let fake = FakeSlack::start().await.unwrap();
    fake.http().faults().inject_all(Fault::Hang);
    let e = slack(&fake, Duration::from_millis(200))
        .notify(&page())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(fake.http().requests().len(), 3);

    let fake = FakeSlack::start().await.unwrap();
    let n = slack(&fake, secs(5));
    fake.http().refuse_connections();
    let e = n.notify(&page()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
}

fn pagerduty(fake: &FakePagerDuty) -> PagerDutyNotifier {
    PagerDutyNotifier::new(client(&fake.base_url(), secs(5)), Secret::new(ROUTING_KEY))
        .source("rb-test")
        .delivery(delivery())
}

#[tokio::test]
async fn pagerduty_triggers_acknowledges_and_resolves_one_alert_per_incident() {
    let fake = FakePagerDuty::start().await.unwrap();
    fake.expect_routing_key(ROUTING_KEY);
    let pd = pagerduty(&fake);
    pd.notify(&page()).await.unwrap();
    let key = dedup_key("inc-20261125-0007");
    assert_eq!(key, "rb/inc-20261125-0007");
    let alert = fake.alert(&key).unwrap();
    assert_eq!(alert.status, AlertStatus::Triggered);
    assert_eq!(alert.payload["severity"], "error");
    assert_eq!(alert.payload["source"], "rb-test");
    assert!(alert.payload["summary"]
        .as_str()
        .unwrap()
        .contains("orders-sink"));
    assert_eq!(
        alert.payload["custom_details"]["incident"],
        "inc-20261125-0007"
    );
    let ev = &fake.events()[0];
    assert_eq!(ev["event_action"], "trigger");
    assert_eq!(ev["routing_key"], ROUTING_KEY);
    assert_eq!(ev["dedup_key"], key.as_str());
    assert_eq!(
        fake.http().requests().all()[0].path,
        "/v2/enqueue",
        "the Events API v2 path"
    );

    // the second page of the same incident updates the same alert
    let mut again = page();
    again.attempt = 2;
    again.reason = EscalationReason::SlaMissed;
    pd.notify(&again).await.unwrap();
    assert_eq!(fake.alerts().len(), 1);
    assert_eq!(fake.alert(&key).unwrap().payload["severity"], "critical");

    pd.acknowledge(&key).await.unwrap();
    assert_eq!(fake.alert(&key).unwrap().status, AlertStatus::Acknowledged);
    pd.resolve(&key).await.unwrap();
    assert_eq!(fake.alert(&key).unwrap().status, AlertStatus::Resolved);
    let actions: Vec<String> = fake
        .events()
        .iter()
        .map(|e| e["event_action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        vec!["trigger", "trigger", "acknowledge", "resolve"]
    );
    assert!(fake.events()[2].get("payload").is_none());
}

#[tokio::test]
async fn pagerduty_refusals_are_clear_and_never_show_the_routing_key() {
    let fake = FakePagerDuty::start().await.unwrap();
    fake.expect_routing_key("ANOTHERKEY0000000000000000000000");
    let e = pagerduty(&fake).notify(&page()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(
        e.message.contains("Event object is invalid") && e.message.contains("routing_key"),
        "{e}"
    );
    assert!(
        !e.to_string().contains(ROUTING_KEY),
        "routing key leaked: {e}"
    );
    assert_eq!(fake.http().requests().len(), 1);
    assert!(!format!("{:?}", pagerduty(&fake)).contains(ROUTING_KEY));

    // throttled, then a 502: retried; throttled for good: rejected after the last try
    let fake = FakePagerDuty::start().await.unwrap();
    fake.http()
        .faults()
        .inject("POST", "/v2/enqueue", Fault::Status(429))
        .times(1);
    fake.http()
        .faults()
        .inject("POST", "/v2/enqueue", Fault::Status(502))
        .times(1);
    pagerduty(&fake).notify(&page()).await.unwrap();
    assert_eq!(fake.http().requests().len(), 3);
    assert_eq!(fake.alerts().len(), 1);
    fake.http().faults().inject_all(Fault::Status(429));
    let e = pagerduty(&fake).resolve("rb/x").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(e.message.contains("429"), "{e}");
}

#[tokio::test]
async fn the_generic_webhook_posts_the_notification_as_json() {
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let g = got.clone();
    let router = axum::Router::new().route(
        "/hooks/rb",
        axum::routing::post(move |body: axum::Json<serde_json::Value>| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push(body.0);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let fake = FakeHttp::start(router).await.unwrap();
    fake.faults()
        .inject("POST", "/hooks/rb", Fault::Status(500))
        .times(1);
    WebhookNotifier::new(client(&fake.base_url(), secs(5)), "/hooks/rb")
        .delivery(delivery())
        .notify(&page())
        .await
        .unwrap();
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["incident"], "inc-20261125-0007");
    assert_eq!(got[0]["reason"], "action_refused");
    assert_eq!(got[0]["ack_due_rfc3339"], "2026-11-25T07:15:00.000Z");
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn through_the_engine_a_page_reaches_pagerduty_keyed_by_the_incident() {
    let fake = FakePagerDuty::start().await.unwrap();
    let lag = GaugeProbe::new(
        Target::new("kafka", "kafka-main"),
        "records_lag_max",
        12_000.0,
    );
    let runbook = Runbook::new("t").playbook(
        Playbook::new("kafka-backlog", "Kafka backlog grows")
            .detect(
                lag.arc(),
                Schedule::every(secs(30)),
                metric("records_lag_max").above(5_000.0),
            )
            .escalate_to("Data Platform On-call"),
    );
    let engine = Engine::builder(runbook)
        .clock(Clock::starting_at(Timestamp(1_795_590_000_000)))
        .notifier(Arc::new(pagerduty(&fake)))
        .build()
        .await
        .unwrap();
    for _ in 0..3 {
        engine.tick().await.unwrap();
        tokio::time::sleep(secs(30)).await;
    }
    let incidents = engine.incidents().await.unwrap();
    assert_eq!(incidents.len(), 1);
    let key = dedup_key(&incidents[0].record.id);
    let alert = fake
        .alert(&key)
        .expect("a PagerDuty alert for the incident");
    assert_eq!(alert.status, AlertStatus::Triggered);
    assert!(alert.payload["summary"]
        .as_str()
        .unwrap()
        .contains("Data Platform On-call"));
}
