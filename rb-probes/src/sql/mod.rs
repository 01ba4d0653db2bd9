//! What the `postgres` and `mysql` families share: connection settings (TLS, credentials as
//! [`Secret`]), the error a source returns, literal redaction of statement texts, the session
//! model, and the saturation summary both probes emit (metrics and facts).
//!
//! ## Metrics (both families)
//!
//! | metric | labels | meaning |
//! | --- | --- | --- |
//! | `db_connections_used` | | client connections open now, **the probe's own excluded** |
//! | `db_connections_max` | | the server's `max_connections` |
//! | `db_connections_usable` | | connections an ordinary (non-admin) role can open: see below |
//! | `db_connections_used_percent` | | `used / max × 100` (raw) |
//! | `db_connections_used_percent_of_usable` | | `used / usable × 100` — **the runbook's saturation signal** |
//! | `db_connections_by_state` | `state` | connections per state (`active`, `idle`, `idle in transaction`, …) |
//! | `db_connections_by_user` | `user` | top-k users by connections; the rest under `user="(other)"` |
//! | `db_connections_by_database` | `database` | top-k databases, the rest under `(other)` |
//! | `db_connections_by_application` | `application` | top-k applications (PostgreSQL `application_name`, MySQL client host without port), the rest under `(other)` |
//! | `db_sessions_long_running` | | statements running longer than the threshold |
//! | `db_sessions_longest_query_seconds` | | age of the oldest running statement (0 when none) |
//! | `db_sessions_idle_in_transaction` | | sessions idle inside an open transaction longer than the threshold |
//! | `db_sessions_idle_in_transaction_max_seconds` | | age of the oldest such transaction (0 when none) |
//!
//! "Usable" is what an application can actually open:
//! - PostgreSQL: `max_connections − superuser_reserved_connections − reserved_connections`
//!   (`reserved_connections` exists from PostgreSQL 16 on, for roles with
//!   `pg_use_reserved_connections`; taken as 0 before).
//! - MySQL and MariaDB: `max_connections` — the server admits one connection more than that, kept
//!   for an account with `SUPER` / `CONNECTION_ADMIN`, so the reserve sits *above* `max_connections`
//!   and both percentages are equal; `db_connections_used_percent` can exceed 100 when an admin
//!   uses that extra connection.
//!
//! ## Facts
//!
//! - [`SqlConnections`] (`sql.connections`): the numbers above, the server version and the
//!   breakdowns.
//! - [`SqlSessions`] (`sql.sessions`): the sessions a session-terminating remediation needs — long
//!   running statements and idle-in-transaction sessions, worst (oldest) first, at most `top_k`
//!   each, with id, user, database, application, state, age and the statement text with string and
//!   numeric literals replaced by `?` (and truncated).

mod redact;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod sqlx_errors;

pub use redact::{redact_literals, Dialect};

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rb_core::{labels, ErrorKind, FactType, Observation, Secret};
use serde::{Deserialize, Serialize};

use crate::common::TopK;

/// How the connection is secured.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SqlTls {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, plain otherwise (the drivers' default).
    #[default]
    Prefer,
    /// TLS required, the certificate not verified.
    Require,
    /// TLS required, the certificate chain verified against this CA (PEM); the host name is not.
    VerifyCa {
        /// The CA certificate(s), PEM.
        ca_pem: String,
    },
}

impl fmt::Debug for SqlTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlTls::Disable => f.write_str("Disable"),
            SqlTls::Prefer => f.write_str("Prefer"),
            SqlTls::Require => f.write_str("Require"),
            SqlTls::VerifyCa { ca_pem } => write!(f, "VerifyCa({} bytes of PEM)", ca_pem.len()),
        }
    }
}

/// Where and how to connect. `Debug` never shows the password.
#[derive(Debug, Clone)]
pub struct SqlEndpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Login role / user.
    pub user: String,
    /// Its password.
    pub password: Secret,
    /// Database to connect to (PostgreSQL: defaults to the user name; MySQL: none).
    pub database: Option<String>,
    /// TLS.
    pub tls: SqlTls,
    /// `application_name` the probe's own session carries (PostgreSQL), so it is recognisable in
    /// `pg_stat_activity`.
    pub application_name: String,
}

