//! PostgreSQL (started by `peers/scripts/postgres.sh`): a handle with the address and credentials,
//! helpers that open idle / idle-in-transaction sessions and hold them, a saturation helper, and the
//! ground truth read from `pg_stat_activity` — both through a separate sqlx connection and through
//! the server's own `psql`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Executor, Row};

use crate::sql::{open_until_refused, SqlServer};
use crate::PeerEnv;

/// The PostgreSQL server of the tier.
#[derive(Clone)]
pub struct Postgres {
    /// `postgres://user:pass@127.0.0.1:15432/rb`
    pub url: String,
    /// Host (127.0.0.1).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Login role.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Database name.
    pub db: String,
    /// The server's `max_connections`.
    pub max_connections: u32,
    /// Directory of the server's binaries (`psql` lives there).
    pub bin_dir: PathBuf,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the password, not even in test output
        f.debug_struct("Postgres")
            .field("url", &crate::env::redact("url", &self.url))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .field("db", &self.db)
            .field("max_connections", &self.max_connections)
            .field("bin_dir", &self.bin_dir)
            .finish()
    }
}

/// One row of `pg_stat_activity` for a client backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// Backend pid.
    pub pid: i32,
    /// Role name.
    pub usename: String,
    /// `application_name` the client set.
    pub application_name: String,
    /// `active`, `idle`, `idle in transaction`, … (empty when NULL).
    pub state: String,
    /// Database name.
    pub datname: String,
}

/// Sessions opened by [`Postgres::open_sessions`]; they stay open until [`HeldSessions::close`] or drop.
#[derive(Debug)]
pub struct HeldSessions {
    /// The `application_name` every held session carries.
    pub application_name: String,
    /// Sessions left idle.
    pub idle: Vec<PgConnection>,
    /// Sessions left idle inside an open transaction.
    pub idle_in_transaction: Vec<PgConnection>,
    /// Backend pids of all of them.
    pub pids: Vec<i32>,
}

impl HeldSessions {
    /// Close every held session cleanly (rolling back the open transactions).
    pub async fn close(self) -> Result<()> {
        for c in self.idle.into_iter().chain(self.idle_in_transaction) {
            c.close()
                .await
                .context("closing a held PostgreSQL session")?;
        }
        Ok(())
    }
}

/// What [`Postgres::saturate`] reached.
#[derive(Debug)]
pub struct Saturation {
    /// The sessions that could be opened (held open).
    pub held: Vec<PgConnection>,
    /// The server's refusal of the next one (e.g. `FATAL: sorry, too many clients already`).
    pub refusal: String,
    /// Its SQLSTATE (`53300` for too many connections).
    pub sqlstate: Option<String>,
}

impl Postgres {
    /// The handle from the env file written by `postgres.sh`.
    pub fn from_env(env: &PeerEnv) -> Result<Self> {
        let s = SqlServer::from_env(env, "PG")?;
        Ok(Self {
            url: s.url,
            host: s.host,
            port: s.port,
            user: s.user,
            password: s.password,
            db: s.db,
            max_connections: s.max_connections,
            bin_dir: PathBuf::from(env.get("PG_BIN")?),
        })
    }

    /// Connection options with an `application_name`.
    pub fn options(&self, application_name: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username(&self.user)
            .password(&self.password)
            .database(&self.db)
            .application_name(application_name)
    }

    /// One new session.
    pub async fn connect(&self, application_name: &str) -> Result<PgConnection> {
        PgConnection::connect_with(&self.options(application_name))
            .await
            .with_context(|| format!("connecting to PostgreSQL {}:{}", self.host, self.port))
    }

    /// Open `idle` sessions left idle and `idle_in_transaction` sessions left inside an open
    /// transaction (after `BEGIN; SELECT 1`), all with `application_name`, and hold them.
    pub async fn open_sessions(
        &self,
        application_name: &str,
        idle: usize,
        idle_in_transaction: usize,
    ) -> Result<HeldSessions> {
        let mut held = HeldSessions {
            application_name: application_name.to_string(),
            idle: Vec::with_capacity(idle),
            idle_in_transaction: Vec::with_capacity(idle_in_transaction),
            pids: Vec::new(),
        };
        for _ in 0..idle {
            let mut c = self.connect(application_name).await?;
            held.pids.push(backend_pid(&mut c).await?);
            held.idle.push(c);
        }
        for _ in 0..idle_in_transaction {
            let mut c = self.connect(application_name).await?;
            held.pids.push(backend_pid(&mut c).await?);
            c.execute("BEGIN").await.context("BEGIN")?;
            c.execute("SELECT 1")
                .await
                .context("SELECT 1 inside the transaction")?;
            held.idle_in_transaction.push(c);
        }
        Ok(held)
    }

