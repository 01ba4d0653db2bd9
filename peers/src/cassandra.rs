//! A real three-node Apache Cassandra 5.0 ring started by `peers/scripts/cassandra.sh`.
//!
//! - [`CassandraRing`]: the ring as the script recorded it (`CASSANDRA_NODES`, `CASSANDRA_JMX_PORTS`,
//!   `CASSANDRA_NODETOOL`, `CASSANDRA_SCRIPT`); stop, kill and start one node (the real JVM, through the
//!   script, which owns the pid files); run the real `nodetool status`.
//! - [`parse_nodetool_status`]: a tolerant reader of `nodetool status` text (UN/DN… per address); the
//!   raw text is always kept next to the parsed rows ([`NodetoolStatus`]).
//! - [`CqlSession`]: a cdrs-tokio session on the ring: `system.local`, `system.peers_v2`, the column
//!   names and CQL types of any table, the driver's view of node states and STATUS_CHANGE events.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use cdrs_tokio::cluster::session::{Session, SessionBuilder, TcpSessionBuilder};
use cdrs_tokio::cluster::topology::NodeState;
use cdrs_tokio::cluster::{NodeTcpConfigBuilder, TcpConnectionManager};
use cdrs_tokio::frame::events::{ServerEvent, StatusChangeType};
use cdrs_tokio::frame::message_result::{ColType, ColTypeOption, ColTypeOptionValue};
use cdrs_tokio::load_balancing::RoundRobinLoadBalancingStrategy;
use cdrs_tokio::transport::TransportTcp;
use cdrs_tokio::types::rows::Row;
use cdrs_tokio::types::{AsRust, IntoRustByName};
use serde::Serialize;
use tokio::process::Command;
use tokio::sync::broadcast;

use crate::env::PeerEnv;

/// The ring the start script brought up.
#[derive(Debug, Clone)]
pub struct CassandraRing {
    nodes: Vec<SocketAddr>,
    jmx_ports: Vec<u16>,
    nodetool: PathBuf,
    script: PathBuf,
}

/// One node's row of `nodetool status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatusRow {
    /// The datacenter block the row is listed under.
    pub datacenter: String,
    /// `U` (up) or `D` (down), from the failure detector.
    pub status: char,
    /// `N` (normal), `J` (joining), `L` (leaving) or `M` (moving).
    pub state: char,
    /// The node's address as printed (may carry `:port` with `--resolve-ip` / `-pp`).
    pub address: String,
    /// Load as printed (`30.9 KiB`, raw bytes or `?`).
    pub load: String,
    /// The token count, when the column is present and numeric.
    pub tokens: Option<u32>,
    /// Ownership as printed (`64.7%`, `?`), when present.
    pub owns: Option<String>,
    /// The host id, unless printed as `null`.
    pub host_id: Option<String>,
    /// The rack (last column).
    pub rack: String,
}

impl NodeStatusRow {
    /// `status == 'U'`.
    pub fn is_up(&self) -> bool {
        self.status == 'U'
    }
    /// The address without a `:port` suffix.
    pub fn ip(&self) -> &str {
        match self.address.rsplit_once(':') {
            Some((ip, port)) if port.chars().all(|c| c.is_ascii_digit()) && !ip.contains(':') => ip,
            _ => &self.address,
        }
    }
}

/// The real `nodetool status` answer: the raw text and what was read from it.
#[derive(Debug, Clone, Serialize)]
pub struct NodetoolStatus {
    /// Exactly what nodetool printed on stdout.
    pub raw: String,
    /// The node rows found in it.
    pub rows: Vec<NodeStatusRow>,
}

impl NodetoolStatus {
    /// The row of the node with this IP, if listed.
    pub fn node(&self, ip: &str) -> Option<&NodeStatusRow> {
        self.rows.iter().find(|r| r.ip() == ip)
    }
    /// `(ip, "UN"/"DN"/…)` for every row, sorted by ip.
    pub fn summary(&self) -> BTreeMap<String, String> {
        self.rows
            .iter()
            .map(|r| (r.ip().to_string(), format!("{}{}", r.status, r.state)))
            .collect()
    }
}

