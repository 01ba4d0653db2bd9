//! The sqlx adapter of [`PgSource`].

use async_trait::async_trait;
use rb_core::ErrorKind;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow, PgSslMode};
use sqlx::{Connection, Row};

use super::{PgActivityRow, PgSnapshot, PgSource, ACTIVITY_SQL, SETTINGS_SQL};
use crate::sql::sqlx_errors::{classify, Phase};
use crate::sql::{SourceError, SqlEndpoint, SqlTls};

/// Reads [`PgSnapshot`]s with sqlx: one connection per snapshot (TLS per [`SqlEndpoint::tls`],
/// rustls), two prepared statements, closed afterwards.
#[derive(Debug, Clone)]
pub struct SqlxPgSource {
    endpoint: SqlEndpoint,
}

impl SqlxPgSource {
    /// A source connecting to `endpoint`.
    pub fn new(endpoint: SqlEndpoint) -> Self {
        Self { endpoint }
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
            SqlTls::Prefer => o.ssl_mode(PgSslMode::Prefer),
            SqlTls::Require => o.ssl_mode(PgSslMode::Require),
            SqlTls::VerifyCa { ca_pem } => o
                .ssl_mode(PgSslMode::VerifyCa)
                .ssl_root_cert_from_pem(ca_pem.as_bytes().to_vec()),
        }
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
impl PgSource for SqlxPgSource {
    fn endpoint(&self) -> String {
        self.endpoint.display("postgres")
    }

    async fn snapshot(&self) -> Result<PgSnapshot, SourceError> {
        let mut conn = PgConnection::connect_with(&self.options())
            .await
            .map_err(|e| classify(e, Phase::Connect, "connecting"))?;
        let settings = sqlx::query(SETTINGS_SQL)
            .fetch_all(&mut conn)
            .await
            .map_err(|e| classify(e, Phase::Query, "reading pg_settings"))?
            .iter()
            .map(|r| {
                Ok((
                    col::<String>(r, "name", "pg_settings")?,
                    col::<String>(r, "setting", "pg_settings")?,
                ))
            })
            .collect::<Result<Vec<_>, SourceError>>()?;
        let what = "pg_stat_activity";
        let activity = sqlx::query(ACTIVITY_SQL)
            .fetch_all(&mut conn)
            .await
            .map_err(|e| classify(e, Phase::Query, "reading pg_stat_activity"))?
            .iter()
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
            .collect::<Result<Vec<_>, SourceError>>()?;
        // A failed close loses nothing: the snapshot is read; the server drops the session.
        let _ = conn.close().await;
        Ok(PgSnapshot { settings, activity })
    }
}
