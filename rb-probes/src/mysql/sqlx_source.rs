//! The sqlx adapter of [`MySqlSource`].

use async_trait::async_trait;
use rb_core::ErrorKind;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow, MySqlSslMode};
use sqlx::{Connection, Executor, Row};

use super::{
    MySqlProcessRow, MySqlSnapshot, MySqlSource, MySqlTrxRow, INNODB_TRX_SQL, PROCESSLIST_SQL,
    STATUS_SQL, VARIABLES_SQL,
};
use crate::sql::sqlx_errors::{classify, Phase};
use crate::sql::{SourceError, SqlEndpoint, SqlTls};

/// Reads [`MySqlSnapshot`]s with sqlx: one connection per snapshot (TLS per
/// [`SqlEndpoint::tls`], rustls), four statements over the text protocol, closed afterwards.
/// Integer columns are read whatever their signedness (MySQL and MariaDB differ: `ID` is
/// `BIGINT UNSIGNED` on one, `BIGINT` on the other).
#[derive(Debug, Clone)]
pub struct SqlxMySqlSource {
    endpoint: SqlEndpoint,
}

impl SqlxMySqlSource {
    /// A source connecting to `endpoint`.
    pub fn new(endpoint: SqlEndpoint) -> Self {
        Self { endpoint }
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
            SqlTls::Prefer => o.ssl_mode(MySqlSslMode::Preferred),
            SqlTls::Require => o.ssl_mode(MySqlSslMode::Required),
            SqlTls::VerifyCa { ca_pem } => o
                .ssl_mode(MySqlSslMode::VerifyCa)
                .ssl_ca_from_pem(ca_pem.as_bytes().to_vec()),
        }
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
impl MySqlSource for SqlxMySqlSource {
    fn endpoint(&self) -> String {
        self.endpoint.display("mysql")
    }

    async fn snapshot(&self) -> Result<MySqlSnapshot, SourceError> {
        let mut conn = MySqlConnection::connect_with(&self.options())
            .await
            .map_err(|e| classify(e, Phase::Connect, "connecting"))?;

        let what = "variables";
        let rows = conn
            .fetch_all(VARIABLES_SQL)
            .await
            .map_err(|e| classify(e, Phase::Query, "reading @@max_connections"))?;
        let row = rows.first().ok_or_else(|| {
            SourceError::new(ErrorKind::BadResponse, "variables: no row".to_string())
        })?;
        let max_connections = need(int(row, "max_connections", what)?, what, "max_connections")?;
        let version = text(row, "version", what)?.unwrap_or_default();
        let own_id = need(int(row, "own_id", what)?, what, "own_id")?;

        let what = "SHOW GLOBAL STATUS";
        let status = conn
            .fetch_all(STATUS_SQL)
            .await
            .map_err(|e| classify(e, Phase::Query, "reading SHOW GLOBAL STATUS"))?
            .iter()
            .map(|r| {
                Ok((
                    need(text(r, "Variable_name", what)?, what, "Variable_name")?,
                    text(r, "Value", what)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>, SourceError>>()?;

        let what = "information_schema.PROCESSLIST";
        let processlist = conn
            .fetch_all(PROCESSLIST_SQL)
            .await
            .map_err(|e| classify(e, Phase::Query, "reading information_schema.PROCESSLIST"))?
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
            .collect::<Result<Vec<_>, SourceError>>()?;

        let what = "information_schema.INNODB_TRX";
        let innodb_trx = conn
            .fetch_all(INNODB_TRX_SQL)
            .await
            .map_err(|e| classify(e, Phase::Query, "reading information_schema.INNODB_TRX"))?
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
            .collect::<Result<Vec<_>, SourceError>>()?;

        // A failed close loses nothing: the snapshot is read; the server drops the session.
        let _ = conn.close().await;
        Ok(MySqlSnapshot {
            max_connections,
            version,
            own_id,
            user: self.endpoint.user.clone(),
            status,
            processlist,
            innodb_trx,
        })
    }
}