/// Read `nodetool status` text. Tolerant of preambles and footers, empty DC blocks, any DC/rack names,
/// Load as `value unit`, raw bytes or `?`, Owns with or without `%`, Host ID `null`, and varying column
/// widths: rows are found by their two-letter status/state code and split on whitespace.
///
/// A line that starts with a status/state code but cannot be read is an error naming the line.
pub fn parse_nodetool_status(text: &str) -> Result<Vec<NodeStatusRow>> {
    let mut rows = Vec::new();
    let mut dc = String::new();
    for (idx, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("Datacenter:") {
            dc = name.trim().to_string();
            continue;
        }
        let fields: Vec<&str> = trimmed.split_whitespace().collect();
        let Some(code) = fields.first() else { continue };
        let mut chars = code.chars();
        let (Some(status), Some(state), None) = (chars.next(), chars.next(), chars.next()) else {
            continue;
        };
        if !matches!(status, 'U' | 'D') || !matches!(state, 'N' | 'J' | 'L' | 'M') {
            continue;
        }
        let row = parse_row(&dc, status, state, &fields[1..])
            .with_context(|| format!("nodetool status line {}: {trimmed:?}", idx + 1))?;
        rows.push(row);
    }
    Ok(rows)
}

fn parse_row(dc: &str, status: char, state: char, f: &[&str]) -> Result<NodeStatusRow> {
    // address, load (1 or 2 fields), [tokens], [owns], host id, rack — the rack may be missing only
    // in malformed text; we read from both ends.
    if f.len() < 4 {
        bail!(
            "expected at least address, load, host id and rack, found {} fields",
            f.len()
        );
    }
    let address = f[0].to_string();
    let rack = f[f.len() - 1].to_string();
    let host = f[f.len() - 2];
    let host_id = (host != "null").then(|| host.to_string());
    let middle = &f[1..f.len() - 2];
    // Load: "?" | "<bytes>" | "<number> <unit>".
    let (load, rest) = match middle {
        [value, unit, rest @ ..] if is_size_unit(unit) => (format!("{value} {unit}"), rest),
        [value, rest @ ..] => (value.to_string(), rest),
        [] => bail!("no Load column"),
    };
    let (tokens, owns) = match rest {
        [] => (None, None),
        [one] if one.ends_with('%') || *one == "?" => (None, Some(one.to_string())),
        [one] => (
            Some(
                one.parse()
                    .with_context(|| format!("token count {one:?}"))?,
            ),
            None,
        ),
        [t, o] => (
            Some(t.parse().with_context(|| format!("token count {t:?}"))?),
            Some(o.to_string()),
        ),
        more => bail!("unexpected columns between Load and Host ID: {more:?}"),
    };
    Ok(NodeStatusRow {
        datacenter: dc.to_string(),
        status,
        state,
        address,
        load,
        tokens,
        owns,
        host_id,
        rack,
    })
}

fn is_size_unit(s: &str) -> bool {
    matches!(
        s,
        "bytes" | "B" | "KB" | "MB" | "GB" | "TB" | "KiB" | "MiB" | "GiB" | "TiB" | "PiB" | "PB"
    )
}

impl CassandraRing {
    /// Read the ring from the env file the script wrote.
    pub fn from_env(env: &PeerEnv) -> Result<Self> {
        let nodes = env
            .get("CASSANDRA_NODES")?
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<SocketAddr>()
                    .with_context(|| format!("CASSANDRA_NODES entry {s:?}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let jmx_ports = env
            .get("CASSANDRA_JMX_PORTS")?
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<u16>()
                    .with_context(|| format!("CASSANDRA_JMX_PORTS entry {s:?}"))
            })
            .collect::<Result<Vec<_>>>()?;
        if nodes.is_empty() || nodes.len() != jmx_ports.len() {
            bail!(
                "CASSANDRA_NODES ({}) and CASSANDRA_JMX_PORTS ({}) disagree",
                nodes.len(),
                jmx_ports.len()
            );
        }
        Ok(Self {
            nodes,
            jmx_ports,
            nodetool: PathBuf::from(env.get("CASSANDRA_NODETOOL")?),
            script: PathBuf::from(env.get("CASSANDRA_SCRIPT")?),
        })
    }

    /// The CQL addresses of the nodes (node 1 first).
    pub fn nodes(&self) -> &[SocketAddr] {
        &self.nodes
    }

    /// The IP of node `n` (1-based).
    pub fn ip(&self, n: usize) -> Result<String> {
        self.index(n).map(|i| self.nodes[i].ip().to_string())
    }

    fn index(&self, n: usize) -> Result<usize> {
        if n == 0 || n > self.nodes.len() {
            bail!("node number {n} out of range 1..={}", self.nodes.len());
        }
        Ok(n - 1)
    }

