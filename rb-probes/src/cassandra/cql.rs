//! The CQL ring probe: system tables in, ring out, generic over [`CqlClient`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rb_core::{ErrorKind, Observation, Probe, ProbeContext, ProbeError, Target};

use super::emit::emit;
use super::model::{Liveness, LivenessSource, Ring, RingNode, RingSource, RingState};
use crate::common::ProbeSite;

/// One CQL value, as far as the ring probe needs to tell types apart.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CqlValue {
    /// `null` (or a column absent from the row).
    Null,
    /// `text` / `varchar` / `ascii`.
    Text(String),
    /// `inet`.
    Inet(IpAddr),
    /// `uuid` / `timeuuid`, in its canonical lower-case text form.
    Uuid(String),
    /// `int`, `bigint`, `smallint`, `tinyint`.
    Int(i64),
    /// `double` / `float`.
    Double(f64),
    /// `boolean`.
    Bool(bool),
    /// `set<text>` / `list<text>`.
    TextSet(Vec<String>),
    /// Any other type, by its CQL name (the probe never needs its value).
    Other(String),
}

impl CqlValue {
    fn type_name(&self) -> &str {
        match self {
            CqlValue::Null => "null",
            CqlValue::Text(_) => "text",
            CqlValue::Inet(_) => "inet",
            CqlValue::Uuid(_) => "uuid",
            CqlValue::Int(_) => "int",
            CqlValue::Double(_) => "double",
            CqlValue::Bool(_) => "boolean",
            CqlValue::TextSet(_) => "set<text>",
            CqlValue::Other(t) => t,
        }
    }
}

/// One result row: column name → value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CqlRow {
    columns: BTreeMap<String, CqlValue>,
}

impl CqlRow {
    /// An empty row.
    pub fn new() -> Self {
        Self::default()
    }

    /// This row with one more column.
    pub fn with(mut self, column: impl Into<String>, value: CqlValue) -> Self {
        self.columns.insert(column.into(), value);
        self
    }

    /// Set a column.
    pub fn insert(&mut self, column: impl Into<String>, value: CqlValue) {
        self.columns.insert(column.into(), value);
    }

    /// A column's value (`None` when the result has no such column).
    pub fn get(&self, column: &str) -> Option<&CqlValue> {
        self.columns.get(column)
    }
}

/// The class of a [`CqlError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum CqlErrorKind {
    /// The connection was refused or reset: nothing listens.
    Refused,
    /// No answer in time.
    Timeout,
    /// Credentials refused (or required and not given).
    Unauthorized,
    /// The server refused the statement as invalid (`unconfigured table peers_v2`).
    Invalid,
    /// Any other error frame from the server.
    Server,
    /// A frame or a row that could not be decoded.
    Malformed,
    /// The TLS handshake failed (untrusted certificate, wrong server name) or TLS was
    /// misconfigured.
    Tls,
    /// Anything else (I/O).
    Other,
}

/// An error of a [`CqlClient`] or [`CqlConnection`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CqlError {
    /// The class.
    pub kind: CqlErrorKind,
    /// What happened (never a secret).
    pub message: String,
}

impl CqlError {
    /// A new error.
    pub fn new(kind: CqlErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The rb error kind it maps to.
    pub fn error_kind(&self) -> ErrorKind {
        match self.kind {
            CqlErrorKind::Refused => ErrorKind::Unreachable,
            CqlErrorKind::Timeout => ErrorKind::Timeout,
            CqlErrorKind::Unauthorized | CqlErrorKind::Tls => ErrorKind::Unauthorized,
            CqlErrorKind::Invalid | CqlErrorKind::Server => ErrorKind::Rejected,
            CqlErrorKind::Malformed => ErrorKind::BadResponse,
            CqlErrorKind::Other => ErrorKind::Unreachable,
        }
    }
}

/// A CQL connection to one node, after its handshake (STARTUP, authentication).
#[async_trait]
pub trait CqlConnection: Send + Sync {
    /// Run one statement on this node and return all its rows.
    async fn query(&self, cql: &str) -> Result<Vec<CqlRow>, CqlError>;
}

/// The driver's state of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DriverNodeState {
    /// Up.
    Up,
    /// Down (a `STATUS_CHANGE DOWN` or a failed connection).
    Down,
    /// Forced down.
    ForcedDown,
    /// Not known.
    Unknown,
}

