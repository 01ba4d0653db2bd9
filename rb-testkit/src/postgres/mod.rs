//! A fake PostgreSQL server on the real wire protocol (pgwire): sqlx, `psql` or any other client
//! connects to it, authenticates (trust, cleartext or md5), and runs the catalog and status
//! statements a connection-saturation probe issues — over the simple and the extended (prepared)
//! query protocol.
//!
//! There is no SQL engine: the fake holds a scriptable model — settings (`max_connections`,
//! `superuser_reserved_connections`, `reserved_connections`, `server_version_num`, …) and the
//! sessions of `pg_stat_activity` — and **answers these statements** (compared after collapsing
//! whitespace and ignoring case and a trailing `;`):
//!
//! | statement | answer |
//! | --- | --- |
//! | [`SETTINGS_SQL`] (`SELECT name, setting FROM pg_settings WHERE name IN ('…', …)`, any list) | one `(name text, setting text)` row per listed setting the server has (`reserved_connections` only from version 16) |
//! | `SHOW <name>` | one text column named `<name>`; SQLSTATE 42704 for an unknown setting |
//! | `SELECT current_setting('<name>')` | one text column `current_setting` |
//! | `SELECT pg_backend_pid()` (optionally `AS <alias>`) | the connection's pid, `int4` |
//! | [`ACTIVITY_SQL`] | every session of the model plus every live connection (`state` `active` for the one asking, with its own statement as `query`) |
//! | `SELECT pg_terminate_backend(<pid>)` or `(…($1))` | `true` and the session removed (a live connection is closed), `false` for an unknown pid; recorded in [`FakePostgres::terminated`] |
//! | [`SUPERUSERS_SQL`] | one `rolname` text row per superuser role ([`FakePostgresBuilder::superuser`]; `postgres` by default) |
//! | `BEGIN`, `START TRANSACTION`, `COMMIT`, `ROLLBACK` | the connection's state becomes `idle in transaction` / `idle` |
//! | `SELECT 1`, `SELECT version()` | `?column?` `int4` 1; `version` text |
//!
//! Anything else is answered with an `ErrorResponse` — SQLSTATE `42601` (syntax error) for what is not
//! a statement of the list, `0A000` (feature not supported) for a `pg_stat_activity` or `pg_settings`
//! statement of another shape — never with silence.
//!
//! [`FakePostgres::set_terminate_fault`] makes `pg_terminate_backend` misbehave the way a real server
//! or network can: refused with SQLSTATE 42501 (the role may not signal that backend), or carried out
//! with its answer never sent (the caller cannot tell whether it happened).
//!
//! Faults ([`crate::sqlwire::WireFault`]) act on the bytes, between the client and pgwire: latency,
//! refused connections ([`FakePostgres::refuse_connections`]), a server that never answers, a
//! result dropped half-way, a malformed message. Every statement received is recorded
//! ([`FakePostgres::statements`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rb_testkit::postgres::{FakePostgres, PgSession};
//! use std::time::Duration;
//! let pg = FakePostgres::builder().setting("max_connections", "20").start().await?;
//! pg.add_session(PgSession::client("app", "orders").state("idle in transaction")
//!     .xact_age(Duration::from_secs(600)).query("UPDATE t SET x = 1 WHERE id = 42"));
//! println!("connect to {}", pg.url());
//! # Ok(()) }
//! ```

mod handler;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle};

use crate::sqlwire::{Framing, Front, WireFault};

/// The settings statement the fake answers (the rb postgres probe sends exactly this).
pub const SETTINGS_SQL: &str = "SELECT name, setting FROM pg_settings WHERE name IN \
('max_connections', 'superuser_reserved_connections', 'reserved_connections', 'server_version_num')";

/// The `pg_stat_activity` statement the fake answers (the rb postgres probe sends exactly this).
/// Ages are seconds (`float8`, NULL when the timestamp is NULL); `own` marks the asking session.
pub const ACTIVITY_SQL: &str = "SELECT pid, coalesce(usename::text, '') AS usename, \
coalesce(datname::text, '') AS datname, coalesce(application_name, '') AS application_name, \
coalesce(host(client_addr), '') AS client_addr, coalesce(state, '') AS state, \
coalesce(backend_type, '') AS backend_type, \
extract(epoch FROM (now() - xact_start))::float8 AS xact_age_s, \
extract(epoch FROM (now() - query_start))::float8 AS query_age_s, \
extract(epoch FROM (now() - state_change))::float8 AS state_age_s, \
coalesce(query, '') AS query, pid = pg_backend_pid() AS own \
FROM pg_stat_activity";

