//! The mysql probe through its real adapter (sqlx) against rb-testkit's FakeMysql (opensrv-mysql).
#![cfg(feature = "mysql")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rb_core::time::Clock;
use rb_core::{Observation, Probe, ProbeContext, Secret, Target};
use rb_probes::mysql::{MySqlConnectionsProbe, SqlxMySqlSource};
use rb_probes::sql::{SaturationConfig, SqlConnections, SqlEndpoint, SqlSessions, SqlTls};
use rb_testkit::mysql::{FakeMysql, MyProcess, MyProtocol};

fn endpoint(my: &FakeMysql) -> SqlEndpoint {
    SqlEndpoint::new(
        "127.0.0.1",
        my.port(),
        my.user(),
        Secret::new(my.password()),
    )
    .database("shop")
    .tls(SqlTls::Disable)
}

fn probe(my: &FakeMysql) -> MySqlConnectionsProbe<SqlxMySqlSource> {
    MySqlConnectionsProbe::connect(
        Target::new("mysql", "mysql-main"),
        endpoint(my),
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

/// 3 idle, 2 idle in a transaction (600 s, 30 s), one statement running 900 s, one 5 s, one
/// background thread.
fn script(my: &FakeMysql) -> (u64, u64) {
    for port in 0..3 {
        my.add_process(
            MyProcess::client("app", &format!("10.0.0.5:{}", 40000 + port))
                .db("shop")
                .sleeping(10),
        );
    }
    let old_tx = my.add_process(
        MyProcess::client("app", "10.0.0.5:40010")
            .db("shop")
            .sleeping(600),
    );
    my.add_trx(old_tx, Duration::from_secs(600));
    let young_tx = my.add_process(
        MyProcess::client("app", "10.0.0.5:40011")
            .db("shop")
            .sleeping(30),
    );
    my.add_trx(young_tx, Duration::from_secs(30));
    let long = my.add_process(
        MyProcess::client("report", "10.0.0.7:50000")
            .db("shop")
            .running(
                "SELECT * FROM orders WHERE customer = 'bob@example.com' AND total > 1000",
                900,
            ),
    );
    my.add_process(
        MyProcess::client("report", "10.0.0.7:50001")
            .db("analytics")
            .running("SELECT 1", 5),
    );
    my.add_process(MyProcess::daemon("InnoDB purge coordinator"));
    (old_tx, long)
}

#[tokio::test]
async fn happy_path_exact_numbers() {
    let my = FakeMysql::builder()
        .variable("max_connections", "40")
        .status("Aborted_clients", "4")
        .start()
        .await
        .unwrap();
    let (old_tx, long) = script(&my);
    let obs = probe(&my)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(obs.complete, "{:?}", obs.gaps);

    // Threads_connected 8 (7 + the probe), the probe's own excluded.
    assert_eq!(value(&obs, "mysql_global_status_threads_connected"), 8.0);
    assert_eq!(value(&obs, "db_connections_used"), 7.0);
    assert_eq!(value(&obs, "db_connections_max"), 40.0);
    assert_eq!(value(&obs, "db_connections_usable"), 40.0);
    assert_eq!(value(&obs, "db_connections_used_percent"), 17.5);
    assert_eq!(value(&obs, "db_connections_used_percent_of_usable"), 17.5);
    // Two running statements plus the probe's own.
    assert_eq!(value(&obs, "mysql_global_status_threads_running"), 3.0);
    assert_eq!(value(&obs, "mysql_global_status_aborted_clients"), 4.0);
    assert_eq!(value(&obs, "mysql_global_status_aborted_connects"), 0.0);
    assert_eq!(value(&obs, "mysql_global_status_max_used_connections"), 8.0);

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
    assert_eq!(
        labelled(&obs, "db_connections_by_state", "state", "active"),
        Some(2.0)
    );
    assert_eq!(
        labelled(&obs, "db_connections_by_user", "user", "app"),
        Some(5.0)
    );
    assert_eq!(
        labelled(&obs, "db_connections_by_user", "user", "system user"),
        None
    );
    assert_eq!(labelled(&obs, "db_connections_by_user", "user", "rb"), None);
    assert_eq!(
        labelled(
            &obs,
            "db_connections_by_application",
            "application",
            "10.0.0.7"
        ),
        Some(2.0)
    );
    assert_eq!(
        labelled(&obs, "db_connections_by_database", "database", "shop"),
        Some(6.0)
    );
    assert_eq!(value(&obs, "db_sessions_long_running"), 1.0);
    assert_eq!(value(&obs, "db_sessions_longest_query_seconds"), 900.0);
    assert_eq!(value(&obs, "db_sessions_idle_in_transaction"), 1.0);
    assert_eq!(
        value(&obs, "db_sessions_idle_in_transaction_max_seconds"),
        600.0
    );

    let conns: SqlConnections = obs.facts.get().unwrap().unwrap();
    assert_eq!(conns.server_version, "10.11.6-MariaDB");
    assert_eq!(conns.reserved, 0);
    let sessions: SqlSessions = obs.facts.get().unwrap().unwrap();
    assert_eq!(sessions.long_running.len(), 1);
    assert_eq!(sessions.long_running[0].id, long as i64);
    assert_eq!(
        sessions.long_running[0].query,
        "SELECT * FROM orders WHERE customer = ? AND total > ?"
    );
    assert_eq!(sessions.idle_in_transaction.len(), 1);
    assert_eq!(sessions.idle_in_transaction[0].id, old_tx as i64);
    assert_eq!(sessions.idle_in_transaction[0].state, "idle in transaction");
    assert_eq!(sessions.idle_in_transaction[0].age_seconds, 600.0);

    // Own connection excluded; statements over the text protocol, after sqlx's SET.
    let stmts = my.statements();
    let own = stmts[0].id;
    assert_eq!(sessions.own_session, own as i64);
    assert!(stmts.iter().all(|s| s.protocol == MyProtocol::Text));
    assert_eq!(stmts.len(), 5, "{stmts:?}");
    assert!(stmts[0].sql.starts_with("SET "));
}

#[tokio::test]
async fn mysql_8_and_an_admin_in_the_extra_slot() {
    let my = FakeMysql::builder()
        .variable("max_connections", "4")
        .variable("version", "8.0.36")
        .status("Threads_connected", "6") // 4 + the admin's extra one + the probe
        .start()
        .await
        .unwrap();
    for i in 0..5 {
        my.add_process(MyProcess::client(
            if i == 4 { "root" } else { "app" },
            "10.0.0.9:1",
        ));
    }
    let obs = probe(&my)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(value(&obs, "db_connections_used"), 5.0);
    assert_eq!(value(&obs, "db_connections_used_percent"), 125.0);
    let conns: SqlConnections = obs.facts.get().unwrap().unwrap();
    assert_eq!(conns.server_version, "8.0.36");
}

#[tokio::test]
async fn without_process_privilege_the_observation_is_incomplete() {
    let my = FakeMysql::builder()
        .status("Threads_connected", "12")
        .start()
        .await
        .unwrap();
    let obs = probe(&my)
        .observe(&ctx(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(!obs.complete);
    assert!(obs.gaps[0].contains("PROCESS"), "{:?}", obs.gaps);
    assert_eq!(value(&obs, "db_connections_used"), 11.0);
}

#[test]
fn the_fake_answers_exactly_the_statements_the_probe_sends() {
    use rb_probes::mysql as p;
    use rb_testkit::mysql as f;
    assert_eq!(p::VARIABLES_SQL, f::VARIABLES_SQL);
    assert_eq!(p::STATUS_SQL, f::STATUS_SQL);
    assert_eq!(p::PROCESSLIST_SQL, f::PROCESSLIST_SQL);
    assert_eq!(p::INNODB_TRX_SQL, f::INNODB_TRX_SQL);
}

#[tokio::test]
async fn tls_required_against_a_server_without_tls_is_refused_not_plain() {
    let my = FakeMysql::start().await.unwrap();
    let p = MySqlConnectionsProbe::connect(
        Target::new("mysql", "mysql-main"),
        endpoint(&my).tls(SqlTls::Require),
        SaturationConfig::default(),
    );
    let e = p.observe(&ctx(Duration::from_secs(5))).await.unwrap_err();
    assert_eq!(e.kind, rb_core::ErrorKind::Rejected, "{e}");
    assert!(e.message.contains("TLS"), "{e}");
    let p = MySqlConnectionsProbe::connect(
        Target::new("mysql", "mysql-main"),
        endpoint(&my).tls(SqlTls::Prefer),
        SaturationConfig::default(),
    );
    p.observe(&ctx(Duration::from_secs(5))).await.unwrap();
}
