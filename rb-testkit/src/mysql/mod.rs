//! A fake MySQL / MariaDB server on the real wire protocol (opensrv-mysql): sqlx, the `mysql` /
//! `mariadb` clients or any other driver connects (`mysql_native_password`), runs its startup
//! statements (`SET sql_mode=…, time_zone=…, NAMES …`) and the status statements a
//! connection-saturation probe issues, over the text and the prepared-statement protocol.
//!
//! There is no SQL engine: the fake holds a scriptable model — variables (`max_connections`,
//! `version`), status counters, the processlist and `information_schema.INNODB_TRX` — and
//! **answers these statements** (compared after collapsing whitespace and ignoring case and a
//! trailing `;`):
//!
//! | statement | answer |
//! | --- | --- |
//! | [`VARIABLES_SQL`] | `max_connections` (BIGINT UNSIGNED), `version` (VARCHAR), `own_id` (INT UNSIGNED on MariaDB, BIGINT UNSIGNED on MySQL 8: by `version`) |
//! | [`STATUS_SQL`] (`SHOW GLOBAL STATUS WHERE Variable_name IN ('…', …)`, any list) | `(Variable_name, Value)` VARCHAR rows; `Threads_connected` and `Threads_running` are counted from the model unless set, `Aborted_connects` grows with each failed login |
//! | [`PROCESSLIST_SQL`], `SHOW [FULL] PROCESSLIST` | every scripted process and every live connection (the asking one as `Query` running its own statement); MariaDB's `SHOW` adds `Progress` |
//! | [`INNODB_TRX_SQL`] | the scripted transactions and those of live connections (`START TRANSACTION` / `BEGIN`) |
//! | `SELECT CONNECTION_ID()`, `SELECT @@max_connections`, `SELECT @@version`, `SELECT 1` | one row |
//! | `KILL [CONNECTION \| QUERY] <id>` | the process removed (a live connection closed) or its statement ended; recorded in [`FakeMysql::kills`]; error 1094 for an unknown id |
//! | [`ADMINS_SQL`] | one `GRANTEE` (`'user'@'host'`) row per account with `SUPER` or `CONNECTION ADMIN` ([`FakeMysqlBuilder::admin`]; `'root'@'localhost'` by default) |
//! | `SET …`, `USE <db>` | OK |
//! | `START TRANSACTION`, `BEGIN`, `COMMIT`, `ROLLBACK` | the live connection's transaction opens / closes in `INNODB_TRX` |
//!
//! [`FakeMysql::set_kill_fault`] makes `KILL` misbehave as a real server or network can: refused with
//! error 1095 (`You are not owner of thread`), or carried out with its answer never sent.
//!
//! Anything else gets an error packet — 1064 (`ER_PARSE_ERROR`, SQLSTATE 42000) for an unknown
//! statement, 1235 (`ER_NOT_SUPPORTED_YET`) for another shape of a known table — never silence.
//! Faults ([`crate::sqlwire::WireFault`]) act on the bytes, as for [`crate::postgres`]; every
//! statement is recorded ([`FakeMysql::statements`]).

mod shim;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle};

use crate::sqlwire::{Framing, Front, WireFault};

/// The variables statement the fake answers (the rb mysql probe sends exactly this).
pub const VARIABLES_SQL: &str =
    "SELECT @@max_connections AS max_connections, @@version AS version, CONNECTION_ID() AS own_id";

/// The status statement the fake answers (the rb mysql probe sends exactly this).
pub const STATUS_SQL: &str = "SHOW GLOBAL STATUS WHERE Variable_name IN ('Threads_connected', \
'Threads_running', 'Aborted_connects', 'Aborted_clients', 'Max_used_connections')";

/// The processlist statement the fake answers (the rb mysql probe sends exactly this).
pub const PROCESSLIST_SQL: &str =
    "SELECT ID, USER, HOST, DB, COMMAND, TIME, STATE, INFO FROM information_schema.PROCESSLIST";

/// The InnoDB transactions statement the fake answers (the rb mysql probe sends exactly this).
pub const INNODB_TRX_SQL: &str = "SELECT trx_mysql_thread_id, trx_state, \
TIMESTAMPDIFF(SECOND, trx_started, NOW()) AS trx_age_s FROM information_schema.INNODB_TRX";

