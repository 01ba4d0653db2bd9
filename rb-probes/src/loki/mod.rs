//! Loki: log lines for a selector over a time window, as diagnosis evidence.
//!
//! [`LokiLogs`] runs one LogQL log query (`{container="flink-jobmanager"} |= "Exception"`) over the
//! window ending at the probe's "now": `GET /loki/api/v1/query_range` with `start` and `end` in Unix
//! nanoseconds, `limit` and `direction` (newest first by default).
//!
//! | metric | meaning |
//! | --- | --- |
//! | `loki_lines` | lines returned |
//! | `loki_streams` | streams they came from |
//! | `loki_limit_reached` | 1 when as many lines as the limit came back (there may be more) |
//!
//! **Fact** [`LokiLines`] (`loki.lines`): the query, the window, and the lines — time, stream labels,
//! text (each bounded to [`LokiLogs::line_limit`] characters) — in the order asked for.
//!
//! **Errors:** Loki's 400 for a query it cannot parse (or a metric query, which this probe does not
//! run) → rejected with Loki's message; an answer whose `resultType` is not `streams`, or whose JSON
//! is not Loki's → bad response naming the JSON pointer; unreachable, timeouts as usual.
//!
//! **Least privilege:** read access to the tenant's logs (`X-Scope-OrgID` via
//! [`LokiLogs::tenant`] in multi-tenant setups; a bearer or Basic credential from the gateway) — it
//! only calls `query_range`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use rb_core::{ErrorKind, FactType, Labels, Observation, Probe, ProbeContext, ProbeError, Target};
use serde::{Deserialize, Serialize};

use crate::common::ProbeSite;
use crate::rest;
use crate::transport::{check_status, parse_json, HttpClient, HttpRequest, HttpResponse};

/// Which lines come first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Newest first (Loki's default).
    Backward,
    /// Oldest first.
    Forward,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Backward => "backward",
            Direction::Forward => "forward",
        }
    }
}

/// The lines the probe read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LokiLines {
    /// The LogQL query.
    pub query: String,
    /// Window start, Unix nanoseconds (inclusive).
    pub start_ns: i64,
    /// Window end, Unix nanoseconds (exclusive).
    pub end_ns: i64,
    /// The order of `lines`.
    pub direction: Direction,
    /// Whether the limit was reached (older or newer lines may exist).
    pub limit_reached: bool,
    /// The lines.
    pub lines: Vec<LogLine>,
}

