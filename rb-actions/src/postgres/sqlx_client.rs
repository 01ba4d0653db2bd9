//! The sqlx adapter of [`PgSessionClient`].

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use rb_core::ErrorKind;
use rb_probes::sql::{SqlEndpoint, SqlTls};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow, PgSslMode};
use sqlx::{Connection, Row};

use super::{
    PgActivityRow, PgSessionClient, PgSessionConn, SourceError, ACTIVITY_SQL, SUPERUSERS_SQL,
    TERMINATE_SQL,
};

/// Opens sqlx sessions at an [`SqlEndpoint`] (TLS per [`SqlEndpoint::tls`], rustls); every
/// statement is prepared and bounded by a timeout (default 10 s).
#[derive(Debug, Clone)]
pub struct SqlxPgSessions {
    endpoint: SqlEndpoint,
    timeout: Duration,
}

impl SqlxPgSessions {
    /// Sessions at `endpoint`.
    pub fn new(endpoint: SqlEndpoint) -> Self {
        Self {
            endpoint,
            timeout: Duration::from_secs(10),
        }
    }

    /// Bound connecting and every statement by `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn options(&self) -> PgConnectOptions {
        let e = &self.endpoint;
        let mut o = PgConnectOptions::new()
            .host(&e.host)
            .port(e.port)
            .username(&e.user)
            .password(e.password.expose())
            .application_name(&e.application_name);
        if let Some(db) = &e.database {
            o = o.database(db);
        }
        match &e.tls {
            SqlTls::Disable => o.ssl_mode(PgSslMode::Disable),
            SqlTls::Require => o.ssl_mode(PgSslMode::Require),
            SqlTls::VerifyCa { ca_pem } => o
                .ssl_mode(PgSslMode::VerifyCa)
                .ssl_root_cert_from_pem(ca_pem.as_bytes().to_vec()),
            _ => o.ssl_mode(PgSslMode::Prefer),
        }
    }
}

/// Where a failure happened: it decides what a broken connection means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connect,
    Read,
    /// `pg_terminate_backend` was sent: a lost answer leaves the outcome unknown.
    Signal,
}

fn classify(e: sqlx::Error, phase: Phase) -> SourceError {
    let (kind, message) = match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            let kind = match code.as_str() {
                "28000" | "28P01" | "42501" => ErrorKind::Unauthorized,
                "57P01" | "57P03" | "08006" if phase != Phase::Signal => ErrorKind::Unreachable,
                _ => ErrorKind::Rejected,
            };
            (
                kind,
                format!("server answered SQLSTATE {code}: {}", db.message()),
            )
        }
        sqlx::Error::Tls(t) => (ErrorKind::Rejected, format!("TLS failed: {t}")),
        sqlx::Error::Configuration(c) => {
            (ErrorKind::Invalid, format!("invalid connection settings: {c}"))
        }
        other => match phase {
            Phase::Connect => (ErrorKind::Unreachable, format!("cannot connect: {other}")),
            Phase::Read => (
                ErrorKind::BadResponse,
                format!("the answer broke off: {other}"),
            ),
            Phase::Signal => (
                ErrorKind::OutcomeUnknown,
                format!("the answer was lost ({other}): the backend may or may not have been terminated"),
            ),
        },
    };
    SourceError::new(kind, message).with_source(e)
}

async fn bounded<T>(
    timeout: Duration,
    phase: Phase,
    fut: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, SourceError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r.map_err(|e| classify(e, phase)),
        Err(_) => Err(match phase {
            Phase::Signal => SourceError::new(
                ErrorKind::OutcomeUnknown,
                format!(
                    "no answer within {timeout:?}: the backend may or may not have been terminated"
                ),
            ),
            _ => SourceError::new(ErrorKind::Timeout, format!("no answer within {timeout:?}")),
        }),
    }
}

fn col<'r, T>(row: &'r PgRow, name: &str, what: &str) -> Result<T, SourceError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get::<T, _>(name).map_err(|e| {
        SourceError::new(
            ErrorKind::BadResponse,
            format!("{what}: column {name}: {e}"),
        )
        .with_source(e)
    })
}

#[async_trait]
impl PgSessionClient for SqlxPgSessions {
    fn endpoint(&self) -> String {
        self.endpoint.display("postgres")
    }

    async fn connect(&self) -> Result<Box<dyn PgSessionConn>, SourceError> {
        let conn = bounded(
            self.timeout,
            Phase::Connect,
            PgConnection::connect_with(&self.options()),
        )
        .await?;
        Ok(Box::new(SqlxPgConn {
            conn,
            timeout: self.timeout,
        }))
    }
}

struct SqlxPgConn {
    conn: PgConnection,
    timeout: Duration,
}

#[async_trait]
impl PgSessionConn for SqlxPgConn {
    async fn activity(&mut self) -> Result<Vec<PgActivityRow>, SourceError> {
        let what = "pg_stat_activity";
        let rows = bounded(
            self.timeout,
            Phase::Read,
            sqlx::query(ACTIVITY_SQL).fetch_all(&mut self.conn),
        )
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PgActivityRow {
                    pid: col(r, "pid", what)?,
                    usename: col(r, "usename", what)?,
                    datname: col(r, "datname", what)?,
                    application_name: col(r, "application_name", what)?,
                    client_addr: col(r, "client_addr", what)?,
                    state: col(r, "state", what)?,
                    backend_type: col(r, "backend_type", what)?,
                    xact_age_s: col(r, "xact_age_s", what)?,
                    query_age_s: col(r, "query_age_s", what)?,
                    state_age_s: col(r, "state_age_s", what)?,
                    query: col(r, "query", what)?,
                    own: col(r, "own", what)?,
                })
            })
            .collect()
    }

    async fn superusers(&mut self) -> Result<Vec<String>, SourceError> {
        let rows = bounded(
            self.timeout,
            Phase::Read,
            sqlx::query(SUPERUSERS_SQL).fetch_all(&mut self.conn),
        )
        .await?;
        rows.iter().map(|r| col(r, "rolname", "pg_roles")).collect()
    }

    async fn terminate(&mut self, pid: i32) -> Result<bool, SourceError> {
        let row = bounded(
            self.timeout,
            Phase::Signal,
            sqlx::query(TERMINATE_SQL)
                .bind(pid)
                .fetch_one(&mut self.conn),
        )
        .await?;
        col(&row, "pg_terminate_backend", "pg_terminate_backend").map_err(|mut e| {
            // The statement ran; only its answer is unreadable.
            e.kind = ErrorKind::OutcomeUnknown;
            e
        })
    }

    async fn close(self: Box<Self>) {
        let _ = tokio::time::timeout(self.timeout, self.conn.close()).await;
    }
}
