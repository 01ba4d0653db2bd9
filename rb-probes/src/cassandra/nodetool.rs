//! A reader of `nodetool status` text.
//!
//! It reads what it understands and lists what it does not, never guessing: every line is either
//! recognised (a `Datacenter:` title, its `=` underline, the two legend lines, a column header
//! starting with `--`, a node row under a header, a `Note:` or a JVM warning, a blank line) or
//! reported as a [`ParseIssue`] with its line and column. Rows are split on whitespace and read in
//! the order of their block's header (never by column position), so column widths, underline
//! lengths and the order of columns do not matter. Tolerated: several datacenters, empty blocks,
//! any DC or rack name (a rack name with spaces, as the last column, is kept whole), `Load` as a
//! number with a unit (`bytes`, `B`, `KB`…`PB`, `KiB`…`PiB`), raw bytes or `?`; `Owns` or
//! `Owns (effective)`, with or without `%`, or `?`; a `Token` column instead of `Tokens`
//! (single-token rings); `Host ID` `null`; status `U`/`D`/`?` and state `N`/`J`/`L`/`M`/`S`/`?`;
//! IPv4, IPv6, `ip:port` and `[v6]:port` addresses, and host names (`--resolve-ip`).

use std::fmt;

use super::model::{Liveness, LivenessSource, RingNode, RingState};

/// A line of `nodetool status` that was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseIssue {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column (in characters) where the line stopped making sense.
    pub column: usize,
    /// What was wrong.
    pub reason: String,
    /// The line as printed.
    pub text: String,
}

impl fmt::Display for ParseIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {} in {:?}",
            self.line, self.column, self.reason, self.text
        )
    }
}

/// Nothing in the text could be read as `nodetool status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nodetool status text: {issue}")]
pub struct NodetoolParseError {
    /// Where the text first went wrong.
    pub issue: ParseIssue,
}

impl NodetoolParseError {
    /// 1-based line number.
    pub fn line(&self) -> usize {
        self.issue.line
    }
    /// 1-based column.
    pub fn column(&self) -> usize {
        self.issue.column
    }
}

/// What was read from one `nodetool status` output.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatusText {
    /// The node rows, in the order printed, with their datacenter.
    pub nodes: Vec<RingNode>,
    /// The datacenter blocks, in the order printed (empty blocks included).
    pub datacenters: Vec<String>,
    /// `effective` when a header said `Owns (effective)`, `raw` when one said `Owns`.
    pub owns_basis: Option<String>,
    /// `Note:` lines and JVM warnings.
    pub notes: Vec<String>,
    /// Lines that were not understood. Non-empty means the reading is incomplete.
    pub not_understood: Vec<ParseIssue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Address,
    Load,
    Tokens,
    Token,
    Owns,
    OwnsEffective,
    HostId,
    Rack,
}

