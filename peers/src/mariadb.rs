//! MariaDB (started by `peers/scripts/mariadb.sh`): a handle, helpers that open idle sessions and
//! sessions idle inside an open transaction and hold them, a saturation helper, and the ground truth
//! read with the server's own `mariadb` client (`SHOW FULL PROCESSLIST`, `SHOW GLOBAL STATUS LIKE
//! 'Threads_%'`, `@@max_connections`, `information_schema.INNODB_TRX`) and through sqlx
//! (`information_schema.PROCESSLIST`).

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{Connection, Executor, Row};

use crate::sql::{open_until_refused, SqlServer};
use crate::PeerEnv;

/// The MariaDB server of the tier.
#[derive(Clone)]
pub struct MariaDb {
    /// `mysql://user:pass@127.0.0.1:13306/rb`
    pub url: String,
    /// Host (127.0.0.1).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Database name.
    pub db: String,
    /// The server's `max_connections`.
    pub max_connections: u32,
}

impl std::fmt::Debug for MariaDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the password, not even in test output
        f.debug_struct("MariaDb")
            .field("url", &crate::env::redact("url", &self.url))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .field("db", &self.db)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// One row of `SHOW FULL PROCESSLIST` as printed by the `mariadb` client (tab separated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Connection id.
    pub id: u64,
    /// User.
    pub user: String,
    /// `host:port` of the client.
    pub host: String,
    /// Current database (empty when NULL).
    pub db: String,
    /// `Sleep`, `Query`, `Daemon`, …
    pub command: String,
    /// Seconds in the current state.
    pub time: u64,
    /// State (empty when NULL or empty).
    pub state: String,
    /// Statement text (empty when NULL).
    pub info: String,
}

/// Sessions opened by [`MariaDb::open_sessions`]; held until [`HeldSessions::close`] or drop.
#[derive(Debug)]
pub struct HeldSessions {
    /// Sessions left idle.
    pub idle: Vec<MySqlConnection>,
    /// Sessions left idle inside an open InnoDB transaction.
    pub idle_in_transaction: Vec<MySqlConnection>,
    /// `CONNECTION_ID()` of the idle ones.
    pub idle_ids: Vec<u64>,
    /// `CONNECTION_ID()` of the ones in a transaction.
    pub in_transaction_ids: Vec<u64>,
}

impl HeldSessions {
    /// Close every held session (open transactions are rolled back by the server).
    pub async fn close(self) -> Result<()> {
        for c in self.idle.into_iter().chain(self.idle_in_transaction) {
            c.close().await.context("closing a held MariaDB session")?;
        }
        Ok(())
    }

    /// Every held connection id.
    pub fn ids(&self) -> Vec<u64> {
        self.idle_ids
            .iter()
            .chain(&self.in_transaction_ids)
            .copied()
            .collect()
    }
}

/// What [`MariaDb::saturate`] reached.
#[derive(Debug)]
pub struct Saturation {
    /// The sessions that could be opened (held open).
    pub held: Vec<MySqlConnection>,
    /// The server's refusal of the next one (`Too many connections`).
    pub refusal: String,
    /// Its error code (`1040`, as sqlx reports it; `None` when the server gave none).
    pub code: Option<String>,
}

impl MariaDb {
    /// The handle from the env file written by `mariadb.sh`.
    pub fn from_env(env: &PeerEnv) -> Result<Self> {
        let s = SqlServer::from_env(env, "MYSQL")?;
        Ok(Self {
            url: s.url,
            host: s.host,
            port: s.port,
            user: s.user,
            password: s.password,
            db: s.db,
            max_connections: s.max_connections,
        })
    }

    /// Connection options (TCP, no TLS).
    pub fn options(&self) -> MySqlConnectOptions {
        MySqlConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username(&self.user)
            .password(&self.password)
            .database(&self.db)
            .ssl_mode(sqlx::mysql::MySqlSslMode::Disabled)
    }

