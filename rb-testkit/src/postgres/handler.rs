//! pgwire handlers of the fake: authentication, the statements it knows, their schemas and rows.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::{stream, Sink, SinkExt};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    ServerParameterProvider, StartupHandler,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DataRowEncoder, DescribePortalResponse, DescribeStatementResponse, FieldFormat, FieldInfo,
    QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, SecretKey};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;

use super::{
    lock, LiveConn, PgAuth, PgSession, QueryProtocol, ReceivedStatement, Shared, TerminateFault,
    Termination, ACTIVITY_SQL, SUPERUSERS_SQL,
};

/// Accept connections on the private listener, one pgwire session each.
pub(super) async fn serve(listener: TcpListener, model: Shared) {
    loop {
        let Ok((socket, peer)) = listener.accept().await else {
            continue;
        };
        // Small messages go out at once (no Nagle delay on loopback, which a paused clock would
        // turn into a client's timeout).
        let _ = socket.set_nodelay(true);
        let pid = lock(&model).alloc_pid();
        let backend = Arc::new(Backend {
            pid,
            peer: peer.ip().to_string(),
            model: model.clone(),
            salt: Mutex::new([0; 4]),
        });
        let model = model.clone();
        let task = tokio::spawn(async move {
            let handlers = Handlers { backend };
            let _ = pgwire::tokio::process_socket(socket, None, handlers).await;
        });
        let abort = task.abort_handle();
        let model2 = model.clone();
        tokio::spawn(async move {
            // Registered at authentication; the abort handle lets pg_terminate_backend close it.
            {
                let mut m = lock(&model2);
                m.live
                    .entry(pid)
                    .and_modify(|c| c.abort = Some(abort.clone()));
                m.pending_abort.insert(pid, abort);
            }
            let _ = task.await;
            let mut m = lock(&model2);
            m.live.remove(&pid);
            m.pending_abort.remove(&pid);
        });
    }
}

struct Handlers {
    backend: Arc<Backend>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.backend.clone()
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.backend.clone()
    }
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.backend.clone()
    }
}

struct Backend {
    pid: i32,
    peer: String,
    model: Shared,
    salt: Mutex<[u8; 4]>,
}

fn user_error(severity: &str, code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.to_string(),
        code.to_string(),
        message.into(),
    )))
}

struct Params {
    version: String,
    application_name: String,
}

impl ServerParameterProvider for Params {
    fn server_parameters<C>(&self, _client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let mut p = HashMap::new();
        for (k, v) in [
            ("server_version", self.version.as_str()),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("TimeZone", "UTC"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("IntervalStyle", "postgres"),
            ("is_superuser", "off"),
            ("application_name", self.application_name.as_str()),
        ] {
            p.insert(k.to_string(), v.to_string());
        }
        Some(p)
    }
}

impl Backend {
    fn register(&self, client_meta: &HashMap<String, String>) {
        let user = client_meta.get("user").cloned().unwrap_or_default();
        let db = client_meta
            .get("database")
            .cloned()
            .unwrap_or_else(|| user.clone());
        let app = client_meta
            .get("application_name")
            .cloned()
            .unwrap_or_default();
        let mut session = PgSession::client(&user, &db).pid(self.pid).app(&app);
        session.client_addr = Some(self.peer.clone());
        session.query_age = None;
        session.state_age = Some(Duration::ZERO);
        let mut m = lock(&self.model);
        let abort = m.pending_abort.get(&self.pid).cloned();
        m.live.insert(self.pid, LiveConn { session, abort });
    }

    fn set_state(&self, state: &str, query: Option<&str>, in_xact: Option<bool>) {
        let mut m = lock(&self.model);
        if let Some(c) = m.live.get_mut(&self.pid) {
            c.session.state = Some(state.to_string());
            c.session.state_age = Some(Duration::ZERO);
            if let Some(q) = query {
                c.session.query = q.to_string();
                c.session.query_age = Some(Duration::ZERO);
            }
            match in_xact {
                Some(true) if c.session.xact_age.is_none() => {
                    c.session.xact_age = Some(Duration::ZERO)
                }
                Some(false) => c.session.xact_age = None,
                _ => {}
            }
        }
    }

    /// With [`TerminateFault::LoseAnswer`], never answer (the termination already happened).
    async fn maybe_lose_answer(&self) {
        let lose = lock(&self.model).terminate_fault == Some(TerminateFault::LoseAnswer);
        if lose {
            std::future::pending::<()>().await;
        }
    }

