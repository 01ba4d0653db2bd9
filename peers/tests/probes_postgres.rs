//! The postgres probe (sqlx adapter) against the real PostgreSQL: after opening idle and
//! idle-in-transaction sessions, its counts by state and by user equal `pg_stat_activity` read
//! directly with the server's own `psql`; the held sessions are listed in its facts, its own
//! session is not; the usable-slot arithmetic matches the server's settings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use rb_core::time::Clock;
use rb_core::{Observation, Probe, ProbeContext, Secret, Target};
use rb_peers::postgres::Postgres;
use rb_peers::PeerEnv;
use rb_probes::postgres::PgConnectionsProbe;
use rb_probes::sql::{SaturationConfig, SqlConnections, SqlEndpoint, SqlSessions, SqlTls};

fn by(obs: &Observation, metric: &str, label: &str) -> BTreeMap<String, i64> {
    obs.samples_named(metric)
        .map(|s| (s.labels[label].clone(), s.value as i64))
        .collect()
}

/// Ground truth with psql: client backends (psql's own excluded) by `key`.
async fn truth(pg: &Postgres, key: &str) -> BTreeMap<String, i64> {
    let sql = format!(
        "SELECT coalesce({key}::text, ''), count(*) FROM pg_stat_activity \
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() GROUP BY 1 ORDER BY 1"
    );
    pg.psql(&sql)
        .await
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, n) = l.rsplit_once('|').unwrap();
            (k.to_string(), n.trim().parse().unwrap())
        })
        .collect()
}

#[tokio::test]
#[ignore = "real-peer tier: run peers/run.sh"]
async fn probe_counts_equal_pg_stat_activity() {
    let pg = Postgres::from_env(&PeerEnv::load().unwrap()).unwrap();
    let app = format!("rb-probes-pg-{}", std::process::id());
    let held = pg.open_sessions(&app, 3, 2).await.unwrap();
    let probe = PgConnectionsProbe::connect(
        Target::new("postgres", "pg-peer"),
        SqlEndpoint::new(&pg.host, pg.port, &pg.user, Secret::new(&pg.password))
            .database(&pg.db)
            .tls(SqlTls::Disable)
            .application_name("rb-probe-peer"),
        SaturationConfig {
            idle_in_transaction_after: Duration::ZERO,
            ..SaturationConfig::default()
        },
    );

    // Sessions of other tools come and go (a psql backend exits asynchronously): retry until
    // the probe and the ground truth read the same still picture.
    let mut last = String::new();
    let mut matched = None;
    for _ in 0..10 {
        let (states, users) = (truth(&pg, "state").await, truth(&pg, "usename").await);
        let ctx = ProbeContext::with_timeout(Clock::system(), Duration::from_secs(10));
        let obs = probe.observe(&ctx).await.unwrap();
        let (p_states, p_users) = (
            by(&obs, "db_connections_by_state", "state"),
            by(&obs, "db_connections_by_user", "user"),
        );
        if p_states == states && p_users == users {
            matched = Some(obs);
            break;
        }
        last = format!("probe {p_states:?} {p_users:?}, pg_stat_activity {states:?} {users:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let obs = matched.unwrap_or_else(|| panic!("never equal: {last}"));
    assert!(obs.complete, "{:?}", obs.gaps);

    let apps = by(&obs, "db_connections_by_application", "application");
    assert_eq!(apps.get(&app), Some(&5), "{apps:?}");
    assert!(by(&obs, "db_connections_by_state", "state")["idle in transaction"] >= 2);

    let conns: SqlConnections = obs.facts.get().unwrap().unwrap();
    let reserved: i64 = pg
        .psql("SHOW superuser_reserved_connections")
        .await
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(conns.max_connections, i64::from(pg.max_connections));
    assert_eq!(
        conns.usable,
        i64::from(pg.max_connections) - reserved,
        "{conns:?}"
    );
    assert_eq!(conns.used, conns.by_state.values().sum::<i64>());

    let sessions: SqlSessions = obs.facts.get().unwrap().unwrap();
    let listed: Vec<i64> = sessions.idle_in_transaction.iter().map(|s| s.id).collect();
    for pid in &held.pids[3..] {
        assert!(listed.contains(&i64::from(*pid)), "{pid} not in {listed:?}");
    }
    assert!(!held.pids.contains(&(sessions.own_session as i32)));
    assert!(!listed.contains(&sessions.own_session));
    let own_seen = sessions
        .idle_in_transaction
        .iter()
        .chain(&sessions.long_running)
        .any(|s| s.application == "rb-probe-peer");
    assert!(!own_seen);
    // The held transactions ran `SELECT 1`: its literal is redacted.
    let held_tx = sessions
        .idle_in_transaction
        .iter()
        .find(|s| s.id == i64::from(held.pids[3]))
        .unwrap();
    assert_eq!(held_tx.query, "SELECT ?");
    held.close().await.unwrap();
}
