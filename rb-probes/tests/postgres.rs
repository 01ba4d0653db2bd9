//! The postgres probe through its real adapter (sqlx) against rb-testkit's FakePostgres (pgwire).
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rb_core::time::Clock;
use rb_core::{ErrorKind, Observation, Probe, ProbeContext, Secret, Target};
use rb_probes::postgres::{PgConnectionsProbe, SqlxPgSource};
use rb_probes::sql::{SaturationConfig, SqlConnections, SqlEndpoint, SqlSessions, SqlTls};
use rb_testkit::postgres::{FakePostgres, PgSession, QueryProtocol};

fn endpoint(pg: &FakePostgres) -> SqlEndpoint {
    SqlEndpoint::new(
        "127.0.0.1",
        pg.port(),
        pg.user(),
        Secret::new(pg.password()),
    )
    .database("orders")
    .tls(SqlTls::Disable)
    .application_name("rb-probe-test")
}

fn probe(pg: &FakePostgres) -> PgConnectionsProbe<SqlxPgSource> {
    PgConnectionsProbe::connect(
        Target::new("postgres", "pg-main"),
        endpoint(pg),
        SaturationConfig::default(),
    )
}

fn ctx(timeout: Duration) -> ProbeContext {
    ProbeContext::with_timeout(Clock::system(), timeout)
}

fn value(obs: &Observation, name: &str) -> f64 {
    let s: Vec<_> = obs.samples_named(name).collect();
    assert_eq!(s.len(), 1, "{name}: {s:?}");
    s[0].value
}

fn labelled(obs: &Observation, name: &str, key: &str, val: &str) -> Option<f64> {
    obs.samples_named(name)
        .find(|s| s.labels.get(key).map(String::as_str) == Some(val))
        .map(|s| s.value)
}

/// 3 idle, 2 idle in transaction (600 s and 30 s), 1 active for 900 s, 1 active for 5 s, one
/// background worker, one session of another database.
fn script(pg: &FakePostgres) -> (i32, i32) {
    for _ in 0..3 {
        pg.add_session(PgSession::client("app", "orders").app("billing"));
    }
    let old_tx = pg.add_session(
        PgSession::client("app", "orders")
            .app("billing")
            .state("idle in transaction")
            .xact_age(Duration::from_secs(600))
            .query("UPDATE accounts SET balance = balance - 100 WHERE owner = 'alice'"),
    );
    pg.add_session(
        PgSession::client("app", "orders")
            .app("billing")
            .state("idle in transaction")
            .xact_age(Duration::from_secs(30)),
    );
    let long = pg.add_session(
        PgSession::client("report", "orders")
            .app("reports")
            .state("active")
            .xact_age(Duration::from_secs(900))
            .query_age(Duration::from_secs(900))
            .query("SELECT * FROM orders WHERE customer = 'bob@example.com' AND total > 1000"),
    );
    pg.add_session(
        PgSession::client("report", "analytics")
            .app("reports")
            .state("active")
            .query_age(Duration::from_secs(5))
            .query("SELECT 1"),
    );
    pg.add_session(PgSession::background("autovacuum launcher"));
    (old_tx, long)
}

#[tokio::test]
async fn happy_path_exact_numbers_on_postgres_16() {
    let pg = FakePostgres::builder()
        .setting("max_connections", "20")
        .setting("superuser_reserved_connections", "3")
        .setting("reserved_connections", "2")
        .start()
        .await
        .unwrap();
    let (old_tx, long) = script(&pg);
    let obs = probe(&pg)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);

    // 7 client backends besides the probe's own; 20 − 3 − 2 = 15 usable.
    assert_eq!(value(&obs, "db_connections_used"), 7.0);
    assert_eq!(value(&obs, "db_connections_max"), 20.0);
    assert_eq!(value(&obs, "db_connections_usable"), 15.0);
    assert_eq!(value(&obs, "db_connections_used_percent"), 35.0);
    assert!((value(&obs, "db_connections_used_percent_of_usable") - 700.0 / 15.0).abs() < 1e-9);
    assert_eq!(
        labelled(&obs, "db_connections_by_state", "state", "idle"),
        Some(3.0)
    );
    assert_eq!(
        labelled(
            &obs,
            "db_connections_by_state",
            "state",
            "idle in transaction"
        ),
        Some(2.0)
    );
    // The probe's own session (active) is not counted.
    assert_eq!(
        labelled(&obs, "db_connections_by_state", "state", "active"),
        Some(2.0)
    );
    assert_eq!(
        labelled(&obs, "db_connections_by_user", "user", "app"),
        Some(5.0)
    );
    assert_eq!(
        labelled(&obs, "db_connections_by_user", "user", "report"),
        Some(2.0)
    );
    assert_eq!(labelled(&obs, "db_connections_by_user", "user", "rb"), None);
    assert_eq!(
        labelled(&obs, "db_connections_by_database", "database", "analytics"),
        Some(1.0)
    );
    assert_eq!(
        labelled(
            &obs,
            "db_connections_by_application",
            "application",
            "billing"
        ),
        Some(5.0)
    );
    assert_eq!(value(&obs, "db_sessions_long_running"), 1.0);
    assert_eq!(value(&obs, "db_sessions_longest_query_seconds"), 900.0);
    assert_eq!(value(&obs, "db_sessions_idle_in_transaction"), 1.0);
    assert_eq!(
        value(&obs, "db_sessions_idle_in_transaction_max_seconds"),
        600.0
    );

    let conns: SqlConnections = obs.facts.get().unwrap().unwrap();
    assert_eq!(conns.reserved, 5);
    assert_eq!(conns.server_version, "16.4");
    let sessions: SqlSessions = obs.facts.get().unwrap().unwrap();
    assert_eq!(sessions.long_running.len(), 1);
    assert_eq!(sessions.long_running[0].id, i64::from(long));
    assert_eq!(sessions.long_running[0].user, "report");
    assert_eq!(
        sessions.long_running[0].query,
        "SELECT * FROM orders WHERE customer = ? AND total > ?"
    );
    assert_eq!(sessions.idle_in_transaction.len(), 1);
    assert_eq!(sessions.idle_in_transaction[0].id, i64::from(old_tx));
    assert_eq!(sessions.idle_in_transaction[0].age_seconds, 600.0);
    assert_eq!(
        sessions.idle_in_transaction[0].query,
        "UPDATE accounts SET balance = balance - ? WHERE owner = ?"
    );

    // Own session excluded: its pid is the one that sent the statements, and it is listed nowhere.
    let stmts = pg.statements();
    assert!(
        stmts.iter().all(|s| s.protocol == QueryProtocol::Extended),
        "{stmts:?}"
    );
    let own = stmts[0].pid;
    assert_eq!(sessions.own_session, i64::from(own));
    assert!(sessions
        .long_running
        .iter()
        .chain(&sessions.idle_in_transaction)
        .all(|s| s.id != i64::from(own)));
    assert_eq!(stmts.len(), 2);
    // The probe closed its session.
    for _ in 0..50 {
        if !pg.sessions().iter().any(|s| s.pid == own) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!pg.sessions().iter().any(|s| s.pid == own));
}

