//! The ring as both sources report it: the `cassandra.ring` fact and its nodes.

use std::collections::BTreeMap;

use rb_core::FactType;
use serde::{Deserialize, Serialize};

/// Up/Down as `nodetool status` prints it (first letter of `UN`), or `?` when nothing says either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Liveness {
    /// `U`: alive.
    #[serde(rename = "U")]
    Up,
    /// `D`: down (refused, convicted by the failure detector, or the driver saw it go down).
    #[serde(rename = "D")]
    Down,
    /// `?`: neither known live nor known unreachable (nodetool prints `?` for such an endpoint; the
    /// CQL probe says `?` when its direct connect neither succeeded nor was refused).
    #[serde(rename = "?")]
    Unknown,
}

impl Liveness {
    /// The letter `nodetool status` prints.
    pub fn letter(self) -> char {
        match self {
            Liveness::Up => 'U',
            Liveness::Down => 'D',
            Liveness::Unknown => '?',
        }
    }

    /// From the letter `nodetool status` prints.
    pub fn from_letter(c: char) -> Option<Self> {
        match c {
            'U' => Some(Liveness::Up),
            'D' => Some(Liveness::Down),
            '?' => Some(Liveness::Unknown),
            _ => None,
        }
    }
}

/// The ring state (second letter of `UN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RingState {
    /// `N`: owns its tokens (also what nodetool prints for a node that announced its shutdown).
    #[serde(rename = "N")]
    Normal,
    /// `J`: bootstrapping.
    #[serde(rename = "J")]
    Joining,
    /// `L`: decommissioning.
    #[serde(rename = "L")]
    Leaving,
    /// `M`: moving to a new token.
    #[serde(rename = "M")]
    Moving,
    /// `S`: stopped (printed by some distributions' nodetool).
    #[serde(rename = "S")]
    Stopped,
    /// `?`: not known (no gossip state was readable).
    #[serde(rename = "?")]
    Unknown,
}

impl RingState {
    /// The letter `nodetool status` prints.
    pub fn letter(self) -> char {
        match self {
            RingState::Normal => 'N',
            RingState::Joining => 'J',
            RingState::Leaving => 'L',
            RingState::Moving => 'M',
            RingState::Stopped => 'S',
            RingState::Unknown => '?',
        }
    }

    /// From the letter `nodetool status` prints.
    pub fn from_letter(c: char) -> Option<Self> {
        match c {
            'N' => Some(RingState::Normal),
            'J' => Some(RingState::Joining),
            'L' => Some(RingState::Leaving),
            'M' => Some(RingState::Moving),
            'S' => Some(RingState::Stopped),
            '?' => Some(RingState::Unknown),
            _ => None,
        }
    }

    /// A lower-case name for metric labels.
    pub fn name(self) -> &'static str {
        match self {
            RingState::Normal => "normal",
            RingState::Joining => "joining",
            RingState::Leaving => "leaving",
            RingState::Moving => "moving",
            RingState::Stopped => "stopped",
            RingState::Unknown => "unknown",
        }
    }
}

/// How a node's Up/Down was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LivenessSource {
    /// The probe opened a CQL connection to the node's native port and the handshake succeeded
    /// (Up), or the connection was refused (Down).
    DirectConnect,
    /// The node answered the probe's queries itself (the coordinator).
    Coordinator,
    /// The CQL driver's node state (kept up to date by `STATUS_CHANGE` events): used only for Down,
    /// when a direct connect could not decide.
    DriverState,
    /// The node refused CQL, but its gossip heartbeat rose between two reads of
    /// `system_views.gossip_info` (a bootstrapping node does not serve CQL yet).
    GossipHeartbeat,
    /// Its gossip `STATUS` says it announced its shutdown (`shutdown`) or is being replaced
    /// (`hibernate`), and a direct connect could not decide.
    GossipStatus,
    /// `nodetool status`: the failure detector of the node nodetool talked to (over JMX).
    NodetoolFailureDetector,
    /// Nothing could decide (the node's liveness is `?`).
    None,
}

/// Which source produced a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RingSource {
    /// CQL system tables plus direct connects ([`super::CqlRingProbe`]).
    Cql,
    /// The text of `nodetool status` ([`super::NodetoolStatusProbe`]).
    Nodetool,
}

