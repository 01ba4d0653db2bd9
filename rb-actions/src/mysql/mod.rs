//! MySQL and MariaDB: kill the connections (or only the running statements) that match a filter
//! (`KILL CONNECTION <id>` / `KILL QUERY <id>`) — the runbook's "shed database sessions" when
//! connections saturate or idle transactions hold locks.
//!
//! | remediation | id | risk | idempotent | reversible | verification | exact calls |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | [`KillSessions`] ([`KillMode::Connection`]) | `mysql.kill_sessions` | disruptive | yes (a killed id is gone, or the server answers 1094 *unknown thread*, counted as done: no second kill) | **no**: each connection's open transaction rolls back, its client must reconnect and redo the work | within 30 s the killed ids are gone from the processlist (still there, or `Killed`: inconclusive) | plan: [`VARIABLES_SQL`], [`PROCESSLIST_SQL`], [`INNODB_TRX_SQL`], [`ADMINS_SQL`]; apply: the same four, then `KILL CONNECTION <id>` (one per session); verify: [`VARIABLES_SQL`], [`PROCESSLIST_SQL`]. Text protocol, one connection per phase |
//! | [`KillSessions`] ([`KillMode::Query`]) | `mysql.kill_queries` | disruptive | yes (a statement already ended is left alone) | **no**: the statement is aborted (its transaction stays open, the connection stays) | within 30 s each id runs no statement at least as old as the killed one | as above with `KILL QUERY <id>` |
//!
//! **Which sessions** ([`SessionFilter`]): client connections that are idle inside an open InnoDB
//! transaction (`COMMAND = 'Sleep'` and a row in `INNODB_TRX`) for at least
//! [`SessionFilter::idle_in_transaction_for`] (`TIME`: seconds since the last statement), or run
//! one statement (`Query` / `Execute`) for at least [`SessionFilter::active_for`] (either, when
//! both are set), **and** of one of [`SessionFilter::users`], [`SessionFilter::hosts`] (the
//! client host without its port — MySQL's stand-in for an application) and
//! [`SessionFilter::databases`] where those lists are not empty. A filter with none of these set
//! matches everything: `plan` refuses it ([`ErrorKind::Invalid`]). `KILL QUERY` only ever chooses
//! sessions that are running a statement. When the incident names a `user`, `database` or
//! `application` (the host, as the probe labels it; [`ActionContext::label`]), only those.
//!
//! **Never**: the action's own connection (`CONNECTION_ID()`), the probe's (the id of the
//! [`SqlSessions`] fact in the evidence), background threads and daemons (`COMMAND = 'Daemon'`,
//! users `system user`, `event_scheduler`, `unauthenticated user` — this includes a replica's
//! I/O and SQL threads), replication senders (`Binlog Dump`, `Binlog Dump GTID`), connections
//! already `Killed`, accounts holding `SUPER` or `CONNECTION ADMIN` / `CONNECTION_ADMIN`
//! ([`ADMINS_SQL`] — *where detectable*: `information_schema.USER_PRIVILEGES` shows other
//! accounts' privileges only to a user who may read the `mysql` schema, so list administrators in
//! [`SessionFilter::protected_users`], which holds `root` by default), and the protected users.
//! The plan counts what it left out and why.
//!
//! **At most N**: the candidates are ranked oldest transaction first, then longest in their
//! state, and at most [`KillSessions::max_per_apply`] (default 5) are planned; `apply` refuses a
//! plan listing more.
//!
//! **The plan** lists each session: id, user, host, database, state, seconds in it, the
//! transaction's age and the statement with literals replaced by `?` ([`redact_literals`]).
//!
//! **Apply** re-reads the processlist on its own connection and kills a planned id only if it is
//! still there with the same user and host, still not excluded and still matching. A gone id, or
//! error 1094, is done already. Error 1095 (*not owner of thread*: the account lacks
//! `CONNECTION ADMIN` / `SUPER`) is [`ErrorKind::Unauthorized`]; a lost answer to `KILL` is
//! [`ErrorKind::OutcomeUnknown`]; both carry the ids killed so far. Each kill is journaled as it
//! happens ([`ActionContext::progress`], key `killed`).
//!
//! **Least privilege**: `PROCESS` (see every session and `INNODB_TRX`) and `CONNECTION ADMIN`
//! (MariaDB ≥ 10.5, MySQL 8 `CONNECTION_ADMIN`; `SUPER` before) to kill other accounts'
//! connections. Without the latter an account may kill only its own connections.

