//! PostgreSQL: terminate the sessions that match a filter (`pg_terminate_backend`) — the runbook's
//! "shed database sessions" when connections saturate or idle transactions hold locks.
//!
//! | remediation | id | risk | idempotent | reversible | verification | exact calls |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | [`TerminateSessions`] | `postgres.terminate_sessions` | disruptive | yes (a terminated pid is gone: a second apply finds nothing left to end and sends no second `pg_terminate_backend`) | **no**: each session's open transaction rolls back, its client must reconnect and redo the work | within 30 s the terminated pids are gone from `pg_stat_activity` (still there: inconclusive) | plan: [`ACTIVITY_SQL`] and [`SUPERUSERS_SQL`]; apply: the same two, then [`TERMINATE_SQL`] (`SELECT pg_terminate_backend($1)`, one per session, int4 pid bound); verify: [`ACTIVITY_SQL`]. One connection per phase, closed afterwards |
//!
//! **Which sessions** ([`SessionFilter`]): client backends that are idle in a transaction (`idle in
//! transaction`, `… (aborted)`) for at least [`SessionFilter::idle_in_transaction_for`] — counted
//! from the last state change, as PostgreSQL's own `idle_in_transaction_session_timeout` counts —
//! or active for at least [`SessionFilter::active_for`] (either, when both are set), **and** of
//! one of [`SessionFilter::users`], [`SessionFilter::applications`] and
//! [`SessionFilter::databases`] where those lists are not empty. A filter with none of these set
//! matches every session: `plan` refuses it ([`ErrorKind::Invalid`]). When the incident names a
//! `user`, `database` or `application` ([`ActionContext::label`]), only those sessions.
//!
//! **Never**: the action's own session (`pid = pg_backend_pid()`), the probe's session (the pid
//! of the [`SqlSessions`] fact in the evidence, and every session whose `application_name` is one
//! of [`SessionFilter::protected_applications`], `rb-probe` and `rb-action` by default), anything
//! that is not a `client backend` (WAL senders — physical and logical replication — autovacuum,
//! background and parallel workers), sessions of a superuser role (`pg_roles.rolsuper`) or of one
//! of [`SessionFilter::protected_users`], and sessions whose state the role cannot see (without
//! `pg_read_all_stats` other roles' `state` is NULL). The plan counts what it left out and why.
//!
//! **At most N**: the candidates are ranked oldest transaction first (then longest in their state)
//! and at most [`TerminateSessions::max_per_apply`] (default 5) are planned; the plan says how many
//! more matched. `apply` refuses a plan listing more.
//!
//! **The plan** lists each session: pid, user, database, application, state, how long in that
//! state, the transaction's age and the statement text with its string and numeric literals
//! replaced by `?` ([`redact_literals`]), cut to 200 characters.
//!
//! **Apply** re-reads `pg_stat_activity` on its own connection and terminates a planned pid only
//! if it is still there with the same user, database and application, is still not excluded and
//! still matches the filter (a session that committed meanwhile is left alone, named in the
//! outcome as skipped). A pid that is gone, or for which `pg_terminate_backend` answers `false`,
//! has already ended: counted as done. Each termination is journaled as it happens
//! ([`ActionContext::progress`], key `terminated`). A refusal (SQLSTATE 42501: the role lacks
//! `pg_signal_backend`, or the target is a superuser's) is [`ErrorKind::Unauthorized`]; a lost
//! answer to `pg_terminate_backend` (timeout, dropped connection) is [`ErrorKind::OutcomeUnknown`];
//! both carry the pids terminated so far in their details.
//!
//! **Least privilege**: a role with `pg_signal_backend` (terminate non-superuser backends) and
//! `pg_read_all_stats` (see other roles' states), nothing else. PostgreSQL itself never lets it
//! signal a superuser's backend.

mod sqlx_client;

pub use rb_probes::postgres::{PgActivityRow, ACTIVITY_SQL};
pub use rb_probes::sql::SourceError;
pub use sqlx_client::SqlxPgSessions;

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

/// The statement that lists the superuser roles (their sessions are never terminated).
pub const SUPERUSERS_SQL: &str = "SELECT rolname::text AS rolname FROM pg_roles WHERE rolsuper";

/// The statement that terminates one backend (the pid bound as `int4`).
pub const TERMINATE_SQL: &str = "SELECT pg_terminate_backend($1)";

const ID: &str = "postgres.terminate_sessions";

/// A connection to a PostgreSQL server, as the remediation needs it. Implementations:
/// [`SqlxPgSessions`]; tests may script one.
#[async_trait]
pub trait PgSessionClient: Send + Sync + Debug {
    /// Where it connects, for errors (`postgres://user@host:port/db`, no password).
    fn endpoint(&self) -> String;

