//! Trino's JSON: `BasicQueryInfo` (`GET /v1/query`), `QueryResults` (`/v1/statement`), airlift
//! durations and data sizes.

use rb_core::{ErrorKind, ProbeError};
use serde::Deserialize;

use crate::common::ProbeSite;
use crate::transport::{check_status, parse_json, HttpResponse};

/// One element of `GET /v1/query` (the fields the probe reads).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireQuery {
    /// `20240418_085012_00003_abcde`.
    pub query_id: String,
    /// The session.
    pub session: WireSession,
    /// `QUEUED`, `RUNNING`, … (`io.trino.execution.QueryState`).
    pub state: String,
    /// The SQL text.
    pub query: String,
    /// Resource group path.
    #[serde(default)]
    pub resource_group_id: Option<Vec<String>>,
    /// Statistics.
    pub query_stats: WireStats,
}

/// The session part of a query.
#[derive(Debug, Clone, Deserialize)]
pub struct WireSession {
    /// Who runs the query.
    pub user: String,
    /// Client source (`trino-cli`).
    #[serde(default)]
    pub source: Option<String>,
}

/// `BasicQueryStats` (the fields the probe reads; durations and sizes as airlift writes them).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireStats {
    /// `12.31s`.
    pub elapsed_time: String,
    /// `1.20ms`.
    #[serde(default)]
    pub queued_time: Option<String>,
    /// `40.00s`.
    #[serde(default)]
    pub total_cpu_time: Option<String>,
    /// `12MB`.
    pub total_memory_reservation: String,
    /// `20MB`.
    #[serde(default)]
    pub peak_total_memory_reservation: Option<String>,
    /// Every driver blocked.
    #[serde(default)]
    pub fully_blocked: bool,
    /// Why (`WAITING_FOR_MEMORY`, …).
    #[serde(default)]
    pub blocked_reasons: Vec<String>,
}

/// Decode `GET /v1/query`: 401/403 → unauthorized, other non-2xx → rejected, bad JSON → bad response
/// naming the JSON pointer.
pub fn parse_query_list(
    site: &ProbeSite<'_>,
    resp: &HttpResponse,
) -> Result<Vec<WireQuery>, ProbeError> {
    check_status(site, resp)?;
    parse_json(site, &resp.body)
}

/// One answer of the client protocol (`QueryResults`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryResults {
    /// The query id.
    pub id: String,
    /// Where to poll next; absent on the last answer.
    #[serde(default)]
    pub next_uri: Option<String>,
    /// The columns, once known.
    #[serde(default)]
    pub columns: Option<Vec<Column>>,
    /// A page of rows.
    #[serde(default)]
    pub data: Option<Vec<Vec<serde_json::Value>>>,
    /// The failure.
    #[serde(default)]
    pub error: Option<QueryError>,
    /// `stats.state`.
    #[serde(default)]
    pub stats: Option<StatementStats>,
}

/// A result column.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Trino type (`bigint`, `varchar(10)`).
    #[serde(rename = "type")]
    pub kind: String,
}

/// `QueryError`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryError {
    /// Message.
    pub message: String,
    /// Numeric code.
    #[serde(default)]
    pub error_code: Option<i64>,
    /// `COLUMN_NOT_FOUND`.
    #[serde(default)]
    pub error_name: Option<String>,
    /// `USER_ERROR`.
    #[serde(default)]
    pub error_type: Option<String>,
}

/// `StatementStats` (its state).
#[derive(Debug, Clone, Deserialize)]
pub struct StatementStats {
    /// `QUEUED`, `RUNNING`, `FINISHED`, `FAILED`.
    #[serde(default)]
    pub state: Option<String>,
}

/// Decode one `QueryResults`; a Trino error in it → [`ErrorKind::Rejected`] naming Trino's error
/// name, code, type and message.
pub fn parse_query_results(
    site: &ProbeSite<'_>,
    resp: &HttpResponse,
) -> Result<QueryResults, ProbeError> {
    check_status(site, resp)?;
    let r: QueryResults = parse_json(site, &resp.body)?;
    if let Some(e) = &r.error {
        return Err(site.error(
            ErrorKind::Rejected,
            format!(
                "query {} failed: {} ({}, {}): {}",
                r.id,
                e.error_name.as_deref().unwrap_or("UNKNOWN"),
                e.error_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
                e.error_type.as_deref().unwrap_or("-"),
                e.message
            ),
        ));
    }
    Ok(r)
}