/// The administrators statement the fake answers (the rb mysql session-killing remediation sends
/// exactly this).
pub const ADMINS_SQL: &str = "SELECT DISTINCT GRANTEE FROM information_schema.USER_PRIVILEGES \
WHERE PRIVILEGE_TYPE IN ('SUPER', 'CONNECTION ADMIN', 'CONNECTION_ADMIN')";

/// How `KILL` misbehaves ([`FakeMysql::set_kill_fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KillFault {
    /// Refused with error 1095 (`You are not owner of thread <id>`): nothing killed.
    Denied,
    /// The kill is carried out, then the asking connection never gets an answer.
    LoseAnswer,
}

/// Errors of the fake's control API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MysqlFakeError {
    /// A listener could not be opened.
    #[error("fake MySQL: cannot listen: {0}")]
    Bind(#[from] std::io::Error),
}

/// One row of the processlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MyProcess {
    /// Connection id (assigned by [`FakeMysql::add_process`] when 0).
    pub id: u64,
    /// User (`system user` for background threads).
    pub user: String,
    /// `host:port` of the client (empty for background threads).
    pub host: String,
    /// Current database.
    pub db: Option<String>,
    /// `Sleep`, `Query`, `Daemon`, `Binlog Dump`, …
    pub command: String,
    /// Seconds in the current state.
    pub time: i64,
    /// Thread state (`executing`, `Sending data`, …).
    pub state: Option<String>,
    /// Statement text.
    pub info: Option<String>,
}

impl MyProcess {
    /// A sleeping client connection of `user` from `host` (e.g. `10.0.0.5:51234`).
    pub fn client(user: &str, host: &str) -> Self {
        Self {
            id: 0,
            user: user.to_string(),
            host: host.to_string(),
            db: None,
            command: "Sleep".to_string(),
            time: 1,
            state: Some(String::new()),
            info: None,
        }
    }

    /// A background thread (`system user`, command `Daemon`).
    pub fn daemon(state: &str) -> Self {
        Self {
            id: 0,
            user: "system user".to_string(),
            host: String::new(),
            db: None,
            command: "Daemon".to_string(),
            time: 0,
            state: Some(state.to_string()),
            info: None,
        }
    }

    /// Set the id.
    pub fn id(mut self, id: u64) -> Self {
        self.id = id;
        self
    }

    /// Set the database.
    pub fn db(mut self, db: &str) -> Self {
        self.db = Some(db.to_string());
        self
    }

    /// Running `sql` for `secs` seconds (command `Query`, state `executing`).
    pub fn running(mut self, sql: &str, secs: i64) -> Self {
        self.command = "Query".to_string();
        self.time = secs;
        self.state = Some("executing".to_string());
        self.info = Some(sql.to_string());
        self
    }

    /// Sleeping for `secs` seconds.
    pub fn sleeping(mut self, secs: i64) -> Self {
        self.command = "Sleep".to_string();
        self.time = secs;
        self.state = Some(String::new());
        self.info = None;
        self
    }
}

/// One row of `information_schema.INNODB_TRX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MyTrx {
    /// `trx_mysql_thread_id`: the connection owning it.
    pub thread_id: u64,
    /// `RUNNING`, `LOCK WAIT`, …
    pub state: String,
    /// Age (`NOW() − trx_started`).
    pub age: Duration,
}

/// A `KILL` the fake carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Kill {
    /// The connection id killed.
    pub id: u64,
    /// `KILL QUERY` (the statement only) rather than `KILL [CONNECTION]`.
    pub query_only: bool,
    /// The connection that asked.
    pub by: u64,
}

/// Which protocol carried a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MyProtocol {
    /// `COM_QUERY` (text protocol).
    Text,
    /// `COM_STMT_PREPARE`.
    Prepared,
}

/// One statement the fake received (recorded before it is answered).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceivedStatement {
    /// The text as sent.
    pub sql: String,
    /// How it came.
    pub protocol: MyProtocol,
    /// The connection that sent it.
    pub id: u64,
}

#[derive(Debug)]
pub(crate) struct Live {
    process: MyProcess,
    trx_age: Option<Duration>,
    abort: Option<AbortHandle>,
}

