//! The fake Prometheus, exercised through reqwest: answers compared with the project's own examples.

// Test helpers outside #[test] functions unwrap and panic too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{assert_fault_kinds, assert_same_shape, client, FaultCheck};
use rb_testkit::http::prometheus::{ErrorType, FakePrometheus};
use rb_testkit::http::trino::{FakeTrino, QuerySpec, QueryState};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let text = match name {
        "vector" => include_str!("../fixtures/prometheus/openapi_query_200_vectorResult.json"),
        "scalar" => include_str!("../fixtures/prometheus/openapi_query_200_scalarResult.json"),
        "matrix" => include_str!("../fixtures/prometheus/openapi_query_200_matrixResult.json"),
        "range" => include_str!("../fixtures/prometheus/openapi_query_range_200_matrixResult.json"),
        "docs_instant" => include_str!("../fixtures/prometheus/docs_api_query_instant_up.json"),
        "docs_range" => include_str!("../fixtures/prometheus/docs_api_query_range_up.json"),
        "error" => include_str!("../fixtures/prometheus/openapi_query_default_tsdbNotReady.json"),
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).unwrap()
}

/// The body with `data.result` sorted (Prometheus does not order instant vectors).
fn normalized(mut v: Value) -> Value {
    if let Some(Value::Array(items)) = v.get_mut("data").and_then(|d| d.get_mut("result")) {
        if items.iter().all(Value::is_object) {
            items.sort_by_key(|i| i["metric"].to_string());
        }
    }
    v
}

