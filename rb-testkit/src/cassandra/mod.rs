//! A fake Cassandra ring that speaks CQL native protocol v4 (the `cassandra-protocol` codec, the
//! one cdrs-tokio uses) and renders `nodetool status` from the same state.
//!
//! # Addressing
//! Like a real ring (and like ccm), node `i` listens on its own loopback address
//! `127.0.0.<i+1>` and every node shares **one** native port, picked at start. This is what makes
//! driver discovery work unchanged: `system.peers_v2` announces `native_address`/`native_port`,
//! and the legacy `system.peers` only carries `rpc_address` — drivers then reuse the contact
//! point's port, which is the same port on every fake node. (Linux routes all of `127.0.0.0/8`
//! to the loopback interface, so no setup is needed.) The first address is configurable with
//! [`FakeRingBuilder::base_address`]; all traffic stays on `127.0.0.0/8`.
//!
//! # What it answers
//! OPTIONS → SUPPORTED, STARTUP → READY (optionally lz4/snappy), REGISTER → READY (the
//! connection then receives `TOPOLOGY_CHANGE` / `STATUS_CHANGE` events with stream id -1),
//! QUERY and PREPARE/EXECUTE of `SELECT`s on `system.local`, `system.peers_v2`, `system.peers`,
//! `system_schema.keyspaces` (including `toJson(replication) AS replication`) and
//! `system_views.gossip_info`, `USE` → SET_KEYSPACE; anything else gets a real CQL error
//! (Syntax, Invalid, Unprepared, Protocol). Rows carry the column types Cassandra uses
//! (`inet`, `uuid`, `set<text>`, `map<text, text>`, `int`, …) and paging is honoured.
//!
//! # Ring state and control
//! Each node has a host ID, DC, rack, Murmur3 tokens (16 per node by default, spread evenly),
//! a schema version, a release version (`5.0.9` by default), a load, a ring state
//! ([`NodeStatus`]: `N`/`J`/`L`/`M`) and up/down. [`FakeRing`] changes them at run time:
//! [`kill`](FakeRing::kill) / [`stop`](FakeRing::stop) / [`revive`](FakeRing::revive) (with
//! `STATUS_CHANGE` events), [`add_node`](FakeRing::add_node) /
//! [`remove_node`](FakeRing::remove_node) (with `TOPOLOGY_CHANGE` events),
//! [`set_status`](FakeRing::set_status), [`set_schema_version`](FakeRing::set_schema_version)
//! (schema disagreement), [`set_load`](FakeRing::set_load),
//! [`set_peers_v2_invalid`](FakeRing::set_peers_v2_invalid). As in Cassandra, a joining node is
//! not in its peers' `system.peers*` tables, dead nodes keep their peers rows, and
//! `system_views.gossip_info` shows a heartbeat that rises by one per second of tokio time while
//! the node is up and freezes when it dies (so a paused tokio clock drives it). Events are
//! pushed at once (a real ring needs its failure detector's few seconds to convict a killed node).
//! [`nodetool_status`](FakeRing::nodetool_status) renders the same state in the exact layout of
//! Cassandra 5.0's `nodetool status` (checked against real captures).
//!
//! Faults per node: [`set_latency`](FakeRing::set_latency) and [`set_fault`](FakeRing::set_fault)
//! with a [`Fault`] (accept but never answer, answer the handshake but not queries, a malformed
//! frame, a truncated frame). Every request is recorded: [`requests`](FakeRing::requests),
//! [`queries`](FakeRing::queries).
//!
//! # Driver behaviour worth knowing (cdrs-tokio 9.0.2, same against a real ring)
//! When the node holding the driver's control connection dies, cdrs-tokio reconnects the control
//! connection to a live node and refreshes its metadata from there, but that refresh marks every
//! node `Unknown` (it compares `broadcast_address`, the storage address, with the native
//! address), so the session then fails with "No nodes available in query plan!". A probe must
//! not read that as "the cluster is down": a fresh session on a live contact point works.
//!
//! # Example
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), rb_testkit::cassandra::CassandraFakeError> {
//! use rb_testkit::cassandra::{FakeRing, NodeStatus};
//!
//! let ring = FakeRing::start(3).await?;
//! let contact = ring.addr(0)?; // 127.0.0.1:<port>: the driver's contact point
//! assert_eq!(ring.addr(2)?.ip().to_string(), "127.0.0.3");
//! assert_eq!(ring.addr(2)?.port(), contact.port());
//!
//! ring.kill(2)?; // refuses connections; the live nodes push STATUS_CHANGE DOWN
//! ring.set_status(1, NodeStatus::Leaving)?;
//! let status = ring.nodetool_status();
//! assert!(status.contains("UN  127.0.0.1"));
//! assert!(status.contains("UL  127.0.0.2"));
//! assert!(status.contains("DN  127.0.0.3"));
//! # Ok(()) }
//! ```

mod cql;
mod nodetool;
mod server;
mod state;
mod tables;
mod value;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cassandra_protocol::frame::events::{
    ServerEvent, StatusChange, StatusChangeType, TopologyChange, TopologyChangeType,
};
use tokio::time::Instant;
use uuid::Uuid;

pub use state::{NodeInfo, NodeStatus, Replication};

use server::Shared;
use state::{NodeRecord, RingState};

/// Errors of the fake ring's control API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CassandraFakeError {
    /// No node with this index.
    #[error("fake Cassandra ring: there is no node {0}")]
    UnknownNode(usize),
    /// The node was removed from the ring.
    #[error("fake Cassandra ring: node {0} was removed from the ring")]
    NodeRemoved(usize),
    /// A node could not listen on its address.
    #[error("fake Cassandra ring: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The builder was given something the ring cannot represent.
    #[error("fake Cassandra ring: invalid configuration: {0}")]
    Config(String),
    /// Starting or reviving nodes needs a tokio runtime.
    #[error("fake Cassandra ring: must be used from inside a tokio runtime")]
    NoRuntime,
    /// `nodetool status` refused (what the real tool prints after `Error:`).
    #[error("nodetool status: {0}")]
    Nodetool(String),
}

