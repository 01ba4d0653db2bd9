//! The ring state every fake node answers from: membership, tokens, gossip, schema versions.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use tokio::time::Instant;
use uuid::Uuid;

/// The ring state of a node, as gossip and `nodetool status` report it (the second letter of `UN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NodeStatus {
    /// `N`: owns its tokens.
    Normal,
    /// `J`: bootstrapping; not in the peers tables yet, no effective ownership.
    Joining,
    /// `L`: decommissioning.
    Leaving,
    /// `M`: moving to a new token.
    Moving,
}

impl NodeStatus {
    /// The letter `nodetool status` prints.
    pub fn letter(self) -> char {
        match self {
            NodeStatus::Normal => 'N',
            NodeStatus::Joining => 'J',
            NodeStatus::Leaving => 'L',
            NodeStatus::Moving => 'M',
        }
    }

    /// The gossip STATUS verb (`NORMAL`, `BOOT`, `LEAVING`, `MOVING`).
    pub fn gossip_verb(self) -> &'static str {
        match self {
            NodeStatus::Normal => "NORMAL",
            NodeStatus::Joining => "BOOT",
            NodeStatus::Leaving => "LEAVING",
            NodeStatus::Moving => "MOVING",
        }
    }
}

/// A keyspace's replication, as `system_schema.keyspaces.replication` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Replication {
    /// `SimpleStrategy` with a replication factor.
    Simple(usize),
    /// `NetworkTopologyStrategy` with a replication factor per datacenter.
    NetworkTopology(Vec<(String, usize)>),
    /// `LocalStrategy` (the node-local system keyspaces).
    Local,
}

impl Replication {
    /// The replication map as Cassandra stores it (`class` plus factors).
    pub fn to_map(&self) -> Vec<(String, String)> {
        match self {
            Replication::Simple(rf) => vec![
                (
                    "class".into(),
                    "org.apache.cassandra.locator.SimpleStrategy".into(),
                ),
                ("replication_factor".into(), rf.to_string()),
            ],
            Replication::NetworkTopology(dcs) => {
                let mut out = vec![(
                    "class".to_string(),
                    "org.apache.cassandra.locator.NetworkTopologyStrategy".to_string(),
                )];
                let mut sorted = dcs.clone();
                sorted.sort();
                out.extend(sorted.into_iter().map(|(dc, rf)| (dc, rf.to_string())));
                out
            }
            Replication::Local => vec![(
                "class".into(),
                "org.apache.cassandra.locator.LocalStrategy".into(),
            )],
        }
    }
}

/// The keyspaces a fresh Cassandra 5.0 cluster has in `system_schema.keyspaces`.
pub(crate) fn system_keyspaces() -> Vec<(String, Replication)> {
    vec![
        ("system_auth".into(), Replication::Simple(1)),
        ("system_schema".into(), Replication::Local),
        ("system_distributed".into(), Replication::Simple(3)),
        ("system".into(), Replication::Local),
        ("system_traces".into(), Replication::Simple(2)),
    ]
}

/// Keyspaces that exist but are not listed in `system_schema.keyspaces` (virtual ones).
pub(crate) const VIRTUAL_KEYSPACES: &[&str] = &["system_views", "system_virtual_schema"];

/// Whether a keyspace is one of Cassandra's own.
pub(crate) fn is_system_keyspace(name: &str) -> bool {
    matches!(
        name,
        "system"
            | "system_schema"
            | "system_auth"
            | "system_distributed"
            | "system_traces"
            | "system_views"
            | "system_virtual_schema"
    )
}

/// A snapshot of one fake node, as the ring currently describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeInfo {
    /// Index of the node in the ring (stable; removed nodes keep theirs).
    pub index: usize,
    /// Native-protocol address clients connect to (`127.0.0.x:port`).
    pub native_addr: SocketAddr,
    /// Host ID.
    pub host_id: Uuid,
    /// Datacenter.
    pub datacenter: String,
    /// Rack.
    pub rack: String,
    /// Murmur3 tokens, ascending.
    pub tokens: Vec<i64>,
    /// Schema version this node reports.
    pub schema_version: Uuid,
    /// `release_version`.
    pub release_version: String,
    /// Live data size in bytes (`None` prints `?` in `nodetool status`).
    pub load_bytes: Option<u64>,
    /// Ring state.
    pub status: NodeStatus,
    /// Whether the node is up (answers and is seen alive by the others).
    pub up: bool,
    /// Whether the node was removed from the ring.
    pub removed: bool,
}

