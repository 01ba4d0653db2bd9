//! MySQL and MariaDB connection saturation, long-running statements and idle-in-transaction
//! sessions — the runbook's "MySQL/PostgreSQL connection saturation" with `SHOW PROCESSLIST`.
//!
//! [`MySqlConnectionsProbe`] (id `mysql.connections`) opens one session per observation, reads
//! [`VARIABLES_SQL`], [`STATUS_SQL`], [`PROCESSLIST_SQL`] and [`INNODB_TRX_SQL`] (text protocol),
//! closes it, and emits the metrics and facts described in [`crate::sql`], plus the server's own
//! counters:
//!
//! | emitted | what |
//! | --- | --- |
//! | `db_connections_used` | `Threads_connected − 1` (the probe's own connection excluded) |
//! | `db_connections_max`, `db_connections_usable` | `max_connections` both: the one extra connection for `SUPER` / `CONNECTION_ADMIN` sits above it |
//! | `db_connections_used_percent`, `db_connections_used_percent_of_usable` | saturation, percent (equal here; above 100 when an admin holds the extra slot) |
//! | `db_connections_by_{state,user,database,application}` | from the processlist (background threads — `Daemon`, `system user`, `event_scheduler` — and the probe's own excluded); the application is the client host without its port |
//! | `db_sessions_long_running`, `db_sessions_longest_query_seconds` | `COMMAND` `Query` / `Execute` and `TIME` over the threshold |
//! | `db_sessions_idle_in_transaction`, `db_sessions_idle_in_transaction_max_seconds` | `COMMAND = 'Sleep'` **and** an open InnoDB transaction (`INNODB_TRX.trx_mysql_thread_id`), aged by `NOW() − trx_started` — the processlist alone cannot tell an idle session from one idle inside a transaction |
//! | `mysql_global_status_threads_connected`, `…_threads_running`, `…_aborted_connects`, `…_aborted_clients`, `…_max_used_connections`, `mysql_global_variables_max_connections` | the server's counters as read |
//! | facts `sql.connections`, `sql.sessions` | as for PostgreSQL; ids are connection ids (`KILL` takes them) |
//!
//! States: `Sleep` in a transaction → `idle in transaction`, `Sleep` → `idle`, `Query` /
//! `Execute` → `active`, anything else → the command in lower case (`binlog dump`, `killed`, …).
//!
//! **Least privilege.** `GRANT PROCESS ON *.* TO 'rb_probe'@'%';` — without `PROCESS` the
//! processlist and `INNODB_TRX` show only the probe's own user's sessions; the probe then marks
//! its observation incomplete (`Threads_connected` counts more than it sees). Nothing else is
//! needed; the probe never writes.

#[cfg(feature = "mysql")]
mod sqlx_source;
#[cfg(feature = "mysql")]
pub use sqlx_source::SqlxMySqlSource;

use std::collections::HashMap;
use std::fmt::Debug;

use std::panic::AssertUnwindSafe;

use async_trait::async_trait;
use futures::FutureExt;
use rb_core::{labels, ErrorKind, Observation, Probe, ProbeContext, ProbeError, Target};

use crate::common::ProbeSite;
use crate::sql::{summarize, Dialect, Limits, SaturationConfig, Session, SourceError};

/// The variables statement the probe sends (a fake must answer exactly this).
pub const VARIABLES_SQL: &str =
    "SELECT @@max_connections AS max_connections, @@version AS version, CONNECTION_ID() AS own_id";

/// The status statement the probe sends.
pub const STATUS_SQL: &str = "SHOW GLOBAL STATUS WHERE Variable_name IN ('Threads_connected', \
'Threads_running', 'Aborted_connects', 'Aborted_clients', 'Max_used_connections')";

/// The processlist statement the probe sends (`SHOW FULL PROCESSLIST` as a table).
pub const PROCESSLIST_SQL: &str =
    "SELECT ID, USER, HOST, DB, COMMAND, TIME, STATE, INFO FROM information_schema.PROCESSLIST";

/// The InnoDB transactions statement the probe sends.
pub const INNODB_TRX_SQL: &str = "SELECT trx_mysql_thread_id, trx_state, \
TIMESTAMPDIFF(SECOND, trx_started, NOW()) AS trx_age_s FROM information_schema.INNODB_TRX";

/// One processlist row.
#[derive(Debug, Clone, PartialEq)]
pub struct MySqlProcessRow {
    /// Connection id.
    pub id: i64,
    /// User.
    pub user: String,
    /// `host:port` of the client (empty for background threads).
    pub host: String,
    /// Current database (empty when NULL).
    pub db: String,
    /// `Sleep`, `Query`, `Daemon`, …
    pub command: String,
    /// Seconds in the current state.
    pub time: i64,
    /// Thread state (empty when NULL).
    pub state: String,
    /// Statement text (empty when NULL).
    pub info: String,
}