    /// One new session.
    pub async fn connect(&self) -> Result<MySqlConnection> {
        MySqlConnection::connect_with(&self.options())
            .await
            .with_context(|| format!("connecting to MariaDB {}:{}", self.host, self.port))
    }

    /// Open `idle` idle sessions and `idle_in_transaction` sessions left inside a transaction
    /// (`START TRANSACTION WITH CONSISTENT SNAPSHOT`, which makes InnoDB start it at once) and
    /// hold them.
    pub async fn open_sessions(
        &self,
        idle: usize,
        idle_in_transaction: usize,
    ) -> Result<HeldSessions> {
        let mut held = HeldSessions {
            idle: Vec::new(),
            idle_in_transaction: Vec::new(),
            idle_ids: Vec::new(),
            in_transaction_ids: Vec::new(),
        };
        for _ in 0..idle {
            let mut c = self.connect().await?;
            held.idle_ids.push(connection_id(&mut c).await?);
            held.idle.push(c);
        }
        for _ in 0..idle_in_transaction {
            let mut c = self.connect().await?;
            held.in_transaction_ids.push(connection_id(&mut c).await?);
            c.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                .await
                .context("START TRANSACTION")?;
            held.idle_in_transaction.push(c);
        }
        Ok(held)
    }

    /// Open sessions until the server refuses one (at most `max_connections + 5` attempts).
    pub async fn saturate(&self) -> Result<Saturation> {
        let options = self.options();
        let r = open_until_refused("MariaDB", self.max_connections, || {
            MySqlConnection::connect_with(&options)
        })
        .await?;
        Ok(Saturation {
            held: r.held,
            refusal: r.refusal,
            code: r.code,
        })
    }

