//! The generic HTTP probe through reqwest against the HTTP fakes.

#![cfg(feature = "http")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support_http;

use std::time::Duration;

use rb_core::{ErrorKind, Observation, Probe, Target};
use rb_probes::http::{HttpCheck, HttpProbe};
use rb_testkit::http::loki::FakeLoki;
use rb_testkit::http::trino::FakeTrino;
use rb_testkit::http::Fault;
use support_http::{check_matrix, client, ctx, inject_and_observe};

fn target() -> Target {
    Target::new("http", "trino-ui")
}

fn value(o: &Observation, name: &str) -> f64 {
    o.samples_named(name).next().unwrap().value
}

fn check(o: &Observation) -> HttpCheck {
    o.facts.get().unwrap().unwrap()
}

#[tokio::test]
async fn a_healthy_answer_meets_every_expectation() {
    let t = FakeTrino::start().await.unwrap();
    let o = HttpProbe::get(client(&t), target(), "/v1/info")
        .expect_status(&[200])
        .body_contains("\"coordinator\":true")
        .body_matches(r#""starting":\s*false"#)
        .unwrap()
        .body_lacks("SHUTTING_DOWN")
        .max_latency(Duration::from_secs(5))
        .header("X-Request-Source", "rb")
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(value(&o, "probe_success"), 1.0);
    assert_eq!(value(&o, "probe_http_status_code"), 200.0);
    let d = value(&o, "probe_duration_seconds");
    assert!(d > 0.0 && d < 5.0, "{d}");
    let c = check(&o);
    assert!(c.success && c.failures.is_empty());
    assert!(c.body_start.contains("nodeVersion"));
    assert_eq!(
        value(&o, "probe_http_content_length"),
        c.body_start.len() as f64
    );
    assert_eq!(t.requests().all()[0].header("x-request-source"), Some("rb"));
}

#[tokio::test]
async fn failed_expectations_are_observations_with_success_zero() {
    let loki = FakeLoki::start().await.unwrap();
    loki.set_ready(false);
    let o = HttpProbe::get(client(&loki), target(), "/ready")
        .body_contains("ready")
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(value(&o, "probe_success"), 0.0);
    assert_eq!(value(&o, "probe_http_status_code"), 503.0);
    let c = check(&o);
    assert_eq!(c.failures, vec!["status 503 not in 200-299".to_string()]);
    assert!(
        c.body_start.starts_with("Ingester not ready"),
        "{}",
        c.body_start
    );

    // the status may be what is expected, the body not
    let t = FakeTrino::start().await.unwrap();
    t.set_starting(true);
    let o = HttpProbe::get(client(&t), target(), "/v1/info")
        .body_matches(r#""starting":\s*false"#)
        .unwrap()
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(value(&o, "probe_success"), 0.0);
    assert_eq!(check(&o).failures.len(), 1);
    assert!(
        check(&o).failures[0].contains("matches"),
        "{:?}",
        check(&o).failures
    );

    // an expected non-2xx status (the UI endpoint answers 401 without a session)
    let o = HttpProbe::get(client(&t), target(), "/ui/api/stats")
        .expect_status_range(400..=499)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(value(&o, "probe_success"), 1.0);
    assert_eq!(value(&o, "probe_http_status_code"), 401.0);
}

#[tokio::test]
async fn slow_answers_fail_the_latency_bound_but_are_observed() {
    let t = FakeTrino::start().await.unwrap();
    t.faults().inject(
        "GET",
        "/v1/info",
        Fault::Latency(Duration::from_millis(300)),
    );
    let o = HttpProbe::get(client(&t), target(), "/v1/info")
        .max_latency(Duration::from_millis(100))
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(value(&o, "probe_success"), 0.0);
    assert!(value(&o, "probe_duration_seconds") >= 0.3);
    assert!(
        check(&o).failures[0].contains("more than 100ms"),
        "{:?}",
        check(&o).failures
    );
}

#[tokio::test]
async fn head_requests_and_invalid_regexes() {
    let t = FakeTrino::start().await.unwrap();
    let o = HttpProbe::head(client(&t), target(), "/v1/info")
        .observe(&ctx(Duration::from_secs(5)))
        .await;
    // the fake routes GET only: axum answers HEAD like GET without a body
    let o = o.unwrap();
    assert_eq!(value(&o, "probe_http_content_length"), 0.0);
    assert_eq!(t.requests().all()[0].method, "HEAD");
    let e = HttpProbe::get(client(&t), target(), "/v1/info")
        .body_matches("(unclosed")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message.contains("regex"), "{e}");
}

#[tokio::test]
async fn fault_matrix() {
    check_matrix("http", &["get"], &[], |_probe, fault| async move {
        let t = FakeTrino::start().await.unwrap();
        let p = HttpProbe::get(client(&t), target(), "/v1/info").body_contains("nodeVersion");
        let kind = inject_and_observe(&t, "GET", "/v1/info", &fault, |c| async move {
            let r = p.observe(&c).await;
            if let Ok(o) = &r {
                // a 5xx or a body that is not the expected one: observed, not successful
                assert_eq!(o.samples_named("probe_success").next().unwrap().value, 0.0);
            }
            r
        })
        .await;
        kind
    })
    .await;
}