impl FactType for LokiLines {
    const KIND: &'static str = "loki.lines";
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Unix nanoseconds.
    pub ts_ns: i64,
    /// The stream's labels.
    pub labels: BTreeMap<String, String>,
    /// The text, bounded.
    pub line: String,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Stream {
    #[serde(default)]
    stream: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<Vec<serde_json::Value>>,
}

/// One stream of a decoded answer.
#[derive(Debug, Clone, PartialEq)]
pub struct LokiStream {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its entries `(Unix ns, line)`.
    pub entries: Vec<(i64, String)>,
}

/// Decode a `query_range` answer of a log query (`resultType: "streams"`).
pub fn parse_streams(
    site: &ProbeSite<'_>,
    resp: &HttpResponse,
) -> Result<Vec<LokiStream>, ProbeError> {
    check_status(site, resp)?;
    let env: Envelope = parse_json(site, &resp.body)?;
    if env.status != "success" {
        return Err(site.error(
            ErrorKind::Rejected,
            format!(
                "status {:?}: {}",
                env.status,
                env.error.as_deref().unwrap_or("(no message)")
            ),
        ));
    }
    let bad = |ptr: String, what: String| {
        site.error(
            ErrorKind::BadResponse,
            format!("malformed JSON at {ptr}: {what}"),
        )
    };
    let Some(data) = env.data else {
        return Err(bad(
            "/data".into(),
            "a successful answer has no data".into(),
        ));
    };
    if data.result_type != "streams" {
        return Err(bad(
            "/data/resultType".into(),
            format!("{:?}, not streams (a metric query?)", data.result_type),
        ));
    }
    let raw: Vec<Stream> = serde_path_to_error::deserialize(data.result).map_err(|e| {
        let ptr: String = e
            .path()
            .iter()
            .map(|s| format!("/{}", segment(s)))
            .collect();
        bad(format!("/data/result{ptr}"), e.into_inner().to_string())
    })?;
    let mut out = Vec::with_capacity(raw.len());
    for (i, s) in raw.into_iter().enumerate() {
        let mut entries = Vec::with_capacity(s.values.len());
        for (j, v) in s.values.into_iter().enumerate() {
            let ptr = format!("/data/result/{i}/values/{j}");
            let ts = v
                .first()
                .and_then(|t| t.as_str())
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or_else(|| {
                    bad(
                        format!("{ptr}/0"),
                        "not a timestamp string of nanoseconds".into(),
                    )
                })?;
            let line = v
                .get(1)
                .and_then(|l| l.as_str())
                .ok_or_else(|| bad(format!("{ptr}/1"), "not a log line string".into()))?;
            entries.push((ts, line.to_string()));
        }
        out.push(LokiStream {
            labels: s.stream,
            entries,
        });
    }
    Ok(out)
}

fn segment(s: &serde_path_to_error::Segment) -> String {
    use serde_path_to_error::Segment;
    match s {
        Segment::Seq { index } => index.to_string(),
        Segment::Map { key } | Segment::Enum { variant: key } => {
            key.replace('~', "~0").replace('/', "~1")
        }
        Segment::Unknown => "?".into(),
    }
}

/// Log lines over a window (see the [module docs](self)).
#[derive(Debug)]
pub struct LokiLogs<C> {
    client: C,
    target: Target,
    id: String,
    query: String,
    window: Duration,
    limit: usize,
    direction: Direction,
    line_limit: usize,
    tenant: Option<String>,
}

impl<C: HttpClient> LokiLogs<C> {
    /// The lines of the LogQL log query `query` over the last 15 minutes, at most 100, newest first.
    pub fn new(client: C, target: Target, query: impl Into<String>) -> Self {
        Self {
            client,
            target,
            id: "loki.logs".into(),
            query: query.into(),
            window: Duration::from_secs(15 * 60),
            limit: 100,
            direction: Direction::Backward,
            line_limit: 1_000,
            tenant: None,
        }
    }

    /// The window ending at the probe's "now".
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// At most `lines` lines (at least 1).
    pub fn limit(mut self, lines: usize) -> Self {
        self.limit = lines.max(1);
        self
    }

    /// Oldest or newest first.
    pub fn direction(mut self, d: Direction) -> Self {
        self.direction = d;
        self
    }

    /// Bound each line to `chars` characters (default 1,000).
    pub fn line_limit(mut self, chars: usize) -> Self {
        self.line_limit = chars;
        self
    }

    /// Send `X-Scope-OrgID: tenant` (multi-tenant Loki).
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Use another probe id (default `loki.logs`).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }
}

#[async_trait]
impl<C: HttpClient> Probe for LokiLogs<C> {
    fn id(&self) -> &str {
        &self.id
    }

    fn target(&self) -> &Target {
        &self.target
    }

