//! The fake MinIO node through reqwest: health probes against the documented transcripts and the
//! v2 cluster metrics against the reference exposition.

// Test helpers outside #[test] functions unwrap and panic too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use common::{assert_fault_kinds, client, FaultCheck};
use rb_testkit::http::minio::FakeMinio;
use serde_json::Value;

const CLUSTER_503: &str = include_str!("../fixtures/minio/cluster_503_docs.txt");
const MAINTENANCE_412: &str = include_str!("../fixtures/minio/cluster_maintenance_412_docs.txt");
const METRICS_REF: &str =
    include_str!("../fixtures/minio/metrics_v2_cluster_capacity_derived.prom");

/// Status code and header names (lower case) of a documented `curl -i` transcript.
fn transcript(text: &str) -> (u16, Vec<String>) {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("HTTP/"));
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let names = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, _)| k.trim().to_ascii_lowercase())
        })
        .collect();
    (status, names)
}

/// `name{labels} value` samples and `# HELP` texts of a Prometheus text exposition.
fn exposition(text: &str) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
    let mut samples = BTreeMap::new();
    let mut help = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, h) = rest.split_once(' ').unwrap();
            help.insert(name.to_string(), h.to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let (series, value) = line.rsplit_once(' ').unwrap();
            samples.insert(series.to_string(), value.parse::<f64>().unwrap());
        }
    }
    (samples, help)
}

