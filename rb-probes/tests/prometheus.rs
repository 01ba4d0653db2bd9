//! The Prometheus probe through reqwest against the fake Prometheus.

#![cfg(feature = "prometheus")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support_http;

use std::time::Duration;

use rb_core::{ErrorKind, Probe, Secret, Target};
use rb_probes::prometheus::{PromQuery, PromResult, ResultType, SERIES_METRIC};
use rb_probes::transport::{HttpAuth, ReqwestClient};
use rb_testkit::http::prometheus::{ErrorType, FakePrometheus};
use rb_testkit::http::Fault;
use support_http::{check_matrix, client, ctx_at, inject_and_observe};

const T0: i64 = 1_767_436_000_000;

fn target() -> Target {
    Target::new("prometheus", "prom-main")
}

fn ctx() -> rb_core::ProbeContext {
    ctx_at(T0 as u64, Duration::from_secs(5))
}

fn fact(o: &rb_core::Observation) -> PromResult {
    o.facts.get::<PromResult>().unwrap().unwrap()
}

fn values(o: &rb_core::Observation, name: &str) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = o
        .samples_named(name)
        .map(|s| (format!("{:?}", s.labels), s.value))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[tokio::test]
async fn instant_vector_samples_keep_names_and_labels() {
    let prom = FakePrometheus::start_at(T0).await.unwrap();
    prom.push(
        "kafka_connect_connector_failed_task_count",
        &[("connector", "orders-cdc"), ("instance", "connect-1:9404")],
        T0 - 10_000,
        2.0,
    );
    prom.push(
        "kafka_connect_connector_failed_task_count",
        &[
            ("connector", "payments-sink"),
            ("instance", "connect-1:9404"),
        ],
        T0 - 10_000,
        0.0,
    );
    let probe = PromQuery::instant(
        client(&prom),
        target(),
        "kafka_connect_connector_failed_task_count",
    );
    let o = probe.observe(&ctx()).await.unwrap();
    assert!(o.complete);
    assert_eq!(
        values(&o, "kafka_connect_connector_failed_task_count"),
        vec![
            (
                r#"{"connector": "orders-cdc", "instance": "connect-1:9404"}"#.to_string(),
                2.0
            ),
            (
                r#"{"connector": "payments-sink", "instance": "connect-1:9404"}"#.to_string(),
                0.0
            ),
        ]
    );
    assert_eq!(o.samples_named(SERIES_METRIC).next().unwrap().value, 2.0);
    // samples are stamped with Prometheus' evaluation time (the probe's now)
    let s = o
        .samples_named("kafka_connect_connector_failed_task_count")
        .next()
        .unwrap();
    assert!(
        s.at.0 >= T0 as u64 && s.at.0 < T0 as u64 + 5_000,
        "{:?}",
        s.at
    );
    let f = fact(&o);
    assert_eq!(f.result_type, ResultType::Vector);
    assert_eq!(f.total_series, 2);
    assert!(!f.truncated);
    assert_eq!(
        f.series[0].labels["__name__"],
        "kafka_connect_connector_failed_task_count"
    );
    // the query went out URL-encoded with the probe's time
    let reqs = prom.requests().matching("GET", "/api/v1/query");
    assert_eq!(reqs.len(), 1);
    let q = reqs[0].query.clone().unwrap();
    assert!(
        q.starts_with("query=kafka_connect_connector_failed_task_count&time=176743600"),
        "{q}"
    );
}