    /// Run statements with the server's own `mariadb` client in batch mode (`-B`, tab separated,
    /// with column names unless `skip_names`) and return stdout.
    pub async fn client(&self, sql: &str, skip_names: bool) -> Result<String> {
        let mut cmd = tokio::process::Command::new("mariadb");
        cmd.args([
            "--no-defaults",
            "--protocol=tcp",
            "-B",
            "-h",
            &self.host,
            "-P",
        ])
        .arg(self.port.to_string())
        .args(["-u", &self.user, "-D", &self.db, "-e", sql])
        .env("MYSQL_PWD", &self.password);
        if skip_names {
            cmd.arg("-N");
        }
        let out = cmd.output().await.context("running the mariadb client")?;
        if !out.status.success() {
            bail!(
                "mariadb client failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8(out.stdout).context("mariadb client output is not UTF-8")
    }

    /// Ground truth: `SHOW FULL PROCESSLIST` through the `mariadb` client.
    pub async fn processlist(&self) -> Result<Vec<Process>> {
        let out = self.client("SHOW FULL PROCESSLIST", false).await?;
        let mut lines = out.lines();
        let header: Vec<&str> = lines
            .next()
            .ok_or_else(|| anyhow!("SHOW FULL PROCESSLIST printed nothing"))?
            .split('\t')
            .collect();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| h.eq_ignore_ascii_case(name))
                .ok_or_else(|| anyhow!("SHOW FULL PROCESSLIST has no column {name}: {header:?}"))
        };
        let (i_id, i_user, i_host, i_db) = (col("Id")?, col("User")?, col("Host")?, col("db")?);
        let (i_cmd, i_time, i_state, i_info) =
            (col("Command")?, col("Time")?, col("State")?, col("Info")?);
        let mut out_rows = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let f: Vec<&str> = line.split('\t').collect();
            let get = |i: usize| -> Result<String> {
                let v = f
                    .get(i)
                    .ok_or_else(|| anyhow!("short processlist line {line:?}"))?;
                Ok(if *v == "NULL" {
                    String::new()
                } else {
                    (*v).to_string()
                })
            };
            out_rows.push(Process {
                id: get(i_id)?
                    .parse()
                    .with_context(|| format!("Id in {line:?}"))?,
                user: get(i_user)?,
                host: get(i_host)?,
                db: get(i_db)?,
                command: get(i_cmd)?,
                time: get(i_time)?
                    .parse()
                    .with_context(|| format!("Time in {line:?}"))?,
                state: get(i_state)?,
                info: get(i_info)?,
            });
        }
        Ok(out_rows)
    }

    /// Ground truth: `SHOW GLOBAL STATUS LIKE 'Threads_%'` through the `mariadb` client.
    pub async fn threads_status(&self) -> Result<BTreeMap<String, u64>> {
        let out = self
            .client("SHOW GLOBAL STATUS LIKE 'Threads_%'", true)
            .await?;
        parse_name_values(&out)
    }

    /// Ground truth: `@@max_connections` through the `mariadb` client.
    pub async fn max_connections_setting(&self) -> Result<u64> {
        let out = self.client("SELECT @@max_connections", true).await?;
        out.trim()
            .parse()
            .with_context(|| format!("@@max_connections answered {out:?}"))
    }

    /// Ground truth: connection ids that have an open InnoDB transaction
    /// (`information_schema.INNODB_TRX.trx_mysql_thread_id`).
    pub async fn open_transaction_ids(&self) -> Result<Vec<u64>> {
        let out = self
            .client(
                "SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX ORDER BY 1",
                true,
            )
            .await?;
        out.lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.trim().parse().with_context(|| format!("thread id {l:?}")))
            .collect()
    }

    /// `information_schema.PROCESSLIST` through sqlx: `(ID, COMMAND)` of every session.
    pub async fn processlist_sqlx(&self) -> Result<Vec<(u64, String)>> {
        let mut c = self.connect().await?;
        let rows = sqlx::query(
            "SELECT CAST(ID AS UNSIGNED) AS id, COMMAND AS command FROM information_schema.PROCESSLIST ORDER BY ID",
        )
        .fetch_all(&mut c)
        .await
        .context("reading information_schema.PROCESSLIST")?;
        let out = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<u64, _>("id")?,
                    r.try_get::<String, _>("command")?,
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .context("decoding information_schema.PROCESSLIST")?;
        c.close().await.context("closing the observer session")?;
        Ok(out)
    }

    /// Column names and types of `information_schema.PROCESSLIST` (for the fast tier's fixtures).
    pub async fn processlist_columns(&self) -> Result<Vec<(String, String)>> {
        let out = self
            .client(
                "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = 'information_schema' AND TABLE_NAME = 'PROCESSLIST' \
                 ORDER BY ORDINAL_POSITION",
                true,
            )
            .await?;
        out.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split_once('\t')
                    .map(|(n, t)| (n.to_string(), t.to_string()))
                    .ok_or_else(|| anyhow!("unexpected line {l:?}"))
            })
            .collect()
    }

    /// `SELECT VERSION()`.
    pub async fn server_version(&self) -> Result<String> {
        Ok(self
            .client("SELECT VERSION()", true)
            .await?
            .trim()
            .to_string())
    }
}

fn parse_name_values(out: &str) -> Result<BTreeMap<String, u64>> {
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l
                .split_once('\t')
                .ok_or_else(|| anyhow!("unexpected line {l:?}"))?;
            let v: u64 = v
                .trim()
                .parse()
                .with_context(|| format!("value in {l:?}"))?;
            Ok((k.to_string(), v))
        })
        .collect()
}

async fn connection_id(c: &mut MySqlConnection) -> Result<u64> {
    let row = sqlx::query("SELECT CONNECTION_ID() AS id")
        .fetch_one(&mut *c)
        .await
        .context("CONNECTION_ID()")?;
    row.try_get("id").context("decoding CONNECTION_ID()")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_lines() {
        let m = parse_name_values("Threads_cached\t0\nThreads_connected\t7\n").unwrap();
        assert_eq!(m.get("Threads_connected"), Some(&7));
        assert!(parse_name_values("Threads_connected\tseven\n").is_err());
    }
}