async fn status_of(minio: &FakeMinio, path: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", minio.base_url()))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn liveness_and_readiness() {
    let minio = FakeMinio::start(4, 1).await.unwrap();
    for path in ["/minio/health/live", "/minio/health/ready"] {
        let r = status_of(&minio, path).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["server"], "MinIO");
        assert_eq!(r.text().await.unwrap(), "");
        let r = client()
            .head(format!("{}{path}", minio.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    minio.set_busy(true);
    let r = status_of(&minio, "/minio/health/live").await;
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(body.contains("<Code>ServerBusy</Code>"), "{body}");
    assert!(
        body.contains("<Resource>/minio/health/live</Resource>"),
        "{body}"
    );
    let r = client()
        .head(format!("{}/minio/health/live", minio.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), "", "HEAD carries no body");
}

#[tokio::test]
async fn cluster_write_quorum_like_the_documented_transcripts() {
    // The docs' deployment: four nodes (minio1..4) with one drive each: EC:2, write quorum 3.
    let minio = FakeMinio::start(4, 1).await.unwrap();
    assert_eq!(minio.write_quorum(), 3);
    assert_eq!(minio.read_quorum(), 2);

    let r = status_of(&minio, "/minio/health/cluster").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-minio-write-quorum"], "3");
    assert_eq!(r.headers()["x-minio-storage-class-defaults"], "true");
    assert!(r.headers().get("x-minio-healing-drives").is_none());

    // All up: taking this node down leaves 3 of 4 drives, still quorum.
    let r = status_of(&minio, "/minio/health/cluster?maintenance=true").await;
    assert_eq!(r.status(), 200);

    // One node down: serving, but maintenance on this node would lose quorum → 412.
    minio.set_node_online(3, false);
    assert_eq!(
        status_of(&minio, "/minio/health/cluster").await.status(),
        200
    );
    let r = status_of(&minio, "/minio/health/cluster?maintenance=true").await;
    let (doc_status, doc_headers) = transcript(MAINTENANCE_412);
    assert_eq!(r.status().as_u16(), doc_status);
    for name in &doc_headers {
        assert!(
            r.headers().contains_key(name.as_str()),
            "412 answer lacks documented header {name}"
        );
    }
    assert_eq!(r.headers()["content-length"], "0");

    // Two nodes down: no write quorum → 503, with every header of the documented transcript.
    minio.set_node_online(2, false);
    let r = status_of(&minio, "/minio/health/cluster").await;
    let (doc_status, doc_headers) = transcript(CLUSTER_503);
    assert_eq!(r.status().as_u16(), doc_status);
    for name in &doc_headers {
        assert!(
            r.headers().contains_key(name.as_str()),
            "503 answer lacks documented header {name}"
        );
    }
    assert_eq!(r.headers()["x-minio-write-quorum"], "3");
    assert_eq!(r.text().await.unwrap(), "");

    // Read quorum (2) still holds with two drives; the read probe names its own quorum header.
    let r = status_of(&minio, "/minio/health/cluster/read").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-minio-read-quorum"], "2");
    assert!(r.headers().get("x-minio-write-quorum").is_none());
    assert_eq!(
        status_of(&minio, "/minio/health/cluster/read?maintenance=true")
            .await
            .status(),
        412
    );
    minio.set_node_online(1, false);
    assert_eq!(
        status_of(&minio, "/minio/health/cluster/read")
            .await
            .status(),
        503
    );

    // Two nodes down and a maintenance check: the quorum is already lost → 412, not 503.
    minio.set_node_online(1, true);
    let r = status_of(&minio, "/minio/health/cluster?maintenance=true").await;
    assert_eq!(r.status(), 412);
    assert_eq!(r.headers()["x-minio-write-quorum"], "3");
}

#[tokio::test]
async fn maintenance_checks_count_healing_drives_of_the_other_nodes_only() {
    // 4 nodes × 2 drives: EC:4, data 4 = parity → write quorum 5; without this node 6 drives.
    let minio = FakeMinio::start(4, 2).await.unwrap();
    assert_eq!(minio.write_quorum(), 5);
    let maintenance = "/minio/health/cluster?maintenance=true";
    assert_eq!(status_of(&minio, maintenance).await.status(), 200);

    // A drive heals on node 2: served as usual, and the plain check does not report it
    // (MinIO fills HealingDrives in on maintenance checks only) ...
    minio.set_drives_healing(2, 1);
    let r = status_of(&minio, "/minio/health/cluster").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-minio-healing-drives").is_none());
    // ... but maintenance is refused while it heals, with the count.
    let r = status_of(&minio, maintenance).await;
    assert_eq!(r.status(), 412);
    assert_eq!(r.headers()["x-minio-healing-drives"], "1");
    let r = status_of(&minio, "/minio/health/cluster/read?maintenance=true").await;
    assert_eq!(r.status(), 412);
    assert_eq!(r.headers()["x-minio-read-quorum"], "4");

    // The local node's own healing drives are left out with it.
    minio.set_drives_healing(2, 0);
    minio.set_drives_healing(0, 2);
    let r = status_of(&minio, maintenance).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-minio-healing-drives").is_none());
    // Answered by node 2 instead, node 0's healing drives count.
    minio.set_local_node(2);
    let r = status_of(&minio, maintenance).await;
    assert_eq!(r.status(), 412);
    assert_eq!(r.headers()["x-minio-healing-drives"], "2");
    minio.set_drives_healing(0, 0);

    // Only `maintenance=true`, first value, counts.
    minio.set_node_online(3, false); // 6 drives left, 4 without this node: < 5
    for (query, status) in [
        ("?maintenance=true", 412),
        ("?maintenance=TRUE", 200),
        ("?maintenance=1", 200),
        ("?maintenance=false&maintenance=true", 200),
        ("?maintenance=true&maintenance=false", 412),
    ] {
        let r = status_of(&minio, &format!("/minio/health/cluster{query}")).await;
        assert_eq!(r.status(), status, "{query}");
    }

    // An initialising node answers 503 to a maintenance check too, without quorum headers.
    minio.set_server_status(Some("iam-offline"));
    let r = status_of(&minio, maintenance).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-minio-server-status"], "iam-offline");
    assert!(r.headers().get("x-minio-write-quorum").is_none());
    minio.set_server_status(None);

    // Header overrides, for malformed-input tests.
    minio.override_health_header("X-Minio-Write-Quorum", Some("three"));
    minio.override_health_header("x-minio-storage-class-defaults", None);
    let r = status_of(&minio, maintenance).await;
    assert_eq!(r.headers()["x-minio-write-quorum"], "three");
    assert!(r.headers().get("x-minio-storage-class-defaults").is_none());
    minio.clear_header_overrides();
    let r = status_of(&minio, maintenance).await;
    assert_eq!(r.headers()["x-minio-write-quorum"], "5");
}

#[tokio::test]
async fn drive_failures_and_initialising_node() {
    let minio = FakeMinio::start(2, 4).await.unwrap(); // 8 drives, EC:4, data 4 = parity → write quorum 5
    assert_eq!(minio.write_quorum(), 5);
    minio.set_drives_offline(1, 3);
    assert_eq!(minio.online_drives(), 5);
    assert_eq!(
        status_of(&minio, "/minio/health/cluster").await.status(),
        200
    );
    minio.set_drives_offline(0, 1);
    assert_eq!(
        status_of(&minio, "/minio/health/cluster").await.status(),
        503
    );
    minio.set_drives_offline(0, 0);
    minio.set_drives_offline(1, 0);

    minio.set_server_status(Some("bucket-metadata-offline"));
    let r = status_of(&minio, "/minio/health/cluster").await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.headers()["x-minio-server-status"],
        "bucket-metadata-offline"
    );
    let r = status_of(&minio, "/minio/health/live").await;
    assert_eq!(r.status(), 200, "liveness holds while initialising");
    assert_eq!(
        r.headers()["x-minio-server-status"],
        "bucket-metadata-offline"
    );
    minio.set_server_status(None);
    assert_eq!(
        status_of(&minio, "/minio/health/cluster").await.status(),
        200
    );
}

#[tokio::test]
async fn cluster_metrics_match_the_reference_exposition() {
    let minio = FakeMinio::start(4, 1).await.unwrap();
    minio.set_usable_capacity(987_654_321_000, 123_456_789_120);
    let r = status_of(&minio, "/minio/v2/metrics/cluster").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.unwrap();
    let (samples, help) = exposition(&text);
    let (ref_samples, ref_help) = exposition(METRICS_REF);

    // Every metric of the reference, with its HELP text and label names.
    for (name, h) in &ref_help {
        assert_eq!(help.get(name), Some(h), "HELP of {name}");
    }
    let label_names = |series: &str| -> Vec<String> {
        let inner = series
            .split_once('{')
            .map(|(_, r)| r.trim_end_matches('}'))
            .unwrap_or("");
        inner
            .split(',')
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()))
            .collect()
    };
    for series in ref_samples.keys() {
        let name = series.split('{').next().unwrap();
        let ours = samples
            .keys()
            .find(|s| s.split('{').next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(label_names(ours), label_names(series), "labels of {name}");
    }
    assert_eq!(
        samples["minio_cluster_capacity_usable_free_bytes{server=\"minio-0:9000\"}"],
        123_456_789_120.0
    );
    assert_eq!(
        samples["minio_cluster_capacity_usable_total_bytes{server=\"minio-0:9000\"}"],
        987_654_321_000.0
    );
    assert!(
        text.contains(
            "minio_cluster_capacity_usable_free_bytes{server=\"minio-0:9000\"} 1.2345678912e+11"
        ),
        "{text}"
    );
    assert_eq!(
        samples["minio_cluster_drive_online_total{server=\"minio-0:9000\"}"],
        4.0
    );
    assert_eq!(
        samples["minio_cluster_health_status{server=\"minio-0:9000\"}"],
        1.0
    );
    assert!(
        !text.contains("minio_cluster_disk_free_bytes"),
        "that metric never existed"
    );

    // Settable free bytes; drives offline show up.
    minio.set_usable_free(5_000_000_000);
    minio.set_node_online(2, false);
    minio.set_node_online(3, false);
    let (samples, _) = exposition(
        &status_of(&minio, "/minio/v2/metrics/cluster")
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(
        samples["minio_cluster_capacity_usable_free_bytes{server=\"minio-0:9000\"}"],
        5e9
    );
    assert_eq!(
        samples["minio_cluster_drive_offline_total{server=\"minio-0:9000\"}"],
        2.0
    );
    assert_eq!(
        samples["minio_cluster_nodes_online_total{server=\"minio-0:9000\"}"],
        2.0
    );
    assert_eq!(
        samples["minio_cluster_health_status{server=\"minio-0:9000\"}"],
        0.0
    );
    assert_eq!(
        samples
            .keys()
            .filter(|k| k.starts_with("minio_node_drive_free_bytes"))
            .count(),
        2
    );
}

#[tokio::test]
async fn metrics_bearer_token() {
    let minio = FakeMinio::start(1, 1).await.unwrap();
    minio.require_metrics_token(Some("tok"));
    let r = status_of(&minio, "/minio/v2/metrics/cluster").await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["Code"], "AccessDenied");
    assert_eq!(body["Resource"], "/minio/v2/metrics/cluster");
    let r = client()
        .get(format!("{}/minio/v2/metrics/cluster", minio.base_url()))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rec = minio
        .requests()
        .matching("GET", "/minio/v2/metrics/cluster");
    assert_eq!(rec[1].header("authorization"), Some("Bearer tok"));
    assert_eq!(rec[0].header("authorization"), None);
}

#[tokio::test]
async fn faults_reach_the_client() {
    let minio = FakeMinio::start(4, 1).await.unwrap();
    assert_fault_kinds(&minio, FaultCheck::get("/minio/health/cluster")).await;
    assert_fault_kinds(&minio, FaultCheck::get("/minio/v2/metrics/cluster")).await;
}
