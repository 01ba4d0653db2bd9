//! The opensrv-mysql shim of the fake: authentication, the statements it knows, their columns and
//! rows.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use async_trait::async_trait;
use mysql_common::constants::{ColumnFlags, ColumnType};
use opensrv_mysql::{
    AsyncMysqlIntermediary, AsyncMysqlShim, Column, ErrorKind, InitWriter, OkResponse, ParamParser,
    QueryResultWriter, StatementMetaWriter,
};
use tokio::io::AsyncWrite;
use tokio::net::TcpListener;

use super::{
    lock, Kill, KillFault, Live, MyProcess, MyProtocol, ReceivedStatement, Shared, ADMINS_SQL,
    INNODB_TRX_SQL, PROCESSLIST_SQL, VARIABLES_SQL,
};

/// Accept connections on the private listener, one opensrv session each.
pub(super) async fn serve(listener: TcpListener, model: Shared) {
    loop {
        let Ok((socket, peer)) = listener.accept().await else {
            continue;
        };
        // Small packets go out at once (no Nagle delay on loopback, which a paused clock would
        // turn into a client's timeout).
        let _ = socket.set_nodelay(true);
        let id = lock(&model).alloc_id();
        let conn = Conn {
            id,
            host: peer.to_string(),
            model: model.clone(),
            prepared: HashMap::new(),
            next_stmt: 0,
        };
        let task = tokio::spawn(async move {
            let (r, w) = socket.into_split();
            let _ = AsyncMysqlIntermediary::run_on(conn, r, w).await;
        });
        let model = model.clone();
        let abort = task.abort_handle();
        tokio::spawn(async move {
            lock(&model).pending_abort.insert(id, abort);
            let _ = task.await;
            let mut m = lock(&model);
            m.live.remove(&id);
            m.pending_abort.remove(&id);
            m.trx.retain(|t| t.thread_id != id);
        });
    }
}

struct Conn {
    id: u64,
    host: String,
    model: Shared,
    prepared: HashMap<u32, Stmt>,
    next_stmt: u32,
}

/// A statement the fake knows.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Stmt {
    Variables,
    Status(Vec<String>),
    Processlist,
    ShowProcesslist { full: bool },
    InnodbTrx,
    Admins,
    ConnectionId,
    Variable(String),
    SelectOne,
    Kill { id: u64, query_only: bool },
    Set,
    Begin,
    Commit,
    Rollback,
}

pub(super) fn normalize(sql: &str) -> String {
    let s = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    s.trim_end_matches(';').trim().to_ascii_lowercase()
}