impl DriverNodeState {
    fn name(self) -> &'static str {
        match self {
            DriverNodeState::Up => "up",
            DriverNodeState::Down => "down",
            DriverNodeState::ForcedDown => "forced_down",
            DriverNodeState::Unknown => "unknown",
        }
    }
}

/// One node as the driver's cluster metadata knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverNode {
    /// Its native (CQL) address.
    pub native_address: SocketAddr,
    /// Its host ID (lower-case).
    pub host_id: Option<String>,
    /// Its state.
    pub state: DriverNodeState,
}

/// What the CQL ring probe needs from a driver.
#[async_trait]
pub trait CqlClient: Send + Sync + fmt::Debug {
    /// Open a connection to `node`'s native port and do the handshake (STARTUP and authentication).
    /// Errors: [`CqlErrorKind::Refused`] when nothing listens, [`CqlErrorKind::Unauthorized`] for
    /// refused credentials.
    async fn connect(&self, node: SocketAddr) -> Result<Box<dyn CqlConnection>, CqlError>;

    /// The driver's node states (a long-lived session kept up to date by `STATUS_CHANGE` events),
    /// connecting it through `contact_points` if needed. `Ok(None)` when the client keeps no session.
    async fn driver_states(
        &self,
        contact_points: &[SocketAddr],
    ) -> Result<Option<Vec<DriverNode>>, CqlError>;
}

/// What the CQL ring probe reads and how long it waits.
#[derive(Debug, Clone)]
pub struct CqlRingConfig {
    contact_points: Vec<SocketAddr>,
    node_timeout: Duration,
    heartbeat_wait: Duration,
    driver_state: bool,
    expected_nodes: Vec<String>,
    max_node_series: usize,
}

impl CqlRingConfig {
    /// Read the ring through the first of `contact_points` that answers.
    pub fn new(contact_points: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            contact_points: contact_points.into_iter().collect(),
            node_timeout: Duration::from_secs(2),
            heartbeat_wait: Duration::from_secs(2),
            driver_state: true,
            expected_nodes: Vec::new(),
            max_node_series: 64,
        }
    }

    /// How long one connect (to a contact point, or a direct connect to a node) may take before it
    /// counts as timed out (default 2 s; never past the probe's deadline).
    pub fn node_timeout(mut self, t: Duration) -> Self {
        self.node_timeout = t;
        self
    }

    /// When a node refuses CQL but gossip lists it, read `system_views.gossip_info` again after this
    /// long: a heartbeat that rose means the node is alive (bootstrapping nodes do not serve CQL
    /// yet). Default 2 s; zero disables the second read.
    pub fn heartbeat_wait(mut self, t: Duration) -> Self {
        self.heartbeat_wait = t;
        self
    }

    /// Whether to ask the client for its driver session's node states (default true).
    pub fn driver_state(mut self, on: bool) -> Self {
        self.driver_state = on;
        self
    }

    /// Nodes (addresses or host IDs) the ring must list: any one absent is reported missing.
    pub fn expected_nodes<S: Into<String>>(mut self, nodes: impl IntoIterator<Item = S>) -> Self {
        self.expected_nodes = nodes.into_iter().map(Into::into).collect();
        self
    }

    /// At most this many `cassandra_node_up` series (down nodes first; default 64).
    pub fn max_node_series(mut self, n: usize) -> Self {
        self.max_node_series = n;
        self
    }

    /// The contact points.
    pub fn contact_points(&self) -> &[SocketAddr] {
        &self.contact_points
    }
}

/// Ring state over CQL: `system.local`, `system.peers_v2` (or `system.peers`),
/// `system_views.gossip_info` (states, load), a direct connect to every node's native port and
/// the driver's node states (liveness). Probe id `cassandra.ring`.
#[derive(Debug, Clone)]
pub struct CqlRingProbe {
    target: Target,
    config: CqlRingConfig,
    client: Arc<dyn CqlClient>,
}

const LOCAL: &str = "SELECT * FROM system.local";
const PEERS_V2: &str = "SELECT * FROM system.peers_v2";
const PEERS: &str = "SELECT * FROM system.peers";
const GOSSIP: &str = "SELECT * FROM system_views.gossip_info";

