//! The cdrs-tokio adapter of [`CqlClient`]: one TCP (or TLS) connection per node for the direct
//! connects and the system-table reads, and a long-lived driver session for node states.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use cdrs_tokio::authenticators::{
    NoneAuthenticatorProvider, SaslAuthenticatorProvider, StaticPasswordAuthenticatorProvider,
};
use cdrs_tokio::cluster::session::{Session, SessionBuilder, TcpSessionBuilder};
use cdrs_tokio::cluster::topology::NodeState;
use cdrs_tokio::cluster::{startup, KeyspaceHolder, NodeTcpConfigBuilder, TcpConnectionManager};
use cdrs_tokio::compression::Compression;
use cdrs_tokio::error::Error as CdrsError;
use cdrs_tokio::frame::message_error::ErrorType;
use cdrs_tokio::frame::message_query::BodyReqQuery;
use cdrs_tokio::frame::message_result::{ColSpec, ColType};
use cdrs_tokio::frame::{Envelope, Flags, Version};
use cdrs_tokio::frame_encoding::{FrameEncodingFactory, ProtocolFrameEncodingFactory};
use cdrs_tokio::load_balancing::RoundRobinLoadBalancingStrategy;
use cdrs_tokio::query::QueryParamsBuilder;
use cdrs_tokio::transport::{CdrsTransport, TransportTcp};
use cdrs_tokio::types::list::List;
use cdrs_tokio::types::rows::Row;
use cdrs_tokio::types::{AsRust, IntoRustByName};
use rb_core::Secret;
use tokio::sync::Mutex;

use super::cql::{
    CqlClient, CqlConnection, CqlError, CqlErrorKind, CqlRow, CqlValue, DriverNode, DriverNodeState,
};

type TcpSession = Session<
    TransportTcp,
    TcpConnectionManager,
    RoundRobinLoadBalancingStrategy<TransportTcp, TcpConnectionManager>,
>;

/// PasswordAuthenticator credentials.
#[derive(Clone)]
struct Credentials {
    user: String,
    password: Secret,
}

/// [`CqlClient`] over cdrs-tokio (native protocol v4).
pub struct CdrsCqlClient {
    credentials: Option<Credentials>,
    session: Mutex<Option<Arc<TcpSession>>>,
}

impl fmt::Debug for CdrsCqlClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CdrsCqlClient")
            .field("user", &self.credentials.as_ref().map(|c| c.user.as_str()))
            .field("password", &self.credentials.as_ref().map(|c| &c.password))
            .finish_non_exhaustive()
    }
}

impl Default for CdrsCqlClient {
    fn default() -> Self {
        Self::new()
    }
}

impl CdrsCqlClient {
    /// A client without authentication.
    pub fn new() -> Self {
        Self {
            credentials: None,
            session: Mutex::new(None),
        }
    }

    /// Authenticate with Cassandra's `PasswordAuthenticator`. The password is handed to the driver
    /// only when a connection authenticates; it never appears in errors or `Debug`.
    pub fn with_password(mut self, user: impl Into<String>, password: Secret) -> Self {
        self.credentials = Some(Credentials {
            user: user.into(),
            password,
        });
        self
    }

    fn authenticator(&self) -> Arc<dyn SaslAuthenticatorProvider + Send + Sync> {
        match &self.credentials {
            Some(c) => Arc::new(StaticPasswordAuthenticatorProvider::new(
                c.user.as_str(),
                c.password.expose(),
            )),
            None => Arc::new(NoneAuthenticatorProvider),
        }
    }

    async fn new_session(&self, contact_points: &[SocketAddr]) -> Result<TcpSession, CqlError> {
        let config = NodeTcpConfigBuilder::new()
            .with_contact_points(contact_points.iter().map(|a| (*a).into()).collect())
            .with_authenticator_provider(self.authenticator())
            .build()
            .await
            .map_err(|e| map_error(&e, "driver session"))?;
        TcpSessionBuilder::new(RoundRobinLoadBalancingStrategy::new(), config)
            .build()
            .await
            .map_err(|e| {
                CqlError::new(
                    CqlErrorKind::Other,
                    format!("driver session on {contact_points:?}: {e}"),
                )
            })
    }
}

