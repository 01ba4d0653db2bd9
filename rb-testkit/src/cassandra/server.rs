//! The native-protocol side of a fake node: listener, connections, request handling, events.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cassandra_protocol::compression::Compression;
use cassandra_protocol::frame::events::{ServerEvent, SimpleServerEvent};
use cassandra_protocol::frame::message_error::{ErrorBody, ErrorType, UnpreparedError};
use cassandra_protocol::frame::message_event::BodyResEvent;
use cassandra_protocol::frame::message_request::RequestBody;
use cassandra_protocol::frame::message_result::{
    BodyResResultPrepared, BodyResResultRows, BodyResResultSetKeyspace, ColSpec, PreparedMetadata,
    ResResultBody, RowsMetadata, RowsMetadataFlags, TableSpec,
};
use cassandra_protocol::frame::message_supported::BodyResSupported;
use cassandra_protocol::frame::{Direction, Envelope, Flags, Opcode, Serialize, Version};
use cassandra_protocol::query::QueryValues;
use cassandra_protocol::types::value::Value;
use cassandra_protocol::types::{CBytes, CBytesShort};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::cql::{self, CqlError, Statement};
use super::state::RingState;
use super::tables::{self, Bound, Plan};
use super::value::CqlType;
use super::{CassandraFakeError, Fault, ReceivedRequest, RequestKind};

/// Largest request body the fake accepts (Cassandra's default native_transport_max_frame_size is
/// 16 MiB).
const MAX_BODY: usize = 16 * 1024 * 1024;
const HEADER_LEN: usize = 9;
/// Requests kept per node in the record (the oldest are dropped first).
const MAX_RECORDED: usize = 10_000;

/// State shared by the ring handle and every node task.
#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) ring: RingState,
    pub(crate) nodes: Vec<NodeRuntime>,
    next_conn: u64,
}

/// What a node's tasks need besides the ring state.
#[derive(Debug, Default)]
pub(crate) struct NodeRuntime {
    /// Dropping it stops the listener and closes every connection of the node.
    shutdown: Option<watch::Sender<()>>,
    accept_task: Option<JoinHandle<()>>,
    /// A second handle on the listening socket: `stop` shuts the socket down through it, so new
    /// connections are refused the moment a node is killed, not when its aborted task is dropped.
    listener_ctl: Option<socket2::Socket>,
    /// The aborted accept task of a stopped node: awaiting it guarantees its listener is closed.
    stopped_task: Option<JoinHandle<()>>,
    conns: HashMap<u64, ConnHandle>,
    pub(crate) fault: Option<Fault>,
    pub(crate) latency: Duration,
    pub(crate) requests: Vec<ReceivedRequest>,
    /// Prepared statements: id → (query, keyspace in use when prepared).
    prepared: HashMap<Vec<u8>, (String, Option<String>)>,
}

#[derive(Debug)]
struct ConnHandle {
    tx: mpsc::UnboundedSender<Outgoing>,
    version: Version,
    compression: Compression,
    events: Vec<SimpleServerEvent>,
}

#[derive(Debug)]
enum Outgoing {
    Bytes(Vec<u8>),
    /// Write these bytes, then close the connection.
    BytesThenClose(Vec<u8>),
}

