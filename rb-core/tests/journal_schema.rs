//! The SQLite journal's schema is versioned and migrates forward: a new file gets every embedded
//! migration, a file written before schemas were versioned is adopted, a file from a newer release is
//! refused and left untouched, and every row's `kind` names its event.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use common::*;
use rb_core::journal::{
    reader, sqlite_schema_version, Entry, Event, Journal, MemoryJournal, SqliteJournal,
};
use rb_core::policy::{AutoApprove, SafetyPolicy};
use rb_core::prelude::*;
use rb_core::ErrorKind;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection, Row};

async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnectOptions::from_str("sqlite://")
        .unwrap()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .connect()
        .await
        .unwrap()
}

async fn versions(path: &Path) -> Vec<i64> {
    let mut c = raw(path).await;
    let v = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    v
}

async fn kinds(path: &Path) -> Vec<(String, String)> {
    let mut c = raw(path).await;
    let rows = sqlx::query("SELECT kind, body FROM rb_journal ORDER BY seq")
        .fetch_all(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    rows.iter()
        .map(|r| (r.get::<String, _>("kind"), r.get::<String, _>("body")))
        .collect()
}

fn tag(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["event"].as_str().unwrap().to_string()
}

/// Entries of a real incident: an engine opens one, applies a step and resolves it.
async fn engine_entries() -> Vec<Entry> {
    let journal = Arc::new(MemoryJournal::new());
    let g = Gauge::new(kafka(), "records_lag_max", 12_000.0);
    let rem = Recorder::new("flink.rescale", Risk::Safe, vec![kafka()]);
    let engine = Engine::builder(Runbook::new("t").playbook(backlog(&g, vec![rem.arc()])))
        .journal(journal.clone())
        .clock(clock())
        .approver(Arc::new(AutoApprove))
        .policy(SafetyPolicy {
            cooldown: secs(0),
            ..SafetyPolicy::default()
        })
        .build()
        .await
        .unwrap();
    run(&engine, mins(3), secs(30)).await;
    g.set(0.0);
    run(&engine, mins(7), secs(30)).await;
    assert!(
        engine.open_incidents().await.is_empty(),
        "the incident resolved"
    );
    // the incident's own entries (detection state is journaled under a key of its own)
    journal
        .all()
        .into_iter()
        .filter(|e| e.incident != rb_core::journal::DETECTION)
        .collect()
}

/// Write `entries` the way rb wrote journals before schemas were versioned: the same statements, no
/// migrations table, `kind` only `opened`, `closed` or `event`.
async fn write_unversioned(path: &Path, entries: &[Entry]) {
    let mut c = raw(path).await;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS rb_journal (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            incident TEXT NOT NULL,
            at_ms INTEGER NOT NULL,
            kind TEXT NOT NULL,
            body TEXT NOT NULL
        )",
    )
    .execute(&mut c)
    .await
    .unwrap();
    sqlx::query("CREATE INDEX IF NOT EXISTS rb_journal_incident ON rb_journal (incident, seq)")
        .execute(&mut c)
        .await
        .unwrap();
    for e in entries {
        let kind = match e.event {
            Event::Opened { .. } => "opened",
            Event::Closed { .. } => "closed",
            _ => "event",
        };
        sqlx::query("INSERT INTO rb_journal (incident, at_ms, kind, body) VALUES (?, ?, ?, ?)")
            .bind(&e.incident)
            .bind(e.at.as_millis() as i64)
            .bind(kind)
            .bind(serde_json::to_string(&e.event).unwrap())
            .execute(&mut c)
            .await
            .unwrap();
    }
    c.close().await.unwrap();
}

#[tokio::test]
async fn a_new_journal_gets_every_embedded_migration_and_reopens_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = SqliteJournal::open(&path).await.unwrap();
    j.append("INC-1", Timestamp(5), &Event::Note { text: "hi".into() })
        .await
        .unwrap();
    j.close().await;
    assert!(sqlite_schema_version() >= 2);
    let all: Vec<i64> = (1..=sqlite_schema_version()).collect();
    assert_eq!(versions(&path).await, all);
    // reopening runs nothing again and keeps the data
    let j = SqliteJournal::open(&path).await.unwrap();
    assert_eq!(j.entries("INC-1").await.unwrap().len(), 1);
    j.close().await;
    assert_eq!(versions(&path).await, all);
}

