//! The MinIO probes through reqwest against the fake MinIO node.

#![cfg(feature = "minio")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support_http;

use std::time::Duration;

use rb_core::{ErrorKind, Observation, Probe, Secret, Target};
use rb_probes::minio::{
    MaintenanceQuorum, MaintenanceVerdict, MinioCapacity, MinioCapacityFact, MinioHealth,
    MinioHealthFact, MinioMaintenance, MinioMaintenanceFact,
};
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
    // MinIO sends X-Minio-Healing-Drives to maintenance checks only: no figure, not a false 0
    assert_eq!(value(&o, "minio_healing_drives"), None);
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
    m.set_drives_healing(1, 2);
    let o = health(&m).await;
    assert_eq!(value(&o, "minio_live"), Some(0.0));
    assert_eq!(value(&o, "minio_healing_drives"), None);
    // a header sent is reported (an older or patched server that sends it on the plain check)
    m.override_health_header("x-minio-healing-drives", Some("2"));
    let o = health(&m).await;
    assert_eq!(value(&o, "minio_healing_drives"), Some(2.0));
    m.clear_header_overrides();
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

async fn maintenance(m: &FakeMinio, quorum: MaintenanceQuorum) -> Observation {
    MinioMaintenance::new(client(m), target())
        .quorum(quorum)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap()
}

fn verdict(o: &Observation) -> MinioMaintenanceFact {
    o.facts.get().unwrap().unwrap()
}

fn safe(o: &Observation, quorum: &str) -> Option<f64> {
    let want = rb_core::labels(&[("quorum", quorum)]);
    o.samples_named("minio_maintenance_safe")
        .find(|s| s.labels == want)
        .map(|s| s.value)
}

#[tokio::test]
async fn maintenance_check_safe_then_quorum_at_risk() {
    let m = FakeMinio::start(4, 1).await.unwrap(); // write quorum 3, read 2
    let o = maintenance(&m, MaintenanceQuorum::Write).await;
    assert!(o.complete);
    assert_eq!(safe(&o, "write"), Some(1.0));
    assert_eq!(value(&o, "minio_write_quorum"), Some(3.0));
    assert_eq!(value(&o, "minio_maintenance_healing_drives"), Some(0.0));
    let f = verdict(&o);
    assert_eq!(f.verdict, MaintenanceVerdict::Safe);
    assert_eq!((f.status, f.quorum, f.healing_drives), (200, Some(3), 0));
    assert_eq!(f.storage_class_defaults, Some(true));
    // the request is the documented one
    let sent = m.requests().matching("GET", "/minio/health/cluster");
    assert_eq!(
        sent.last().unwrap().query.as_deref(),
        Some("maintenance=true")
    );

    // One node down: the cluster serves, but this node's drive is needed for the write quorum.
    m.set_node_online(3, false);
    let o = maintenance(&m, MaintenanceQuorum::Write).await;
    assert_eq!(safe(&o, "write"), Some(0.0));
    let f = verdict(&o);
    assert_eq!(
        (f.status, f.verdict),
        (412, MaintenanceVerdict::QuorumAtRisk)
    );
    assert_eq!(f.quorum, Some(3));
    // Reads keep their quorum (2 of the 2 other drives left).
    let o = maintenance(&m, MaintenanceQuorum::Read).await;
    assert_eq!(safe(&o, "read"), Some(1.0));
    assert_eq!(value(&o, "minio_read_quorum"), Some(2.0));
    assert_eq!(
        m.requests()
            .matching("GET", "/minio/health/cluster/read")
            .last()
            .unwrap()
            .query
            .as_deref(),
        Some("maintenance=true")
    );

    // The write quorum already lost: still 412 (never 503) on a maintenance check.
    m.set_node_online(2, false);
    let o = maintenance(&m, MaintenanceQuorum::Write).await;
    assert_eq!(verdict(&o).verdict, MaintenanceVerdict::QuorumAtRisk);
    assert_eq!(safe(&o, "write"), Some(0.0));
}

#[tokio::test]
async fn maintenance_waits_for_healing_drives_and_an_initialising_node() {
    let m = FakeMinio::start(4, 2).await.unwrap(); // 8 drives, write quorum 5: quorum holds without this node
    m.set_drives_healing(3, 2);
    let o = maintenance(&m, MaintenanceQuorum::Write).await;
    assert_eq!(safe(&o, "write"), Some(0.0));
    assert_eq!(value(&o, "minio_maintenance_healing_drives"), Some(2.0));
    let f = verdict(&o);
    assert_eq!(
        (f.status, f.verdict),
        (412, MaintenanceVerdict::DrivesHealing)
    );
    assert_eq!(f.healing_drives, 2);
    // the plain health probe does not see the healing drives: MinIO does not send them there
    let h = health(&m).await;
    assert_eq!(value(&h, "minio_healing_drives"), None);
    assert_eq!(value(&h, "minio_cluster_write_quorum_ok"), Some(1.0));
    m.set_drives_healing(3, 0);
    assert_eq!(
        safe(&maintenance(&m, MaintenanceQuorum::Write).await, "write"),
        Some(1.0)
    );

    // Still initialising: 503 with x-minio-server-status, no quorum. Not safe, and said why.
    m.set_server_status(Some("offline"));
    let o = maintenance(&m, MaintenanceQuorum::Write).await;
    assert!(o.complete);
    assert_eq!(safe(&o, "write"), Some(0.0));
    assert_eq!(value(&o, "minio_write_quorum"), None);
    assert_eq!(value(&o, "minio_maintenance_healing_drives"), None);
    let f = verdict(&o);
    assert_eq!(
        (f.status, f.verdict),
        (503, MaintenanceVerdict::NodeInitialising)
    );
    assert_eq!(f.server_status.as_deref(), Some("offline"));
    assert!(!f.verdict.is_safe());
}