mod sqlx_client;

pub use rb_probes::mysql::{
    MySqlProcessRow, MySqlTrxRow, INNODB_TRX_SQL, PROCESSLIST_SQL, VARIABLES_SQL,
};
pub use rb_probes::sql::SourceError;
pub use sqlx_client::SqlxMySqlSessions;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use rb_core::time::human;
use rb_core::{
    ActionContext, ErrorKind, Outcome, Plan, Remediation, RemediationError, Risk, Target,
    Verification,
};
use rb_probes::sql::{redact_literals, Dialect, SqlEndpoint, SqlSessions};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The statement that lists accounts holding `SUPER` or `CONNECTION ADMIN` (as `'user'@'host'`).
pub const ADMINS_SQL: &str = "SELECT DISTINCT GRANTEE FROM information_schema.USER_PRIVILEGES \
WHERE PRIVILEGE_TYPE IN ('SUPER', 'CONNECTION ADMIN', 'CONNECTION_ADMIN')";

/// What `KILL` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KillMode {
    /// `KILL CONNECTION <id>`: the connection, rolling back its transaction.
    #[default]
    Connection,
    /// `KILL QUERY <id>`: only the running statement; the connection stays.
    Query,
}

impl KillMode {
    /// The statement for connection `id`.
    pub fn statement(self, id: i64) -> String {
        match self {
            KillMode::Connection => format!("KILL CONNECTION {id}"),
            KillMode::Query => format!("KILL QUERY {id}"),
        }
    }

    fn id(self) -> &'static str {
        match self {
            KillMode::Connection => "mysql.kill_sessions",
            KillMode::Query => "mysql.kill_queries",
        }
    }
}

/// A connection to a MySQL or MariaDB server, as the remediation needs it. Implementations:
/// [`SqlxMySqlSessions`]; tests may script one.
#[async_trait]
pub trait MySqlSessionClient: Send + Sync + Debug {
    /// Where it connects, for errors (`mysql://user@host:port/db`, no password).
    fn endpoint(&self) -> String;

    /// Open one connection (the action's own: excluded by `CONNECTION_ID()`).
    async fn connect(&self) -> Result<Box<dyn MySqlSessionConn>, SourceError>;
}

/// One open connection of a [`MySqlSessionClient`].
#[async_trait]
pub trait MySqlSessionConn: Send {
    /// `CONNECTION_ID()` of this connection ([`VARIABLES_SQL`]).
    async fn own_id(&mut self) -> Result<i64, SourceError>;

    /// The rows of [`PROCESSLIST_SQL`].
    async fn processlist(&mut self) -> Result<Vec<MySqlProcessRow>, SourceError>;

    /// The rows of [`INNODB_TRX_SQL`].
    async fn transactions(&mut self) -> Result<Vec<MySqlTrxRow>, SourceError>;

    /// The grantees of [`ADMINS_SQL`] (`'user'@'host'`).
    async fn admins(&mut self) -> Result<Vec<String>, SourceError>;

    /// `KILL CONNECTION <id>` / `KILL QUERY <id>`: `true` when done, `false` when the server knows
    /// no such thread (error 1094). An answer lost after sending is [`ErrorKind::OutcomeUnknown`].
    async fn kill(&mut self, id: i64, mode: KillMode) -> Result<bool, SourceError>;

    /// Close the connection (a failed close loses nothing).
    async fn close(self: Box<Self>);
}

/// Which sessions may be killed (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFilter {
    /// Connections idle inside an open transaction at least this long.
    pub idle_in_transaction_for: Option<Duration>,
    /// Connections running one statement at least this long.
    pub active_for: Option<Duration>,
    /// Only these users' connections (empty: any).
    pub users: Vec<String>,
    /// Only connections from these client hosts, port left out (empty: any).
    pub hosts: Vec<String>,
    /// Only connections whose current database is one of these (empty: any).
    pub databases: Vec<String>,
    /// Never these users' connections (`root` by default).
    pub protected_users: Vec<String>,
}

impl Default for SessionFilter {
    fn default() -> Self {
        Self {
            idle_in_transaction_for: None,
            active_for: None,
            users: Vec::new(),
            hosts: Vec::new(),
            databases: Vec::new(),
            protected_users: vec!["root".into()],
        }
    }
}