async fn get_json(
    prom: &FakePrometheus,
    path_and_query: &[(&str, &str)],
    path: &str,
) -> (u16, Value) {
    let resp = client()
        .get(format!("{}{path}", prom.base_url()))
        .query(path_and_query)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn instant_vector_equals_the_openapi_example() {
    let prom = FakePrometheus::start_at(1_767_436_000_000).await.unwrap();
    prom.push(
        "up",
        &[
            ("instance", "demo.prometheus.io:9090"),
            ("job", "prometheus"),
        ],
        1_767_436_600_000,
        1.0,
    );
    prom.push(
        "up",
        &[
            ("env", "demo"),
            ("instance", "demo.prometheus.io:9093"),
            ("job", "alertmanager"),
        ],
        1_767_436_610_000,
        1.0,
    );
    let (status, body) = get_json(
        &prom,
        &[("query", "up"), ("time", "1767436620")],
        "/api/v1/query",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(normalized(body.clone()), normalized(fixture("vector")));
    assert_same_shape(&fixture("vector"), &body);
}

#[tokio::test]
async fn docs_examples_reproduced_exactly() {
    let prom = FakePrometheus::start().await.unwrap();
    let t = 1_435_781_451_781;
    prom.push(
        "up",
        &[("job", "prometheus"), ("instance", "localhost:9090")],
        t,
        1.0,
    );
    prom.push(
        "up",
        &[("job", "node"), ("instance", "localhost:9100")],
        t,
        0.0,
    );
    let (status, body) = get_json(
        &prom,
        &[("query", "up"), ("time", "1435781451.781")],
        "/api/v1/query",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(normalized(body), normalized(fixture("docs_instant")));

    let prom = FakePrometheus::start().await.unwrap();
    for (i, (a, b)) in [(1.0, 0.0), (1.0, 0.0), (1.0, 1.0)].iter().enumerate() {
        let ts = 1_435_781_430_781 + i as i64 * 15_000;
        prom.push(
            "up",
            &[("job", "prometheus"), ("instance", "localhost:9090")],
            ts,
            *a,
        );
        prom.push(
            "up",
            &[("job", "node"), ("instance", "localhost:9091")],
            ts,
            *b,
        );
    }
    let (status, body) = get_json(
        &prom,
        &[
            ("query", "up"),
            ("start", "2015-07-01T20:10:30.781Z"),
            ("end", "2015-07-01T20:11:00.781Z"),
            ("step", "15s"),
        ],
        "/api/v1/query_range",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        fixture("docs_range"),
        "range series are sorted by labels, as Prometheus does"
    );
}

#[tokio::test]
async fn scalar_matrix_and_range_results() {
    let prom = FakePrometheus::start_at(1_767_430_000_000).await.unwrap();
    let (status, body) = get_json(
        &prom,
        &[("query", "42"), ("time", "1767436620")],
        "/api/v1/query",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, fixture("scalar"));

    let labels = [
        ("instance", "demo.prometheus.io:9090"),
        ("job", "prometheus"),
    ];
    for ts in [
        1_767_433_020_000,
        1_767_434_820_000,
        1_767_436_380_000,
        1_767_436_620_000,
    ] {
        prom.push("up", &labels, ts, 1.0);
    }
    // A range selector in an instant query: the raw samples in (t-5m, t].
    let (status, body) = get_json(
        &prom,
        &[("query", "up[5m]"), ("time", "1767436620")],
        "/api/v1/query",
    )
    .await;
    assert_eq!(status, 200);
    assert_same_shape(&fixture("matrix"), &body);
    assert_eq!(body["data"]["resultType"], "matrix");
    assert_eq!(
        body["data"]["result"][0]["values"],
        serde_json::json!([[1767436380, "1"], [1767436620, "1"]])
    );

    let (status, body) = get_json(
        &prom,
        &[
            ("query", "up"),
            ("start", "1767433020"),
            ("end", "1767436620"),
            ("step", "1800"),
        ],
        "/api/v1/query_range",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, fixture("range"));
}

#[tokio::test]
async fn matchers_aggregations_and_thresholds() {
    let prom = FakePrometheus::start().await.unwrap();
    let m = "kafka_connect_connector_failed_task_count";
    prom.set(m, &[("connector", "sink-a"), ("cluster", "c1")], 2.0);
    prom.set(m, &[("connector", "sink-b"), ("cluster", "c1")], 0.0);
    prom.set(m, &[("connector", "src-c"), ("cluster", "c2")], 1.0);
    let q = |query: &'static str| {
        let prom = &prom;
        async move { get_json(prom, &[("query", query)], "/api/v1/query").await }
    };
    let (_, b) = q(r#"kafka_connect_connector_failed_task_count{connector=~"sink-.*"}"#).await;
    assert_eq!(b["data"]["result"].as_array().unwrap().len(), 2);
    let (_, b) = q(r#"kafka_connect_connector_failed_task_count{connector!="sink-a"} > 0"#).await;
    assert_eq!(b["data"]["result"].as_array().unwrap().len(), 1);
    assert_eq!(b["data"]["result"][0]["metric"]["connector"], "src-c");
    assert_eq!(
        b["data"]["result"][0]["metric"]["__name__"], m,
        "a comparison filter keeps the name"
    );
    let (_, b) = q("sum by (cluster) (kafka_connect_connector_failed_task_count)").await;
    let r = b["data"]["result"].as_array().unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["metric"], serde_json::json!({"cluster": "c1"}));
    assert_eq!(r[0]["value"][1], "2");
    let (_, b) = q("max(kafka_connect_connector_failed_task_count)").await;
    assert_eq!(b["data"]["result"][0]["metric"], serde_json::json!({}));
    assert_eq!(b["data"]["result"][0]["value"][1], "2");
    let (_, b) = q("count(kafka_connect_connector_failed_task_count > 0)").await;
    assert_eq!(b["data"]["result"][0]["value"][1], "2");
    let (_, b) = q("absent(nonexistent_metric{job=\"x\"})").await;
    assert_eq!(
        b["data"]["result"][0]["metric"],
        serde_json::json!({"job": "x"})
    );

    // MinIO free-capacity ratio: vector / vector on identical labels.
    prom.set(
        "minio_cluster_capacity_usable_free_bytes",
        &[("server", "minio-0:9000")],
        5e10,
    );
    prom.set(
        "minio_cluster_capacity_usable_total_bytes",
        &[("server", "minio-0:9000")],
        1e12,
    );
    let (_, b) =
        q("minio_cluster_capacity_usable_free_bytes / minio_cluster_capacity_usable_total_bytes")
            .await;
    assert_eq!(b["data"]["result"][0]["value"][1], "0.05");
    assert_eq!(
        b["data"]["result"][0]["metric"],
        serde_json::json!({"server": "minio-0:9000"})
    );

    // POST with a form body, as Prometheus clients do for long queries.
    let resp = client()
        .post(format!("{}/api/v1/query", prom.base_url()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("query=sum%28kafka_connect_connector_failed_task_count%29")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["data"]["result"][0]["value"][1], "3");
    let rec = prom.requests().matching("POST", "/api/v1/query");
    assert_eq!(
        rec[0].text(),
        "query=sum%28kafka_connect_connector_failed_task_count%29"
    );
}

#[tokio::test]
async fn scripted_series_follow_the_fake_clock_and_rate_extrapolates() {
    let base = 1_700_000_000_000;
    let prom = FakePrometheus::start_at(base).await.unwrap();
    // A counter growing 1/s, scraped every 15 s, for 2 minutes.
    let points: Vec<(Duration, f64)> = (0..=8)
        .map(|i| (Duration::from_secs(i * 15), (i * 15) as f64))
        .collect();
    prom.script(
        "flink_jobmanager_job_numRestarts",
        &[("job_name", "orders")],
        &points,
    );
    let t = |offset_s: i64| ((base + offset_s * 1000) as f64 / 1000.0).to_string();
    let (_, b) = get_json(
        &prom,
        &[
            ("query", "flink_jobmanager_job_numRestarts"),
            ("time", &t(50)),
        ],
        "/api/v1/query",
    )
    .await;
    assert_eq!(b["data"]["result"][0]["value"][1], "45");
    let (_, b) = get_json(
        &prom,
        &[
            ("query", "rate(flink_jobmanager_job_numRestarts[1m])"),
            ("time", &t(120)),
        ],
        "/api/v1/query",
    )
    .await;
    // Prometheus' extrapolation arithmetic, float rounding included: 45 * (60 / 45) / 60.
    let v: f64 = b["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((v - 1.0).abs() < 1e-12, "{v}");
    assert!(b["data"]["result"][0]["metric"].get("__name__").is_none());
    let (_, b) = get_json(
        &prom,
        &[
            ("query", "increase(flink_jobmanager_job_numRestarts[2m])"),
            ("time", &t(120)),
        ],
        "/api/v1/query",
    )
    .await;
    let v: f64 = b["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((v - 120.0).abs() < 1e-9, "{v}");
    // A range query over a counter: one point per step.
    let (_, b) = get_json(
        &prom,
        &[
            ("query", "flink_jobmanager_job_numRestarts"),
            ("start", &t(0)),
            ("end", &t(120)),
            ("step", "30s"),
        ],
        "/api/v1/query_range",
    )
    .await;
    let values = b["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 5);
    assert_eq!(values[4][1], "120");
    // After the lookback window the series is stale.
    let (_, b) = get_json(
        &prom,
        &[
            ("query", "flink_jobmanager_job_numRestarts"),
            ("time", &t(120 + 301)),
        ],
        "/api/v1/query",
    )
    .await;
    assert_eq!(b["data"]["result"], serde_json::json!([]));
}

#[tokio::test(start_paused = true)]
async fn the_clock_moves_with_tokio_time() {
    let prom = FakePrometheus::start_at(1_000_000).await.unwrap();
    let before = prom.now_ms();
    tokio::time::advance(Duration::from_secs(600)).await;
    assert_eq!(prom.now_ms() - before, 600_000);
}

#[tokio::test]
async fn live_gauge_follows_the_trino_fake() {
    let trino = FakeTrino::start().await.unwrap();
    let prom = FakePrometheus::start().await.unwrap();
    prom.gauge_fn(
        "trino_execution_queuedqueries",
        &[("cluster", "lakehouse")],
        trino.queued_gauge(),
    );
    let q1 = trino.add_query(QuerySpec::new("etl", "SELECT 1").state(QueryState::Queued));
    trino.add_query(QuerySpec::new("etl", "SELECT 2").state(QueryState::Queued));
    let (_, b) = get_json(
        &prom,
        &[("query", "trino_execution_queuedqueries > 0")],
        "/api/v1/query",
    )
    .await;
    assert_eq!(b["data"]["result"][0]["value"][1], "2");
    trino.set_state(&q1, QueryState::Running);
    let (_, b) = get_json(
        &prom,
        &[("query", "trino_execution_queuedqueries")],
        "/api/v1/query",
    )
    .await;
    assert_eq!(b["data"]["result"][0]["value"][1], "1");
}

#[tokio::test]
async fn error_envelopes_and_status_codes() {
    let prom = FakePrometheus::start().await.unwrap();
    prom.set("up", &[("job", "a"), ("instance", "1")], 1.0);
    prom.set("up", &[("job", "a"), ("instance", "2")], 1.0);
    prom.set("other", &[("job", "a"), ("instance", "1")], 1.0);
    prom.set("other", &[("job", "a"), ("instance", "2")], 1.0);
    let reference = fixture("error");

    // Parse error: 400 bad_data with Prometheus' wording.
    let (status, b) = get_json(&prom, &[("query", "sum(up")], "/api/v1/query").await;
    assert_eq!(status, 400);
    assert_same_shape(&reference, &b);
    assert_eq!(b["errorType"], "bad_data");
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"query\": 1:"),
        "{b}"
    );
    let (status, b) = get_json(&prom, &[], "/api/v1/query").await;
    assert_eq!(status, 400);
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("no expression found in input"),
        "{b}"
    );
    let (status, b) = get_json(
        &prom,
        &[("query", "up"), ("time", "yesterday")],
        "/api/v1/query",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        b["error"],
        "invalid parameter \"time\": cannot parse \"yesterday\" to a valid timestamp"
    );
    // Outside the supported subset: refused as bad_data naming the construct, never a wrong answer.
    let (status, b) = get_json(
        &prom,
        &[("query", "histogram_quantile(0.9, rate(x[5m]))")],
        "/api/v1/query",
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        b["error"].as_str().unwrap().contains("not supported"),
        "{b}"
    );

    // Evaluation error: 422 execution (many-to-many matching).
    let (status, b) = get_json(&prom, &[("query", "up / on(job) other")], "/api/v1/query").await;
    assert_eq!(status, 422);
    assert_eq!(b["errorType"], "execution");
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("many-to-many matching not allowed"),
        "{b}"
    );

    // Range query parameter errors.
    let (status, b) = get_json(
        &prom,
        &[
            ("query", "up"),
            ("start", "10"),
            ("end", "5"),
            ("step", "1"),
        ],
        "/api/v1/query_range",
    )
    .await;
    assert_eq!(status, 400);
    assert!(b["error"]
        .as_str()
        .unwrap()
        .contains("end timestamp must not be before start time"));
    let (status, b) = get_json(
        &prom,
        &[
            ("query", "up"),
            ("start", "0"),
            ("end", "100000"),
            ("step", "1"),
        ],
        "/api/v1/query_range",
    )
    .await;
    assert_eq!(status, 400);
    assert!(b["error"]
        .as_str()
        .unwrap()
        .contains("exceeded maximum resolution of 11,000 points"));
    let (status, b) = get_json(
        &prom,
        &[("query", "up"), ("start", "0"), ("end", "10")],
        "/api/v1/query_range",
    )
    .await;
    assert_eq!(status, 400);
    assert!(b["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid parameter \"step\""));
    let (status, _) = get_json(
        &prom,
        &[
            ("query", "up[5m]"),
            ("start", "0"),
            ("end", "10"),
            ("step", "1"),
        ],
        "/api/v1/query_range",
    )
    .await;
    assert_eq!(status, 400);

    // Scripted server-side errors keep the envelope and Prometheus' status mapping.
    prom.set_query_error(Some((
        ErrorType::Timeout,
        "query timed out in expression evaluation",
    )));
    let (status, b) = get_json(&prom, &[("query", "up")], "/api/v1/query").await;
    assert_eq!(status, 503);
    assert_eq!(b["errorType"], "timeout");
    prom.set_query_error(Some((ErrorType::Internal, "TSDB not ready")));
    let (status, b) = get_json(&prom, &[("query", "up")], "/api/v1/query").await;
    assert_eq!(status, 500);
    assert_eq!(b, reference);
    prom.set_query_error(None);
    let (status, _) = get_json(&prom, &[("query", "up")], "/api/v1/query").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn not_ready_answers_plain_text_503() {
    let prom = FakePrometheus::start().await.unwrap();
    let c = client();
    let r = c
        .get(format!("{}/-/ready", prom.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap().trim(),
        "Prometheus Server is Ready."
    );
    prom.set_ready(false);
    for path in [
        "/api/v1/query?query=up",
        "/api/v1/query_range?query=up&start=0&end=1&step=1",
        "/-/ready",
    ] {
        let r = c
            .get(format!("{}{path}", prom.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{path}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        assert_eq!(r.headers()["x-prometheus-stopping"], "false");
        let text = r.text().await.unwrap();
        assert_eq!(text, "Service Unavailable");
        assert!(serde_json::from_str::<Value>(&text).is_err(), "not JSON");
    }
    let r = c
        .get(format!("{}/-/healthy", prom.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap().trim(),
        "Prometheus Server is Healthy."
    );
    let r = c
        .head(format!("{}/-/healthy", prom.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    prom.set_ready(true);
    let r = c
        .get(format!("{}/api/v1/query?query=up", prom.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn faults_reach_the_client() {
    let prom = FakePrometheus::start().await.unwrap();
    prom.set("up", &[], 1.0);
    let error = "{\"status\":\"error\"}";
    assert_fault_kinds(
        &prom,
        FaultCheck::get("/api/v1/query")
            .query("query=up")
            .answer(422, error),
    )
    .await;
    assert_fault_kinds(
        &prom,
        FaultCheck::get("/-/ready").query("").answer(422, error),
    )
    .await;
}
