//! The sqlx adapter of [`MySqlSessionClient`].

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use rb_core::ErrorKind;
use rb_probes::sql::{SqlEndpoint, SqlTls};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow, MySqlSslMode};
use sqlx::{Connection, Executor, Row};

use super::{
    KillMode, MySqlProcessRow, MySqlSessionClient, MySqlSessionConn, MySqlTrxRow, SourceError,
    ADMINS_SQL, INNODB_TRX_SQL, PROCESSLIST_SQL, VARIABLES_SQL,
};

/// Opens sqlx connections at an [`SqlEndpoint`] (TLS per [`SqlEndpoint::tls`], rustls); every
/// statement goes over the text protocol and is bounded by a timeout (default 10 s). Integer
/// columns are read whatever their width and signedness (MySQL and MariaDB differ).
#[derive(Debug, Clone)]
pub struct SqlxMySqlSessions {
    endpoint: SqlEndpoint,
    timeout: Duration,
}

impl SqlxMySqlSessions {
    /// Connections at `endpoint`.
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

    fn options(&self) -> MySqlConnectOptions {
        let e = &self.endpoint;
        let mut o = MySqlConnectOptions::new()
            .host(&e.host)
            .port(e.port)
            .username(&e.user)
            .password(e.password.expose());
        if let Some(db) = &e.database {
            o = o.database(db);
        }
        match &e.tls {
            SqlTls::Disable => o.ssl_mode(MySqlSslMode::Disabled),
            SqlTls::Require => o.ssl_mode(MySqlSslMode::Required),
            SqlTls::VerifyCa { ca_pem } => o
                .ssl_mode(MySqlSslMode::VerifyCa)
                .ssl_ca_from_pem(ca_pem.as_bytes().to_vec()),
            _ => o.ssl_mode(MySqlSslMode::Preferred),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connect,
    Read,
    /// `KILL` was sent: a lost answer leaves the outcome unknown.
    Signal,
}

/// The MySQL error number of a database error.
fn number(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .map(|m| m.number())
}

fn classify(e: sqlx::Error, phase: Phase) -> SourceError {
    let (kind, message) = match &e {
        sqlx::Error::Database(db) => {
            let n = number(&e).unwrap_or(0);
            let kind = match n {
                1044 | 1045 | 1095 | 1142 | 1143 | 1227 => ErrorKind::Unauthorized,
                _ => ErrorKind::Rejected,
            };
            (kind, format!("server answered error {n}: {}", db.message()))
        }
        sqlx::Error::Tls(t) => (ErrorKind::Rejected, format!("TLS failed: {t}")),
        sqlx::Error::Configuration(c) => (
            ErrorKind::Invalid,
            format!("invalid connection settings: {c}"),
        ),
        other => match phase {
            Phase::Connect => (ErrorKind::Unreachable, format!("cannot connect: {other}")),
            Phase::Read => (
                ErrorKind::BadResponse,
                format!("the answer broke off: {other}"),
            ),
            Phase::Signal => (
                ErrorKind::OutcomeUnknown,
                format!("the answer was lost ({other}): the KILL may or may not have happened"),
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
                format!("no answer within {timeout:?}: the KILL may or may not have happened"),
            ),
            _ => SourceError::new(ErrorKind::Timeout, format!("no answer within {timeout:?}")),
        }),
    }
}

fn bad(what: &str, name: &str, detail: impl std::fmt::Display) -> SourceError {
    SourceError::new(
        ErrorKind::BadResponse,
        format!("{what}: column {name}: {detail}"),
    )
}

/// An integer column of any width and signedness (or a decimal string).
fn int(row: &MySqlRow, name: &str, what: &str) -> Result<Option<i64>, SourceError> {
    if let Ok(v) = row.try_get::<Option<i64>, _>(name) {
        return Ok(v);
    }
    if let Ok(v) = row.try_get::<Option<u64>, _>(name) {
        return v
            .map(|v| i64::try_from(v).map_err(|_| bad(what, name, format!("{v} is too large"))))
            .transpose();
    }
    if let Ok(v) = row.try_get::<Option<i32>, _>(name) {
        return Ok(v.map(i64::from));
    }
    if let Ok(v) = row.try_get::<Option<u32>, _>(name) {
        return Ok(v.map(i64::from));
    }
    match text(row, name, what)? {
        None => Ok(None),
        Some(s) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| bad(what, name, format!("{s:?} is not an integer"))),
    }
}

