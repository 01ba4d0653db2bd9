//! The SQLite journal (sqlx): the embedded default, a file that survives restarts.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::sync::Mutex;

use super::{Entry, Event, Journal};
use crate::error::{ErrorKind, JournalError};
use crate::time::Timestamp;

/// A journal in a SQLite file (WAL, synchronous=FULL: an append that returned is on disk).
///
/// It holds one connection behind an async mutex rather than a pool (a pool's acquire timeout is a tokio
/// timer), and runs every statement inside `spawn_blocking`: on a paused test clock tokio does not
/// auto-advance time while a blocking task runs, so a journal write never makes virtual time jump.
#[derive(Debug, Clone)]
pub struct SqliteJournal {
    conn: Arc<Mutex<Option<SqliteConnection>>>,
    name: String,
}

fn err(name: &str, what: &str, e: impl std::error::Error + Send + Sync + 'static) -> JournalError {
    JournalError::new(name, ErrorKind::Storage, format!("{what}: {e}")).with_source(e)
}

impl SqliteJournal {
    /// Open (creating if needed) the journal at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, JournalError> {
        let path: PathBuf = path.as_ref().to_path_buf();
        let name = format!("sqlite:{}", path.display());
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| err(&name, "options", e))?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5));
        let mut conn = opts.connect().await.map_err(|e| err(&name, "open", e))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS rb_journal (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                incident TEXT NOT NULL,
                at_ms INTEGER NOT NULL,
                kind TEXT NOT NULL,
                body TEXT NOT NULL
            )",
        )
        .execute(&mut conn)
        .await
        .map_err(|e| err(&name, "create table", e))?;
        sqlx::query("CREATE INDEX IF NOT EXISTS rb_journal_incident ON rb_journal (incident, seq)")
            .execute(&mut conn)
            .await
            .map_err(|e| err(&name, "create index", e))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(Some(conn))),
            name,
        })
    }

    /// Close the connection (flushes; further calls fail with a storage error).
    pub async fn close(&self) {
        if let Some(conn) = self.conn.lock().await.take() {
            let _ = conn.close().await;
        }
    }

    fn closed(&self) -> JournalError {
        JournalError::new(&self.name, ErrorKind::Storage, "the journal is closed")
    }

    fn kind(event: &Event) -> &'static str {
        match event {
            Event::Opened { .. } => "opened",
            Event::Closed { .. } => "closed",
            _ => "event",
        }
    }

    /// Run `f` on the connection in a blocking task (see the type's docs for why).
    ///
    /// Cancellation-safe: the lock guard itself moves into the blocking task, so the connection never
    /// leaves the mutex. A caller dropped while the task runs (a timeout around it, a dropped `tick()`)
    /// loses nothing: the statement finishes (or not) in the task, which then releases the lock with
    /// the connection in place — an event is committed once or not at all, never half, and the journal
    /// stays open.
    async fn with_conn<T, F>(&self, what: &'static str, f: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<T, sqlx::Error> + Send + 'static,
    {
        let mut guard = self.conn.clone().lock_owned().await;
        if guard.is_none() {
            return Err(self.closed());
        }
        let res = tokio::task::spawn_blocking(move || match guard.as_mut() {
            Some(conn) => f(conn).map_err(Some),
            None => Err(None),
        })
        .await
        .map_err(|e| {
            JournalError::new(
                &self.name,
                ErrorKind::Storage,
                format!("{what}: journal worker failed: {e}"),
            )
        })?;
        res.map_err(|e| match e {
            Some(e) => err(&self.name, what, e),
            None => self.closed(),
        })
    }

    async fn fetch(
        &self,
        sql: &'static str,
        bind: Option<&str>,
        what: &'static str,
    ) -> Result<Vec<SqliteRow>, JournalError> {
        let bind = bind.map(str::to_string);
        self.with_conn(what, move |conn| {
            futures::executor::block_on(async move {
                let mut q = sqlx::query(sql);
                if let Some(b) = bind {
                    q = q.bind(b);
                }
                q.fetch_all(conn).await
            })
        })
        .await
    }

    fn incident_ids(&self, rows: Vec<SqliteRow>) -> Result<Vec<String>, JournalError> {
        rows.into_iter()
            .map(|r| {
                r.try_get::<String, _>("incident")
                    .map_err(|e| err(&self.name, "read incident", e))
            })
            .collect()
    }
}

#[async_trait]
impl Journal for SqliteJournal {
    async fn append(
        &self,
        incident: &str,
        at: Timestamp,
        event: &Event,
    ) -> Result<u64, JournalError> {
        let body = serde_json::to_string(event).map_err(|e| {
            JournalError::new(&self.name, ErrorKind::Invalid, format!("encode event: {e}"))
        })?;
        let incident = incident.to_string();
        let kind = Self::kind(event);
        let res = self
            .with_conn("append", move |conn| {
                futures::executor::block_on(
                    sqlx::query(
                        "INSERT INTO rb_journal (incident, at_ms, kind, body) VALUES (?, ?, ?, ?)",
                    )
                    .bind(incident)
                    .bind(at.as_millis() as i64)
                    .bind(kind)
                    .bind(body)
                    .execute(conn),
                )
            })
            .await?;
        Ok(res.last_insert_rowid() as u64)
    }

    async fn entries(&self, incident: &str) -> Result<Vec<Entry>, JournalError> {
        let rows = self
            .fetch(
                "SELECT seq, at_ms, body FROM rb_journal WHERE incident = ? ORDER BY seq",
                Some(incident),
                "read",
            )
            .await?;
        rows.into_iter()
            .map(|r| {
                let body: String = r
                    .try_get("body")
                    .map_err(|e| err(&self.name, "read body", e))?;
                let seq: i64 = r
                    .try_get("seq")
                    .map_err(|e| err(&self.name, "read seq", e))?;
                let at: i64 = r
                    .try_get("at_ms")
                    .map_err(|e| err(&self.name, "read at", e))?;
                let event: Event = serde_json::from_str(&body).map_err(|e| {
                    JournalError::new(
                        &self.name,
                        ErrorKind::BadResponse,
                        format!("entry {seq} does not decode: {e}"),
                    )
                })?;
                Ok(Entry {
                    seq: seq as u64,
                    incident: incident.to_string(),
                    at: Timestamp(at as u64),
                    event,
                })
            })
            .collect()
    }

    async fn open_incidents(&self) -> Result<Vec<String>, JournalError> {
        let rows = self
            .fetch(
                "SELECT incident FROM rb_journal WHERE kind = 'opened'
                 AND incident NOT IN (SELECT incident FROM rb_journal WHERE kind = 'closed') ORDER BY seq",
                None,
                "read open incidents",
            )
            .await?;
        self.incident_ids(rows)
    }

    async fn incidents(&self) -> Result<Vec<String>, JournalError> {
        let rows = self
            .fetch(
                "SELECT incident FROM rb_journal WHERE kind = 'opened' ORDER BY seq",
                None,
                "read incidents",
            )
            .await?;
        self.incident_ids(rows)
    }
}