impl CqlRingProbe {
    /// The probe id.
    pub const ID: &'static str = "cassandra.ring";

    /// A probe on `target` reading through `client`.
    pub fn new(target: Target, config: CqlRingConfig, client: Arc<dyn CqlClient>) -> Self {
        Self {
            target,
            config,
            client,
        }
    }

    fn endpoint(&self) -> String {
        self.config
            .contact_points
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[async_trait]
impl Probe for CqlRingProbe {
    fn id(&self) -> &str {
        Self::ID
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let endpoint = self.endpoint();
        let site = ProbeSite {
            probe: Self::ID,
            target: &self.target.name,
            endpoint: &endpoint,
        };
        site.within(ctx, self.read(ctx)).await
    }
}

/// A node while the ring is assembled.
#[derive(Debug, Default)]
struct Draft {
    address: Option<IpAddr>,
    native: Option<SocketAddr>,
    host_id: Option<String>,
    dc: Option<String>,
    rack: Option<String>,
    tokens: Option<Vec<String>>,
    schema: Option<String>,
    release: Option<String>,
    gossip: Option<GossipRow>,
    in_tables: bool,
}

#[derive(Debug, Clone, Default)]
struct GossipRow {
    address: Option<IpAddr>,
    status: Option<String>,
    load: Option<String>,
    schema: Option<String>,
    host_id: Option<String>,
    dc: Option<String>,
    rack: Option<String>,
    release: Option<String>,
    native: Option<String>,
    rpc_address: Option<String>,
    heartbeat: Option<i64>,
    generation: Option<i64>,
}

/// Reads typed columns of one row of one table, with errors naming table, row and column.
struct RowReader<'a> {
    table: &'a str,
    index: usize,
    row: &'a CqlRow,
}

impl RowReader<'_> {
    fn bad(&self, column: &str, want: &str, got: &CqlValue) -> CqlError {
        CqlError::new(
            CqlErrorKind::Malformed,
            format!(
                "{} row {}: column {column} is {} where {want} was expected",
                self.table,
                self.index,
                got.type_name()
            ),
        )
    }