    /// Run the real `nodetool -h 127.0.0.1 -p <jmx of node via> status`, keep its text and parse it.
    pub async fn nodetool_status(&self, via: usize) -> Result<NodetoolStatus> {
        let raw = self.nodetool(via, &["status"]).await?;
        let rows = parse_nodetool_status(&raw)?;
        Ok(NodetoolStatus { raw, rows })
    }

    /// Run nodetool against node `via` (1-based) with `args`; stdout on success.
    pub async fn nodetool(&self, via: usize, args: &[&str]) -> Result<String> {
        let port = self.jmx_ports[self.index(via)?].to_string();
        let out = Command::new(&self.nodetool)
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(args)
            .output()
            .await
            .with_context(|| format!("running {}", self.nodetool.display()))?;
        if !out.status.success() {
            bail!(
                "nodetool -p {port} {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8(out.stdout).context("nodetool printed non-UTF-8")
    }

    async fn script(&self, args: &[&str]) -> Result<()> {
        let out = Command::new("bash")
            .arg(&self.script)
            .args(args)
            .output()
            .await
            .with_context(|| format!("running {}", self.script.display()))?;
        if !out.status.success() {
            bail!(
                "{} {} failed ({}): {}",
                self.script.display(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Stop node `n` gracefully (SIGTERM to its JVM; it announces its shutdown through gossip).
    pub async fn stop_node(&self, n: usize) -> Result<()> {
        self.index(n)?;
        self.script(&["node-stop", &n.to_string()]).await
    }

    /// Kill node `n` (SIGKILL to its JVM: a crash the failure detector has to notice).
    pub async fn kill_node(&self, n: usize) -> Result<()> {
        self.index(n)?;
        self.script(&["node-kill", &n.to_string()]).await
    }

    /// Start node `n` again; returns once it answers CQL.
    pub async fn start_node(&self, n: usize) -> Result<()> {
        self.index(n)?;
        self.script(&["node-start", &n.to_string()]).await
    }

    /// Poll `nodetool status` (through node `via`) until `ip` shows `code` (e.g. `"DN"`), or time out.
    /// Returns the matching answer.
    pub async fn wait_nodetool(
        &self,
        via: usize,
        ip: &str,
        code: &str,
        timeout: Duration,
    ) -> Result<NodetoolStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.nodetool_status(via).await {
                Ok(st) => {
                    if st.summary().get(ip).map(String::as_str) == Some(code) {
                        return Ok(st);
                    }
                    format!("{:?}", st.summary())
                }
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{ip} did not show {code} in nodetool status within {timeout:?}; last: {last}"
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Connect a CQL session (cdrs-tokio, protocol v4) with the given contact points (1-based node numbers).
    pub async fn connect(&self, contact: &[usize]) -> Result<CqlSession> {
        let mut points = Vec::new();
        for n in contact {
            points.push(self.nodes[self.index(*n)?]);
        }
        CqlSession::connect(&points).await
    }
}

type CdrsSession = Session<
    TransportTcp,
    TcpConnectionManager,
    RoundRobinLoadBalancingStrategy<TransportTcp, TcpConnectionManager>,
>;

/// A CQL session on the ring, with its server-event stream.
pub struct CqlSession {
    session: CdrsSession,
    events: broadcast::Receiver<ServerEvent>,
}

impl CqlSession {
    /// Connect a cdrs-tokio session (protocol v4, round robin) to these contact points: a real ring
    /// or a fake one.
    pub async fn connect(contact: &[SocketAddr]) -> Result<Self> {
        if contact.is_empty() {
            bail!("no contact points");
        }
        let points = contact.iter().map(|a| a.to_string().into()).collect();
        let config = NodeTcpConfigBuilder::new()
            .with_contact_points(points)
            .build()
            .await
            .map_err(|e| anyhow!("cdrs config: {e}"))?;
        let session = TcpSessionBuilder::new(RoundRobinLoadBalancingStrategy::new(), config)
            .build()
            .await
            .map_err(|e| anyhow!("cdrs connect to {contact:?}: {e}"))?;
        let events = session.create_event_receiver();
        Ok(CqlSession { session, events })
    }
}

impl std::fmt::Debug for CqlSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CqlSession").finish_non_exhaustive()
    }
}

/// What `system.local` says about the node that answered.
#[derive(Debug, Clone, Serialize)]
pub struct LocalInfo {
    /// `cluster_name`.
    pub cluster_name: String,
    /// `host_id`.
    pub host_id: String,
    /// `broadcast_address`.
    pub broadcast_address: String,
    /// `rpc_address`.
    pub rpc_address: String,
    /// `data_center`.
    pub data_center: String,
    /// `rack`.
    pub rack: String,
    /// `release_version`.
    pub release_version: String,
    /// `schema_version`.
    pub schema_version: String,
    /// How many tokens the node owns.
    pub tokens: usize,
}

/// One row of `system.peers_v2`.
#[derive(Debug, Clone, Serialize)]
pub struct PeerInfo {
    /// `peer`.
    pub peer: String,
    /// `host_id`.
    pub host_id: String,
    /// `data_center`.
    pub data_center: String,
    /// `rack`.
    pub rack: String,
    /// `native_address`.
    pub native_address: String,
    /// `native_port`.
    pub native_port: i32,
    /// `release_version`.
    pub release_version: String,
    /// `schema_version`.
    pub schema_version: String,
}

/// A CQL column: name and type (`text`, `set<text>`, `map<text, text>`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    /// The column name.
    pub name: String,
    /// The CQL type, as written in CQL.
    pub cql_type: String,
}

/// A STATUS_CHANGE the ring pushed to our session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    /// The node's native address.
    pub addr: SocketAddr,
    /// True for UP, false for DOWN.
    pub up: bool,
}

fn text(row: &Row, col: &str) -> Result<String> {
    let v: Option<String> = row
        .get_by_name(col)
        .map_err(|e| anyhow!("column {col}: {e}"))?;
    Ok(v.unwrap_or_default())
}

fn inet(row: &Row, col: &str) -> Result<String> {
    let v: Option<std::net::IpAddr> = row
        .get_by_name(col)
        .map_err(|e| anyhow!("column {col}: {e}"))?;
    Ok(v.map(|a| a.to_string()).unwrap_or_default())
}

fn uuid(row: &Row, col: &str) -> Result<String> {
    let v: Option<uuid::Uuid> = row
        .get_by_name(col)
        .map_err(|e| anyhow!("column {col}: {e}"))?;
    Ok(v.map(|u| u.to_string()).unwrap_or_default())
}

/// The CQL spelling of a result column's type.
pub fn cql_type_name(t: &ColTypeOption) -> String {
    let inner = |v: &ColTypeOption| cql_type_name(v);
    match (&t.id, &t.value) {
        (ColType::Custom, Some(ColTypeOptionValue::CString(class))) => format!("'{class}'"),
        (ColType::List, Some(ColTypeOptionValue::CList(e))) => format!("list<{}>", inner(e)),
        (ColType::Set, Some(ColTypeOptionValue::CSet(e))) => format!("set<{}>", inner(e)),
        (ColType::Map, Some(ColTypeOptionValue::CMap(k, v))) => {
            format!("map<{}, {}>", inner(k), inner(v))
        }
        (ColType::Udt, Some(ColTypeOptionValue::UdtType(u))) => format!("{}.{}", u.ks, u.udt_name),
        (ColType::Tuple, Some(ColTypeOptionValue::TupleType(tu))) => {
            format!(
                "tuple<{}>",
                tu.types.iter().map(inner).collect::<Vec<_>>().join(", ")
            )
        }
        (id, _) => match id {
            ColType::Custom => "custom",
            ColType::Ascii => "ascii",
            ColType::Bigint => "bigint",
            ColType::Blob => "blob",
            ColType::Boolean => "boolean",
            ColType::Counter => "counter",
            ColType::Decimal => "decimal",
            ColType::Double => "double",
            ColType::Float => "float",
            ColType::Int => "int",
            ColType::Timestamp => "timestamp",
            ColType::Uuid => "uuid",
            ColType::Varchar => "text",
            ColType::Varint => "varint",
            ColType::Timeuuid => "timeuuid",
            ColType::Inet => "inet",
            ColType::Date => "date",
            ColType::Time => "time",
            ColType::Smallint => "smallint",
            ColType::Tinyint => "tinyint",
            ColType::Duration => "duration",
            ColType::List => "list",
            ColType::Map => "map",
            ColType::Set => "set",
            ColType::Udt => "udt",
            ColType::Tuple => "tuple",
            _ => "unknown",
        }
        .to_string(),
    }
}

impl CqlSession {
    async fn rows(&self, cql: &str) -> Result<(Vec<Column>, Vec<Row>)> {
        let env = self
            .session
            .query(cql)
            .await
            .map_err(|e| anyhow!("{cql}: {e}"))?;
        let body = env
            .response_body()
            .map_err(|e| anyhow!("{cql}: decoding the answer: {e}"))?;
        let columns = body
            .as_rows_metadata()
            .map(|m| {
                m.col_specs
                    .iter()
                    .map(|c| Column {
                        name: c.name.clone(),
                        cql_type: cql_type_name(&c.col_type),
                    })
                    .collect()
            })
            .ok_or_else(|| anyhow!("{cql}: the answer has no rows metadata"))?;
        let rows = body
            .into_rows()
            .ok_or_else(|| anyhow!("{cql}: the answer is not a Rows result"))?;
        Ok((columns, rows))
    }

    /// `SELECT * FROM system.local` on whichever node the load balancer picks.
    pub async fn local(&self) -> Result<LocalInfo> {
        let (_, rows) = self.rows("SELECT * FROM system.local").await?;
        let row = rows
            .first()
            .ok_or_else(|| anyhow!("system.local returned no row"))?;
        let tokens: Option<cdrs_tokio::types::list::List> = row
            .get_by_name("tokens")
            .map_err(|e| anyhow!("column tokens: {e}"))?;
        let tokens = match tokens {
            Some(list) => {
                let v: Vec<String> = list
                    .as_r_rust()
                    .map_err(|e| anyhow!("column tokens: {e}"))?;
                v.len()
            }
            None => 0,
        };
        Ok(LocalInfo {
            cluster_name: text(row, "cluster_name")?,
            host_id: uuid(row, "host_id")?,
            broadcast_address: inet(row, "broadcast_address")?,
            rpc_address: inet(row, "rpc_address")?,
            data_center: text(row, "data_center")?,
            rack: text(row, "rack")?,
            release_version: text(row, "release_version")?,
            schema_version: uuid(row, "schema_version")?,
            tokens,
        })
    }

    /// `SELECT * FROM system.peers_v2`.
    pub async fn peers_v2(&self) -> Result<Vec<PeerInfo>> {
        let (_, rows) = self.rows("SELECT * FROM system.peers_v2").await?;
        rows.iter()
            .map(|row| {
                let port: Option<i32> = row
                    .get_by_name("native_port")
                    .map_err(|e| anyhow!("column native_port: {e}"))?;
                Ok(PeerInfo {
                    peer: inet(row, "peer")?,
                    host_id: uuid(row, "host_id")?,
                    data_center: text(row, "data_center")?,
                    rack: text(row, "rack")?,
                    native_address: inet(row, "native_address")?,
                    native_port: port.unwrap_or_default(),
                    release_version: text(row, "release_version")?,
                    schema_version: uuid(row, "schema_version")?,
                })
            })
            .collect()
    }

    /// The column names and CQL types of `SELECT * FROM <table> LIMIT 1`, in result order.
    pub async fn columns(&self, table: &str) -> Result<Vec<Column>> {
        if !table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            bail!("not a table name: {table:?}");
        }
        Ok(self
            .rows(&format!("SELECT * FROM {table} LIMIT 1"))
            .await?
            .0)
    }

    /// How many rows `SELECT * FROM <table>` returns.
    pub async fn count_rows(&self, table: &str) -> Result<usize> {
        if !table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            bail!("not a table name: {table:?}");
        }
        Ok(self.rows(&format!("SELECT * FROM {table}")).await?.1.len())
    }

    /// The driver's view: native address → `Up` / `Down` / `Unknown` / `ForcedDown`.
    pub fn node_states(&self) -> BTreeMap<SocketAddr, String> {
        let meta = self.session.cluster_metadata();
        meta.nodes()
            .values()
            .map(|n| {
                let s = match n.state() {
                    NodeState::Up => "Up",
                    NodeState::Down => "Down",
                    NodeState::ForcedDown => "ForcedDown",
                    NodeState::Unknown => "Unknown",
                };
                (n.broadcast_rpc_address(), s.to_string())
            })
            .collect()
    }

    /// Wait for a STATUS_CHANGE about `addr` saying `up`, skipping other events; error on timeout.
    pub async fn wait_status_event(
        &mut self,
        addr: SocketAddr,
        up: bool,
        timeout: Duration,
    ) -> Result<StatusEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| {
                    anyhow!(
                        "no STATUS_CHANGE {} for {addr} within {timeout:?}",
                        if up { "UP" } else { "DOWN" }
                    )
                })?;
            match ev {
                Ok(ServerEvent::StatusChange(sc)) => {
                    let got = StatusEvent {
                        addr: sc.addr,
                        up: matches!(sc.change_type, StatusChangeType::Up),
                    };
                    if got.addr == addr && got.up == up {
                        return Ok(got);
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    bail!("the session's event stream closed")
                }
            }
        }
    }

    /// Poll the driver's metadata until `addr` has `state` (`"Up"`, `"Down"`, …), or time out.
    pub async fn wait_node_state(
        &self,
        addr: SocketAddr,
        state: &str,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let states = self.node_states();
            if states.get(&addr).map(String::as_str) == Some(state) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("driver metadata did not show {addr} {state} within {timeout:?}: {states:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rows_of_a_real_5_0_answer() {
        let text = "Datacenter: datacenter1\n=======================\nStatus=Up/Down\n|/ State=Normal/Leaving/Joining/Moving\n--  Address    Load        Tokens  Owns (effective)  Host ID                               Rack \nUN  127.0.0.3  30.9 KiB    16      76.0%             0373aba8-bc5e-45d1-b9d2-0203a0d640b6  rack1\nDN  127.0.0.2  ?           16      59.3%             8e2940cb-ff79-474e-ac43-7eaa2927250b  rack1\nUJ  127.0.0.1  119840      16      ?                 null  rack1\n";
        let rows = parse_nodetool_status(text).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].load, "30.9 KiB");
        assert_eq!(rows[0].owns.as_deref(), Some("76.0%"));
        assert_eq!(rows[1].status, 'D');
        assert_eq!(rows[1].load, "?");
        assert_eq!(rows[2].host_id, None);
        assert_eq!(rows[2].state, 'J');
        assert_eq!(rows[2].datacenter, "datacenter1");
    }

    #[test]
    fn reference_samples_parse() {
        let dir = PeerEnv::repo_root().join("rb-testkit/fixtures/real/cassandra");
        let mut seen = 0;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with("nodetool_status_") && name.ends_with(".txt") {
                    let text = std::fs::read_to_string(e.path()).unwrap();
                    let rows = parse_nodetool_status(&text).unwrap();
                    assert_eq!(rows.len(), 3, "{name}");
                    seen += 1;
                }
            }
        }
        assert!(
            seen >= 2,
            "expected the recorded nodetool fixtures in {}",
            dir.display()
        );
    }

    #[test]
    fn tolerates_banners_footers_empty_blocks_and_odd_names() {
        let text = "OpenJDK 64-Bit Server VM warning: a JVM banner\n\
Note: Ownership information does not include topology; for complete information, specify a keyspace\n\
Datacenter: empty-dc\n===================\nStatus=Up/Down\n|/ State=Normal/Leaving/Joining/Moving\n\
--  Address  Load  Tokens  Owns  Host ID  Rack\n\
Datacenter: UNKNOWN_DC\n=====\n\
--  Address       Load       Tokens       Owns    Host ID       Rack\n\
DL  10.9.8.7      ?          256          ?       null          UNKNOWN_RACK\n\
Datacenter: eu.west\n=====\n\
--  Address  Load  Tokens  Owns  Host ID  Rack\n\
UM  10.9.8.8  123456789  8  12.5%  6f9a0c1e-0000-4000-8000-000000000001  1b.NORTH\n\
UN  10.9.8.9  1.5 TB  8  87.5  6f9a0c1e-0000-4000-8000-000000000002  1b.NORTH\n\
\nNote: Non-system keyspaces don't have the same replication settings, effective ownership information is meaningless\n";
        let rows = parse_nodetool_status(text).unwrap();
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(
            (rows[0].datacenter.as_str(), rows[0].status, rows[0].state),
            ("UNKNOWN_DC", 'D', 'L')
        );
        assert_eq!(rows[0].rack, "UNKNOWN_RACK");
        assert_eq!(rows[0].host_id, None);
        assert_eq!(rows[1].load, "123456789");
        assert_eq!(rows[1].tokens, Some(8));
        assert_eq!(rows[1].datacenter, "eu.west");
        assert_eq!(rows[2].load, "1.5 TB");
        assert_eq!(rows[2].owns.as_deref(), Some("87.5"));
        assert_eq!(rows[2].rack, "1b.NORTH");
    }

    #[test]
    fn bad_row_is_an_error_naming_the_line() {
        let err = parse_nodetool_status("UN 127.0.0.1 x\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 1"), "{err:#}");
    }

    #[test]
    fn port_suffix_is_stripped() {
        let rows = parse_nodetool_status("UN  127.0.0.1:7000  1.2 MiB  16  ?  abc  r1\n").unwrap();
        assert_eq!(rows[0].ip(), "127.0.0.1");
    }
}
