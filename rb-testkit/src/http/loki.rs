//! A fake Loki: scripted log lines per label set, read back through `query_range`.
//!
//! | route | answer |
//! |---|---|
//! | `GET /loki/api/v1/query_range` | `{"status":"success","data":{"resultType":"streams","result":[{"stream":{…},"values":[["<ns>","line"]]}],"stats":{…}}}` |
//! | `GET /ready` | 200 `ready`; 503 `Ingester not ready: …` while [`FakeLoki::set_ready`]`(false)` |
//!
//! Parameters as Loki's: `query`; `start` (default `end` − 1 h, or `end` − `since`) inclusive and
//! `end` (default now) exclusive, each as Unix nanoseconds, Unix seconds (≤ 10 digits), a float of
//! seconds or RFC 3339; `limit` (default 100, > 0) counts entries over all streams; `direction`
//! `backward` (default: newest first) or `forward`.
//!
//! # Supported LogQL
//! A stream selector `{l="v", l!="v", l=~"re", l!~"re"}` (at least one matcher that does not match
//! the empty string, as Loki requires) followed by any number of line filters `|= "text"`,
//! `!= "text"`, `|~ "re"`, `!~ "re"`. Parse errors answer **400 text/plain** in Loki's wording
//! (`parse error at line 1, col N: syntax error: …`). Parsers (`| json`, `| logfmt`, …) and metric
//! queries (`rate(…)`, `count_over_time(…)`) are refused with a 400 naming what is not supported.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use rb_testkit::http::loki::FakeLoki;
//! let loki = FakeLoki::start().await?;
//! loki.log(&[("container", "flink-jobmanager")], "org.apache.avro.AvroTypeException: Found int, expecting string");
//! // GET {base}/loki/api/v1/query_range?query={container="flink-jobmanager"} |= "Exception"
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::prometheus::{parse_rfc3339_ns, FakeClock};
use super::server::json_response;
use super::FakeHttp;

type Labels = BTreeMap<String, String>;

#[derive(Debug)]
struct LokiState {
    clock: FakeClock,
    ready: bool,
    streams: BTreeMap<Labels, Vec<(i64, String)>>,
}

type Shared = Arc<Mutex<LokiState>>;

fn lock(s: &Shared) -> MutexGuard<'_, LokiState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake Loki. Derefs to its [`FakeHttp`] (address, request record, faults).
#[derive(Debug)]
pub struct FakeLoki {
    http: FakeHttp,
    state: Shared,
}

impl Deref for FakeLoki {
    type Target = FakeHttp;
    fn deref(&self) -> &FakeHttp {
        &self.http
    }
}

fn labels_of(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl FakeLoki {
    /// Start a ready, empty Loki whose clock starts at the current wall-clock time.
    pub async fn start() -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(LokiState {
            clock: FakeClock::new(),
            ready: true,
            streams: BTreeMap::new(),
        }));
        let http = FakeHttp::start(router(state.clone())).await?;
        Ok(Self { http, state })
    }

    /// The underlying HTTP fake.
    pub fn http(&self) -> &FakeHttp {
        &self.http
    }

    /// The fake's "now" in Unix nanoseconds (wall clock at start plus tokio's elapsed time).
    pub fn now_ns(&self) -> i64 {
        lock(&self.state).clock.now_ns()
    }

    /// Append a line to the stream `labels` at Unix time `ts_ns` (nanoseconds).
    pub fn push(&self, labels: &[(&str, &str)], ts_ns: i64, line: &str) {
        let mut st = lock(&self.state);
        let entries = st.streams.entry(labels_of(labels)).or_default();
        let pos = entries.partition_point(|(t, _)| *t <= ts_ns);
        entries.insert(pos, (ts_ns, line.to_string()));
    }

    /// Append a line to the stream `labels` at the fake's current time.
    pub fn log(&self, labels: &[(&str, &str)], line: &str) {
        let now = self.now_ns();
        self.push(labels, now, line);
    }

    /// Append lines at offsets before the fake's current time (`ago`, line).
    pub fn log_ago(&self, labels: &[(&str, &str)], lines: &[(Duration, &str)]) {
        let now = self.now_ns();
        for (ago, line) in lines {
            let ago = i64::try_from(ago.as_nanos()).unwrap_or(i64::MAX / 2);
            self.push(labels, now - ago, line);
        }
    }

    /// Number of lines held over all streams.
    pub fn line_count(&self) -> usize {
        lock(&self.state).streams.values().map(Vec::len).sum()
    }

    /// Forget every stream.
    pub fn clear(&self) {
        lock(&self.state).streams.clear();
    }

    /// While `false`, `/ready` answers 503.
    pub fn set_ready(&self, ready: bool) {
        lock(&self.state).ready = ready;
    }
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/loki/api/v1/query_range", get(query_range))
        .route("/ready", get(ready))
        .with_state(state)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{body}\n"),
    )
        .into_response()
}