/// A misbehaviour injected into one node (on top of the ring state).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Accept TCP connections and read requests, but never answer anything (not even STARTUP).
    Hang,
    /// Answer the handshake (OPTIONS, STARTUP, REGISTER) but never answer QUERY, PREPARE,
    /// EXECUTE or BATCH.
    HangQueries,
    /// Answer QUERY/PREPARE/EXECUTE/BATCH with a frame whose header carries an unknown protocol
    /// version followed by noise.
    MalformedFrame,
    /// Answer QUERY/PREPARE/EXECUTE/BATCH with the header and half of the body of the real
    /// answer, then close the connection.
    TruncatedFrame,
}

/// The kind of a request a node received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestKind {
    /// STARTUP.
    Startup,
    /// OPTIONS.
    Options,
    /// QUERY.
    Query,
    /// PREPARE.
    Prepare,
    /// EXECUTE.
    Execute,
    /// REGISTER.
    Register,
    /// BATCH.
    Batch,
    /// Anything else (AUTH_RESPONSE, …).
    Other,
}

/// One request a node received (recorded whatever the fault, before answering).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceivedRequest {
    /// What it was.
    pub kind: RequestKind,
    /// The CQL text: of a QUERY or PREPARE, or of the prepared statement an EXECUTE ran.
    pub query: Option<String>,
    /// The stream id the client used.
    pub stream: i16,
    /// When it arrived (tokio clock).
    pub at: Instant,
}

/// How one node of the ring is described before it starts (all fields optional).
#[derive(Debug, Clone, Default)]
pub struct NodeSpec {
    datacenter: Option<String>,
    rack: Option<String>,
    tokens: Option<Vec<i64>>,
    host_id: Option<Uuid>,
    load_bytes: Option<Option<u64>>,
    status: Option<NodeStatus>,
    release_version: Option<String>,
    schema_version: Option<Uuid>,
}