/// A text column (VARCHAR, TEXT, or bytes decoded as UTF-8 with replacement).
fn text(row: &MySqlRow, name: &str, what: &str) -> Result<Option<String>, SourceError> {
    match row.try_get::<Option<String>, _>(name) {
        Ok(v) => Ok(v),
        Err(first) => match row.try_get::<Option<Vec<u8>>, _>(name) {
            Ok(v) => Ok(v.map(|b| String::from_utf8_lossy(&b).into_owned())),
            Err(_) => Err(bad(what, name, &first).with_source(first)),
        },
    }
}

fn need<T>(v: Option<T>, what: &str, name: &str) -> Result<T, SourceError> {
    v.ok_or_else(|| bad(what, name, "is NULL"))
}

#[async_trait]
impl MySqlSessionClient for SqlxMySqlSessions {
    fn endpoint(&self) -> String {
        self.endpoint.display("mysql")
    }

    async fn connect(&self) -> Result<Box<dyn MySqlSessionConn>, SourceError> {
        let conn = bounded(
            self.timeout,
            Phase::Connect,
            MySqlConnection::connect_with(&self.options()),
        )
        .await?;
        Ok(Box::new(SqlxMySqlConn {
            conn,
            timeout: self.timeout,
        }))
    }
}

struct SqlxMySqlConn {
    conn: MySqlConnection,
    timeout: Duration,
}

impl SqlxMySqlConn {
    async fn rows(&mut self, sql: &str) -> Result<Vec<MySqlRow>, SourceError> {
        bounded(self.timeout, Phase::Read, self.conn.fetch_all(sql)).await
    }
}

#[async_trait]
impl MySqlSessionConn for SqlxMySqlConn {
    async fn own_id(&mut self) -> Result<i64, SourceError> {
        let what = "variables";
        let rows = self.rows(VARIABLES_SQL).await?;
        let row = rows
            .first()
            .ok_or_else(|| SourceError::new(ErrorKind::BadResponse, "variables: no row"))?;
        need(int(row, "own_id", what)?, what, "own_id")
    }

    async fn processlist(&mut self) -> Result<Vec<MySqlProcessRow>, SourceError> {
        let what = "information_schema.PROCESSLIST";
        self.rows(PROCESSLIST_SQL)
            .await?
            .iter()
            .map(|r| {
                Ok(MySqlProcessRow {
                    id: need(int(r, "ID", what)?, what, "ID")?,
                    user: text(r, "USER", what)?.unwrap_or_default(),
                    host: text(r, "HOST", what)?.unwrap_or_default(),
                    db: text(r, "DB", what)?.unwrap_or_default(),
                    command: text(r, "COMMAND", what)?.unwrap_or_default(),
                    time: int(r, "TIME", what)?.unwrap_or(0),
                    state: text(r, "STATE", what)?.unwrap_or_default(),
                    info: text(r, "INFO", what)?.unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn transactions(&mut self) -> Result<Vec<MySqlTrxRow>, SourceError> {
        let what = "information_schema.INNODB_TRX";
        self.rows(INNODB_TRX_SQL)
            .await?
            .iter()
            .map(|r| {
                Ok(MySqlTrxRow {
                    thread_id: need(
                        int(r, "trx_mysql_thread_id", what)?,
                        what,
                        "trx_mysql_thread_id",
                    )?,
                    state: text(r, "trx_state", what)?.unwrap_or_default(),
                    age_s: int(r, "trx_age_s", what)?,
                })
            })
            .collect()
    }

    async fn admins(&mut self) -> Result<Vec<String>, SourceError> {
        let what = "information_schema.USER_PRIVILEGES";
        self.rows(ADMINS_SQL)
            .await?
            .iter()
            .map(|r| need(text(r, "GRANTEE", what)?, what, "GRANTEE"))
            .collect()
    }

    async fn kill(&mut self, id: i64, mode: KillMode) -> Result<bool, SourceError> {
        let sql = mode.statement(id);
        let r = tokio::time::timeout(self.timeout, self.conn.execute(sql.as_str())).await;
        match r {
            Ok(Ok(_)) => Ok(true),
            // ER_NO_SUCH_THREAD: it had already ended.
            Ok(Err(e)) if number(&e) == Some(1094) => Ok(false),
            Ok(Err(e)) => Err(classify(e, Phase::Signal)),
            Err(_) => Err(SourceError::new(
                ErrorKind::OutcomeUnknown,
                format!(
                    "no answer within {:?}: the KILL may or may not have happened",
                    self.timeout
                ),
            )),
        }
    }

    async fn close(self: Box<Self>) {
        let _ = tokio::time::timeout(self.timeout, self.conn.close()).await;
    }
}