impl Shared {
    pub(crate) fn new(ring: RingState) -> Arc<Self> {
        let nodes = ring.nodes.iter().map(|_| NodeRuntime::default()).collect();
        Arc::new(Shared {
            inner: Mutex::new(Inner {
                ring,
                nodes,
                next_conn: 0,
            }),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Bind a node's listener (SO_REUSEADDR, so a revived node gets its port back at once).
pub(crate) fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, CassandraFakeError> {
    // Registering the listener needs a runtime's reactor.
    tokio::runtime::Handle::try_current().map_err(|_| CassandraFakeError::NoRuntime)?;
    let bind_err = |source| CassandraFakeError::Bind { addr, source };
    let socket = TcpSocket::new_v4().map_err(bind_err)?;
    socket.set_reuseaddr(true).map_err(bind_err)?;
    socket.bind(addr).map_err(bind_err)?;
    socket.listen(1024).map_err(bind_err)
}

/// Start serving node `index` on an already bound listener.
pub(crate) fn serve(
    shared: &Arc<Shared>,
    index: usize,
    listener: tokio::net::TcpListener,
) -> Result<(), CassandraFakeError> {
    let handle =
        tokio::runtime::Handle::try_current().map_err(|_| CassandraFakeError::NoRuntime)?;
    let (tx, rx) = watch::channel(());
    let ctl = std::os::fd::AsFd::as_fd(&listener)
        .try_clone_to_owned()
        .map(socket2::Socket::from)
        .map_err(|source| CassandraFakeError::Bind {
            addr: listener
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0))),
            source,
        })?;
    let task = handle.spawn(accept_loop(shared.clone(), index, listener, rx));
    let mut inner = shared.lock();
    if let Some(rt) = inner.nodes.get_mut(index) {
        rt.shutdown = Some(tx);
        rt.listener_ctl = Some(ctl);
        if let Some(old) = rt.accept_task.replace(task) {
            old.abort();
        }
    }
    Ok(())
}

/// Stop node `index`: the listener closes (connections are refused) and open connections drop.
pub(crate) fn stop(inner: &mut Inner, index: usize) {
    if let Some(rt) = inner.nodes.get_mut(index) {
        rt.shutdown = None;
        if let Some(ctl) = rt.listener_ctl.take() {
            // a listening socket shut down refuses connections from now on (Linux: it is closed)
            let _ = ctl.shutdown(std::net::Shutdown::Both);
        }
        if let Some(task) = rt.accept_task.take() {
            task.abort();
            rt.stopped_task = Some(task);
        }
        rt.conns.clear();
    }
}

/// The aborted accept task of stopped node `index`, if any (await it before re-binding).
pub(crate) fn take_stopped_task(inner: &mut Inner, index: usize) -> Option<JoinHandle<()>> {
    inner
        .nodes
        .get_mut(index)
        .and_then(|rt| rt.stopped_task.take())
}

/// Whether node `index` currently listens.
pub(crate) fn is_listening(inner: &Inner, index: usize) -> bool {
    inner
        .nodes
        .get(index)
        .is_some_and(|rt| rt.shutdown.is_some())
}

/// Push `event` to every registered connection of every live node except `except`.
pub(crate) fn push_event(inner: &mut Inner, event: &ServerEvent, except: Option<usize>) {
    let kind = SimpleServerEvent::from(event.clone());
    for (i, rt) in inner.nodes.iter_mut().enumerate() {
        let live = inner
            .ring
            .nodes
            .get(i)
            .is_some_and(|n| n.info.up && !n.info.removed);
        if Some(i) == except || !live || rt.shutdown.is_none() || rt.fault == Some(Fault::Hang) {
            continue;
        }
        for conn in rt.conns.values() {
            if !conn.events.contains(&kind) {
                continue;
            }
            let body = BodyResEvent {
                event: event.clone(),
            }
            .serialize_to_vec(conn.version);
            let envelope = response(conn.version, Opcode::Event, -1, body);
            if let Ok(bytes) = envelope.encode_with(conn.compression) {
                let _ = conn.tx.send(Outgoing::Bytes(bytes));
            }
        }
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    index: usize,
    listener: tokio::net::TcpListener,
    mut shutdown: watch::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_conn(shared.clone(), index, stream, shutdown.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
        }
    }
}

async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    while let Some(out) = rx.recv().await {
        match out {
            Outgoing::Bytes(bytes) => {
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            Outgoing::BytesThenClose(bytes) => {
                let _ = wr.write_all(&bytes).await;
                let _ = wr.shutdown().await;
                break;
            }
        }
    }
}

/// Per-connection protocol state.
struct ConnState {
    id: u64,
    version: Option<Version>,
    compression: Compression,
    keyspace: Option<String>,
    ready: bool,
    /// STARTUP was answered with AUTHENTICATE; the next AUTH_RESPONSE decides.
    authenticating: bool,
}

enum Action {
    Reply(Envelope),
    /// Reply, then switch the connection to this compression (STARTUP).
    ReplyThenCompress(Envelope, Compression),
    /// Reply, then close the connection (fatal protocol errors).
    ReplyThenClose(Envelope),
}

async fn serve_conn(
    shared: Arc<Shared>,
    node: usize,
    stream: TcpStream,
    mut shutdown: watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let id = {
        let mut inner = shared.lock();
        inner.next_conn += 1;
        let id = inner.next_conn;
        match inner.nodes.get_mut(node) {
            Some(rt) if rt.shutdown.is_some() => {
                rt.conns.insert(
                    id,
                    ConnHandle {
                        tx: tx.clone(),
                        version: Version::V4,
                        compression: Compression::None,
                        events: Vec::new(),
                    },
                );
            }
            _ => return,
        }
        id
    };
    tokio::spawn(write_loop(wr, rx));
    let mut conn = ConnState {
        id,
        version: None,
        compression: Compression::None,
        keyspace: None,
        ready: false,
        authenticating: false,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    'conn: loop {
        tokio::select! {
            _ = shutdown.changed() => break 'conn,
            read = rd.read(&mut chunk) => {
                let n = match read {
                    Ok(0) | Err(_) => break 'conn,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    match next_envelope(&buf, conn.compression) {
                        Parsed::NeedMore => break,
                        Parsed::Bad { stream, message } => {
                            let env = error_envelope(Version::V4, stream, ErrorType::Protocol, message);
                            if let Ok(bytes) = env.encode_with(Compression::None) {
                                let _ = tx.send(Outgoing::BytesThenClose(bytes));
                            }
                            break 'conn;
                        }
                        Parsed::Envelope { envelope, len } => {
                            buf.drain(..len);
                            if !handle_envelope(&shared, node, &mut conn, &tx, envelope) {
                                break 'conn;
                            }
                        }
                    }
                }
            }
        }
    }
    let mut inner = shared.lock();
    if let Some(rt) = inner.nodes.get_mut(node) {
        rt.conns.remove(&id);
    }
}

