//! The fake PostgreSQL against the real driver (sqlx 0.8, extended and simple protocol). Every
//! test is bounded by `tokio::time::timeout`.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rb_testkit::postgres::{
    FakePostgres, PgAuth, PgSession, QueryProtocol, ACTIVITY_SQL, SETTINGS_SQL,
};
use rb_testkit::sqlwire::WireFault;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{Connection, Executor, Row};

const T: Duration = Duration::from_secs(10);

fn options(pg: &FakePostgres) -> PgConnectOptions {
    PgConnectOptions::new()
        .host("127.0.0.1")
        .port(pg.port())
        .username(&pg.user())
        .password(&pg.password())
        .database("orders")
        .application_name("fake-test")
}

async fn connect(pg: &FakePostgres) -> PgConnection {
    tokio::time::timeout(T, PgConnection::connect_with(&options(pg)))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn sqlx_reads_settings_and_activity_over_the_extended_protocol() {
    let pg = FakePostgres::builder()
        .setting("max_connections", "20")
        .start()
        .await
        .unwrap();
    let idle_tx = pg.add_session(
        PgSession::client("app", "orders")
            .app("billing")
            .state("idle in transaction")
            .xact_age(Duration::from_secs(600))
            .query("UPDATE t SET x = 1"),
    );
    pg.add_session(PgSession::background("autovacuum launcher"));
    let mut c = connect(&pg).await;

    let rows = sqlx::query(SETTINGS_SQL).fetch_all(&mut c).await.unwrap();
    let settings: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.get("name"), r.get("setting")))
        .collect();
    assert!(settings.contains(&("max_connections".into(), "20".into())));
    assert_eq!(settings.len(), 4);

    let own: i32 = sqlx::query("SELECT pg_backend_pid()")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    let rows = sqlx::query(ACTIVITY_SQL).fetch_all(&mut c).await.unwrap();
    assert_eq!(rows.len(), 3);
    let me = rows.iter().find(|r| r.get::<bool, _>("own")).unwrap();
    assert_eq!(me.get::<i32, _>("pid"), own);
    assert_eq!(me.get::<String, _>("state"), "active");
    assert_eq!(me.get::<String, _>("application_name"), "fake-test");
    assert_eq!(me.get::<String, _>("datname"), "orders");
    let tx = rows
        .iter()
        .find(|r| r.get::<i32, _>("pid") == idle_tx)
        .unwrap();
    assert_eq!(tx.get::<Option<f64>, _>("xact_age_s"), Some(600.0));
    assert_eq!(tx.get::<String, _>("state"), "idle in transaction");
    let bg = rows
        .iter()
        .find(|r| r.get::<String, _>("backend_type") == "autovacuum launcher")
        .unwrap();
    assert_eq!(bg.get::<Option<f64>, _>("xact_age_s"), None);

    // The simple protocol answers the same.
    let rows = c.fetch_all(ACTIVITY_SQL).await.unwrap();
    assert_eq!(rows.len(), 3);

    // Terminate, with a bound parameter.
    let done: bool = sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(idle_tx)
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    assert!(done);
    assert_eq!(pg.terminated().len(), 1);
    assert_eq!(pg.terminated()[0].pid, idle_tx);
    assert!(!pg.sessions().iter().any(|s| s.pid == idle_tx));

    let stmts = pg.statements();
    assert!(stmts
        .iter()
        .any(|s| s.sql == ACTIVITY_SQL && s.protocol == QueryProtocol::Extended));
    assert!(stmts
        .iter()
        .any(|s| s.sql == ACTIVITY_SQL && s.protocol == QueryProtocol::Simple));
    c.close().await.unwrap();
}

#[tokio::test]
async fn transactions_show_as_idle_in_transaction_and_closed_connections_leave() {
    let pg = FakePostgres::builder()
        .auth(PgAuth::Cleartext)
        .start()
        .await
        .unwrap();
    let mut a = connect(&pg).await;
    let mut b = connect(&pg).await;
    a.execute("BEGIN").await.unwrap();
    sqlx::query("SELECT 1").execute(&mut a).await.unwrap();
    let rows = sqlx::query(ACTIVITY_SQL).fetch_all(&mut b).await.unwrap();
    let states: Vec<String> = rows.iter().map(|r| r.get("state")).collect();
    assert!(
        states.contains(&"idle in transaction".to_string()),
        "{states:?}"
    );
    a.close().await.unwrap();
    for _ in 0..50 {
        if pg.sessions().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pg.sessions().len(), 1);
    b.close().await.unwrap();
}

