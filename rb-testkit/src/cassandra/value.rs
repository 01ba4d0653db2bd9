//! CQL column types and values as the fake ring serves them (native protocol v4 encodings).

use std::net::IpAddr;

use cassandra_protocol::frame::message_result::{ColType, ColTypeOption, ColTypeOptionValue};
use cassandra_protocol::types::CBytes;
use uuid::Uuid;

/// A CQL column type used by the system tables the fake serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CqlType {
    /// `text` (sent as `varchar`, like Cassandra does for UTF8Type).
    Text,
    /// `int`.
    Int,
    /// `bigint`.
    Bigint,
    /// `boolean`.
    Boolean,
    /// `uuid`.
    Uuid,
    /// `inet`.
    Inet,
    /// `blob`.
    Blob,
    /// `set<T>`.
    Set(Box<CqlType>),
    /// `map<K, V>` (frozen or not: same wire type).
    Map(Box<CqlType>, Box<CqlType>),
}

impl CqlType {
    pub(crate) fn set_of(inner: CqlType) -> Self {
        CqlType::Set(Box::new(inner))
    }

    pub(crate) fn map_of(key: CqlType, value: CqlType) -> Self {
        CqlType::Map(Box::new(key), Box::new(value))
    }

    /// The wire description of this type (`[option]` in the protocol spec).
    pub(crate) fn col_type(&self) -> ColTypeOption {
        let simple = |id| ColTypeOption { id, value: None };
        match self {
            CqlType::Text => simple(ColType::Varchar),
            CqlType::Int => simple(ColType::Int),
            CqlType::Bigint => simple(ColType::Bigint),
            CqlType::Boolean => simple(ColType::Boolean),
            CqlType::Uuid => simple(ColType::Uuid),
            CqlType::Inet => simple(ColType::Inet),
            CqlType::Blob => simple(ColType::Blob),
            CqlType::Set(inner) => ColTypeOption {
                id: ColType::Set,
                value: Some(ColTypeOptionValue::CSet(Box::new(inner.col_type()))),
            },
            CqlType::Map(key, value) => ColTypeOption {
                id: ColType::Map,
                value: Some(ColTypeOptionValue::CMap(
                    Box::new(key.col_type()),
                    Box::new(value.col_type()),
                )),
            },
        }
    }
}

/// A CQL value of one cell.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CqlValue {
    Null,
    Text(String),
    Int(i32),
    Bigint(i64),
    Boolean(bool),
    Uuid(Uuid),
    Inet(IpAddr),
    Set(Vec<CqlValue>),
    Map(Vec<(CqlValue, CqlValue)>),
}

impl CqlValue {
    pub(crate) fn text(s: impl Into<String>) -> Self {
        CqlValue::Text(s.into())
    }

    pub(crate) fn text_set<I, S>(items: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CqlValue::Set(
            items
                .into_iter()
                .map(|s| CqlValue::Text(s.into()))
                .collect(),
        )
    }

    pub(crate) fn text_map<I, K, V>(items: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        CqlValue::Map(
            items
                .into_iter()
                .map(|(k, v)| (CqlValue::Text(k.into()), CqlValue::Text(v.into())))
                .collect(),
        )
    }

    /// The serialized cell (`[bytes]`, null for [`CqlValue::Null`]).
    pub(crate) fn to_cbytes(&self) -> CBytes {
        match self.raw() {
            Some(bytes) => CBytes::new(bytes),
            None => CBytes::new_null(),
        }
    }

    /// The raw bytes of the value, `None` for null.
    pub(crate) fn raw(&self) -> Option<Vec<u8>> {
        Some(match self {
            CqlValue::Null => return None,
            CqlValue::Text(s) => s.as_bytes().to_vec(),
            CqlValue::Int(i) => i.to_be_bytes().to_vec(),
            CqlValue::Bigint(i) => i.to_be_bytes().to_vec(),
            CqlValue::Boolean(b) => vec![u8::from(*b)],
            CqlValue::Uuid(u) => u.as_bytes().to_vec(),
            CqlValue::Inet(IpAddr::V4(ip)) => ip.octets().to_vec(),
            CqlValue::Inet(IpAddr::V6(ip)) => ip.octets().to_vec(),
            CqlValue::Set(items) => {
                let mut out = (items.len() as i32).to_be_bytes().to_vec();
                for item in items {
                    push_element(&mut out, item);
                }
                out
            }
            CqlValue::Map(entries) => {
                let mut out = (entries.len() as i32).to_be_bytes().to_vec();
                for (k, v) in entries {
                    push_element(&mut out, k);
                    push_element(&mut out, v);
                }
                out
            }
        })
    }