    fn text(&self, column: &str) -> Result<Option<String>, CqlError> {
        match self.row.get(column) {
            None | Some(CqlValue::Null) => Ok(None),
            Some(CqlValue::Text(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.bad(column, "text", other)),
        }
    }

    fn inet(&self, column: &str) -> Result<Option<IpAddr>, CqlError> {
        match self.row.get(column) {
            None | Some(CqlValue::Null) => Ok(None),
            Some(CqlValue::Inet(ip)) => Ok(Some(*ip)),
            Some(other) => Err(self.bad(column, "inet", other)),
        }
    }

    fn uuid(&self, column: &str) -> Result<Option<String>, CqlError> {
        match self.row.get(column) {
            None | Some(CqlValue::Null) => Ok(None),
            Some(CqlValue::Uuid(u)) => Ok(Some(u.to_ascii_lowercase())),
            Some(other) => Err(self.bad(column, "uuid", other)),
        }
    }

    fn int(&self, column: &str) -> Result<Option<i64>, CqlError> {
        match self.row.get(column) {
            None | Some(CqlValue::Null) => Ok(None),
            Some(CqlValue::Int(i)) => Ok(Some(*i)),
            Some(other) => Err(self.bad(column, "int", other)),
        }
    }

    fn tokens(&self, column: &str) -> Result<Option<Vec<String>>, CqlError> {
        match self.row.get(column) {
            None | Some(CqlValue::Null) => Ok(None),
            Some(CqlValue::TextSet(t)) => Ok(Some(t.clone())),
            Some(other) => Err(self.bad(column, "set<text>", other)),
        }
    }

    fn required<T>(&self, column: &str, v: Option<T>) -> Result<T, CqlError> {
        v.ok_or_else(|| {
            CqlError::new(
                CqlErrorKind::Malformed,
                format!(
                    "{} row {}: column {column} is missing or null",
                    self.table, self.index
                ),
            )
        })
    }
}

fn gossip_row(index: usize, row: &CqlRow) -> Result<GossipRow, CqlError> {
    let r = RowReader {
        table: "system_views.gossip_info",
        index,
        row,
    };
    Ok(GossipRow {
        address: Some(r.required("address", r.inet("address")?)?),
        // 4.0+ nodes gossip STATUS_WITH_PORT; the legacy STATUS is often only there for the
        // local node
        status: r.text("status_with_port")?.or(r.text("status")?),
        load: r.text("load")?,
        schema: r.text("schema")?,
        host_id: r.text("host_id")?,
        dc: r.text("dc")?,
        rack: r.text("rack")?,
        release: r.text("release_version")?,
        native: r.text("native_address_and_port")?,
        rpc_address: r.text("rpc_address")?,
        heartbeat: r.int("heartbeat")?,
        generation: r.int("generation")?,
    })
}

/// The gossip STATUS verb: `NORMAL,-123` → `NORMAL`.
fn verb(status: &str) -> &str {
    status.split(',').next().unwrap_or("").trim()
}

/// nodetool's letter for a gossip STATUS, and whether it is a replacement.
fn state_of(status: Option<&str>) -> (RingState, bool) {
    match status.map(verb) {
        Some("NORMAL") | Some("shutdown") => (RingState::Normal, false),
        Some("BOOT") => (RingState::Joining, false),
        Some("BOOT_REPLACE") => (RingState::Joining, true),
        // a node replacing a dead one at the same address gossips `hibernate`: the others see it DN
        Some("hibernate") => (RingState::Normal, true),
        Some("LEAVING") | Some("REMOVING") => (RingState::Leaving, false),
        Some("MOVING") => (RingState::Moving, false),
        _ => (RingState::Unknown, false),
    }
}

/// Statuses of endpoints that are no longer ring members (gossip remembers them for days).
fn gone(status: Option<&str>) -> bool {
    matches!(
        status.map(verb),
        Some("LEFT") | Some("removed") | Some("REMOVED_TOKEN")
    )
}

/// The share of the Murmur3 ring each token owner has, in percent (the range ending at a token
/// belongs to that token's node).
fn token_ownership(owners: &[(i64, usize)], nodes: usize) -> Vec<f64> {
    let mut sorted = owners.to_vec();
    sorted.sort_unstable();
    let mut share = vec![0f64; nodes];
    if sorted.is_empty() {
        return share;
    }
    let full = 2f64.powi(64);
    for i in 0..sorted.len() {
        let prev = if i == 0 {
            sorted[sorted.len() - 1].0
        } else {
            sorted[i - 1].0
        };
        let cur = sorted[i].0;
        // wrapping distance on the i64 ring; a single token owns the whole ring
        let mut size = (cur as i128 - prev as i128).rem_euclid(1i128 << 64) as f64;
        if sorted.len() == 1 {
            size = full;
        }
        if let Some(s) = share.get_mut(sorted[i].1) {
            *s += size / full * 100.0;
        }
    }
    share
}

enum Direct {
    Ready,
    AuthRefused(String),
    Refused(String),
    Failed(String),
    TimedOut,
}

impl CqlRingProbe {
    fn error(&self, kind: ErrorKind, endpoint: &str, message: impl Into<String>) -> ProbeError {
        ProbeError::new(Self::ID, &self.target.name, endpoint, kind, message)
    }

    fn cql_error(&self, endpoint: &str, what: &str, e: CqlError) -> ProbeError {
        self.error(e.error_kind(), endpoint, format!("{what}: {}", e.message))
            .with_source(e)
    }

    fn budget(&self, ctx: &ProbeContext) -> Duration {
        self.config.node_timeout.min(ctx.remaining())
    }

    async fn connect(
        &self,
        ctx: &ProbeContext,
        addr: SocketAddr,
    ) -> Result<Box<dyn CqlConnection>, CqlError> {
        let budget = self.budget(ctx);
        match tokio::time::timeout(budget, self.client.connect(addr)).await {
            Ok(r) => r,
            Err(_) => Err(CqlError::new(
                CqlErrorKind::Timeout,
                format!("no CQL handshake within {budget:?}"),
            )),
        }
    }