#[tokio::test]
async fn unknown_statements_get_an_error_not_silence() {
    let pg = FakePostgres::builder()
        .auth(PgAuth::Trust)
        .start()
        .await
        .unwrap();
    let mut c = connect(&pg).await;
    let e = sqlx::query("SELECT * FROM pg_stat_activity")
        .fetch_all(&mut c)
        .await
        .unwrap_err();
    assert_eq!(e.as_database_error().unwrap().code().unwrap(), "0A000");
    let e = sqlx::query("DELETE FROM users")
        .execute(&mut c)
        .await
        .unwrap_err();
    assert_eq!(e.as_database_error().unwrap().code().unwrap(), "42601");
    // The connection is still usable.
    let one: i32 = sqlx::query("SELECT 1")
        .fetch_one(&mut c)
        .await
        .unwrap()
        .get(0);
    assert_eq!(one, 1);
    let e = sqlx::query("SHOW reserved_connectionz")
        .fetch_all(&mut c)
        .await
        .unwrap_err();
    assert_eq!(e.as_database_error().unwrap().code().unwrap(), "42704");
}

#[tokio::test]
async fn reserved_connections_exists_from_version_16() {
    let pg = FakePostgres::builder()
        .setting("server_version_num", "150007")
        .start()
        .await
        .unwrap();
    let mut c = connect(&pg).await;
    let rows = sqlx::query(SETTINGS_SQL).fetch_all(&mut c).await.unwrap();
    assert_eq!(rows.len(), 3);
    assert!(c.server_version_num() == Some(150007) || c.server_version_num().is_none());
}

#[tokio::test]
async fn bad_password_is_28p01() {
    let pg = FakePostgres::start().await.unwrap();
    let e = PgConnection::connect_with(&options(&pg).password("wrong"))
        .await
        .unwrap_err();
    assert_eq!(e.as_database_error().unwrap().code().unwrap(), "28P01");
}

#[tokio::test]
async fn faults_on_the_wire() {
    let pg = FakePostgres::start().await.unwrap();

    // refused
    pg.refuse_connections().await;
    let e = PgConnection::connect_with(&options(&pg)).await.unwrap_err();
    assert!(matches!(e, sqlx::Error::Io(_)), "{e:?}");
    pg.accept_connections().await.unwrap();
    connect(&pg).await.close().await.unwrap();

    // hang
    pg.set_fault(Some(WireFault::Hang));
    let r = tokio::time::timeout(
        Duration::from_millis(300),
        PgConnection::connect_with(&options(&pg).ssl_mode(PgSslMode::Disable)),
    )
    .await;
    assert!(r.is_err(), "a hanging server answered");
    pg.set_fault(None);

    // drop mid result
    let mut c = connect(&pg).await;
    pg.set_fault(Some(WireFault::DropMidResult));
    let e = sqlx::query(ACTIVITY_SQL)
        .fetch_all(&mut c)
        .await
        .unwrap_err();
    assert!(
        matches!(e, sqlx::Error::Io(_) | sqlx::Error::Protocol(_)),
        "{e:?}"
    );
    pg.set_fault(None);

    // malformed
    let mut c = connect(&pg).await;
    pg.set_fault(Some(WireFault::Malformed));
    let e = sqlx::query(ACTIVITY_SQL)
        .fetch_all(&mut c)
        .await
        .unwrap_err();
    assert!(matches!(e, sqlx::Error::Protocol(_)), "{e:?}");
    pg.set_fault(None);

    // latency
    pg.set_latency(Duration::from_millis(200));
    let r = tokio::time::timeout(
        Duration::from_millis(100),
        PgConnection::connect_with(&options(&pg)),
    )
    .await;
    assert!(r.is_err());
    pg.set_latency(Duration::ZERO);
    connect(&pg).await.close().await.unwrap();
}