/// One node of the ring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RingNode {
    /// The node's address as the ring knows it (the broadcast / storage address `nodetool status`
    /// prints; with a `:port` suffix when nodetool printed one).
    pub address: String,
    /// The datacenter.
    pub datacenter: Option<String>,
    /// The rack.
    pub rack: Option<String>,
    /// `U`, `D` or `?`.
    pub status: Liveness,
    /// `N`, `J`, `L`, `M`, `S` or `?`.
    pub state: RingState,
    /// How `status` was decided.
    pub liveness_source: LivenessSource,
    /// The CQL driver's state of this node (`up`, `down`, `unknown`, `forced_down`), when a driver
    /// session knew the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_state: Option<String>,
    /// What the direct connect to the node's native port gave (`ready`, `refused: …`, `timeout`,
    /// `error: …`), for the CQL source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_connect: Option<String>,
    /// Where the probe connected (native `ip:port`), for the CQL source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_address: Option<String>,
    /// Live data size in bytes (nodetool's Load; gossip `LOAD`), when known.
    pub load_bytes: Option<u64>,
    /// The load as printed by nodetool (`144.76 MB`, `?`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_text: Option<String>,
    /// How many tokens the node owns.
    pub tokens: Option<u32>,
    /// Ownership in percent, when computable (see [`Ring::owns_basis`]).
    pub owns_percent: Option<f64>,
    /// The host ID (`None` when unknown or printed as `null`).
    pub host_id: Option<String>,
    /// The node's schema version, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    /// The Cassandra release, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_version: Option<String>,
    /// The raw gossip `STATUS` value (`NORMAL,<token>`, `BOOT`, `shutdown,true`, `hibernate,true`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gossip_status: Option<String>,
    /// A replacement is in progress on this address: the node booted with
    /// `replace_address_first_boot` (gossip `hibernate` / `BOOT_REPLACE`) and the others see it `D`.
    #[serde(default)]
    pub replacing: bool,
}

impl RingNode {
    /// A node known only by its address: everything else unknown.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            datacenter: None,
            rack: None,
            status: Liveness::Unknown,
            state: RingState::Unknown,
            liveness_source: LivenessSource::None,
            driver_state: None,
            direct_connect: None,
            native_address: None,
            load_bytes: None,
            load_text: None,
            tokens: None,
            owns_percent: None,
            host_id: None,
            schema_version: None,
            release_version: None,
            gossip_status: None,
            replacing: false,
        }
    }

    /// `UN`, `DJ`, `?N`…
    pub fn code(&self) -> String {
        format!("{}{}", self.status.letter(), self.state.letter())
    }

    /// The IP part of [`RingNode::address`] (without a `:port` suffix or brackets).
    pub fn ip(&self) -> &str {
        strip_port(&self.address)
    }
}

/// `127.0.0.1:7000` → `127.0.0.1`, `[::1]:7000` → `::1`, `::1` → `::1`.
pub(crate) fn strip_port(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        if let Some((ip, _)) = rest.split_once(']') {
            return ip;
        }
    }
    match address.rsplit_once(':') {
        Some((ip, port))
            if !ip.contains(':')
                && !port.is_empty()
                && port.chars().all(|c| c.is_ascii_digit()) =>
        {
            ip
        }
        _ => address,
    }
}

/// The ring state, `nodetool status`-equivalent: attached to observations as the `cassandra.ring`
/// fact (a ring is small: the whole node list is kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ring {
    /// Which source produced it.
    pub source: RingSource,
    /// How liveness was known, for the ring as a whole (`direct_connect`, `nodetool_failure_detector`).
    pub liveness_source: LivenessSource,
    /// The node that answered (CQL: its native address) or the command that ran (nodetool argv).
    pub observed_via: String,
    /// `cluster_name` (CQL only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// Every node seen, in the order of the source.
    pub nodes: Vec<RingNode>,
    /// What [`RingNode::owns_percent`] means: `effective` (nodetool `Owns (effective)`), `raw`
    /// (nodetool `Owns`), `token_ranges` (CQL: each node's share of the Murmur3 token ring), or
    /// `None` when not computable.
    pub owns_basis: Option<String>,
    /// Schema version → the addresses of the nodes that report it (CQL only).
    pub schema_versions: BTreeMap<String, Vec<String>>,
    /// More than one schema version among the nodes not known down.
    pub schema_disagreement: bool,
    /// Nodes the probe was configured to expect (address or host ID) that are not in the ring.
    pub missing_expected: Vec<String>,
    /// Notes the source printed (`Note: Non-system keyspaces …`, JVM warnings).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl FactType for Ring {
    const KIND: &'static str = "cassandra.ring";
}

impl Ring {
    /// The node with this address (IP, with or without port) or host ID.
    pub fn node(&self, key: &str) -> Option<&RingNode> {
        let key_ip = strip_port(key);
        self.nodes
            .iter()
            .find(|n| n.address == key || n.ip() == key_ip || n.host_id.as_deref() == Some(key))
    }

    /// `ip → "UN"/"DN"/…` for every node.
    pub fn summary(&self) -> BTreeMap<String, String> {
        self.nodes
            .iter()
            .map(|n| (n.ip().to_string(), n.code()))
            .collect()
    }

    /// Which of `expected` (addresses or host IDs) are not in the ring.
    pub(crate) fn find_missing(&self, expected: &[String]) -> Vec<String> {
        expected
            .iter()
            .filter(|e| self.node(e).is_none())
            .cloned()
            .collect()
    }
}