/// The superuser statement the fake answers (the rb postgres session-terminating remediation sends
/// exactly this).
pub const SUPERUSERS_SQL: &str = "SELECT rolname::text AS rolname FROM pg_roles WHERE rolsuper";

/// How `pg_terminate_backend` misbehaves ([`FakePostgres::set_terminate_fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TerminateFault {
    /// Refused with SQLSTATE 42501 (`permission denied to terminate process`): nothing terminated.
    Denied,
    /// The backend is terminated, then the asking connection never gets an answer.
    LoseAnswer,
}

/// Errors of the fake's control API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgFakeError {
    /// A listener could not be opened.
    #[error("fake PostgreSQL: cannot listen: {0}")]
    Bind(#[from] std::io::Error),
}

/// How the fake authenticates a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PgAuth {
    /// No password asked.
    Trust,
    /// `AuthenticationCleartextPassword`.
    Cleartext,
    /// `AuthenticationMD5Password` with a random salt per connection (the default).
    #[default]
    Md5,
}

/// One session of `pg_stat_activity`, scripted (or a live connection, as [`FakePostgres::sessions`]
/// shows it).
#[derive(Debug, Clone, PartialEq)]
pub struct PgSession {
    /// Backend pid (assigned by [`FakePostgres::add_session`] when 0).
    pub pid: i32,
    /// Role name (`None`: NULL, as for background workers).
    pub usename: Option<String>,
    /// Database (`None`: NULL).
    pub datname: Option<String>,
    /// `application_name`.
    pub application_name: String,
    /// Client address (`None`: NULL — a Unix socket or a background worker).
    pub client_addr: Option<String>,
    /// `active`, `idle`, `idle in transaction`, `idle in transaction (aborted)`, … (`None`: NULL).
    pub state: Option<String>,
    /// `client backend`, `autovacuum launcher`, `walsender`, …
    pub backend_type: String,
    /// Age of the open transaction (`None`: no transaction).
    pub xact_age: Option<Duration>,
    /// Age of the current or last statement.
    pub query_age: Option<Duration>,
    /// Time since the state last changed.
    pub state_age: Option<Duration>,
    /// Current or last statement text.
    pub query: String,
}

impl PgSession {
    /// An idle client backend of `user` on database `db`, from 127.0.0.1, no transaction.
    pub fn client(user: &str, db: &str) -> Self {
        Self {
            pid: 0,
            usename: Some(user.to_string()),
            datname: Some(db.to_string()),
            application_name: String::new(),
            client_addr: Some("127.0.0.1".to_string()),
            state: Some("idle".to_string()),
            backend_type: "client backend".to_string(),
            xact_age: None,
            query_age: Some(Duration::from_secs(1)),
            state_age: Some(Duration::from_secs(1)),
            query: String::new(),
        }
    }

    /// A background process (`autovacuum launcher`, `checkpointer`, …): no user, no database.
    pub fn background(backend_type: &str) -> Self {
        Self {
            pid: 0,
            usename: None,
            datname: None,
            application_name: String::new(),
            client_addr: None,
            state: None,
            backend_type: backend_type.to_string(),
            xact_age: None,
            query_age: None,
            state_age: None,
            query: String::new(),
        }
    }

    /// Set the pid.
    pub fn pid(mut self, pid: i32) -> Self {
        self.pid = pid;
        self
    }

    /// Set `application_name`.
    pub fn app(mut self, name: &str) -> Self {
        self.application_name = name.to_string();
        self
    }

    /// Set the state (`active`, `idle in transaction`, …).
    pub fn state(mut self, state: &str) -> Self {
        self.state = Some(state.to_string());
        self
    }

    /// Set the client address.
    pub fn client_addr(mut self, addr: &str) -> Self {
        self.client_addr = Some(addr.to_string());
        self
    }

    /// Set the transaction's age.
    pub fn xact_age(mut self, age: Duration) -> Self {
        self.xact_age = Some(age);
        self
    }

    /// Set the statement's age.
    pub fn query_age(mut self, age: Duration) -> Self {
        self.query_age = Some(age);
        self
    }

    /// Set the time since the last state change.
    pub fn state_age(mut self, age: Duration) -> Self {
        self.state_age = Some(age);
        self
    }

    /// Set the statement text.
    pub fn query(mut self, sql: &str) -> Self {
        self.query = sql.to_string();
        self
    }
}