async fn ready(State(s): State<Shared>) -> Response {
    if lock(&s).ready {
        text(StatusCode::OK, "ready".to_string())
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "Ingester not ready: waiting for 15s after being ready".to_string(),
        )
    }
}

/// Loki's timestamp parameter: float seconds, integer seconds (≤ 10 digits), integer nanoseconds, RFC 3339.
fn parse_ts(v: &str) -> Option<i64> {
    if v.contains('.') {
        if let Ok(f) = v.parse::<f64>() {
            return f.is_finite().then_some((f * 1e9) as i64);
        }
    }
    if let Ok(n) = v.parse::<i64>() {
        return Some(if v.trim_start_matches('-').len() <= 10 {
            n.saturating_mul(1_000_000_000)
        } else {
            n
        });
    }
    parse_rfc3339_ns(v).and_then(|n| i64::try_from(n).ok())
}

fn parse_dur_ns(v: &str) -> Option<i64> {
    super::prometheus::parse_prom_duration(v)
        .map(|ms| ms.saturating_mul(1_000_000))
        .or_else(|| {
            v.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(|f| (f * 1e9) as i64)
        })
}

async fn query_range(State(s): State<Shared>, Query(p): Query<Vec<(String, String)>>) -> Response {
    let get = |name: &str| {
        p.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let bad = |m: String| text(StatusCode::BAD_REQUEST, m);
    let now = lock(&s).clock.now_ns();
    let end = match get("end") {
        None => now,
        Some(v) => match parse_ts(v) {
            Some(t) => t,
            None => return bad(format!("cannot parse \"{v}\" to a valid timestamp")),
        },
    };
    let start = match (get("start"), get("since")) {
        (Some(v), _) => match parse_ts(v) {
            Some(t) => t,
            None => return bad(format!("cannot parse \"{v}\" to a valid timestamp")),
        },
        (None, Some(v)) => match parse_dur_ns(v) {
            Some(d) => end - d,
            None => return bad(format!("cannot parse \"{v}\" to a valid duration")),
        },
        (None, None) => end - 3_600_000_000_000,
    };
    if end <= start {
        return bad("end timestamp must not be before or equal to start time".to_string());
    }
    let limit = match get("limit") {
        None => 100usize,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
            Ok(_) => return bad("limit must be a positive value".to_string()),
            Err(_) => return bad(format!("strconv.ParseInt: parsing \"{v}\": invalid syntax")),
        },
    };
    let forward = match get("direction").map(str::to_ascii_lowercase).as_deref() {
        None | Some("backward") => false,
        Some("forward") => true,
        Some(_) => {
            return bad(format!(
                "invalid direction '{}'",
                get("direction").unwrap_or("")
            ))
        }
    };
    let q = match parse_logql(get("query").unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return bad(e),
    };
    let st = lock(&s);
    // All matching entries, then the newest (backward) or oldest (forward) `limit` of them.
    let mut hits: Vec<(i64, &Labels, &str)> = Vec::new();
    let mut scanned_lines = 0u64;
    let mut scanned_bytes = 0u64;
    for (labels, entries) in &st.streams {
        if !q.matchers.iter().all(|m| m.matches(labels)) {
            continue;
        }
        for (ts, line) in entries {
            if *ts < start || *ts >= end {
                continue;
            }
            scanned_lines += 1;
            scanned_bytes += line.len() as u64;
            if q.filters.iter().all(|f| f.keeps(line)) {
                hits.push((*ts, labels, line.as_str()));
            }
        }
    }
    hits.sort_by_key(|(ts, _, _)| *ts);
    if !forward {
        hits.reverse();
    }
    hits.truncate(limit);
    let returned = hits.len();
    let mut by_stream: BTreeMap<&Labels, Vec<Value>> = BTreeMap::new();
    for (ts, labels, line) in hits {
        by_stream
            .entry(labels)
            .or_default()
            .push(json!([ts.to_string(), line]));
    }
    let result: Vec<Value> = by_stream
        .into_iter()
        .map(|(l, values)| json!({"stream": l, "values": values}))
        .collect();
    json_response(
        StatusCode::OK,
        json!({
            "status": "success",
            "data": {
                "resultType": "streams",
                "result": result,
                "stats": stats(scanned_lines, scanned_bytes, returned),
            }
        }),
    )
}