impl SessionFilter {
    /// Connections idle in a transaction for at least `after` (the rest at the defaults).
    pub fn idle_in_transaction(after: Duration) -> Self {
        Self {
            idle_in_transaction_for: Some(after),
            ..Self::default()
        }
    }

    /// Connections running one statement for at least `after` (the rest at the defaults).
    pub fn running(after: Duration) -> Self {
        Self {
            active_for: Some(after),
            ..Self::default()
        }
    }

    /// Only these users' connections.
    pub fn users<I: IntoIterator<Item = S>, S: Into<String>>(mut self, users: I) -> Self {
        self.users = users.into_iter().map(Into::into).collect();
        self
    }

    /// Only connections from these hosts.
    pub fn hosts<I: IntoIterator<Item = S>, S: Into<String>>(mut self, hosts: I) -> Self {
        self.hosts = hosts.into_iter().map(Into::into).collect();
        self
    }

    /// Only connections on these databases.
    pub fn databases<I: IntoIterator<Item = S>, S: Into<String>>(mut self, dbs: I) -> Self {
        self.databases = dbs.into_iter().map(Into::into).collect();
        self
    }

    /// Never these users' connections (added to `root`).
    pub fn protect_users<I: IntoIterator<Item = S>, S: Into<String>>(mut self, users: I) -> Self {
        self.protected_users
            .extend(users.into_iter().map(Into::into));
        self
    }

    fn is_unbounded(&self) -> bool {
        self.idle_in_transaction_for.is_none()
            && self.active_for.is_none()
            && self.users.is_empty()
            && self.hosts.is_empty()
            && self.databases.is_empty()
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.idle_in_transaction_for {
            parts.push(format!("idle in transaction ≥ {}", human(t)));
        }
        if let Some(t) = self.active_for {
            parts.push(format!("running ≥ {}", human(t)));
        }
        if parts.len() == 2 {
            parts = vec![parts.join(" or ")];
        }
        for (name, list) in [
            ("user", &self.users),
            ("host", &self.hosts),
            ("database", &self.databases),
        ] {
            if !list.is_empty() {
                parts.push(format!("{name} in [{}]", list.join(", ")));
            }
        }
        parts.join(", ")
    }
}

/// A connection chosen for `KILL`, as the plan lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedSession {
    /// Connection id.
    pub id: i64,
    /// User.
    pub user: String,
    /// Client `host:port`.
    pub host: String,
    /// Current database (empty when none).
    pub database: String,
    /// `idle in transaction`, `active`, …
    pub state: String,
    /// Seconds in that state when planned (`TIME`).
    pub state_seconds: i64,
    /// Age of its open InnoDB transaction in seconds, when it has one.
    pub transaction_seconds: Option<i64>,
    /// The statement, literals redacted, cut to 200 characters.
    pub query: String,
}

impl PlannedSession {
    fn line(&self) -> String {
        let xact = self
            .transaction_seconds
            .map(|s| format!(", transaction {}", human(secs(s))))
            .unwrap_or_default();
        format!(
            "id {} (user {}, host {}, database {}, {} for {}{xact}): {}",
            self.id,
            self.user,
            self.host,
            if self.database.is_empty() {
                "(none)"
            } else {
                &self.database
            },
            self.state,
            human(secs(self.state_seconds)),
            if self.query.is_empty() {
                "(no statement)"
            } else {
                &self.query
            }
        )
    }
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// `10.0.0.5:51234` → `10.0.0.5`; `[::1]:5` → `::1`; `localhost` stays.
fn host_only(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => {
            h.trim_start_matches('[').trim_end_matches(']')
        }
        _ => host,
    }
}

/// `'user'@'host'` → `user`.
fn grantee_user(grantee: &str) -> String {
    let user = grantee.rsplit_once('@').map_or(grantee, |(u, _)| u);
    user.trim_matches('\'').trim_matches('`').to_string()
}

/// One connection as the filter sees it.
struct Seen<'a> {
    p: &'a MySqlProcessRow,
    trx_age: Option<i64>,
    state: String,
}