/// One node's full record.
#[derive(Debug, Clone)]
pub(crate) struct NodeRecord {
    pub(crate) info: NodeInfo,
    /// Gossip generation (epoch seconds of the last start).
    pub(crate) generation: i32,
    /// Heartbeat value at `beat_origin`.
    pub(crate) heartbeat_base: i32,
    /// When the heartbeat started counting (tokio clock); `None` while the node is down.
    pub(crate) beat_origin: Option<Instant>,
    /// Heartbeat frozen at the moment the node went down.
    pub(crate) frozen_heartbeat: i32,
    /// Whether the node announced a graceful shutdown (gossip status `shutdown,true`).
    pub(crate) announced_shutdown: bool,
    /// Version of each gossip application state (lower-case name → version).
    pub(crate) state_versions: BTreeMap<&'static str, i32>,
}

/// Gossip application states of Cassandra 5.0 in their enum order (each has a text column, except
/// `tokens`, and a `<name>_version` int column in `system_views.gossip_info`).
pub(crate) const GOSSIP_STATES: &[&str] = &[
    "status",
    "load",
    "schema",
    "dc",
    "rack",
    "release_version",
    "removal_coordinator",
    "internal_ip",
    "rpc_address",
    "x_11_padding",
    "severity",
    "net_version",
    "host_id",
    "tokens",
    "rpc_ready",
    "internal_address_and_port",
    "native_address_and_port",
    "status_with_port",
    "sstable_versions",
    "disk_usage",
    "index_status",
    "x1",
    "x2",
    "x3",
    "x4",
    "x5",
    "x6",
    "x7",
    "x8",
    "x9",
    "x10",
];

/// The storage (gossip) port the fake announces.
pub(crate) const STORAGE_PORT: u16 = 7000;

impl NodeRecord {
    pub(crate) fn new(info: NodeInfo, generation: i32, now: Instant) -> Self {
        let mut state_versions = BTreeMap::new();
        // Versions as a freshly started node publishes them: one per state, in start-up order.
        let order = [
            "net_version",
            "host_id",
            "rpc_address",
            "native_address_and_port",
            "release_version",
            "internal_ip",
            "internal_address_and_port",
            "dc",
            "rack",
            "sstable_versions",
            "tokens",
            "status",
            "status_with_port",
            "schema",
            "load",
            "rpc_ready",
            "severity",
        ];
        for (i, name) in order.iter().enumerate() {
            state_versions.insert(*name, i as i32 + 1);
        }
        NodeRecord {
            info,
            generation,
            heartbeat_base: order.len() as i32 + 1,
            beat_origin: Some(now),
            frozen_heartbeat: 0,
            announced_shutdown: false,
            state_versions,
        }
    }

    /// The heartbeat version now: rising by one per second while up, frozen while down.
    pub(crate) fn heartbeat(&self, now: Instant) -> i32 {
        match self.beat_origin {
            Some(origin) => {
                let secs = now.saturating_duration_since(origin).as_secs();
                self.heartbeat_base
                    .saturating_add(i32::try_from(secs).unwrap_or(i32::MAX))
            }
            None => self.frozen_heartbeat,
        }
    }

    /// Record a change of one application state (its version becomes the newest).
    pub(crate) fn bump(&mut self, state: &'static str, now: Instant) {
        let hb = self.heartbeat(now);
        let newest = self
            .state_versions
            .values()
            .copied()
            .max()
            .unwrap_or(0)
            .max(hb);
        self.state_versions.insert(state, newest + 1);
        if self.beat_origin.is_some() {
            // One version counter, like the gossiper: the heartbeat continues above the new version.
            self.heartbeat_base += newest + 2 - hb;
        }
    }

    pub(crate) fn go_down(&mut self, now: Instant) {
        self.frozen_heartbeat = self.heartbeat(now);
        self.beat_origin = None;
    }

    pub(crate) fn go_up(&mut self, now: Instant, generation: i32) {
        // A restart: new generation, heartbeat counts again from a small number.
        self.generation = generation.max(self.generation + 1);
        self.heartbeat_base = self.state_versions.values().copied().max().unwrap_or(0) + 1;
        self.beat_origin = Some(now);
        self.announced_shutdown = false;
    }

    pub(crate) fn ip(&self) -> IpAddr {
        self.info.native_addr.ip()
    }

    /// The STATUS gossip value (`NORMAL,<token>` …).
    pub(crate) fn gossip_status(&self) -> String {
        if self.announced_shutdown {
            return "shutdown,true".into();
        }
        let token = self
            .info
            .tokens
            .first()
            .map(|t| t.to_string())
            .unwrap_or_default();
        format!("{},{}", self.info.status.gossip_verb(), token)
    }
}

/// The whole ring.
#[derive(Debug, Clone)]
pub(crate) struct RingState {
    pub(crate) cluster_name: String,
    pub(crate) nodes: Vec<NodeRecord>,
    pub(crate) keyspaces: Vec<(String, Replication)>,
    pub(crate) peers_v2_invalid: bool,
    /// PasswordAuthenticator credentials (`None`: AllowAllAuthenticator).
    pub(crate) credentials: Option<(String, String)>,
}