/// Read `nodetool status` output. `Err` only when nothing at all could be read (no datacenter
/// title and no node row); otherwise what was not understood is in
/// [`StatusText::not_understood`].
pub fn parse_status(text: &str) -> Result<StatusText, NodetoolParseError> {
    let mut out = StatusText::default();
    let mut dc: Option<String> = None;
    let mut header: Option<Vec<Col>> = None;
    let mut recognised_structure = false;
    for (idx, line) in text.lines().enumerate() {
        let line_no = idx + 1;
        let trimmed = line.trim();
        let issue = |column: usize, reason: String| ParseIssue {
            line: line_no,
            column,
            reason,
            text: line.to_string(),
        };
        if trimmed.is_empty() {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix("Datacenter:") {
            let name = name.trim().to_string();
            out.datacenters.push(name.clone());
            dc = Some(name);
            header = None;
            recognised_structure = true;
            continue;
        }
        if trimmed.chars().all(|c| c == '=') {
            continue;
        }
        if trimmed.starts_with("Status=") || trimmed.starts_with("|/") {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("--") {
            match parse_header(rest) {
                Ok((cols, basis)) => {
                    if basis.is_some() {
                        out.owns_basis = basis;
                    }
                    header = Some(cols);
                    recognised_structure = true;
                }
                Err((offset, reason)) => {
                    header = None;
                    let column =
                        char_column(line, line.len() - line.trim_start().len() + 2 + offset);
                    out.not_understood.push(issue(column, reason));
                }
            }
            continue;
        }
        if is_note(trimmed) {
            out.notes.push(trimmed.to_string());
            continue;
        }
        let first = trimmed.split_whitespace().next().unwrap_or("");
        if is_code(first) {
            let Some(cols) = &header else {
                let col = char_column(line, line.len() - line.trim_start().len());
                out.not_understood.push(issue(
                    col,
                    "a node row before any column header (`--  Address …`)".into(),
                ));
                continue;
            };
            match parse_row(line, cols) {
                Ok(mut node) => {
                    node.datacenter = dc.clone();
                    out.nodes.push(node);
                }
                Err((offset, reason)) => out
                    .not_understood
                    .push(issue(char_column(line, offset), reason)),
            }
            continue;
        }
        let col = char_column(line, line.len() - line.trim_start().len());
        out.not_understood
            .push(issue(col, "not a line of `nodetool status`".into()));
    }
    if !recognised_structure && out.nodes.is_empty() {
        let issue = out.not_understood.first().cloned().unwrap_or(ParseIssue {
            line: 1,
            column: 1,
            reason: if text.trim().is_empty() {
                "empty output".into()
            } else {
                "no `Datacenter:` block and no node row".into()
            },
            text: text.lines().next().unwrap_or("").to_string(),
        });
        return Err(NodetoolParseError { issue });
    }
    Ok(out)
}

/// 1-based character column of byte `offset` in `line`.
fn char_column(line: &str, offset: usize) -> usize {
    let offset = offset.min(line.len());
    line.char_indices().take_while(|(i, _)| *i < offset).count() + 1
}

fn is_note(trimmed: &str) -> bool {
    let lower = trimmed.to_ascii_lowercase();
    lower.starts_with("note:")
        || lower.starts_with("warn")
        || lower.starts_with("picked up ")
        || lower.starts_with("openjdk ")
        || lower.starts_with("java hotspot")
        || lower.contains("warning:")
}

fn is_code(s: &str) -> bool {
    let mut chars = s.chars();
    match (chars.next(), chars.next(), chars.next()) {
        (Some(a), Some(b), None) => {
            Liveness::from_letter(a).is_some() && RingState::from_letter(b).is_some()
        }
        _ => false,
    }
}

/// Words with their byte offsets.
fn words(s: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in s.char_indices() {
        if c.is_whitespace() {
            if let Some(st) = start.take() {
                out.push((st, &s[st..i]));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(st) = start {
        out.push((st, &s[st..]));
    }
    out
}

type Failure = (usize, String);

fn parse_header(rest: &str) -> Result<(Vec<Col>, Option<String>), Failure> {
    let w = words(rest);
    let mut cols = Vec::new();
    let mut basis = None;
    let mut i = 0;
    while i < w.len() {
        let (off, word) = w[i];
        let next = w.get(i + 1).map(|x| x.1);
        let col = match (word, next) {
            ("Address", _) => Col::Address,
            ("Load", _) => Col::Load,
            ("Tokens", _) => Col::Tokens,
            ("Token", _) => Col::Token,
            ("Owns", Some("(effective)")) => {
                i += 1;
                basis = Some("effective".to_string());
                Col::OwnsEffective
            }
            ("Owns", _) => {
                if basis.is_none() {
                    basis = Some("raw".to_string());
                }
                Col::Owns
            }
            ("Host", Some("ID")) => {
                i += 1;
                Col::HostId
            }
            ("Rack", _) => Col::Rack,
            _ => return Err((off, format!("unknown column {word:?} in the header"))),
        };
        if cols.contains(&col) {
            return Err((off, format!("column {word:?} twice in the header")));
        }
        cols.push(col);
        i += 1;
    }
    for needed in [Col::Address, Col::Rack] {
        if !cols.contains(&needed) {
            return Err((rest.len(), format!("the header has no {needed:?} column")));
        }
    }
    Ok((cols, basis))
}

const UNITS: &[(&str, f64)] = &[
    ("bytes", 1.0),
    ("B", 1.0),
    ("KB", 1024.0),
    ("MB", 1024.0 * 1024.0),
    ("GB", 1024.0 * 1024.0 * 1024.0),
    ("TB", 1024.0 * 1024.0 * 1024.0 * 1024.0),
    ("PB", 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0),
    ("KiB", 1024.0),
    ("MiB", 1024.0 * 1024.0),
    ("GiB", 1024.0 * 1024.0 * 1024.0),
    ("TiB", 1024.0 * 1024.0 * 1024.0 * 1024.0),
    ("PiB", 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0),
];

fn unit_factor(s: &str) -> Option<f64> {
    UNITS.iter().find(|(u, _)| *u == s).map(|(_, f)| *f)
}

fn parse_number(s: &str) -> Option<f64> {
    // Cassandra formats with the JVM's default locale: accept a decimal comma too.
    let v: f64 = s.replace(',', ".").parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v)
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn valid_address(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() || s.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    let bare = s.trim_start_matches('/');
    if bare != s && valid_address(bare) {
        return true;
    }
    if let Some((ip, port)) = s.rsplit_once(':') {
        if !port.is_empty()
            && port.chars().all(|c| c.is_ascii_digit())
            && ip.parse::<std::net::IpAddr>().is_ok()
        {
            return true;
        }
    }
    // a host name (`--resolve-ip`), optionally with a port
    let host = match s.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => s,
    };
    !host.is_empty()
        && host
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn parse_row(line: &str, cols: &[Col]) -> Result<RingNode, Failure> {
    let w = words(line);
    let Some(&(code_off, code)) = w.first() else {
        return Err((0, "empty row".into()));
    };
    let mut chars = code.chars();
    let (Some(s), Some(t)) = (chars.next(), chars.next()) else {
        return Err((code_off, format!("status/state code {code:?}")));
    };
    let (Some(status), Some(state)) = (Liveness::from_letter(s), RingState::from_letter(t)) else {
        return Err((code_off, format!("status/state code {code:?}")));
    };
    let mut node = RingNode::new(String::new());
    node.status = status;
    node.state = state;
    node.liveness_source = LivenessSource::NodetoolFailureDetector;
    let mut i = 1;
    let end_of_line = line.trim_end().len();
    for (k, col) in cols.iter().enumerate() {
        let Some(&(off, word)) = w.get(i) else {
            return Err((
                end_of_line,
                format!("the row ends before its {col:?} column"),
            ));
        };
        match col {
            Col::Address => {
                if !valid_address(word) {
                    return Err((off, format!("{word:?} is not an address")));
                }
                node.address = word.to_string();
                i += 1;
            }
            Col::Load => {
                if word == "?" {
                    node.load_text = Some(word.to_string());
                    i += 1;
                } else {
                    let Some(v) = parse_number(word) else {
                        return Err((off, format!("load {word:?} is not a number or `?`")));
                    };
                    let unit = w
                        .get(i + 1)
                        .and_then(|(_, u)| unit_factor(u).map(|f| (*u, f)));
                    match unit {
                        Some((u, f)) => {
                            node.load_text = Some(format!("{word} {u}"));
                            node.load_bytes = Some((v * f).round() as u64);
                            i += 2;
                        }
                        None => {
                            // raw bytes: a whole number, unless the next field could be nothing but
                            // a unit we do not know
                            if word.contains(['.', ',']) {
                                let at = w.get(i + 1).map_or(off, |x| x.0);
                                return Err((
                                    at,
                                    format!("load {word:?} without a known size unit"),
                                ));
                            }
                            node.load_text = Some(word.to_string());
                            node.load_bytes = Some(v as u64);
                            i += 1;
                        }
                    }
                }
            }
            Col::Tokens => {
                let Ok(n) = word.parse::<u32>() else {
                    return Err((off, format!("token count {word:?} is not a whole number")));
                };
                node.tokens = Some(n);
                i += 1;
            }
            Col::Token => {
                if word.parse::<i128>().is_err() && word != "?" {
                    return Err((off, format!("token {word:?} is not a number")));
                }
                node.tokens = Some(1);
                i += 1;
            }
            Col::Owns | Col::OwnsEffective => {
                if word != "?" {
                    let Some(v) = parse_number(word.trim_end_matches('%')) else {
                        return Err((
                            off,
                            format!("ownership {word:?} is not a percentage or `?`"),
                        ));
                    };
                    node.owns_percent = Some(v);
                }
                i += 1;
            }
            Col::HostId => {
                if word != "null" && word != "?" {
                    if !is_uuid(word) {
                        return Err((off, format!("host ID {word:?} is not a UUID or `null`")));
                    }
                    node.host_id = Some(word.to_ascii_lowercase());
                }
                i += 1;
            }
            Col::Rack => {
                if k + 1 == cols.len() {
                    let rack = line[off..].trim_end();
                    node.rack = Some(rack.to_string());
                    i = w.len();
                } else {
                    node.rack = Some(word.to_string());
                    i += 1;
                }
            }
        }
    }
    if let Some(&(off, word)) = w.get(i) {
        return Err((
            off,
            format!("unexpected field {word:?} after the last column"),
        ));
    }
    Ok(node)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn columns_are_counted_in_characters() {
        assert_eq!(char_column("abc", 0), 1);
        assert_eq!(char_column("é x", 3), 3);
    }

    #[test]
    fn addresses() {
        for ok in [
            "127.0.0.1",
            "::1",
            "127.0.0.1:7000",
            "[::1]:7000",
            "/10.0.0.1",
            "node-1.example",
            "node1:7000",
        ] {
            assert!(valid_address(ok), "{ok}");
        }
        for bad in ["", "-x", "a b", "12%", "?"] {
            assert!(!valid_address(bad), "{bad}");
        }
    }
}