#[derive(Debug)]
pub(crate) struct Model {
    variables: BTreeMap<String, String>,
    status: BTreeMap<String, String>,
    scripted: Vec<MyProcess>,
    trx: Vec<MyTrx>,
    live: BTreeMap<u64, Live>,
    pending_abort: BTreeMap<u64, AbortHandle>,
    statements: Vec<ReceivedStatement>,
    kills: Vec<Kill>,
    admins: Vec<String>,
    kill_fault: Option<KillFault>,
    next_id: u64,
    max_used: u64,
    aborted_connects: u64,
    user: String,
    password: String,
}

pub(crate) type Shared = Arc<Mutex<Model>>;

pub(crate) fn lock(m: &Mutex<Model>) -> std::sync::MutexGuard<'_, Model> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Model {
    fn alloc_id(&mut self) -> u64 {
        loop {
            self.next_id += 1;
            let id = self.next_id;
            if !self.live.contains_key(&id) && !self.scripted.iter().any(|p| p.id == id) {
                return id;
            }
        }
    }

    /// Client connections (background threads excluded), as `Threads_connected` counts them.
    fn connected(&self) -> u64 {
        let scripted = self
            .scripted
            .iter()
            .filter(|p| p.command != "Daemon" && p.user != "system user")
            .count();
        (scripted + self.live.len()) as u64
    }

    /// Whether `version` names MariaDB (its column types differ from MySQL 8's here and there).
    fn is_mariadb(&self) -> bool {
        self.variables
            .get("version")
            .is_some_and(|v| v.to_ascii_lowercase().contains("mariadb"))
    }

    fn note_connected(&mut self) {
        self.max_used = self.max_used.max(self.connected());
    }
}

/// Builds a [`FakeMysql`].
#[derive(Debug, Clone)]
pub struct FakeMysqlBuilder {
    variables: BTreeMap<String, String>,
    status: BTreeMap<String, String>,
    admins: Vec<String>,
    user: String,
    password: String,
}