fn seen<'a>(p: &'a MySqlProcessRow, trx: &[MySqlTrxRow]) -> Seen<'a> {
    let t = trx.iter().find(|t| t.thread_id == p.id);
    let state = match p.command.as_str() {
        "Sleep" if t.is_some() => "idle in transaction".to_string(),
        "Sleep" => "idle".to_string(),
        "Query" | "Execute" => "active".to_string(),
        other => other.to_ascii_lowercase(),
    };
    Seen {
        p,
        trx_age: t.map(|t| t.age_s.unwrap_or(0)),
        state,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Excluded(&'static str),
    NoMatch,
    Match,
}

struct Judge<'a> {
    filter: &'a SessionFilter,
    mode: KillMode,
    own: i64,
    admins: &'a [String],
    probe_id: Option<i64>,
    narrow: [(&'static str, Option<&'a str>); 3],
}

impl Judge<'_> {
    fn verdict(&self, s: &Seen<'_>) -> Verdict {
        let (f, p) = (self.filter, s.p);
        if p.id == self.own {
            return Verdict::Excluded("the action's own connection");
        }
        if p.command == "Daemon"
            || matches!(
                p.user.as_str(),
                "system user" | "event_scheduler" | "unauthenticated user" | ""
            )
        {
            return Verdict::Excluded("background or system thread");
        }
        if p.command.starts_with("Binlog Dump") {
            return Verdict::Excluded("replication (Binlog Dump)");
        }
        if p.command == "Killed" {
            return Verdict::Excluded("already being killed");
        }
        if self.admins.contains(&p.user) {
            return Verdict::Excluded("SUPER / CONNECTION ADMIN account");
        }
        if f.protected_users.contains(&p.user) {
            return Verdict::Excluded("protected user");
        }
        if self.probe_id == Some(p.id) {
            return Verdict::Excluded("the probe's connection");
        }
        let idle_tx = f
            .idle_in_transaction_for
            .is_some_and(|t| s.state == "idle in transaction" && secs(p.time) >= t);
        let active = f
            .active_for
            .is_some_and(|t| s.state == "active" && secs(p.time) >= t);
        let state_ok = match self.mode {
            KillMode::Query => s.state == "active" && (f.active_for.is_none() || active),
            KillMode::Connection => {
                (f.idle_in_transaction_for.is_none() && f.active_for.is_none()) || idle_tx || active
            }
        };
        let host = host_only(&p.host);
        let listed = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        let narrowed = self.narrow.iter().all(|(name, want)| {
            want.is_none_or(|w| match *name {
                "user" => p.user == w,
                "database" => p.db == w,
                _ => host == w,
            })
        });
        if state_ok
            && listed(&f.users, &p.user)
            && listed(&f.hosts, host)
            && listed(&f.databases, &p.db)
            && narrowed
        {
            Verdict::Match
        } else {
            Verdict::NoMatch
        }
    }
}

fn planned(s: &Seen<'_>) -> PlannedSession {
    PlannedSession {
        id: s.p.id,
        user: s.p.user.clone(),
        host: s.p.host.clone(),
        database: s.p.db.clone(),
        state: s.state.clone(),
        state_seconds: s.p.time,
        transaction_seconds: s.trx_age,
        query: truncate(redact_literals(s.p.info.trim(), Dialect::Mysql).trim(), 200),
    }
}

/// What one read of the server shows.
struct Snapshot {
    own: i64,
    processes: Vec<MySqlProcessRow>,
    trx: Vec<MySqlTrxRow>,
    admins: Vec<String>,
}

/// Kill MySQL / MariaDB connections or statements matching a filter. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct KillSessions {
    client: Arc<dyn MySqlSessionClient>,
    target: Target,
    filter: SessionFilter,
    mode: KillMode,
    max_per_apply: usize,
    verify_within: Duration,
}

impl KillSessions {
    /// Kill connections of the server behind `client`, known as `target`, that `filter` matches
    /// (`KILL CONNECTION`); at most 5 per apply.
    pub fn new(client: Arc<dyn MySqlSessionClient>, target: Target, filter: SessionFilter) -> Self {
        Self {
            client,
            target,
            filter,
            mode: KillMode::Connection,
            max_per_apply: 5,
            verify_within: Duration::from_secs(30),
        }
    }

    /// The same through sqlx ([`SqlxMySqlSessions`]) at `endpoint`.
    pub fn connect(target: Target, endpoint: SqlEndpoint, filter: SessionFilter) -> Self {
        Self::new(Arc::new(SqlxMySqlSessions::new(endpoint)), target, filter)
    }

    /// Kill the connection (default) or only its running statement. The id changes with it
    /// (`mysql.kill_sessions` / `mysql.kill_queries`).
    pub fn mode(mut self, mode: KillMode) -> Self {
        self.mode = mode;
        self
    }

