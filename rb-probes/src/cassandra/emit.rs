//! Samples and the fact, from a ring (shared by both probes).

use std::collections::BTreeSet;

use rb_core::{labels, Labels, Observation};

use super::model::{Liveness, Ring, RingState};
use crate::common::TopK;

/// Metric names emitted by the Cassandra probes.
pub mod metric {
    /// Nodes in the ring (rows seen).
    pub const NODES: &str = "cassandra_nodes";
    /// Nodes `U`.
    pub const NODES_UP: &str = "cassandra_nodes_up";
    /// Nodes `D`.
    pub const NODES_DOWN: &str = "cassandra_nodes_down";
    /// Nodes whose liveness is `?`.
    pub const NODES_LIVENESS_UNKNOWN: &str = "cassandra_nodes_liveness_unknown";
    /// Nodes in state `J`.
    pub const NODES_JOINING: &str = "cassandra_nodes_joining";
    /// Nodes in state `L`.
    pub const NODES_LEAVING: &str = "cassandra_nodes_leaving";
    /// Nodes in state `M`.
    pub const NODES_MOVING: &str = "cassandra_nodes_moving";
    /// Nodes in state `S`.
    pub const NODES_STOPPED: &str = "cassandra_nodes_stopped";
    /// Nodes whose state is `?`.
    pub const NODES_STATE_UNKNOWN: &str = "cassandra_nodes_state_unknown";
    /// Nodes being replaced (`replace_address_first_boot` in progress).
    pub const NODES_REPLACING: &str = "cassandra_nodes_replacing";
    /// Expected nodes absent from the ring.
    pub const MISSING_EXPECTED: &str = "cassandra_nodes_missing_expected";
    /// Distinct schema versions among the nodes not known down (CQL source only).
    pub const SCHEMA_VERSIONS: &str = "cassandra_schema_versions";
    /// Per node: 1 up, 0 down (nodes of unknown liveness get no sample). Labels `address`,
    /// `datacenter`, `rack`. Bounded: down nodes first.
    pub const NODE_UP: &str = "cassandra_node_up";
}

/// Add the ring's samples and fact to `obs`, and a gap for every node whose liveness or state is
/// unknown (counts of up/down are then lower bounds).
pub(crate) fn emit(obs: &mut Observation, ring: &Ring, max_node_series: usize, with_schema: bool) {
    let count = |f: &dyn Fn(&super::model::RingNode) -> bool| {
        ring.nodes.iter().filter(|n| f(n)).count() as f64
    };
    let none = Labels::new;
    obs.push_sample(metric::NODES, none(), ring.nodes.len() as f64);
    obs.push_sample(
        metric::NODES_UP,
        none(),
        count(&|n| n.status == Liveness::Up),
    );
    obs.push_sample(
        metric::NODES_DOWN,
        none(),
        count(&|n| n.status == Liveness::Down),
    );
    obs.push_sample(
        metric::NODES_LIVENESS_UNKNOWN,
        none(),
        count(&|n| n.status == Liveness::Unknown),
    );
    for (name, state) in [
        (metric::NODES_JOINING, RingState::Joining),
        (metric::NODES_LEAVING, RingState::Leaving),
        (metric::NODES_MOVING, RingState::Moving),
        (metric::NODES_STOPPED, RingState::Stopped),
        (metric::NODES_STATE_UNKNOWN, RingState::Unknown),
    ] {
        obs.push_sample(name, none(), count(&|n| n.state == state));
    }
    obs.push_sample(metric::NODES_REPLACING, none(), count(&|n| n.replacing));
    obs.push_sample(
        metric::MISSING_EXPECTED,
        none(),
        ring.missing_expected.len() as f64,
    );
    if with_schema {
        let live_versions: BTreeSet<&str> = ring
            .nodes
            .iter()
            .filter(|n| n.status != Liveness::Down)
            .filter_map(|n| n.schema_version.as_deref())
            .collect();
        obs.push_sample(metric::SCHEMA_VERSIONS, none(), live_versions.len() as f64);
    }
    // per node, bounded: down first, then up (unknown liveness gets no 1/0 sample: it is a gap)
    let mut top = TopK::new(max_node_series);
    for (i, n) in ring.nodes.iter().enumerate() {
        let score = match n.status {
            Liveness::Down => 2.0,
            Liveness::Up => 1.0,
            Liveness::Unknown => continue,
        };
        // earlier nodes win ties (TopK keeps insertion order); `i` only keeps the item unique
        top.push(score, (i, n));
    }
    for (_, (_, n)) in top.into_sorted() {
        obs.push_sample(
            metric::NODE_UP,
            labels(&[
                ("address", n.ip()),
                ("datacenter", n.datacenter.as_deref().unwrap_or("")),
                ("rack", n.rack.as_deref().unwrap_or("")),
            ]),
            if n.status == Liveness::Up { 1.0 } else { 0.0 },
        );
    }
    for n in &ring.nodes {
        if n.status == Liveness::Unknown {
            obs.mark_incomplete(format!(
                "liveness of {} unknown{}",
                n.address,
                n.direct_connect
                    .as_deref()
                    .map(|d| format!(" (direct connect: {d})"))
                    .unwrap_or_default()
            ));
        }
    }
    let unknown_state: Vec<&str> = ring
        .nodes
        .iter()
        .filter(|n| n.state == RingState::Unknown)
        .map(|n| n.address.as_str())
        .collect();
    if !unknown_state.is_empty() {
        obs.mark_incomplete(format!(
            "ring state (N/J/L/M) unknown for {}",
            unknown_state.join(", ")
        ));
    }
    if let Err(e) = obs.facts.insert(ring) {
        obs.mark_incomplete(format!("fact cassandra.ring could not be encoded: {e}"));
    }
}
