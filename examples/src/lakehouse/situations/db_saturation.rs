//! Seed §4 **MySQL/PostgreSQL connection saturation**: `pg_stat_database_numbackends` or
//! `mysql_global_status_threads_connected` above 90 % of `max_connections`.
//!
//! * **Detect** — rb-probes' native connection probes (`pg_stat_activity` with `pg_settings`;
//!   the processlist with `@@max_connections` and `INNODB_TRX`) every probe interval: more than
//!   90 % of the *usable* connections (`max_connections` less the slots PostgreSQL reserves for
//!   superusers, which an application can never take) for the for-duration opens one incident
//!   per database (two playbooks: [`POSTGRES`], [`MYSQL`]). The probe's own session is never
//!   counted.
//! * **Diagnose** — the same probe's facts: connections by state, user, database and application,
//!   and the long-running and idle-in-transaction sessions with their (redacted) statements — the
//!   seed's `SHOW PROCESSLIST` / `SELECT * FROM pg_stat_activity`.
//! * **Mitigate** — first shed the application's sessions idle in a transaction for more than a
//!   third of a stage (5 minutes with the seed's timings) with rb-actions (`pg_terminate_backend`;
//!   `KILL CONNECTION` on MySQL), at most [`MAX_TERMINATED`] per incident, never the probe's,
//!   system, replication or superuser sessions; then, if the database is still saturated a stage
//!   later, a human task "reduce the application's pool size" (seed §4).
//! * **Recover** — under 90 % for the stability window.
//! * **Escalate** — Infra (1 h SLA), then the Data Platform on-call.

use std::sync::Arc;
use std::time::Duration;

use rb_core::prelude::*;
use rb_core::symptom::metric;
use rb_probes::mysql::MySqlConnectionsProbe;
use rb_probes::postgres::PgConnectionsProbe;
use rb_probes::sql::SaturationConfig;

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
/// The metric judged: used client connections in percent of the usable ones.
pub const USED_PERCENT: &str = "db_connections_used_percent_of_usable";
/// The id of the session-shedding step.
pub const SHED_STEP: &str = "shed-idle-transactions";
/// The id of the human task.
pub const POOL_STEP: &str = "reduce-pool";

/// Sessions idle in a transaction at least this long are shed: a third of a stage.
fn idle_after(s: &Systems) -> Duration {
    s.timings.stage / 3
}

fn config() -> SaturationConfig {
    SaturationConfig {
        idle_in_transaction_after: Duration::from_secs(60),
        ..SaturationConfig::default()
    }
}

/// The playbooks of the databases that have an endpoint, shedding the sessions of the
/// lakehouse's application role (`orders_app`).
pub fn playbooks(s: &Systems) -> Vec<Playbook> {
    playbooks_shedding(s, &[rb_testkit::lakehouse::DB_APP_USER])
}

/// The playbooks of the databases that have an endpoint; the shedding step only touches sessions
/// of `app_users`.
pub fn playbooks_shedding(s: &Systems, app_users: &[&str]) -> Vec<Playbook> {
    let mut out = Vec::new();
    if let Some(ep) = &s.endpoints.postgres {
        let probe: Arc<dyn Probe> = Arc::new(PgConnectionsProbe::connect(
            s.postgres.clone(),
            ep.clone(),
            config(),
        ));
        let mut filter = rb_actions::postgres::SessionFilter::idle_in_transaction(idle_after(s))
            .users(app_users.iter().copied());
        if let Some(db) = &ep.database {
            filter = filter.databases([db.clone()]);
        }
        let shed: Arc<dyn Remediation> = Arc::new(
            rb_actions::postgres::TerminateSessions::connect(
                s.postgres.clone(),
                ep.clone(),
                filter,
            )
            .max_per_apply(MAX_TERMINATED)
            .verify_within(s.timings.verify_within),
        );
        out.push(playbook(
            s,
            POSTGRES,
            "PostgreSQL connection saturation",
            probe,
            shed,
        ));
    }
    if let Some(ep) = &s.endpoints.mysql {
        let probe: Arc<dyn Probe> = Arc::new(MySqlConnectionsProbe::connect(
            s.mysql.clone(),
            ep.clone(),
            config(),
        ));
        let filter = rb_actions::mysql::SessionFilter::idle_in_transaction(idle_after(s))
            .users(app_users.iter().copied());
        let shed: Arc<dyn Remediation> = Arc::new(
            rb_actions::mysql::KillSessions::connect(s.mysql.clone(), ep.clone(), filter)
                .max_per_apply(MAX_TERMINATED)
                .verify_within(s.timings.verify_within),
        );
        out.push(playbook(
            s,
            MYSQL,
            "MySQL connection saturation",
            probe,
            shed,
        ));
    }
    out
}

fn playbook(
    s: &Systems,
    id: &'static str,
    title: &str,
    probe: Arc<dyn Probe>,
    shed: Arc<dyn Remediation>,
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
        .mitigate_as(SHED_STEP, shed)
        .human_task(
            POOL_STEP,
            "Reduce the application's connection pool size and look for slow queries (seed §4)",
        )
        .unless_recovered_within(t.stage)
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
            applied: vec![SHED_STEP],
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
        // Over once the database is back under the threshold (the shed sessions are gone).
        let max = match self.db {
            rb_testkit::lakehouse::Database::Postgres => 97.0,
            _ => 151.0,
        };
        Ok((lake.db_client_sessions(self.db) as f64) < max * THRESHOLD_PERCENT / 100.0)
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