impl SqlEndpoint {
    /// An endpoint with TLS preferred, no database, application name `rb-probe`.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        password: Secret,
    ) -> Self {
        Self {
            host: host.into(),
            port,
            user: user.into(),
            password,
            database: None,
            tls: SqlTls::default(),
            application_name: "rb-probe".to_string(),
        }
    }

    /// Connect to this database.
    pub fn database(mut self, db: impl Into<String>) -> Self {
        self.database = Some(db.into());
        self
    }

    /// Use this TLS mode.
    pub fn tls(mut self, tls: SqlTls) -> Self {
        self.tls = tls;
        self
    }

    /// Use this `application_name`.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = name.into();
        self
    }

    /// `scheme://user@host:port/db` — for errors (no password).
    pub fn display(&self, scheme: &str) -> String {
        format!(
            "{scheme}://{}@{}:{}/{}",
            self.user,
            self.host,
            self.port,
            self.database.as_deref().unwrap_or("")
        )
    }
}

/// Why a source could not read its server: the class of failure and what was wrong. The probe
/// turns it into a [`rb_core::ProbeError`] naming the target and the endpoint.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
#[non_exhaustive]
pub struct SourceError {
    /// The class of failure.
    pub kind: ErrorKind,
    /// What was wrong.
    pub message: String,
    /// The underlying error.
    #[source]
    pub source: Option<rb_core::BoxError>,
}

impl SourceError {
    /// A new source error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attach the underlying error.
    pub fn with_source(mut self, source: impl Into<rb_core::BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }
}

/// Thresholds and bounds of the saturation probes.
#[derive(Debug, Clone, PartialEq)]
pub struct SaturationConfig {
    /// A running statement older than this is long-running (default 60 s).
    pub long_running_after: Duration,
    /// A session idle inside a transaction older than this is reported (default 60 s).
    pub idle_in_transaction_after: Duration,
    /// How many users / databases / applications get their own series, and how many sessions
    /// each fact list keeps (default 10).
    pub top_k: usize,
    /// Statement texts are cut to this many characters after redaction (default 300).
    pub max_query_chars: usize,
}

impl Default for SaturationConfig {
    fn default() -> Self {
        Self {
            long_running_after: Duration::from_secs(60),
            idle_in_transaction_after: Duration::from_secs(60),
            top_k: 10,
            max_query_chars: 300,
        }
    }
}

/// One client session, as both families see it (already normalised by the family).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Session {
    pub id: i64,
    pub user: String,
    pub database: String,
    pub application: String,
    /// `active`, `idle`, `idle in transaction`, … (MySQL: derived from COMMAND and INNODB_TRX).
    pub state: String,
    /// Age of the running statement (only meaningful when active).
    pub query_age_s: Option<f64>,
    /// Age of the open transaction, when there is one.
    pub xact_age_s: Option<f64>,
    pub query: String,
}

/// One session listed in [`SqlSessions`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlSession {
    /// PostgreSQL pid / MySQL connection id (what `pg_terminate_backend` / `KILL` take).
    pub id: i64,
    /// User / role.
    pub user: String,
    /// Database (empty when none).
    pub database: String,
    /// Application (`application_name`, or the MySQL client host).
    pub application: String,
    /// State.
    pub state: String,
    /// Age in seconds of what put it on the list (the statement, or the open transaction).
    pub age_seconds: f64,
    /// Statement text with string and numeric literals redacted, truncated.
    pub query: String,
}

/// Sessions a session-terminating remediation needs (fact `sql.sessions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlSessions {
    /// `postgres` or `mysql`.
    pub engine: String,
    /// The long-running threshold, seconds.
    pub long_running_after_seconds: f64,
    /// The idle-in-transaction threshold, seconds.
    pub idle_in_transaction_after_seconds: f64,
    /// How many statements run longer than the threshold (all, not only those listed).
    pub long_running_total: usize,
    /// The oldest of them, worst first (at most `top_k`).
    pub long_running: Vec<SqlSession>,
    /// How many sessions sit idle in a transaction longer than the threshold.
    pub idle_in_transaction_total: usize,
    /// The oldest of them, worst first (at most `top_k`).
    pub idle_in_transaction: Vec<SqlSession>,
    /// The probe's own session id (never listed).
    pub own_session: i64,
}

impl FactType for SqlSessions {
    const KIND: &'static str = "sql.sessions";
}

