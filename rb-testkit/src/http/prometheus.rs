//! A fake Prometheus server: scripted series answered through the real query API.
//!
//! Routes (as Prometheus 3.x `web/api/v1/api.go` and `web/web.go`):
//!
//! | route | answer |
//! |---|---|
//! | `GET\|POST /api/v1/query` (`query`, `time`, `limit`; POST as a form) | `{"status":"success","data":{"resultType":"vector"\|"matrix"\|"scalar","result":…}}` |
//! | `GET\|POST /api/v1/query_range` (`query`, `start`, `end`, `step`) | `resultType: "matrix"`, series sorted by labels |
//! | `GET /-/healthy` | 200 `Prometheus Server is Healthy.` |
//! | `GET /-/ready` | 200 `Prometheus Server is Ready.` |
//!
//! Errors use Prometheus' envelope `{"status":"error","errorType":…,"error":…}` with its status
//! mapping (`bad_data` 400, `execution` 422, `timeout` 503, `canceled` 499, `internal` 500,
//! `not_found` 404, anything else 500). Before the server is ready ([`FakePrometheus::set_ready`]),
//! `/api/v1/*` and `/-/ready` answer **503 text/plain `Service Unavailable`** with
//! `X-Prometheus-Stopping: false`, as the real server does.
//!
//! # Supported PromQL
//! The fake evaluates a subset of PromQL with Prometheus' semantics; anything else is refused with
//! a `bad_data` error naming what is not supported (never a wrong answer):
//! - number literals (`42`, `1e3`, `Inf`, `NaN`), string literals only as function arguments;
//! - selectors `metric{l="v", l!="v", l=~"re", l!~"re"}` (regexes fully anchored; `{__name__=~"…"}`
//!   without a metric name works), with the 5-minute lookback; range selectors `metric[5m]`;
//! - aggregations `sum`, `min`, `max`, `avg`, `count`, `group`, `topk(k, …)`, `bottomk(k, …)` with
//!   `by (…)` / `without (…)` before or after the argument;
//! - binary operators `+ - * / % ^` and `== != > < >= <=` (with `bool`) between scalars and vectors,
//!   vector/vector one-to-one matching with optional `on (…)` / `ignoring (…)`; not `and`, `or`,
//!   `unless`, `group_left`, `group_right`, nor subqueries or `offset`/`@`;
//! - functions `scalar`, `vector`, `time`, `abs`, `ceil`, `floor`, `round` (one argument), `sqrt`,
//!   `exp`, `ln`, `absent`, `rate`, `increase`, `delta` (Prometheus' extrapolation), `irate`,
//!   `max_over_time`, `min_over_time`, `avg_over_time`, `sum_over_time`, `count_over_time`,
//!   `last_over_time`.
//!
//! # Time
//! The fake's clock is the wall clock at start plus tokio's elapsed time, so a test on a paused
//! tokio clock moves Prometheus' "now" with `tokio::time::advance`. Samples are either at fixed
//! timestamps ([`FakePrometheus::push`]), at offsets from the fake's start
//! ([`FakePrometheus::script`]), at "now" ([`FakePrometheus::set`]), or read live from a closure
//! each time a query arrives ([`FakePrometheus::gauge_fn`]).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use rb_testkit::http::prometheus::FakePrometheus;
//! let prom = FakePrometheus::start().await?;
//! prom.set("kafka_connect_connector_failed_task_count", &[("connector", "sink-a")], 1.0);
//! // GET {base}/api/v1/query?query=sum(kafka_connect_connector_failed_task_count) > 0
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::server::json_response;
use super::FakeHttp;

// ---------------------------------------------------------------------------------------------
// Helpers shared by the fakes of this family.
// ---------------------------------------------------------------------------------------------

/// Wall clock at creation plus tokio's elapsed time (so a paused tokio clock drives it).
#[derive(Debug, Clone)]
pub(crate) struct FakeClock {
    base_ms: i64,
    base_ns: i64,
    start: tokio::time::Instant,
}

impl FakeClock {
    pub(crate) fn new() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let base_ns = i64::try_from(since.as_nanos()).unwrap_or(i64::MAX);
        Self {
            base_ms: base_ns / 1_000_000,
            base_ns,
            start: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn at_ms(base_ms: i64) -> Self {
        Self {
            base_ms,
            base_ns: base_ms.saturating_mul(1_000_000),
            start: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn base_ms(&self) -> i64 {
        self.base_ms
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.base_ms + i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX / 2)
    }

    pub(crate) fn now_ns(&self) -> i64 {
        self.base_ns + i64::try_from(self.start.elapsed().as_nanos()).unwrap_or(i64::MAX / 2)
    }
}

/// `2024-04-18T08:50:12.000Z` (milliseconds, UTC).
pub(crate) fn fmt_rfc3339_ms(ms: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(FORMAT)
        .unwrap_or_default()
}

/// Decode an `application/x-www-form-urlencoded` string (also a URL query) into pairs.
pub(crate) fn parse_form(s: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(s.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Parse an RFC 3339 timestamp into Unix nanoseconds.
pub(crate) fn parse_rfc3339_ns(s: &str) -> Option<i128> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos())
}

/// Prometheus duration (`5m`, `1h30m`, `250ms`) in milliseconds.
pub(crate) fn parse_prom_duration(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return None;
        }
        let n: i64 = s[start..i].parse().ok()?;
        let ustart = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let mult = match &s[ustart..i] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
    }
    Some(total)
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// Prometheus' API error types, with the HTTP status each is served with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// `bad_data` (400).
    BadData,
    /// `execution` (422).
    Execution,
    /// `timeout` (503).
    Timeout,
    /// `canceled` (499).
    Canceled,
    /// `internal` (500).
    Internal,
    /// `not_found` (404).
    NotFound,
    /// `unavailable` (500: Prometheus has no explicit mapping for it).
    Unavailable,
}

impl ErrorType {
    /// The `errorType` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Canceled => "canceled",
            ErrorType::Internal => "internal",
            ErrorType::NotFound => "not_found",
            ErrorType::Unavailable => "unavailable",
        }
    }

    /// The HTTP status Prometheus serves it with.
    pub fn status(self) -> u16 {
        match self {
            ErrorType::BadData => 400,
            ErrorType::Execution => 422,
            ErrorType::Timeout => 503,
            ErrorType::Canceled => 499,
            ErrorType::Internal | ErrorType::Unavailable => 500,
            ErrorType::NotFound => 404,
        }
    }
}

type LiveFn = Arc<dyn Fn() -> f64 + Send + Sync>;
type Labels = BTreeMap<String, String>;

struct Series {
    labels: Labels,
    samples: Vec<(i64, f64)>,
    live: Option<LiveFn>,
}

impl fmt::Debug for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Series")
            .field("labels", &self.labels)
            .field("samples", &self.samples.len())
            .field("live", &self.live.is_some())
            .finish()
    }
}

#[derive(Debug)]
struct PromState {
    clock: FakeClock,
    ready: bool,
    lookback_ms: i64,
    forced_error: Option<(ErrorType, String)>,
    series: Vec<Series>,
}

type Shared = Arc<Mutex<PromState>>;

fn lock(s: &Shared) -> MutexGuard<'_, PromState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake Prometheus. Derefs to its [`FakeHttp`] (address, request record, faults).
#[derive(Debug)]
pub struct FakePrometheus {
    http: FakeHttp,
    state: Shared,
}

impl Deref for FakePrometheus {
    type Target = FakeHttp;
    fn deref(&self) -> &FakeHttp {
        &self.http
    }
}

fn labels_of(name: &str, labels: &[(&str, &str)]) -> Labels {
    let mut l: Labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.insert("__name__".to_string(), name.to_string());
    l
}

