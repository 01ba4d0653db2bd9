//! The system tables the fake ring serves, and `SELECT` evaluation over them.

use std::net::{IpAddr, SocketAddr};

use tokio::time::Instant;

use super::cql::{CqlError, Select, Selector, Term};
use super::state::{RingState, GOSSIP_STATES, STORAGE_PORT};
use super::value::{CqlType, CqlValue, Literal};

/// Where a column sits in the primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    PartitionKey,
    Clustering,
    Regular,
}

/// One column of a table.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) ty: CqlType,
    pub(crate) kind: Kind,
}

/// A served table: keyspace, name and columns in `SELECT *` order.
#[derive(Debug, Clone)]
pub(crate) struct TableDef {
    pub(crate) keyspace: &'static str,
    pub(crate) name: &'static str,
    pub(crate) columns: Vec<Column>,
}

impl TableDef {
    /// Build a table: key columns first (in the given order), then regular columns sorted by
    /// name, which is how Cassandra orders `SELECT *`.
    fn new(keyspace: &'static str, name: &'static str, cols: Vec<(&str, CqlType, Kind)>) -> Self {
        let mut keys: Vec<Column> = Vec::new();
        let mut regular: Vec<Column> = Vec::new();
        for (name, ty, kind) in cols {
            let col = Column {
                name: name.to_string(),
                ty,
                kind,
            };
            if kind == Kind::Regular {
                regular.push(col);
            } else {
                keys.push(col);
            }
        }
        regular.sort_by(|a, b| a.name.cmp(&b.name));
        keys.extend(regular);
        TableDef {
            keyspace,
            name,
            columns: keys,
        }
    }

    fn index_of(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == column)
    }
}

use CqlType as T;
use Kind::{Clustering as C, PartitionKey as P, Regular as R};

fn local_table() -> TableDef {
    TableDef::new(
        "system",
        "local",
        vec![
            ("key", T::Text, P),
            ("bootstrapped", T::Text, R),
            ("broadcast_address", T::Inet, R),
            ("broadcast_port", T::Int, R),
            ("cluster_name", T::Text, R),
            ("cql_version", T::Text, R),
            ("data_center", T::Text, R),
            ("gossip_generation", T::Int, R),
            ("host_id", T::Uuid, R),
            ("listen_address", T::Inet, R),
            ("listen_port", T::Int, R),
            ("native_protocol_version", T::Text, R),
            ("partitioner", T::Text, R),
            ("rack", T::Text, R),
            ("release_version", T::Text, R),
            ("rpc_address", T::Inet, R),
            ("rpc_port", T::Int, R),
            ("schema_version", T::Uuid, R),
            ("tokens", T::set_of(T::Text), R),
            ("truncated_at", T::map_of(T::Uuid, T::Blob), R),
        ],
    )
}

fn peers_v2_table() -> TableDef {
    TableDef::new(
        "system",
        "peers_v2",
        vec![
            ("peer", T::Inet, P),
            ("peer_port", T::Int, C),
            ("data_center", T::Text, R),
            ("host_id", T::Uuid, R),
            ("native_address", T::Inet, R),
            ("native_port", T::Int, R),
            ("preferred_ip", T::Inet, R),
            ("preferred_port", T::Int, R),
            ("rack", T::Text, R),
            ("release_version", T::Text, R),
            ("schema_version", T::Uuid, R),
            ("tokens", T::set_of(T::Text), R),
        ],
    )
}

fn peers_table() -> TableDef {
    TableDef::new(
        "system",
        "peers",
        vec![
            ("peer", T::Inet, P),
            ("data_center", T::Text, R),
            ("host_id", T::Uuid, R),
            ("preferred_ip", T::Inet, R),
            ("rack", T::Text, R),
            ("release_version", T::Text, R),
            ("rpc_address", T::Inet, R),
            ("schema_version", T::Uuid, R),
            ("tokens", T::set_of(T::Text), R),
        ],
    )
}

fn keyspaces_table() -> TableDef {
    TableDef::new(
        "system_schema",
        "keyspaces",
        vec![
            ("keyspace_name", T::Text, P),
            ("durable_writes", T::Boolean, R),
            ("replication", T::map_of(T::Text, T::Text), R),
        ],
    )
}