enum Parsed {
    NeedMore,
    Envelope { envelope: Envelope, len: usize },
    Bad { stream: i16, message: String },
}

/// Decode the next client envelope from the buffer, validating the header before the codec sees
/// it (the codec trusts the length field).
fn next_envelope(buf: &[u8], compression: Compression) -> Parsed {
    if buf.len() < HEADER_LEN {
        return Parsed::NeedMore;
    }
    let stream = i16::from_be_bytes([buf[2], buf[3]]);
    let version = buf[0] & 0x7f;
    if buf[0] & 0x80 != 0 {
        return Parsed::Bad {
            stream,
            message: "Received a response frame on the server side".into(),
        };
    }
    if version != 3 && version != 4 {
        return Parsed::Bad {
            stream,
            message: format!(
                "Invalid or unsupported protocol version ({version}); supported versions are (3/v3, 4/v4)"
            ),
        };
    }
    let len = i32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]);
    let Ok(body_len) = usize::try_from(len) else {
        return Parsed::Bad {
            stream,
            message: format!("Invalid frame body length {len}"),
        };
    };
    if body_len > MAX_BODY {
        return Parsed::Bad {
            stream,
            message: format!(
                "Request is too big: length {body_len} exceeds maximum allowed length {MAX_BODY}."
            ),
        };
    }
    if buf.len() < HEADER_LEN + body_len {
        return Parsed::NeedMore;
    }
    match Envelope::from_buffer(&buf[..HEADER_LEN + body_len], compression) {
        Ok(parsed) => Parsed::Envelope {
            envelope: parsed.envelope,
            len: parsed.envelope_len,
        },
        Err(e) => Parsed::Bad {
            stream,
            message: format!("Invalid frame: {e}"),
        },
    }
}