    async fn read(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let all = self.endpoint();
        if self.config.contact_points.is_empty() {
            return Err(self.error(ErrorKind::Invalid, &all, "no contact points configured"));
        }
        // 1. a coordinator: the first contact point that completes the handshake
        let mut failures: Vec<(SocketAddr, CqlError)> = Vec::new();
        let mut coordinator = None;
        for cp in &self.config.contact_points {
            match self.connect(ctx, *cp).await {
                Ok(c) => {
                    coordinator = Some((*cp, c));
                    break;
                }
                Err(e) => failures.push((*cp, e)),
            }
        }
        let Some((coord_addr, conn)) = coordinator else {
            let kinds: BTreeSet<CqlErrorKind> = failures.iter().map(|(_, e)| e.kind).collect();
            let kind = if kinds.contains(&CqlErrorKind::Unauthorized) {
                ErrorKind::Unauthorized
            } else if kinds.len() == 1 {
                failures
                    .first()
                    .map_or(ErrorKind::Unreachable, |(_, e)| e.error_kind())
            } else if kinds.contains(&CqlErrorKind::Malformed) {
                ErrorKind::BadResponse
            } else if kinds.contains(&CqlErrorKind::Timeout) {
                ErrorKind::Timeout
            } else {
                ErrorKind::Unreachable
            };
            let detail: Vec<String> = failures
                .iter()
                .map(|(a, e)| format!("{a}: {}", e.message))
                .collect();
            return Err(self.error(
                kind,
                &all,
                format!("no contact point answered: {}", detail.join("; ")),
            ));
        };
        let here = coord_addr.to_string();
        let mut gaps: Vec<String> = Vec::new();

        // 2. the coordinator's tables (all from the same node)
        let local_rows = conn
            .query(LOCAL)
            .await
            .map_err(|e| self.cql_error(&here, LOCAL, e))?;
        if local_rows.len() != 1 {
            return Err(self.error(
                ErrorKind::BadResponse,
                &here,
                format!(
                    "system.local returned {} rows, expected 1",
                    local_rows.len()
                ),
            ));
        }
        let (peer_table, peer_rows) = match conn.query(PEERS_V2).await {
            Ok(rows) => ("system.peers_v2", rows),
            Err(e) if e.kind == CqlErrorKind::Invalid => (
                "system.peers",
                conn.query(PEERS)
                    .await
                    .map_err(|e| self.cql_error(&here, PEERS, e))?,
            ),
            Err(e) => return Err(self.cql_error(&here, PEERS_V2, e)),
        };
        let gossip_rows = match conn.query(GOSSIP).await {
            Ok(rows) => Some(rows),
            Err(e) if matches!(e.kind, CqlErrorKind::Invalid | CqlErrorKind::Unauthorized) => {
                gaps.push(format!(
                    "system_views.gossip_info unreadable on {here} ({}): ring states (N/J/L/M), \
                     load and bootstrapping nodes unknown",
                    e.message
                ));
                None
            }
            Err(e) => return Err(self.cql_error(&here, GOSSIP, e)),
        };

        // 3. assemble
        let local = &local_rows[0];
        let r = RowReader {
            table: "system.local",
            index: 0,
            row: local,
        };
        let bad = |e: CqlError| self.cql_error(&here, "reading rows", e);
        let cluster_name = r.text("cluster_name").map_err(bad)?;
        let partitioner = r.text("partitioner").map_err(bad)?;
        let local_addr = r
            .inet("broadcast_address")
            .map_err(bad)?
            .or(r.inet("listen_address").map_err(bad)?)
            .unwrap_or(coord_addr.ip());
        let mut drafts: Vec<Draft> = vec![Draft {
            address: Some(local_addr),
            native: Some(coord_addr),
            host_id: Some(
                r.required("host_id", r.uuid("host_id").map_err(bad)?)
                    .map_err(bad)?,
            ),
            dc: r.text("data_center").map_err(bad)?,
            rack: r.text("rack").map_err(bad)?,
            tokens: r.tokens("tokens").map_err(bad)?,
            schema: r.uuid("schema_version").map_err(bad)?,
            release: r.text("release_version").map_err(bad)?,
            gossip: None,
            in_tables: true,
        }];
        for (i, row) in peer_rows.iter().enumerate() {
            let r = RowReader {
                table: peer_table,
                index: i,
                row,
            };
            let peer = r
                .required("peer", r.inet("peer").map_err(bad)?)
                .map_err(bad)?;
            let native = match (
                r.inet("native_address").map_err(bad)?,
                r.int("native_port").map_err(bad)?,
                r.inet("rpc_address").map_err(bad)?,
            ) {
                (Some(ip), Some(port), _) => {
                    u16::try_from(port).ok().map(|p| SocketAddr::new(ip, p))
                }
                (Some(ip), None, _) | (None, _, Some(ip)) => {
                    Some(SocketAddr::new(ip, coord_addr.port()))
                }
                (None, _, None) => None,
            };
            // 0.0.0.0 as rpc address: the node listens everywhere, reach it at its peer address
            let native = native.map(|n| {
                if n.ip().is_unspecified() {
                    SocketAddr::new(peer, n.port())
                } else {
                    n
                }
            });
            drafts.push(Draft {
                address: Some(peer),
                native,
                host_id: r.uuid("host_id").map_err(bad)?,
                dc: r.text("data_center").map_err(bad)?,
                rack: r.text("rack").map_err(bad)?,
                tokens: r.tokens("tokens").map_err(bad)?,
                schema: r.uuid("schema_version").map_err(bad)?,
                release: r.text("release_version").map_err(bad)?,
                gossip: None,
                in_tables: true,
            });
        }
        let mut gossip_by_ip: BTreeMap<IpAddr, GossipRow> = BTreeMap::new();
        if let Some(rows) = &gossip_rows {
            for (i, row) in rows.iter().enumerate() {
                let g = gossip_row(i, row).map_err(bad)?;
                if let Some(a) = g.address {
                    gossip_by_ip.insert(a, g);
                }
            }
        }
        for d in &mut drafts {
            if let Some(a) = d.address {
                d.gossip = gossip_by_ip.remove(&a);
            }
        }
        // endpoints only gossip knows: bootstrapping nodes (not in the peers tables yet)
        for (ip, g) in gossip_by_ip {
            if gone(g.status.as_deref()) {
                continue;
            }
            let native = g
                .native
                .as_deref()
                .and_then(|s| s.trim_start_matches('/').parse::<SocketAddr>().ok())
                .or_else(|| {
                    g.rpc_address
                        .as_deref()
                        .and_then(|s| s.trim_start_matches('/').parse::<IpAddr>().ok())
                        .map(|ip| SocketAddr::new(ip, coord_addr.port()))
                })
                .or(Some(SocketAddr::new(ip, coord_addr.port())));
            drafts.push(Draft {
                address: Some(ip),
                native,
                host_id: g.host_id.clone().map(|h| h.to_ascii_lowercase()),
                dc: g.dc.clone(),
                rack: g.rack.clone(),
                tokens: None,
                schema: g.schema.clone(),
                release: g.release.clone(),
                gossip: Some(g),
                in_tables: false,
            });
        }

        // 4. liveness: direct connects to every node but the coordinator, concurrently
        let budget = self.budget(ctx);
        let direct =
            futures::future::join_all(drafts.iter().enumerate().map(|(i, d)| async move {
                if i == 0 {
                    return Direct::Ready;
                }
                let Some(addr) = d.native else {
                    return Direct::Failed("no native address known".into());
                };
                match tokio::time::timeout(budget, self.client.connect(addr)).await {
                    Ok(Ok(_)) => Direct::Ready,
                    Ok(Err(e)) => match e.kind {
                        CqlErrorKind::Refused => Direct::Refused(e.message),
                        CqlErrorKind::Unauthorized => Direct::AuthRefused(e.message),
                        CqlErrorKind::Timeout => Direct::TimedOut,
                        _ => Direct::Failed(e.message),
                    },
                    Err(_) => Direct::TimedOut,
                }
            }))
            .await;
        let driver = if self.config.driver_state {
            let budget = self.budget(ctx);
            match tokio::time::timeout(
                budget,
                self.client.driver_states(&self.config.contact_points),
            )
            .await
            {
                Ok(Ok(states)) => states,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "cassandra.ring: driver session unavailable");
                    None
                }
                Err(_) => None,
            }
        } else {
            None
        };