/// Which protocol carried a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueryProtocol {
    /// A `Query` message.
    Simple,
    /// A `Parse` message (prepared statement, extended protocol).
    Extended,
}

/// One statement the fake received (recorded before it is answered, known or not).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceivedStatement {
    /// The text as sent.
    pub sql: String,
    /// How it came.
    pub protocol: QueryProtocol,
    /// The pid of the connection that sent it.
    pub pid: i32,
}

/// A `pg_terminate_backend` the fake carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Termination {
    /// The pid terminated.
    pub pid: i32,
    /// The pid of the connection that asked.
    pub by: i32,
}

#[derive(Debug)]
struct LiveConn {
    session: PgSession,
    abort: Option<AbortHandle>,
}

#[derive(Debug)]
pub(crate) struct Model {
    settings: BTreeMap<String, String>,
    scripted: Vec<PgSession>,
    live: BTreeMap<i32, LiveConn>,
    pending_abort: BTreeMap<i32, AbortHandle>,
    statements: Vec<ReceivedStatement>,
    terminated: Vec<Termination>,
    superusers: Vec<String>,
    terminate_fault: Option<TerminateFault>,
    next_pid: i32,
    auth: PgAuth,
    user: String,
    password: String,
}

pub(crate) type Shared = Arc<Mutex<Model>>;

pub(crate) fn lock(m: &Mutex<Model>) -> std::sync::MutexGuard<'_, Model> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Model {
    fn alloc_pid(&mut self) -> i32 {
        loop {
            self.next_pid += 1;
            let pid = self.next_pid;
            if !self.live.contains_key(&pid) && !self.scripted.iter().any(|s| s.pid == pid) {
                return pid;
            }
        }
    }

    fn server_version_num(&self) -> i64 {
        self.settings
            .get("server_version_num")
            .and_then(|v| v.parse().ok())
            .unwrap_or(160_004)
    }

    /// The settings the server has (`reserved_connections` exists from PostgreSQL 16 on).
    fn setting(&self, name: &str) -> Option<&str> {
        if name == "reserved_connections" && self.server_version_num() < 160_000 {
            return None;
        }
        self.settings.get(name).map(String::as_str)
    }

    fn server_version(&self) -> String {
        let n = self.server_version_num();
        format!("{}.{}", n / 10_000, n % 10_000)
    }
}

/// Builds a [`FakePostgres`].
#[derive(Debug, Clone)]
pub struct FakePostgresBuilder {
    settings: BTreeMap<String, String>,
    superusers: Vec<String>,
    auth: PgAuth,
    user: String,
    password: String,
}

impl Default for FakePostgresBuilder {
    fn default() -> Self {
        let settings = [
            ("max_connections", "100"),
            ("superuser_reserved_connections", "3"),
            ("reserved_connections", "0"),
            ("server_version_num", "160004"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Self {
            settings,
            superusers: vec!["postgres".to_string()],
            auth: PgAuth::Md5,
            user: "rb".to_string(),
            password: "rb-fake-pass".to_string(),
        }
    }
}

impl FakePostgresBuilder {
    /// Set a setting (`max_connections`, `server_version_num`, …).
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.insert(name.to_string(), value.to_string());
        self
    }

    /// Make `role` a superuser (`pg_roles.rolsuper`; `postgres` is one by default).
    pub fn superuser(mut self, role: &str) -> Self {
        if !self.superusers.iter().any(|r| r == role) {
            self.superusers.push(role.to_string());
        }
        self
    }

    /// How clients authenticate (md5 by default).
    pub fn auth(mut self, auth: PgAuth) -> Self {
        self.auth = auth;
        self
    }

    /// The one role that may log in (`rb` by default).
    pub fn user(mut self, user: &str) -> Self {
        self.user = user.to_string();
        self
    }

    /// Its password (`rb-fake-pass` by default).
    pub fn password(mut self, password: &str) -> Self {
        self.password = password.to_string();
        self
    }

    /// Start listening on `127.0.0.1:0`.
    pub async fn start(self) -> Result<FakePostgres, PgFakeError> {
        let model: Shared = Arc::new(Mutex::new(Model {
            settings: self.settings,
            scripted: Vec::new(),
            live: BTreeMap::new(),
            pending_abort: BTreeMap::new(),
            statements: Vec::new(),
            terminated: Vec::new(),
            superusers: self.superusers,
            terminate_fault: None,
            next_pid: 10_000,
            auth: self.auth,
            user: self.user,
            password: self.password,
        }));
        let inner = TcpListener::bind("127.0.0.1:0").await?;
        let backend_addr = inner.local_addr()?;
        let backend = tokio::spawn(handler::serve(inner, model.clone()));
        let front = Front::start(backend_addr, Framing::Postgres).await?;
        Ok(FakePostgres {
            front,
            model,
            backend,
        })
    }
}

/// A fake PostgreSQL server (see the [module docs](self)). Stops listening when dropped.
#[derive(Debug)]
pub struct FakePostgres {
    front: Front,
    model: Shared,
    backend: JoinHandle<()>,
}

impl Drop for FakePostgres {
    fn drop(&mut self) {
        self.backend.abort();
        self.front.shutdown();
    }
}

impl FakePostgres {
    /// A builder with PostgreSQL 16 defaults: `max_connections` 100,
    /// `superuser_reserved_connections` 3, `reserved_connections` 0, md5 auth, role `rb` /
    /// `rb-fake-pass`.
    pub fn builder() -> FakePostgresBuilder {
        FakePostgresBuilder::default()
    }