#[tokio::test]
async fn maintenance_errors_5xx_refused_and_not_minio_answers() {
    let m = FakeMinio::start(4, 1).await.unwrap();
    let observe = |m: &FakeMinio| {
        let p = MinioMaintenance::new(client(m), target());
        async move { p.observe(&ctx(Duration::from_secs(5))).await }
    };
    // 5xx, and a 503 that is not MinIO's (no x-minio-server-status): rejected, never "safe"
    for status in [500, 502, 503] {
        m.faults().clear();
        m.faults()
            .inject("GET", "/minio/health/cluster", Fault::Status(status));
        let e = observe(&m).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Rejected, "{status}: {e}");
        assert!(e.message.contains(&format!("HTTP {status}")), "{e}");
        assert!(
            e.endpoint
                .contains("/minio/health/cluster?maintenance=true"),
            "{e}"
        );
        assert_eq!(e.target, "minio-lake");
    }
    // a 200 that is not MinIO's health answer (no quorum header)
    m.faults().clear();
    m.faults()
        .inject("GET", "/minio/health/cluster", Fault::MalformedBody);
    let e = observe(&m).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadResponse);
    assert!(
        e.message.contains("without header x-minio-write-quorum"),
        "{e}"
    );
    m.faults().clear();

    // malformed headers: each named, each a bad response, never a verdict
    for (header, bad) in [
        ("x-minio-write-quorum", Some("three")),
        ("x-minio-write-quorum", Some("-1")),
        ("x-minio-write-quorum", None),
        ("x-minio-healing-drives", Some("2.5")),
        ("x-minio-storage-class-defaults", Some("yes")),
    ] {
        m.clear_header_overrides();
        m.override_health_header(header, bad);
        let e = observe(&m).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadResponse, "{header}={bad:?}: {e}");
        assert!(e.message.contains(header), "{e}");
        if let Some(bad) = bad {
            assert!(e.message.contains(bad), "{e}");
        }
    }
    // also on a 412
    m.clear_header_overrides();
    m.set_node_online(1, false);
    m.override_health_header("x-minio-write-quorum", Some(""));
    let e = observe(&m).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadResponse);
    assert!(e.message.starts_with("HTTP 412"), "{e}");
    m.clear_header_overrides();

    // refused
    m.refuse_connections();
    let e = observe(&m).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
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
        &["health", "maintenance", "capacity"],
        &[
            ("health", "quorum_lost_503"),
            ("capacity", "no_token_403"),
            ("maintenance", "would_lose_quorum_412"),
            ("maintenance", "drives_healing_412"),
            ("maintenance", "initialising_503"),
            ("maintenance", "malformed_quorum_header"),
        ],
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
                ("maintenance", "would_lose_quorum_412") => {
                    m.set_node_online(1, false);
                    let o = maintenance(&m, MaintenanceQuorum::Write).await;
                    assert_eq!(verdict(&o).verdict, MaintenanceVerdict::QuorumAtRisk);
                    "ok".to_string()
                }
                ("maintenance", "drives_healing_412") => {
                    m.set_drives_healing(2, 1);
                    let o = maintenance(&m, MaintenanceQuorum::Write).await;
                    assert_eq!(verdict(&o).verdict, MaintenanceVerdict::DrivesHealing);
                    "ok".to_string()
                }
                ("maintenance", "initialising_503") => {
                    m.set_server_status(Some("iam-offline"));
                    let o = maintenance(&m, MaintenanceQuorum::Write).await;
                    assert_eq!(verdict(&o).verdict, MaintenanceVerdict::NodeInitialising);
                    "ok".to_string()
                }
                ("maintenance", "malformed_quorum_header") => {
                    m.override_health_header("x-minio-write-quorum", Some("3 drives"));
                    kind_of(
                        &MinioMaintenance::new(client(&m), target())
                            .observe(&ctx(Duration::from_secs(5)))
                            .await,
                    )
                }
                ("maintenance", f) => {
                    let p = MinioMaintenance::new(client(&m), target());
                    inject_and_observe(&m, "GET", "/minio/health/cluster", f, |c| async move {
                        p.observe(&c).await
                    })
                    .await
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