impl FakePrometheus {
    /// Start a ready server whose clock starts at the current wall-clock time.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with_clock(FakeClock::new()).await
    }

    /// Start a ready server whose clock starts at `unix_ms` (for reproducible timestamps).
    pub async fn start_at(unix_ms: i64) -> std::io::Result<Self> {
        Self::start_with_clock(FakeClock::at_ms(unix_ms)).await
    }

    async fn start_with_clock(clock: FakeClock) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(PromState {
            clock,
            ready: true,
            lookback_ms: 300_000,
            forced_error: None,
            series: Vec::new(),
        }));
        let http = FakeHttp::start(router(state.clone())).await?;
        Ok(Self { http, state })
    }

    /// The underlying HTTP fake.
    pub fn http(&self) -> &FakeHttp {
        &self.http
    }

    /// The fake's "now", Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        lock(&self.state).clock.now_ms()
    }

    fn with_series<R>(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        f: impl FnOnce(&mut Series) -> R,
    ) -> R {
        let key = labels_of(name, labels);
        let mut st = lock(&self.state);
        let idx = match st.series.iter().position(|s| s.labels == key) {
            Some(i) => i,
            None => {
                st.series.push(Series {
                    labels: key,
                    samples: Vec::new(),
                    live: None,
                });
                st.series.len() - 1
            }
        };
        // idx is valid: found or just pushed
        match st.series.get_mut(idx) {
            Some(s) => f(s),
            None => f(&mut Series {
                labels: BTreeMap::new(),
                samples: Vec::new(),
                live: None,
            }),
        }
    }

    /// Record `value` for the series `name{labels}` at the fake's current time.
    pub fn set(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        let now = self.now_ms();
        self.push(name, labels, now, value);
    }

    /// Record `value` for `name{labels}` at a fixed Unix time in milliseconds.
    pub fn push(&self, name: &str, labels: &[(&str, &str)], unix_ms: i64, value: f64) {
        self.with_series(name, labels, |s| {
            insert_sample(&mut s.samples, unix_ms, value)
        });
    }

    /// Record samples at offsets from the fake's start (its clock moves with tokio time).
    pub fn script(&self, name: &str, labels: &[(&str, &str)], points: &[(Duration, f64)]) {
        let base = lock(&self.state).clock.base_ms();
        self.with_series(name, labels, |s| {
            for (off, v) in points {
                let off = i64::try_from(off.as_millis()).unwrap_or(i64::MAX / 2);
                insert_sample(&mut s.samples, base + off, *v);
            }
        });
    }

    /// A live series: every query first records `f()` at the current time, so the metric follows
    /// another fake's state (e.g. [`FakeTrino::queued_gauge`](super::trino::FakeTrino::queued_gauge)).
    pub fn gauge_fn(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        f: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        let f: LiveFn = Arc::new(f);
        self.with_series(name, labels, |s| s.live = Some(f));
    }

    /// Remove the series `name{labels}` (it goes stale: queries stop returning it).
    pub fn remove(&self, name: &str, labels: &[(&str, &str)]) {
        let key = labels_of(name, labels);
        lock(&self.state).series.retain(|s| s.labels != key);
    }

    /// Remove every series.
    pub fn clear(&self) {
        lock(&self.state).series.clear();
    }

    /// While `false`, `/api/v1/*` and `/-/ready` answer 503 `Service Unavailable` (text).
    pub fn set_ready(&self, ready: bool) {
        lock(&self.state).ready = ready;
    }

    /// Answer every query with this API error (`None` to stop).
    pub fn set_query_error(&self, error: Option<(ErrorType, &str)>) {
        lock(&self.state).forced_error = error.map(|(t, m)| (t, m.to_string()));
    }

    /// Lookback delta for instant selectors (default 5 minutes).
    pub fn set_lookback(&self, lookback: Duration) {
        lock(&self.state).lookback_ms = i64::try_from(lookback.as_millis()).unwrap_or(300_000);
    }
}

fn insert_sample(samples: &mut Vec<(i64, f64)>, t: i64, v: f64) {
    match samples.binary_search_by_key(&t, |(ts, _)| *ts) {
        Ok(i) => {
            if let Some(s) = samples.get_mut(i) {
                s.1 = v;
            }
        }
        Err(i) => samples.insert(i, (t, v)),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

fn router(state: Shared) -> Router {
    Router::new()
        .route("/api/v1/query", get(query_instant).post(query_instant))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .with_state(state)
}

fn not_ready() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (
                header::HeaderName::from_static("x-prometheus-stopping"),
                "false",
            ),
        ],
        "Service Unavailable",
    )
        .into_response()
}

fn api_error(t: ErrorType, msg: &str) -> Response {
    let status = StatusCode::from_u16(t.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(
        status,
        json!({"status": "error", "errorType": t.as_str(), "error": msg}),
    )
}

fn success(data: Value) -> Response {
    json_response(StatusCode::OK, json!({"status": "success", "data": data}))
}

async fn healthy() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Prometheus Server is Healthy.\n",
    )
        .into_response()
}

async fn ready(State(s): State<Shared>) -> Response {
    if !lock(&s).ready {
        return not_ready();
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Prometheus Server is Ready.\n",
    )
        .into_response()
}

fn params(method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Vec<(String, String)> {
    let mut out = uri.query().map(parse_form).unwrap_or_default();
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if *method == Method::POST && is_form {
        // Form values come first in Go's r.FormValue.
        let mut form = parse_form(&String::from_utf8_lossy(body));
        form.append(&mut out);
        out = form;
    }
    out
}

fn param<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Prometheus `parseTime`: float Unix seconds or RFC 3339, to milliseconds.
fn parse_time_ms(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return None;
        }
        return Some((f * 1000.0).round() as i64);
    }
    parse_rfc3339_ns(s).map(|ns| (ns / 1_000_000) as i64)
}

fn parse_step_ms(s: &str) -> Option<i64> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return None;
        }
        return Some((f * 1000.0).round() as i64);
    }
    parse_prom_duration(s)
}

/// Records live gauges at `now` and returns a snapshot of the store for evaluation. `now` is read once
/// per request: an instant query without `time` is evaluated at the very millisecond its live values
/// are recorded at (read twice, the clock could tick in between and the query see the previous value).
fn snapshot(st: &mut PromState, now: i64) -> Store {
    for s in st.series.iter_mut() {
        if let Some(f) = &s.live {
            let v = f();
            insert_sample(&mut s.samples, now, v);
        }
    }
    Store {
        series: st
            .series
            .iter()
            .map(|s| (s.labels.clone(), s.samples.clone()))
            .collect(),
        lookback: st.lookback_ms,
    }
}