    /// Start with the defaults of [`FakePostgres::builder`].
    pub async fn start() -> Result<FakePostgres, PgFakeError> {
        Self::builder().start().await
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.front.addr()
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.front.addr().port()
    }

    /// The role that may log in.
    pub fn user(&self) -> String {
        lock(&self.model).user.clone()
    }

    /// Its password.
    pub fn password(&self) -> String {
        lock(&self.model).password.clone()
    }

    /// `postgres://user:password@127.0.0.1:port/postgres`.
    pub fn url(&self) -> String {
        let m = lock(&self.model);
        format!(
            "postgres://{}:{}@{}/postgres",
            m.user,
            m.password,
            self.front.addr()
        )
    }

    /// Change a setting.
    pub fn set_setting(&self, name: &str, value: &str) {
        lock(&self.model)
            .settings
            .insert(name.to_string(), value.to_string());
    }

    /// Add a scripted session; returns its pid (the one given, or a new one when it is 0).
    pub fn add_session(&self, mut session: PgSession) -> i32 {
        let mut m = lock(&self.model);
        if session.pid == 0 {
            session.pid = m.alloc_pid();
        }
        let pid = session.pid;
        m.scripted.retain(|s| s.pid != pid);
        m.scripted.push(session);
        pid
    }

    /// Remove a scripted session; whether it was there.
    pub fn remove_session(&self, pid: i32) -> bool {
        let mut m = lock(&self.model);
        let before = m.scripted.len();
        m.scripted.retain(|s| s.pid != pid);
        m.scripted.len() != before
    }

    /// Every session `pg_stat_activity` shows now: the scripted ones, then the live connections.
    pub fn sessions(&self) -> Vec<PgSession> {
        let m = lock(&self.model);
        m.scripted
            .iter()
            .cloned()
            .chain(m.live.values().map(|c| c.session.clone()))
            .collect()
    }

    /// Every `pg_terminate_backend` carried out, in order.
    pub fn terminated(&self) -> Vec<Termination> {
        lock(&self.model).terminated.clone()
    }

    /// Every statement received, in order.
    pub fn statements(&self) -> Vec<ReceivedStatement> {
        lock(&self.model).statements.clone()
    }

    /// Make `role` a superuser or not.
    pub fn set_superuser(&self, role: &str, superuser: bool) {
        let mut m = lock(&self.model);
        m.superusers.retain(|r| r != role);
        if superuser {
            m.superusers.push(role.to_string());
        }
    }

    /// Make `pg_terminate_backend` misbehave (`None`: carry it out normally).
    pub fn set_terminate_fault(&self, fault: Option<TerminateFault>) {
        lock(&self.model).terminate_fault = fault;
    }

    /// Forget the statements received so far.
    pub fn clear_statements(&self) {
        lock(&self.model).statements.clear();
    }

    /// Inject a fault (`None` clears it).
    pub fn set_fault(&self, fault: Option<WireFault>) {
        self.front.set_fault(fault);
    }

    /// Delay every message the server sends by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.front.set_latency(latency);
    }

    /// Close the listening socket: new connections are refused from the moment this returns.
    pub async fn refuse_connections(&self) {
        self.front.refuse_connections().await;
    }

    /// Listen again on the same port.
    pub async fn accept_connections(&self) -> Result<(), PgFakeError> {
        Ok(self.front.accept_connections().await?)
    }
}