fn gossip_info_table() -> TableDef {
    let mut cols: Vec<(String, CqlType, Kind)> = vec![
        ("address".into(), T::Inet, P),
        ("port".into(), T::Int, C),
        ("hostname".into(), T::Text, R),
        ("generation".into(), T::Int, R),
        ("heartbeat".into(), T::Int, R),
    ];
    for state in GOSSIP_STATES {
        if *state != "tokens" {
            cols.push(((*state).to_string(), T::Text, R));
        }
        cols.push((format!("{state}_version"), T::Int, R));
    }
    TableDef::new(
        "system_views",
        "gossip_info",
        cols.iter()
            .map(|(n, t, k)| (n.as_str(), t.clone(), *k))
            .collect(),
    )
}

/// Look a table up. `Err` carries the Invalid message Cassandra gives.
pub(crate) fn table(state: &RingState, keyspace: &str, name: &str) -> Result<TableDef, CqlError> {
    let def = match (keyspace, name) {
        ("system", "local") => Some(local_table()),
        ("system", "peers_v2") if state.peers_v2_invalid => {
            return Err(CqlError::Invalid("unconfigured table peers_v2".into()))
        }
        ("system", "peers_v2") => Some(peers_v2_table()),
        ("system", "peers") => Some(peers_table()),
        ("system_schema", "keyspaces") => Some(keyspaces_table()),
        ("system_views", "gossip_info") => Some(gossip_info_table()),
        _ => None,
    };
    match def {
        Some(def) => Ok(def),
        None if !state.keyspace_exists(keyspace) => Err(CqlError::Invalid(format!(
            "keyspace {keyspace} does not exist"
        ))),
        None => Err(CqlError::Invalid(format!(
            "table {name} does not exist (the rb-testkit fake ring serves system.local, \
             system.peers_v2, system.peers, system_schema.keyspaces, system_views.gossip_info)"
        ))),
    }
}

fn sorted_tokens(tokens: &[i64]) -> CqlValue {
    // set<text> comes back in text order
    let mut t: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
    t.sort();
    CqlValue::text_set(t)
}

/// All rows of `table` as node `node` sees them, aligned with the table's columns.
pub(crate) fn rows(
    def: &TableDef,
    state: &RingState,
    node: usize,
    now: Instant,
) -> Vec<Vec<CqlValue>> {
    let mut out = Vec::new();
    let Some(me) = state.nodes.get(node) else {
        return out;
    };
    let port = me.info.native_addr.port();
    let mut push = |values: Vec<(&str, CqlValue)>| {
        let mut row = vec![CqlValue::Null; def.columns.len()];
        for (name, value) in values {
            if let Some(i) = def.index_of(name) {
                row[i] = value;
            }
        }
        out.push(row);
    };
    match (def.keyspace, def.name) {
        ("system", "local") => {
            let i = &me.info;
            let ip = CqlValue::Inet(me.ip());
            let bootstrapped = match i.status {
                super::state::NodeStatus::Joining => "IN_PROGRESS",
                _ => "COMPLETED",
            };
            push(vec![
                ("key", CqlValue::text("local")),
                ("bootstrapped", CqlValue::text(bootstrapped)),
                ("broadcast_address", ip.clone()),
                ("broadcast_port", CqlValue::Int(i32::from(STORAGE_PORT))),
                ("cluster_name", CqlValue::text(state.cluster_name.clone())),
                ("cql_version", CqlValue::text("3.4.7")),
                ("data_center", CqlValue::text(i.datacenter.clone())),
                ("gossip_generation", CqlValue::Int(me.generation)),
                ("host_id", CqlValue::Uuid(i.host_id)),
                ("listen_address", ip.clone()),
                ("listen_port", CqlValue::Int(i32::from(STORAGE_PORT))),
                ("native_protocol_version", CqlValue::text("5")),
                (
                    "partitioner",
                    CqlValue::text("org.apache.cassandra.dht.Murmur3Partitioner"),
                ),
                ("rack", CqlValue::text(i.rack.clone())),
                ("release_version", CqlValue::text(i.release_version.clone())),
                ("rpc_address", ip),
                ("rpc_port", CqlValue::Int(i32::from(port))),
                ("schema_version", CqlValue::Uuid(i.schema_version)),
                ("tokens", sorted_tokens(&i.tokens)),
            ]);
        }
        ("system", "peers_v2") => {
            for p in state.peers_of(node) {
                let i = &p.info;
                push(vec![
                    ("peer", CqlValue::Inet(p.ip())),
                    ("peer_port", CqlValue::Int(i32::from(STORAGE_PORT))),
                    ("data_center", CqlValue::text(i.datacenter.clone())),
                    ("host_id", CqlValue::Uuid(i.host_id)),
                    ("native_address", CqlValue::Inet(p.ip())),
                    (
                        "native_port",
                        CqlValue::Int(i32::from(i.native_addr.port())),
                    ),
                    ("rack", CqlValue::text(i.rack.clone())),
                    ("release_version", CqlValue::text(i.release_version.clone())),
                    ("schema_version", CqlValue::Uuid(i.schema_version)),
                    ("tokens", sorted_tokens(&i.tokens)),
                ]);
            }
        }
        ("system", "peers") => {
            for p in state.peers_of(node) {
                let i = &p.info;
                push(vec![
                    ("peer", CqlValue::Inet(p.ip())),
                    ("data_center", CqlValue::text(i.datacenter.clone())),
                    ("host_id", CqlValue::Uuid(i.host_id)),
                    ("rack", CqlValue::text(i.rack.clone())),
                    ("release_version", CqlValue::text(i.release_version.clone())),
                    ("rpc_address", CqlValue::Inet(p.ip())),
                    ("schema_version", CqlValue::Uuid(i.schema_version)),
                    ("tokens", sorted_tokens(&i.tokens)),
                ]);
            }
        }
        ("system_schema", "keyspaces") => {
            for (name, replication) in &state.keyspaces {
                push(vec![
                    ("keyspace_name", CqlValue::text(name.clone())),
                    ("durable_writes", CqlValue::Boolean(true)),
                    ("replication", CqlValue::text_map(replication.to_map())),
                ]);
            }
        }
        ("system_views", "gossip_info") => {
            for p in state.members() {
                let values = gossip_values(p, now);
                push(
                    values
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.clone()))
                        .collect(),
                );
            }
        }
        _ => {}
    }
    out
}