/// One `INNODB_TRX` row.
#[derive(Debug, Clone, PartialEq)]
pub struct MySqlTrxRow {
    /// The connection owning the transaction.
    pub thread_id: i64,
    /// `RUNNING`, `LOCK WAIT`, …
    pub state: String,
    /// Seconds since it started (`None` when NULL).
    pub age_s: Option<i64>,
}

/// What one observation reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MySqlSnapshot {
    /// `@@max_connections`.
    pub max_connections: i64,
    /// `@@version`.
    pub version: String,
    /// `CONNECTION_ID()` of the probe's session.
    pub own_id: i64,
    /// The user the probe logged in as.
    pub user: String,
    /// `(Variable_name, Value)` rows of [`STATUS_SQL`].
    pub status: Vec<(String, String)>,
    /// Rows of [`PROCESSLIST_SQL`].
    pub processlist: Vec<MySqlProcessRow>,
    /// Rows of [`INNODB_TRX_SQL`].
    pub innodb_trx: Vec<MySqlTrxRow>,
}

/// Reads a [`MySqlSnapshot`]. Implementations: [`SqlxMySqlSource`]; tests may script one.
#[async_trait]
pub trait MySqlSource: Send + Sync + Debug {
    /// Where it reads from, for errors (`mysql://user@host:port/db`, no password).
    fn endpoint(&self) -> String;

    /// Read variables, status, processlist and InnoDB transactions.
    async fn snapshot(&self) -> Result<MySqlSnapshot, SourceError>;
}

/// Connection saturation of one MySQL or MariaDB server (see the [module docs](self)).
#[derive(Debug)]
pub struct MySqlConnectionsProbe<S> {
    target: Target,
    source: S,
    config: SaturationConfig,
}

impl<S: MySqlSource> MySqlConnectionsProbe<S> {
    /// A probe of `target` reading through `source`.
    pub fn new(target: Target, source: S, config: SaturationConfig) -> Self {
        Self {
            target,
            source,
            config,
        }
    }
}

#[cfg(feature = "mysql")]
impl MySqlConnectionsProbe<SqlxMySqlSource> {
    /// A probe of `target` reading through sqlx from `endpoint`.
    pub fn connect(
        target: Target,
        endpoint: crate::sql::SqlEndpoint,
        config: SaturationConfig,
    ) -> Self {
        Self::new(target, SqlxMySqlSource::new(endpoint), config)
    }
}

fn is_background(p: &MySqlProcessRow) -> bool {
    p.command == "Daemon" || p.user == "system user" || p.user == "event_scheduler"
}

fn host_only(host: &str) -> String {
    // `10.0.0.5:51234`, `[::1]:51234`, `localhost` (socket)
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !port.is_empty() => {
            h.trim_start_matches('[').trim_end_matches(']').to_string()
        }
        _ => host.to_string(),
    }
}

/// Interpret a snapshot (pure: the probe's logic, reusable without a driver).
pub fn observe_snapshot(
    site: &ProbeSite<'_>,
    snap: &MySqlSnapshot,
    config: &SaturationConfig,
    obs: &mut Observation,
) -> Result<(), ProbeError> {
    let status: HashMap<String, &str> = snap
        .status
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    let counter = |name: &str| -> Result<i64, ProbeError> {
        let v = status.get(&name.to_ascii_lowercase()).ok_or_else(|| {
            site.error(
                ErrorKind::BadResponse,
                format!("SHOW GLOBAL STATUS has no {name}"),
            )
        })?;
        match v.trim().parse::<i64>() {
            Ok(n) if n >= 0 => Ok(n),
            _ => Err(site.error(
                ErrorKind::BadResponse,
                format!("SHOW GLOBAL STATUS: {name} is not a non-negative integer: {v:?}"),
            )),
        }
    };
    let connected = counter("Threads_connected")?;
    let running = counter("Threads_running")?;
    let aborted_connects = counter("Aborted_connects")?;
    let aborted_clients = counter("Aborted_clients")?;
    let max_used = counter("Max_used_connections")?;
    if snap.max_connections <= 0 {
        return Err(site.error(
            ErrorKind::BadResponse,
            format!("@@max_connections is {}", snap.max_connections),
        ));
    }
    if !snap.processlist.iter().any(|p| p.id == snap.own_id) {
        return Err(site.error(
            ErrorKind::BadResponse,
            format!(
                "the processlist does not show the probe's own connection (CONNECTION_ID() = {})",
                snap.own_id
            ),
        ));
    }

    let trx: HashMap<i64, &MySqlTrxRow> =
        snap.innodb_trx.iter().map(|t| (t.thread_id, t)).collect();
    let clients: Vec<&MySqlProcessRow> = snap
        .processlist
        .iter()
        .filter(|p| !is_background(p))
        .collect();
    let sessions: Vec<Session> = clients
        .iter()
        .filter(|p| p.id != snap.own_id)
        .map(|p| {
            let t = trx.get(&p.id);
            let state = match (p.command.as_str(), t) {
                ("Sleep", Some(_)) => "idle in transaction".to_string(),
                ("Sleep", None) => "idle".to_string(),
                ("Query" | "Execute", _) => "active".to_string(),
                (other, _) => other.to_ascii_lowercase(),
            };
            Session {
                id: p.id,
                user: p.user.clone(),
                database: p.db.clone(),
                application: host_only(&p.host),
                state,
                query_age_s: Some(p.time as f64),
                xact_age_s: t.and_then(|t| t.age_s).map(|a| a as f64),
                query: p.info.clone(),
            }
        })
        .collect();

    if (clients.len() as i64) < connected && clients.iter().all(|p| p.user == snap.user) {
        obs.mark_incomplete(format!(
            "the processlist shows {} of {connected} connections, all of the probe's own user: \
             the probe's user lacks the PROCESS privilege",
            clients.len()
        ));
    }

    let limits = Limits {
        engine: "mysql",
        server_version: snap.version.clone(),
        max_connections: snap.max_connections,
        reserved: 0,
        used_override: Some(connected.saturating_sub(1).max(0)),
        own_session: snap.own_id,
        dialect: Dialect::Mysql,
    };
    summarize(obs, &limits, &sessions, config);
    for (name, v) in [
        ("mysql_global_status_threads_connected", connected),
        ("mysql_global_status_threads_running", running),
        ("mysql_global_status_aborted_connects", aborted_connects),
        ("mysql_global_status_aborted_clients", aborted_clients),
        ("mysql_global_status_max_used_connections", max_used),
        (
            "mysql_global_variables_max_connections",
            snap.max_connections,
        ),
    ] {
        obs.push_sample(name, labels(&[]), v as f64);
    }
    Ok(())
}