    /// Open one session on the server (the action's own: excluded by `pg_backend_pid()`).
    async fn connect(&self) -> Result<Box<dyn PgSessionConn>, SourceError>;
}

/// One open session of a [`PgSessionClient`].
#[async_trait]
pub trait PgSessionConn: Send {
    /// The rows of [`ACTIVITY_SQL`] (`own` marks this session).
    async fn activity(&mut self) -> Result<Vec<PgActivityRow>, SourceError>;

    /// The superuser role names ([`SUPERUSERS_SQL`]).
    async fn superusers(&mut self) -> Result<Vec<String>, SourceError>;

    /// `pg_terminate_backend(pid)`: `true` when signalled, `false` when no such backend. An answer
    /// lost after the statement was sent is [`ErrorKind::OutcomeUnknown`].
    async fn terminate(&mut self, pid: i32) -> Result<bool, SourceError>;

    /// Close the session (a failed close loses nothing).
    async fn close(self: Box<Self>);
}

/// Which sessions may be terminated (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFilter {
    /// Sessions idle inside a transaction at least this long (since their last state change).
    pub idle_in_transaction_for: Option<Duration>,
    /// Sessions running one statement at least this long.
    pub active_for: Option<Duration>,
    /// Only these roles' sessions (empty: any).
    pub users: Vec<String>,
    /// Only sessions with one of these `application_name`s (empty: any).
    pub applications: Vec<String>,
    /// Only sessions on these databases (empty: any).
    pub databases: Vec<String>,
    /// Never these roles' sessions.
    pub protected_users: Vec<String>,
    /// Never sessions with these `application_name`s (`rb-probe`, `rb-action` by default).
    pub protected_applications: Vec<String>,
}

impl Default for SessionFilter {
    fn default() -> Self {
        Self {
            idle_in_transaction_for: None,
            active_for: None,
            users: Vec::new(),
            applications: Vec::new(),
            databases: Vec::new(),
            protected_users: Vec::new(),
            protected_applications: vec!["rb-probe".into(), "rb-action".into()],
        }
    }
}

impl SessionFilter {
    /// Sessions idle in a transaction for at least `after` (the other fields at their defaults).
    pub fn idle_in_transaction(after: Duration) -> Self {
        Self {
            idle_in_transaction_for: Some(after),
            ..Self::default()
        }
    }

    /// Only these roles' sessions.
    pub fn users<I: IntoIterator<Item = S>, S: Into<String>>(mut self, users: I) -> Self {
        self.users = users.into_iter().map(Into::into).collect();
        self
    }

    /// Only these applications' sessions.
    pub fn applications<I: IntoIterator<Item = S>, S: Into<String>>(mut self, apps: I) -> Self {
        self.applications = apps.into_iter().map(Into::into).collect();
        self
    }

    /// Only sessions on these databases.
    pub fn databases<I: IntoIterator<Item = S>, S: Into<String>>(mut self, dbs: I) -> Self {
        self.databases = dbs.into_iter().map(Into::into).collect();
        self
    }

    /// Never these roles' sessions.
    pub fn protect_users<I: IntoIterator<Item = S>, S: Into<String>>(mut self, users: I) -> Self {
        self.protected_users
            .extend(users.into_iter().map(Into::into));
        self
    }

    fn is_unbounded(&self) -> bool {
        self.idle_in_transaction_for.is_none()
            && self.active_for.is_none()
            && self.users.is_empty()
            && self.applications.is_empty()
            && self.databases.is_empty()
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.idle_in_transaction_for {
            parts.push(format!("idle in transaction ≥ {}", human(t)));
        }
        if let Some(t) = self.active_for {
            parts.push(format!("active ≥ {}", human(t)));
        }
        if parts.len() == 2 {
            parts = vec![parts.join(" or ")];
        }
        for (name, list) in [
            ("user", &self.users),
            ("application", &self.applications),
            ("database", &self.databases),
        ] {
            if !list.is_empty() {
                parts.push(format!("{name} in [{}]", list.join(", ")));
            }
        }
        parts.join(", ")
    }
}

/// A session chosen for termination, as the plan lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedSession {
    /// Backend pid.
    pub pid: i32,
    /// Role.
    pub user: String,
    /// Database.
    pub database: String,
    /// `application_name`.
    pub application: String,
    /// State when planned.
    pub state: String,
    /// Seconds in that state when planned.
    pub state_seconds: f64,
    /// Age of its open transaction in seconds, when it has one.
    pub transaction_seconds: Option<f64>,
    /// The statement, literals redacted, cut to 200 characters.
    pub query: String,
}

