//! The fake Loki through reqwest: `query_range` against the documented example, LogQL selectors and
//! line filters, time bounds, limits, direction, errors and faults.

// Test helpers outside #[test] functions unwrap and panic too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{assert_fault_kinds, client, FaultCheck};
use rb_testkit::http::loki::FakeLoki;
use rb_testkit::shape::json_shape;
use serde_json::{json, Value};

/// Loki's HTTP API reference: the `query_range` log-query example (`query={job="varlogs"}`) with the
/// statistics block of its "Statistics" section (comments removed).
fn documented_example() -> Value {
    json!({
      "status": "success",
      "data": {
        "resultType": "streams",
        "result": [
          {
            "stream": {"filename": "/var/log/myproject.log", "job": "varlogs", "level": "info"},
            "values": [["1569266497240578000", "foo"], ["1569266492548155000", "bar"]]
          }
        ],
        "stats": {
          "ingester": {
            "compressedBytes": 0, "decompressedBytes": 0, "decompressedLines": 0, "headChunkBytes": 0,
            "headChunkLines": 0, "totalBatches": 0, "totalChunksMatched": 0, "totalDuplicates": 0,
            "totalLinesSent": 0, "totalReached": 0
          },
          "store": {
            "compressedBytes": 0, "decompressedBytes": 0, "decompressedLines": 0, "chunksDownloadTime": 0,
            "totalChunksRef": 0, "totalChunksDownloaded": 0, "totalDuplicates": 0
          },
          "summary": {
            "bytesProcessedPerSecond": 0, "execTime": 0, "linesProcessedPerSecond": 0, "queueTime": 0,
            "totalBytesProcessed": 0, "totalLinesProcessed": 0
          }
        }
      }
    })
}

