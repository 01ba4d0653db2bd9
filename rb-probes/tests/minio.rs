//! The MinIO probes through reqwest against the fake MinIO node.

#![cfg(feature = "minio")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support_http;

use std::time::Duration;

use rb_core::{ErrorKind, Observation, Probe, Secret, Target};
use rb_probes::minio::{MinioCapacity, MinioCapacityFact, MinioHealth, MinioHealthFact};
use rb_probes::transport::{HttpAuth, ReqwestClient};
use rb_testkit::http::minio::FakeMinio;
use rb_testkit::http::Fault;
use support_http::{check_matrix, client, ctx, inject_and_observe, kind_of};

fn target() -> Target {
    Target::new("minio", "minio-lake")
}

fn value(o: &Observation, name: &str) -> Option<f64> {
    o.samples_named(name).next().map(|s| s.value)
}

async fn health(m: &FakeMinio) -> Observation {
    MinioHealth::new(client(m), target())
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap()
}

#[tokio::test]
async fn live_write_and_read_quorum_as_drives_go_down() {
    let m = FakeMinio::start(4, 1).await.unwrap(); // EC:2 over 4 drives: write quorum 3, read 2
    let o = health(&m).await;
    assert!(o.complete);
    assert_eq!(value(&o, "minio_live"), Some(1.0));
    assert_eq!(value(&o, "minio_cluster_write_quorum_ok"), Some(1.0));
    assert_eq!(value(&o, "minio_cluster_read_quorum_ok"), Some(1.0));
    assert_eq!(value(&o, "minio_write_quorum"), Some(3.0));
    assert_eq!(value(&o, "minio_read_quorum"), Some(2.0));
    assert_eq!(value(&o, "minio_healing_drives"), Some(0.0));
    assert_eq!((m.write_quorum(), m.read_quorum()), (3, 2));

    m.set_node_online(1, false);
    m.set_node_online(2, false); // 2 drives left: no write quorum, read quorum holds
    let o = health(&m).await;
    assert_eq!(value(&o, "minio_cluster_write_quorum_ok"), Some(0.0));
    assert_eq!(value(&o, "minio_cluster_read_quorum_ok"), Some(1.0));
    let f: MinioHealthFact = o.facts.get().unwrap().unwrap();
    assert_eq!((f.write_status, f.read_status), (Some(503), Some(200)));

    m.set_node_online(3, false); // 1 drive left: neither
    let o = health(&m).await;
    assert_eq!(value(&o, "minio_cluster_read_quorum_ok"), Some(0.0));
    assert_eq!(value(&o, "minio_live"), Some(1.0));
}

#[tokio::test]
async fn busy_initialising_and_healing_nodes() {
    let m = FakeMinio::start(4, 2).await.unwrap();
    m.set_busy(true);
    m.set_healing_drives(2);
    let o = health(&m).await;
    assert_eq!(value(&o, "minio_live"), Some(0.0));
    assert_eq!(value(&o, "minio_healing_drives"), Some(2.0));
    let f: MinioHealthFact = o.facts.get().unwrap().unwrap();
    assert_eq!(f.live_error.as_deref(), Some("ServerBusy"));
    m.set_busy(false);
    m.set_server_status(Some("bucket-metadata-offline"));
    let o = health(&m).await;
    assert_eq!(value(&o, "minio_cluster_write_quorum_ok"), Some(0.0));
    let f: MinioHealthFact = o.facts.get().unwrap().unwrap();
    assert_eq!(f.server_status.as_deref(), Some("bucket-metadata-offline"));
}

#[tokio::test]
async fn a_failed_quorum_check_leaves_an_incomplete_observation() {
    let m = FakeMinio::start(4, 1).await.unwrap();
    m.faults()
        .inject("GET", "/minio/health/cluster", Fault::Status(500));
    let o = health(&m).await;
    assert!(!o.complete);
    assert!(
        o.gaps[0].starts_with("write quorum:") && o.gaps[0].contains("500"),
        "{:?}",
        o.gaps
    );
    assert_eq!(value(&o, "minio_cluster_write_quorum_ok"), None);
    assert_eq!(value(&o, "minio_cluster_read_quorum_ok"), Some(1.0));
    assert_eq!(value(&o, "minio_live"), Some(1.0));
}

#[tokio::test]
async fn free_capacity_with_a_bearer_token() {
    let m = FakeMinio::start(4, 1).await.unwrap();
    m.set_usable_capacity(1_000_000_000_000, 50_000_000_000);
    m.require_metrics_token(Some("eyJ.metrics.jwt"));
    let c = ReqwestClient::builder(m.base_url())
        .auth(HttpAuth::Bearer(Secret::new("eyJ.metrics.jwt")))
        .build()
        .unwrap();
    let p = MinioCapacity::new(c, target());
    let o = p.observe(&ctx(Duration::from_secs(5))).await.unwrap();
    assert!(o.complete);
    assert!(!format!("{p:?}").contains("eyJ.metrics.jwt"));
    assert_eq!(
        value(&o, "minio_cluster_capacity_usable_free_bytes"),
        Some(5.0e10)
    );
    assert_eq!(
        value(&o, "minio_cluster_capacity_usable_total_bytes"),
        Some(1.0e12)
    );
    assert_eq!(
        value(&o, "minio_cluster_capacity_usable_free_ratio"),
        Some(0.05)
    );
    assert_eq!(
        value(&o, "minio_cluster_capacity_raw_free_bytes"),
        Some(1.0e11)
    ); // 4 drives / 2 data
    assert_eq!(value(&o, "minio_cluster_drive_offline_total"), Some(0.0));
    let f: MinioCapacityFact = o.facts.get().unwrap().unwrap();
    assert_eq!(f.reported_by, vec!["minio-0:9000".to_string()]);
    assert!(!f.reports_disagree);

    // without the token, or with another one: 403
    for c in [
        ReqwestClient::new(m.base_url()).unwrap(),
        ReqwestClient::builder(m.base_url())
            .auth(HttpAuth::Bearer(Secret::new("wrong")))
            .build()
            .unwrap(),
    ] {
        let e = MinioCapacity::new(c, target())
            .observe(&ctx(Duration::from_secs(5)))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        assert!(e.message.contains("AccessDenied"), "{e}");
    }
}