impl NodeSpec {
    /// A node with the ring's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Datacenter (default `datacenter1`).
    pub fn datacenter(mut self, dc: impl Into<String>) -> Self {
        self.datacenter = Some(dc.into());
        self
    }

    /// Rack (default `rack1`).
    pub fn rack(mut self, rack: impl Into<String>) -> Self {
        self.rack = Some(rack.into());
        self
    }

    /// Murmur3 tokens (default: spread evenly with the other nodes).
    pub fn tokens(mut self, tokens: Vec<i64>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Host ID (default: a random v4 UUID).
    pub fn host_id(mut self, id: Uuid) -> Self {
        self.host_id = Some(id);
        self
    }

    /// Live data size in bytes; `None` renders `?` (default: a few hundred KiB).
    pub fn load_bytes(mut self, bytes: Option<u64>) -> Self {
        self.load_bytes = Some(bytes);
        self
    }

    /// Initial ring state (default [`NodeStatus::Normal`]).
    pub fn status(mut self, status: NodeStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// `release_version` of this node (default: the ring's).
    pub fn release_version(mut self, v: impl Into<String>) -> Self {
        self.release_version = Some(v.into());
        self
    }

    /// Schema version of this node (default: the ring's).
    pub fn schema_version(mut self, v: Uuid) -> Self {
        self.schema_version = Some(v);
        self
    }
}

/// Builder of a [`FakeRing`].
#[derive(Debug, Clone)]
pub struct FakeRingBuilder {
    specs: Vec<NodeSpec>,
    count: usize,
    cluster_name: String,
    release_version: String,
    tokens_per_node: usize,
    keyspaces: Vec<(String, Replication)>,
    peers_v2_invalid: bool,
    base: Ipv4Addr,
    port: Option<u16>,
    credentials: Option<(String, String)>,
}

impl Default for FakeRingBuilder {
    fn default() -> Self {
        FakeRingBuilder {
            specs: Vec::new(),
            count: 3,
            cluster_name: "Test Cluster".into(),
            release_version: "5.0.9".into(),
            tokens_per_node: 16,
            keyspaces: Vec::new(),
            peers_v2_invalid: false,
            base: Ipv4Addr::new(127, 0, 0, 1),
            port: None,
            credentials: None,
        }
    }
}

impl FakeRingBuilder {
    /// At least `n` nodes (nodes added with [`FakeRingBuilder::node`] count; the rest get
    /// defaults). Default 3.
    pub fn nodes(mut self, n: usize) -> Self {
        self.count = n;
        self
    }

    /// Add a described node (node indexes follow the order of the calls).
    pub fn node(mut self, spec: NodeSpec) -> Self {
        self.specs.push(spec);
        self
    }

    /// `cluster_name` (default `Test Cluster`).
    pub fn cluster_name(mut self, name: impl Into<String>) -> Self {
        self.cluster_name = name.into();
        self
    }

    /// `release_version` of every node (default `5.0.9`).
    pub fn release_version(mut self, v: impl Into<String>) -> Self {
        self.release_version = v.into();
        self
    }

    /// Tokens per node when a node's tokens are not given (default 16, Cassandra 5.0's
    /// `num_tokens`).
    pub fn tokens_per_node(mut self, n: usize) -> Self {
        self.tokens_per_node = n;
        self
    }

    /// A user keyspace (listed in `system_schema.keyspaces`, used for effective ownership).
    pub fn keyspace(mut self, name: impl Into<String>, replication: Replication) -> Self {
        self.keyspaces.push((name.into(), replication));
        self
    }

    /// Make `system.peers_v2` answer `Invalid: unconfigured table peers_v2` (a 3.x node), so
    /// drivers fall back to `system.peers`.
    pub fn peers_v2_invalid(mut self, on: bool) -> Self {
        self.peers_v2_invalid = on;
        self
    }

    /// Require `PasswordAuthenticator` credentials: STARTUP is answered with AUTHENTICATE, and an
    /// AUTH_RESPONSE (SASL PLAIN) with other credentials gets an `Authentication` error, as in
    /// Cassandra. Default: no authentication (AllowAllAuthenticator).
    pub fn password_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// Address of node 0 (default `127.0.0.1`); node `i` gets this address plus `i`. Must be a
    /// loopback address.
    pub fn base_address(mut self, ip: Ipv4Addr) -> Self {
        self.base = ip;
        self
    }

    /// Use this native port instead of an ephemeral one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Bind every node and start serving. Takes a few milliseconds.
    pub async fn start(self) -> Result<FakeRing, CassandraFakeError> {
        tokio::runtime::Handle::try_current().map_err(|_| CassandraFakeError::NoRuntime)?;
        if !self.base.is_loopback() {
            return Err(CassandraFakeError::Config(format!(
                "base address {} is not a loopback address",
                self.base
            )));
        }
        let mut specs = self.specs.clone();
        while specs.len() < self.count {
            specs.push(NodeSpec::new());
        }
        if specs.is_empty() {
            return Err(CassandraFakeError::Config(
                "a ring needs at least one node".into(),
            ));
        }
        if self.tokens_per_node == 0 && specs.iter().any(|s| s.tokens.is_none()) {
            return Err(CassandraFakeError::Config(
                "tokens_per_node must be at least 1".into(),
            ));
        }
        let ips: Vec<Ipv4Addr> = (0..specs.len())
            .map(|i| node_ip(self.base, i))
            .collect::<Result<_, _>>()?;
        // Pick one port free on every node address (retry if another process holds it).
        let mut attempt = 0;
        let (port, listeners) = loop {
            attempt += 1;
            match bind_all(&ips, self.port) {
                Ok(ok) => break ok,
                Err(e) if self.port.is_none() && attempt < 20 => {
                    tracing::debug!(error = %e, "fake Cassandra ring: port clash, retrying");
                }
                Err(e) => return Err(e),
            }
        };
        let now = Instant::now();
        let generation = epoch_secs();
        let schema = Uuid::new_v4();
        let n = specs.len();
        let mut nodes = Vec::with_capacity(n);
        for (i, spec) in specs.into_iter().enumerate() {
            let info = NodeInfo {
                index: i,
                native_addr: SocketAddr::new(IpAddr::V4(ips[i]), port),
                host_id: spec.host_id.unwrap_or_else(Uuid::new_v4),
                datacenter: spec.datacenter.unwrap_or_else(|| "datacenter1".into()),
                rack: spec.rack.unwrap_or_else(|| "rack1".into()),
                tokens: sorted(
                    spec.tokens
                        .unwrap_or_else(|| state::even_tokens(n, self.tokens_per_node, i)),
                ),
                schema_version: spec.schema_version.unwrap_or(schema),
                release_version: spec
                    .release_version
                    .unwrap_or_else(|| self.release_version.clone()),
                load_bytes: spec.load_bytes.unwrap_or(Some(default_load(i))),
                status: spec.status.unwrap_or(NodeStatus::Normal),
                up: true,
                removed: false,
            };
            nodes.push(NodeRecord::new(info, generation, now));
        }
        let mut keyspaces = state::system_keyspaces();
        keyspaces.extend(self.keyspaces);
        let ring = RingState {
            cluster_name: self.cluster_name,
            nodes,
            keyspaces,
            peers_v2_invalid: self.peers_v2_invalid,
            credentials: self.credentials.clone(),
        };
        let shared = Shared::new(ring);
        let fake = FakeRing {
            shared,
            port,
            base: self.base,
            schema,
            tokens_per_node: self.tokens_per_node.max(1),
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            server::serve(&fake.shared, i, listener)?;
        }
        Ok(fake)
    }
}

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort_unstable();
    v
}

fn default_load(i: usize) -> u64 {
    // A freshly started node holds some system data: ~100–200 KiB, different per node.
    98_765 + (i as u64 % 7) * 13_579
}

fn epoch_secs() -> i32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX))
        .unwrap_or(1)
}

