//! PostgreSQL connection saturation, long-running statements and idle-in-transaction sessions —
//! the runbook's "MySQL/PostgreSQL connection saturation" with `pg_stat_activity`.
//!
//! [`PgConnectionsProbe`] (id `postgres.connections`) opens one session per observation, reads
//! [`SETTINGS_SQL`] and [`ACTIVITY_SQL`] (two prepared statements), closes it, and emits the
//! metrics and facts described in [`crate::sql`]:
//!
//! | emitted | what |
//! | --- | --- |
//! | `db_connections_used` | client backends (`backend_type = 'client backend'`), the probe's own (`pid = pg_backend_pid()`) excluded; background workers and WAL senders are not counted (they have their own slots) |
//! | `db_connections_max`, `db_connections_usable` | `max_connections`; `max_connections − superuser_reserved_connections − reserved_connections` (the last from PostgreSQL 16, 0 before) |
//! | `db_connections_used_percent`, `db_connections_used_percent_of_usable` | raw and usable-based saturation, percent |
//! | `db_connections_by_{state,user,database,application}` | breakdowns (top-k + `(other)`) |
//! | `db_sessions_long_running`, `db_sessions_longest_query_seconds` | `state = 'active'` and `now() − query_start` over the threshold |
//! | `db_sessions_idle_in_transaction`, `db_sessions_idle_in_transaction_max_seconds` | `state` `idle in transaction` (or `… (aborted)`) and `now() − xact_start` over the threshold |
//! | fact `sql.connections` ([`crate::sql::SqlConnections`]) | the numbers and breakdowns |
//! | fact `sql.sessions` ([`crate::sql::SqlSessions`]) | pids, users, databases, applications, states, ages and redacted statements of the long-running and idle-in-transaction sessions (top-k, oldest first) |
//!
//! **Least privilege.** Any role can read `pg_settings` and `pg_stat_activity`, but without
//! `pg_read_all_stats` (or `pg_monitor`, which includes it) the `query`, `state` and timestamps of
//! *other* roles' sessions are NULL — the probe would see their connections but not what they do:
//! `GRANT pg_read_all_stats TO rb_probe;` (nothing else; the probe never writes).
//!
//! The logic is generic over [`PgSource`]; [`SqlxPgSource`] (sqlx, rustls) is the real one.

#[cfg(feature = "postgres")]
mod sqlx_source;
#[cfg(feature = "postgres")]
pub use sqlx_source::SqlxPgSource;

use std::fmt::Debug;

use std::panic::AssertUnwindSafe;

use async_trait::async_trait;
use futures::FutureExt;
use rb_core::{ErrorKind, Observation, Probe, ProbeContext, ProbeError, Target};

use crate::common::ProbeSite;
use crate::sql::{summarize, Dialect, Limits, SaturationConfig, Session, SourceError};

/// The settings statement the probe sends (a fake must answer exactly this).
pub const SETTINGS_SQL: &str = "SELECT name, setting FROM pg_settings WHERE name IN \
('max_connections', 'superuser_reserved_connections', 'reserved_connections', 'server_version_num')";

/// The `pg_stat_activity` statement the probe sends. Ages are seconds as `float8` (NULL when the
/// timestamp is NULL); `own` marks the probe's session.
pub const ACTIVITY_SQL: &str = "SELECT pid, coalesce(usename::text, '') AS usename, \
coalesce(datname::text, '') AS datname, coalesce(application_name, '') AS application_name, \
coalesce(host(client_addr), '') AS client_addr, coalesce(state, '') AS state, \
coalesce(backend_type, '') AS backend_type, \
extract(epoch FROM (now() - xact_start))::float8 AS xact_age_s, \
extract(epoch FROM (now() - query_start))::float8 AS query_age_s, \
extract(epoch FROM (now() - state_change))::float8 AS state_age_s, \
coalesce(query, '') AS query, pid = pg_backend_pid() AS own \
FROM pg_stat_activity";

/// One row of [`ACTIVITY_SQL`].
#[derive(Debug, Clone, PartialEq)]
pub struct PgActivityRow {
    /// Backend pid.
    pub pid: i32,
    /// Role (empty when NULL).
    pub usename: String,
    /// Database (empty when NULL).
    pub datname: String,
    /// `application_name`.
    pub application_name: String,
    /// Client address (empty when NULL).
    pub client_addr: String,
    /// State (empty when NULL — background processes, or another role's session without
    /// `pg_read_all_stats`).
    pub state: String,
    /// `client backend`, `autovacuum worker`, …
    pub backend_type: String,
    /// Seconds since the transaction started.
    pub xact_age_s: Option<f64>,
    /// Seconds since the current / last statement started.
    pub query_age_s: Option<f64>,
    /// Seconds since the state changed.
    pub state_age_s: Option<f64>,
    /// Statement text (as the server shows it; the probe redacts it).
    pub query: String,
    /// Whether this is the probe's own session.
    pub own: bool,
}