    async fn observe(&self, ctx: &ProbeContext) -> Result<Observation, ProbeError> {
        let now = ctx.now();
        let end_ns = i64::try_from(now.as_millis())
            .unwrap_or(i64::MAX / 1_000_000)
            .saturating_mul(1_000_000);
        let start_ns =
            end_ns.saturating_sub(i64::try_from(self.window.as_nanos()).unwrap_or(i64::MAX));
        let base = "/loki/api/v1/query_range";
        let path = rest::with_query(
            base,
            &[
                ("query", self.query.clone()),
                ("start", start_ns.to_string()),
                ("end", end_ns.to_string()),
                ("limit", self.limit.to_string()),
                ("direction", self.direction.as_str().to_string()),
            ],
        );
        let endpoint = self.client.url(base);
        let site = ProbeSite {
            probe: &self.id,
            target: &self.target.name,
            endpoint: &endpoint,
        };
        let mut req = HttpRequest::get(path);
        if let Some(t) = &self.tenant {
            req = req.header("X-Scope-OrgID", t.as_str());
        }
        let resp = rest::send(&site, ctx, &self.client, req).await?;
        let streams = parse_streams(&site, &resp)?;
        let mut lines: Vec<LogLine> = Vec::new();
        for s in &streams {
            for (ts, line) in &s.entries {
                lines.push(LogLine {
                    ts_ns: *ts,
                    labels: s.labels.clone(),
                    line: rest::truncate(line, self.line_limit).0,
                });
            }
        }
        match self.direction {
            Direction::Backward => lines.sort_by_key(|l| std::cmp::Reverse(l.ts_ns)),
            Direction::Forward => lines.sort_by_key(|l| l.ts_ns),
        }
        lines.truncate(self.limit);
        let limit_reached = lines.len() >= self.limit;
        let mut obs = Observation::new(&self.id, &self.target.name, now);
        obs.push_sample("loki_lines", Labels::new(), lines.len() as f64);
        obs.push_sample("loki_streams", Labels::new(), streams.len() as f64);
        obs.push_sample(
            "loki_limit_reached",
            Labels::new(),
            if limit_reached { 1.0 } else { 0.0 },
        );
        Ok(obs.fact(&LokiLines {
            query: self.query.clone(),
            start_ns,
            end_ns,
            direction: self.direction,
            limit_reached,
            lines,
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn site() -> ProbeSite<'static> {
        ProbeSite {
            probe: "loki.logs",
            target: "loki",
            endpoint: "http://127.0.0.1:3100/loki/api/v1/query_range",
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

    const STREAMS: &str = r#"{"status":"success","data":{"resultType":"streams","result":[
        {"stream":{"container":"flink-jobmanager"},"values":[["1767436000000000000","org.apache.avro.AvroTypeException: Found int, expecting string"],["1767435990000000000","restarting job",{"trace_id":"abc"}]]}],
        "stats":{"summary":{"execTime":0.001}}}}"#;

    #[test]
    fn decodes_streams_with_and_without_metadata() {
        let s = parse_streams(&site(), &ok(STREAMS.as_bytes())).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].labels["container"], "flink-jobmanager");
        assert_eq!(s[0].entries[0].0, 1_767_436_000_000_000_000);
        assert_eq!(s[0].entries[1].1, "restarting job");
    }

    #[test]
    fn errors_name_the_json_pointer() {
        let body = STREAMS.replace("\"1767435990000000000\"", "1767435990000000000");
        let e = parse_streams(&site(), &ok(body.as_bytes())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadResponse);
        assert!(
            e.message.contains("/data/result/0/values/1/0"),
            "{}",
            e.message
        );
        let body = STREAMS.replace(
            "\"stream\":{\"container\":\"flink-jobmanager\"}",
            "\"stream\":{\"container\":7}",
        );
        let e = parse_streams(&site(), &ok(body.as_bytes())).unwrap_err();
        assert!(
            e.message.contains("/data/result/0/stream/container"),
            "{}",
            e.message
        );
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        let e = parse_streams(&site(), &ok(body.as_bytes())).unwrap_err();
        assert!(
            e.message.contains("/data/resultType") && e.message.contains("matrix"),
            "{}",
            e.message
        );
        let e = parse_streams(&site(), &ok(b"{\"status\":\n\"success\",\"data\":[]}")).unwrap_err();
        assert!(
            e.message.contains("/data") && e.message.contains("line 2"),
            "{}",
            e.message
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_streams(&site(), &ok(&b));
        }

        #[test]
        fn never_panics_on_mutated_answers(at in 0usize..1000, byte in any::<u8>(), cut in 0usize..1000) {
            let mut b = STREAMS.as_bytes().to_vec();
            let i = at % b.len();
            b[i] = byte;
            b.truncate(cut.max(1));
            let _ = parse_streams(&site(), &ok(&b));
        }
    }
}