/// Connection saturation (fact `sql.connections`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlConnections {
    /// `postgres` or `mysql`.
    pub engine: String,
    /// The server's version string.
    pub server_version: String,
    /// `max_connections`.
    pub max_connections: i64,
    /// Slots kept for admins / reserved roles, taken out of `max_connections` (PostgreSQL:
    /// `superuser_reserved_connections + reserved_connections`; MySQL: 0, its admin slot is extra).
    pub reserved: i64,
    /// `max_connections − reserved`.
    pub usable: i64,
    /// Client connections, the probe's own excluded.
    pub used: i64,
    /// `used / max_connections × 100`.
    pub used_percent: f64,
    /// `used / usable × 100` (absent when nothing is usable).
    pub used_percent_of_usable: Option<f64>,
    /// Connections per state.
    pub by_state: BTreeMap<String, i64>,
    /// Top-k users (the rest under `(other)`).
    pub by_user: BTreeMap<String, i64>,
    /// Top-k databases.
    pub by_database: BTreeMap<String, i64>,
    /// Top-k applications.
    pub by_application: BTreeMap<String, i64>,
}

impl FactType for SqlConnections {
    const KIND: &'static str = "sql.connections";
}

/// The server-side numbers the summary needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limits {
    pub engine: &'static str,
    pub server_version: String,
    pub max_connections: i64,
    pub reserved: i64,
    /// Client connections counted by the server itself, own excluded (MySQL `Threads_connected −
    /// 1`); `None`: count the sessions.
    pub used_override: Option<i64>,
    pub own_session: i64,
    pub dialect: Dialect,
}

const OTHER: &str = "(other)";

fn top_counts(counts: BTreeMap<String, i64>, k: usize) -> BTreeMap<String, i64> {
    let mut top = TopK::new(k);
    for (name, n) in &counts {
        top.push(*n as f64, name.clone());
    }
    let kept: Vec<String> = top.into_sorted().into_iter().map(|(_, n)| n).collect();
    let mut out = BTreeMap::new();
    let mut rest = 0;
    for (name, n) in counts {
        if kept.contains(&name) {
            out.insert(name, n);
        } else {
            rest += n;
        }
    }
    if rest > 0 {
        *out.entry(OTHER.to_string()).or_insert(0) += rest;
    }
    out
}