impl RingState {
    /// Nodes currently members of the ring (not removed).
    pub(crate) fn members(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.iter().filter(|n| !n.info.removed)
    }

    /// The peers of `node` as its `system.peers*` tables list them: other members that finished
    /// joining (dead ones included: Cassandra keeps their rows).
    pub(crate) fn peers_of(&self, node: usize) -> impl Iterator<Item = &NodeRecord> {
        self.members()
            .filter(move |n| n.info.index != node && n.info.status != NodeStatus::Joining)
    }

    pub(crate) fn keyspace(&self, name: &str) -> Option<&Replication> {
        self.keyspaces
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, r)| r)
    }

    pub(crate) fn keyspace_exists(&self, name: &str) -> bool {
        self.keyspace(name).is_some() || VIRTUAL_KEYSPACES.contains(&name)
    }
}

/// `n * per_node` tokens spread evenly over the Murmur3 range, node `i` taking every `n`-th one.
pub(crate) fn even_tokens(n: usize, per_node: usize, node: usize) -> Vec<i64> {
    let total = (n * per_node).max(1) as i128;
    let span: i128 = 1i128 << 64;
    let mut out: Vec<i64> = (0..per_node)
        .map(|k| {
            let slot = (k * n + node) as i128;
            let t = i128::from(i64::MIN) + span * slot / total + span / (2 * total);
            i64::try_from(t).unwrap_or(i64::MAX)
        })
        .collect();
    out.sort_unstable();
    out
}

/// `count` new tokens for a joining node: each one halves the widest gap of the current ring.
pub(crate) fn bisecting_tokens(existing: &[i64], count: usize) -> Vec<i64> {
    let mut ring: Vec<i64> = existing.to_vec();
    ring.sort_unstable();
    ring.dedup();
    let mut new = Vec::with_capacity(count);
    for _ in 0..count {
        if ring.is_empty() {
            ring.push(0);
            new.push(0);
            continue;
        }
        // Gap before ring[i] is (ring[i-1], ring[i]] with wrap-around for i = 0.
        let mut best = (0usize, 0u128);
        for i in 0..ring.len() {
            let prev = if i == 0 {
                ring[ring.len() - 1]
            } else {
                ring[i - 1]
            };
            let size = range_size(prev, ring[i]);
            if size > best.1 {
                best = (i, size);
            }
        }
        let i = best.0;
        let prev = if i == 0 {
            ring[ring.len() - 1]
        } else {
            ring[i - 1]
        };
        let mut mid = i128::from(prev) + (best.1 / 2) as i128;
        if mid > i128::from(i64::MAX) {
            mid -= 1i128 << 64;
        }
        let t = i64::try_from(mid).unwrap_or(0);
        ring.push(t);
        ring.sort_unstable();
        new.push(t);
    }
    new.sort_unstable();
    new
}

/// Size of the token range `(prev, t]` on the 2^64 ring (a full ring when `prev == t`).
pub(crate) fn range_size(prev: i64, t: i64) -> u128 {
    let d = i128::from(t) - i128::from(prev);
    if d > 0 {
        d as u128
    } else {
        (d + (1i128 << 64)) as u128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_tokens_cover_the_ring_evenly() {
        let all: Vec<i64> = (0..3).flat_map(|i| even_tokens(3, 4, i)).collect();
        assert_eq!(all.len(), 12);
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 12);
        // node 0 owns the lowest token
        assert_eq!(even_tokens(3, 4, 0)[0], sorted[0]);
    }

    #[test]
    fn bisecting_picks_the_widest_gap() {
        let new = bisecting_tokens(&[-100, 100], 1);
        // gap (100, -100] wraps and is by far the widest
        assert!(new[0] > 100 || new[0] < -100, "{new:?}");
        let new = bisecting_tokens(&[], 2);
        assert_eq!(new.len(), 2);
    }

    #[test]
    fn heartbeat_rises_then_freezes() {
        let now = Instant::now();
        let info = NodeInfo {
            index: 0,
            native_addr: "127.0.0.1:9042".parse().unwrap(),
            host_id: Uuid::nil(),
            datacenter: "dc1".into(),
            rack: "r1".into(),
            tokens: vec![1],
            schema_version: Uuid::nil(),
            release_version: "5.0.9".into(),
            load_bytes: None,
            status: NodeStatus::Normal,
            up: true,
            removed: false,
        };
        let mut rec = NodeRecord::new(info, 1, now);
        let h0 = rec.heartbeat(now);
        let later = now + std::time::Duration::from_secs(5);
        assert_eq!(rec.heartbeat(later), h0 + 5);
        rec.go_down(later);
        assert_eq!(
            rec.heartbeat(later + std::time::Duration::from_secs(60)),
            h0 + 5
        );
        rec.bump("schema", later);
        assert!(rec.state_versions["schema"] > h0);
    }
}