    /// At most `n` sessions per apply (at least 1).
    pub fn max_per_apply(mut self, n: usize) -> Self {
        self.max_per_apply = n.max(1);
        self
    }

    /// How long verification may wait (default 30 s).
    pub fn verify_within(mut self, d: Duration) -> Self {
        self.verify_within = d;
        self
    }

    fn error(&self, kind: ErrorKind, message: impl Into<String>) -> RemediationError {
        RemediationError::new(
            self.mode.id(),
            &self.target.name,
            self.client.endpoint(),
            kind,
            message,
        )
    }

    fn source_error(&self, what: &str, e: SourceError) -> RemediationError {
        let err = self.error(e.kind, format!("{what}: {}", e.message));
        match e.source {
            Some(s) => err.with_source(s),
            None => err,
        }
    }

    async fn connect_conn(&self) -> Result<Box<dyn MySqlSessionConn>, RemediationError> {
        guard(self.client.connect(), ErrorKind::BadResponse)
            .await
            .map_err(|e| self.source_error("connecting", e))
    }

    async fn read(
        &self,
        conn: &mut Box<dyn MySqlSessionConn>,
        full: bool,
    ) -> Result<Snapshot, RemediationError> {
        let bad = ErrorKind::BadResponse;
        let own = guard(conn.own_id(), bad)
            .await
            .map_err(|e| self.source_error("reading CONNECTION_ID()", e))?;
        let processes = guard(conn.processlist(), bad)
            .await
            .map_err(|e| self.source_error("reading information_schema.PROCESSLIST", e))?;
        if !processes.iter().any(|p| p.id == own) {
            return Err(self.error(
                bad,
                format!("the processlist does not show the action's own connection {own}"),
            ));
        }
        let (trx, admins) = if full {
            let trx = guard(conn.transactions(), bad)
                .await
                .map_err(|e| self.source_error("reading information_schema.INNODB_TRX", e))?;
            let admins = guard(conn.admins(), bad)
                .await
                .map_err(|e| self.source_error("reading information_schema.USER_PRIVILEGES", e))?
                .iter()
                .map(|g| grantee_user(g))
                .collect();
            (trx, admins)
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(Snapshot {
            own,
            processes,
            trx,
            admins,
        })
    }

    fn judge<'a>(&'a self, ctx: &'a ActionContext, snap: &'a Snapshot) -> Judge<'a> {
        Judge {
            filter: &self.filter,
            mode: self.mode,
            own: snap.own,
            admins: &snap.admins,
            probe_id: ctx
                .fact::<SqlSessions>()
                .filter(|f| f.engine == "mysql")
                .map(|f| f.own_session),
            narrow: [
                ("user", ctx.label("user")),
                ("database", ctx.label("database")),
                ("application", ctx.label("application")),
            ],
        }
    }
}

/// Close a connection; a driver that panics on the way out loses nothing.
async fn close(conn: Box<dyn MySqlSessionConn>) {
    let _ = AssertUnwindSafe(conn.close()).catch_unwind().await;
}

async fn guard<T>(
    fut: impl std::future::Future<Output = Result<T, SourceError>>,
    kind: ErrorKind,
) -> Result<T, SourceError> {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r,
        Err(_) => Err(SourceError::new(
            kind,
            "the driver failed on the server's answer (it panicked decoding it)",
        )),
    }
}

/// Whether the process is the planned connection (same id, user and client `host:port`).
fn same_session(p: &MySqlProcessRow, s: &PlannedSession) -> bool {
    p.id == s.id && p.user == s.user && p.host == s.host
}

#[async_trait]
impl Remediation for KillSessions {
    fn id(&self) -> &str {
        self.mode.id()
    }

    fn risk(&self) -> Risk {
        Risk::Disruptive
    }

    /// A killed connection is gone (or its statement ended): a second apply kills nothing more.
    fn idempotent(&self) -> bool {
        true
    }

    fn verify_within(&self) -> Duration {
        self.verify_within
    }

