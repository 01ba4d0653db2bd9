//! `nodetool status` rendered from the ring state, in the layout of Cassandra 4.0+ (one table
//! whose column widths are shared by every datacenter block, two spaces between columns).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::state::{
    is_system_keyspace, range_size, NodeRecord, NodeStatus, Replication, RingState,
};

const NOTE_MIXED: &str = "Non-system keyspaces don't have the same replication settings, effective ownership information is meaningless";

/// Why `nodetool status <keyspace>` refuses (the tool prints `Error: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OwnershipError {
    /// Falls back to raw ownership and a `Note:` line (IllegalStateException in the tool).
    Note(String),
    /// The tool exits with `Error: …` (IllegalArgumentException).
    Fatal(String),
}

/// Effective ownership (0.0–1.0 per replica set share) per node index, as
/// `StorageService.effectiveOwnership(keyspace)` computes it.
pub(crate) fn effective_ownership(
    state: &RingState,
    keyspace: Option<&str>,
) -> Result<HashMap<usize, f64>, OwnershipError> {
    let replication = match keyspace {
        Some(ks) => match state.keyspace(ks) {
            None => {
                return Err(OwnershipError::Fatal(format!(
                    "The keyspace {ks}, does not exist"
                )))
            }
            Some(Replication::Local) => {
                return Err(OwnershipError::Note(
                    "Ownership values for keyspaces with LocalStrategy are meaningless".into(),
                ))
            }
            Some(r) => r.clone(),
        },
        None => {
            let user: Vec<&Replication> = state
                .keyspaces
                .iter()
                .filter(|(k, _)| !is_system_keyspace(k))
                .map(|(_, r)| r)
                .collect();
            match user.first() {
                Some(first) => {
                    if user.iter().any(|r| r != first) {
                        return Err(OwnershipError::Note(NOTE_MIXED.into()));
                    }
                    (*first).clone()
                }
                None => match state.keyspace("system_traces") {
                    Some(r) => r.clone(),
                    None => return Err(OwnershipError::Fatal(
                        "The node does not have system_traces yet, probably still bootstrapping"
                            .into(),
                    )),
                },
            }
        }
    };
    Ok(ownership_for(state, &replication))
}

/// Sum, per node, of the ring fraction of every range it replicates.
fn ownership_for(state: &RingState, replication: &Replication) -> HashMap<usize, f64> {
    // The token ring: normal (non-joining) members only.
    let owners: Vec<&NodeRecord> = state
        .members()
        .filter(|n| n.info.status != NodeStatus::Joining)
        .collect();
    let mut ring: Vec<(i64, usize)> = owners
        .iter()
        .flat_map(|n| n.info.tokens.iter().map(move |t| (*t, n.info.index)))
        .collect();
    ring.sort_unstable();
    let mut result: HashMap<usize, f64> = owners.iter().map(|n| (n.info.index, 0.0)).collect();
    if ring.is_empty() {
        return result;
    }
    let dc_of: HashMap<usize, (&str, &str)> = owners
        .iter()
        .map(|n| {
            (
                n.info.index,
                (n.info.datacenter.as_str(), n.info.rack.as_str()),
            )
        })
        .collect();
    let full = (1u128 << 64) as f64;
    for i in 0..ring.len() {
        let prev = if i == 0 {
            ring[ring.len() - 1].0
        } else {
            ring[i - 1].0
        };
        let share = range_size(prev, ring[i].0) as f64 / full;
        for replica in replicas(&ring, i, replication, &dc_of) {
            if let Some(v) = result.get_mut(&replica) {
                *v += share;
            }
        }
    }
    result
}

/// Replicas of the range ending at `ring[start]`.
fn replicas(
    ring: &[(i64, usize)],
    start: usize,
    replication: &Replication,
    dc_of: &HashMap<usize, (&str, &str)>,
) -> Vec<usize> {
    let walk = || (0..ring.len()).map(move |k| ring[(start + k) % ring.len()].1);
    match replication {
        Replication::Local => Vec::new(),
        Replication::Simple(rf) => {
            let mut out: Vec<usize> = Vec::new();
            for node in walk() {
                if out.len() >= *rf {
                    break;
                }
                if !out.contains(&node) {
                    out.push(node);
                }
            }
            out
        }
        Replication::NetworkTopology(dcs) => {
            let mut out = Vec::new();
            for (dc, rf) in dcs {
                let in_dc: BTreeSet<usize> = dc_of
                    .iter()
                    .filter(|(_, (d, _))| d == dc)
                    .map(|(n, _)| *n)
                    .collect();
                let racks: BTreeSet<&str> = in_dc
                    .iter()
                    .filter_map(|n| dc_of.get(n).map(|x| x.1))
                    .collect();
                let want = (*rf).min(in_dc.len());
                let mut chosen: Vec<usize> = Vec::new();
                let mut seen_racks: BTreeSet<&str> = BTreeSet::new();
                let mut skipped: Vec<usize> = Vec::new();
                for node in walk() {
                    if chosen.len() >= want {
                        break;
                    }
                    if !in_dc.contains(&node) || chosen.contains(&node) || skipped.contains(&node) {
                        continue;
                    }
                    let rack = dc_of.get(&node).map(|x| x.1).unwrap_or("");
                    if seen_racks.len() < racks.len() && seen_racks.contains(rack) {
                        skipped.push(node);
                        continue;
                    }
                    seen_racks.insert(rack);
                    chosen.push(node);
                    if seen_racks.len() == racks.len() {
                        // every rack has a replica: fill up with the nodes skipped so far
                        while chosen.len() < want && !skipped.is_empty() {
                            chosen.push(skipped.remove(0));
                        }
                    }
                }
                out.extend(chosen);
            }
            out
        }
    }
}