fn response(version: Version, opcode: Opcode, stream: i16, body: Vec<u8>) -> Envelope {
    Envelope::new(
        version,
        Direction::Response,
        Flags::empty(),
        opcode,
        stream,
        body,
        None,
        Vec::new(),
    )
}

fn error_envelope(version: Version, stream: i16, ty: ErrorType, message: String) -> Envelope {
    let body = ErrorBody { message, ty }.serialize_to_vec(version);
    response(version, Opcode::Error, stream, body)
}

fn request_kind(opcode: Opcode) -> RequestKind {
    match opcode {
        Opcode::Startup => RequestKind::Startup,
        Opcode::Options => RequestKind::Options,
        Opcode::Query => RequestKind::Query,
        Opcode::Prepare => RequestKind::Prepare,
        Opcode::Execute => RequestKind::Execute,
        Opcode::Register => RequestKind::Register,
        Opcode::Batch => RequestKind::Batch,
        _ => RequestKind::Other,
    }
}

/// Handle one envelope; `false` closes the connection.
fn handle_envelope(
    shared: &Arc<Shared>,
    node: usize,
    conn: &mut ConnState,
    tx: &mpsc::UnboundedSender<Outgoing>,
    envelope: Envelope,
) -> bool {
    let version = *conn.version.get_or_insert(envelope.version);
    let stream = envelope.stream_id;
    let kind = request_kind(envelope.opcode);
    let (action, fault, latency) = {
        let mut inner = shared.lock();
        let action = decide(&mut inner, node, conn, &envelope, version);
        let Some(rt) = inner.nodes.get_mut(node) else {
            return false;
        };
        if rt.requests.len() >= MAX_RECORDED {
            rt.requests.remove(0);
        }
        rt.requests.push(ReceivedRequest {
            kind,
            query: action.1.clone(),
            stream,
            at: Instant::now(),
        });
        if let Action::ReplyThenCompress(_, compression) = &action.0 {
            if let Some(handle) = rt.conns.get_mut(&conn.id) {
                handle.version = version;
                handle.compression = *compression;
            }
        }
        (action.0, rt.fault.clone(), rt.latency)
    };
    let is_query = matches!(
        kind,
        RequestKind::Query | RequestKind::Prepare | RequestKind::Execute | RequestKind::Batch
    );
    let out_compression = conn.compression;
    let (envelope, close, next_compression) = match action {
        Action::Reply(e) => (e, false, None),
        Action::ReplyThenCompress(e, c) => (e, false, Some(c)),
        Action::ReplyThenClose(e) => (e, true, None),
    };
    // STARTUP's answer is never compressed; everything after it is.
    if let Some(c) = next_compression {
        conn.compression = c;
    }
    let outgoing = match fault {
        Some(Fault::Hang) => return true,
        Some(Fault::HangQueries) if is_query => return true,
        Some(Fault::MalformedFrame) if is_query => {
            // A response header with an unknown protocol version and a body of noise.
            let mut bytes = vec![0x80 | 0x0a, 0, 0, 0, Opcode::Result as u8];
            bytes[2..4].copy_from_slice(&stream.to_be_bytes());
            bytes.extend_from_slice(&8i32.to_be_bytes());
            bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef]);
            Outgoing::Bytes(bytes)
        }
        Some(Fault::TruncatedFrame) if is_query => match envelope.encode_with(out_compression) {
            Ok(bytes) => {
                let keep = HEADER_LEN + (bytes.len() - HEADER_LEN) / 2;
                Outgoing::BytesThenClose(bytes[..keep].to_vec())
            }
            Err(_) => return false,
        },
        _ => match envelope.encode_with(out_compression) {
            Ok(bytes) if close => Outgoing::BytesThenClose(bytes),
            Ok(bytes) => Outgoing::Bytes(bytes),
            Err(_) => return false,
        },
    };
    let closes = matches!(outgoing, Outgoing::BytesThenClose(_));
    if latency.is_zero() {
        let _ = tx.send(outgoing);
    } else {
        let tx = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(latency).await;
            let _ = tx.send(outgoing);
        });
    }
    !closes
}

