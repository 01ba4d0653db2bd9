//! The mysql probe (sqlx adapter) against the real MariaDB: after opening idle sessions and
//! sessions idle inside an open transaction, its counts by state and by user equal
//! `SHOW FULL PROCESSLIST` and `information_schema.INNODB_TRX` read directly with the server's own
//! `mariadb` client; `Threads_connected` agrees; the sessions in a transaction are listed in its
//! facts, its own connection is not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use rb_core::time::Clock;
use rb_core::{Observation, Probe, ProbeContext, Secret, Target};
use rb_peers::mariadb::MariaDb;
use rb_peers::PeerEnv;
use rb_probes::mysql::MySqlConnectionsProbe;
use rb_probes::sql::{SaturationConfig, SqlConnections, SqlEndpoint, SqlSessions, SqlTls};

fn by(obs: &Observation, metric: &str, label: &str) -> BTreeMap<String, i64> {
    obs.samples_named(metric)
        .map(|s| (s.labels[label].clone(), s.value as i64))
        .collect()
}

/// Ground truth with the `mariadb` client: client sessions (its own and background threads
/// excluded) by state and by user, as the runbook's `SHOW PROCESSLIST` + `INNODB_TRX` tell them.
async fn truth(db: &MariaDb) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
    let trx = db.open_transaction_ids().await.unwrap();
    let mut states = BTreeMap::new();
    let mut users = BTreeMap::new();
    for p in db.processlist().await.unwrap() {
        if p.info == "SHOW FULL PROCESSLIST"
            || p.command == "Daemon"
            || p.user == "system user"
            || p.user == "event_scheduler"
        {
            continue;
        }
        let state = match p.command.as_str() {
            "Sleep" if trx.contains(&p.id) => "idle in transaction".to_string(),
            "Sleep" => "idle".to_string(),
            "Query" | "Execute" => "active".to_string(),
            other => other.to_ascii_lowercase(),
        };
        *states.entry(state).or_insert(0) += 1;
        *users.entry(p.user).or_insert(0) += 1;
    }
    (states, users)
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn probe_counts_equal_show_processlist() {
    let db = MariaDb::from_env(&PeerEnv::load().unwrap()).unwrap();
    let held = db.open_sessions(3, 2).await.unwrap();
    // INNODB_TRX ages are whole seconds (TIMESTAMPDIFF): let the transactions be 1 s old, so that
    // they are over the 0 s threshold.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let probe = MySqlConnectionsProbe::connect(
        Target::new("mysql", "mariadb-peer"),
        SqlEndpoint::new(&db.host, db.port, &db.user, Secret::new(&db.password))
            .database(&db.db)
            .tls(SqlTls::Disable),
        SaturationConfig {
            idle_in_transaction_after: Duration::ZERO,
            ..SaturationConfig::default()
        },
    );
    let mut last = String::new();
    let mut matched = None;
    for _ in 0..10 {
        let (states, users) = truth(&db).await;
        let threads = db.threads_status().await.unwrap();
        let ctx = ProbeContext::with_timeout(Clock::system(), Duration::from_secs(10));
        let obs = probe.observe(&ctx).await.unwrap();
        let (p_states, p_users) = (
            by(&obs, "db_connections_by_state", "state"),
            by(&obs, "db_connections_by_user", "user"),
        );
        let p_connected = obs
            .samples_named("mysql_global_status_threads_connected")
            .next()
            .unwrap()
            .value as u64;
        if p_states == states
            && p_users == users
            && Some(&p_connected) == threads.get("Threads_connected")
        {
            matched = Some(obs);
            break;
        }
        last = format!(
            "probe {p_states:?} {p_users:?} {p_connected}, processlist {states:?} {users:?} {threads:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let obs = matched.unwrap_or_else(|| panic!("never equal: {last}"));
    assert!(obs.complete, "{:?}", obs.gaps);
    let states = by(&obs, "db_connections_by_state", "state");
    assert!(
        states["idle in transaction"] >= 2 && states["idle"] >= 3,
        "{states:?}"
    );

    let conns: SqlConnections = obs.facts.get().unwrap().unwrap();
    assert_eq!(conns.max_connections, i64::from(db.max_connections));
    assert_eq!(conns.usable, i64::from(db.max_connections));
    assert!(
        conns.server_version.contains("MariaDB"),
        "{}",
        conns.server_version
    );

    let sessions: SqlSessions = obs.facts.get().unwrap().unwrap();
    let listed: Vec<i64> = sessions.idle_in_transaction.iter().map(|s| s.id).collect();
    for id in &held.in_transaction_ids {
        assert!(listed.contains(&(*id as i64)), "{id} not in {listed:?}");
    }
    for id in &held.idle_ids {
        assert!(!listed.contains(&(*id as i64)));
    }
    assert!(!held.ids().contains(&(sessions.own_session as u64)));
    assert!(!listed.contains(&sessions.own_session));
    held.close().await.unwrap();
}