/// Map a cdrs-tokio error; `what` says what was being done. Never includes credentials (the
/// driver's errors do not carry them).
pub(crate) fn map_error(e: &CdrsError, what: &str) -> CqlError {
    let kind = match e {
        CdrsError::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::AddrNotAvailable => CqlErrorKind::Refused,
            std::io::ErrorKind::TimedOut => CqlErrorKind::Timeout,
            // the driver reports an authenticator mismatch as NotFound
            std::io::ErrorKind::NotFound if io.to_string().contains("authenticator") => {
                CqlErrorKind::Unauthorized
            }
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
                CqlErrorKind::Malformed
            }
            _ => CqlErrorKind::Other,
        },
        CdrsError::Server { body, .. } => match body.ty {
            ErrorType::Authentication | ErrorType::Unauthorized => CqlErrorKind::Unauthorized,
            ErrorType::Invalid | ErrorType::Syntax => CqlErrorKind::Invalid,
            ErrorType::Protocol => CqlErrorKind::Malformed,
            _ => CqlErrorKind::Server,
        },
        CdrsError::Timeout(_) => CqlErrorKind::Timeout,
        CdrsError::General(m) if m.contains("authenticator") || m.contains("authentication") => {
            CqlErrorKind::Unauthorized
        }
        CdrsError::UnexpectedAuthResponse(_) => CqlErrorKind::Unauthorized,
        // the connection went away (a node killed mid-request)
        CdrsError::General(m)
            if m.contains("Connection closed")
                || m.contains("channel failure")
                || m.contains("No nodes available") =>
        {
            CqlErrorKind::Other
        }
        // anything else the codec says in words: a frame it could not read
        CdrsError::General(_) => CqlErrorKind::Malformed,
        _ => CqlErrorKind::Malformed,
    };
    let detail = match e {
        CdrsError::Server { body, .. } => format!("server error {:?}: {}", body.ty, body.message),
        other => other.to_string(),
    };
    CqlError::new(kind, format!("{what}: {detail}"))
}

#[async_trait]
impl CqlClient for CdrsCqlClient {
    async fn connect(&self, node: SocketAddr) -> Result<Box<dyn CqlConnection>, CqlError> {
        let (tx, _rx) = tokio::sync::watch::channel(None);
        let holder = Arc::new(KeyspaceHolder::new(tx));
        let transport = TransportTcp::new(
            node,
            holder.clone(),
            None,
            None,
            Compression::None,
            ProtocolFrameEncodingFactory.create_encoder(Version::V4, Compression::None),
            ProtocolFrameEncodingFactory.create_decoder(Version::V4, Compression::None),
            64,
            true,
        )
        .await
        .map_err(|e| map_error(&CdrsError::Io(e), &format!("connect {node}")))?;
        let auth = self.authenticator();
        startup(
            &transport,
            auth.as_ref(),
            holder.as_ref(),
            Compression::None,
            Version::V4,
        )
        .await
        .map_err(|e| map_error(&e, &format!("handshake with {node}")))?;
        Ok(Box::new(CdrsConnection { node, transport }))
    }

    async fn driver_states(
        &self,
        contact_points: &[SocketAddr],
    ) -> Result<Option<Vec<DriverNode>>, CqlError> {
        let mut slot = self.session.lock().await;
        // A session whose nodes are all not-Up is stale (after its control node died, cdrs-tokio
        // marks every node Unknown): build a fresh one on the contact points.
        let usable = slot.as_ref().is_some_and(|s| {
            s.cluster_metadata()
                .nodes()
                .values()
                .any(|n| n.state() == NodeState::Up)
        });
        if !usable {
            *slot = None;
            let fresh = self.new_session(contact_points).await?;
            *slot = Some(Arc::new(fresh));
        }
        let Some(session) = slot.as_ref() else {
            return Ok(None);
        };
        let meta = session.cluster_metadata();
        let nodes = meta
            .nodes()
            .values()
            .map(|n| DriverNode {
                native_address: n.broadcast_rpc_address(),
                host_id: n.host_id().map(|u| u.to_string()),
                state: match n.state() {
                    NodeState::Up => DriverNodeState::Up,
                    NodeState::Down => DriverNodeState::Down,
                    NodeState::ForcedDown => DriverNodeState::ForcedDown,
                    _ => DriverNodeState::Unknown,
                },
            })
            .collect();
        Ok(Some(nodes))
    }
}