    fn record(&self, sql: &str, protocol: QueryProtocol) {
        lock(&self.model).statements.push(ReceivedStatement {
            sql: sql.to_string(),
            protocol,
            pid: self.pid,
        });
    }
}

#[async_trait]
impl StartupHandler for Backend {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (auth, user, password, version) = {
            let m = lock(&self.model);
            (
                m.auth,
                m.user.clone(),
                m.password.clone(),
                m.server_version(),
            )
        };
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_pid_and_secret_key(self.pid, SecretKey::I32(self.pid ^ 0x5a5a));
                let given = client.metadata().get("user").cloned().unwrap_or_default();
                match auth {
                    PgAuth::Trust => {
                        if given != user {
                            return Err(user_error(
                                "FATAL",
                                "28000",
                                format!("role \"{given}\" does not exist"),
                            ));
                        }
                        self.finish(client, version).await?;
                    }
                    PgAuth::Cleartext => {
                        client.set_state(PgWireConnectionState::AuthenticationInProgress);
                        client
                            .send(PgWireBackendMessage::Authentication(
                                Authentication::CleartextPassword,
                            ))
                            .await?;
                    }
                    PgAuth::Md5 => {
                        client.set_state(PgWireConnectionState::AuthenticationInProgress);
                        let salt: [u8; 4] = rand::random();
                        *self.salt.lock().unwrap_or_else(|p| p.into_inner()) = salt;
                        client
                            .send(PgWireBackendMessage::Authentication(
                                Authentication::MD5Password(salt.to_vec()),
                            ))
                            .await?;
                    }
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                let pwd = pwd.into_password()?;
                let given = client.metadata().get("user").cloned().unwrap_or_default();
                let expected = match auth {
                    PgAuth::Md5 => {
                        let salt = *self.salt.lock().unwrap_or_else(|p| p.into_inner());
                        pgwire::api::auth::md5pass::hash_md5_password(&user, &password, &salt)
                    }
                    _ => password,
                };
                if given == user && pwd.password == expected {
                    self.finish(client, version).await?;
                } else {
                    return Err(user_error(
                        "FATAL",
                        "28P01",
                        format!("password authentication failed for user \"{given}\""),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl Backend {
    async fn finish<C>(&self, client: &mut C, version: String) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let application_name = client
            .metadata()
            .get("application_name")
            .cloned()
            .unwrap_or_default();
        self.register(client.metadata());
        finish_authentication(
            client,
            &Params {
                version,
                application_name,
            },
        )
        .await
    }
}

/// A statement the fake knows, as parsed.
#[derive(Debug, Clone)]
pub(super) enum Stmt {
    Settings(Vec<String>),
    Show(String),
    CurrentSetting(String),
    BackendPid(String),
    Activity,
    Superusers,
    Terminate(Option<i32>),
    Begin,
    Commit,
    Rollback,
    SelectOne,
    Version,
    Empty,
}

/// Collapse whitespace, lower-case, drop a trailing `;`.
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

fn one_literal(inner: &str) -> Option<String> {
    let inner = inner.trim();
    let unq = inner.strip_prefix('\'')?.strip_suffix('\'')?;
    (!unq.contains('\'')).then(|| unq.to_string())
}

pub(super) fn parse(sql: &str) -> PgWireResult<Stmt> {
    let n = normalize(sql);
    if n.is_empty() {
        return Ok(Stmt::Empty);
    }
    if n == normalize(ACTIVITY_SQL) {
        return Ok(Stmt::Activity);
    }
    if n == normalize(SUPERUSERS_SQL) {
        return Ok(Stmt::Superusers);
    }
    let settings_prefix = "select name, setting from pg_settings where name in (";
    if let Some(list) = n.strip_prefix(settings_prefix) {
        if let Some(list) = list.strip_suffix(')') {
            if !list.contains('(') && !list.contains(')') {
                return Ok(Stmt::Settings(quoted_literals(list)));
            }
        }
    }
    if let Some(name) = n.strip_prefix("show ") {
        if !name.contains(' ') {
            return Ok(Stmt::Show(name.to_string()));
        }
    }
    if let Some(inner) = n
        .strip_prefix("select current_setting(")
        .and_then(|r| r.strip_suffix(')'))
    {
        if let Some(name) = one_literal(inner) {
            return Ok(Stmt::CurrentSetting(name));
        }
    }
    if n == "select pg_backend_pid()" {
        return Ok(Stmt::BackendPid("pg_backend_pid".to_string()));
    }
    if let Some(alias) = n.strip_prefix("select pg_backend_pid() as ") {
        if alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !alias.is_empty() {
            return Ok(Stmt::BackendPid(alias.to_string()));
        }
    }
    if let Some(arg) = n
        .strip_prefix("select pg_terminate_backend(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let arg = arg.trim();
        if arg == "$1" || arg == "$1::int4" || arg == "$1::integer" {
            return Ok(Stmt::Terminate(None));
        }
        if let Ok(pid) = arg.parse::<i32>() {
            return Ok(Stmt::Terminate(Some(pid)));
        }
    }
    match n.as_str() {
        "begin" | "start transaction" | "begin transaction" => return Ok(Stmt::Begin),
        "commit" | "end" => return Ok(Stmt::Commit),
        "rollback" | "abort" => return Ok(Stmt::Rollback),
        "select 1" => return Ok(Stmt::SelectOne),
        "select version()" => return Ok(Stmt::Version),
        _ => {}
    }
    if n.contains("pg_stat_activity") || n.contains("pg_settings") {
        return Err(user_error(
            "ERROR",
            "0A000",
            format!("the fake PostgreSQL answers only the statements it documents; not: {sql}"),
        ));
    }
    Err(user_error(
        "ERROR",
        "42601",
        format!("syntax error: the fake PostgreSQL does not know the statement: {sql}"),
    ))
}

fn field(name: &str, ty: Type, format: FieldFormat) -> FieldInfo {
    FieldInfo::new(name.to_string(), None, None, ty, format)
}

fn fields(stmt: &Stmt, format: &Format) -> Vec<FieldInfo> {
    let cols: Vec<(String, Type)> = match stmt {
        Stmt::Settings(_) => vec![("name".into(), Type::TEXT), ("setting".into(), Type::TEXT)],
        Stmt::Show(name) => vec![(name.clone(), Type::TEXT)],
        Stmt::CurrentSetting(_) => vec![("current_setting".into(), Type::TEXT)],
        Stmt::BackendPid(alias) => vec![(alias.clone(), Type::INT4)],
        Stmt::Activity => vec![
            ("pid".into(), Type::INT4),
            ("usename".into(), Type::TEXT),
            ("datname".into(), Type::TEXT),
            ("application_name".into(), Type::TEXT),
            ("client_addr".into(), Type::TEXT),
            ("state".into(), Type::TEXT),
            ("backend_type".into(), Type::TEXT),
            ("xact_age_s".into(), Type::FLOAT8),
            ("query_age_s".into(), Type::FLOAT8),
            ("state_age_s".into(), Type::FLOAT8),
            ("query".into(), Type::TEXT),
            ("own".into(), Type::BOOL),
        ],
        Stmt::Superusers => vec![("rolname".into(), Type::TEXT)],
        Stmt::Terminate(_) => vec![("pg_terminate_backend".into(), Type::BOOL)],
        Stmt::SelectOne => vec![("?column?".into(), Type::INT4)],
        Stmt::Version => vec![("version".into(), Type::TEXT)],
        Stmt::Begin | Stmt::Commit | Stmt::Rollback | Stmt::Empty => vec![],
    };
    cols.into_iter()
        .enumerate()
        .map(|(i, (n, t))| field(&n, t, format.format_for(i)))
        .collect()
}

#[derive(Debug, Clone)]
enum Val {
    I32(Option<i32>),
    Text(Option<String>),
    F64(Option<f64>),
    Bool(Option<bool>),
}

fn secs(d: Option<Duration>) -> Val {
    Val::F64(d.map(|d| d.as_secs_f64()))
}

impl Backend {
    /// Carry out `stmt`: the rows to send, or a command tag.
    fn run(
        &self,
        stmt: &Stmt,
        sql: &str,
        param_pid: Option<i32>,
    ) -> PgWireResult<Result<Vec<Vec<Val>>, Response>> {
        let mut m = lock(&self.model);
        let rows = match stmt {
            Stmt::Settings(names) => names
                .iter()
                .filter_map(|n| {
                    m.setting(n)
                        .map(|v| vec![Val::Text(Some(n.clone())), Val::Text(Some(v.to_string()))])
                })
                .collect(),
            Stmt::Show(name) | Stmt::CurrentSetting(name) => match m.setting(name) {
                Some(v) => vec![vec![Val::Text(Some(v.to_string()))]],
                None if name == "server_version" => vec![vec![Val::Text(Some(m.server_version()))]],
                None => {
                    return Err(user_error(
                        "ERROR",
                        "42704",
                        format!("unrecognized configuration parameter \"{name}\""),
                    ))
                }
            },
            Stmt::BackendPid(_) => vec![vec![Val::I32(Some(self.pid))]],
            Stmt::Activity => {
                let own = self.pid;
                let mut sessions: Vec<PgSession> = m.scripted.clone();
                sessions.extend(m.live.values().map(|c| {
                    let mut s = c.session.clone();
                    if s.pid == own {
                        s.state = Some("active".to_string());
                        s.query = sql.to_string();
                        s.query_age = Some(Duration::ZERO);
                        s.state_age = Some(Duration::ZERO);
                        if s.xact_age.is_none() {
                            s.xact_age = Some(Duration::ZERO);
                        }
                    }
                    s
                }));
                sessions
                    .into_iter()
                    .map(|s| {
                        vec![
                            Val::I32(Some(s.pid)),
                            Val::Text(Some(s.usename.unwrap_or_default())),
                            Val::Text(Some(s.datname.unwrap_or_default())),
                            Val::Text(Some(s.application_name)),
                            Val::Text(Some(s.client_addr.unwrap_or_default())),
                            Val::Text(Some(s.state.unwrap_or_default())),
                            Val::Text(Some(s.backend_type)),
                            secs(s.xact_age),
                            secs(s.query_age),
                            secs(s.state_age),
                            Val::Text(Some(s.query)),
                            Val::Bool(Some(s.pid == own)),
                        ]
                    })
                    .collect()
            }
            Stmt::Superusers => m
                .superusers
                .iter()
                .map(|r| vec![Val::Text(Some(r.clone()))])
                .collect(),
            Stmt::Terminate(pid) => {
                let Some(pid) = pid.or(param_pid) else {
                    return Err(user_error(
                        "ERROR",
                        "08P01",
                        "pg_terminate_backend($1) needs one int4 parameter",
                    ));
                };
                if m.terminate_fault == Some(TerminateFault::Denied) {
                    return Err(user_error(
                        "ERROR",
                        "42501",
                        "permission denied to terminate process",
                    ));
                }
                let mut found = false;
                let before = m.scripted.len();
                m.scripted.retain(|s| s.pid != pid);
                if m.scripted.len() != before {
                    found = true;
                }
                if let Some(c) = m.live.remove(&pid) {
                    found = true;
                    if let Some(a) = c.abort {
                        a.abort();
                    }
                }
                if found {
                    m.terminated.push(Termination { pid, by: self.pid });
                }
                vec![vec![Val::Bool(Some(found))]]
            }
            Stmt::SelectOne => vec![vec![Val::I32(Some(1))]],
            Stmt::Version => vec![vec![Val::Text(Some(format!(
                "PostgreSQL {} (rb-testkit fake)",
                m.server_version()
            )))]],
            Stmt::Begin => return Ok(Err(Response::TransactionStart(Tag::new("BEGIN")))),
            Stmt::Commit => return Ok(Err(Response::TransactionEnd(Tag::new("COMMIT")))),
            Stmt::Rollback => return Ok(Err(Response::TransactionEnd(Tag::new("ROLLBACK")))),
            Stmt::Empty => return Ok(Err(Response::EmptyQuery)),
        };
        Ok(Ok(rows))
    }

    fn respond(
        &self,
        stmt: &Stmt,
        sql: &str,
        format: &Format,
        param_pid: Option<i32>,
    ) -> PgWireResult<Response> {
        self.set_state("active", Some(sql), None);
        let result = self.run(stmt, sql, param_pid);
        let in_xact = {
            let m = lock(&self.model);
            m.live.get(&self.pid).map(|c| c.session.xact_age.is_some())
        };
        match (&result, stmt) {
            (Ok(_), Stmt::Begin) => self.set_state("idle in transaction", None, Some(true)),
            (Ok(_), Stmt::Commit | Stmt::Rollback) => self.set_state("idle", None, Some(false)),
            _ if in_xact == Some(true) && !matches!(stmt, Stmt::Activity) => {
                self.set_state("idle in transaction", None, None)
            }
            _ => self.set_state("idle", None, None),
        }
        match result? {
            Err(resp) => Ok(resp),
            Ok(rows) => {
                let schema = Arc::new(fields(stmt, format));
                let schema2 = schema.clone();
                let encoded: Vec<PgWireResult<_>> = rows
                    .into_iter()
                    .map(|row| {
                        let mut enc = DataRowEncoder::new(schema2.clone());
                        for v in row {
                            match v {
                                Val::I32(x) => enc.encode_field(&x)?,
                                Val::Text(x) => enc.encode_field(&x)?,
                                Val::F64(x) => enc.encode_field(&x)?,
                                Val::Bool(x) => enc.encode_field(&x)?,
                            }
                        }
                        enc.finish()
                    })
                    .collect();
                Ok(Response::Query(QueryResponse::new(
                    schema,
                    stream::iter(encoded),
                )))
            }
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.record(query, QueryProtocol::Simple);
        let mut out = Vec::new();
        // Several statements in one Query message: answered one after the other; the first error
        // ends the batch (as a real server does).
        for part in query.split(';').filter(|p| !p.trim().is_empty()) {
            let parsed = parse(part);
            let terminate = matches!(parsed, Ok(Stmt::Terminate(_)));
            let answer = parsed
                .and_then(|stmt| self.respond(&stmt, part.trim(), &Format::UnifiedText, None));
            if terminate {
                self.maybe_lose_answer().await;
            }
            match answer {
                Ok(r) => out.push(r),
                Err(PgWireError::UserError(info)) => {
                    out.push(Response::Error(info));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if out.is_empty() {
            out.push(Response::EmptyQuery);
        }
        Ok(out)
    }
}

/// Parses (and records) a statement of the extended protocol.
pub(super) struct Parser {
    model: Shared,
    pid: i32,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = (Stmt, String);

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Self::Statement>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        lock(&self.model).statements.push(ReceivedStatement {
            sql: sql.to_string(),
            protocol: QueryProtocol::Extended,
            pid: self.pid,
        });
        parse(sql).map(|s| (s, sql.to_string()))
    }
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = (Stmt, String);
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::new(Parser {
            model: self.model.clone(),
            pid: self.pid,
        })
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: pgwire::api::store::PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (stmt, sql) = &portal.statement.statement;
        let param_pid = if matches!(stmt, Stmt::Terminate(None)) {
            if portal.parameter_len() != 1 {
                return Err(user_error(
                    "ERROR",
                    "08P01",
                    "bind message supplies a wrong number of parameters",
                ));
            }
            let ty = portal
                .statement
                .parameter_types
                .first()
                .cloned()
                .flatten()
                .unwrap_or(Type::INT4);
            match ty {
                Type::INT8 => portal
                    .parameter::<i64>(0, &ty)?
                    .and_then(|v| i32::try_from(v).ok()),
                _ => portal.parameter::<i32>(0, &Type::INT4)?,
            }
        } else {
            None
        };
        let answer = self.respond(stmt, sql, &portal.result_column_format, param_pid);
        if matches!(stmt, Stmt::Terminate(_)) {
            self.maybe_lose_answer().await;
        }
        answer
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Self::Statement>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: pgwire::api::store::PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (stmt, _) = &target.statement;
        let params = match stmt {
            Stmt::Terminate(None) => vec![target
                .parameter_types
                .first()
                .cloned()
                .flatten()
                .unwrap_or(Type::INT4)],
            _ => vec![],
        };
        Ok(DescribeStatementResponse::new(
            params,
            fields(stmt, &Format::UnifiedBinary),
        ))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        target: &Portal<Self::Statement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: pgwire::api::store::PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (stmt, _) = &target.statement.statement;
        Ok(DescribePortalResponse::new(fields(
            stmt,
            &target.result_column_format,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::super::SETTINGS_SQL;
    use super::*;

    #[test]
    fn knows_its_statements_and_refuses_others() {
        assert!(matches!(parse(SETTINGS_SQL), Ok(Stmt::Settings(v)) if v.len() == 4));
        assert!(matches!(parse(ACTIVITY_SQL), Ok(Stmt::Activity)));
        assert!(matches!(parse(SUPERUSERS_SQL), Ok(Stmt::Superusers)));
        assert!(matches!(
            parse("  select   PG_BACKEND_PID() ;"),
            Ok(Stmt::BackendPid(_))
        ));
        assert!(matches!(
            parse("SELECT pg_terminate_backend(42)"),
            Ok(Stmt::Terminate(Some(42)))
        ));
        assert!(matches!(
            parse("SELECT pg_terminate_backend($1)"),
            Ok(Stmt::Terminate(None))
        ));
        assert!(
            matches!(parse("SHOW max_connections"), Ok(Stmt::Show(n)) if n == "max_connections")
        );
        match parse("SELECT * FROM pg_stat_activity") {
            Err(PgWireError::UserError(e)) => assert_eq!(e.code, "0A000"),
            other => panic!("{other:?}"),
        }
        match parse("DROP TABLE x") {
            Err(PgWireError::UserError(e)) => assert_eq!(e.code, "42601"),
            other => panic!("{other:?}"),
        }
    }
}
