//! MariaDB, for real: held idle and in-transaction sessions seen by `SHOW FULL PROCESSLIST`,
//! `INNODB_TRX` and `Threads_connected`, and connection saturation at `max_connections`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use rb_peers::mariadb::MariaDb;
use rb_peers::record::{fixture_dir, recording};
use rb_peers::PeerEnv;
use serde_json::json;

fn db() -> MariaDb {
    MariaDb::from_env(&PeerEnv::load().unwrap()).unwrap()
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn held_sessions_are_seen_in_processlist_innodb_trx_and_threads_connected() {
    let db = db();
    assert_eq!(
        db.max_connections_setting().await.unwrap(),
        u64::from(db.max_connections)
    );
    let before = db.threads_status().await.unwrap()["Threads_connected"];
    let held = db.open_sessions(4, 2).await.unwrap();

    let procs = db.processlist().await.unwrap();
    for id in held.ids() {
        let p = procs
            .iter()
            .find(|p| p.id == id)
            .unwrap_or_else(|| panic!("{id} not in {procs:?}"));
        assert_eq!(p.command, "Sleep", "{p:?}");
        assert_eq!(p.user, db.user);
        assert_eq!(p.db, db.db);
        assert!(p.host.starts_with("127.0.0.1:"), "{p:?}");
    }
    let sqlx_view = db.processlist_sqlx().await.unwrap();
    for id in held.ids() {
        assert!(
            sqlx_view.iter().any(|(i, c)| *i == id && c == "Sleep"),
            "{id}: {sqlx_view:?}"
        );
    }
    let trx = db.open_transaction_ids().await.unwrap();
    for id in &held.in_transaction_ids {
        assert!(trx.contains(id), "{id} has no open transaction: {trx:?}");
    }
    for id in &held.idle_ids {
        assert!(
            !trx.contains(id),
            "{id} should have no transaction: {trx:?}"
        );
    }
    // Threads_connected counts the held sessions (the observer client adds itself).
    let during = db.threads_status().await.unwrap()["Threads_connected"];
    assert!(during >= before + 6, "before {before}, during {during}");

    held.close().await.unwrap();
    let mut after = u64::MAX;
    for _ in 0..50 {
        after = db.threads_status().await.unwrap()["Threads_connected"];
        if after <= before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(after <= before, "before {before}, after {after}");
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn saturation_is_refused_with_too_many_connections() {
    let db = db();
    let sat = db.saturate().await.unwrap();
    assert!(
        sat.held.len() <= db.max_connections as usize,
        "held {}",
        sat.held.len()
    );
    assert!(
        sat.held.len() >= db.max_connections as usize - 5,
        "held only {}",
        sat.held.len()
    );
    assert!(
        sat.refusal.contains("Too many connections"),
        "{}",
        sat.refusal
    );
    assert_eq!(sat.code.as_deref(), Some("08004"), "{}", sat.refusal);
    for c in sat.held {
        sqlx::Connection::close(c).await.unwrap();
    }
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn record_processlist_columns() {
    let db = db();
    let cols = db.processlist_columns().await.unwrap();
    let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "ID", "USER", "HOST", "DB", "COMMAND", "TIME", "STATE", "INFO",
    ] {
        assert!(
            names.contains(&want),
            "PROCESSLIST has no {want}: {names:?}"
        );
    }
    let threads = db.threads_status().await.unwrap();
    for want in [
        "Threads_cached",
        "Threads_connected",
        "Threads_created",
        "Threads_running",
    ] {
        assert!(threads.contains_key(want), "{threads:?}");
    }
    if recording() {
        let dir = fixture_dir("mariadb");
        std::fs::create_dir_all(&dir).unwrap();
        let doc = json!({
            "server_version": db.server_version().await.unwrap(),
            "relation": "information_schema.PROCESSLIST",
            "columns": cols.iter().map(|(n, t)| json!({"name": n, "type": t})).collect::<Vec<_>>(),
            "show_global_status_threads": threads.keys().collect::<Vec<_>>(),
            "max_connections": db.max_connections_setting().await.unwrap(),
        });
        std::fs::write(
            dir.join("processlist_columns.json"),
            serde_json::to_string_pretty(&doc).unwrap() + "\n",
        )
        .unwrap();
    }
}
