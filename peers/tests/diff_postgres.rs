//! Differential test: every statement the postgres probe sends (and the few the fake documents
//! besides) against the real PostgreSQL and against `rb_testkit::postgres::FakePostgres`, through
//! the same sqlx code (extended protocol, as the probe does): column names and sqlx type names
//! must agree, and so must what does not depend on the situation — the settings that exist for
//! the server's version, exactly one row marked as the asking session, its state `active`, the
//! pid `pg_backend_pid()` returns, `pg_terminate_backend` of a pid that is no backend.
//!
//! The fake is given the real server's `server_version_num`, `max_connections` and
//! `superuser_reserved_connections`. A difference fails unless it is listed in [`KNOWN`]; a known
//! one that disappears fails too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use rb_peers::postgres::Postgres;
use rb_peers::PeerEnv;
use rb_testkit::postgres::{FakePostgres, ACTIVITY_SQL, SETTINGS_SQL};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::{Column, Connection, Row, TypeInfo};

/// Differences accepted at the time of writing (none).
const KNOWN: &[&str] = &[];

const EXTRA: &[&str] = &[
    "SELECT pg_backend_pid()",
    "SHOW max_connections",
    "SELECT current_setting('max_connections')",
    "SELECT pg_terminate_backend(2147483000)",
    "SELECT 1",
];

/// `name:TYPE` of each column, from the first row (every statement here answers at least one).
fn shape(rows: &[PgRow]) -> String {
    match rows.first() {
        None => "no row".to_string(),
        Some(r) => r
            .columns()
            .iter()
            .map(|c| format!("{}:{}", c.name(), c.type_info().name()))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// What one side answers, reduced to `what → value` lines.
async fn answers(mut c: PgConnection) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for sql in [SETTINGS_SQL, ACTIVITY_SQL].iter().chain(EXTRA) {
        let rows = sqlx::query(sql).fetch_all(&mut c).await;
        let rows = match rows {
            Ok(r) => r,
            Err(e) => {
                out.insert(format!("{sql} → error {e}"));
                continue;
            }
        };
        out.insert(format!("{sql} → columns {}", shape(&rows)));
        if *sql == SETTINGS_SQL {
            let names: BTreeSet<String> = rows.iter().map(|r| r.get::<String, _>("name")).collect();
            out.insert(format!("{sql} → names {names:?}"));
        }
        if *sql == ACTIVITY_SQL {
            let own: Vec<&PgRow> = rows.iter().filter(|r| r.get::<bool, _>("own")).collect();
            out.insert(format!("{sql} → own rows {}", own.len()));
            if let Some(me) = own.first() {
                out.insert(format!(
                    "{sql} → own state {}",
                    me.get::<String, _>("state")
                ));
                out.insert(format!(
                    "{sql} → own backend_type {}",
                    me.get::<String, _>("backend_type")
                ));
                out.insert(format!(
                    "{sql} → own application_name {}",
                    me.get::<String, _>("application_name")
                ));
                let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                out.insert(format!(
                    "{sql} → own pid is pg_backend_pid() {}",
                    me.get::<i32, _>("pid") == pid
                ));
                out.insert(format!(
                    "{sql} → own query is the statement {}",
                    me.get::<String, _>("query") == ACTIVITY_SQL
                ));
            }
        }
        if sql.starts_with("SELECT pg_terminate_backend") || *sql == "SELECT 1" {
            let v: Vec<String> = rows
                .iter()
                .map(|r| {
                    r.try_get::<bool, _>(0)
                        .map(|b| b.to_string())
                        .or_else(|_| r.try_get::<i32, _>(0).map(|i| i.to_string()))
                        .unwrap()
                })
                .collect();
            out.insert(format!("{sql} → {v:?}"));
        }
    }
    c.close().await.unwrap();
    out
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn the_fake_answers_the_probes_statements_like_the_real_server() {
    let pg = Postgres::from_env(&PeerEnv::load().unwrap()).unwrap();
    let real = pg.connect("rb-diff").await.unwrap();
    let settings: Vec<(String, String)> = sqlx::query_as(SETTINGS_SQL)
        .fetch_all(&mut pg.connect("rb-diff-setup").await.unwrap())
        .await
        .unwrap();
    let mut builder = FakePostgres::builder();
    for (name, value) in &settings {
        builder = builder.setting(name, value);
    }
    let fake = builder.start().await.unwrap();
    let fake_conn = PgConnection::connect_with(
        &PgConnectOptions::new()
            .host("127.0.0.1")
            .port(fake.port())
            .username(&fake.user())
            .password(&fake.password())
            .database(&pg.db)
            .application_name("rb-diff"),
    )
    .await
    .unwrap();

    let real = answers(real).await;
    let fake = answers(fake_conn).await;
    let only_real: Vec<_> = real.difference(&fake).collect();
    let only_fake: Vec<_> = fake.difference(&real).collect();
    let diffs: BTreeSet<String> = only_real
        .iter()
        .map(|l| format!("real only: {l}"))
        .chain(only_fake.iter().map(|l| format!("fake only: {l}")))
        .collect();
    let known: BTreeSet<String> = KNOWN.iter().map(|s| s.to_string()).collect();
    let new: Vec<_> = diffs.difference(&known).collect();
    let gone: Vec<_> = known.difference(&diffs).collect();
    println!("{} lines compared", real.len());
    assert!(
        new.is_empty() && gone.is_empty(),
        "new differences: {new:#?}\nknown differences gone: {gone:#?}"
    );
    assert!(real.len() >= 12, "{real:#?}");
}