/// What one observation reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PgSnapshot {
    /// `(name, setting)` rows of [`SETTINGS_SQL`].
    pub settings: Vec<(String, String)>,
    /// Rows of [`ACTIVITY_SQL`].
    pub activity: Vec<PgActivityRow>,
}

/// Reads a [`PgSnapshot`] from a server. Implementations: [`SqlxPgSource`]; tests may script one.
#[async_trait]
pub trait PgSource: Send + Sync + Debug {
    /// Where it reads from, for errors (`postgres://user@host:port/db`, no password).
    fn endpoint(&self) -> String;

    /// Read the settings and the sessions.
    async fn snapshot(&self) -> Result<PgSnapshot, SourceError>;
}

/// Connection saturation of one PostgreSQL server (see the [module docs](self)).
#[derive(Debug)]
pub struct PgConnectionsProbe<S> {
    target: Target,
    source: S,
    config: SaturationConfig,
}

impl<S: PgSource> PgConnectionsProbe<S> {
    /// A probe of `target` reading through `source`.
    pub fn new(target: Target, source: S, config: SaturationConfig) -> Self {
        Self {
            target,
            source,
            config,
        }
    }
}

#[cfg(feature = "postgres")]
impl PgConnectionsProbe<SqlxPgSource> {
    /// A probe of `target` reading through sqlx from `endpoint`.
    pub fn connect(
        target: Target,
        endpoint: crate::sql::SqlEndpoint,
        config: SaturationConfig,
    ) -> Self {
        Self::new(target, SqlxPgSource::new(endpoint), config)
    }
}

fn setting(settings: &[(String, String)], name: &str) -> Option<String> {
    settings
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// Interpret a snapshot (pure: the probe's logic, reusable without a driver).
pub fn observe_snapshot(
    site: &ProbeSite<'_>,
    snap: &PgSnapshot,
    config: &SaturationConfig,
    obs: &mut Observation,
) -> Result<(), ProbeError> {
    let int = |name: &str, required: bool| -> Result<Option<i64>, ProbeError> {
        match setting(&snap.settings, name) {
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if n >= 0 => Ok(Some(n)),
                _ => Err(site.error(
                    ErrorKind::BadResponse,
                    format!("pg_settings: {name} is not a non-negative integer: {v:?}"),
                )),
            },
            None if required => Err(site.error(
                ErrorKind::BadResponse,
                format!("pg_settings has no row for {name}"),
            )),
            None => Ok(None),
        }
    };
    let max = int("max_connections", true)?.unwrap_or(0);
    let superuser = int("superuser_reserved_connections", true)?.unwrap_or(0);
    let version = int("server_version_num", true)?.unwrap_or(0);
    let reserved = match int("reserved_connections", false)? {
        Some(r) => r,
        None if version >= 160_000 => {
            return Err(site.error(
                ErrorKind::BadResponse,
                format!("pg_settings has no reserved_connections although server_version_num is {version} (≥ 160000)"),
            ))
        }
        None => 0,
    };
    let own: Vec<&PgActivityRow> = snap.activity.iter().filter(|r| r.own).collect();
    let own_pid =
        match own.as_slice() {
            [one] => one.pid,
            [] => return Err(site.error(
                ErrorKind::BadResponse,
                "pg_stat_activity does not show the probe's own session (pid = pg_backend_pid())",
            )),
            _ => {
                return Err(site.error(
                    ErrorKind::BadResponse,
                    format!(
                        "pg_stat_activity marks {} sessions as the probe's own",
                        own.len()
                    ),
                ))
            }
        };
    let sessions: Vec<Session> = snap
        .activity
        .iter()
        .filter(|r| !r.own && r.backend_type == "client backend")
        .map(|r| Session {
            id: i64::from(r.pid),
            user: r.usename.clone(),
            database: r.datname.clone(),
            application: r.application_name.clone(),
            state: if r.state.is_empty() {
                "unknown".to_string()
            } else {
                r.state.clone()
            },
            query_age_s: r.query_age_s,
            xact_age_s: r.xact_age_s,
            query: r.query.clone(),
        })
        .collect();
    let hidden = sessions.iter().filter(|s| s.state == "unknown").count();
    if hidden > 0 {
        obs.mark_incomplete(format!(
            "{hidden} sessions show no state: the probe's role lacks pg_read_all_stats (or pg_monitor)"
        ));
    }
    let limits = Limits {
        engine: "postgres",
        server_version: format!("{}.{}", version / 10_000, version % 10_000),
        max_connections: max,
        reserved: superuser.saturating_add(reserved),
        used_override: None,
        own_session: i64::from(own_pid),
        dialect: Dialect::Postgres,
    };
    summarize(obs, &limits, &sessions, config);
    obs.push_sample(
        "pg_settings_superuser_reserved_connections",
        rb_core::labels(&[]),
        superuser as f64,
    );
    obs.push_sample(
        "pg_settings_reserved_connections",
        rb_core::labels(&[]),
        reserved as f64,
    );
    Ok(())
}