impl PlannedSession {
    fn line(&self) -> String {
        let xact = self
            .transaction_seconds
            .map(|s| format!(", transaction {}", human(secs_f64(s))))
            .unwrap_or_default();
        format!(
            "pid {} (user {}, database {}, application {:?}, {} for {}{xact}): {}",
            self.pid,
            self.user,
            self.database,
            self.application,
            self.state,
            human(secs_f64(self.state_seconds)),
            if self.query.is_empty() {
                "(no statement)"
            } else {
                &self.query
            }
        )
    }
}

fn secs_f64(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO)
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Why a session is left alone.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    Excluded(&'static str),
    NoMatch,
    Match,
}

/// What the filter and the exclusions see.
struct Judge<'a> {
    filter: &'a SessionFilter,
    superusers: &'a [String],
    probe_pid: Option<i64>,
    narrow: [(&'static str, Option<&'a str>); 3],
}

impl Judge<'_> {
    fn verdict(&self, r: &PgActivityRow) -> Verdict {
        let f = self.filter;
        if r.own {
            return Verdict::Excluded("the action's own session");
        }
        if r.backend_type != "client backend" {
            return Verdict::Excluded(if r.backend_type == "walsender" {
                "replication (walsender)"
            } else {
                "not a client backend (background or system process)"
            });
        }
        if self.superusers.contains(&r.usename) {
            return Verdict::Excluded("superuser");
        }
        if f.protected_users.contains(&r.usename) {
            return Verdict::Excluded("protected user");
        }
        if self.probe_pid == Some(i64::from(r.pid))
            || f.protected_applications.contains(&r.application_name)
        {
            return Verdict::Excluded("the probe's or another rb session");
        }
        if r.state.is_empty() {
            return Verdict::Excluded("state hidden (the role lacks pg_read_all_stats)");
        }
        let idle_tx = f.idle_in_transaction_for.is_some_and(|t| {
            r.state.starts_with("idle in transaction")
                && r.state_age_s.or(r.xact_age_s).unwrap_or(0.0) >= t.as_secs_f64()
        });
        let active = f.active_for.is_some_and(|t| {
            r.state == "active" && r.query_age_s.unwrap_or(0.0) >= t.as_secs_f64()
        });
        let state_ok =
            (f.idle_in_transaction_for.is_none() && f.active_for.is_none()) || idle_tx || active;
        let listed = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        let narrowed = self.narrow.iter().all(|(name, want)| {
            want.is_none_or(|w| match *name {
                "user" => r.usename == w,
                "database" => r.datname == w,
                _ => r.application_name == w,
            })
        });
        if state_ok
            && listed(&f.users, &r.usename)
            && listed(&f.applications, &r.application_name)
            && listed(&f.databases, &r.datname)
            && narrowed
        {
            Verdict::Match
        } else {
            Verdict::NoMatch
        }
    }
}

fn planned(r: &PgActivityRow) -> PlannedSession {
    PlannedSession {
        pid: r.pid,
        user: r.usename.clone(),
        database: r.datname.clone(),
        application: r.application_name.clone(),
        state: r.state.clone(),
        state_seconds: r.state_age_s.unwrap_or(0.0),
        transaction_seconds: r.xact_age_s,
        query: truncate(
            redact_literals(r.query.trim(), Dialect::Postgres).trim(),
            200,
        ),
    }
}

/// Terminate PostgreSQL sessions matching a filter. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct TerminateSessions {
    client: Arc<dyn PgSessionClient>,
    target: Target,
    filter: SessionFilter,
    max_per_apply: usize,
    verify_within: Duration,
}

impl TerminateSessions {
    /// Terminate sessions of the server behind `client`, known as `target`, that `filter` matches;
    /// at most 5 per apply.
    pub fn new(client: Arc<dyn PgSessionClient>, target: Target, filter: SessionFilter) -> Self {
        Self {
            client,
            target,
            filter,
            max_per_apply: 5,
            verify_within: Duration::from_secs(30),
        }
    }

    /// The same through sqlx ([`SqlxPgSessions`]) at `endpoint` (give it its own
    /// `application_name`, e.g. `rb-action`).
    pub fn connect(target: Target, endpoint: SqlEndpoint, filter: SessionFilter) -> Self {
        Self::new(Arc::new(SqlxPgSessions::new(endpoint)), target, filter)
    }

    /// At most `n` sessions per apply (at least 1).
    pub fn max_per_apply(mut self, n: usize) -> Self {
        self.max_per_apply = n.max(1);
        self
    }

