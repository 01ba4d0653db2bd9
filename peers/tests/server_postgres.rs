//! PostgreSQL, for real: held idle and idle-in-transaction sessions seen in `pg_stat_activity`
//! (through sqlx and through `psql`), and connection saturation at `max_connections`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may unwrap

use rb_peers::postgres::Postgres;
use rb_peers::record::{fixture_dir, recording};
use rb_peers::PeerEnv;
use serde_json::json;

fn pg() -> Postgres {
    Postgres::from_env(&PeerEnv::load().unwrap()).unwrap()
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn idle_and_idle_in_transaction_sessions_are_seen_in_pg_stat_activity() {
    let pg = pg();
    let app = format!("rb-peers-idle-{}", std::process::id());
    let held = pg.open_sessions(&app, 3, 2).await.unwrap();
    assert_eq!(held.pids.len(), 5);

    // Ground truth 1: pg_stat_activity over a separate sqlx session.
    let rows = pg.activity(&app).await.unwrap();
    let mut pids: Vec<i32> = rows.iter().map(|r| r.pid).collect();
    pids.sort_unstable();
    let mut held_pids = held.pids.clone();
    held_pids.sort_unstable();
    assert_eq!(pids, held_pids, "{rows:?}");
    assert_eq!(
        rows.iter().filter(|r| r.state == "idle").count(),
        3,
        "{rows:?}"
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r.state == "idle in transaction")
            .count(),
        2,
        "{rows:?}"
    );
    assert!(rows
        .iter()
        .all(|r| r.usename == pg.user && r.datname == pg.db));

    // Ground truth 2: the server's own psql.
    let counts = pg.count_by_state_psql(&app).await.unwrap();
    assert_eq!(counts.get("idle"), Some(&3), "{counts:?}");
    assert_eq!(counts.get("idle in transaction"), Some(&2), "{counts:?}");
    assert_eq!(counts.len(), 2, "{counts:?}");

    held.close().await.unwrap();
    // Closed sessions leave pg_stat_activity (the backend exits asynchronously: poll briefly).
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = pg.activity(&app).await.unwrap().len();
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0);
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn saturation_is_refused_with_sqlstate_53300() {
    let pg = pg();
    let app = format!("rb-peers-sat-{}", std::process::id());
    let sat = pg.saturate(&app).await.unwrap();
    // 3 slots are reserved for superusers (superuser_reserved_connections); others are in use by
    // nothing else of ours, so the non-superuser reaches max_connections - 3 at most.
    assert!(
        sat.held.len() <= pg.max_connections as usize - 3,
        "held {}",
        sat.held.len()
    );
    assert!(
        sat.held.len() >= pg.max_connections as usize - 10,
        "held only {}",
        sat.held.len()
    );
    assert_eq!(sat.sqlstate.as_deref(), Some("53300"), "{}", sat.refusal);
    let counts = pg.count_by_state_psql(&app).await;
    // psql itself may be refused while saturated: the refusal is the ground truth then.
    if let Ok(c) = counts {
        assert_eq!(c.values().sum::<i64>() as usize, sat.held.len(), "{c:?}");
    }
    let n = sat.held.len();
    for c in sat.held {
        sqlx::Connection::close(c).await.unwrap();
    }
    assert!(n > 0);
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn record_pg_stat_activity_columns() {
    let pg = pg();
    let cols = pg.activity_columns().await.unwrap();
    let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "pid",
        "usename",
        "application_name",
        "state",
        "backend_type",
        "xact_start",
        "state_change",
    ] {
        assert!(
            names.contains(&want),
            "pg_stat_activity has no {want}: {names:?}"
        );
    }
    if recording() {
        let dir = fixture_dir("postgres");
        std::fs::create_dir_all(&dir).unwrap();
        let doc = json!({
            "server_version": pg.server_version().await.unwrap(),
            "relation": "pg_catalog.pg_stat_activity",
            "columns": cols.iter().map(|(n, t)| json!({"name": n, "type": t})).collect::<Vec<_>>(),
        });
        std::fs::write(
            dir.join("pg_stat_activity_columns.json"),
            serde_json::to_string_pretty(&doc).unwrap() + "\n",
        )
        .unwrap();
    }
}