        // 5. heartbeats for nodes that refused CQL but that gossip still lists as alive-looking
        let needs_heartbeat: Vec<usize> = drafts
            .iter()
            .zip(&direct)
            .enumerate()
            .filter(|(_, (d, dc))| {
                matches!(
                    dc,
                    Direct::Refused(_) | Direct::Failed(_) | Direct::TimedOut
                ) && d.gossip.as_ref().is_some_and(|g| {
                    g.heartbeat.is_some()
                        && !matches!(
                            g.status.as_deref().map(verb),
                            Some("shutdown") | Some("hibernate")
                        )
                })
            })
            .map(|(i, _)| i)
            .collect();
        let mut heartbeat_rose: BTreeMap<usize, bool> = BTreeMap::new();
        if !needs_heartbeat.is_empty()
            && !self.config.heartbeat_wait.is_zero()
            && ctx.remaining() > self.config.heartbeat_wait * 2
        {
            tokio::time::sleep(self.config.heartbeat_wait).await;
            match conn.query(GOSSIP).await {
                Ok(rows) => {
                    let mut again: BTreeMap<IpAddr, GossipRow> = BTreeMap::new();
                    for (i, row) in rows.iter().enumerate() {
                        let g = gossip_row(i, row).map_err(bad)?;
                        if let Some(a) = g.address {
                            again.insert(a, g);
                        }
                    }
                    for i in needs_heartbeat {
                        let d = &drafts[i];
                        let (Some(a), Some(g0)) = (d.address, d.gossip.as_ref()) else {
                            continue;
                        };
                        if let Some(g1) = again.get(&a) {
                            let rose =
                                (g1.generation, g1.heartbeat) > (g0.generation, g0.heartbeat);
                            heartbeat_rose.insert(i, rose);
                        }
                    }
                }
                Err(e) => gaps.push(format!(
                    "second read of gossip heartbeats failed: {}",
                    e.message
                )),
            }
        }