    async fn plan(&self, ctx: &ActionContext) -> Result<Plan, RemediationError> {
        if self.filter.is_unbounded() {
            return Err(self.error(
                ErrorKind::Invalid,
                "the filter names no state, user, host or database: it would match every connection",
            ));
        }
        let mut conn = self.connect_conn().await?;
        let read = self.read(&mut conn, true).await;
        close(conn).await;
        let snap = read?;
        let judge = self.judge(ctx, &snap);
        let mut excluded: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut matching: Vec<Seen<'_>> = Vec::new();
        for p in &snap.processes {
            let s = seen(p, &snap.trx);
            match judge.verdict(&s) {
                Verdict::Match => matching.push(s),
                Verdict::Excluded(why) => *excluded.entry(why).or_default() += 1,
                Verdict::NoMatch => {}
            }
        }
        matching.sort_by(|a, b| {
            (b.trx_age.unwrap_or(0), b.p.time, a.p.id).cmp(&(
                a.trx_age.unwrap_or(0),
                a.p.time,
                b.p.id,
            ))
        });
        let excluded_text = if excluded.is_empty() {
            String::new()
        } else {
            format!(
                "; left alone: {}",
                excluded
                    .iter()
                    .map(|(why, n)| format!("{n} {why}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        if matching.is_empty() {
            return Ok(Plan::nothing_to_do(
                self.mode.id(),
                format!(
                    "none of the {} connections matches ({}){excluded_text}",
                    snap.processes.len(),
                    self.filter.describe()
                ),
            ));
        }
        let chosen: Vec<PlannedSession> = matching
            .iter()
            .take(self.max_per_apply)
            .map(planned)
            .collect();
        let more = matching.len() - chosen.len();
        let lines: Vec<String> = chosen.iter().map(|s| format!("- {}", s.line())).collect();
        let (what, effect) = match self.mode {
            KillMode::Connection => (
                "KILL CONNECTION <id>",
                "the connections end: their open transactions roll back and release their locks and connection slots; their clients must reconnect",
            ),
            KillMode::Query => (
                "KILL QUERY <id>",
                "the running statements are aborted with error 1317; the connections and their transactions stay",
            ),
        };
        Ok(Plan::new(
            self.mode.id(),
            vec![self.target.clone()],
            format!(
                "{what} on {} for {} of {} matching connections ({}; oldest transaction first, at most {} per apply{}){excluded_text}:\n{}",
                self.client.endpoint(),
                chosen.len(),
                matching.len(),
                self.filter.describe(),
                self.max_per_apply,
                if more > 0 { format!("; {more} more left for later") } else { String::new() },
                lines.join("\n")
            ),
        )
        .expect(effect)
        .params(json!({ "mode": self.mode, "sessions": chosen }))
        .irreversible())
    }

    async fn apply(&self, plan: &Plan, ctx: &ActionContext) -> Result<Outcome, RemediationError> {
        let planned: Vec<PlannedSession> = serde_json::from_value(plan.params["sessions"].clone())
            .map_err(|e| {
                self.error(
                    ErrorKind::Invalid,
                    format!("the plan's sessions cannot be read: {e}"),
                )
            })?;
        let mode: KillMode = serde_json::from_value(plan.params["mode"].clone())
            .map_err(|e| self.error(ErrorKind::Invalid, format!("the plan's mode: {e}")))?;
        if mode != self.mode {
            return Err(self.error(
                ErrorKind::Invalid,
                format!(
                    "the plan is for {mode:?}, this action kills {:?}",
                    self.mode
                ),
            ));
        }
        if planned.len() > self.max_per_apply {
            return Err(self.error(
                ErrorKind::Invalid,
                format!(
                    "the plan lists {} connections, more than the {} allowed per apply",
                    planned.len(),
                    self.max_per_apply
                ),
            ));
        }
        let mut conn = self.connect_conn().await?;
        let result = self.kill_on(&mut conn, &planned, ctx).await;
        close(conn).await;
        result
    }

    async fn verify(
        &self,
        _plan: &Plan,
        outcome: &Outcome,
        _ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        let list = |key: &str| -> Vec<PlannedSession> {
            serde_json::from_value(outcome.details[key].clone()).unwrap_or_default()
        };
        let (killed, before) = (list("killed"), list("already_gone"));
        let all: Vec<&PlannedSession> = killed.iter().chain(&before).collect();
        if all.is_empty() {
            return Ok(Verification::Succeeded {
                evidence: "no connection needed killing".into(),
            });
        }
        let mut conn = self.connect_conn().await?;
        let read = self.read(&mut conn, false).await;
        close(conn).await;
        let snap = read?;
        let mut still = Vec::new();
        for s in &all {
            let Some(p) = snap.processes.iter().find(|p| same_session(p, s)) else {
                continue;
            };
            let lingering = match self.mode {
                KillMode::Connection => true,
                KillMode::Query => {
                    p.command == "Killed"
                        || (matches!(p.command.as_str(), "Query" | "Execute")
                            && p.time >= s.state_seconds)
                }
            };
            if lingering {
                still.push(format!("{} ({} for {}s)", s.id, p.command, p.time));
            }
        }
        let ids = all
            .iter()
            .map(|s| s.id.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Ok(if still.is_empty() {
            Verification::Succeeded {
                evidence: match self.mode {
                    KillMode::Connection => format!(
                        "connections {ids} are gone from the processlist ({} killed by this apply, {} ended before it)",
                        killed.len(),
                        before.len()
                    ),
                    KillMode::Query => format!("connections {ids} no longer run the killed statements"),
                },
            }
        } else {
            Verification::Inconclusive {
                why: format!("still there after KILL: {}", still.join(", ")),
            }
        })
    }
}

impl KillSessions {
    async fn kill_on(
        &self,
        conn: &mut Box<dyn MySqlSessionConn>,
        planned: &[PlannedSession],
        ctx: &ActionContext,
    ) -> Result<Outcome, RemediationError> {
        let snap = self.read(conn, true).await?;
        let judge = self.judge(ctx, &snap);
        let mut killed: Vec<PlannedSession> = Vec::new();
        let mut already_gone: Vec<PlannedSession> = Vec::new();
        let mut skipped: Vec<serde_json::Value> = Vec::new();
        for s in planned {
            let Some(p) = snap.processes.iter().find(|p| p.id == s.id) else {
                already_gone.push(s.clone());
                continue;
            };
            if !same_session(p, s) {
                skipped
                    .push(json!({ "id": s.id, "why": "the id now belongs to another connection" }));
                continue;
            }
            let now = seen(p, &snap.trx);
            match judge.verdict(&now) {
                Verdict::Match => {}
                Verdict::Excluded(why) => {
                    skipped.push(json!({ "id": s.id, "why": why }));
                    continue;
                }
                Verdict::NoMatch => {
                    skipped.push(json!({
                        "id": s.id,
                        "why": format!("no longer matches: now {} for {}s", now.state, p.time),
                    }));
                    continue;
                }
            }
            match guard(conn.kill(s.id, self.mode), ErrorKind::OutcomeUnknown).await {
                Ok(true) => {
                    killed.push(s.clone());
                    if let Err(e) = ctx.progress("killed", json!(killed)).await {
                        tracing::warn!(action = self.mode.id(), error = %e, "journaling a kill failed");
                    }
                }
                Ok(false) => already_gone.push(s.clone()),
                Err(e) => {
                    let ids = |l: &[PlannedSession]| l.iter().map(|t| t.id).collect::<Vec<_>>();
                    return Err(self
                        .source_error(&self.mode.statement(s.id), e)
                        .with_details(json!({
                            "killed": ids(&killed),
                            "already_gone": ids(&already_gone),
                            "failed": s.id,
                        })));
                }
            }
        }
        let summary = format!(
            "{} {} connection(s){}{}",
            match self.mode {
                KillMode::Connection => "killed",
                KillMode::Query => "killed the statements of",
            },
            killed.len(),
            if already_gone.is_empty() {
                String::new()
            } else {
                format!(", {} had already ended", already_gone.len())
            },
            if skipped.is_empty() {
                String::new()
            } else {
                format!(", {} skipped (changed since the plan)", skipped.len())
            }
        );
        Ok(Outcome::new(summary).details(json!({
            "mode": self.mode,
            "killed": killed,
            "already_gone": already_gone,
            "skipped": skipped,
        })))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn grantees_hosts_and_statements() {
        assert_eq!(grantee_user("'dba'@'%'"), "dba");
        assert_eq!(grantee_user("'we@ird'@'10.0.0.%'"), "we@ird");
        assert_eq!(host_only("10.0.0.5:51234"), "10.0.0.5");
        assert_eq!(host_only("[::1]:5"), "::1");
        assert_eq!(host_only("localhost"), "localhost");
        assert_eq!(KillMode::Connection.statement(7), "KILL CONNECTION 7");
        assert_eq!(KillMode::Query.statement(7), "KILL QUERY 7");
    }
}