    /// Open sessions until the server refuses one (at most `max_connections + 5` attempts).
    pub async fn saturate(&self, application_name: &str) -> Result<Saturation> {
        let options = self.options(application_name);
        let r = open_until_refused("PostgreSQL", self.max_connections, || {
            PgConnection::connect_with(&options)
        })
        .await?;
        Ok(Saturation {
            held: r.held,
            refusal: r.refusal,
            sqlstate: r.code,
        })
    }

    /// Ground truth through sqlx: client backends of `pg_stat_activity` whose `application_name`
    /// starts with `app_prefix`.
    pub async fn activity(&self, app_prefix: &str) -> Result<Vec<Activity>> {
        let mut c = self.connect("rb-peers-observer").await?;
        let rows = sqlx::query(
            "SELECT pid, coalesce(usename, '') AS usename, application_name, \
             coalesce(state, '') AS state, coalesce(datname, '') AS datname \
             FROM pg_stat_activity WHERE backend_type = 'client backend' \
             AND starts_with(application_name, $1) ORDER BY pid",
        )
        .bind(app_prefix)
        .fetch_all(&mut c)
        .await
        .context("reading pg_stat_activity")?;
        let out = rows
            .iter()
            .map(|r| {
                Ok(Activity {
                    pid: r.try_get("pid")?,
                    usename: r.try_get("usename")?,
                    application_name: r.try_get("application_name")?,
                    state: r.try_get("state")?,
                    datname: r.try_get("datname")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .context("decoding pg_stat_activity")?;
        c.close().await.context("closing the observer session")?;
        Ok(out)
    }

    /// Ground truth through the server's own `psql`: count of client backends by `state` for one
    /// `application_name`.
    pub async fn count_by_state_psql(
        &self,
        application_name: &str,
    ) -> Result<BTreeMap<String, i64>> {
        let sql = format!(
            "SELECT coalesce(state, '<null>'), count(*) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND application_name = '{}' GROUP BY 1 ORDER BY 1",
            application_name.replace('\'', "''")
        );
        let out = self.psql(&sql).await?;
        let mut counts = BTreeMap::new();
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            let (state, n) = line
                .split_once('|')
                .ok_or_else(|| anyhow!("unexpected psql line {line:?}"))?;
            let n: i64 = n
                .trim()
                .parse()
                .with_context(|| format!("count in psql line {line:?}"))?;
            counts.insert(state.to_string(), n);
        }
        Ok(counts)
    }

    /// Run one statement with `psql -At` (unaligned, tuples only, `|` separated) and return stdout.
    pub async fn psql(&self, sql: &str) -> Result<String> {
        let out = tokio::process::Command::new(self.bin_dir.join("psql"))
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", &self.host, "-p"])
            .arg(self.port.to_string())
            .args(["-U", &self.user, "-d", &self.db, "-c", sql])
            .env("PGPASSWORD", &self.password)
            .env("PGAPPNAME", "rb-peers-psql")
            .output()
            .await
            .context("running psql")?;
        if !out.status.success() {
            bail!(
                "psql failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8(out.stdout).context("psql output is not UTF-8")
    }

    /// Column names and types of `pg_stat_activity` (for the fast tier's fixtures).
    pub async fn activity_columns(&self) -> Result<Vec<(String, String)>> {
        let out = self
            .psql(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
                 WHERE a.attrelid = 'pg_catalog.pg_stat_activity'::regclass AND a.attnum > 0 \
                 AND NOT a.attisdropped ORDER BY a.attnum",
            )
            .await?;
        out.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split_once('|')
                    .map(|(n, t)| (n.to_string(), t.to_string()))
                    .ok_or_else(|| anyhow!("unexpected psql line {l:?}"))
            })
            .collect()
    }

    /// `SHOW server_version`.
    pub async fn server_version(&self) -> Result<String> {
        Ok(self.psql("SHOW server_version").await?.trim().to_string())
    }
}

async fn backend_pid(c: &mut PgConnection) -> Result<i32> {
    let row = sqlx::query("SELECT pg_backend_pid() AS pid")
        .fetch_one(&mut *c)
        .await
        .context("pg_backend_pid()")?;
    row.try_get("pid").context("decoding pg_backend_pid()")
}
