//! Seed §4 **MySQL/PostgreSQL connection saturation**: `pg_stat_database_numbackends` or
//! `mysql_global_status_threads_connected` above 90 % of `max_connections`.
//!
//! * **Detect** — rb-probes' native connection probes (`pg_stat_activity` with `pg_settings`;
//!   the processlist with `@@max_connections` and `INNODB_TRX`) every probe interval:
//!   `db_connections_used_percent > 90` for the for-duration opens one incident per database
//!   (two playbooks: [`POSTGRES`], [`MYSQL`]). The probe's own session is never counted.
//! * **Diagnose** — the same probe's facts: connections by state, user, database and application,
//!   and the long-running and idle-in-transaction sessions with their (redacted) statements — the
//!   seed's `SHOW PROCESSLIST` / `SELECT * FROM pg_stat_activity`.
//! * **Mitigate** — a human task "reduce the application's pool size" (seed §4), and, where
//!   rb-actions' session termination is configured, shed the sessions idle in a transaction for
//!   more than five minutes (at most [`MAX_TERMINATED`] per incident; never the probe's, system,
//!   replication or superuser sessions).
//! * **Recover** — under 90 % for the stability window.
//! * **Escalate** — Infra (1 h SLA), then the Data Platform on-call.

use std::sync::Arc;
use std::time::Duration;

use rb_core::prelude::*;
use rb_core::symptom::metric;
use rb_probes::mysql::MySqlConnectionsProbe;
use rb_probes::postgres::PgConnectionsProbe;
use rb_probes::sql::{SaturationConfig, SqlEndpoint};

use crate::lakehouse::Systems;

/// The PostgreSQL playbook.
pub const POSTGRES: &str = "postgres-saturation";
/// The MySQL / MariaDB playbook.
pub const MYSQL: &str = "mysql-saturation";
/// The seed's threshold: percent of `max_connections`.
pub const THRESHOLD_PERCENT: f64 = 90.0;
/// The most sessions terminated per incident.
pub const MAX_TERMINATED: usize = 30;
/// A session idle in a transaction longer than this is shed.
pub const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(300);
/// The metric judged.
pub const USED_PERCENT: &str = "db_connections_used_percent";

fn config() -> SaturationConfig {
    SaturationConfig {
        idle_in_transaction_after: Duration::from_secs(60),
        ..SaturationConfig::default()
    }
}

/// The playbooks of the databases that have an endpoint.
pub fn playbooks(s: &Systems) -> Vec<Playbook> {
    let mut out = Vec::new();
    if let Some(ep) = &s.endpoints.postgres {
        let probe: Arc<dyn Probe> = Arc::new(PgConnectionsProbe::connect(
            s.postgres.clone(),
            ep.clone(),
            config(),
        ));
        out.push(playbook(
            s,
            POSTGRES,
            "PostgreSQL connection saturation",
            probe,
            ep,
        ));
    }
    if let Some(ep) = &s.endpoints.mysql {
        let probe: Arc<dyn Probe> = Arc::new(MySqlConnectionsProbe::connect(
            s.mysql.clone(),
            ep.clone(),
            config(),
        ));
        out.push(playbook(s, MYSQL, "MySQL connection saturation", probe, ep));
    }
    out
}

fn playbook(
    s: &Systems,
    id: &'static str,
    title: &str,
    probe: Arc<dyn Probe>,
    _endpoint: &SqlEndpoint,
) -> Playbook {
    let t = &s.timings;
    Playbook::new(id, title)
        .service(if id == POSTGRES {
            "payments-db"
        } else {
            "orders-db"
        })
        .detect(
            probe.clone(),
            Schedule::every(t.probe_every).deadline(t.probe_deadline),
            metric(USED_PERCENT)
                .above(THRESHOLD_PERCENT)
                .for_at_least(t.for_duration),
        )
        .diagnose(probe)
        .human_task(
            "reduce-pool",
            "Reduce the application's connection pool size and look for slow queries (seed §4)",
        )
        .stable_for(t.stable_for)
        .review_item("Which application leaked sessions idle in a transaction, and why? (seed §4)")
        .review_item("Does the pool size of every application fit max_connections together?")
        .review_item("Add resources or read replicas if the load persists (seed §4)")
        .escalate_to("Infra")
}

/// **Real:** the database fills to `percent` % (above the threshold) until the application's pool
/// shrinks; the world heals once the sessions idle in a transaction are gone (terminated) or the
/// human task to reduce the pool is done.
#[derive(Debug, Clone)]
pub struct Saturated {
    /// Which database.
    pub db: rb_testkit::lakehouse::Database,
    /// How full.
    pub percent: f64,
}

/// **Decoy:** the database at `percent` % (below the threshold) for a while.
#[derive(Debug, Clone)]
pub struct Busy {
    /// Which database.
    pub db: rb_testkit::lakehouse::Database,
    /// How full.
    pub percent: f64,
    /// How long.
    pub for_how_long: Duration,
}

fn playbook_of(db: rb_testkit::lakehouse::Database) -> &'static str {
    match db {
        rb_testkit::lakehouse::Database::Postgres => POSTGRES,
        _ => MYSQL,
    }
}

use crate::lakehouse::situations::{Expect, Scene, SceneError};
use rb_testkit::lakehouse::FakeLakehouse;

#[async_trait]
impl Scene for Saturated {
    fn name(&self) -> String {
        format!("{:?} at {} % of max_connections", self.db, self.percent)
    }

    fn expect(&self) -> Option<Expect> {
        Some(Expect {
            playbook: playbook_of(self.db),
            key: vec![],
            applied: vec![],
        })
    }

    async fn start(&self, lake: &FakeLakehouse) -> Result<(), SceneError> {
        lake.db_saturation(self.db, self.percent)
            .map_err(|e| SceneError::new(self.name(), e))
    }

    async fn react(
        &self,
        lake: &FakeLakehouse,
        engine: &Engine,
        _since_start: Duration,
    ) -> Result<bool, SceneError> {
        // A scripted DBA does the human task once asked: the pool shrinks.
        for id in engine.open_incidents().await {
            let Ok(inc) = engine.incident(&id).await else {
                continue;
            };
            if inc.record.playbook != playbook_of(self.db) {
                continue;
            }
            let asked = inc.timeline.iter().any(|e| {
                matches!(&e.event, rb_core::Event::TaskAssigned { task, .. } if task.contains("connection pool"))
            });
            if asked {
                lake.heal_db_saturation(self.db)
                    .map_err(|e| SceneError::new(self.name(), e))?;
                engine
                    .complete_task(&id, "reduce-pool", "dba (scripted)")
                    .await
                    .map_err(|e| SceneError::new(self.name(), e))?;
                return Ok(true);
            }
        }
        Ok(lake.db_client_sessions(self.db) < 20)
    }
}

#[async_trait]
impl Scene for Busy {
    fn name(&self) -> String {
        format!(
            "decoy: {:?} busy at {} % of max_connections",
            self.db, self.percent
        )
    }

    fn expect(&self) -> Option<Expect> {
        None
    }

    async fn start(&self, lake: &FakeLakehouse) -> Result<(), SceneError> {
        lake.db_saturation(self.db, self.percent)
            .map_err(|e| SceneError::new(self.name(), e))
    }

    async fn react(
        &self,
        lake: &FakeLakehouse,
        _engine: &Engine,
        since_start: Duration,
    ) -> Result<bool, SceneError> {
        if since_start < self.for_how_long {
            return Ok(false);
        }
        lake.heal_db_saturation(self.db)
            .map_err(|e| SceneError::new(self.name(), e))?;
        Ok(true)
    }
}
