//! The committed table `tests/fault_matrix/sql.csv` (probe × fault → error kind), run row by row
//! against the fakes through the real adapters: a kind that differs, a row the test cannot run
//! (extra) or a fault the fakes inject that has no row (missing) fails.
#![cfg(any(feature = "postgres", feature = "mysql"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use rb_core::time::Clock;
use rb_core::{ErrorKind, ProbeContext, Secret, Target};
use rb_probes::sql::{SaturationConfig, SqlEndpoint, SqlTls};
use rb_testkit::sqlwire::WireFault;

/// Every fault the fakes inject (wire faults, refused connections, wrong credentials).
const FAULTS: [&str; 7] = [
    "latency",
    "hang",
    "refused",
    "bad_password",
    "drop_mid_result",
    "malformed",
    "overrun",
];
const DEADLINE: Duration = Duration::from_millis(500);

fn ctx() -> ProbeContext {
    ProbeContext::with_timeout(Clock::system(), DEADLINE)
}

fn kind_of(s: &str) -> ErrorKind {
    match s {
        "Timeout" => ErrorKind::Timeout,
        "Unreachable" => ErrorKind::Unreachable,
        "Unauthorized" => ErrorKind::Unauthorized,
        "BadResponse" => ErrorKind::BadResponse,
        "Rejected" => ErrorKind::Rejected,
        other => panic!("unknown kind {other} in sql.csv"),
    }
}

/// A wire fault for the fakes' switch (`None`: not a wire fault).
fn wire(fault: &str) -> Option<WireFault> {
    match fault {
        "hang" => Some(WireFault::Hang),
        "drop_mid_result" => Some(WireFault::DropMidResult),
        "malformed" => Some(WireFault::Malformed),
        "overrun" => Some(WireFault::Overrun),
        _ => None,
    }
}

#[cfg(feature = "postgres")]
async fn postgres(fault: &str) -> ErrorKind {
    use rb_core::Probe;
    use rb_probes::postgres::PgConnectionsProbe;
    use rb_testkit::postgres::FakePostgres;
    let pg = FakePostgres::start().await.unwrap();
    let password = if fault == "bad_password" {
        "hunter2".to_string()
    } else {
        pg.password()
    };
    let p = PgConnectionsProbe::connect(
        Target::new("postgres", "pg-main"),
        SqlEndpoint::new("127.0.0.1", pg.port(), pg.user(), Secret::new(password))
            .tls(SqlTls::Disable),
        SaturationConfig::default(),
    );
    match fault {
        "latency" => pg.set_latency(DEADLINE * 4),
        "refused" => pg.refuse_connections().await,
        _ => pg.set_fault(wire(fault)),
    }
    let e = p.observe(&ctx()).await.unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(
        text.contains("pg-main") && text.contains(&pg.port().to_string()),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    e.kind
}

#[cfg(feature = "mysql")]
async fn mysql(fault: &str) -> ErrorKind {
    use rb_core::Probe;
    use rb_probes::mysql::MySqlConnectionsProbe;
    use rb_testkit::mysql::FakeMysql;
    let my = FakeMysql::start().await.unwrap();
    let password = if fault == "bad_password" {
        "hunter2".to_string()
    } else {
        my.password()
    };
    let p = MySqlConnectionsProbe::connect(
        Target::new("mysql", "mysql-main"),
        SqlEndpoint::new("127.0.0.1", my.port(), my.user(), Secret::new(password))
            .tls(SqlTls::Disable),
        SaturationConfig::default(),
    );
    match fault {
        "latency" => my.set_latency(DEADLINE * 4),
        "refused" => my.refuse_connections().await,
        _ => my.set_fault(wire(fault)),
    }
    let e = p.observe(&ctx()).await.unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(
        text.contains("mysql-main") && text.contains(&my.port().to_string()),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    e.kind
}

#[tokio::test]
async fn every_row_of_the_fault_matrix_holds_and_none_is_missing() {
    let csv = include_str!("fault_matrix/sql.csv");
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    assert_eq!(lines.next(), Some("probe,fault,kind"));
    let mut probes = BTreeSet::new();
    #[cfg(feature = "postgres")]
    probes.insert("postgres.connections");
    #[cfg(feature = "mysql")]
    probes.insert("mysql.connections");
    let mut expected: BTreeSet<(String, String)> = probes
        .iter()
        .flat_map(|p| FAULTS.iter().map(move |f| (p.to_string(), f.to_string())))
        .collect();
    let mut failures = Vec::new();
    for line in lines {
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols.len(), 3, "bad row {line:?}");
        let (probe, fault, kind) = (cols[0], cols[1], kind_of(cols[2]));
        assert!(
            ["postgres.connections", "mysql.connections"].contains(&probe),
            "extra row for an unknown probe: {line}"
        );
        assert!(
            FAULTS.contains(&fault),
            "extra row for an unknown fault: {line}"
        );
        if !probes.contains(probe) {
            continue; // its feature is off in this build
        }
        assert!(
            expected.remove(&(probe.to_string(), fault.to_string())),
            "duplicate row {line}"
        );
        let got = match probe {
            #[cfg(feature = "postgres")]
            "postgres.connections" => postgres(fault).await,
            #[cfg(feature = "mysql")]
            "mysql.connections" => mysql(fault).await,
            _ => unreachable!(),
        };
        if got != kind {
            failures.push(format!("{probe} × {fault}: expected {kind:?}, got {got:?}"));
        }
    }
    assert!(
        expected.is_empty(),
        "rows missing from sql.csv: {expected:?}"
    );
    assert!(failures.is_empty(), "{failures:#?}");
}