struct CdrsConnection {
    node: SocketAddr,
    transport: TransportTcp,
}

#[async_trait]
impl CqlConnection for CdrsConnection {
    async fn query(&self, cql: &str) -> Result<Vec<CqlRow>, CqlError> {
        let what = format!("{cql} on {}", self.node);
        let envelope = Envelope::new_query(
            BodyReqQuery {
                query: cql.to_string(),
                query_params: QueryParamsBuilder::new().build(),
            },
            Flags::empty(),
            Version::V4,
        );
        let answer = self
            .transport
            .write_envelope(&envelope, false)
            .await
            .map_err(|e| map_error(&e, &what))?;
        let body = answer.response_body().map_err(|e| {
            CqlError::new(CqlErrorKind::Malformed, format!("{what}: decoding: {e}"))
        })?;
        let specs: Vec<ColSpec> = body
            .as_rows_metadata()
            .map(|m| m.col_specs.clone())
            .ok_or_else(|| {
                CqlError::new(
                    CqlErrorKind::Malformed,
                    format!("{what}: not a Rows result"),
                )
            })?;
        let rows = body.into_rows().ok_or_else(|| {
            CqlError::new(
                CqlErrorKind::Malformed,
                format!("{what}: not a Rows result"),
            )
        })?;
        rows.iter()
            .enumerate()
            .map(|(i, row)| {
                convert_row(row, &specs).map_err(|m| {
                    CqlError::new(CqlErrorKind::Malformed, format!("{what}: row {i}: {m}"))
                })
            })
            .collect()
    }
}

fn convert_row(row: &Row, specs: &[ColSpec]) -> Result<CqlRow, String> {
    let mut out = CqlRow::new();
    for spec in specs {
        let name = spec.name.as_str();
        let value = match spec.col_type.id {
            ColType::Varchar | ColType::Ascii => get::<String>(row, name)?.map(CqlValue::Text),
            ColType::Inet => get::<IpAddr>(row, name)?.map(CqlValue::Inet),
            ColType::Uuid | ColType::Timeuuid => {
                get::<uuid::Uuid>(row, name)?.map(|u| CqlValue::Uuid(u.to_string()))
            }
            ColType::Int => get::<i32>(row, name)?.map(|v| CqlValue::Int(i64::from(v))),
            ColType::Bigint | ColType::Counter => get::<i64>(row, name)?.map(CqlValue::Int),
            ColType::Smallint => get::<i16>(row, name)?.map(|v| CqlValue::Int(i64::from(v))),
            ColType::Tinyint => get::<i8>(row, name)?.map(|v| CqlValue::Int(i64::from(v))),
            ColType::Boolean => get::<bool>(row, name)?.map(CqlValue::Bool),
            ColType::Double => get::<f64>(row, name)?.map(CqlValue::Double),
            ColType::Float => get::<f32>(row, name)?.map(|v| CqlValue::Double(f64::from(v))),
            ColType::Set | ColType::List if is_text_collection(spec) => {
                match get::<List>(row, name)? {
                    Some(list) => {
                        let v: Vec<String> = list
                            .as_r_rust()
                            .map_err(|e| format!("column {name}: {e}"))?;
                        Some(CqlValue::TextSet(v))
                    }
                    None => None,
                }
            }
            other => Some(CqlValue::Other(format!("{other:?}").to_ascii_lowercase())),
        };
        out.insert(name, value.unwrap_or(CqlValue::Null));
    }
    Ok(out)
}

fn get<T>(row: &Row, name: &str) -> Result<Option<T>, String>
where
    Row: IntoRustByName<T>,
{
    row.get_by_name(name)
        .map_err(|e| format!("column {name}: {e}"))
}

fn is_text_collection(spec: &ColSpec) -> bool {
    use cdrs_tokio::frame::message_result::ColTypeOptionValue as V;
    match &spec.col_type.value {
        Some(V::CSet(inner)) | Some(V::CList(inner)) => {
            matches!(inner.id, ColType::Varchar | ColType::Ascii)
        }
        _ => false,
    }
}