fn node_ip(base: Ipv4Addr, i: usize) -> Result<Ipv4Addr, CassandraFakeError> {
    let ip = u32::from(base)
        .checked_add(u32::try_from(i).unwrap_or(u32::MAX))
        .map(Ipv4Addr::from)
        .filter(|ip| ip.is_loopback() && ip.octets()[3] != 0 && ip.octets()[3] != 255)
        .ok_or_else(|| {
            CassandraFakeError::Config(format!(
                "node {i} would not get a usable loopback address after {base}"
            ))
        })?;
    Ok(ip)
}

fn bind_all(
    ips: &[Ipv4Addr],
    port: Option<u16>,
) -> Result<(u16, Vec<tokio::net::TcpListener>), CassandraFakeError> {
    let mut listeners = Vec::with_capacity(ips.len());
    let mut port = port.unwrap_or(0);
    for ip in ips {
        let addr = SocketAddr::new(IpAddr::V4(*ip), port);
        let listener = server::bind(addr)?;
        if port == 0 {
            port = listener
                .local_addr()
                .map_err(|source| CassandraFakeError::Bind { addr, source })?
                .port();
        }
        listeners.push(listener);
    }
    Ok((port, listeners))
}

/// A running fake Cassandra ring. Dropping it stops every node.
#[derive(Debug)]
pub struct FakeRing {
    shared: Arc<Shared>,
    port: u16,
    base: Ipv4Addr,
    schema: Uuid,
    tokens_per_node: usize,
}