/// Compute the answer to one request. The second element is the query text to record.
fn decide(
    inner: &mut Inner,
    node: usize,
    conn: &mut ConnState,
    envelope: &Envelope,
    version: Version,
) -> (Action, Option<String>) {
    let stream = envelope.stream_id;
    let err = |ty, msg: String| Action::Reply(error_envelope(version, stream, ty, msg));
    if envelope.version != version {
        return (
            Action::ReplyThenClose(error_envelope(
                version,
                stream,
                ErrorType::Protocol,
                format!(
                    "Invalid message version. Got {} but previous messages on this connection had version {}",
                    u8::from(envelope.version),
                    u8::from(version)
                ),
            )),
            None,
        );
    }
    let body = match envelope.request_body() {
        Ok(b) => b,
        Err(e) => {
            return (
                err(ErrorType::Protocol, format!("Invalid request body: {e}")),
                None,
            )
        }
    };
    if let RequestBody::AuthResponse(auth) = &body {
        if conn.authenticating {
            conn.authenticating = false;
            // SASL PLAIN: authzid NUL user NUL password
            let token = auth.data.as_slice().unwrap_or_default();
            let parts: Vec<&[u8]> = token.split(|b| *b == 0).collect();
            let ok = match (&inner.ring.credentials, parts.as_slice()) {
                (Some((user, password)), [_, u, p]) => {
                    *u == user.as_bytes() && *p == password.as_bytes()
                }
                _ => false,
            };
            if ok {
                conn.ready = true;
                // AUTH_SUCCESS with a null token
                let body = (-1i32).to_be_bytes().to_vec();
                return (
                    Action::Reply(response(version, Opcode::AuthSuccess, stream, body)),
                    None,
                );
            }
            let user = parts
                .get(1)
                .map(|u| String::from_utf8_lossy(u).into_owned())
                .unwrap_or_default();
            return (
                err(
                    ErrorType::Authentication,
                    format!("Provided username {user} and/or password are incorrect"),
                ),
                None,
            );
        }
    }
    let needs_ready = !matches!(body, RequestBody::Startup(_) | RequestBody::Options(_));
    if needs_ready && !conn.ready {
        return (
            err(
                ErrorType::Protocol,
                format!(
                    "Unexpected message {}, expecting STARTUP or OPTIONS",
                    opcode_name(envelope.opcode)
                ),
            ),
            None,
        );
    }
    match body {
        RequestBody::Options(_) => {
            let mut data = HashMap::new();
            data.insert("CQL_VERSION".to_string(), vec!["3.4.7".to_string()]);
            data.insert(
                "COMPRESSION".to_string(),
                vec!["snappy".to_string(), "lz4".to_string()],
            );
            data.insert(
                "PROTOCOL_VERSIONS".to_string(),
                vec!["3/v3".to_string(), "4/v4".to_string()],
            );
            let body = BodyResSupported { data }.serialize_to_vec(version);
            (
                Action::Reply(response(version, Opcode::Supported, stream, body)),
                None,
            )
        }
        RequestBody::Startup(startup) => {
            if !startup.map.contains_key("CQL_VERSION") {
                return (
                    err(
                        ErrorType::Protocol,
                        "Missing value CQL_VERSION in STARTUP message".into(),
                    ),
                    None,
                );
            }
            let compression = match startup.map.get("COMPRESSION") {
                None => Compression::None,
                Some(c) => match Compression::from_protocol_string(c) {
                    Ok(c) => c,
                    Err(_) => {
                        return (
                            err(
                                ErrorType::Protocol,
                                format!("Unknown compression algorithm: {c}"),
                            ),
                            None,
                        )
                    }
                },
            };
            if inner.ring.credentials.is_some() {
                // PasswordAuthenticator: AUTHENTICATE, then SASL PLAIN in AUTH_RESPONSE
                conn.authenticating = true;
                let class = "org.apache.cassandra.auth.PasswordAuthenticator";
                let mut body = Vec::with_capacity(class.len() + 2);
                body.extend_from_slice(&(class.len() as u16).to_be_bytes());
                body.extend_from_slice(class.as_bytes());
                return (
                    Action::ReplyThenCompress(
                        response(version, Opcode::Authenticate, stream, body),
                        compression,
                    ),
                    None,
                );
            }
            conn.ready = true;
            (
                Action::ReplyThenCompress(
                    response(version, Opcode::Ready, stream, Vec::new()),
                    compression,
                ),
                None,
            )
        }
        RequestBody::Register(register) => {
            if let Some(handle) = inner
                .nodes
                .get_mut(node)
                .and_then(|rt| rt.conns.get_mut(&conn.id))
            {
                handle.version = version;
                handle.compression = conn.compression;
                for e in register.events {
                    if !handle.events.contains(&e) {
                        handle.events.push(e);
                    }
                }
            }
            (
                Action::Reply(response(version, Opcode::Ready, stream, Vec::new())),
                None,
            )
        }
        RequestBody::Query(q) => {
            let bound = bound_values(q.query_params.values.as_ref());
            let paging = Paging {
                page_size: q.query_params.page_size,
                state: q.query_params.paging_state.clone(),
            };
            let keyspace = q.query_params.keyspace.clone();
            let action = run_statement(
                inner, node, conn, &q.query, keyspace, &bound, &paging, version, stream,
            );
            (action, Some(q.query))
        }
        RequestBody::Prepare(p) => {
            let ks = p.keyspace.clone().or_else(|| conn.keyspace.clone());
            // Cassandra 4.0.2+ (CASSANDRA-15252 and its follow-ups): a statement that names its
            // keyspace gets the id of its text alone, whatever the connection's `USE`, so every
            // connection and node agrees on it; any other statement's id includes the keyspace.
            // Both ids are stored.
            let parsed = cql::parse(&p.query);
            let qualified =
                matches!(&parsed, Ok(Statement::Select(select)) if select.keyspace.is_some());
            let without_ks = prepared_id(&p.query, None);
            let with_ks = prepared_id(&p.query, ks.as_deref());
            let id = if qualified {
                without_ks.clone()
            } else {
                with_ks.clone()
            };
            let action = match parsed {
                Err(e) => cql_error(version, stream, e),
                Ok(Statement::Use(_)) => prepared_response(version, stream, &id, None),
                Ok(Statement::Select(select)) => {
                    match tables::plan(&inner.ring, &select, ks.as_deref()) {
                        Err(e) => cql_error(version, stream, e),
                        Ok(plan) => prepared_response(version, stream, &id, Some(&plan)),
                    }
                }
            };
            if let Action::Reply(e) = &action {
                if e.opcode == Opcode::Result {
                    if let Some(rt) = inner.nodes.get_mut(node) {
                        let stored = (p.query.clone(), ks);
                        rt.prepared.insert(without_ks, stored.clone());
                        rt.prepared.insert(with_ks, stored);
                    }
                }
            }
            (action, Some(p.query))
        }
        RequestBody::Execute(x) => {
            let id = x.id.clone().into_bytes().unwrap_or_default();
            let found = inner
                .nodes
                .get(node)
                .and_then(|rt| rt.prepared.get(&id).cloned());
            match found {
                None => (
                    err(
                        ErrorType::Unprepared(UnpreparedError {
                            id: CBytesShort::new(id.clone()),
                        }),
                        format!(
                            "Prepared query with ID {} not found (either the query was not prepared on this host (maybe the host has been restarted?) or you have prepared too many queries and it has been evicted from the internal cache)",
                            hex(&id)
                        ),
                    ),
                    None,
                ),
                Some((query, ks)) => {
                    let bound = bound_values(x.query_parameters.values.as_ref());
                    let paging = Paging {
                        page_size: x.query_parameters.page_size,
                        state: x.query_parameters.paging_state.clone(),
                    };
                    let action = run_statement(inner, node, conn, &query, ks, &bound, &paging, version, stream);
                    (action, Some(query))
                }
            }
        }
        RequestBody::Batch(_) => (
            err(
                ErrorType::Invalid,
                "BATCH statements are not served by the rb-testkit fake Cassandra ring".into(),
            ),
            None,
        ),
        RequestBody::AuthResponse(_) => (
            err(
                ErrorType::Protocol,
                "Unexpected AUTH_RESPONSE: authentication is not enabled".into(),
            ),
            None,
        ),
        _ => (err(ErrorType::Protocol, "Unexpected message".into()), None),
    }
}

