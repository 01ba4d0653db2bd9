//! The cdrs-tokio adapter of [`CqlClient`]: one TCP (or TLS) connection per node for the direct
//! connects and the system-table reads, and a long-lived driver session for node states.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use cdrs_tokio::authenticators::{
    NoneAuthenticatorProvider, SaslAuthenticatorProvider, StaticPasswordAuthenticatorProvider,
};
use cdrs_tokio::cluster::session::{
    RustlsSessionBuilder, Session, SessionBuilder, TcpSessionBuilder,
};
use cdrs_tokio::cluster::topology::NodeState;
use cdrs_tokio::cluster::{
    startup, KeyspaceHolder, NodeRustlsConfigBuilder, NodeTcpConfigBuilder,
    RustlsConnectionManager, TcpConnectionManager,
};
use cdrs_tokio::compression::Compression;
use cdrs_tokio::error::Error as CdrsError;
use cdrs_tokio::frame::message_error::ErrorType;
use cdrs_tokio::frame::message_query::BodyReqQuery;
use cdrs_tokio::frame::message_result::{ColSpec, ColType};
use cdrs_tokio::frame::{Envelope, Flags, Version};
use cdrs_tokio::frame_encoding::{FrameEncodingFactory, ProtocolFrameEncodingFactory};
use cdrs_tokio::load_balancing::RoundRobinLoadBalancingStrategy;
use cdrs_tokio::query::QueryParamsBuilder;
use cdrs_tokio::transport::{CdrsTransport, TransportRustls, TransportTcp};
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

type TlsSession = Session<
    TransportRustls,
    RustlsConnectionManager,
    RoundRobinLoadBalancingStrategy<TransportRustls, RustlsConnectionManager>,
>;

/// A driver session over TCP or TLS.
enum DriverSession {
    Tcp(TcpSession),
    Tls(TlsSession),
}

impl DriverSession {
    /// `(native address, host id, state)` of every node the session knows.
    fn nodes(&self) -> Vec<DriverNode> {
        fn convert(addr: SocketAddr, host: Option<uuid::Uuid>, state: NodeState) -> DriverNode {
            DriverNode {
                native_address: addr,
                host_id: host.map(|u| u.to_string()),
                state: match state {
                    NodeState::Up => DriverNodeState::Up,
                    NodeState::Down => DriverNodeState::Down,
                    NodeState::ForcedDown => DriverNodeState::ForcedDown,
                    _ => DriverNodeState::Unknown,
                },
            }
        }
        match self {
            DriverSession::Tcp(s) => s
                .cluster_metadata()
                .nodes()
                .values()
                .map(|n| convert(n.broadcast_rpc_address(), n.host_id(), n.state()))
                .collect(),
            DriverSession::Tls(s) => s
                .cluster_metadata()
                .nodes()
                .values()
                .map(|n| convert(n.broadcast_rpc_address(), n.host_id(), n.state()))
                .collect(),
        }
    }
}

/// TLS for CQL connections (`client_encryption_options` on the nodes): the CAs to trust, the name
/// the nodes' certificates carry, and optionally a client certificate (mutual TLS).
#[derive(Clone)]
pub struct CqlTls {
    config: Arc<rustls::ClientConfig>,
    server_name: rustls::pki_types::ServerName<'static>,
}

impl fmt::Debug for CqlTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CqlTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl CqlTls {
    /// Trust the CA certificates in `ca_pem` (PEM text); verify every node's certificate against
    /// `server_name` (one name for the ring: a wildcard or a SAN every node carries).
    pub fn new(ca_pem: &[u8], server_name: &str) -> Result<Self, CqlError> {
        Self::build(ca_pem, server_name, None)
    }

    /// Like [`CqlTls::new`], and present a client certificate (`cert_pem`, PEM chain) with its
    /// private key (`key_pem`, PEM, kept secret) for `require_client_auth: true`.
    pub fn with_client_cert(
        ca_pem: &[u8],
        server_name: &str,
        cert_pem: &[u8],
        key_pem: &Secret,
    ) -> Result<Self, CqlError> {
        Self::build(ca_pem, server_name, Some((cert_pem, key_pem)))
    }

    fn build(
        ca_pem: &[u8],
        server_name: &str,
        client: Option<(&[u8], &Secret)>,
    ) -> Result<Self, CqlError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        let invalid = |m: String| CqlError::new(CqlErrorKind::Tls, m);
        let mut roots = rustls::RootCertStore::empty();
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| invalid(format!("CA certificates: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| invalid(format!("CA certificate: {e}")))?;
            n += 1;
        }
        if n == 0 {
            return Err(invalid("no CA certificate in the PEM given".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("TLS versions: {e}")))?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert_pem, key_pem)) => {
                let chain = CertificateDer::pem_slice_iter(cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| invalid(format!("client certificate: {e}")))?;
                // the key's parse error never quotes the key
                let key = PrivateKeyDer::from_pem_slice(key_pem.expose().as_bytes())
                    .map_err(|_| invalid("client key: not a PEM private key".into()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| invalid(format!("client certificate and key: {e}")))?
            }
        };
        let server_name = ServerName::try_from(server_name.to_string())
            .map_err(|e| invalid(format!("server name {server_name:?}: {e}")))?;
        Ok(Self {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// PasswordAuthenticator credentials.
#[derive(Clone)]
struct Credentials {
    user: String,
    password: Secret,
}

/// [`CqlClient`] over cdrs-tokio (native protocol v4).
pub struct CdrsCqlClient {
    credentials: Option<Credentials>,
    tls: Option<CqlTls>,
    session: Mutex<Option<DriverSession>>,
}

impl fmt::Debug for CdrsCqlClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CdrsCqlClient")
            .field("user", &self.credentials.as_ref().map(|c| c.user.as_str()))
            .field("password", &self.credentials.as_ref().map(|c| &c.password))
            .field("tls", &self.tls)
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
            tls: None,
            session: Mutex::new(None),
        }
    }