/// `FileUtils.stringifyFileSize`: `#.##` with binary units.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [(f64, &str); 4] = [
        (1024.0 * 1024.0 * 1024.0 * 1024.0, "TiB"),
        (1024.0 * 1024.0 * 1024.0, "GiB"),
        (1024.0 * 1024.0, "MiB"),
        (1024.0, "KiB"),
    ];
    let v = bytes as f64;
    for (size, unit) in UNITS {
        if v >= size {
            return format!("{} {unit}", two_decimals(v / size));
        }
    }
    format!("{} bytes", two_decimals(v))
}

/// Java `DecimalFormat("#.##")`: at most two decimals, no trailing zeros (half-even rounding).
fn two_decimals(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// `DecimalFormat("##0.0%")`.
fn percent(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// Render `nodetool status [keyspace]` as node `observer`'s view (liveness: the ring's up flags).
pub(crate) fn render_status(state: &RingState, keyspace: Option<&str>) -> Result<String, String> {
    let (ownership, effective, note) = match effective_ownership(state, keyspace) {
        Ok(o) => (o, true, None),
        Err(OwnershipError::Note(msg)) => (HashMap::new(), false, Some(msg)),
        Err(OwnershipError::Fatal(msg)) => return Err(format!("\nError: {msg}\n")),
    };
    let members: Vec<&NodeRecord> = state.members().collect();
    let total_tokens: usize = members.iter().map(|n| n.info.tokens.len()).sum();
    // Group by DC (sorted); inside a DC, by first token.
    let mut dcs: BTreeMap<&str, Vec<&NodeRecord>> = BTreeMap::new();
    for n in &members {
        dcs.entry(n.info.datacenter.as_str()).or_default().push(n);
    }
    for nodes in dcs.values_mut() {
        nodes.sort_by_key(|n| n.info.tokens.first().copied().unwrap_or(i64::MAX));
    }
    // The tool compares the number of DCs (not nodes) with the number of tokens.
    let token_per_node = total_tokens <= dcs.len();
    let owns_header = if effective {
        "Owns (effective)"
    } else {
        "Owns"
    };
    let header: Vec<String> = if token_per_node {
        [
            "--",
            "Address",
            "Load",
            owns_header,
            "Host ID",
            "Token",
            "Rack",
        ]
    } else {
        [
            "--",
            "Address",
            "Load",
            "Tokens",
            owns_header,
            "Host ID",
            "Rack",
        ]
    }
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut tables: Vec<(&str, Vec<Vec<String>>)> = Vec::new();
    for (dc, nodes) in &dcs {
        let mut rows = vec![header.clone()];
        for n in nodes {
            let i = &n.info;
            let status = format!("{}{}", if i.up { 'U' } else { 'D' }, i.status.letter());
            let load = i.load_bytes.map_or_else(|| "?".to_string(), human_size);
            let owns = match (effective, ownership.get(&i.index)) {
                (true, Some(v)) => percent(*v),
                _ => "?".to_string(),
            };
            let row = if token_per_node {
                vec![
                    status,
                    i.native_addr.ip().to_string(),
                    load,
                    owns,
                    i.host_id.to_string(),
                    i.tokens.first().map(|t| t.to_string()).unwrap_or_default(),
                    i.rack.clone(),
                ]
            } else {
                vec![
                    status,
                    i.native_addr.ip().to_string(),
                    load,
                    i.tokens.len().to_string(),
                    owns,
                    i.host_id.to_string(),
                    i.rack.clone(),
                ]
            };
            rows.push(row);
        }
        tables.push((dc, rows));
    }
    let columns = header.len();
    let mut widths = vec![0usize; columns];
    for (_, rows) in &tables {
        for row in rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    for (k, (dc, rows)) in tables.iter().enumerate() {
        if k > 0 {
            out.push('\n');
        }
        let title = format!("Datacenter: {dc}");
        out.push_str(&title);
        out.push('\n');
        out.push_str(&"=".repeat(title.chars().count()));
        out.push('\n');
        out.push_str("Status=Up/Down\n");
        out.push_str("|/ State=Normal/Leaving/Joining/Moving\n");
        for row in rows {
            for (c, cell) in row.iter().enumerate() {
                out.push_str(&format!("{cell:<width$}", width = widths[c]));
                if c + 1 < columns {
                    out.push_str("  ");
                }
            }
            out.push('\n');
        }
    }
    out.push('\n');
    if let Some(note) = note {
        out.push_str("Note: ");
        out.push_str(&note);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_file_utils() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(1024), "1 KiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(151_781_130), "144.75 MiB");
        assert_eq!(human_size(5_035_763_957), "4.69 GiB");
    }

    #[test]
    fn percent_has_one_decimal() {
        assert_eq!(percent(1.0), "100.0%");
        assert_eq!(percent(0.5444), "54.4%");
        assert_eq!(percent(2.0 / 3.0), "66.7%");
    }
}