async fn query(loki: &FakeLoki, params: &[(&str, &str)]) -> (u16, String) {
    let r = client()
        .get(format!("{}/loki/api/v1/query_range", loki.base_url()))
        .query(params)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn lines(loki: &FakeLoki, params: &[(&str, &str)]) -> Vec<String> {
    let (status, body) = query(loki, params).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let mut out = Vec::new();
    for stream in v["data"]["result"].as_array().unwrap() {
        for pair in stream["values"].as_array().unwrap() {
            out.push(pair[1].as_str().unwrap().to_string());
        }
    }
    out
}

#[tokio::test]
async fn documented_example_reproduced() {
    let loki = FakeLoki::start().await.unwrap();
    let labels = [
        ("filename", "/var/log/myproject.log"),
        ("job", "varlogs"),
        ("level", "info"),
    ];
    loki.push(&labels, 1_569_266_492_548_155_000, "bar");
    loki.push(&labels, 1_569_266_497_240_578_000, "foo");
    loki.push(
        &[("job", "other")],
        1_569_266_495_000_000_000,
        "not selected",
    );
    let (status, body) = query(
        &loki,
        &[
            ("query", "{job=\"varlogs\"}"),
            ("start", "1569266000"),
            ("end", "1569267000"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_str(&body).unwrap();
    let reference = documented_example();
    assert_eq!(
        body["data"]["result"], reference["data"]["result"],
        "newest first by default"
    );
    assert_eq!(json_shape(&body), json_shape(&reference));
    assert_eq!(body["data"]["stats"]["summary"]["totalLinesProcessed"], 2);
}

#[tokio::test]
async fn selectors_filters_direction_limit_and_bounds() {
    let loki = FakeLoki::start().await.unwrap();
    let jm = [("container", "flink-jobmanager"), ("level", "error")];
    let tm = [("container", "flink-taskmanager"), ("level", "info")];
    let base: i64 = 1_700_000_000_000_000_000;
    let s = 1_000_000_000;
    loki.push(
        &jm,
        base,
        "org.apache.avro.AvroTypeException: Found int, expecting string",
    );
    loki.push(
        &jm,
        base + s,
        "Job orders switched from RUNNING to RESTARTING",
    );
    loki.push(&jm, base + 2 * s, "Restarting job (attempt 3)");
    loki.push(
        &tm,
        base + 3 * s,
        "Exception in thread \"main\" java.lang.OutOfMemoryError",
    );
    let start = (base / s).to_string();
    let end = (base / s + 10).to_string();
    let p = |q: &'static str| {
        vec![
            ("query", q),
            ("start", start.as_str()),
            ("end", end.as_str()),
        ]
    };

    assert_eq!(
        lines(&loki, &p("{container=\"flink-jobmanager\"}"))
            .await
            .len(),
        3
    );
    assert_eq!(lines(&loki, &p("{container=~\"flink-.*\"}")).await.len(), 4);
    assert_eq!(
        lines(&loki, &p("{container=~\"flink-.*\", level!=\"error\"}"))
            .await
            .len(),
        1
    );
    assert_eq!(
        lines(
            &loki,
            &p("{container=~\"flink-.*\", container!~\".*task.*\"}")
        )
        .await
        .len(),
        3
    );
    assert_eq!(
        lines(
            &loki,
            &p("{container=\"flink-jobmanager\"} |= \"AvroTypeException\"")
        )
        .await,
        vec!["org.apache.avro.AvroTypeException: Found int, expecting string"]
    );
    assert_eq!(
        lines(
            &loki,
            &p("{container=~\"flink-.*\"} |= \"Exception\" != \"avro\"")
        )
        .await
        .len(),
        1
    );
    assert_eq!(
        lines(&loki, &p("{container=~\"flink-.*\"} |~ \"(?i)restart\""))
            .await
            .len(),
        2
    );
    assert_eq!(
        lines(&loki, &p("{container=~\"flink-.*\"} !~ \"Restart.*\""))
            .await
            .len(),
        3
    );

    // backward (default): newest first; forward: oldest first; limit counts entries over all streams.
    let mut params = p("{container=\"flink-jobmanager\"}");
    params.push(("limit", "2"));
    assert_eq!(
        lines(&loki, &params).await,
        vec![
            "Restarting job (attempt 3)",
            "Job orders switched from RUNNING to RESTARTING"
        ]
    );
    params.push(("direction", "FORWARD"));
    assert_eq!(
        lines(&loki, &params).await,
        vec![
            "org.apache.avro.AvroTypeException: Found int, expecting string",
            "Job orders switched from RUNNING to RESTARTING"
        ]
    );

    // start inclusive, end exclusive; nanosecond and RFC 3339 bounds.
    let start_ns = (base + s).to_string();
    let end_ns = (base + 2 * s).to_string();
    assert_eq!(
        lines(
            &loki,
            &[
                ("query", "{container=\"flink-jobmanager\"}"),
                ("start", &start_ns),
                ("end", &end_ns)
            ]
        )
        .await,
        vec!["Job orders switched from RUNNING to RESTARTING"]
    );
    assert_eq!(
        lines(
            &loki,
            &[
                ("query", "{container=\"flink-jobmanager\"}"),
                ("start", "2023-11-14T22:13:21Z"),
                ("end", "2023-11-14T22:13:22.000000001Z")
            ]
        )
        .await
        .len(),
        2
    );

    // The record shows the query as the client sent it.
    let rec = loki.requests().matching("GET", "/loki/api/v1/query_range");
    assert!(rec[0]
        .query
        .as_deref()
        .unwrap()
        .starts_with("query=%7Bcontainer%3D%22flink-jobmanager%22%7D"));
}

#[tokio::test]
async fn default_window_is_the_last_hour() {
    let loki = FakeLoki::start().await.unwrap();
    loki.log_ago(
        &[("app", "nessie")],
        &[
            (Duration::from_secs(7200), "old"),
            (Duration::from_secs(60), "recent"),
        ],
    );
    assert_eq!(loki.line_count(), 2);
    assert_eq!(
        lines(&loki, &[("query", "{app=\"nessie\"}")]).await,
        vec!["recent"]
    );
    assert_eq!(
        lines(&loki, &[("query", "{app=\"nessie\"}"), ("since", "3h")]).await,
        vec!["recent", "old"]
    );
}

#[tokio::test]
async fn bad_queries_are_400_plain_text() {
    let loki = FakeLoki::start().await.unwrap();
    let cases: [(&[(&str, &str)], &str); 7] = [
        (
            &[("query", "{container=\"a\"")],
            "parse error at line 1, col 15: syntax error: unexpected $end",
        ),
        (
            &[("query", "{container}")],
            "syntax error: unexpected }, expecting = or =~ or !~ or !=",
        ),
        (
            &[("query", "{app=~\".*\"}")],
            "queries require at least one regexp or equality matcher",
        ),
        (&[("query", "{a=\"b\"} | json")], "not supported"),
        (
            &[("query", "{a=\"b\"}"), ("limit", "0")],
            "limit must be a positive value",
        ),
        (
            &[("query", "{a=\"b\"}"), ("direction", "sideways")],
            "invalid direction",
        ),
        (
            &[("query", "{a=\"b\"}"), ("start", "20"), ("end", "10")],
            "end timestamp must not be before or equal to start time",
        ),
    ];
    for (params, want) in cases {
        let r = client()
            .get(format!("{}/loki/api/v1/query_range", loki.base_url()))
            .query(params)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{params:?}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        let text = r.text().await.unwrap();
        assert!(text.contains(want), "{params:?}: {text}");
        assert!(
            serde_json::from_str::<Value>(&text).is_err(),
            "plain text, not JSON"
        );
    }
}

#[tokio::test]
async fn readiness() {
    let loki = FakeLoki::start().await.unwrap();
    let r = client()
        .get(format!("{}/ready", loki.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap().trim(), "ready");
    loki.set_ready(false);
    let r = client()
        .get(format!("{}/ready", loki.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().starts_with("Ingester not ready"));
}

#[tokio::test]
async fn faults_reach_the_client() {
    let loki = FakeLoki::start().await.unwrap();
    loki.log(&[("app", "x")], "line");
    assert_fault_kinds(
        &loki,
        FaultCheck::get("/loki/api/v1/query_range").query("query=%7Bapp%3D%22x%22%7D"),
    )
    .await;
    assert_fault_kinds(&loki, FaultCheck::get("/ready").query("")).await;
}