fn stats(lines: u64, bytes: u64, returned: usize) -> Value {
    let exec = 0.001_f64;
    json!({
        "ingester": {
            "compressedBytes": 0, "decompressedBytes": 0, "decompressedLines": 0,
            "headChunkBytes": bytes, "headChunkLines": lines, "totalBatches": 1,
            "totalChunksMatched": 1, "totalDuplicates": 0, "totalLinesSent": returned, "totalReached": 1
        },
        "store": {
            "compressedBytes": 0, "decompressedBytes": 0, "decompressedLines": 0,
            "chunksDownloadTime": 0, "totalChunksRef": 0, "totalChunksDownloaded": 0, "totalDuplicates": 0
        },
        "summary": {
            "bytesProcessedPerSecond": (bytes as f64 / exec) as u64,
            "execTime": exec,
            "linesProcessedPerSecond": (lines as f64 / exec) as u64,
            "queueTime": 0,
            "totalBytesProcessed": bytes,
            "totalLinesProcessed": lines
        }
    })
}

// ---------------------------------------------------------------------------------------------
// LogQL subset
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
enum MatchOp {
    Eq,
    Ne,
    Re(regex::Regex),
    NotRe(regex::Regex),
}

#[derive(Debug)]
struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
}

impl Matcher {
    fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match &self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Ne => v != self.value,
            MatchOp::Re(r) => r.is_match(v),
            MatchOp::NotRe(r) => !r.is_match(v),
        }
    }
}

#[derive(Debug)]
enum LineFilter {
    Contains(String),
    NotContains(String),
    Re(regex::Regex),
    NotRe(regex::Regex),
}

impl LineFilter {
    fn keeps(&self, line: &str) -> bool {
        match self {
            LineFilter::Contains(s) => line.contains(s.as_str()),
            LineFilter::NotContains(s) => !line.contains(s.as_str()),
            LineFilter::Re(r) => r.is_match(line),
            LineFilter::NotRe(r) => !r.is_match(line),
        }
    }
}

#[derive(Debug)]
struct LogQuery {
    matchers: Vec<Matcher>,
    filters: Vec<LineFilter>,
}

struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl Cursor<'_> {
    fn ws(&mut self) {
        while self.s[self.i..].starts_with(|c: char| c.is_whitespace()) {
            self.i += self.s[self.i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    fn err(&self, what: &str) -> String {
        format!(
            "parse error at line 1, col {}: syntax error: {what}",
            self.i + 1
        )
    }
    fn unexpected(&self, expecting: &str) -> String {
        let rest = &self.s[self.i..];
        let tok = if rest.is_empty() {
            "$end".to_string()
        } else if rest.starts_with(|c: char| c.is_alphabetic() || c == '_') {
            "IDENTIFIER".to_string()
        } else if rest.starts_with('"') || rest.starts_with('`') {
            "STRING".to_string()
        } else {
            rest.chars().next().map(String::from).unwrap_or_default()
        };
        self.err(&format!("unexpected {tok}, expecting {expecting}"))
    }
    fn eat(&mut self, t: &str) -> bool {
        if self.s[self.i..].starts_with(t) {
            self.i += t.len();
            true
        } else {
            false
        }
    }
    fn ident(&mut self) -> Option<String> {
        let rest = &self.s[self.i..];
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if len == 0 || rest.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        self.i += len;
        Some(rest[..len].to_string())
    }
    fn string(&mut self) -> Result<Option<String>, String> {
        let rest = &self.s[self.i..];
        if let Some(body) = rest.strip_prefix('`') {
            return match body.find('`') {
                Some(end) => {
                    self.i += end + 2;
                    Ok(Some(body[..end].to_string()))
                }
                None => Err(self.err("literal not terminated")),
            };
        }
        if !rest.starts_with('"') {
            return Ok(None);
        }
        let mut out = String::new();
        let mut chars = rest.char_indices().skip(1);
        while let Some((k, c)) = chars.next() {
            match c {
                '"' => {
                    self.i += k + 1;
                    return Ok(Some(out));
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, '"')) => out.push('"'),
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, other)) => {
                        return Err(self.err(&format!(
                            "invalid syntax: unknown escape sequence \\{other}"
                        )))
                    }
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(self.err("literal not terminated"))
    }
}

fn compile(re: &str, c: &Cursor<'_>) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?s:{re})$"))
        .map_err(|e| c.err(&format!("invalid regex {re:?}: {e}")))
}

fn parse_logql(src: &str) -> Result<LogQuery, String> {
    let mut c = Cursor { s: src, i: 0 };
    c.ws();
    if !c.eat("{") {
        let save = c.i;
        if let Some(word) = c.ident() {
            c.ws();
            if c.s[c.i..].starts_with('(') || c.s[c.i..].starts_with(" by") {
                return Err(format!(
                    "fake loki: metric queries ({word}) are not supported, only log queries"
                ));
            }
        }
        c.i = save;
        return Err(c.unexpected("{"));
    }
    let mut matchers = Vec::new();
    loop {
        c.ws();
        if c.eat("}") {
            break;
        }
        let Some(name) = c.ident() else {
            return Err(c.unexpected("IDENTIFIER or }"));
        };
        c.ws();
        let op = if c.eat("=~") {
            "=~"
        } else if c.eat("!~") {
            "!~"
        } else if c.eat("!=") {
            "!="
        } else if c.eat("=") {
            "="
        } else {
            return Err(c.unexpected("= or =~ or !~ or !="));
        };
        c.ws();
        let Some(value) = c.string()? else {
            return Err(c.unexpected("STRING"));
        };
        let op = match op {
            "=" => MatchOp::Eq,
            "!=" => MatchOp::Ne,
            "=~" => MatchOp::Re(compile(&value, &c)?),
            _ => MatchOp::NotRe(compile(&value, &c)?),
        };
        matchers.push(Matcher { name, op, value });
        c.ws();
        if c.eat(",") {
            continue;
        }
        if c.eat("}") {
            break;
        }
        return Err(c.unexpected(", or }"));
    }
    let empty = Labels::new();
    if !matchers.iter().any(|m| !m.matches(&empty)) {
        return Err("parse error : queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will".to_string());
    }
    let mut filters = Vec::new();
    loop {
        c.ws();
        if c.i >= c.s.len() {
            break;
        }
        let op = if c.eat("|=") {
            "|="
        } else if c.eat("|~") {
            "|~"
        } else if c.eat("!=") {
            "!="
        } else if c.eat("!~") {
            "!~"
        } else if c.eat("|") {
            c.ws();
            let stage = c.ident().unwrap_or_default();
            return Err(format!("fake loki: pipeline stage \"| {stage}\" is not supported, only line filters (|= != |~ !~)"));
        } else {
            return Err(c.unexpected("|= or != or |~ or !~"));
        };
        c.ws();
        let Some(arg) = c.string()? else {
            return Err(c.unexpected("STRING"));
        };
        filters.push(match op {
            "|=" => LineFilter::Contains(arg),
            "!=" => LineFilter::NotContains(arg),
            "|~" => LineFilter::Re(
                regex::Regex::new(&arg)
                    .map_err(|e| c.err(&format!("invalid regex {arg:?}: {e}")))?,
            ),
            _ => LineFilter::NotRe(
                regex::Regex::new(&arg)
                    .map_err(|e| c.err(&format!("invalid regex {arg:?}: {e}")))?,
            ),
        });
    }
    Ok(LogQuery { matchers, filters })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_selectors_and_filters() {
        let q = parse_logql(
            r#"{container="flink-jobmanager", level!="debug"} |= "Exception" != "retry""#,
        )
        .unwrap();
        assert_eq!(q.matchers.len(), 2);
        assert_eq!(q.filters.len(), 2);
        assert!(q.filters[0].keeps("AvroTypeException"));
        assert!(!q.filters[1].keeps("will retry"));
        let q = parse_logql(r#"{app=~"flink-.*"} |~ "(?i)error""#).unwrap();
        assert!(q.matchers[0].matches(&labels_of(&[("app", "flink-tm")])));
        assert!(q.filters[0].keeps("ERROR x"));
    }

    #[test]
    fn rejects_bad_queries() {
        assert!(parse_logql(r#"{container="a""#)
            .unwrap_err()
            .starts_with("parse error at line 1, col 15: syntax error: unexpected $end"));
        assert!(parse_logql(r#"container="a""#)
            .unwrap_err()
            .contains("syntax error"));
        assert!(parse_logql(r#"{app=~".*"}"#)
            .unwrap_err()
            .contains("empty-compatible"));
        assert!(parse_logql(r#"{a="b"} | json"#)
            .unwrap_err()
            .contains("not supported"));
        assert!(parse_logql(r#"rate({a="b"}[5m])"#)
            .unwrap_err()
            .contains("metric queries"));
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_ts("1700000000"), Some(1_700_000_000_000_000_000));
        assert_eq!(
            parse_ts("1700000000000000001"),
            Some(1_700_000_000_000_000_001)
        );
        assert_eq!(parse_ts("1700000000.5"), Some(1_700_000_000_500_000_000));
        assert_eq!(
            parse_ts("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(parse_ts("yesterday"), None);
    }
}