fn opcode_name(op: Opcode) -> &'static str {
    match op {
        Opcode::Query => "QUERY",
        Opcode::Prepare => "PREPARE",
        Opcode::Execute => "EXECUTE",
        Opcode::Register => "REGISTER",
        Opcode::Batch => "BATCH",
        Opcode::AuthResponse => "AUTH_RESPONSE",
        _ => "UNKNOWN",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn prepared_id(query: &str, keyspace: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    for salt in [0u8, 1u8] {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        query.hash(&mut h);
        keyspace.hash(&mut h);
        out.extend_from_slice(&h.finish().to_be_bytes());
    }
    out
}

fn bound_values(values: Option<&QueryValues>) -> Bound {
    let raw = |v: &Value| match v {
        Value::Some(b) => Some(b.clone()),
        Value::Null | Value::NotSet => None,
    };
    match values {
        None => Bound::default(),
        Some(QueryValues::SimpleValues(vs)) => Bound {
            positional: vs.iter().map(raw).collect(),
            named: Vec::new(),
        },
        Some(QueryValues::NamedValues(m)) => Bound {
            positional: Vec::new(),
            named: m
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), raw(v)))
                .collect(),
        },
    }
}

struct Paging {
    page_size: Option<i32>,
    state: Option<CBytes>,
}