    /// How long verification may wait for the pids to disappear (default 30 s).
    pub fn verify_within(mut self, d: Duration) -> Self {
        self.verify_within = d;
        self
    }

    fn error(&self, kind: ErrorKind, message: impl Into<String>) -> RemediationError {
        RemediationError::new(ID, &self.target.name, self.client.endpoint(), kind, message)
    }

    fn source_error(&self, what: &str, e: SourceError) -> RemediationError {
        let err = self.error(e.kind, format!("{what}: {}", e.message));
        match e.source {
            Some(s) => err.with_source(s),
            None => err,
        }
    }

    async fn connect_conn(&self) -> Result<Box<dyn PgSessionConn>, RemediationError> {
        guard(self.client.connect(), ErrorKind::BadResponse)
            .await
            .map_err(|e| self.source_error("connecting", e))
    }

    /// Read the sessions (and, when `with_superusers`, the superuser roles) on `conn`.
    async fn read(
        &self,
        conn: &mut Box<dyn PgSessionConn>,
        with_superusers: bool,
    ) -> Result<(Vec<PgActivityRow>, Vec<String>), RemediationError> {
        let rows = guard(conn.activity(), ErrorKind::BadResponse)
            .await
            .map_err(|e| self.source_error("reading pg_stat_activity", e))?;
        let own = rows.iter().filter(|r| r.own).count();
        if own != 1 {
            return Err(self.error(
                ErrorKind::BadResponse,
                format!("pg_stat_activity marks {own} sessions as the action's own (pid = pg_backend_pid()), not 1"),
            ));
        }
        let supers = if with_superusers {
            guard(conn.superusers(), ErrorKind::BadResponse)
                .await
                .map_err(|e| self.source_error("reading pg_roles", e))?
        } else {
            Vec::new()
        };
        Ok((rows, supers))
    }

    fn judge<'a>(&'a self, ctx: &'a ActionContext, superusers: &'a [String]) -> Judge<'a> {
        Judge {
            filter: &self.filter,
            superusers,
            probe_pid: ctx
                .fact::<SqlSessions>()
                .filter(|f| f.engine == "postgres")
                .map(|f| f.own_session),
            narrow: [
                ("user", ctx.label("user")),
                ("database", ctx.label("database")),
                ("application", ctx.label("application")),
            ],
        }
    }
}

/// Run a client call, turning a driver panic into an error of `kind`.
/// Close a connection; a driver that panics on the way out loses nothing.
async fn close(conn: Box<dyn PgSessionConn>) {
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

#[async_trait]
impl Remediation for TerminateSessions {
    fn id(&self) -> &str {
        ID
    }

    fn risk(&self) -> Risk {
        Risk::Disruptive
    }

    /// A terminated pid is gone; a second apply sends no second `pg_terminate_backend`.
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
                "the filter names no state, user, application or database: it would match every session",
            ));
        }
        let mut conn = self.connect_conn().await?;
        let read = self.read(&mut conn, true).await;
        close(conn).await;
        let (rows, supers) = read?;
        let judge = self.judge(ctx, &supers);
        let mut excluded: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut matching: Vec<&PgActivityRow> = Vec::new();
        for r in &rows {
            match judge.verdict(r) {
                Verdict::Match => matching.push(r),
                Verdict::Excluded(why) => *excluded.entry(why).or_default() += 1,
                Verdict::NoMatch => {}
            }
        }
        matching.sort_by(|a, b| {
            let key =
                |r: &PgActivityRow| (r.xact_age_s.unwrap_or(0.0), r.state_age_s.unwrap_or(0.0));
            let (ka, kb) = (key(a), key(b));
            kb.0.total_cmp(&ka.0)
                .then(kb.1.total_cmp(&ka.1))
                .then(a.pid.cmp(&b.pid))
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
                ID,
                format!(
                    "none of the {} sessions matches ({}){excluded_text}",
                    rows.len(),
                    self.filter.describe()
                ),
            ));
        }
        let chosen: Vec<PlannedSession> = matching
            .iter()
            .take(self.max_per_apply)
            .map(|r| planned(r))
            .collect();
        let more = matching.len() - chosen.len();
        let lines: Vec<String> = chosen.iter().map(|s| format!("- {}", s.line())).collect();
        Ok(Plan::new(
            ID,
            vec![self.target.clone()],
            format!(
                "pg_terminate_backend(<pid>) on {} for {} of {} matching sessions ({}; oldest transaction first, at most {} per apply{}){excluded_text}:\n{}",
                self.client.endpoint(),
                chosen.len(),
                matching.len(),
                self.filter.describe(),
                self.max_per_apply,
                if more > 0 { format!("; {more} more left for later") } else { String::new() },
                lines.join("\n")
            ),
        )
        .expect("the sessions end: their open transactions roll back and release their locks and connection slots; their clients must reconnect")
        .params(json!({ "sessions": chosen }))
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
        if planned.len() > self.max_per_apply {
            return Err(self.error(
                ErrorKind::Invalid,
                format!(
                    "the plan lists {} sessions, more than the {} allowed per apply",
                    planned.len(),
                    self.max_per_apply
                ),
            ));
        }
        let mut conn = self.connect_conn().await?;
        let result = self.terminate_on(&mut conn, &planned, ctx).await;
        close(conn).await;
        result
    }

    async fn verify(
        &self,
        _plan: &Plan,
        outcome: &Outcome,
        _ctx: &ActionContext,
    ) -> Result<Verification, RemediationError> {
        let read_list = |key: &str| -> Vec<PlannedSession> {
            serde_json::from_value(outcome.details[key].clone()).unwrap_or_default()
        };
        let (terminated, before) = (read_list("terminated"), read_list("already_gone"));
        let gone: Vec<&PlannedSession> = terminated.iter().chain(&before).collect();
        if gone.is_empty() {
            return Ok(Verification::Succeeded {
                evidence: "no session needed terminating".into(),
            });
        }
        let mut conn = self.connect_conn().await?;
        let read = self.read(&mut conn, false).await;
        close(conn).await;
        let (rows, _) = read?;
        let still: Vec<String> = gone
            .iter()
            .filter(|s| rows.iter().any(|r| same_session(r, s)))
            .map(|s| s.pid.to_string())
            .collect();
        Ok(if still.is_empty() {
            Verification::Succeeded {
                evidence: format!(
                    "pids {} are gone from pg_stat_activity ({} terminated by this apply, {} ended before it)",
                    gone.iter()
                        .map(|s| s.pid.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    terminated.len(),
                    before.len()
                ),
            }
        } else {
            Verification::Inconclusive {
                why: format!(
                    "still in pg_stat_activity after pg_terminate_backend: pids {}",
                    still.join(", ")
                ),
            }
        })
    }
}