    /// The value as `toJson()` renders it.
    pub(crate) fn to_json(&self) -> String {
        match self {
            CqlValue::Null => "null".into(),
            CqlValue::Text(s) => json_string(s),
            CqlValue::Int(i) => i.to_string(),
            CqlValue::Bigint(i) => i.to_string(),
            CqlValue::Boolean(b) => b.to_string(),
            CqlValue::Uuid(u) => json_string(&u.to_string()),
            CqlValue::Inet(ip) => json_string(&ip.to_string()),
            CqlValue::Set(items) => {
                let parts: Vec<String> = items.iter().map(CqlValue::to_json).collect();
                format!("[{}]", parts.join(", "))
            }
            CqlValue::Map(entries) => {
                let parts: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| {
                        let key = match k {
                            CqlValue::Text(_) | CqlValue::Uuid(_) | CqlValue::Inet(_) => {
                                k.to_json()
                            }
                            other => json_string(&other.to_json()),
                        };
                        format!("{key}: {}", v.to_json())
                    })
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
        }
    }

    /// Whether this cell equals a literal written in a CQL statement (or bound as raw bytes).
    pub(crate) fn matches(&self, literal: &Literal) -> bool {
        match literal {
            Literal::Bytes(bytes) => self.raw().as_deref() == Some(bytes.as_slice()),
            Literal::Null => matches!(self, CqlValue::Null),
            Literal::Str(s) => match self {
                CqlValue::Text(t) => t == s,
                CqlValue::Uuid(u) => Uuid::parse_str(s).is_ok_and(|p| p == *u),
                CqlValue::Inet(ip) => s.parse::<IpAddr>().is_ok_and(|p| p == *ip),
                _ => false,
            },
            Literal::Number(n) => match self {
                CqlValue::Int(i) => i64::from(*i) == *n,
                CqlValue::Bigint(i) => i == n,
                _ => false,
            },
            Literal::Uuid(u) => matches!(self, CqlValue::Uuid(v) if v == u),
            Literal::Bool(b) => matches!(self, CqlValue::Boolean(v) if v == b),
        }
    }
}

fn push_element(out: &mut Vec<u8>, item: &CqlValue) {
    match item.raw() {
        Some(bytes) => {
            out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
            out.extend_from_slice(&bytes);
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A literal on the right-hand side of a `WHERE` relation, after binding markers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    /// `'text'`.
    Str(String),
    /// An integer.
    Number(i64),
    /// A bare UUID constant.
    Uuid(Uuid),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// A bound value (`?`), still serialized.
    Bytes(Vec<u8>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_of_text_is_length_prefixed() {
        let v = CqlValue::text_set(["a", "bc"]);
        assert_eq!(
            v.raw().unwrap(),
            vec![0, 0, 0, 2, 0, 0, 0, 1, b'a', 0, 0, 0, 2, b'b', b'c']
        );
    }

    #[test]
    fn map_to_json_matches_cassandra_layout() {
        let v = CqlValue::text_map([("class", "SimpleStrategy"), ("replication_factor", "3")]);
        assert_eq!(
            v.to_json(),
            r#"{"class": "SimpleStrategy", "replication_factor": "3"}"#
        );
    }

    #[test]
    fn literals_compare_by_type() {
        let ip = CqlValue::Inet("127.0.0.2".parse().unwrap());
        assert!(ip.matches(&Literal::Str("127.0.0.2".into())));
        assert!(!ip.matches(&Literal::Str("127.0.0.3".into())));
        assert!(CqlValue::Int(7).matches(&Literal::Number(7)));
        assert!(CqlValue::text("local").matches(&Literal::Bytes(b"local".to_vec())));
    }
}