        // 6. the ring
        let murmur = partitioner
            .as_deref()
            .is_some_and(|p| p.ends_with("Murmur3Partitioner"));
        let mut owners: Vec<(i64, usize)> = Vec::new();
        let mut owns_ok = murmur;
        let mut nodes = Vec::with_capacity(drafts.len());
        for (i, (d, dc)) in drafts.iter().zip(direct).enumerate() {
            let address = d.address.map_or_else(|| "?".to_string(), |a| a.to_string());
            let mut n = RingNode::new(address);
            n.datacenter = d.dc.clone();
            n.rack = d.rack.clone();
            n.host_id = d.host_id.clone();
            n.native_address = d.native.map(|a| a.to_string());
            n.schema_version = d.schema.clone();
            n.release_version = d.release.clone();
            n.tokens = d.tokens.as_ref().map(|t| t.len() as u32);
            if let Some(g) = &d.gossip {
                n.gossip_status = g.status.clone();
                n.load_bytes = g
                    .load
                    .as_deref()
                    .and_then(|l| l.parse::<f64>().ok())
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .map(|v| v as u64);
                let (state, replacing) = state_of(g.status.as_deref());
                n.state = state;
                n.replacing = replacing;
            } else if gossip_rows.is_some() {
                gaps.push(format!("{}: not in system_views.gossip_info", n.address));
            }
            if d.in_tables
                && d.tokens.as_ref().is_some_and(|t| !t.is_empty())
                && n.state != RingState::Joining
            {
                for t in d.tokens.iter().flatten() {
                    match t.parse::<i64>() {
                        Ok(v) => owners.push((v, i)),
                        Err(_) => owns_ok = false,
                    }
                }
            } else if d.in_tables && n.state != RingState::Joining {
                owns_ok = false;
            }
            let driver_node = driver.as_ref().and_then(|states| {
                states.iter().find(|s| {
                    Some(s.native_address) == d.native
                        || (s.host_id.is_some() && s.host_id == d.host_id)
                })
            });
            n.driver_state = driver_node.map(|s| s.state.name().to_string());
            let driver_down = driver_node.is_some_and(|s| {
                matches!(s.state, DriverNodeState::Down | DriverNodeState::ForcedDown)
            });
            let announced_down = n
                .gossip_status
                .as_deref()
                .map(verb)
                .is_some_and(|v| v == "shutdown" || v == "hibernate");
            let rose = heartbeat_rose.get(&i).copied();
            let (status, source, seen) = match dc {
                Direct::Ready if i == 0 => (
                    Liveness::Up,
                    LivenessSource::Coordinator,
                    "coordinator".to_string(),
                ),
                Direct::Ready => (
                    Liveness::Up,
                    LivenessSource::DirectConnect,
                    "ready".to_string(),
                ),
                Direct::AuthRefused(m) => (
                    Liveness::Up,
                    LivenessSource::DirectConnect,
                    format!("answered, credentials refused: {m}"),
                ),
                Direct::Refused(m) if announced_down => (
                    Liveness::Down,
                    LivenessSource::DirectConnect,
                    format!("refused: {m}"),
                ),
                Direct::Refused(m) if rose == Some(true) => (
                    Liveness::Up,
                    LivenessSource::GossipHeartbeat,
                    format!("refused: {m}; gossip heartbeat rising"),
                ),
                Direct::Refused(m) => (
                    Liveness::Down,
                    LivenessSource::DirectConnect,
                    format!("refused: {m}"),
                ),
                other => {
                    let seen = match other {
                        Direct::TimedOut => format!("timeout after {budget:?}"),
                        Direct::Failed(m) => format!("error: {m}"),
                        _ => String::new(),
                    };
                    if announced_down {
                        (Liveness::Down, LivenessSource::GossipStatus, seen)
                    } else if rose == Some(true) {
                        (Liveness::Up, LivenessSource::GossipHeartbeat, seen)
                    } else if driver_down {
                        (Liveness::Down, LivenessSource::DriverState, seen)
                    } else {
                        (Liveness::Unknown, LivenessSource::None, seen)
                    }
                }
            };
            n.status = status;
            n.liveness_source = source;
            n.direct_connect = Some(seen);
            nodes.push(n);
        }
        let owns_basis = if owns_ok && !owners.is_empty() {
            let shares = token_ownership(&owners, nodes.len());
            for (i, n) in nodes.iter_mut().enumerate() {
                if owners.iter().any(|(_, o)| *o == i) {
                    n.owns_percent = shares.get(i).map(|s| (s * 10.0).round() / 10.0);
                }
            }
            Some("token_ranges".to_string())
        } else {
            None
        };
        let mut schema_versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in &nodes {
            if let Some(v) = &n.schema_version {
                schema_versions
                    .entry(v.clone())
                    .or_default()
                    .push(n.address.clone());
            }
        }
        let live_versions = nodes
            .iter()
            .filter(|n| n.status != Liveness::Down)
            .filter_map(|n| n.schema_version.as_deref())
            .collect::<BTreeSet<&str>>()
            .len();
        let mut ring = Ring {
            source: RingSource::Cql,
            liveness_source: LivenessSource::DirectConnect,
            observed_via: here.clone(),
            cluster_name,
            nodes,
            owns_basis,
            schema_versions,
            schema_disagreement: live_versions > 1,
            missing_expected: Vec::new(),
            notes: Vec::new(),
        };
        ring.missing_expected = ring.find_missing(&self.config.expected_nodes);
        let mut obs = Observation::new(Self::ID, &self.target.name, ctx.now());
        for g in gaps {
            obs.mark_incomplete(g);
        }
        emit(&mut obs, &ring, self.config.max_node_series, true);
        Ok(obs)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn ownership_of_evenly_spread_tokens() {
        let min = i64::MIN;
        let third = (1i128 << 64) / 3;
        let t = |k: i128| (min as i128 + k * third) as i64;
        let shares = token_ownership(&[(t(0), 0), (t(1), 1), (t(2), 2)], 3);
        for s in shares {
            assert!((s - 33.33).abs() < 0.1, "{s}");
        }
        assert_eq!(token_ownership(&[(5, 0)], 1), vec![100.0]);
    }

    #[test]
    fn gossip_states() {
        assert_eq!(state_of(Some("NORMAL,-1")), (RingState::Normal, false));
        assert_eq!(state_of(Some("BOOT,1")), (RingState::Joining, false));
        assert_eq!(state_of(Some("BOOT_REPLACE,1")), (RingState::Joining, true));
        assert_eq!(state_of(Some("hibernate,true")), (RingState::Normal, true));
        assert_eq!(state_of(Some("shutdown,true")), (RingState::Normal, false));
        assert_eq!(state_of(Some("LEAVING,1")), (RingState::Leaving, false));
        assert_eq!(state_of(Some("MOVING,1")), (RingState::Moving, false));
        assert_eq!(state_of(Some("")), (RingState::Unknown, false));
        assert_eq!(state_of(None), (RingState::Unknown, false));
    }
}