/// Whether the row is the planned session (same pid, role, database and application).
fn same_session(r: &PgActivityRow, s: &PlannedSession) -> bool {
    r.pid == s.pid
        && r.usename == s.user
        && r.datname == s.database
        && r.application_name == s.application
}

impl TerminateSessions {
    async fn terminate_on(
        &self,
        conn: &mut Box<dyn PgSessionConn>,
        planned: &[PlannedSession],
        ctx: &ActionContext,
    ) -> Result<Outcome, RemediationError> {
        let (rows, supers) = self.read(conn, true).await?;
        let judge = self.judge(ctx, &supers);
        let mut terminated: Vec<PlannedSession> = Vec::new();
        let mut already_gone: Vec<PlannedSession> = Vec::new();
        let mut skipped: Vec<serde_json::Value> = Vec::new();
        for s in planned {
            let Some(row) = rows.iter().find(|r| r.pid == s.pid) else {
                already_gone.push(s.clone());
                continue;
            };
            if !same_session(row, s) {
                skipped
                    .push(json!({ "pid": s.pid, "why": "the pid now belongs to another session" }));
                continue;
            }
            match judge.verdict(row) {
                Verdict::Match => {}
                Verdict::Excluded(why) => {
                    skipped.push(json!({ "pid": s.pid, "why": why }));
                    continue;
                }
                Verdict::NoMatch => {
                    skipped.push(json!({
                        "pid": s.pid,
                        "why": format!("no longer matches: now {}", row.state),
                    }));
                    continue;
                }
            }
            match guard(conn.terminate(s.pid), ErrorKind::OutcomeUnknown).await {
                Ok(true) => {
                    terminated.push(s.clone());
                    if let Err(e) = ctx.progress("terminated", json!(terminated)).await {
                        tracing::warn!(action = ID, error = %e, "journaling a termination failed");
                    }
                }
                Ok(false) => already_gone.push(s.clone()),
                Err(e) => {
                    let pids = |l: &[PlannedSession]| l.iter().map(|t| t.pid).collect::<Vec<_>>();
                    return Err(self
                        .source_error(&format!("pg_terminate_backend({})", s.pid), e)
                        .with_details(json!({
                            "terminated": pids(&terminated),
                            "already_gone": pids(&already_gone),
                            "failed": s.pid,
                        })));
                }
            }
        }
        let summary = format!(
            "terminated {} session(s){}{}",
            terminated.len(),
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
            "terminated": terminated,
            "already_gone": already_gone,
            "skipped": skipped,
        })))
    }
}