#[async_trait]
impl<S: MySqlSource> Probe for MySqlConnectionsProbe<S> {
    fn id(&self) -> &str {
        "mysql.connections"
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
        probe: "mysql.connections",
        target: "my",
        endpoint: "mysql://rb@h:3306/",
    };

    fn snap(status: &[(&str, &str)]) -> MySqlSnapshot {
        MySqlSnapshot {
            max_connections: 10,
            version: "8.0.36".into(),
            own_id: 7,
            user: "rb".into(),
            status: status
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            processlist: vec![MySqlProcessRow {
                id: 7,
                user: "rb".into(),
                host: "127.0.0.1:5".into(),
                db: String::new(),
                command: "Query".into(),
                time: 0,
                state: "executing".into(),
                info: PROCESSLIST_SQL.into(),
            }],
            innodb_trx: vec![],
        }
    }

    fn run(s: &MySqlSnapshot) -> Result<Observation, ProbeError> {
        let mut obs = Observation::new("mysql.connections", "my", Clock::system().now());
        observe_snapshot(&SITE, s, &SaturationConfig::default(), &mut obs).map(|_| obs)
    }

    const NAMES: [&str; 5] = [
        "Threads_connected",
        "Threads_running",
        "Aborted_connects",
        "Aborted_clients",
        "Max_used_connections",
    ];

    #[test]
    fn errors_name_the_counter_and_the_value() {
        let mut st: Vec<(&str, &str)> = NAMES.iter().map(|n| (*n, "1")).collect();
        st[1].1 = "many";
        let e = run(&snap(&st)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadResponse);
        assert!(
            e.message.contains("Threads_running") && e.message.contains("many"),
            "{e}"
        );
        st.remove(1);
        let e = run(&snap(&st)).unwrap_err();
        assert!(e.message.contains("has no Threads_running"), "{e}");
        let mut s = snap(&NAMES.iter().map(|n| (*n, "1")).collect::<Vec<_>>());
        s.own_id = 8;
        assert!(run(&s).unwrap_err().message.contains("CONNECTION_ID() = 8"));
    }

    proptest! {
        #[test]
        fn arbitrary_counters_never_panic_and_errors_name_the_status(
            values in proptest::collection::vec(".{0,10}", 5),
            max in any::<i64>(),
        ) {
            let st: Vec<(&str, &str)> = NAMES.iter().zip(&values).map(|(n, v)| (*n, v.as_str())).collect();
            let mut s = snap(&st);
            s.max_connections = max;
            if let Err(e) = run(&s) {
                prop_assert_eq!(e.kind, ErrorKind::BadResponse);
            }
        }

        #[test]
        fn mutated_numbers_never_panic(connected in any::<i64>(), max in any::<i64>()) {
            let c = connected.to_string();
            let mut st: Vec<(&str, &str)> = NAMES.iter().map(|n| (*n, "0")).collect();
            st[0].1 = &c;
            let mut s = snap(&st);
            s.max_connections = max;
            let _ = run(&s);
        }
    }

    #[test]
    fn client_host_without_port() {
        assert_eq!(host_only("10.0.0.5:51234"), "10.0.0.5");
        assert_eq!(host_only("[::1]:51234"), "::1");
        assert_eq!(host_only("localhost"), "localhost");
        assert_eq!(host_only(""), "");
    }
}