#[tokio::test]
async fn aggregations_use_the_configured_or_default_name() {
    let prom = FakePrometheus::start_at(T0).await.unwrap();
    for (server, v) in [("minio-0:9000", 5.0e11), ("minio-1:9000", 5.0e11)] {
        prom.push(
            "minio_cluster_capacity_usable_free_bytes",
            &[("server", server)],
            T0 - 1_000,
            v,
        );
    }
    let o = PromQuery::instant(
        client(&prom),
        target(),
        "max(minio_cluster_capacity_usable_free_bytes)",
    )
    .observe(&ctx())
    .await
    .unwrap();
    assert_eq!(
        values(&o, rb_probes::prometheus::DEFAULT_METRIC),
        vec![("{}".to_string(), 5.0e11)]
    );
    let o = PromQuery::instant(
        client(&prom),
        target(),
        "max(minio_cluster_capacity_usable_free_bytes)",
    )
    .metric_name("minio_free")
    .observe(&ctx())
    .await
    .unwrap();
    assert_eq!(values(&o, "minio_free"), vec![("{}".to_string(), 5.0e11)]);
}

#[tokio::test]
async fn special_values_survive() {
    let prom = FakePrometheus::start_at(T0).await.unwrap();
    prom.push("m", &[("k", "nan")], T0 - 1_000, f64::NAN);
    prom.push("m", &[("k", "pinf")], T0 - 1_000, f64::INFINITY);
    prom.push("m", &[("k", "ninf")], T0 - 1_000, f64::NEG_INFINITY);
    let o = PromQuery::instant(client(&prom), target(), "m")
        .observe(&ctx())
        .await
        .unwrap();
    let v = values(&o, "m");
    assert_eq!(v.len(), 3);
    assert!(v[0].1.is_nan(), "{v:?}"); // {"k": "nan"}
    assert_eq!(v[1].1, f64::NEG_INFINITY);
    assert_eq!(v[2].1, f64::INFINITY);
    // and in the fact, which round-trips through JSON
    let f = fact(&o);
    assert_eq!(f.series.len(), 3);
}

#[tokio::test]
async fn scalar_result() {
    let prom = FakePrometheus::start_at(T0).await.unwrap();
    prom.push("trino_execution_queuedqueries", &[], T0 - 1_000, 7.0);
    let o = PromQuery::instant(
        client(&prom),
        target(),
        "scalar(trino_execution_queuedqueries) * 2",
    )
    .metric_name("queued_twice")
    .observe(&ctx())
    .await
    .unwrap();
    assert_eq!(values(&o, "queued_twice"), vec![("{}".to_string(), 14.0)]);
    let f = fact(&o);
    assert_eq!(f.result_type, ResultType::Scalar);
    assert_eq!(f.scalar.unwrap().1, 14.0);
    // special scalar values survive the fact's JSON too (the real server found this)
    for (query, want) in [
        ("1/0", f64::INFINITY),
        ("-1/0", f64::NEG_INFINITY),
        ("0/0", f64::NAN),
    ] {
        let o = PromQuery::instant(client(&prom), target(), query)
            .observe(&ctx())
            .await
            .unwrap();
        let got = fact(&o).scalar.unwrap().1;
        assert!(
            got == want || (got.is_nan() && want.is_nan()),
            "{query}: {got}"
        );
        assert_eq!(
            o.facts.get_json("prometheus.result").unwrap()["scalar"][1],
            rb_probes::prometheus::format_value(want)
        );
    }
}

#[tokio::test]
async fn empty_result_is_a_valid_observation_with_a_zero_series_count() {
    let prom = FakePrometheus::start_at(T0).await.unwrap();
    prom.push(
        "kafka_connect_connector_failed_task_count",
        &[("connector", "a")],
        T0 - 1_000,
        0.0,
    );
    let o = PromQuery::instant(
        client(&prom),
        target(),
        "kafka_connect_connector_failed_task_count > 0",
    )
    .observe(&ctx())
    .await
    .unwrap();
    assert!(o.complete);
    assert_eq!(o.samples.len(), 1);
    assert_eq!(o.samples_named(SERIES_METRIC).next().unwrap().value, 0.0);
    assert_eq!(fact(&o).total_series, 0);
}