/// An airlift `Duration` (`12.31s`, `1.20ms`, `2.53h`, `0.00ns`) in seconds.
pub fn parse_duration(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.trim().parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let mult = match unit {
        "ns" => 1e-9,
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return None,
    };
    Some(n * mult)
}

/// An airlift `DataSize` (`0B`, `12MB`, `1.21GB`; powers of 1024) in bytes.
pub fn parse_data_size(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.trim().parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let exp = match unit {
        "B" => 0,
        "kB" | "KB" => 1,
        "MB" => 2,
        "GB" => 3,
        "TB" => 4,
        "PB" => 5,
        _ => return None,
    };
    Some(n * 1024f64.powi(exp))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn site() -> ProbeSite<'static> {
        ProbeSite {
            probe: "trino.queries",
            target: "trino",
            endpoint: "http://127.0.0.1:8080/v1/query",
        }
    }

    fn ok(body: &[u8]) -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: vec![],
            body: body.to_vec(),
            elapsed: std::time::Duration::ZERO,
        }
    }

    const LIST: &str =
        include_str!("../../../rb-testkit/fixtures/trino/query_list_item_derived.json");

    #[test]
    fn reads_the_reference_list() {
        let l = parse_query_list(&site(), &ok(LIST.as_bytes())).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].session.user, "alice");
        assert_eq!(l[0].query_stats.elapsed_time, "12.31s");
        assert_eq!(
            parse_data_size(&l[0].query_stats.total_memory_reservation),
            Some(12.0 * 1024.0 * 1024.0)
        );
    }

    #[test]
    fn airlift_units() {
        assert_eq!(parse_duration("12.31s"), Some(12.31));
        assert_eq!(parse_duration("1.20ms"), Some(0.0012));
        assert_eq!(parse_duration("2.00m"), Some(120.0));
        assert_eq!(parse_duration("2.53h"), Some(2.53 * 3600.0));
        assert_eq!(parse_duration("0.00ns"), Some(0.0));
        assert_eq!(parse_duration("12"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("1.0fortnights"), None);
        assert_eq!(parse_data_size("0B"), Some(0.0));
        assert_eq!(parse_data_size("1.5kB"), Some(1536.0));
        assert_eq!(
            parse_data_size("1.21GB").map(|b| b.round()),
            Some((1.21 * 1024f64.powi(3)).round())
        );
        assert_eq!(parse_data_size("12XB"), None);
        assert_eq!(parse_data_size("NaNB"), None);
    }

    #[test]
    fn errors_name_the_json_pointer() {
        let body = LIST.replace("\"elapsedTime\": \"12.31s\"", "\"elapsedTime\": 12.31");
        let e = parse_query_list(&site(), &ok(body.as_bytes())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadResponse);
        assert!(
            e.message.contains("/0/queryStats/elapsedTime") && e.message.contains("line"),
            "{}",
            e.message
        );
        let body = br#"{"id":"q1","stats":{"state":"RUNNING"},"data":[[1],"two"]}"#;
        let e = parse_query_results(&site(), &ok(body)).unwrap_err();
        assert!(e.message.contains("/data/1"), "{}", e.message);
    }

    #[test]
    fn trino_errors_are_rejected_with_name_and_message() {
        let body = br#"{"id":"q1","stats":{"state":"FAILED"},"error":{"message":"line 1:8: Column 'x' cannot be resolved","errorCode":47,"errorName":"COLUMN_NOT_FOUND","errorType":"USER_ERROR"}}"#;
        let e = parse_query_results(&site(), &ok(body)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Rejected);
        assert!(
            e.message.contains(
                "COLUMN_NOT_FOUND (47, USER_ERROR): line 1:8: Column 'x' cannot be resolved"
            ),
            "{}",
            e.message
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_query_list(&site(), &ok(&b));
            let _ = parse_query_results(&site(), &ok(&b));
        }

        #[test]
        fn never_panics_on_mutated_answers(at in 0usize..3000, byte in any::<u8>(), cut in 0usize..3000) {
            let mut b = LIST.as_bytes().to_vec();
            let i = at % b.len();
            b[i] = byte;
            b.truncate(cut.max(1));
            let _ = parse_query_list(&site(), &ok(&b));
        }

        #[test]
        fn unit_parsers_never_panic(s in "\\PC{0,12}") {
            let _ = parse_duration(&s);
            let _ = parse_data_size(&s);
        }
    }
}