#[tokio::test]
async fn before_postgres_16_only_superuser_slots_are_reserved() {
    let pg = FakePostgres::builder()
        .setting("max_connections", "20")
        .setting("superuser_reserved_connections", "3")
        .setting("reserved_connections", "5") // not a setting before 16: ignored by the server
        .setting("server_version_num", "150007")
        .start()
        .await
        .unwrap();
    script(&pg);
    let obs = probe(&pg)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(value(&obs, "db_connections_usable"), 17.0);
    assert!((value(&obs, "db_connections_used_percent_of_usable") - 700.0 / 17.0).abs() < 1e-9);
    assert_eq!(value(&obs, "pg_settings_reserved_connections"), 0.0);
    let conns: SqlConnections = obs.facts.get().unwrap().unwrap();
    assert_eq!(conns.server_version, "15.7");
}

#[tokio::test]
async fn only_the_probe_connected_is_zero_not_unknown() {
    let pg = FakePostgres::start().await.unwrap();
    let obs = probe(&pg)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(obs.complete);
    assert_eq!(value(&obs, "db_connections_used"), 0.0);
    assert_eq!(value(&obs, "db_connections_usable"), 97.0);
}

#[tokio::test]
async fn hidden_states_make_the_observation_incomplete() {
    let pg = FakePostgres::start().await.unwrap();
    let mut s = PgSession::client("other", "orders");
    s.state = None; // what a role without pg_read_all_stats sees of another role's session
    pg.add_session(s);
    let obs = probe(&pg)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(!obs.complete);
    assert!(obs.gaps[0].contains("pg_read_all_stats"), "{:?}", obs.gaps);
    assert_eq!(value(&obs, "db_connections_used"), 1.0);
}

#[tokio::test]
async fn debug_and_errors_never_show_the_password() {
    let pg = FakePostgres::start().await.unwrap();
    let p = PgConnectionsProbe::connect(
        Target::new("postgres", "pg-main"),
        SqlEndpoint::new(
            "127.0.0.1",
            pg.port(),
            pg.user(),
            Secret::new("hunter2-wrong"),
        )
        .tls(SqlTls::Disable),
        SaturationConfig::default(),
    );
    assert!(!format!("{p:?}").contains("hunter2"));
    let e = p.observe(&ctx(Duration::from_secs(5))).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    let text = format!("{e} {e:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("pg-main") && text.contains(&pg.port().to_string()),
        "{text}"
    );
}

#[test]
fn the_fake_answers_exactly_the_statements_the_probe_sends() {
    assert_eq!(
        rb_probes::postgres::SETTINGS_SQL,
        rb_testkit::postgres::SETTINGS_SQL
    );
    assert_eq!(
        rb_probes::postgres::ACTIVITY_SQL,
        rb_testkit::postgres::ACTIVITY_SQL
    );
}

#[tokio::test]
async fn tls_required_against_a_server_without_tls_is_refused_not_plain() {
    let pg = FakePostgres::start().await.unwrap();
    for tls in [
        SqlTls::Require,
        SqlTls::VerifyCa {
            ca_pem: "-----BEGIN CERTIFICATE-----\nnot a cert\n-----END CERTIFICATE-----\n".into(),
        },
    ] {
        let p = PgConnectionsProbe::connect(
            Target::new("postgres", "pg-main"),
            endpoint(&pg).tls(tls),
            SaturationConfig::default(),
        );
        let e = p.observe(&ctx(Duration::from_secs(5))).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Rejected, "{e}");
        assert!(e.message.contains("TLS"), "{e}");
    }
    // Prefer falls back to plain TCP when the server has no TLS.
    let p = PgConnectionsProbe::connect(
        Target::new("postgres", "pg-main"),
        endpoint(&pg).tls(SqlTls::Prefer),
        SaturationConfig::default(),
    );
    p.observe(&ctx(Duration::from_secs(5))).await.unwrap();
}