fn quoted_literals(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find('\'') {
        let after = &rest[start + 1..];
        match after.find('\'') {
            Some(end) => {
                out.push(after[..end].to_string());
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

/// What went wrong with a statement: the error packet to send.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Refusal {
    kind: ErrorKind,
    message: String,
}

pub(super) fn parse(sql: &str) -> Result<Stmt, Refusal> {
    let n = normalize(sql);
    if n == normalize(VARIABLES_SQL) {
        return Ok(Stmt::Variables);
    }
    if n == normalize(PROCESSLIST_SQL) {
        return Ok(Stmt::Processlist);
    }
    if n == normalize(INNODB_TRX_SQL) {
        return Ok(Stmt::InnodbTrx);
    }
    if n == normalize(ADMINS_SQL) {
        return Ok(Stmt::Admins);
    }
    if let Some(list) = n
        .strip_prefix("show global status where variable_name in (")
        .and_then(|l| l.strip_suffix(')'))
    {
        if !list.contains('(') && !list.contains(')') {
            // Names as sent (the original case), in the order given.
            let orig = sql.split_whitespace().collect::<Vec<_>>().join(" ");
            return Ok(Stmt::Status(quoted_literals(&orig)));
        }
    }
    match n.as_str() {
        "show processlist" => return Ok(Stmt::ShowProcesslist { full: false }),
        "show full processlist" => return Ok(Stmt::ShowProcesslist { full: true }),
        "select connection_id()" => return Ok(Stmt::ConnectionId),
        "select 1" => return Ok(Stmt::SelectOne),
        "begin" | "start transaction" | "start transaction with consistent snapshot" => {
            return Ok(Stmt::Begin)
        }
        "commit" => return Ok(Stmt::Commit),
        "rollback" => return Ok(Stmt::Rollback),
        _ => {}
    }
    if let Some(var) = n.strip_prefix("select @@") {
        if var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !var.is_empty() {
            return Ok(Stmt::Variable(var.to_string()));
        }
    }
    if n.starts_with("set ") {
        return Ok(Stmt::Set);
    }
    if let Some(rest) = n.strip_prefix("kill ") {
        let (query_only, num) = match rest.split_once(' ') {
            Some(("query", num)) => (true, num),
            Some(("connection", num)) => (false, num),
            _ => (false, rest),
        };
        if let Ok(id) = num.trim().parse::<u64>() {
            return Ok(Stmt::Kill { id, query_only });
        }
    }
    if n.contains("processlist") || n.contains("innodb_trx") || n.contains("global status") {
        return Err(Refusal {
            kind: ErrorKind::ER_NOT_SUPPORTED_YET,
            message: format!("the fake MySQL answers only the statements it documents; not: {sql}"),
        });
    }
    Err(Refusal {
        kind: ErrorKind::ER_PARSE_ERROR,
        message: format!(
            "You have an error in your SQL syntax: the fake MySQL does not know the statement: {sql}"
        ),
    })
}

#[derive(Debug, Clone)]
enum V {
    U(Option<u64>),
    U32(Option<u32>),
    F(Option<f64>),
    I32(Option<i32>),
    I(Option<i64>),
    S(Option<String>),
}

fn col(name: &str, ty: ColumnType, flags: ColumnFlags) -> Column {
    Column {
        table: String::new(),
        column: name.to_string(),
        coltype: ty,
        colflags: flags,
    }
}

const UNSIGNED: ColumnFlags = ColumnFlags::UNSIGNED_FLAG;
const NN: ColumnFlags = ColumnFlags::NOT_NULL_FLAG;

/// The column types of MariaDB 10.11 (checked by peers/tests/diff_mariadb.rs) or MySQL 8.
fn columns(stmt: &Stmt, mariadb: bool) -> Vec<Column> {
    use ColumnType::*;
    let s = |n: &str| col(n, MYSQL_TYPE_VAR_STRING, ColumnFlags::empty());
    // CONNECTION_ID() is INT UNSIGNED on MariaDB, BIGINT UNSIGNED on MySQL 8.
    let conn_id = if mariadb {
        MYSQL_TYPE_LONG
    } else {
        MYSQL_TYPE_LONGLONG
    };
    match stmt {
        Stmt::Variables => vec![
            col("max_connections", MYSQL_TYPE_LONGLONG, UNSIGNED),
            s("version"),
            col("own_id", conn_id, UNSIGNED | NN),
        ],
        Stmt::Status(_) => vec![
            col("Variable_name", MYSQL_TYPE_VAR_STRING, NN),
            col("Value", MYSQL_TYPE_VAR_STRING, NN),
        ],
        Stmt::Processlist => vec![
            col("ID", MYSQL_TYPE_LONGLONG, NN),
            col("USER", MYSQL_TYPE_VAR_STRING, NN),
            col("HOST", MYSQL_TYPE_VAR_STRING, NN),
            s("DB"),
            col("COMMAND", MYSQL_TYPE_VAR_STRING, NN),
            col("TIME", MYSQL_TYPE_LONG, NN),
            s("STATE"),
            col("INFO", MYSQL_TYPE_BLOB, ColumnFlags::BLOB_FLAG),
        ],
        Stmt::ShowProcesslist { .. } => {
            let mut c = vec![
                col("Id", MYSQL_TYPE_LONGLONG, NN),
                col("User", MYSQL_TYPE_VAR_STRING, NN),
                col("Host", MYSQL_TYPE_VAR_STRING, NN),
                s("db"),
                col("Command", MYSQL_TYPE_VAR_STRING, NN),
                col("Time", MYSQL_TYPE_LONG, NN),
                s("State"),
                col("Info", MYSQL_TYPE_LONG_BLOB, ColumnFlags::BLOB_FLAG),
            ];
            if mariadb {
                c.push(col("Progress", MYSQL_TYPE_DOUBLE, NN));
            }
            c
        }
        Stmt::InnodbTrx => vec![
            col("trx_mysql_thread_id", MYSQL_TYPE_LONGLONG, UNSIGNED | NN),
            col("trx_state", MYSQL_TYPE_VAR_STRING, NN),
            col("trx_age_s", MYSQL_TYPE_LONGLONG, ColumnFlags::empty()),
        ],
        Stmt::Admins => vec![col("GRANTEE", MYSQL_TYPE_VAR_STRING, NN)],
        Stmt::ConnectionId => vec![col("CONNECTION_ID()", conn_id, UNSIGNED | NN)],
        Stmt::Variable(name) if name == "max_connections" => {
            vec![col(&format!("@@{name}"), MYSQL_TYPE_LONGLONG, UNSIGNED)]
        }
        Stmt::Variable(name) => vec![s(&format!("@@{name}"))],
        Stmt::SelectOne => vec![col("1", MYSQL_TYPE_LONGLONG, NN)],
        Stmt::Kill { .. } | Stmt::Set | Stmt::Begin | Stmt::Commit | Stmt::Rollback => vec![],
    }
}

fn process_row(p: &MyProcess, progress: bool) -> Vec<V> {
    let mut row = vec![
        V::I(Some(p.id as i64)),
        V::S(Some(p.user.clone())),
        V::S(Some(p.host.clone())),
        V::S(p.db.clone()),
        V::S(Some(p.command.clone())),
        V::I32(Some(i32::try_from(p.time).unwrap_or(i32::MAX))),
        V::S(p.state.clone()),
        V::S(p.info.clone()),
    ];
    if progress {
        row.push(V::F(Some(0.0)));
    }
    row
}

impl Conn {
    fn record(&self, sql: &str, protocol: MyProtocol) {
        lock(&self.model).statements.push(ReceivedStatement {
            sql: sql.to_string(),
            protocol,
            id: self.id,
        });
    }

    fn set_running(&self, sql: Option<&str>) {
        let mut m = lock(&self.model);
        if let Some(l) = m.live.get_mut(&self.id) {
            match sql {
                Some(q) => {
                    l.process.command = "Query".to_string();
                    l.process.state = Some("executing".to_string());
                    l.process.info = Some(q.to_string());
                }
                None => {
                    l.process.command = "Sleep".to_string();
                    l.process.state = Some(String::new());
                    l.process.info = None;
                }
            }
            l.process.time = 0;
        }
    }

    /// Carry out `stmt`: rows, or an OK, or an error.
    fn run(&self, stmt: &Stmt) -> Result<Option<Vec<Vec<V>>>, Refusal> {
        let mut m = lock(&self.model);
        let mariadb = m.is_mariadb();
        let conn_id = if mariadb {
            V::U32(Some(self.id as u32))
        } else {
            V::U(Some(self.id))
        };
        let rows = match stmt {
            Stmt::Variables => {
                let max = m
                    .variables
                    .get("max_connections")
                    .and_then(|v| v.parse::<u64>().ok());
                vec![vec![
                    V::U(max),
                    V::S(m.variables.get("version").cloned()),
                    conn_id,
                ]]
            }
            Stmt::Variable(name) => {
                let v = m.variables.get(name).cloned().ok_or_else(|| Refusal {
                    kind: ErrorKind::ER_UNKNOWN_SYSTEM_VARIABLE,
                    message: format!("Unknown system variable '{name}'"),
                })?;
                if name == "max_connections" {
                    vec![vec![V::U(v.parse().ok())]]
                } else {
                    vec![vec![V::S(Some(v))]]
                }
            }
            Stmt::Status(names) => {
                let running = m
                    .scripted
                    .iter()
                    .map(|p| &p.command)
                    .chain(m.live.values().map(|l| &l.process.command))
                    .filter(|c| c.as_str() == "Query")
                    .count();
                let counted: HashMap<&str, String> = [
                    ("threads_connected", m.connected().to_string()),
                    ("threads_running", running.to_string()),
                    ("max_used_connections", m.max_used.to_string()),
                    ("aborted_connects", m.aborted_connects.to_string()),
                ]
                .into_iter()
                .collect();
                // Real servers answer in their own order (alphabetical), with their own case.
                let mut all: Vec<(String, String)> = Vec::new();
                for name in names {
                    let lower = name.to_ascii_lowercase();
                    let set = m
                        .status
                        .iter()
                        .find(|(k, _)| k.to_ascii_lowercase() == lower)
                        .map(|(k, v)| (k.clone(), v.clone()));
                    let row = match set {
                        Some(kv) => Some(kv),
                        None => counted.get(lower.as_str()).map(|v| {
                            let mut canon = lower.clone();
                            if let Some(f) = canon.get_mut(0..1) {
                                f.make_ascii_uppercase();
                            }
                            (canon, v.clone())
                        }),
                    };
                    if let Some(kv) = row {
                        if !all.iter().any(|(k, _)| k.eq_ignore_ascii_case(&kv.0)) {
                            all.push(kv);
                        }
                    }
                }
                all.sort_by_key(|(k, _)| k.to_ascii_lowercase());
                all.into_iter()
                    .map(|(k, v)| vec![V::S(Some(k)), V::S(Some(v))])
                    .collect()
            }
            Stmt::Processlist | Stmt::ShowProcesslist { .. } => {
                let progress = mariadb && matches!(stmt, Stmt::ShowProcesslist { .. });
                m.scripted
                    .iter()
                    .chain(m.live.values().map(|l| &l.process))
                    .map(|p| process_row(p, progress))
                    .collect()
            }
            Stmt::InnodbTrx => {
                let mut trx: Vec<(u64, String, Duration)> = m
                    .trx
                    .iter()
                    .map(|t| (t.thread_id, t.state.clone(), t.age))
                    .collect();
                trx.extend(
                    m.live
                        .iter()
                        .filter_map(|(id, l)| l.trx_age.map(|a| (*id, "RUNNING".to_string(), a))),
                );
                trx.into_iter()
                    .map(|(id, state, age)| {
                        vec![
                            V::U(Some(id)),
                            V::S(Some(state)),
                            V::I(Some(age.as_secs() as i64)),
                        ]
                    })
                    .collect()
            }
            Stmt::Admins => m
                .admins
                .iter()
                .map(|g| vec![V::S(Some(g.clone()))])
                .collect(),
            Stmt::ConnectionId => vec![vec![conn_id]],
            Stmt::SelectOne => vec![vec![V::I(Some(1))]],
            Stmt::Kill { id, query_only } => {
                let id = *id;
                if m.kill_fault == Some(KillFault::Denied) {
                    return Err(Refusal {
                        kind: ErrorKind::ER_KILL_DENIED_ERROR,
                        message: format!("You are not owner of thread {id}"),
                    });
                }
                let mut found = false;
                if *query_only {
                    if let Some(p) = m.scripted.iter_mut().find(|p| p.id == id) {
                        *p = p.clone().sleeping(0);
                        found = true;
                    }
                    found |= m.live.contains_key(&id);
                } else {
                    let before = m.scripted.len();
                    m.scripted.retain(|p| p.id != id);
                    found = m.scripted.len() != before;
                    m.trx.retain(|t| t.thread_id != id);
                    if let Some(l) = m.live.remove(&id) {
                        found = true;
                        if let Some(a) = l.abort {
                            a.abort();
                        }
                    }
                }
                if !found {
                    return Err(Refusal {
                        kind: ErrorKind::ER_NO_SUCH_THREAD,
                        message: format!("Unknown thread id: {id}"),
                    });
                }
                m.kills.push(Kill {
                    id,
                    query_only: *query_only,
                    by: self.id,
                });
                return Ok(None);
            }
            Stmt::Set => return Ok(None),
            Stmt::Begin => {
                if let Some(l) = m.live.get_mut(&self.id) {
                    l.trx_age.get_or_insert(Duration::ZERO);
                }
                return Ok(None);
            }
            Stmt::Commit | Stmt::Rollback => {
                if let Some(l) = m.live.get_mut(&self.id) {
                    l.trx_age = None;
                }
                return Ok(None);
            }
        };
        Ok(Some(rows))
    }

    async fn answer<'a, W: AsyncWrite + Send + Unpin>(
        &mut self,
        sql: &str,
        stmt: Result<Stmt, Refusal>,
        results: QueryResultWriter<'a, W>,
    ) -> io::Result<()> {
        let stmt = match stmt {
            Ok(s) => s,
            Err(r) => return results.error(r.kind, r.message.as_bytes()).await,
        };
        self.set_running(Some(sql));
        let outcome = self.run(&stmt);
        self.set_running(None);
        let lose = matches!(stmt, Stmt::Kill { .. })
            && lock(&self.model).kill_fault == Some(KillFault::LoseAnswer);
        if lose {
            // The kill happened; its answer never leaves.
            std::future::pending::<()>().await;
        }
        match outcome {
            Err(r) => results.error(r.kind, r.message.as_bytes()).await,
            Ok(None) => results.completed(OkResponse::default()).await,
            Ok(Some(rows)) => {
                let cols = columns(&stmt, lock(&self.model).is_mariadb());
                let mut w = results.start(&cols).await?;
                for row in rows {
                    for v in row {
                        match v {
                            V::U(x) => w.write_col(x)?,
                            V::I(x) => w.write_col(x)?,
                            V::I32(x) => w.write_col(x)?,
                            V::U32(x) => w.write_col(x)?,
                            V::F(x) => w.write_col(x)?,
                            V::S(x) => w.write_col(x)?,
                        }
                    }
                    w.end_row().await?;
                }
                w.finish().await
            }
        }
    }
}

#[async_trait]
impl<W: AsyncWrite + Send + Unpin> AsyncMysqlShim<W> for Conn {
    type Error = io::Error;

    fn version(&self) -> String {
        lock(&self.model)
            .variables
            .get("version")
            .cloned()
            .unwrap_or_else(|| "10.11.6-MariaDB".to_string())
    }

    fn connect_id(&self) -> u32 {
        self.id as u32
    }

    async fn authenticate(
        &self,
        _auth_plugin: &str,
        username: &[u8],
        salt: &[u8],
        auth_data: &[u8],
    ) -> bool {
        let mut m = lock(&self.model);
        let ok = username == m.user.as_bytes()
            && if m.password.is_empty() {
                auth_data.is_empty()
            } else {
                mysql_common::scramble::scramble_native(salt, m.password.as_bytes())
                    .is_some_and(|s| s[..] == *auth_data)
            };
        if ok {
            let process = MyProcess::client(&m.user.clone(), &self.host)
                .id(self.id)
                .sleeping(0);
            let abort = m.pending_abort.get(&self.id).cloned();
            m.live.insert(
                self.id,
                Live {
                    process,
                    trx_age: None,
                    abort,
                },
            );
            m.note_connected();
        } else {
            m.aborted_connects += 1;
        }
        ok
    }

    async fn on_init<'a>(&'a mut self, db: &'a str, writer: InitWriter<'a, W>) -> io::Result<()> {
        if let Some(l) = lock(&self.model).live.get_mut(&self.id) {
            l.process.db = Some(db.to_string());
        }
        writer.ok().await
    }

    async fn on_prepare<'a>(
        &'a mut self,
        query: &'a str,
        info: StatementMetaWriter<'a, W>,
    ) -> io::Result<()> {
        self.record(query, MyProtocol::Prepared);
        match parse(query) {
            Err(r) => info.error(r.kind, r.message.as_bytes()).await,
            Ok(stmt) => {
                self.next_stmt += 1;
                let id = self.next_stmt;
                let cols = columns(&stmt, lock(&self.model).is_mariadb());
                self.prepared.insert(id, stmt);
                info.reply(id, &[], &cols).await
            }
        }
    }

    async fn on_execute<'a>(
        &'a mut self,
        id: u32,
        _params: ParamParser<'a>,
        results: QueryResultWriter<'a, W>,
    ) -> io::Result<()> {
        let stmt = self.prepared.get(&id).cloned().ok_or_else(|| Refusal {
            kind: ErrorKind::ER_UNKNOWN_STMT_HANDLER,
            message: format!(
                "Unknown prepared statement handler ({id}) given to mysqld_stmt_execute"
            ),
        });
        let sql = match &stmt {
            Ok(s) => format!("{s:?}"),
            Err(_) => String::new(),
        };
        self.answer(&sql, stmt, results).await
    }

    async fn on_close<'a>(&'a mut self, stmt: u32)
    where
        W: 'async_trait,
    {
        self.prepared.remove(&stmt);
    }

    async fn on_query<'a>(
        &'a mut self,
        query: &'a str,
        results: QueryResultWriter<'a, W>,
    ) -> io::Result<()> {
        self.record(query, MyProtocol::Text);
        let stmt = parse(query);
        self.answer(query, stmt, results).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::STATUS_SQL;
    use super::*;

    #[test]
    fn knows_its_statements_and_refuses_others() {
        assert_eq!(parse(VARIABLES_SQL), Ok(Stmt::Variables));
        assert_eq!(parse(PROCESSLIST_SQL), Ok(Stmt::Processlist));
        assert_eq!(parse(INNODB_TRX_SQL), Ok(Stmt::InnodbTrx));
        assert_eq!(parse(ADMINS_SQL), Ok(Stmt::Admins));
        assert!(
            matches!(parse(STATUS_SQL), Ok(Stmt::Status(v)) if v.len() == 5 && v[0] == "Threads_connected")
        );
        assert_eq!(
            parse("KILL 42"),
            Ok(Stmt::Kill {
                id: 42,
                query_only: false
            })
        );
        assert_eq!(
            parse("kill query 7;"),
            Ok(Stmt::Kill {
                id: 7,
                query_only: true
            })
        );
        assert_eq!(
            parse("SET sql_mode=(SELECT CONCAT(@@sql_mode, ',PIPES_AS_CONCAT')),time_zone='+00:00',NAMES utf8mb4 COLLATE utf8mb4_unicode_ci;"),
            Ok(Stmt::Set)
        );
        assert_eq!(
            parse("SELECT * FROM information_schema.PROCESSLIST").map_err(|r| r.kind),
            Err(ErrorKind::ER_NOT_SUPPORTED_YET)
        );
        assert_eq!(
            parse("DROP TABLE t").map_err(|r| r.kind),
            Err(ErrorKind::ER_PARSE_ERROR)
        );
    }
}