#[tokio::test]
async fn top_k_keeps_the_largest_series() {
    let prom = FakePrometheus::start_at(T0).await.unwrap();
    for (i, v) in [5.0, 50.0, 7.0, 1.0, 30.0].iter().enumerate() {
        prom.push("lag", &[("partition", &i.to_string())], T0 - 1_000, *v);
    }
    let o = PromQuery::instant(client(&prom), target(), "lag")
        .top_k(2)
        .observe(&ctx())
        .await
        .unwrap();
    assert_eq!(
        values(&o, "lag"),
        vec![
            (r#"{"partition": "1"}"#.to_string(), 50.0),
            (r#"{"partition": "4"}"#.to_string(), 30.0)
        ]
    );
    assert_eq!(o.samples_named(SERIES_METRIC).next().unwrap().value, 5.0);
    let f = fact(&o);
    assert!(f.truncated);
    assert_eq!(f.total_series, 5);
    assert_eq!(f.series.len(), 2);
}

#[tokio::test]
async fn range_query_gives_one_sample_per_point() {
    let prom = FakePrometheus::start_at(T0).await.unwrap();
    // a point every 15 s for the last minute
    for (i, v) in [1.0, 2.0, 3.0, 4.0, 5.0].iter().enumerate() {
        prom.push(
            "queued",
            &[("cluster", "trino")],
            T0 - 60_000 + i as i64 * 15_000,
            *v,
        );
    }
    let o = PromQuery::range(
        client(&prom),
        target(),
        "queued",
        Duration::from_secs(60),
        Duration::from_secs(15),
    )
    .observe(&ctx())
    .await
    .unwrap();
    let pts: Vec<f64> = o.samples_named("queued").map(|s| s.value).collect();
    assert_eq!(pts, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    let times: Vec<u64> = o.samples_named("queued").map(|s| s.at.0).collect();
    for w in times.windows(2) {
        assert_eq!(w[1] - w[0], 15_000);
    }
    let f = fact(&o);
    assert_eq!(f.result_type, ResultType::Matrix);
    assert_eq!(f.series[0].points.len(), 5);
    let reqs = prom.requests().matching("GET", "/api/v1/query_range");
    let q = reqs[0].query.clone().unwrap();
    assert!(
        q.contains("start=176743594") && q.contains("step=15"),
        "{q}"
    );
}

#[tokio::test]
async fn api_errors_are_rejected_with_type_and_message() {
    let prom = FakePrometheus::start_at(T0).await.unwrap();
    prom.set_query_error(Some((
        ErrorType::Execution,
        "query processing would load too many samples",
    )));
    let e = PromQuery::instant(client(&prom), target(), "up")
        .observe(&ctx())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(
        e.message.contains("422")
            && e.message
                .contains("execution: query processing would load too many samples"),
        "{e}"
    );
    prom.set_query_error(None);
    // a query the server cannot parse
    let e = PromQuery::instant(client(&prom), target(), "sum(up")
        .observe(&ctx())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(e.message.contains("bad_data"), "{e}");
    // status "error" with HTTP 200 too
    prom.faults().inject(
        "GET",
        "/api/v1/query",
        Fault::StatusBody(
            200,
            r#"{"status":"error","errorType":"timeout","error":"query timed out"}"#.into(),
        ),
    );
    let e = PromQuery::instant(client(&prom), target(), "up")
        .observe(&ctx())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(e.message.contains("timeout: query timed out"), "{e}");
}

#[tokio::test]
async fn warnings_strings_and_histograms_are_kept() {
    let prom = FakePrometheus::start_at(T0).await.unwrap();
    prom.faults().inject(
        "GET",
        "/api/v1/query",
        Fault::StatusBody(
            200,
            r#"{"status":"success","data":{"resultType":"string","result":[1767436000,"hello"]},"warnings":["remote read of store-2 failed"],"infos":["PromQL info: ignored"]}"#.into(),
        ),
    ).times(1);
    let o = PromQuery::instant(client(&prom), target(), "\"hello\"")
        .observe(&ctx())
        .await
        .unwrap();
    let f = fact(&o);
    assert_eq!(f.result_type, ResultType::String);
    assert_eq!(f.string, Some((1767436000.0, "hello".to_string())));
    assert_eq!(
        f.warnings,
        vec!["remote read of store-2 failed".to_string()]
    );
    assert_eq!(f.infos, vec!["PromQL info: ignored".to_string()]);
    assert_eq!(o.samples.len(), 1); // only the series count
    let hist =
        include_str!("../../rb-testkit/fixtures/prometheus/openapi_query_200_histogramResult.json");
    prom.faults()
        .inject("GET", "/api/v1/query", Fault::StatusBody(200, hist.into()))
        .times(1);
    let o = PromQuery::instant(client(&prom), target(), "http_request_duration_seconds")
        .observe(&ctx())
        .await
        .unwrap();
    assert_eq!(values(&o, "http_request_duration_seconds_count")[0].1, 12.5);
    assert_eq!(values(&o, "http_request_duration_seconds_sum")[0].1, 42.1);
}

#[tokio::test]
async fn not_ready_is_rejected() {
    let prom = FakePrometheus::start_at(T0).await.unwrap();
    prom.set_ready(false);
    let e = PromQuery::instant(client(&prom), target(), "up")
        .observe(&ctx())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected);
    assert!(
        e.message.contains("503") && e.message.contains("Service Unavailable"),
        "{e}"
    );
}

#[tokio::test]
async fn basic_and_bearer_auth_are_sent_and_never_shown() {
    let prom = FakePrometheus::start_at(T0).await.unwrap();
    let basic = ReqwestClient::builder(prom.base_url())
        .auth(HttpAuth::Basic {
            user: "rb".into(),
            password: Secret::new("s3cret-pw"),
        })
        .build()
        .unwrap();
    let probe = PromQuery::instant(basic, target(), "up");
    probe.observe(&ctx()).await.unwrap();
    assert!(!format!("{probe:?}").contains("s3cret-pw"));
    let bearer = ReqwestClient::builder(prom.base_url())
        .auth(HttpAuth::Bearer(Secret::new(
            "eyJhbGciOiJIUzI1NiJ9.e30.sig",
        )))
        .build()
        .unwrap();
    let probe = PromQuery::instant(bearer, target(), "up");
    probe.observe(&ctx()).await.unwrap();
    assert!(!format!("{probe:?}").contains("eyJhbGci"));
    let reqs = prom.requests().matching("GET", "/api/v1/query");
    assert_eq!(
        reqs[0].header("authorization"),
        Some("Basic cmI6czNjcmV0LXB3")
    );
    assert_eq!(
        reqs[1].header("authorization"),
        Some("Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig")
    );
}

#[tokio::test]
async fn fault_matrix() {
    check_matrix(
        "prometheus",
        &["instant", "range"],
        &[
            ("instant", "not_ready_503"),
            ("instant", "api_error"),
            ("range", "not_ready_503"),
            ("range", "api_error"),
        ],
        |probe, fault| async move {
            let prom = FakePrometheus::start_at(T0).await.unwrap();
            prom.push("up", &[], T0 - 1_000, 1.0);
            let (path, q) = match probe.as_str() {
                "instant" => (
                    "/api/v1/query",
                    PromQuery::instant(client(&prom), target(), "up"),
                ),
                _ => (
                    "/api/v1/query_range",
                    PromQuery::range(
                        client(&prom),
                        target(),
                        "up",
                        Duration::from_secs(60),
                        Duration::from_secs(15),
                    ),
                ),
            };
            match fault.as_str() {
                "not_ready_503" => {
                    prom.set_ready(false);
                    support_http::kind_of(&q.observe(&ctx()).await)
                }
                "api_error" => {
                    prom.set_query_error(Some((ErrorType::Internal, "TSDB not ready")));
                    support_http::kind_of(&q.observe(&ctx()).await)
                }
                f => {
                    inject_and_observe(
                        &prom,
                        "GET",
                        path,
                        f,
                        |c| async move { q.observe(&c).await },
                    )
                    .await
                }
            }
        },
    )
    .await;
}