impl Default for FakeMysqlBuilder {
    fn default() -> Self {
        let variables = [("max_connections", "151"), ("version", "10.11.6-MariaDB")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let status = [("Aborted_clients", "0")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self {
            variables,
            status,
            admins: vec!["'root'@'localhost'".to_string()],
            user: "rb".to_string(),
            password: "rb-fake-pass".to_string(),
        }
    }
}

impl FakeMysqlBuilder {
    /// Set a variable (`max_connections`, `version`).
    pub fn variable(mut self, name: &str, value: &str) -> Self {
        self.variables.insert(name.to_string(), value.to_string());
        self
    }

    /// Set a status counter (overrides what the fake would count).
    pub fn status(mut self, name: &str, value: &str) -> Self {
        self.status.insert(name.to_string(), value.to_string());
        self
    }

    /// Give `'user'@'host'` `SUPER` (it is listed by [`ADMINS_SQL`]; `'root'@'localhost'` is by
    /// default).
    pub fn admin(mut self, user: &str, host: &str) -> Self {
        let grantee = format!("'{user}'@'{host}'");
        if !self.admins.contains(&grantee) {
            self.admins.push(grantee);
        }
        self
    }

    /// The one user that may log in (`rb` by default).
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
    pub async fn start(self) -> Result<FakeMysql, MysqlFakeError> {
        let model: Shared = Arc::new(Mutex::new(Model {
            variables: self.variables,
            status: self.status,
            scripted: Vec::new(),
            trx: Vec::new(),
            live: BTreeMap::new(),
            pending_abort: BTreeMap::new(),
            statements: Vec::new(),
            kills: Vec::new(),
            admins: self.admins,
            kill_fault: None,
            next_id: 100,
            max_used: 0,
            aborted_connects: 0,
            user: self.user,
            password: self.password,
        }));
        let inner = TcpListener::bind("127.0.0.1:0").await?;
        let backend_addr = inner.local_addr()?;
        let backend = tokio::spawn(shim::serve(inner, model.clone()));
        let front = Front::start(backend_addr, Framing::Mysql).await?;
        Ok(FakeMysql {
            front,
            model,
            backend,
        })
    }
}

/// A fake MySQL / MariaDB server (see the [module docs](self)). Stops listening when dropped.
#[derive(Debug)]
pub struct FakeMysql {
    front: Front,
    model: Shared,
    backend: JoinHandle<()>,
}

impl Drop for FakeMysql {
    fn drop(&mut self) {
        self.backend.abort();
        self.front.shutdown();
    }
}

impl FakeMysql {
    /// A builder with MariaDB 10.11 defaults: `max_connections` 151, user `rb` / `rb-fake-pass`.
    pub fn builder() -> FakeMysqlBuilder {
        FakeMysqlBuilder::default()
    }

    /// Start with the defaults of [`FakeMysql::builder`].
    pub async fn start() -> Result<FakeMysql, MysqlFakeError> {
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

    /// The user that may log in.
    pub fn user(&self) -> String {
        lock(&self.model).user.clone()
    }

    /// Its password.
    pub fn password(&self) -> String {
        lock(&self.model).password.clone()
    }

    /// `mysql://user:password@127.0.0.1:port`.
    pub fn url(&self) -> String {
        let m = lock(&self.model);
        format!("mysql://{}:{}@{}", m.user, m.password, self.front.addr())
    }

    /// Change a variable.
    pub fn set_variable(&self, name: &str, value: &str) {
        lock(&self.model)
            .variables
            .insert(name.to_string(), value.to_string());
    }

    /// Set a status counter (overrides what the fake would count).
    pub fn set_status(&self, name: &str, value: &str) {
        lock(&self.model)
            .status
            .insert(name.to_string(), value.to_string());
    }

    /// Add a scripted process; its id (the one given, or a new one when 0).
    pub fn add_process(&self, mut process: MyProcess) -> u64 {
        let mut m = lock(&self.model);
        if process.id == 0 {
            process.id = m.alloc_id();
        }
        let id = process.id;
        m.scripted.retain(|p| p.id != id);
        m.scripted.push(process);
        m.note_connected();
        id
    }

    /// Remove a scripted process (and its transaction); whether it was there.
    pub fn remove_process(&self, id: u64) -> bool {
        let mut m = lock(&self.model);
        let before = m.scripted.len();
        m.scripted.retain(|p| p.id != id);
        m.trx.retain(|t| t.thread_id != id);
        m.scripted.len() != before
    }

    /// Open an InnoDB transaction for connection `thread_id`, `age` old.
    pub fn add_trx(&self, thread_id: u64, age: Duration) {
        let mut m = lock(&self.model);
        m.trx.retain(|t| t.thread_id != thread_id);
        m.trx.push(MyTrx {
            thread_id,
            state: "RUNNING".to_string(),
            age,
        });
    }

    /// The processlist now: scripted processes, then live connections.
    pub fn processes(&self) -> Vec<MyProcess> {
        let m = lock(&self.model);
        m.scripted
            .iter()
            .cloned()
            .chain(m.live.values().map(|l| l.process.clone()))
            .collect()
    }

    /// Every `KILL` carried out, in order.
    pub fn kills(&self) -> Vec<Kill> {
        lock(&self.model).kills.clone()
    }

    /// Every statement received, in order.
    pub fn statements(&self) -> Vec<ReceivedStatement> {
        lock(&self.model).statements.clone()
    }

    /// Forget the statements received so far.
    pub fn clear_statements(&self) {
        lock(&self.model).statements.clear();
    }

    /// Give or take `SUPER` of `'user'@'host'`.
    pub fn set_admin(&self, user: &str, host: &str, admin: bool) {
        let grantee = format!("'{user}'@'{host}'");
        let mut m = lock(&self.model);
        m.admins.retain(|g| g != &grantee);
        if admin {
            m.admins.push(grantee);
        }
    }

    /// Make `KILL` misbehave (`None`: carry it out normally).
    pub fn set_kill_fault(&self, fault: Option<KillFault>) {
        lock(&self.model).kill_fault = fault;
    }

    /// Inject a fault (`None` clears it).
    pub fn set_fault(&self, fault: Option<WireFault>) {
        self.front.set_fault(fault);
    }

    /// Delay every packet the server sends by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.front.set_latency(latency);
    }

    /// Close the listening socket: new connections are refused from the moment this returns.
    pub async fn refuse_connections(&self) {
        self.front.refuse_connections().await;
    }

    /// Listen again on the same port.
    pub async fn accept_connections(&self) -> Result<(), MysqlFakeError> {
        Ok(self.front.accept_connections().await?)
    }
}