async fn query_instant(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(&method, &uri, &headers, &body);
    let mut st = lock(&s);
    if !st.ready {
        return not_ready();
    }
    if let Some((t, m)) = &st.forced_error {
        return api_error(*t, m);
    }
    let now = st.clock.now_ms();
    let t = match param(&p, "time") {
        None | Some("") => now,
        Some(v) => match parse_time_ms(v) {
            Some(t) => t,
            None => {
                return api_error(
                    ErrorType::BadData,
                    &format!(
                        "invalid parameter \"time\": cannot parse \"{v}\" to a valid timestamp"
                    ),
                )
            }
        },
    };
    let expr = match parse(param(&p, "query").unwrap_or("")) {
        Ok(e) => e,
        Err(e) => {
            return api_error(
                ErrorType::BadData,
                &format!("invalid parameter \"query\": {e}"),
            )
        }
    };
    let store = snapshot(&mut st, now);
    drop(st);
    let limit = param(&p, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    match eval(&expr, &store, t) {
        Ok(v) => success(value_json(v, t, limit)),
        Err(e) => api_error(e.kind, &e.msg),
    }
}

async fn query_range(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(&method, &uri, &headers, &body);
    let mut st = lock(&s);
    if !st.ready {
        return not_ready();
    }
    if let Some((t, m)) = &st.forced_error {
        return api_error(*t, m);
    }
    let mut times = [0i64; 2];
    for (i, name) in ["start", "end"].iter().enumerate() {
        let v = param(&p, name).unwrap_or("");
        match parse_time_ms(v) {
            Some(t) => times[i] = t,
            None => {
                return api_error(
                    ErrorType::BadData,
                    &format!(
                        "invalid parameter \"{name}\": cannot parse \"{v}\" to a valid timestamp"
                    ),
                )
            }
        }
    }
    let [start, end] = times;
    if end < start {
        return api_error(
            ErrorType::BadData,
            "invalid parameter \"end\": end timestamp must not be before start time",
        );
    }
    let step_s = param(&p, "step").unwrap_or("");
    let step = match parse_step_ms(step_s) {
        Some(s) => s,
        None => {
            return api_error(
                ErrorType::BadData,
                &format!(
                    "invalid parameter \"step\": cannot parse \"{step_s}\" to a valid duration"
                ),
            )
        }
    };
    if step <= 0 {
        return api_error(
            ErrorType::BadData,
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        );
    }
    if (end - start) / step > 11_000 {
        return api_error(
            ErrorType::BadData,
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        );
    }
    let expr = match parse(param(&p, "query").unwrap_or("")) {
        Ok(e) => e,
        Err(e) => {
            return api_error(
                ErrorType::BadData,
                &format!("invalid parameter \"query\": {e}"),
            )
        }
    };
    if expr.ty() == Ty::Matrix || expr.ty() == Ty::Str {
        return api_error(
            ErrorType::BadData,
            &format!(
                "invalid parameter \"query\": invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                expr.ty().name()
            ),
        );
    }
    let now = st.clock.now_ms();
    let store = snapshot(&mut st, now);
    drop(st);
    let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    let mut t = start;
    while t <= end {
        match eval(&expr, &store, t) {
            Ok(Val::Scalar(v)) => out.entry(Labels::new()).or_default().push((t, v)),
            Ok(Val::Vector(vs)) => {
                for s in vs {
                    out.entry(s.labels).or_default().push((t, s.v));
                }
            }
            Ok(_) => {}
            Err(e) => return api_error(e.kind, &e.msg),
        }
        t += step;
    }
    let result: Vec<Value> = out
        .into_iter()
        .map(|(l, pts)| json!({"metric": l, "values": pts.iter().map(|(t, v)| point(*t, *v)).collect::<Vec<_>>()}))
        .collect();
    success(json!({"resultType": "matrix", "result": result}))
}

/// Prometheus' JSON sample value: Go `FormatFloat(v, 'f', -1, 64)`, `+Inf`, `-Inf`, `NaN`.
pub(crate) fn fmt_sample(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}

/// Prometheus' JSON timestamp: seconds as a number, integral when the milliseconds are zero.
fn ts_json(ms: i64) -> Value {
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

fn point(t: i64, v: f64) -> Value {
    json!([ts_json(t), fmt_sample(v)])
}

fn value_json(v: Val, t: i64, limit: Option<usize>) -> Value {
    match v {
        Val::Scalar(x) => json!({"resultType": "scalar", "result": point(t, x)}),
        Val::Str(s) => json!({"resultType": "string", "result": [ts_json(t), s]}),
        Val::Vector(mut vs) => {
            vs.sort_by(|a, b| a.labels.cmp(&b.labels));
            if let Some(l) = limit {
                vs.truncate(l);
            }
            let r: Vec<Value> = vs
                .into_iter()
                .map(|s| json!({"metric": s.labels, "value": point(t, s.v)}))
                .collect();
            json!({"resultType": "vector", "result": r})
        }
        Val::Matrix(mut ms) => {
            ms.sort_by(|a, b| a.0.cmp(&b.0));
            if let Some(l) = limit {
                ms.truncate(l);
            }
            let r: Vec<Value> = ms
                .into_iter()
                .map(|(l, pts)| json!({"metric": l, "values": pts.iter().map(|(t, v)| point(*t, *v)).collect::<Vec<_>>()}))
                .collect();
            json!({"resultType": "matrix", "result": r})
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PromQL subset: lexer
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(f64),
    Str(String),
    Dur(i64),
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBrack,
    RBrack,
    Comma,
    Assign,
    Neq,
    Re,
    NotRe,
    EqlEq,
    Gtr,
    Lss,
    Gte,
    Lte,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Colon,
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("identifier \"{s}\""),
            Tok::Num(n) => format!("number \"{n}\""),
            Tok::Str(s) => format!("string \"{s}\""),
            Tok::Dur(_) => "duration".to_string(),
            Tok::LBrace => "\"{\"".to_string(),
            Tok::RBrace => "\"}\"".to_string(),
            Tok::LParen => "\"(\"".to_string(),
            Tok::RParen => "\")\"".to_string(),
            Tok::LBrack => "\"[\"".to_string(),
            Tok::RBrack => "\"]\"".to_string(),
            Tok::Comma => "\",\"".to_string(),
            Tok::Colon => "\":\"".to_string(),
            Tok::Eof => "end of input".to_string(),
            other => format!("<op:{}>", op_text(other)),
        }
    }
}

fn op_text(t: &Tok) -> &'static str {
    match t {
        Tok::Assign => "=",
        Tok::Neq => "!=",
        Tok::Re => "=~",
        Tok::NotRe => "!~",
        Tok::EqlEq => "==",
        Tok::Gtr => ">",
        Tok::Lss => "<",
        Tok::Gte => ">=",
        Tok::Lte => "<=",
        Tok::Add => "+",
        Tok::Sub => "-",
        Tok::Mul => "*",
        Tok::Div => "/",
        Tok::Mod => "%",
        Tok::Pow => "^",
        _ => "?",
    }
}

/// A parse error with Prometheus' `line:col: parse error: …` rendering.
#[derive(Debug, Clone, PartialEq)]
struct ParseError {
    pos: usize,
    msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1:{}: parse error: {}", self.pos + 1, self.msg)
    }
}

fn perr<T>(pos: usize, msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        pos,
        msg: msg.into(),
    })
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let two = if i + 1 < b.len() { &src[i..i + 2] } else { "" };
        let tok2 = match two {
            "!=" => Some(Tok::Neq),
            "=~" => Some(Tok::Re),
            "!~" => Some(Tok::NotRe),
            "==" => Some(Tok::EqlEq),
            ">=" => Some(Tok::Gte),
            "<=" => Some(Tok::Lte),
            _ => None,
        };
        if let Some(t) = tok2 {
            out.push((t, start));
            i += 2;
            continue;
        }
        let tok1 = match c {
            b'{' => Some(Tok::LBrace),
            b'}' => Some(Tok::RBrace),
            b'(' => Some(Tok::LParen),
            b')' => Some(Tok::RParen),
            b'[' => Some(Tok::LBrack),
            b']' => Some(Tok::RBrack),
            b',' => Some(Tok::Comma),
            b'=' => Some(Tok::Assign),
            b'>' => Some(Tok::Gtr),
            b'<' => Some(Tok::Lss),
            b'+' => Some(Tok::Add),
            b'-' => Some(Tok::Sub),
            b'*' => Some(Tok::Mul),
            b'/' => Some(Tok::Div),
            b'%' => Some(Tok::Mod),
            b'^' => Some(Tok::Pow),
            b':' => Some(Tok::Colon),
            _ => None,
        };
        if let Some(t) = tok1 {
            out.push((t, start));
            i += 1;
            continue;
        }
        if c == b'"' || c == b'\'' || c == b'`' {
            let quote = c;
            i += 1;
            let mut s = Vec::new();
            loop {
                if i >= b.len() {
                    return perr(start, "unterminated quoted string");
                }
                let ch = b[i];
                if ch == quote {
                    i += 1;
                    break;
                }
                if ch == b'\\' && quote != b'`' {
                    i += 1;
                    match b.get(i) {
                        Some(b'n') => s.push(b'\n'),
                        Some(b't') => s.push(b'\t'),
                        Some(b'\\') => s.push(b'\\'),
                        Some(b'"') => s.push(b'"'),
                        Some(b'\'') => s.push(b'\''),
                        Some(other) => {
                            // Go keeps unknown escapes invalid; regexes like \. need the backslash.
                            s.push(b'\\');
                            s.push(*other);
                        }
                        None => return perr(start, "unterminated quoted string"),
                    }
                    i += 1;
                    continue;
                }
                s.push(ch);
                i += 1;
            }
            out.push((Tok::Str(String::from_utf8_lossy(&s).into_owned()), start));
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            // A duration (5m, 1h30m) or a number (1, 1.5, 1e3).
            let mut j = i;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let unit_follows =
                j < b.len() && matches!(b[j], b's' | b'm' | b'h' | b'd' | b'w' | b'y');
            if unit_follows && j > i {
                let mut k = j;
                while k < b.len() && (b[k].is_ascii_alphanumeric()) {
                    k += 1;
                }
                match parse_prom_duration(&src[i..k]) {
                    Some(d) => {
                        out.push((Tok::Dur(d), start));
                        i = k;
                        continue;
                    }
                    None => return perr(start, format!("bad duration syntax: \"{}\"", &src[i..k])),
                }
            }
            let mut k = i;
            while k < b.len() && (b[k].is_ascii_digit() || b[k] == b'.') {
                k += 1;
            }
            if k < b.len() && (b[k] == b'e' || b[k] == b'E') {
                let mut m = k + 1;
                if m < b.len() && (b[m] == b'+' || b[m] == b'-') {
                    m += 1;
                }
                if m < b.len() && b[m].is_ascii_digit() {
                    while m < b.len() && b[m].is_ascii_digit() {
                        m += 1;
                    }
                    k = m;
                }
            }
            match src[i..k].parse::<f64>() {
                Ok(n) => out.push((Tok::Num(n), start)),
                Err(_) => {
                    return perr(
                        start,
                        format!("bad number or duration syntax: \"{}\"", &src[i..k]),
                    )
                }
            }
            i = k;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let mut k = i;
            while k < b.len() && (b[k].is_ascii_alphanumeric() || b[k] == b'_' || b[k] == b':') {
                k += 1;
            }
            out.push((Tok::Ident(src[i..k].to_string()), start));
            i = k;
            continue;
        }
        let ch = src[i..].chars().next().unwrap_or('?');
        return perr(start, format!("unexpected character: '{ch}'"));
    }
    out.push((Tok::Eof, src.len()));
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// PromQL subset: AST and parser
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Scalar,
    Vector,
    Matrix,
    Str,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Scalar => "scalar",
            Ty::Vector => "instant vector",
            Ty::Matrix => "range vector",
            Ty::Str => "string",
        }
    }
}

