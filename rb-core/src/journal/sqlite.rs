//! The SQLite journal (sqlx): the embedded default, a file that survives restarts.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::sync::Mutex;

use super::{Entry, Event, Journal};
use crate::error::{ErrorKind, JournalError};
use crate::time::Timestamp;

/// The journal's schema: migrations embedded at compile time from `rb-core/migrations`.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The newest journal schema version this binary knows (the highest embedded migration).
pub fn sqlite_schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// The columns of `rb_journal` as version 1 (and the code before versioned schemas) created them.
const V1_COLUMNS: [(&str, &str); 5] = [
    ("seq", "INTEGER"),
    ("incident", "TEXT"),
    ("at_ms", "INTEGER"),
    ("kind", "TEXT"),
    ("body", "TEXT"),
];

async fn has_table(
    conn: &mut SqliteConnection,
    name: &str,
    table: &str,
) -> Result<bool, JournalError> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?")
            .bind(table)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| err(name, "read schema", e))?;
    Ok(n > 0)
}

/// The journal's newest applied schema version (None without a migrations table); an error when it
/// is newer than this binary knows. Reads only.
async fn refuse_newer(
    conn: &mut SqliteConnection,
    name: &str,
) -> Result<Option<i64>, JournalError> {
    if !has_table(conn, name, "_sqlx_migrations").await? {
        return Ok(None);
    }
    let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| err(name, "read schema version", e))?;
    let known = sqlite_schema_version();
    match newest {
        Some(v) if v > known => Err(JournalError::new(
            name,
            ErrorKind::Invalid,
            format!(
                "the journal's schema is version {v}, newer than version {known}, the newest this \
                 rb knows: it was written by a newer release; refusing to open it (nothing was \
                 changed) — read it with that release or newer"
            ),
        )),
        v => Ok(v),
    }
}

/// Bring the schema up to date: refuse a newer one, adopt an unversioned one, run the migrations.
async fn migrate(conn: &mut SqliteConnection, name: &str) -> Result<(), JournalError> {
    let applied = refuse_newer(conn, name).await?;
    if applied.is_none() && has_table(conn, name, "rb_journal").await? {
        adopt(conn, name).await?;
    }
    MIGRATOR.run(&mut *conn).await.map_err(|e| {
        JournalError::new(name, ErrorKind::Storage, format!("migrate the schema: {e}"))
            .with_source(e)
    })
}

/// A journal written before schemas were versioned: check its table is version 1's, then record
/// migration 1 as applied (in one transaction, so a crash leaves it unadopted, never half).
async fn adopt(conn: &mut SqliteConnection, name: &str) -> Result<(), JournalError> {
    let rows = sqlx::query("SELECT name, type FROM pragma_table_info('rb_journal') ORDER BY cid")
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| err(name, "read the rb_journal columns", e))?;
    let columns: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>("name")?,
                r.try_get::<String, _>("type")?.to_ascii_uppercase(),
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| err(name, "read the rb_journal columns", e))?;
    let expected: Vec<(String, String)> = V1_COLUMNS
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    if columns != expected {
        return Err(JournalError::new(
            name,
            ErrorKind::Invalid,
            format!(
                "an unversioned rb_journal table with unexpected columns {columns:?} (expected \
                 {expected:?}): not adopting it"
            ),
        ));
    }
    let Some(first) = MIGRATOR.iter().find(|m| m.version == 1) else {
        return Err(JournalError::new(
            name,
            ErrorKind::Invalid,
            "no migration 1 embedded",
        ));
    };
    let adopt = async {
        let mut tx = conn.begin().await?;
        sqlx::query("CREATE INDEX IF NOT EXISTS rb_journal_incident ON rb_journal (incident, seq)")
            .execute(&mut *tx)
            .await?;
        tx.ensure_migrations_table().await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => e,
            other => sqlx::Error::Migrate(Box::new(other)),
        })?;
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES (?, ?, TRUE, ?, 0)",
        )
        .bind(first.version)
        .bind(&*first.description)
        .bind(&*first.checksum)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    };
    adopt
        .await
        .map_err(|e| err(name, "adopt the unversioned journal as schema version 1", e))
}

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
    /// Open (creating if needed) the journal at `path`, bringing its schema up to date.
    ///
    /// The schema is versioned by migrations embedded in the binary (`rb-core/migrations`): a new file
    /// gets all of them; a file written before schemas were versioned (an `rb_journal` table and no
    /// `_sqlx_migrations` table) is adopted as version 1, then migrated forward. A file whose schema is
    /// newer than this binary knows (written by a newer release) is refused with an
    /// [`ErrorKind::Invalid`] error naming both versions, and left untouched.
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
        if let Err(e) = migrate(&mut conn, &name).await {
            let _ = conn.close().await;
            return Err(e);
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(Some(conn))),
            name,
        })
    }

    /// Open an existing journal read-only, for a reader: never creates the file, never migrates it
    /// (a journal one or more versions behind is read as it is — the columns read have not changed
    /// since version 1), refuses a schema newer than this binary knows.
    pub(crate) async fn open_read_only(path: impl AsRef<Path>) -> Result<Self, JournalError> {
        let path: PathBuf = path.as_ref().to_path_buf();
        let name = format!("sqlite:{}", path.display());
        if !path.is_file() {
            return Err(JournalError::new(
                &name,
                ErrorKind::Invalid,
                "no journal file at this path",
            ));
        }
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| err(&name, "options", e))?
            .filename(&path)
            .read_only(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        let mut conn = opts.connect().await.map_err(|e| err(&name, "open", e))?;
        let checked = async {
            if !has_table(&mut conn, &name, "rb_journal").await? {
                return Err(JournalError::new(
                    &name,
                    ErrorKind::Invalid,
                    "not an rb journal: it has no rb_journal table",
                ));
            }
            refuse_newer(&mut conn, &name).await.map(|_| ())
        }
        .await;
        if let Err(e) = checked {
            let _ = conn.close().await;
            return Err(e);
        }
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

    /// The `kind` column of an event: its serde tag (`opened`, `started`, `maintenance`, ...), read back
    /// from the encoded body so the two can never disagree.
    fn kind(&self, body: &str) -> Result<String, JournalError> {
        #[derive(serde::Deserialize)]
        struct Tag {
            event: String,
        }
        serde_json::from_str::<Tag>(body)
            .map(|t| t.event)
            .map_err(|e| {
                JournalError::new(
                    &self.name,
                    ErrorKind::Invalid,
                    format!("encoded event has no tag: {e}"),
                )
            })
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
        let kind = self.kind(&body)?;
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