impl FakeRing {
    /// Start `n` default nodes (one DC `datacenter1`, rack `rack1`, 16 tokens each).
    pub async fn start(n: usize) -> Result<FakeRing, CassandraFakeError> {
        FakeRingBuilder::default().nodes(n).start().await
    }

    /// A builder for anything but the defaults.
    pub fn builder() -> FakeRingBuilder {
        FakeRingBuilder::default()
    }

    /// The native port every node listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The schema version every node started with.
    pub fn initial_schema_version(&self) -> Uuid {
        self.schema
    }

    /// Number of node slots (removed nodes included; indexes are stable).
    pub fn len(&self) -> usize {
        self.shared.lock().ring.nodes.len()
    }

    /// Whether the ring has no node slot at all (never true for a started ring).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Native address of node `i`.
    pub fn addr(&self, i: usize) -> Result<SocketAddr, CassandraFakeError> {
        Ok(self.node(i)?.native_addr)
    }

    /// Native addresses of the members that are up (contact points for a driver).
    pub fn contact_points(&self) -> Vec<SocketAddr> {
        self.nodes()
            .into_iter()
            .filter(|n| n.up)
            .map(|n| n.native_addr)
            .collect()
    }

    /// A snapshot of node `i` (removed nodes included, flagged).
    pub fn node(&self, i: usize) -> Result<NodeInfo, CassandraFakeError> {
        let inner = self.shared.lock();
        inner
            .ring
            .nodes
            .get(i)
            .map(|n| n.info.clone())
            .ok_or(CassandraFakeError::UnknownNode(i))
    }

