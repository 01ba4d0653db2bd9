//! The fake MySQL / MariaDB against the real driver (sqlx 0.8, text and prepared protocol).
#![cfg(feature = "mysql")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rb_testkit::mysql::{
    FakeMysql, MyProcess, MyProtocol, INNODB_TRX_SQL, PROCESSLIST_SQL, STATUS_SQL, VARIABLES_SQL,
};
use rb_testkit::sqlwire::WireFault;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use sqlx::{Connection, Executor, Row};

const T: Duration = Duration::from_secs(10);

fn options(my: &FakeMysql) -> MySqlConnectOptions {
    MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(my.port())
        .username(&my.user())
        .password(&my.password())
        .database("rb")
        .ssl_mode(MySqlSslMode::Disabled)
}

async fn connect(my: &FakeMysql) -> MySqlConnection {
    tokio::time::timeout(T, MySqlConnection::connect_with(&options(my)))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn sqlx_connects_and_reads_variables_status_processlist_and_trx() {
    let my = FakeMysql::builder()
        .variable("max_connections", "40")
        .status("Aborted_clients", "3")
        .start()
        .await
        .unwrap();
    let sleeper = my.add_process(
        MyProcess::client("app", "10.0.0.5:5000")
            .db("rb")
            .sleeping(120),
    );
    my.add_trx(sleeper, Duration::from_secs(120));
    my.add_process(MyProcess::client("app", "10.0.0.6:5000").running("SELECT SLEEP(100)", 100));
    my.add_process(MyProcess::daemon("InnoDB purge worker"));
    let mut c = connect(&my).await;
    // sqlx's startup statement went through.
    assert!(
        my.statements()[0].sql.starts_with("SET "),
        "{:?}",
        my.statements()
    );

    let rows = c.fetch_all(VARIABLES_SQL).await.unwrap();
    assert_eq!(rows[0].get::<u64, _>("max_connections"), 40);
    assert_eq!(rows[0].get::<String, _>("version"), "10.11.6-MariaDB");
    let own: u64 = rows[0].get("own_id");

    let rows = c.fetch_all(STATUS_SQL).await.unwrap();
    let status: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.get("Variable_name"), r.get("Value")))
        .collect();
    assert!(
        status.contains(&("Threads_connected".into(), "3".into())),
        "{status:?}"
    );
    assert!(
        status.contains(&("Threads_running".into(), "2".into())),
        "{status:?}"
    );
    assert!(
        status.contains(&("Aborted_clients".into(), "3".into())),
        "{status:?}"
    );
    assert_eq!(status.len(), 5, "{status:?}");

    let rows = c.fetch_all(PROCESSLIST_SQL).await.unwrap();
    assert_eq!(rows.len(), 4);
    let me = rows
        .iter()
        .find(|r| r.get::<i64, _>("ID") as u64 == own)
        .unwrap();
    assert_eq!(me.get::<String, _>("COMMAND"), "Query");
    assert_eq!(
        me.get::<Option<String>, _>("INFO").as_deref(),
        Some(PROCESSLIST_SQL)
    );
    assert_eq!(me.get::<Option<String>, _>("DB").as_deref(), Some("rb"));

    let rows = c.fetch_all(INNODB_TRX_SQL).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<u64, _>("trx_mysql_thread_id"), sleeper);
    assert_eq!(rows[0].get::<i64, _>("trx_age_s"), 120);

    // The prepared protocol answers the same.
    let rows = sqlx::query(PROCESSLIST_SQL)
        .fetch_all(&mut c)
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    assert!(my
        .statements()
        .iter()
        .any(|s| s.sql == PROCESSLIST_SQL && s.protocol == MyProtocol::Prepared));

    // KILL
    c.execute(format!("KILL CONNECTION {sleeper}").as_str())
        .await
        .unwrap();
    assert_eq!(my.kills().len(), 1);
    assert!(!my.processes().iter().any(|p| p.id == sleeper));
    let e = c.execute("KILL 99999").await.unwrap_err();
    assert_eq!(
        e.as_database_error()
            .unwrap()
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .unwrap()
            .number(),
        1094
    );
    c.close().await.unwrap();
}

#[tokio::test]
async fn live_transactions_show_in_innodb_trx_and_sessions_leave() {
    let my = FakeMysql::start().await.unwrap();
    let mut a = connect(&my).await;
    let mut b = connect(&my).await;
    a.execute("START TRANSACTION").await.unwrap();
    let a_id: u64 = a.fetch_one("SELECT CONNECTION_ID()").await.unwrap().get(0);
    let rows = b.fetch_all(INNODB_TRX_SQL).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<u64, _>(0), a_id);
    a.close().await.unwrap();
    for _ in 0..50 {
        if my.processes().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(my.processes().len(), 1);
    assert!(b.fetch_all(INNODB_TRX_SQL).await.unwrap().is_empty());
}

#[tokio::test]
async fn unknown_statements_and_bad_passwords_are_errors() {
    let my = FakeMysql::start().await.unwrap();
    let e = MySqlConnection::connect_with(&options(&my).password("nope"))
        .await
        .unwrap_err();
    assert_eq!(
        e.as_database_error().unwrap().code().as_deref(),
        Some("28000"),
        "{e}"
    );
    let mut c = connect(&my).await;
    let e = c
        .fetch_all("SELECT * FROM information_schema.PROCESSLIST")
        .await
        .unwrap_err();
    assert!(e.as_database_error().is_some(), "{e}");
    let e = c.fetch_all("DROP TABLE t").await.unwrap_err();
    assert_eq!(
        e.as_database_error().unwrap().code().as_deref(),
        Some("42000"),
        "{e}"
    );
    // still usable; the failed login counted
    let rows = c.fetch_all(STATUS_SQL).await.unwrap();
    let aborted: String = rows
        .iter()
        .find(|r| r.get::<String, _>(0) == "Aborted_connects")
        .unwrap()
        .get(1);
    assert_eq!(aborted, "1");
}

#[tokio::test]
async fn faults_on_the_wire() {
    let my = FakeMysql::start().await.unwrap();
    my.refuse_connections().await;
    let e = MySqlConnection::connect_with(&options(&my))
        .await
        .unwrap_err();
    assert!(matches!(e, sqlx::Error::Io(_)), "{e:?}");
    my.accept_connections().await.unwrap();
    connect(&my).await.close().await.unwrap();

    my.set_fault(Some(WireFault::Hang));
    let r = tokio::time::timeout(
        Duration::from_millis(300),
        MySqlConnection::connect_with(&options(&my)),
    )
    .await;
    assert!(r.is_err());
    my.set_fault(None);

    let mut c = connect(&my).await;
    my.set_fault(Some(WireFault::DropMidResult));
    let e = c.fetch_all(PROCESSLIST_SQL).await.unwrap_err();
    assert!(
        matches!(e, sqlx::Error::Io(_) | sqlx::Error::Protocol(_)),
        "{e:?}"
    );
    my.set_fault(None);

    let mut c = connect(&my).await;
    my.set_fault(Some(WireFault::Malformed));
    let r = tokio::time::timeout(T, c.fetch_all(PROCESSLIST_SQL))
        .await
        .unwrap();
    assert!(r.is_err(), "{r:?}");
    my.set_fault(None);
}