    /// Connect with TLS (every direct connect and the driver session).
    pub fn with_tls(mut self, tls: CqlTls) -> Self {
        self.tls = Some(tls);
        self
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

    async fn new_session(&self, contact_points: &[SocketAddr]) -> Result<DriverSession, CqlError> {
        let session_error = |e: &dyn fmt::Display| {
            CqlError::new(
                CqlErrorKind::Other,
                format!("driver session on {contact_points:?}: {e}"),
            )
        };
        let points: Vec<_> = contact_points.iter().map(|a| (*a).into()).collect();
        match &self.tls {
            None => {
                let config = NodeTcpConfigBuilder::new()
                    .with_contact_points(points)
                    .with_authenticator_provider(self.authenticator())
                    .build()
                    .await
                    .map_err(|e| map_error(&e, "driver session"))?;
                TcpSessionBuilder::new(RoundRobinLoadBalancingStrategy::new(), config)
                    .build()
                    .await
                    .map(DriverSession::Tcp)
                    .map_err(|e| session_error(&e))
            }
            Some(tls) => {
                let config =
                    NodeRustlsConfigBuilder::new(tls.server_name.clone(), tls.config.clone())
                        .with_contact_points(points)
                        .with_authenticator_provider(self.authenticator())
                        .build()
                        .await
                        .map_err(|e| map_error(&e, "driver session"))?;
                RustlsSessionBuilder::new(RoundRobinLoadBalancingStrategy::new(), config)
                    .build()
                    .await
                    .map(DriverSession::Tls)
                    .map_err(|e| session_error(&e))
            }
        }
    }

    async fn handshake<T: CdrsTransport + 'static>(
        &self,
        node: SocketAddr,
        transport: T,
        holder: &KeyspaceHolder,
    ) -> Result<Box<dyn CqlConnection>, CqlError> {
        let auth = self.authenticator();
        startup(
            &transport,
            auth.as_ref(),
            holder,
            Compression::None,
            Version::V4,
        )
        .await
        .map_err(|e| map_error(&e, &format!("handshake with {node}")))?;
        Ok(Box::new(CdrsConnection { node, transport }))
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
            // rustls reports certificate and handshake failures as InvalidData
            std::io::ErrorKind::InvalidData
                if io
                    .get_ref()
                    .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) =>
            {
                CqlErrorKind::Tls
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
        let encoder = ProtocolFrameEncodingFactory.create_encoder(Version::V4, Compression::None);
        let decoder = ProtocolFrameEncodingFactory.create_decoder(Version::V4, Compression::None);
        let connect_error =
            |e: std::io::Error| map_error(&CdrsError::Io(e), &format!("connect {node}"));
        match &self.tls {
            None => {
                let transport = TransportTcp::new(
                    node,
                    holder.clone(),
                    None,
                    None,
                    Compression::None,
                    encoder,
                    decoder,
                    64,
                    true,
                )
                .await
                .map_err(connect_error)?;
                self.handshake(node, transport, &holder).await
            }
            Some(tls) => {
                let transport = TransportRustls::new(
                    node,
                    tls.server_name.clone(),
                    tls.config.clone(),
                    holder.clone(),
                    None,
                    None,
                    Compression::None,
                    encoder,
                    decoder,
                    64,
                    true,
                )
                .await
                .map_err(connect_error)?;
                self.handshake(node, transport, &holder).await
            }
        }
    }

    async fn driver_states(
        &self,
        contact_points: &[SocketAddr],
    ) -> Result<Option<Vec<DriverNode>>, CqlError> {
        let mut slot = self.session.lock().await;
        // A session whose nodes are all not-Up is stale (after its control node died, cdrs-tokio
        // marks every node Unknown): build a fresh one on the contact points.
        let usable = slot
            .as_ref()
            .is_some_and(|s| s.nodes().iter().any(|n| n.state == DriverNodeState::Up));
        if !usable {
            *slot = None;
            *slot = Some(self.new_session(contact_points).await?);
        }
        Ok(slot.as_ref().map(DriverSession::nodes))
    }
}

struct CdrsConnection<T> {
    node: SocketAddr,
    transport: T,
}

#[async_trait]
impl<T: CdrsTransport + 'static> CqlConnection for CdrsConnection<T> {
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