#[derive(Debug, Clone)]
enum MatchOp {
    Eq,
    Ne,
    Re(regex::Regex),
    NotRe(regex::Regex),
}

#[derive(Debug, Clone)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
}

impl BinOp {
    fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le
        )
    }
    fn apply(self, a: f64, b: f64) -> f64 {
        let t = |x: bool| if x { 1.0 } else { 0.0 };
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
            BinOp::Mod => a % b,
            BinOp::Pow => a.powf(b),
            BinOp::Eq => t(a == b),
            BinOp::Ne => t(a != b),
            BinOp::Gt => t(a > b),
            BinOp::Lt => t(a < b),
            BinOp::Ge => t(a >= b),
            BinOp::Le => t(a <= b),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AggOp {
    Sum,
    Min,
    Max,
    Avg,
    Count,
    Group,
    TopK,
    BottomK,
}

#[derive(Debug, Clone)]
enum Grouping {
    None,
    By(Vec<String>),
    Without(Vec<String>),
}

#[derive(Debug, Clone)]
enum VecMatch {
    Default,
    On(Vec<String>),
    Ignoring(Vec<String>),
}

#[derive(Debug, Clone)]
enum Expr {
    Num(f64),
    Str(String),
    Selector {
        matchers: Vec<Matcher>,
        range: Option<i64>,
    },
    Neg(Box<Expr>),
    Agg {
        op: AggOp,
        grouping: Grouping,
        param: Option<Box<Expr>>,
        arg: Box<Expr>,
    },
    Bin {
        op: BinOp,
        return_bool: bool,
        matching: VecMatch,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Call {
        func: Func,
        args: Vec<Expr>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Scalar,
    Vector,
    Time,
    Abs,
    Ceil,
    Floor,
    Round,
    Sqrt,
    Exp,
    Ln,
    Absent,
    Rate,
    Increase,
    Delta,
    Irate,
    MaxOverTime,
    MinOverTime,
    AvgOverTime,
    SumOverTime,
    CountOverTime,
    LastOverTime,
}

impl Func {
    fn lookup(name: &str) -> Option<(Func, Vec<Ty>, Ty)> {
        use Ty::*;
        let f = match name {
            "scalar" => (Func::Scalar, vec![Vector], Scalar),
            "vector" => (Func::Vector, vec![Scalar], Vector),
            "time" => (Func::Time, vec![], Scalar),
            "abs" => (Func::Abs, vec![Vector], Vector),
            "ceil" => (Func::Ceil, vec![Vector], Vector),
            "floor" => (Func::Floor, vec![Vector], Vector),
            "round" => (Func::Round, vec![Vector], Vector),
            "sqrt" => (Func::Sqrt, vec![Vector], Vector),
            "exp" => (Func::Exp, vec![Vector], Vector),
            "ln" => (Func::Ln, vec![Vector], Vector),
            "absent" => (Func::Absent, vec![Vector], Vector),
            "rate" => (Func::Rate, vec![Matrix], Vector),
            "increase" => (Func::Increase, vec![Matrix], Vector),
            "delta" => (Func::Delta, vec![Matrix], Vector),
            "irate" => (Func::Irate, vec![Matrix], Vector),
            "max_over_time" => (Func::MaxOverTime, vec![Matrix], Vector),
            "min_over_time" => (Func::MinOverTime, vec![Matrix], Vector),
            "avg_over_time" => (Func::AvgOverTime, vec![Matrix], Vector),
            "sum_over_time" => (Func::SumOverTime, vec![Matrix], Vector),
            "count_over_time" => (Func::CountOverTime, vec![Matrix], Vector),
            "last_over_time" => (Func::LastOverTime, vec![Matrix], Vector),
            _ => return None,
        };
        Some(f)
    }
}

/// Functions real Prometheus has that this fake refuses (so the error says "not supported").
const KNOWN_UNSUPPORTED_FUNCS: &[&str] = &[
    "absent_over_time",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "day_of_month",
    "day_of_week",
    "days_in_month",
    "deriv",
    "histogram_quantile",
    "holt_winters",
    "hour",
    "idelta",
    "label_join",
    "label_replace",
    "minute",
    "month",
    "predict_linear",
    "quantile_over_time",
    "resets",
    "sort",
    "sort_desc",
    "stddev_over_time",
    "stdvar_over_time",
    "timestamp",
    "year",
    "sgn",
    "log2",
    "log10",
    "present_over_time",
    "double_exponential_smoothing",
    "info",
];

const UNSUPPORTED_AGGS: &[&str] = &[
    "stddev",
    "stdvar",
    "quantile",
    "count_values",
    "limitk",
    "limit_ratio",
];

impl Expr {
    fn ty(&self) -> Ty {
        match self {
            Expr::Num(_) => Ty::Scalar,
            Expr::Str(_) => Ty::Str,
            Expr::Selector { range: Some(_), .. } => Ty::Matrix,
            Expr::Selector { .. } => Ty::Vector,
            Expr::Neg(e) => e.ty(),
            Expr::Agg { .. } => Ty::Vector,
            Expr::Bin { lhs, rhs, .. } => {
                if lhs.ty() == Ty::Scalar && rhs.ty() == Ty::Scalar {
                    Ty::Scalar
                } else {
                    Ty::Vector
                }
            }
            Expr::Call { func, .. } => Func::lookup(func_name(*func))
                .map(|(_, _, r)| r)
                .unwrap_or(Ty::Vector),
        }
    }
}

fn func_name(f: Func) -> &'static str {
    match f {
        Func::Scalar => "scalar",
        Func::Vector => "vector",
        Func::Time => "time",
        Func::Abs => "abs",
        Func::Ceil => "ceil",
        Func::Floor => "floor",
        Func::Round => "round",
        Func::Sqrt => "sqrt",
        Func::Exp => "exp",
        Func::Ln => "ln",
        Func::Absent => "absent",
        Func::Rate => "rate",
        Func::Increase => "increase",
        Func::Delta => "delta",
        Func::Irate => "irate",
        Func::MaxOverTime => "max_over_time",
        Func::MinOverTime => "min_over_time",
        Func::AvgOverTime => "avg_over_time",
        Func::SumOverTime => "sum_over_time",
        Func::CountOverTime => "count_over_time",
        Func::LastOverTime => "last_over_time",
    }
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    i: usize,
}

fn parse(src: &str) -> Result<Expr, ParseError> {
    let toks = lex(src)?;
    if matches!(toks.first(), Some((Tok::Eof, _)) | None) {
        return perr(0, "no expression found in input");
    }
    let mut p = Parser { toks, i: 0 };
    let e = p.expr()?;
    match p.peek() {
        Tok::Eof => Ok(e),
        t => perr(p.pos(), format!("unexpected {}", t.describe())),
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.i).map(|(t, _)| t).unwrap_or(&Tok::Eof)
    }
    fn pos(&self) -> usize {
        self.toks.get(self.i).map(|(_, p)| *p).unwrap_or(0)
    }
    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }
    fn expect(&mut self, want: &Tok, ctx: &str) -> Result<(), ParseError> {
        if self.peek() == want {
            self.i += 1;
            Ok(())
        } else {
            let t = self.peek().describe();
            perr(
                self.pos(),
                format!("unexpected {t} in {ctx}, expected {}", want.describe()),
            )
        }
    }
    fn ident_is(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s.eq_ignore_ascii_case(word))
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        if self.ident_is("and") || self.ident_is("or") || self.ident_is("unless") {
            return perr(self.pos(), "unexpected set operator");
        }
        let lhs = self.comparison()?;
        if self.ident_is("and") || self.ident_is("or") || self.ident_is("unless") {
            return perr(
                self.pos(),
                "set operators (and, or, unless) are not supported by this fake",
            );
        }
        Ok(lhs)
    }

    fn bin_modifiers(&mut self, op: BinOp) -> Result<(bool, VecMatch), ParseError> {
        let mut return_bool = false;
        if self.ident_is("bool") {
            if !op.is_comparison() {
                return perr(
                    self.pos(),
                    "bool modifier can only be used on comparison operators",
                );
            }
            self.i += 1;
            return_bool = true;
        }
        let matching = if self.ident_is("on") {
            self.i += 1;
            VecMatch::On(self.label_list()?)
        } else if self.ident_is("ignoring") {
            self.i += 1;
            VecMatch::Ignoring(self.label_list()?)
        } else {
            VecMatch::Default
        };
        if self.ident_is("group_left") || self.ident_is("group_right") {
            return perr(
                self.pos(),
                "group_left/group_right are not supported by this fake",
            );
        }
        Ok((return_bool, matching))
    }

    fn make_bin(
        &self,
        pos: usize,
        op: BinOp,
        rb: bool,
        m: VecMatch,
        lhs: Expr,
        rhs: Expr,
    ) -> Result<Expr, ParseError> {
        for side in [&lhs, &rhs] {
            match side.ty() {
                Ty::Scalar | Ty::Vector => {}
                t => return perr(pos, format!("binary expression must contain only scalar and instant vector types, got {}", t.name())),
            }
        }
        if op.is_comparison() && !rb && lhs.ty() == Ty::Scalar && rhs.ty() == Ty::Scalar {
            return perr(pos, "comparisons between scalars must use BOOL modifier");
        }
        if !matches!(m, VecMatch::Default) && (lhs.ty() != Ty::Vector || rhs.ty() != Ty::Vector) {
            return perr(pos, "vector matching only allowed between instant vectors");
        }
        Ok(Expr::Bin {
            op,
            return_bool: rb,
            matching: m,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        })
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        self.binary_level(
            |t| match t {
                Tok::EqlEq => Some(BinOp::Eq),
                Tok::Neq => Some(BinOp::Ne),
                Tok::Gtr => Some(BinOp::Gt),
                Tok::Lss => Some(BinOp::Lt),
                Tok::Gte => Some(BinOp::Ge),
                Tok::Lte => Some(BinOp::Le),
                _ => None,
            },
            Self::additive,
        )
    }

    fn additive(&mut self) -> Result<Expr, ParseError> {
        self.binary_level(
            |t| match t {
                Tok::Add => Some(BinOp::Add),
                Tok::Sub => Some(BinOp::Sub),
                _ => None,
            },
            Self::multiplicative,
        )
    }

    fn multiplicative(&mut self) -> Result<Expr, ParseError> {
        self.binary_level(
            |t| match t {
                Tok::Mul => Some(BinOp::Mul),
                Tok::Div => Some(BinOp::Div),
                Tok::Mod => Some(BinOp::Mod),
                _ => None,
            },
            Self::unary,
        )
    }

    /// One left-associative precedence level: operands from `next`, joined by the operators `op` maps.
    fn binary_level(
        &mut self,
        op: fn(&Tok) -> Option<BinOp>,
        next: fn(&mut Self) -> Result<Expr, ParseError>,
    ) -> Result<Expr, ParseError> {
        let mut lhs = next(self)?;
        while let Some(op) = op(self.peek()) {
            let pos = self.pos();
            self.i += 1;
            let (rb, m) = self.bin_modifiers(op)?;
            let rhs = next(self)?;
            lhs = self.make_bin(pos, op, rb, m, lhs, rhs)?;
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            Tok::Sub => {
                let pos = self.pos();
                self.i += 1;
                let e = self.unary()?;
                match (&e, e.ty()) {
                    (Expr::Num(n), _) => Ok(Expr::Num(-n)),
                    (_, Ty::Scalar | Ty::Vector) => Ok(Expr::Neg(Box::new(e))),
                    (_, t) => perr(pos, format!("unary expression only allowed on expressions of type scalar or instant vector, got \"{}\"", t.name())),
                }
            }
            Tok::Add => {
                self.i += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Result<Expr, ParseError> {
        let lhs = self.postfix()?;
        if *self.peek() == Tok::Pow {
            let pos = self.pos();
            self.i += 1;
            let (rb, m) = self.bin_modifiers(BinOp::Pow)?;
            let rhs = self.unary()?; // right-associative
            return self.make_bin(pos, BinOp::Pow, rb, m, lhs, rhs);
        }
        Ok(lhs)
    }

    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let e = self.primary()?;
        if *self.peek() == Tok::LBrack {
            let pos = self.pos();
            self.i += 1;
            let d = match self.next() {
                Tok::Dur(d) => d,
                Tok::Num(n) if n > 0.0 => (n * 1000.0) as i64,
                t => {
                    return perr(
                        pos,
                        format!(
                            "unexpected {} in range selector, expected duration",
                            t.describe()
                        ),
                    )
                }
            };
            if *self.peek() == Tok::Colon {
                return perr(self.pos(), "subqueries are not supported by this fake");
            }
            self.expect(&Tok::RBrack, "range selector")?;
            return match e {
                Expr::Selector {
                    matchers,
                    range: None,
                } => Ok(Expr::Selector {
                    matchers,
                    range: Some(d),
                }),
                _ => perr(pos, "ranges only allowed for vector selectors"),
            };
        }
        if self.ident_is("offset") {
            return perr(
                self.pos(),
                "offset modifiers are not supported by this fake",
            );
        }
        if *self.peek() == Tok::Ident("@".to_string()) {
            return perr(self.pos(), "@ modifiers are not supported by this fake");
        }
        Ok(e)
    }

    fn label_list(&mut self) -> Result<Vec<String>, ParseError> {
        self.expect(&Tok::LParen, "grouping opts")?;
        let mut out = Vec::new();
        loop {
            match self.next() {
                Tok::RParen => return Ok(out),
                Tok::Ident(s) => {
                    out.push(s);
                    match self.next() {
                        Tok::Comma => continue,
                        Tok::RParen => return Ok(out),
                        t => {
                            return perr(
                                self.pos().saturating_sub(1),
                                format!(
                                    "unexpected {} in grouping opts, expected \")\" or \",\"",
                                    t.describe()
                                ),
                            )
                        }
                    }
                }
                t => {
                    return perr(
                        self.pos().saturating_sub(1),
                        format!(
                            "unexpected {} in grouping opts, expected label",
                            t.describe()
                        ),
                    )
                }
            }
        }
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        if self.ident_is("by") {
            self.i += 1;
            return Ok(Some(Grouping::By(self.label_list()?)));
        }
        if self.ident_is("without") {
            self.i += 1;
            return Ok(Some(Grouping::Without(self.label_list()?)));
        }
        Ok(None)
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let pos = self.pos();
        match self.next() {
            Tok::Num(n) => Ok(Expr::Num(n)),
            Tok::Str(s) => Ok(Expr::Str(s)),
            Tok::LParen => {
                let e = self.expr()?;
                self.expect(&Tok::RParen, "paren expression")?;
                Ok(e)
            }
            Tok::LBrace => {
                self.i -= 1;
                let matchers = self.matchers(None)?;
                if !matchers.iter().any(|m| !m.matches(&Labels::new())) {
                    return perr(
                        pos,
                        "vector selector must contain at least one non-empty matcher",
                    );
                }
                Ok(Expr::Selector {
                    matchers,
                    range: None,
                })
            }
            Tok::Ident(name) => {
                let lower = name.to_ascii_lowercase();
                if lower == "inf" || lower == "nan" {
                    return Ok(Expr::Num(if lower == "inf" {
                        f64::INFINITY
                    } else {
                        f64::NAN
                    }));
                }
                let agg = match name.as_str() {
                    "sum" => Some(AggOp::Sum),
                    "min" => Some(AggOp::Min),
                    "max" => Some(AggOp::Max),
                    "avg" => Some(AggOp::Avg),
                    "count" => Some(AggOp::Count),
                    "group" => Some(AggOp::Group),
                    "topk" => Some(AggOp::TopK),
                    "bottomk" => Some(AggOp::BottomK),
                    _ => None,
                };
                let next_is_call = matches!(self.peek(), Tok::LParen)
                    || self.ident_is("by")
                    || self.ident_is("without");
                if let (Some(op), true) = (agg, next_is_call) {
                    return self.aggregation(pos, op);
                }
                if UNSUPPORTED_AGGS.contains(&name.as_str()) && next_is_call {
                    return perr(
                        pos,
                        format!("aggregation \"{name}\" is not supported by this fake"),
                    );
                }
                if *self.peek() == Tok::LParen {
                    return self.call(pos, &name);
                }
                let matchers = if *self.peek() == Tok::LBrace {
                    self.matchers(Some(&name))?
                } else {
                    vec![name_matcher(&name)]
                };
                Ok(Expr::Selector {
                    matchers,
                    range: None,
                })
            }
            Tok::Eof => perr(pos, "unexpected end of input"),
            t => perr(pos, format!("unexpected {}", t.describe())),
        }
    }

    fn aggregation(&mut self, pos: usize, op: AggOp) -> Result<Expr, ParseError> {
        let mut grouping = self.grouping()?;
        self.expect(&Tok::LParen, "aggregation")?;
        let mut param = None;
        if matches!(op, AggOp::TopK | AggOp::BottomK) {
            let p = self.expr()?;
            if p.ty() != Ty::Scalar {
                return perr(
                    pos,
                    format!(
                        "expected type scalar in aggregation parameter, got {}",
                        p.ty().name()
                    ),
                );
            }
            param = Some(Box::new(p));
            self.expect(&Tok::Comma, "aggregation")?;
        }
        let arg = self.expr()?;
        self.expect(&Tok::RParen, "aggregation")?;
        if arg.ty() != Ty::Vector {
            return perr(
                pos,
                format!(
                    "expected type instant vector in aggregation expression, got {}",
                    arg.ty().name()
                ),
            );
        }
        if let Some(g) = self.grouping()? {
            if grouping.is_some() {
                return perr(pos, "aggregation must only contain one grouping clause");
            }
            grouping = Some(g);
        }
        Ok(Expr::Agg {
            op,
            grouping: grouping.unwrap_or(Grouping::None),
            param,
            arg: Box::new(arg),
        })
    }

    fn call(&mut self, pos: usize, name: &str) -> Result<Expr, ParseError> {
        let Some((func, arg_types, _)) = Func::lookup(name) else {
            if KNOWN_UNSUPPORTED_FUNCS.contains(&name) {
                return perr(
                    pos,
                    format!("function \"{name}\" is not supported by this fake"),
                );
            }
            return perr(pos, format!("unknown function with name \"{name}\""));
        };
        self.expect(&Tok::LParen, "function call")?;
        let mut args = Vec::new();
        if *self.peek() != Tok::RParen {
            loop {
                args.push(self.expr()?);
                if *self.peek() == Tok::Comma {
                    self.i += 1;
                    continue;
                }
                break;
            }
        }
        self.expect(&Tok::RParen, "function call")?;
        if args.len() != arg_types.len() {
            return perr(
                pos,
                format!(
                    "expected {} argument(s) in call to \"{name}\", got {}",
                    arg_types.len(),
                    args.len()
                ),
            );
        }
        for (a, want) in args.iter().zip(arg_types.iter()) {
            if a.ty() != *want {
                return perr(
                    pos,
                    format!(
                        "expected type {} in call to function \"{name}\", got {}",
                        want.name(),
                        a.ty().name()
                    ),
                );
            }
        }
        Ok(Expr::Call { func, args })
    }

    fn matchers(&mut self, name: Option<&str>) -> Result<Vec<Matcher>, ParseError> {
        let mut out: Vec<Matcher> = name.map(name_matcher).into_iter().collect();
        self.expect(&Tok::LBrace, "label matching")?;
        loop {
            let pos = self.pos();
            let label = match self.next() {
                Tok::RBrace => return Ok(out),
                Tok::Ident(s) => s,
                Tok::Str(s) => s,
                t => {
                    return perr(
                        pos,
                        format!(
                            "unexpected {} in label matching, expected label",
                            t.describe()
                        ),
                    )
                }
            };
            let op_pos = self.pos();
            let op = self.next();
            let value = match self.next() {
                Tok::Str(s) => s,
                t => {
                    return perr(
                        self.pos().saturating_sub(1),
                        format!(
                            "unexpected {} in label matching, expected string",
                            t.describe()
                        ),
                    )
                }
            };
            let compile = |v: &str| {
                regex::Regex::new(&format!("^(?s:{v})$")).map_err(|e| ParseError {
                    pos: op_pos,
                    msg: format!("error parsing regexp: {e}"),
                })
            };
            let op = match op {
                Tok::Assign => MatchOp::Eq,
                Tok::Neq => MatchOp::Ne,
                Tok::Re => MatchOp::Re(compile(&value)?),
                Tok::NotRe => MatchOp::NotRe(compile(&value)?),
                t => return perr(op_pos, format!("unexpected {} in label matching, expected one of \"=\", \"!=\", \"=~\" or \"!~\"", t.describe())),
            };
            if name.is_some() && label == "__name__" {
                return perr(pos, "metric name must not be set twice");
            }
            out.push(Matcher {
                name: label,
                op,
                value,
            });
            match self.next() {
                Tok::Comma => continue,
                Tok::RBrace => return Ok(out),
                t => {
                    return perr(
                        self.pos().saturating_sub(1),
                        format!(
                            "unexpected {} in label matching, expected \",\" or \"}}\"",
                            t.describe()
                        ),
                    )
                }
            }
        }
    }
}

fn name_matcher(name: &str) -> Matcher {
    Matcher {
        name: "__name__".to_string(),
        op: MatchOp::Eq,
        value: name.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// PromQL subset: evaluation
// ---------------------------------------------------------------------------------------------

struct Store {
    series: Vec<(Labels, Vec<(i64, f64)>)>,
    lookback: i64,
}

#[derive(Debug, Clone)]
struct Sample {
    labels: Labels,
    v: f64,
}

#[derive(Debug)]
enum Val {
    Scalar(f64),
    Str(String),
    Vector(Vec<Sample>),
    Matrix(Vec<(Labels, Vec<(i64, f64)>)>),
}

struct EvalError {
    kind: ErrorType,
    msg: String,
}

fn exec_err<T>(msg: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError {
        kind: ErrorType::Execution,
        msg: msg.into(),
    })
}

fn drop_name(mut l: Labels) -> Labels {
    l.remove("__name__");
    l
}

fn fmt_labels(l: &Labels) -> String {
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn eval(e: &Expr, store: &Store, t: i64) -> Result<Val, EvalError> {
    match e {
        Expr::Num(n) => Ok(Val::Scalar(*n)),
        Expr::Str(s) => Ok(Val::Str(s.clone())),
        Expr::Selector {
            matchers,
            range: None,
        } => {
            let mut out = Vec::new();
            for (labels, samples) in &store.series {
                if !matchers.iter().all(|m| m.matches(labels)) {
                    continue;
                }
                let last = samples
                    .iter()
                    .rev()
                    .find(|(ts, _)| *ts <= t && *ts > t - store.lookback);
                if let Some((_, v)) = last {
                    out.push(Sample {
                        labels: labels.clone(),
                        v: *v,
                    });
                }
            }
            Ok(Val::Vector(out))
        }
        Expr::Selector {
            matchers,
            range: Some(r),
        } => {
            let mut out = Vec::new();
            for (labels, samples) in &store.series {
                if !matchers.iter().all(|m| m.matches(labels)) {
                    continue;
                }
                let pts: Vec<(i64, f64)> = samples
                    .iter()
                    .copied()
                    .filter(|(ts, _)| *ts <= t && *ts > t - r)
                    .collect();
                if !pts.is_empty() {
                    out.push((labels.clone(), pts));
                }
            }
            Ok(Val::Matrix(out))
        }
        Expr::Neg(inner) => match eval(inner, store, t)? {
            Val::Scalar(v) => Ok(Val::Scalar(-v)),
            Val::Vector(vs) => Ok(Val::Vector(
                vs.into_iter()
                    .map(|s| Sample {
                        labels: drop_name(s.labels),
                        v: -s.v,
                    })
                    .collect(),
            )),
            _ => exec_err("unary minus on a non-numeric value"),
        },
        Expr::Agg {
            op,
            grouping,
            param,
            arg,
        } => {
            let Val::Vector(vs) = eval(arg, store, t)? else {
                return exec_err("aggregation over a non-vector");
            };
            let k = match param {
                Some(p) => match eval(p, store, t)? {
                    Val::Scalar(k) => Some(k),
                    _ => return exec_err("aggregation parameter is not a scalar"),
                },
                None => None,
            };
            Ok(Val::Vector(aggregate(*op, grouping, k, vs)))
        }
        Expr::Bin {
            op,
            return_bool,
            matching,
            lhs,
            rhs,
        } => {
            let l = eval(lhs, store, t)?;
            let r = eval(rhs, store, t)?;
            binary(*op, *return_bool, matching, l, r)
        }
        Expr::Call { func, args } => call(*func, args, store, t),
    }
}

fn group_key(labels: &Labels, g: &Grouping) -> Labels {
    match g {
        Grouping::None => Labels::new(),
        Grouping::By(keep) => labels
            .iter()
            .filter(|(k, _)| keep.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Grouping::Without(drop) => labels
            .iter()
            .filter(|(k, _)| !drop.contains(k) && k.as_str() != "__name__")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

fn aggregate(op: AggOp, g: &Grouping, k: Option<f64>, vs: Vec<Sample>) -> Vec<Sample> {
    let mut groups: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    for s in vs {
        groups.entry(group_key(&s.labels, g)).or_default().push(s);
    }
    let mut out = Vec::new();
    for (key, members) in groups {
        let vals: Vec<f64> = members.iter().map(|s| s.v).collect();
        let n = vals.len() as f64;
        let v = match op {
            AggOp::Sum => vals.iter().sum(),
            AggOp::Avg => vals.iter().sum::<f64>() / n,
            AggOp::Count => n,
            AggOp::Group => 1.0,
            AggOp::Min => {
                vals.iter()
                    .copied()
                    .fold(f64::NAN, |a, b| if a.is_nan() || b < a { b } else { a })
            }
            AggOp::Max => {
                vals.iter()
                    .copied()
                    .fold(f64::NAN, |a, b| if a.is_nan() || b > a { b } else { a })
            }
            AggOp::TopK | AggOp::BottomK => {
                let kk = k.unwrap_or(0.0);
                if kk < 1.0 {
                    continue;
                }
                let mut m = members;
                m.sort_by(|a, b| {
                    let o = a.v.partial_cmp(&b.v).unwrap_or(std::cmp::Ordering::Equal);
                    if op == AggOp::TopK {
                        o.reverse()
                    } else {
                        o
                    }
                });
                m.truncate(kk as usize);
                out.extend(m);
                continue;
            }
        };
        out.push(Sample { labels: key, v });
    }
    out
}

fn signature(l: &Labels, m: &VecMatch) -> Labels {
    match m {
        VecMatch::On(keep) => l
            .iter()
            .filter(|(k, _)| keep.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        VecMatch::Ignoring(drop) => l
            .iter()
            .filter(|(k, _)| !drop.contains(k) && k.as_str() != "__name__")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        VecMatch::Default => drop_name(l.clone()),
    }
}

fn binary(op: BinOp, rb: bool, m: &VecMatch, l: Val, r: Val) -> Result<Val, EvalError> {
    let keep_name = op.is_comparison() && !rb;
    let result_labels = |labels: Labels| if keep_name { labels } else { drop_name(labels) };
    match (l, r) {
        (Val::Scalar(a), Val::Scalar(b)) => Ok(Val::Scalar(op.apply(a, b))),
        (Val::Vector(vs), Val::Scalar(b)) => Ok(Val::Vector(
            vs.into_iter()
                .filter_map(|s| {
                    let res = op.apply(s.v, b);
                    if op.is_comparison() && !rb {
                        (res == 1.0).then_some(Sample {
                            labels: s.labels,
                            v: s.v,
                        })
                    } else {
                        Some(Sample {
                            labels: result_labels(s.labels),
                            v: res,
                        })
                    }
                })
                .collect(),
        )),
        (Val::Scalar(a), Val::Vector(vs)) => Ok(Val::Vector(
            vs.into_iter()
                .filter_map(|s| {
                    let res = op.apply(a, s.v);
                    if op.is_comparison() && !rb {
                        (res == 1.0).then_some(Sample {
                            labels: s.labels,
                            v: s.v,
                        })
                    } else {
                        Some(Sample {
                            labels: result_labels(s.labels),
                            v: res,
                        })
                    }
                })
                .collect(),
        )),
        (Val::Vector(lv), Val::Vector(rv)) => {
            let mut right: BTreeMap<Labels, &Sample> = BTreeMap::new();
            for s in &rv {
                let sig = signature(&s.labels, m);
                if let Some(prev) = right.insert(sig.clone(), s) {
                    return exec_err(format!(
                        "found duplicate series for the match group {} on the right hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                        fmt_labels(&sig),
                        fmt_labels(&prev.labels),
                        fmt_labels(&s.labels)
                    ));
                }
            }
            let mut seen: BTreeMap<Labels, Labels> = BTreeMap::new();
            let mut out = Vec::new();
            for s in lv {
                let sig = signature(&s.labels, m);
                let Some(rs) = right.get(&sig) else { continue };
                if let Some(prev) = seen.insert(sig.clone(), s.labels.clone()) {
                    return exec_err(format!(
                        "found duplicate series for the match group {} on the left hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                        fmt_labels(&sig),
                        fmt_labels(&prev),
                        fmt_labels(&s.labels)
                    ));
                }
                let res = op.apply(s.v, rs.v);
                if op.is_comparison() && !rb {
                    if res == 1.0 {
                        out.push(Sample {
                            labels: s.labels,
                            v: s.v,
                        });
                    }
                    continue;
                }
                let mut labels = drop_name(s.labels);
                match m {
                    VecMatch::On(keep) => labels.retain(|k, _| keep.contains(k)),
                    VecMatch::Ignoring(drop) => labels.retain(|k, _| !drop.contains(k)),
                    VecMatch::Default => {}
                }
                out.push(Sample { labels, v: res });
            }
            Ok(Val::Vector(out))
        }
        _ => exec_err("binary expression on unsupported operand types"),
    }
}

fn extrapolated(
    samples: &[(i64, f64)],
    t: i64,
    range: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let (first_t, first_v) = samples[0];
    let (last_t, last_v) = samples[samples.len() - 1];
    let mut result = last_v - first_v;
    if is_counter {
        let mut prev = first_v;
        for &(_, v) in &samples[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let range_start = t - range;
    let mut dur_to_start = (first_t - range_start) as f64 / 1000.0;
    let dur_to_end = (t - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg_between = sampled / (samples.len() - 1) as f64;
    if is_counter && result > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / result);
        if to_zero < dur_to_start {
            dur_to_start = to_zero;
        }
    }
    let threshold = avg_between * 1.1;
    let mut interval = sampled;
    interval += if dur_to_start < threshold {
        dur_to_start
    } else {
        avg_between / 2.0
    };
    interval += if dur_to_end < threshold {
        dur_to_end
    } else {
        avg_between / 2.0
    };
    let mut factor = interval / sampled;
    if is_rate {
        factor /= range as f64 / 1000.0;
    }
    Some(result * factor)
}

fn call(func: Func, args: &[Expr], store: &Store, t: i64) -> Result<Val, EvalError> {
    let arg = |i: usize| -> Result<Val, EvalError> {
        match args.get(i) {
            Some(a) => eval(a, store, t),
            None => exec_err("missing argument"),
        }
    };
    let map_vec = |f: fn(f64) -> f64| -> Result<Val, EvalError> {
        match arg(0)? {
            Val::Vector(vs) => Ok(Val::Vector(
                vs.into_iter()
                    .map(|s| Sample {
                        labels: drop_name(s.labels),
                        v: f(s.v),
                    })
                    .collect(),
            )),
            _ => exec_err("expected an instant vector"),
        }
    };
    match func {
        Func::Time => Ok(Val::Scalar(t as f64 / 1000.0)),
        Func::Scalar => match arg(0)? {
            Val::Vector(vs) if vs.len() == 1 => Ok(Val::Scalar(vs[0].v)),
            _ => Ok(Val::Scalar(f64::NAN)),
        },
        Func::Vector => match arg(0)? {
            Val::Scalar(v) => Ok(Val::Vector(vec![Sample {
                labels: Labels::new(),
                v,
            }])),
            _ => exec_err("expected a scalar"),
        },
        Func::Abs => map_vec(f64::abs),
        Func::Ceil => map_vec(f64::ceil),
        Func::Floor => map_vec(f64::floor),
        Func::Round => map_vec(|v| (v + 0.5).floor()),
        Func::Sqrt => map_vec(f64::sqrt),
        Func::Exp => map_vec(f64::exp),
        Func::Ln => map_vec(f64::ln),
        Func::Absent => match arg(0)? {
            Val::Vector(vs) if !vs.is_empty() => Ok(Val::Vector(Vec::new())),
            _ => {
                let mut labels = Labels::new();
                if let Some(Expr::Selector { matchers, .. }) = args.first() {
                    for m in matchers {
                        if matches!(m.op, MatchOp::Eq) && m.name != "__name__" {
                            labels.insert(m.name.clone(), m.value.clone());
                        }
                    }
                }
                Ok(Val::Vector(vec![Sample { labels, v: 1.0 }]))
            }
        },
        _ => {
            let range = match args.first() {
                Some(Expr::Selector { range: Some(r), .. }) => *r,
                _ => return exec_err("expected a range vector selector"),
            };
            let Val::Matrix(ms) = arg(0)? else {
                return exec_err("expected a range vector");
            };
            let mut out = Vec::new();
            for (labels, pts) in ms {
                let vals = pts.iter().map(|(_, v)| *v);
                let v = match func {
                    Func::Rate => extrapolated(&pts, t, range, true, true),
                    Func::Increase => extrapolated(&pts, t, range, true, false),
                    Func::Delta => extrapolated(&pts, t, range, false, false),
                    Func::Irate => {
                        if pts.len() < 2 {
                            None
                        } else {
                            let (t1, v1) = pts[pts.len() - 2];
                            let (t2, v2) = pts[pts.len() - 1];
                            let dv = if v2 < v1 { v2 } else { v2 - v1 };
                            let dt = (t2 - t1) as f64 / 1000.0;
                            (dt > 0.0).then_some(dv / dt)
                        }
                    }
                    Func::MaxOverTime => {
                        vals.fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))))
                    }
                    Func::MinOverTime => {
                        vals.fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.min(b))))
                    }
                    Func::AvgOverTime => Some(vals.sum::<f64>() / pts.len() as f64),
                    Func::SumOverTime => Some(vals.sum()),
                    Func::CountOverTime => Some(pts.len() as f64),
                    Func::LastOverTime => pts.last().map(|(_, v)| *v),
                    _ => None,
                };
                if let Some(v) = v {
                    let labels = if func == Func::LastOverTime {
                        labels
                    } else {
                        drop_name(labels)
                    };
                    out.push(Sample { labels, v });
                }
            }
            Ok(Val::Vector(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        let mk =
            |name: &str, l: &[(&str, &str)], pts: &[(i64, f64)]| (labels_of(name, l), pts.to_vec());
        Store {
            series: vec![
                mk("up", &[("job", "a"), ("instance", "1")], &[(1000, 1.0)]),
                mk("up", &[("job", "a"), ("instance", "2")], &[(1000, 0.0)]),
                mk("up", &[("job", "b"), ("instance", "3")], &[(1000, 1.0)]),
                mk("free", &[("server", "s")], &[(1000, 25.0)]),
                mk("total", &[("server", "s")], &[(1000, 100.0)]),
                mk(
                    "c",
                    &[],
                    &[
                        (0, 0.0),
                        (15_000, 15.0),
                        (30_000, 30.0),
                        (45_000, 45.0),
                        (60_000, 60.0),
                    ],
                ),
            ],
            lookback: 300_000,
        }
    }

    fn vec_of(q: &str, t: i64) -> Vec<(Labels, f64)> {
        match eval(&parse(q).unwrap(), &store(), t) {
            Ok(Val::Vector(vs)) => {
                let mut r: Vec<_> = vs.into_iter().map(|s| (s.labels, s.v)).collect();
                r.sort_by(|a, b| a.0.cmp(&b.0));
                r
            }
            Ok(other) => panic!("not a vector: {other:?}"),
            Err(e) => panic!("{}", e.msg),
        }
    }

    #[test]
    fn selectors_and_matchers() {
        assert_eq!(vec_of("up", 2000).len(), 3);
        assert_eq!(vec_of(r#"up{job="a"}"#, 2000).len(), 2);
        assert_eq!(vec_of(r#"up{job!="a"}"#, 2000).len(), 1);
        assert_eq!(vec_of(r#"up{instance=~"1|3"}"#, 2000).len(), 2);
        assert_eq!(vec_of(r#"up{instance!~"1|3"}"#, 2000).len(), 1);
        assert_eq!(vec_of(r#"{__name__=~"fr.*"}"#, 2000).len(), 1);
        assert!(vec_of("up", 500).is_empty(), "before the first sample");
        assert!(
            vec_of("up", 1000 + 300_001).is_empty(),
            "stale after lookback"
        );
    }

    #[test]
    fn aggregations_and_binops() {
        let r = vec_of("sum by (job) (up)", 2000);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].1, 1.0);
        let r = vec_of("sum(up) by (job)", 2000);
        assert_eq!(r.len(), 2);
        assert_eq!(vec_of("max(up)", 2000)[0].1, 1.0);
        assert_eq!(vec_of("min(up)", 2000)[0].1, 0.0);
        assert_eq!(vec_of("count(up == 1)", 2000)[0].1, 2.0);
        assert_eq!(vec_of("up > 0", 2000).len(), 2);
        assert_eq!(vec_of("up > bool 0", 2000).len(), 3);
        let r = vec_of("free / total", 2000);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].1, 0.25);
        assert!(!r[0].0.contains_key("__name__"));
        assert_eq!(vec_of("topk(1, up)", 2000).len(), 1);
        assert_eq!(vec_of("-free * 2", 2000)[0].1, -50.0);
    }

    #[test]
    fn rate_matches_prometheus_extrapolation() {
        // 1/s counter, samples every 15s, window 60s ending at 60s: samples (0,60] -> 15..60.
        let r = vec_of("rate(c[1m])", 60_000);
        assert!((r[0].1 - 1.0).abs() < 1e-9, "{r:?}");
        let r = vec_of("increase(c[1m])", 60_000);
        assert!((r[0].1 - 60.0).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn parse_errors() {
        assert!(parse("")
            .unwrap_err()
            .to_string()
            .contains("no expression found in input"));
        assert!(parse("sum(").is_err());
        assert!(parse("up{job=}").is_err());
        assert!(parse("foo(up)")
            .unwrap_err()
            .msg
            .contains("unknown function"));
        assert!(parse("histogram_quantile(0.9, x)")
            .unwrap_err()
            .msg
            .contains("not supported"));
        assert!(parse("up and up")
            .unwrap_err()
            .msg
            .contains("not supported"));
        assert!(parse("1 > 2").unwrap_err().msg.contains("BOOL"));
        assert!(parse("sum(up[5m])")
            .unwrap_err()
            .msg
            .contains("range vector"));
    }

    #[test]
    fn sample_formatting() {
        assert_eq!(fmt_sample(1.0), "1");
        assert_eq!(fmt_sample(0.25), "0.25");
        assert_eq!(fmt_sample(f64::INFINITY), "+Inf");
        assert_eq!(fmt_sample(f64::NAN), "NaN");
        assert_eq!(fmt_sample(1.2345678912e11), "123456789120");
        assert_eq!(ts_json(1_435_781_451_781), json!(1435781451.781));
        assert_eq!(ts_json(1_767_436_620_000), json!(1767436620));
    }

    #[test]
    fn form_decoding() {
        assert_eq!(
            parse_form("query=up%7Bjob%3D%22a%22%7D+%3E+0&time=1"),
            vec![
                ("query".to_string(), "up{job=\"a\"} > 0".to_string()),
                ("time".to_string(), "1".to_string())
            ]
        );
        assert_eq!(parse_prom_duration("1h30m"), Some(5_400_000));
        // an escape at the very end, an empty pair, a broken escape kept as written, UTF-8 across
        // escapes
        assert_eq!(
            parse_form("a=x%20&&b=%ZZ&c=%C3%A9"),
            vec![
                ("a".to_string(), "x ".to_string()),
                ("b".to_string(), "%ZZ".to_string()),
                ("c".to_string(), "é".to_string())
            ]
        );
    }

    #[test]
    fn millisecond_rfc3339() {
        assert_eq!(fmt_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            fmt_rfc3339_ms(1_713_430_212_007),
            "2024-04-18T08:50:12.007Z"
        );
    }
}