#[tokio::test]
async fn several_reports_of_the_cluster_figure_are_never_summed() {
    let m = FakeMinio::start(2, 1).await.unwrap();
    let text = "# TYPE minio_cluster_capacity_usable_free_bytes gauge\n\
minio_cluster_capacity_usable_free_bytes{server=\"minio-0:9000\"} 4e+11\n\
minio_cluster_capacity_usable_free_bytes{server=\"minio-1:9000\"} 4e+11\n\
minio_cluster_capacity_usable_free_bytes{server=\"minio-2:9000\"} 3.9e+11\n\
minio_cluster_capacity_usable_total_bytes{server=\"minio-0:9000\"} 8e+11\n\
minio_cluster_capacity_usable_total_bytes{server=\"minio-1:9000\"} 8e+11\n";
    m.faults().inject(
        "GET",
        "/minio/v2/metrics/cluster",
        Fault::StatusBody(200, text.into()),
    );
    let o = MinioCapacity::new(client(&m), target())
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(
        value(&o, "minio_cluster_capacity_usable_free_bytes"),
        Some(4.0e11)
    );
    assert_eq!(
        value(&o, "minio_cluster_capacity_usable_total_bytes"),
        Some(8.0e11)
    );
    assert_eq!(
        value(&o, "minio_cluster_capacity_usable_free_ratio"),
        Some(0.5)
    );
    let f: MinioCapacityFact = o.facts.get().unwrap().unwrap();
    assert_eq!(f.reported_by.len(), 3);
    assert!(f.reports_disagree);
}

#[tokio::test]
async fn v3_names_missing_figures_and_bad_text() {
    let m = FakeMinio::start(2, 1).await.unwrap();
    m.faults().inject(
        "GET",
        "/minio/metrics/v3/cluster/health",
        Fault::StatusBody(
            200,
            "minio_cluster_health_capacity_usable_free_bytes 7e+10\nminio_cluster_health_capacity_usable_total_bytes 1e+11\n".into(),
        ),
    );
    let o = MinioCapacity::new(client(&m), target())
        .path("/minio/metrics/v3/cluster/health")
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(
        value(&o, "minio_cluster_capacity_usable_free_bytes"),
        Some(7.0e10)
    );
    assert_eq!(
        value(&o, "minio_cluster_capacity_usable_free_ratio"),
        Some(0.7)
    );

    m.faults().clear();
    m.faults().inject(
        "GET",
        "/minio/v2/metrics/cluster",
        Fault::StatusBody(
            200,
            "minio_node_drive_free_bytes{drive=\"/data1\"} 5\n".into(),
        ),
    );
    let o = MinioCapacity::new(client(&m), target())
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(!o.complete);
    assert!(
        o.gaps[0].contains("no minio_cluster_capacity_usable_free_bytes"),
        "{:?}",
        o.gaps
    );

    m.faults().clear();
    m.faults().inject(
        "GET",
        "/minio/v2/metrics/cluster",
        Fault::StatusBody(200, "ok 1\nminio_x{server=\"a\" 1\n".into()),
    );
    let e = MinioCapacity::new(client(&m), target())
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadResponse);
    assert!(e.message.contains("line 2, column"), "{e}");
}

#[tokio::test]
async fn fault_matrix() {
    check_matrix(
        "minio",
        &["health", "capacity"],
        &[("health", "quorum_lost_503"), ("capacity", "no_token_403")],
        |probe, fault| async move {
            let m = FakeMinio::start(4, 1).await.unwrap();
            match (probe.as_str(), fault.as_str()) {
                ("health", "quorum_lost_503") => {
                    for n in 1..4 {
                        m.set_node_online(n, false);
                    }
                    let o = health(&m).await;
                    assert_eq!(value(&o, "minio_cluster_write_quorum_ok"), Some(0.0));
                    "ok".to_string()
                }
                ("capacity", "no_token_403") => {
                    m.require_metrics_token(Some("t"));
                    kind_of(
                        &MinioCapacity::new(client(&m), target())
                            .observe(&ctx(Duration::from_secs(5)))
                            .await,
                    )
                }
                ("health", f) => {
                    let p = MinioHealth::new(client(&m), target());
                    inject_and_observe(&m, "GET", "/minio/health/**", f, |c| async move {
                        p.observe(&c).await
                    })
                    .await
                }
                (_, f) => {
                    let p = MinioCapacity::new(client(&m), target());
                    inject_and_observe(&m, "GET", "/minio/v2/metrics/cluster", f, |c| async move {
                        p.observe(&c).await
                    })
                    .await
                }
            }
        },
    )
    .await;
}
