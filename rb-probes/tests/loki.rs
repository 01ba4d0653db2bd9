//! The Loki probe through reqwest against the fake Loki.

#![cfg(feature = "loki")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support_http;

use std::time::Duration;

use rb_core::{ErrorKind, Observation, Probe, Target};
use rb_probes::loki::{Direction, LokiLines, LokiLogs};
use rb_testkit::http::loki::FakeLoki;
use rb_testkit::http::Fault;
use support_http::{check_matrix, client, ctx, inject_and_observe, kind_of};

const JM: &[(&str, &str)] = &[("container", "flink-jobmanager"), ("namespace", "lake")];
const TM: &[(&str, &str)] = &[("container", "flink-taskmanager"), ("namespace", "lake")];

fn target() -> Target {
    Target::new("loki", "loki-main")
}

fn value(o: &Observation, name: &str) -> f64 {
    o.samples_named(name).next().unwrap().value
}

fn lines(o: &Observation) -> LokiLines {
    o.facts.get().unwrap().unwrap()
}

async fn loki() -> FakeLoki {
    let l = FakeLoki::start().await.unwrap();
    l.log_ago(
        JM,
        &[
            (
                Duration::from_secs(60),
                "org.apache.avro.AvroTypeException: Found int, expecting string",
            ),
            (
                Duration::from_secs(120),
                "Job orders (a1b2) switched from RUNNING to RESTARTING.",
            ),
            (
                Duration::from_secs(300),
                "org.apache.avro.AvroTypeException: Found long, expecting string",
            ),
            (
                Duration::from_secs(1_800),
                "org.apache.avro.AvroTypeException: too old for the window",
            ),
        ],
    );
    l.log_ago(
        TM,
        &[(
            Duration::from_secs(90),
            "java.lang.OutOfMemoryError: Java heap space (Exception in thread)",
        )],
    );
    l
}

#[tokio::test]
async fn lines_of_a_selector_over_the_window_newest_first() {
    let l = loki().await;
    let o = LokiLogs::new(client(&l), target(), r#"{namespace="lake"} |= "Exception""#)
        .window(Duration::from_secs(15 * 60))
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(value(&o, "loki_lines"), 3.0);
    assert_eq!(value(&o, "loki_streams"), 2.0);
    assert_eq!(value(&o, "loki_limit_reached"), 0.0);
    let f = lines(&o);
    let got: Vec<(&str, &str)> = f
        .lines
        .iter()
        .map(|l| (l.labels["container"].as_str(), l.line.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "flink-jobmanager",
                "org.apache.avro.AvroTypeException: Found int, expecting string"
            ),
            (
                "flink-taskmanager",
                "java.lang.OutOfMemoryError: Java heap space (Exception in thread)"
            ),
            (
                "flink-jobmanager",
                "org.apache.avro.AvroTypeException: Found long, expecting string"
            ),
        ]
    );
    assert_eq!(f.direction, Direction::Backward);
    assert_eq!(f.end_ns - f.start_ns, 900_000_000_000);
    assert!(f.lines.windows(2).all(|w| w[0].ts_ns > w[1].ts_ns));
    // the window went out in nanoseconds, the query encoded
    let q = l.requests().matching("GET", "/loki/api/v1/query_range")[0]
        .query
        .clone()
        .unwrap();
    assert!(
        q.starts_with("query=%7Bnamespace%3D%22lake%22%7D%20%7C%3D%20%22Exception%22&start="),
        "{q}"
    );
    assert!(
        q.contains(&format!("start={}&end={}", f.start_ns, f.end_ns)),
        "{q}"
    );
    assert!(q.ends_with("&limit=100&direction=backward"), "{q}");
}

#[tokio::test]
async fn forward_limits_bounded_lines_and_tenant() {
    let l = loki().await;
    let o = LokiLogs::new(client(&l), target(), r#"{container="flink-jobmanager"}"#)
        .direction(Direction::Forward)
        .limit(2)
        .line_limit(20)
        .tenant("lake-team")
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(value(&o, "loki_lines"), 2.0);
    assert_eq!(value(&o, "loki_limit_reached"), 1.0);
    let f = lines(&o);
    assert!(f.limit_reached);
    // oldest first within the 15-minute default window: 5 min ago, then 2 min ago
    assert_eq!(f.lines[0].line, "org.apache.avro.Avro…");
    assert_eq!(f.lines[1].line, "Job orders (a1b2) sw…");
    assert!(f.lines[0].ts_ns < f.lines[1].ts_ns);
    assert_eq!(
        l.requests().all()[0].header("x-scope-orgid"),
        Some("lake-team")
    );
}

#[tokio::test]
async fn an_empty_window_is_an_observation_with_no_lines() {
    let l = loki().await;
    let o = LokiLogs::new(client(&l), target(), r#"{container="spark"}"#)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(o.complete);
    assert_eq!(value(&o, "loki_lines"), 0.0);
    assert!(lines(&o).lines.is_empty());
}

#[tokio::test]
async fn queries_loki_refuses_are_rejected_with_its_message() {
    let l = loki().await;
    let e = LokiLogs::new(client(&l), target(), r#"{container="flink-jobmanager""#)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(
        e.message.contains("400") && e.message.contains("parse error"),
        "{e}"
    );
    let e = LokiLogs::new(
        client(&l),
        target(),
        r#"rate({container="flink-jobmanager"}[5m])"#,
    )
    .observe(&ctx(Duration::from_secs(5)))
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
}

#[tokio::test]
async fn fault_matrix() {
    check_matrix(
        "loki",
        &["logs"],
        &[("logs", "bad_query_400"), ("logs", "metric_result")],
        |_probe, fault| async move {
            let l = loki().await;
            let p = LokiLogs::new(client(&l), target(), r#"{namespace="lake"}"#);
            match fault.as_str() {
                "bad_query_400" => kind_of(
                    &LokiLogs::new(client(&l), target(), "{}")
                        .observe(&ctx(Duration::from_secs(5)))
                        .await,
                ),
                "metric_result" => {
                    l.faults().inject(
                        "GET",
                        "/loki/api/v1/query_range",
                        Fault::StatusBody(
                            200,
                            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1767436000,"3"]]}]}}"#.into(),
                        ),
                    );
                    kind_of(&p.observe(&ctx(Duration::from_secs(5))).await)
                }
                f => {
                    inject_and_observe(&l, "GET", "/loki/api/v1/query_range", f, |c| async move {
                        p.observe(&c).await
                    })
                    .await
                }
            }
        },
    )
    .await;
}