fn listed(s: &Session, age: f64, cfg: &SaturationConfig, dialect: Dialect) -> SqlSession {
    SqlSession {
        id: s.id,
        user: s.user.clone(),
        database: s.database.clone(),
        application: s.application.clone(),
        state: s.state.clone(),
        age_seconds: age,
        query: truncate(&redact_literals(&s.query, dialect), cfg.max_query_chars),
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Emit the samples and facts of one observation from the sessions (the probe's own excluded by
/// the caller) and the limits.
pub(crate) fn summarize(
    obs: &mut Observation,
    limits: &Limits,
    sessions: &[Session],
    cfg: &SaturationConfig,
) {
    let used = limits.used_override.unwrap_or(sessions.len() as i64);
    let usable = limits.max_connections.saturating_sub(limits.reserved);
    let pct = |n: i64, d: i64| (n as f64) * 100.0 / (d as f64);
    let used_percent = if limits.max_connections > 0 {
        pct(used, limits.max_connections)
    } else {
        obs.mark_incomplete("max_connections is 0: no saturation percentage");
        f64::NAN
    };
    let used_percent_of_usable = (usable > 0).then(|| pct(used, usable));

    let mut by_state = BTreeMap::new();
    let mut by_user = BTreeMap::new();
    let mut by_db = BTreeMap::new();
    let mut by_app = BTreeMap::new();
    for s in sessions {
        *by_state.entry(s.state.clone()).or_insert(0i64) += 1;
        *by_user.entry(s.user.clone()).or_insert(0i64) += 1;
        *by_db.entry(s.database.clone()).or_insert(0i64) += 1;
        *by_app.entry(s.application.clone()).or_insert(0i64) += 1;
    }
    let by_user = top_counts(by_user, cfg.top_k);
    let by_db = top_counts(by_db, cfg.top_k);
    let by_app = top_counts(by_app, cfg.top_k);

    let long_after = cfg.long_running_after.as_secs_f64();
    let idle_after = cfg.idle_in_transaction_after.as_secs_f64();
    let mut long = TopK::new(cfg.top_k);
    let mut idle = TopK::new(cfg.top_k);
    let (mut long_total, mut idle_total) = (0usize, 0usize);
    let (mut longest, mut oldest_idle) = (0.0f64, 0.0f64);
    for s in sessions {
        if s.state == "active" {
            if let Some(age) = s.query_age_s {
                longest = longest.max(age);
                if age > long_after {
                    long_total += 1;
                    long.push(age, listed(s, age, cfg, limits.dialect));
                }
            }
        } else if s.state.starts_with("idle in transaction") {
            if let Some(age) = s.xact_age_s {
                oldest_idle = oldest_idle.max(age);
                if age > idle_after {
                    idle_total += 1;
                    idle.push(age, listed(s, age, cfg, limits.dialect));
                }
            }
        }
    }

    obs.push_sample("db_connections_used", labels(&[]), used as f64);
    obs.push_sample(
        "db_connections_max",
        labels(&[]),
        limits.max_connections as f64,
    );
    obs.push_sample("db_connections_usable", labels(&[]), usable as f64);
    if used_percent.is_finite() {
        obs.push_sample("db_connections_used_percent", labels(&[]), used_percent);
    }
    match used_percent_of_usable {
        Some(p) => obs.push_sample("db_connections_used_percent_of_usable", labels(&[]), p),
        None => obs.mark_incomplete(format!(
            "no usable connection slot (max_connections {} − reserved {})",
            limits.max_connections, limits.reserved
        )),
    }
    for (state, n) in &by_state {
        obs.push_sample(
            "db_connections_by_state",
            labels(&[("state", state)]),
            *n as f64,
        );
    }
    for (user, n) in &by_user {
        obs.push_sample(
            "db_connections_by_user",
            labels(&[("user", user)]),
            *n as f64,
        );
    }
    for (db, n) in &by_db {
        obs.push_sample(
            "db_connections_by_database",
            labels(&[("database", db)]),
            *n as f64,
        );
    }
    for (app, n) in &by_app {
        obs.push_sample(
            "db_connections_by_application",
            labels(&[("application", app)]),
            *n as f64,
        );
    }
    obs.push_sample("db_sessions_long_running", labels(&[]), long_total as f64);
    obs.push_sample("db_sessions_longest_query_seconds", labels(&[]), longest);
    obs.push_sample(
        "db_sessions_idle_in_transaction",
        labels(&[]),
        idle_total as f64,
    );
    obs.push_sample(
        "db_sessions_idle_in_transaction_max_seconds",
        labels(&[]),
        oldest_idle,
    );

    let connections = SqlConnections {
        engine: limits.engine.to_string(),
        server_version: limits.server_version.clone(),
        max_connections: limits.max_connections,
        reserved: limits.reserved,
        usable,
        used,
        used_percent: if used_percent.is_finite() {
            used_percent
        } else {
            0.0
        },
        used_percent_of_usable,
        by_state,
        by_user,
        by_database: by_db,
        by_application: by_app,
    };
    let sessions_fact = SqlSessions {
        engine: limits.engine.to_string(),
        long_running_after_seconds: long_after,
        idle_in_transaction_after_seconds: idle_after,
        long_running_total: long_total,
        long_running: long.into_sorted().into_iter().map(|(_, s)| s).collect(),
        idle_in_transaction_total: idle_total,
        idle_in_transaction: idle.into_sorted().into_iter().map(|(_, s)| s).collect(),
        own_session: limits.own_session,
    };
    if let Err(e) = obs.facts.insert(&connections) {
        obs.mark_incomplete(format!("fact sql.connections could not be encoded: {e}"));
    }
    if let Err(e) = obs.facts.insert(&sessions_fact) {
        obs.mark_incomplete(format!("fact sql.sessions could not be encoded: {e}"));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn top_counts_keeps_k_and_sums_the_rest() {
        let counts: BTreeMap<String, i64> = [("a", 5), ("b", 1), ("c", 3), ("d", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let top = top_counts(counts, 2);
        assert_eq!(top.get("a"), Some(&5));
        assert_eq!(top.get("c"), Some(&3));
        assert_eq!(top.get(OTHER), Some(&2));
        assert_eq!(top.len(), 3);
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("ééé", 2), "éé…");
        assert_eq!(truncate("abc", 3), "abc");
    }

    #[test]
    fn tls_debug_hides_the_pem_and_endpoint_debug_the_password() {
        let e = SqlEndpoint::new("h", 1, "u", Secret::new("pw-77")).tls(SqlTls::VerifyCa {
            ca_pem: "-----BEGIN CERT".into(),
        });
        let d = format!("{e:?}");
        assert!(!d.contains("pw-77") && !d.contains("BEGIN"), "{d}");
    }
}
