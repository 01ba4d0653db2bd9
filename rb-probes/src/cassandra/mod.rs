//! Cassandra ring state, as `nodetool status` shows it — the runbook's "Cassandra node down"
//! (`nodetool status` shows `DN`, or a `UN` node is missing).
//!
//! Two probes, one fact ([`Ring`], kind `cassandra.ring`), each saying how it knew liveness:
//!
//! - [`CqlRingProbe`] (id `cassandra.ring`) reads `system.local`, `system.peers_v2` (falling back
//!   to `system.peers` when a 3.x node answers `Invalid`) and `system_views.gossip_info` (4.1+:
//!   ring states N/J/L/M, load, bootstrapping nodes not yet in the peers tables), all from the
//!   same node (the first contact point that answers). CQL tables do not hold liveness, so the
//!   probe decides U/D itself ([`LivenessSource`] per node): a **direct connect** to each node's
//!   native port (handshake done → `U`, refused → `D`); a node that refuses CQL but whose gossip
//!   heartbeat rises between two reads is `U` (a bootstrapping node does not serve CQL yet); a
//!   node whose gossip says `shutdown` or `hibernate` (replacement in progress) is `D`; the
//!   **driver's node state** (a long-lived cdrs-tokio session kept current by `STATUS_CHANGE`
//!   events) decides `D` when the direct connect timed out. Anything else is `?` and the
//!   observation is incomplete. Logic is generic over [`CqlClient`] (rows in, ring out);
//!   [`CdrsCqlClient`] is the cdrs-tokio adapter (PasswordAuthenticator with an
//!   [`rb_core::Secret`], TLS with [`CqlTls`]: CA, server name, optional client certificate).
//! - [`NodetoolStatusProbe`] (id `cassandra.nodetool_status`) runs the real `nodetool status`
//!   through a [`CommandRunner`] (an argv array, no shell; [`TokioCommandRunner`] kills it at its
//!   timeout) and reads the text with [`parse_status`]: liveness is the failure detector of the
//!   node nodetool talks to. What the reader does not understand is listed (line, column, text) as
//!   a gap of an incomplete observation, never guessed.
//!
//! Both report: per node address, DC, rack, status `U`/`D`/`?`, state `N`/`J`/`L`/`M`/`S`/`?`,
//! load, tokens, ownership where computable, host ID; nodes expected but absent
//! ([`CqlRingConfig::expected_nodes`], [`NodetoolStatusConfig::expected_nodes`]); replacements in
//! progress (CQL: gossip `hibernate` / `BOOT_REPLACE`); and (CQL) schema versions per node and
//! schema disagreement.
//!
//! # Metrics and facts
//!
//! | name | labels | meaning | probes |
//! | --- | --- | --- | --- |
//! | `cassandra_nodes` | | nodes listed | both |
//! | `cassandra_nodes_up` / `_down` / `_liveness_unknown` | | nodes `U` / `D` / `?` | both |
//! | `cassandra_nodes_joining` / `_leaving` / `_moving` / `_stopped` / `_state_unknown` | | nodes per state | both |
//! | `cassandra_nodes_replacing` | | replacements in progress | both (nodetool: always 0, it cannot tell) |
//! | `cassandra_nodes_missing_expected` | | expected nodes absent from the ring | both |
//! | `cassandra_schema_versions` | | distinct schema versions among nodes not known down (>1: disagreement) | CQL |
//! | `cassandra_node_up` | `address`, `datacenter`, `rack` | 1 up, 0 down; at most `max_node_series` series (default 64), down nodes first; `?` nodes get none | both |
//! | fact `cassandra.ring` | | [`Ring`]: every node ([`RingNode`]), `liveness_source`, `owns_basis`, schema versions, missing expected nodes, notes | both |
//!
//! An observation is incomplete (never zeros) when a node's liveness or state is `?`, when
//! `system_views.gossip_info` cannot be read (Cassandra < 4.1, or no permission), or when
//! `nodetool status` printed lines the reader did not understand.
//!
//! # Errors
//!
//! | what | [`rb_core::ErrorKind`] |
//! | --- | --- |
//! | no contact point accepts a connection; nodetool cannot reach JMX | `Unreachable` |
//! | the deadline passes (a hung node, a slow nodetool) | `Timeout` |
//! | credentials refused (CQL `PasswordAuthenticator`, JMX); a TLS handshake that fails (untrusted certificate, wrong name) | `Unauthorized` |
//! | a malformed or truncated frame, a row of the wrong shape, text that is not `nodetool status` | `BadResponse` |
//! | a CQL error frame; nodetool exits non-zero for another reason | `Rejected` |
//! | nodetool cannot be started; no contact points | `Invalid` |
//!
//! # Least privilege
//!
//! - CQL: a role with `SELECT` on `system.local`, `system.peers_v2`, `system.peers` and
//!   `system_views.gossip_info` (`GRANT SELECT ON KEYSPACE system_views TO rb_probe` and the same
//!   on `system`, or per table); nothing else. The probe only reads.
//! - nodetool talks JMX to the node (`-h`/`-p`, port 7199 by default): with JMX authentication,
//!   a JMX user allowed the read-only `StorageService`/`FailureDetector`/`EndpointSnitchInfo`
//!   MBeans (a `readonly` entry in `jmxremote.access`); give its password in a file
//!   ([`NodetoolStatusConfig::jmx_credentials`]: `-pwf`) so it is never on a command line.

mod cdrs;
mod command;
mod cql;
mod emit;
mod model;
mod nodetool;
mod nodetool_probe;

pub use cdrs::{CdrsCqlClient, CqlTls};
pub use command::{CommandError, CommandOutput, CommandRunner, TokioCommandRunner};
pub use cql::{
    CqlClient, CqlConnection, CqlError, CqlErrorKind, CqlRingConfig, CqlRingProbe, CqlRow,
    CqlValue, DriverNode, DriverNodeState,
};
pub use emit::metric;
pub use model::{Liveness, LivenessSource, Ring, RingNode, RingSource, RingState};
pub use nodetool::{parse_status, NodetoolParseError, ParseIssue, StatusText};
pub use nodetool_probe::{NodetoolStatusConfig, NodetoolStatusProbe};