fn cql_error(version: Version, stream: i16, e: CqlError) -> Action {
    let (ty, msg) = match e {
        CqlError::Syntax(m) => (ErrorType::Syntax, m),
        CqlError::Invalid(m) => (ErrorType::Invalid, m),
    };
    Action::Reply(error_envelope(version, stream, ty, msg))
}

fn col_specs(columns: &[(String, CqlType)]) -> Vec<ColSpec> {
    columns
        .iter()
        .map(|(name, ty)| ColSpec {
            table_spec: None,
            name: name.clone(),
            col_type: ty.col_type(),
        })
        .collect()
}

fn rows_metadata(plan: &Plan, paging_state: Option<CBytes>) -> RowsMetadata {
    let columns = plan.result_columns();
    let mut flags = RowsMetadataFlags::GLOBAL_TABLE_SPACE;
    if paging_state.is_some() {
        flags |= RowsMetadataFlags::HAS_MORE_PAGES;
    }
    RowsMetadata {
        flags,
        columns_count: columns.len() as i32,
        paging_state,
        new_metadata_id: None,
        global_table_spec: Some(TableSpec {
            ks_name: plan.table.keyspace.to_string(),
            table_name: plan.table.name.to_string(),
        }),
        col_specs: col_specs(&columns),
    }
}