/// The gossip_info row of one endpoint.
fn gossip_values(p: &super::state::NodeRecord, now: Instant) -> Vec<(String, CqlValue)> {
    let i = &p.info;
    let ip = p.ip();
    let hostname = if ip == IpAddr::from([127, 0, 0, 1]) {
        "localhost".to_string()
    } else {
        ip.to_string()
    };
    let load = i
        .load_bytes
        .map(java_double)
        .unwrap_or_else(|| "0.0".into());
    let status = p.gossip_status();
    let mut v: Vec<(String, CqlValue)> = vec![
        ("address".into(), CqlValue::Inet(ip)),
        ("port".into(), CqlValue::Int(i32::from(STORAGE_PORT))),
        ("hostname".into(), CqlValue::text(hostname)),
        ("generation".into(), CqlValue::Int(p.generation)),
        ("heartbeat".into(), CqlValue::Int(p.heartbeat(now))),
        ("status".into(), CqlValue::text(status.clone())),
        ("status_with_port".into(), CqlValue::text(status)),
        ("load".into(), CqlValue::text(load)),
        (
            "schema".into(),
            CqlValue::text(i.schema_version.to_string()),
        ),
        ("dc".into(), CqlValue::text(i.datacenter.clone())),
        ("rack".into(), CqlValue::text(i.rack.clone())),
        (
            "release_version".into(),
            CqlValue::text(i.release_version.clone()),
        ),
        ("internal_ip".into(), CqlValue::text(ip.to_string())),
        ("rpc_address".into(), CqlValue::text(ip.to_string())),
        ("severity".into(), CqlValue::text("0.0")),
        ("net_version".into(), CqlValue::text("12")),
        ("host_id".into(), CqlValue::text(i.host_id.to_string())),
        ("rpc_ready".into(), CqlValue::text("true")),
        (
            "internal_address_and_port".into(),
            CqlValue::text(SocketAddr::new(ip, STORAGE_PORT).to_string()),
        ),
        (
            "native_address_and_port".into(),
            CqlValue::text(i.native_addr.to_string()),
        ),
        ("sstable_versions".into(), CqlValue::text("big-nb")),
    ];
    for (state, version) in &p.state_versions {
        v.push((format!("{state}_version"), CqlValue::Int(*version)));
    }
    v
}