#[async_trait]
impl<S: PgSource> Probe for PgConnectionsProbe<S> {
    fn id(&self) -> &str {
        "postgres.connections"
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let endpoint = self.source.endpoint();
        let site = ProbeSite {
            probe: self.id(),
            target: &self.target.name,
            endpoint: &endpoint,
        };
        let snap = site
            .within(ctx, async {
                // sqlx panics on some malformed answers (a length past the end of a packet): a
                // broken server is a bad response, not a crash of the engine's task.
                match AssertUnwindSafe(self.source.snapshot())
                    .catch_unwind()
                    .await
                {
                    Ok(Ok(snap)) => Ok(snap),
                    Ok(Err(e)) => Err(match e.source {
                        Some(src) => site.error(e.kind, e.message).with_source(src),
                        None => site.error(e.kind, e.message),
                    }),
                    Err(_) => Err(site.error(
                        ErrorKind::BadResponse,
                        "the driver failed on the server's answer (it panicked decoding it)",
                    )),
                }
            })
            .await?;
        let mut obs = Observation::new(self.id(), &self.target.name, ctx.now());
        observe_snapshot(&site, &snap, &self.config, &mut obs)?;
        Ok(obs)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;
    use rb_core::time::Clock;

    const SITE: ProbeSite<'static> = ProbeSite {
        probe: "postgres.connections",
        target: "pg",
        endpoint: "postgres://rb@h:5432/db",
    };

    fn snap(settings: &[(&str, &str)]) -> PgSnapshot {
        PgSnapshot {
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            activity: vec![PgActivityRow {
                pid: 1,
                usename: "rb".into(),
                datname: "db".into(),
                application_name: "rb-probe".into(),
                client_addr: String::new(),
                state: "active".into(),
                backend_type: "client backend".into(),
                xact_age_s: Some(0.0),
                query_age_s: Some(0.0),
                state_age_s: Some(0.0),
                query: String::new(),
                own: true,
            }],
        }
    }

    fn run(s: &PgSnapshot) -> Result<Observation, ProbeError> {
        let mut obs = Observation::new("postgres.connections", "pg", Clock::system().now());
        observe_snapshot(&SITE, s, &SaturationConfig::default(), &mut obs).map(|_| obs)
    }

    #[test]
    fn errors_name_the_setting_and_the_value() {
        let e = run(&snap(&[
            ("max_connections", "lots"),
            ("superuser_reserved_connections", "3"),
            ("server_version_num", "150000"),
        ]))
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadResponse);
        assert!(
            e.message.contains("max_connections") && e.message.contains("lots"),
            "{e}"
        );
        let e = run(&snap(&[
            ("max_connections", "10"),
            ("superuser_reserved_connections", "3"),
            ("server_version_num", "160000"),
        ]))
        .unwrap_err();
        assert!(e.message.contains("reserved_connections"), "{e}");
        let mut s = snap(&[
            ("max_connections", "10"),
            ("superuser_reserved_connections", "3"),
            ("server_version_num", "150000"),
        ]);
        s.activity[0].own = false;
        assert!(run(&s).unwrap_err().message.contains("own session"));
    }

    proptest! {
        #[test]
        fn arbitrary_settings_never_panic_and_errors_name_the_setting(
            max in ".{0,12}", su in ".{0,12}", res in ".{0,12}", ver in ".{0,12}",
        ) {
            let s = snap(&[
                ("max_connections", &max),
                ("superuser_reserved_connections", &su),
                ("reserved_connections", &res),
                ("server_version_num", &ver),
            ]);
            if let Err(e) = run(&s) {
                prop_assert_eq!(e.kind, ErrorKind::BadResponse);
                prop_assert!(e.message.contains("pg_settings"), "{}", e);
            }
        }

        #[test]
        fn mutated_numbers_never_panic(max in any::<i64>(), su in any::<i64>(), res in any::<i64>()) {
            let (m, s, r) = (max.to_string(), su.to_string(), res.to_string());
            let snap = snap(&[
                ("max_connections", &m),
                ("superuser_reserved_connections", &s),
                ("reserved_connections", &r),
                ("server_version_num", "160004"),
            ]);
            if let Ok(obs) = run(&snap) {
                // unknown is never healthy: no usable slot means no usable-based percentage
                if max.checked_sub(su).and_then(|v| v.checked_sub(res)).is_none_or(|u| u <= 0) {
                    prop_assert!(!obs.complete);
                }
            }
        }
    }
}