#[tokio::test(start_paused = true)]
async fn a_journal_written_before_versioned_schemas_is_adopted_and_migrated() {
    let entries = engine_entries().await;
    let id = entries[0].incident.clone();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    write_unversioned(&path, &entries).await;

    let j = SqliteJournal::open(&path).await.unwrap();
    // everything reads back as it was written, in order
    let back = j.entries(&id).await.unwrap();
    assert_eq!(
        back.iter().map(|e| &e.event).collect::<Vec<_>>(),
        entries.iter().map(|e| &e.event).collect::<Vec<_>>()
    );
    assert_eq!(
        back.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=entries.len() as u64).collect::<Vec<_>>()
    );
    assert_eq!(j.incidents().await.unwrap(), vec![id.clone()]);
    assert!(j.open_incidents().await.unwrap().is_empty());
    // and the journal takes new writes after the old rows
    let seq = j
        .append(
            &id,
            Timestamp(1),
            &Event::Note {
                text: "after".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(seq, entries.len() as u64 + 1);
    j.close().await;

    let all: Vec<i64> = (1..=sqlite_schema_version()).collect();
    assert_eq!(versions(&path).await, all, "adopted as 1, migrated forward");
    // migration 2 gave the old rows their event kinds
    for (kind, body) in kinds(&path).await {
        assert_eq!(kind, tag(&body));
    }
}

#[tokio::test]
async fn every_row_is_kinded_by_its_event_and_the_kind_index_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = SqliteJournal::open(&path).await.unwrap();
    let events = [
        Event::Note { text: "n".into() },
        Event::Started {
            step: 0,
            action: "flink.rescale".into(),
            attempt: 1,
            step_id: "rescale".into(),
            holder: None,
            token: None,
        },
        Event::Acknowledged { by: "ana".into() },
        Event::Closed {
            resolution: rb_core::Resolution::Recovered,
        },
    ];
    for e in &events {
        j.append("INC-1", Timestamp(1), e).await.unwrap();
    }
    j.close().await;
    let k: Vec<String> = kinds(&path).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(k, vec!["note", "started", "acknowledged", "closed"]);

    let mut c = raw(&path).await;
    let plan: Vec<String> = sqlx::query(
        "EXPLAIN QUERY PLAN SELECT incident FROM rb_journal WHERE kind = 'opened' ORDER BY seq",
    )
    .fetch_all(&mut c)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>("detail"))
    .collect();
    assert!(
        plan.iter().any(|d| d.contains("rb_journal_kind")),
        "the incident list reads the kind index: {plan:?}"
    );
    c.close().await.unwrap();
}

#[tokio::test]
async fn a_journal_from_a_newer_release_is_refused_naming_both_versions_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = SqliteJournal::open(&path).await.unwrap();
    j.append("INC-1", Timestamp(5), &Event::Note { text: "hi".into() })
        .await
        .unwrap();
    j.close().await;
    let future = sqlite_schema_version() + 7;
    let mut c = raw(&path).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (?, 'from the future', TRUE, x'00', 0)",
    )
    .bind(future)
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();
    let before = std::fs::read(&path).unwrap();

    let e = SqliteJournal::open(&path).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    let msg = e.to_string() + &e.message;
    assert!(msg.contains(&future.to_string()), "{msg}");
    assert!(msg.contains(&sqlite_schema_version().to_string()), "{msg}");
    assert!(msg.contains("newer"), "{msg}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file is not rewritten"
    );
    assert!(
        !dir.path().join("j.db-wal").exists()
            || std::fs::metadata(dir.path().join("j.db-wal"))
                .unwrap()
                .len()
                == 0,
        "nothing waits in the write-ahead log either"
    );
    // still refused the second time (nothing was marked), and by the reader too
    assert!(SqliteJournal::open(&path).await.is_err());
    let e = reader::open_sqlite(&path).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message.contains(&future.to_string()), "{}", e.message);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[tokio::test]
async fn an_unversioned_table_of_another_shape_is_not_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let mut c = raw(&path).await;
    sqlx::query("CREATE TABLE rb_journal (seq INTEGER PRIMARY KEY, what TEXT)")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let e = SqliteJournal::open(&path).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    assert!(e.message.contains("unexpected columns"), "{}", e.message);
}

#[tokio::test(start_paused = true)]
async fn the_reader_reads_an_unversioned_journal_without_migrating_it() {
    let entries = engine_entries().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    write_unversioned(&path, &entries).await;
    let r = reader::open_sqlite(&path).await.unwrap();
    let list = reader::list(&r).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, entries[0].incident);
    assert_eq!(list[0].events, entries.len());
    r.close().await;
    let mut c = raw(&path).await;
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = '_sqlx_migrations'")
            .fetch_one(&mut c)
            .await
            .unwrap();
    c.close().await.unwrap();
    assert_eq!(n, 0, "reading does not migrate");
}