/// A double as Java's `String.valueOf(double)` prints it (gossip LOAD values look like this).
pub(crate) fn java_double(bytes: u64) -> String {
    let x = bytes as f64;
    if x != 0.0 && !(1e-3..1e7).contains(&x) {
        let s = format!("{x:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.to_string()
        } else {
            format!("{mantissa}.0")
        };
        format!("{mantissa}E{exp}")
    } else {
        let s = format!("{x}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    }
}

/// One output column of a planned `SELECT`.
#[derive(Debug, Clone)]
enum Output {
    Column(usize),
    ToJson(usize),
    Count,
}

/// A `SELECT` checked against its table.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) table: TableDef,
    outputs: Vec<(String, CqlType, Output)>,
    /// Bind markers: (name, type, column index).
    pub(crate) markers: Vec<(String, CqlType, usize)>,
    relations: Vec<(usize, Term)>,
    limit: Option<usize>,
}

impl Plan {
    /// Result columns (name, type).
    pub(crate) fn result_columns(&self) -> Vec<(String, CqlType)> {
        self.outputs
            .iter()
            .map(|(n, t, _)| (n.clone(), t.clone()))
            .collect()
    }

    /// Indexes (into the markers) of markers bound to partition key columns.
    pub(crate) fn pk_indexes(&self) -> Vec<i16> {
        self.markers
            .iter()
            .enumerate()
            .filter(|(_, (_, _, col))| self.table.columns[*col].kind == Kind::PartitionKey)
            .map(|(i, _)| i as i16)
            .collect()
    }
}

/// Check a `SELECT` against the schema. `current_keyspace` is the connection's `USE`d keyspace.
pub(crate) fn plan(
    state: &RingState,
    select: &Select,
    current_keyspace: Option<&str>,
) -> Result<Plan, CqlError> {
    let keyspace = match (&select.keyspace, current_keyspace) {
        (Some(k), _) => k.clone(),
        (None, Some(k)) => k.to_string(),
        (None, None) => {
            return Err(CqlError::Invalid(
                "No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename"
                    .into(),
            ))
        }
    };
    let table = table(state, &keyspace, &select.table)?;
    let undefined = |c: &str| {
        CqlError::Invalid(format!(
            "Undefined column name {c} in table {}.{}",
            table.keyspace, table.name
        ))
    };
    let mut outputs = Vec::new();
    for sel in &select.selectors {
        match sel {
            Selector::Star => {
                for (i, c) in table.columns.iter().enumerate() {
                    outputs.push((c.name.clone(), c.ty.clone(), Output::Column(i)));
                }
            }
            Selector::Column { name, alias } => {
                let i = table.index_of(name).ok_or_else(|| undefined(name))?;
                outputs.push((
                    alias.clone().unwrap_or_else(|| name.clone()),
                    table.columns[i].ty.clone(),
                    Output::Column(i),
                ));
            }
            Selector::ToJson { column, alias } => {
                let i = table.index_of(column).ok_or_else(|| undefined(column))?;
                outputs.push((
                    alias
                        .clone()
                        .unwrap_or_else(|| format!("system.tojson({column})")),
                    CqlType::Text,
                    Output::ToJson(i),
                ));
            }
            Selector::Count { alias } => outputs.push((
                alias.clone().unwrap_or_else(|| "count".into()),
                CqlType::Bigint,
                Output::Count,
            )),
        }
    }
    let mut relations = Vec::new();
    let mut markers = Vec::new();
    let mut needs_filtering = false;
    for rel in &select.relations {
        let i = table
            .index_of(&rel.column)
            .ok_or_else(|| undefined(&rel.column))?;
        if table.columns[i].kind == Kind::Regular {
            needs_filtering = true;
        }
        if let Term::Marker(name) = &rel.term {
            markers.push((
                name.clone().unwrap_or_else(|| rel.column.clone()),
                table.columns[i].ty.clone(),
                i,
            ));
        }
        relations.push((i, rel.term.clone()));
    }
    let restricts_clustering_only = !select.relations.is_empty()
        && relations
            .iter()
            .all(|(i, _)| table.columns[*i].kind == Kind::Clustering);
    if (needs_filtering || restricts_clustering_only) && !select.allow_filtering {
        return Err(CqlError::Invalid(
            "Cannot execute this query as it might involve data filtering and thus may have \
             unpredictable performance. If you want to execute this query despite the \
             performance unpredictability, use ALLOW FILTERING"
                .into(),
        ));
    }
    Ok(Plan {
        table,
        outputs,
        markers,
        relations,
        limit: select.limit,
    })
}

/// Bound values of a query: positional or named.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bound {
    pub(crate) positional: Vec<Option<Vec<u8>>>,
    pub(crate) named: Vec<(String, Option<Vec<u8>>)>,
}