    /// Snapshots of the current members (removed nodes left out).
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let inner = self.shared.lock();
        inner.ring.members().map(|n| n.info.clone()).collect()
    }

    fn with_member<R>(
        &self,
        i: usize,
        f: impl FnOnce(&mut server::Inner, Instant) -> R,
    ) -> Result<R, CassandraFakeError> {
        let mut inner = self.shared.lock();
        match inner.ring.nodes.get(i) {
            None => return Err(CassandraFakeError::UnknownNode(i)),
            Some(n) if n.info.removed => return Err(CassandraFakeError::NodeRemoved(i)),
            Some(_) => {}
        }
        Ok(f(&mut inner, Instant::now()))
    }

    /// Crash node `i` (SIGKILL): it stops listening (connections are refused), its open
    /// connections close, its gossip heartbeat freezes (its gossip status stays what it was), and
    /// every live node pushes `STATUS_CHANGE DOWN` to the connections that registered for it.
    /// A no-op on a node already down.
    pub fn kill(&self, i: usize) -> Result<(), CassandraFakeError> {
        self.go_down(i, false)
    }

    /// Stop node `i` gracefully (SIGTERM / `nodetool stopdaemon`): like [`FakeRing::kill`], but
    /// the node first announces its shutdown through gossip (`status_with_port` becomes
    /// `shutdown,true`). `nodetool status` shows it `DN` either way.
    pub fn stop(&self, i: usize) -> Result<(), CassandraFakeError> {
        self.go_down(i, true)
    }

    fn go_down(&self, i: usize, graceful: bool) -> Result<(), CassandraFakeError> {
        self.with_member(i, |inner, now| {
            let Some(rec) = inner.ring.nodes.get_mut(i) else {
                return;
            };
            if !rec.info.up {
                return;
            }
            if graceful {
                rec.announced_shutdown = true;
                rec.bump("status_with_port", now);
                rec.bump("status", now);
            }
            rec.info.up = false;
            rec.go_down(now);
            let addr = rec.info.native_addr;
            server::stop(inner, i);
            server::push_event(
                inner,
                &ServerEvent::StatusChange(StatusChange {
                    change_type: StatusChangeType::Down,
                    addr,
                }),
                Some(i),
            );
        })
    }

    /// Restart node `i`: it listens again (same address and port), gets a new gossip generation,
    /// and the live nodes push `STATUS_CHANGE UP`. A no-op on a node already up. Async because
    /// it waits (a few milliseconds at most) for the stopped listener to be gone.
    pub async fn revive(&self, i: usize) -> Result<(), CassandraFakeError> {
        let (addr, stopped) = {
            let mut inner = self.shared.lock();
            let addr = match inner.ring.nodes.get(i) {
                None => return Err(CassandraFakeError::UnknownNode(i)),
                Some(n) if n.info.removed => return Err(CassandraFakeError::NodeRemoved(i)),
                Some(n) if n.info.up && server::is_listening(&inner, i) => return Ok(()),
                Some(n) => n.info.native_addr,
            };
            (addr, server::take_stopped_task(&mut inner, i))
        };
        if let Some(task) = stopped {
            // Aborted: completes as soon as the runtime drops it (and its listener).
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        let listener = server::bind(addr)?;
        server::serve(&self.shared, i, listener)?;
        self.with_member(i, |inner, now| {
            if let Some(rec) = inner.ring.nodes.get_mut(i) {
                rec.info.up = true;
                rec.go_up(now, epoch_secs());
                rec.bump("status_with_port", now);
                rec.bump("status", now);
            }
            server::push_event(
                inner,
                &ServerEvent::StatusChange(StatusChange {
                    change_type: StatusChangeType::Up,
                    addr,
                }),
                Some(i),
            );
        })
    }

    /// Add a node at the next address. A node added as [`NodeStatus::Joining`] bootstraps: it
    /// answers, shows `UJ` and gossips `BOOT`, but is not in the other nodes' peers tables until
    /// [`FakeRing::set_status`] makes it `Normal`. Any other state joins at once: the live nodes
    /// push `TOPOLOGY_CHANGE NEW_NODE`. Returns the new node's index.
    pub fn add_node(&self, spec: NodeSpec) -> Result<usize, CassandraFakeError> {
        let (index, info) = {
            let inner = self.shared.lock();
            let index = inner.ring.nodes.len();
            let ip = node_ip(self.base, index)?;
            let existing: Vec<i64> = inner
                .ring
                .members()
                .flat_map(|n| n.info.tokens.iter().copied())
                .collect();
            let default_release = inner
                .ring
                .members()
                .next()
                .map(|n| n.info.release_version.clone())
                .unwrap_or_else(|| "5.0.9".into());
            let info =
                NodeInfo {
                    index,
                    native_addr: SocketAddr::new(IpAddr::V4(ip), self.port),
                    host_id: spec.host_id.unwrap_or_else(Uuid::new_v4),
                    datacenter: spec.datacenter.unwrap_or_else(|| "datacenter1".into()),
                    rack: spec.rack.unwrap_or_else(|| "rack1".into()),
                    tokens: sorted(spec.tokens.unwrap_or_else(|| {
                        state::bisecting_tokens(&existing, self.tokens_per_node)
                    })),
                    schema_version: spec.schema_version.unwrap_or(self.schema),
                    release_version: spec.release_version.unwrap_or(default_release),
                    load_bytes: spec.load_bytes.unwrap_or(Some(default_load(index))),
                    status: spec.status.unwrap_or(NodeStatus::Normal),
                    up: true,
                    removed: false,
                };
            (index, info)
        };
        let listener = server::bind(info.native_addr)?;
        {
            let mut inner = self.shared.lock();
            if inner.ring.nodes.len() != index {
                return Err(CassandraFakeError::Config(
                    "nodes were added concurrently; add them one at a time".into(),
                ));
            }
            let joined = info.status != NodeStatus::Joining;
            let addr = info.native_addr;
            inner
                .ring
                .nodes
                .push(NodeRecord::new(info, epoch_secs(), Instant::now()));
            inner.nodes.push(server::NodeRuntime::default());
            if joined {
                server::push_event(
                    &mut inner,
                    &ServerEvent::TopologyChange(TopologyChange {
                        change_type: TopologyChangeType::NewNode,
                        addr,
                    }),
                    Some(index),
                );
            }
        }
        server::serve(&self.shared, index, listener)?;
        Ok(index)
    }

    /// `nodetool removenode` / a finished decommission: node `i` leaves the ring (it stops
    /// listening, disappears from peers tables, gossip and `nodetool status`) and the live nodes
    /// push `TOPOLOGY_CHANGE REMOVED_NODE`.
    pub fn remove_node(&self, i: usize) -> Result<(), CassandraFakeError> {
        self.with_member(i, |inner, now| {
            let Some(rec) = inner.ring.nodes.get_mut(i) else {
                return;
            };
            let addr = rec.info.native_addr;
            if rec.info.up {
                rec.go_down(now);
            }
            rec.info.up = false;
            rec.info.removed = true;
            server::stop(inner, i);
            server::push_event(
                inner,
                &ServerEvent::TopologyChange(TopologyChange {
                    change_type: TopologyChangeType::RemovedNode,
                    addr,
                }),
                Some(i),
            );
        })
    }

    /// Set node `i`'s ring state. A joining node that becomes `Normal` finishes its bootstrap:
    /// it enters the peers tables and the live nodes push `TOPOLOGY_CHANGE NEW_NODE`.
    pub fn set_status(&self, i: usize, status: NodeStatus) -> Result<(), CassandraFakeError> {
        self.with_member(i, |inner, now| {
            let Some(rec) = inner.ring.nodes.get_mut(i) else {
                return;
            };
            let was = rec.info.status;
            if was == status {
                return;
            }
            rec.info.status = status;
            rec.bump("status_with_port", now);
            rec.bump("status", now);
            let addr = rec.info.native_addr;
            if was == NodeStatus::Joining && rec.info.up {
                server::push_event(
                    inner,
                    &ServerEvent::TopologyChange(TopologyChange {
                        change_type: TopologyChangeType::NewNode,
                        addr,
                    }),
                    Some(i),
                );
            }
        })
    }

    /// Give node `i` its own schema version (schema disagreement when it differs from the others).
    pub fn set_schema_version(&self, i: usize, version: Uuid) -> Result<(), CassandraFakeError> {
        self.with_member(i, |inner, now| {
            if let Some(rec) = inner.ring.nodes.get_mut(i) {
                rec.info.schema_version = version;
                rec.bump("schema", now);
            }
        })
    }

    /// Set node `i`'s live data size (`None` renders `?` in `nodetool status`).
    pub fn set_load(&self, i: usize, bytes: Option<u64>) -> Result<(), CassandraFakeError> {
        self.with_member(i, |inner, now| {
            if let Some(rec) = inner.ring.nodes.get_mut(i) {
                rec.info.load_bytes = bytes;
                rec.bump("load", now);
            }
        })
    }

    /// Add (or replace) a user keyspace.
    pub fn set_keyspace(&self, name: &str, replication: Replication) {
        let mut inner = self.shared.lock();
        if let Some(slot) = inner.ring.keyspaces.iter_mut().find(|(k, _)| k == name) {
            slot.1 = replication;
        } else {
            inner.ring.keyspaces.push((name.to_string(), replication));
        }
    }

    /// Switch `system.peers_v2` to `Invalid: unconfigured table peers_v2` (or back).
    pub fn set_peers_v2_invalid(&self, on: bool) {
        self.shared.lock().ring.peers_v2_invalid = on;
    }

    /// Inject a fault into node `i` (`None` clears it).
    pub fn set_fault(&self, i: usize, fault: Option<Fault>) -> Result<(), CassandraFakeError> {
        self.with_member(i, |inner, _| {
            if let Some(rt) = inner.nodes.get_mut(i) {
                rt.fault = fault;
            }
        })
    }

    /// Delay every answer of node `i` (tokio clock; zero removes the delay).
    pub fn set_latency(&self, i: usize, latency: Duration) -> Result<(), CassandraFakeError> {
        self.with_member(i, |inner, _| {
            if let Some(rt) = inner.nodes.get_mut(i) {
                rt.latency = latency;
            }
        })
    }

    /// Every request node `i` received, oldest first.
    pub fn requests(&self, i: usize) -> Result<Vec<ReceivedRequest>, CassandraFakeError> {
        let inner = self.shared.lock();
        inner
            .nodes
            .get(i)
            .map(|rt| rt.requests.clone())
            .ok_or(CassandraFakeError::UnknownNode(i))
    }

    /// The CQL text of every QUERY / PREPARE / EXECUTE node `i` received, oldest first.
    pub fn queries(&self, i: usize) -> Result<Vec<String>, CassandraFakeError> {
        Ok(self
            .requests(i)?
            .into_iter()
            .filter_map(|r| r.query)
            .collect())
    }

    /// Forget the recorded requests of every node.
    pub fn clear_requests(&self) {
        let mut inner = self.shared.lock();
        for rt in &mut inner.nodes {
            rt.requests.clear();
        }
    }

    /// `nodetool status` as the real tool prints it for this ring (Up/Down from the ring's view:
    /// killed nodes are `D`). Ownership is effective ownership when the user keyspaces share one
    /// replication (or, with none, `system_traces`'), otherwise `?` with the tool's `Note:`.
    pub fn nodetool_status(&self) -> String {
        let inner = self.shared.lock();
        nodetool::render_status(&inner.ring, None).unwrap_or_else(|e| e)
    }

    /// `nodetool status <keyspace>`: effective ownership for that keyspace.
    pub fn nodetool_status_keyspace(&self, keyspace: &str) -> Result<String, CassandraFakeError> {
        let inner = self.shared.lock();
        nodetool::render_status(&inner.ring, Some(keyspace)).map_err(|e| {
            CassandraFakeError::Nodetool(e.trim().trim_start_matches("Error: ").to_string())
        })
    }

    /// Stop every node now (dropping the ring does the same).
    pub fn shutdown(&self) {
        let mut inner = self.shared.lock();
        for i in 0..inner.nodes.len() {
            server::stop(&mut inner, i);
        }
    }
}

impl Drop for FakeRing {
    fn drop(&mut self) {
        self.shutdown();
    }
}