fn prepared_response(version: Version, stream: i16, id: &[u8], plan: Option<&Plan>) -> Action {
    let (metadata, result_metadata) = match plan {
        Some(plan) => {
            let binds: Vec<(String, CqlType)> = plan
                .markers
                .iter()
                .map(|(n, t, _)| (n.clone(), t.clone()))
                .collect();
            (
                PreparedMetadata {
                    pk_indexes: plan.pk_indexes(),
                    global_table_spec: Some(TableSpec {
                        ks_name: plan.table.keyspace.to_string(),
                        table_name: plan.table.name.to_string(),
                    }),
                    col_specs: col_specs(&binds),
                },
                rows_metadata(plan, None),
            )
        }
        None => (
            PreparedMetadata {
                pk_indexes: Vec::new(),
                global_table_spec: None,
                col_specs: Vec::new(),
            },
            RowsMetadata {
                flags: RowsMetadataFlags::NO_METADATA,
                columns_count: 0,
                paging_state: None,
                new_metadata_id: None,
                global_table_spec: None,
                col_specs: Vec::new(),
            },
        ),
    };
    let body = ResResultBody::Prepared(BodyResResultPrepared {
        id: CBytesShort::new(id.to_vec()),
        result_metadata_id: None,
        metadata,
        result_metadata,
    })
    .serialize_to_vec(version);
    Action::Reply(response(version, Opcode::Result, stream, body))
}

#[allow(clippy::too_many_arguments)]
fn run_statement(
    inner: &mut Inner,
    node: usize,
    conn: &mut ConnState,
    query: &str,
    keyspace: Option<String>,
    bound: &Bound,
    paging: &Paging,
    version: Version,
    stream: i16,
) -> Action {
    let statement = match cql::parse(query) {
        Ok(s) => s,
        Err(e) => return cql_error(version, stream, e),
    };
    match statement {
        Statement::Use(ks) => {
            if !inner.ring.keyspace_exists(&ks) {
                return cql_error(
                    version,
                    stream,
                    CqlError::Invalid(format!("Keyspace '{ks}' does not exist")),
                );
            }
            conn.keyspace = Some(ks.clone());
            let body = ResResultBody::SetKeyspace(BodyResResultSetKeyspace { body: ks })
                .serialize_to_vec(version);
            Action::Reply(response(version, Opcode::Result, stream, body))
        }
        Statement::Select(select) => {
            let ks = keyspace.or_else(|| conn.keyspace.clone());
            let plan = match tables::plan(&inner.ring, &select, ks.as_deref()) {
                Ok(p) => p,
                Err(e) => return cql_error(version, stream, e),
            };
            let all = match tables::run(&plan, bound, &inner.ring, node, Instant::now()) {
                Ok(rows) => rows,
                Err(e) => return cql_error(version, stream, e),
            };
            let offset = paging
                .state
                .as_ref()
                .and_then(|s| s.as_slice())
                .and_then(|s| <[u8; 4]>::try_from(s).ok())
                .map_or(0, |b| u32::from_be_bytes(b) as usize)
                .min(all.len());
            let page = match paging.page_size {
                Some(p) if p > 0 => p as usize,
                _ => usize::MAX,
            };
            let end = offset.saturating_add(page).min(all.len());
            let more = (end < all.len()).then(|| CBytes::new((end as u32).to_be_bytes().to_vec()));
            let rows: Vec<Vec<CBytes>> = all[offset..end]
                .iter()
                .map(|row| row.iter().map(|v| v.to_cbytes()).collect())
                .collect();
            let body = ResResultBody::Rows(BodyResResultRows {
                metadata: rows_metadata(&plan, more),
                rows_count: rows.len() as i32,
                rows_content: rows,
                protocol_version: version,
            })
            .serialize_to_vec(version);
            Action::Reply(response(version, Opcode::Result, stream, body))
        }
    }
}