/// Run a plan over the rows node `node` sees. Returns all matching rows (paging is done by the
/// caller).
pub(crate) fn run(
    plan: &Plan,
    bound: &Bound,
    state: &RingState,
    node: usize,
    now: Instant,
) -> Result<Vec<Vec<CqlValue>>, CqlError> {
    let total_bound = bound.positional.len() + bound.named.len();
    if total_bound != plan.markers.len() {
        return Err(CqlError::Invalid(format!(
            "There were {} markers(?) in CQL but {} bound variables",
            plan.markers.len(),
            total_bound
        )));
    }
    let mut next_marker = 0usize;
    let mut filters: Vec<(usize, Literal)> = Vec::new();
    for (col, term) in &plan.relations {
        let literal = match term {
            Term::Literal(l) => l.clone(),
            Term::Marker(name) => {
                let value = match name {
                    Some(n) if !bound.named.is_empty() => bound
                        .named
                        .iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| {
                            CqlError::Invalid(format!("Missing value for bind marker :{n}"))
                        })?,
                    _ => {
                        let v = bound.positional.get(next_marker).cloned().unwrap_or(None);
                        next_marker += 1;
                        v
                    }
                };
                value.map_or(Literal::Null, Literal::Bytes)
            }
        };
        if literal == Literal::Null {
            return Err(CqlError::Invalid(format!(
                "Invalid null value in condition for column {}",
                plan.table.columns[*col].name
            )));
        }
        filters.push((*col, literal));
    }
    let matching: Vec<Vec<CqlValue>> = rows(&plan.table, state, node, now)
        .into_iter()
        .filter(|row| filters.iter().all(|(i, lit)| row[*i].matches(lit)))
        .collect();
    let has_count = plan
        .outputs
        .iter()
        .any(|(_, _, o)| matches!(o, Output::Count));
    let project = |row: &Vec<CqlValue>, count: usize| -> Vec<CqlValue> {
        plan.outputs
            .iter()
            .map(|(_, _, o)| match o {
                Output::Column(i) => row[*i].clone(),
                Output::ToJson(i) => CqlValue::Text(row[*i].to_json()),
                Output::Count => CqlValue::Bigint(count as i64),
            })
            .collect()
    };
    let mut out: Vec<Vec<CqlValue>> = if has_count {
        let empty = vec![CqlValue::Null; plan.table.columns.len()];
        let first = matching.first().unwrap_or(&empty);
        vec![project(first, matching.len())]
    } else {
        matching.iter().map(|r| project(r, 0)).collect()
    };
    if let Some(limit) = plan.limit {
        out.truncate(limit);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_double_formats_like_string_value_of() {
        assert_eq!(java_double(0), "0.0");
        assert_eq!(java_double(104_857), "104857.0");
        assert_eq!(java_double(12_345_678), "1.2345678E7");
        assert_eq!(java_double(10_000_000), "1.0E7");
    }

    #[test]
    fn select_star_orders_keys_then_regular_columns_by_name() {
        let t = local_table();
        assert_eq!(t.columns[0].name, "key");
        assert_eq!(t.columns[1].name, "bootstrapped");
        assert_eq!(
            t.columns.last().map(|c| c.name.as_str()),
            Some("truncated_at")
        );
        let g = gossip_info_table();
        assert_eq!(g.columns[0].name, "address");
        assert_eq!(g.columns[1].name, "port");
        assert!(g.index_of("tokens").is_none());
        assert!(g.index_of("tokens_version").is_some());
        assert!(g.index_of("status_with_port").is_some());
    }
}
