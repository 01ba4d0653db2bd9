//! A fake Trino coordinator: the ops endpoints rb reads and the kill it issues.
//!
//! Served routes (shapes and status codes as Trino 446's `QueryResource`, `ServerInfoResource`,
//! `QueryStateInfoResource` and the insecure authenticator):
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/info` (no auth) | `{"nodeVersion":{"version"},"environment","coordinator","starting","uptime"}` |
//! | `GET /v1/info/state` (no auth) | `"ACTIVE"` or `"SHUTTING_DOWN"` |
//! | `PUT /v1/info/state` body `"SHUTTING_DOWN"` | 200 (graceful shutdown starts); any other state: 400 text `Invalid state transition to <S>` |
//! | `GET /v1/query[?state=QUEUED]` | `[BasicQueryInfo]` the caller may view (`state` case-insensitive; an unknown state is a 500, as in Trino) |
//! | `GET /v1/query/{id}` | the query (`BasicQueryInfo` fields plus `failureInfo`), **410** unknown id |
//! | `DELETE /v1/query/{id}` | **204** always (idempotent); a live query ends FAILED / `USER_CANCELED` |
//! | `PUT /v1/query/{id}/killed` (body: optional message) | **202**; **409** already finished; **410** unknown; the query ends FAILED / `ADMINISTRATIVELY_KILLED` with message `Query killed. Message: <m>` or `Query killed. No message provided.` |
//! | `PUT /v1/query/{id}/preempted` | as killed, with `ADMINISTRATIVELY_PREEMPTED` |
//! | `GET /v1/queryState` | `[QueryStateInfo]` of unfinished queries |
//! | `GET /ui/api/stats` | **401** `WWW-Authenticate: Trino-Form-Login` (it needs a Web-UI session, as in Trino) |
//! | `POST /v1/statement` (body: the SQL) | the client protocol's first `QueryResults` (`QUEUED`, `nextUri`) |
//! | `GET /v1/statement/queued/{id}/{slug}/{token}`, `…/executing/{id}/{slug}/{token}` | the next `QueryResults`: `columns` and one page of `data` each, until the last page (no `nextUri`, `FINISHED`), or `error` (`FAILED`) |
//! | `DELETE /v1/statement/{queued,executing}/{id}/{slug}/{token}` | **204**: the client abandons the query (it ends FAILED / `USER_CANCELED`) |
//!
//! Statements answer what a test scripted with [`FakeTrino::script_statement`] (matched on the SQL
//! with whitespace collapsed and a trailing `;` dropped): columns and rows returned a page at a time
//! through `nextUri` like real Trino, or an error (`errorName`, `errorCode`, `message`). An unscripted
//! statement fails with `NOT_SUPPORTED`. A wrong or replayed token is a **404**, as is an unknown id.
//!
//! Every `/v1/query*` and `/v1/queryState` route needs a user, exactly as Trino over plain HTTP:
//! `X-Trino-Original-User`, else `X-Trino-User`, else `X-Presto-User`, else a Basic-auth user name
//! **without** password. Without one: **401**, `WWW-Authenticate: Basic realm="Trino"`, text body
//! `Basic authentication or X-Trino-Original-User or X-Trino-User must be sent`; with a password:
//! 401 `Password not allowed for insecure authentication`.
//!
//! Access control is allow-all (Trino's default) unless [`FakeTrino::restrict_to_owners`] is called:
//! then a user sees and kills only their own queries (admins excepted), others get **403** with an
//! empty body.
//!
//! Trino exposes no `trino_execution_queuedqueries` endpoint of its own (that name comes from a JMX
//! exporter); feed [`FakeTrino::queued_count`] into
//! [`FakePrometheus::gauge_fn`](super::prometheus::FakePrometheus::gauge_fn) to script that metric.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use rb_testkit::http::trino::{FakeTrino, QuerySpec, QueryState};
//! let trino = FakeTrino::start().await?;
//! let id = trino.add_query(QuerySpec::new("etl", "SELECT * FROM big").state(QueryState::Queued));
//! assert_eq!(trino.queued_count(), 1);
//! // the code under test: PUT {base}/v1/query/{id}/killed with X-Trino-User ...
//! # let _ = id;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use serde_json::{json, Value};

use super::prometheus::{fmt_rfc3339_ms, FakeClock};
use super::server::json_response;
use super::FakeHttp;

/// The state of a Trino query (`io.trino.execution.QueryState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryState {
    /// Waiting in a resource group queue.
    Queued,
    /// Waiting for cluster resources.
    WaitingForResources,
    /// Being dispatched to the coordinator.
    Dispatching,
    /// Being planned.
    Planning,
    /// Tasks being started.
    Starting,
    /// Running.
    Running,
    /// Finishing (committing, writing output).
    Finishing,
    /// Done, successfully.
    Finished,
    /// Done, with an error (this includes cancelled and killed queries).
    Failed,
}

impl QueryState {
    /// The name Trino uses on the wire (`QUEUED`, `RUNNING`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            QueryState::Queued => "QUEUED",
            QueryState::WaitingForResources => "WAITING_FOR_RESOURCES",
            QueryState::Dispatching => "DISPATCHING",
            QueryState::Planning => "PLANNING",
            QueryState::Starting => "STARTING",
            QueryState::Running => "RUNNING",
            QueryState::Finishing => "FINISHING",
            QueryState::Finished => "FINISHED",
            QueryState::Failed => "FAILED",
        }
    }

    /// Parse a wire name, ignoring case (as `GET /v1/query?state=` does).
    pub fn parse(s: &str) -> Option<Self> {
        let all = [
            QueryState::Queued,
            QueryState::WaitingForResources,
            QueryState::Dispatching,
            QueryState::Planning,
            QueryState::Starting,
            QueryState::Running,
            QueryState::Finishing,
            QueryState::Finished,
            QueryState::Failed,
        ];
        all.into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }

    /// Whether the query is over (FINISHED or FAILED).
    pub fn is_done(self) -> bool {
        matches!(self, QueryState::Finished | QueryState::Failed)
    }
}

/// A Trino error code (`io.trino.spi.ErrorCode`): `{"code","name","type"}` on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrinoErrorCode {
    /// Numeric code (`38` for `ADMINISTRATIVELY_KILLED`).
    pub code: i64,
    /// Name (`ADMINISTRATIVELY_KILLED`).
    pub name: String,
    /// Error type (`USER_ERROR`, `INTERNAL_ERROR`, `INSUFFICIENT_RESOURCES`, `EXTERNAL`).
    pub kind: String,
}

impl TrinoErrorCode {
    /// A code with its number, name and type (`USER_ERROR`, `INTERNAL_ERROR`, …).
    pub fn new(code: i64, name: &str, kind: &str) -> Self {
        Self {
            code,
            name: name.to_string(),
            kind: kind.to_string(),
        }
    }
    /// `USER_CANCELED` (3, USER_ERROR): the result of `DELETE /v1/query/{id}`.
    pub fn user_canceled() -> Self {
        Self::new(3, "USER_CANCELED", "USER_ERROR")
    }
    /// `ADMINISTRATIVELY_KILLED` (38, USER_ERROR): the result of `PUT /v1/query/{id}/killed`.
    pub fn administratively_killed() -> Self {
        Self::new(38, "ADMINISTRATIVELY_KILLED", "USER_ERROR")
    }
    /// `ADMINISTRATIVELY_PREEMPTED` (131080, INSUFFICIENT_RESOURCES): `PUT …/preempted`.
    pub fn administratively_preempted() -> Self {
        Self::new(
            131080,
            "ADMINISTRATIVELY_PREEMPTED",
            "INSUFFICIENT_RESOURCES",
        )
    }
    /// `EXCEEDED_GLOBAL_MEMORY_LIMIT` (131073, INSUFFICIENT_RESOURCES), for scripting failures.
    pub fn exceeded_global_memory_limit() -> Self {
        Self::new(
            131073,
            "EXCEEDED_GLOBAL_MEMORY_LIMIT",
            "INSUFFICIENT_RESOURCES",
        )
    }
    fn to_json(&self) -> Value {
        json!({"code": self.code, "name": self.name, "type": self.kind})
    }
}

/// A query to add to the fake: who runs what, in which state, using how much.
#[derive(Debug, Clone)]
pub struct QuerySpec {
    user: String,
    sql: String,
    state: QueryState,
    source: Option<String>,
    cpu: Duration,
    memory_bytes: u64,
    peak_memory_bytes: Option<u64>,
    age: Duration,
    resource_group: Vec<String>,
    blocked: bool,
}

impl QuerySpec {
    /// A RUNNING query of `user` running `sql`, no CPU or memory used yet.
    pub fn new(user: &str, sql: &str) -> Self {
        Self {
            user: user.to_string(),
            sql: sql.to_string(),
            state: QueryState::Running,
            source: Some("trino-cli".to_string()),
            cpu: Duration::ZERO,
            memory_bytes: 0,
            peak_memory_bytes: None,
            age: Duration::ZERO,
            resource_group: vec!["global".to_string()],
            blocked: false,
        }
    }
    /// Fully blocked (`queryStats.fullyBlocked`, blocked reason `WAITING_FOR_MEMORY`): what Trino's
    /// cluster stats count as a blocked query when it is RUNNING.
    pub fn fully_blocked(mut self, blocked: bool) -> Self {
        self.blocked = blocked;
        self
    }
    /// Initial state.
    pub fn state(mut self, state: QueryState) -> Self {
        self.state = state;
        self
    }
    /// Client source (`session.source`, default `trino-cli`).
    pub fn source(mut self, source: &str) -> Self {
        self.source = Some(source.to_string());
        self
    }
    /// CPU time used so far (`queryStats.totalCpuTime`).
    pub fn cpu(mut self, cpu: Duration) -> Self {
        self.cpu = cpu;
        self
    }
    /// Current memory reservation in bytes (`userMemoryReservation`, `totalMemoryReservation`).
    pub fn memory_bytes(mut self, bytes: u64) -> Self {
        self.memory_bytes = bytes;
        self
    }
    /// Peak memory in bytes (default: the current reservation).
    pub fn peak_memory_bytes(mut self, bytes: u64) -> Self {
        self.peak_memory_bytes = Some(bytes);
        self
    }
    /// How long ago the query was created (its elapsed time at insertion).
    pub fn age(mut self, age: Duration) -> Self {
        self.age = age;
        self
    }
    /// Resource group path (default `["global"]`).
    pub fn resource_group(mut self, path: &[&str]) -> Self {
        self.resource_group = path.iter().map(|s| s.to_string()).collect();
        self
    }
}

/// A query as the fake holds it (see [`FakeTrino::query`]).
#[derive(Debug, Clone)]
pub struct QuerySnapshot {
    /// `20240418_085012_00003_abcde`-style id.
    pub query_id: String,
    /// Session user.
    pub user: String,
    /// SQL text.
    pub sql: String,
    /// Current state.
    pub state: QueryState,
    /// Error code once FAILED.
    pub error_code: Option<TrinoErrorCode>,
    /// Failure message once FAILED (`Query killed. Message: …`).
    pub failure_message: Option<String>,
    /// CPU time.
    pub cpu: Duration,
    /// Current memory reservation in bytes.
    pub memory_bytes: u64,
}

#[derive(Debug, Clone)]
struct QueryRec {
    id: String,
    spec: QuerySpec,
    state: QueryState,
    created_ms: i64,
    started_ms: Option<i64>,
    ended_ms: Option<i64>,
    error: Option<TrinoErrorCode>,
    failure: Option<String>,
}

#[derive(Debug)]
struct TrinoState {
    clock: FakeClock,
    version: String,
    environment: String,
    starting: bool,
    shutting_down: bool,
    admins: Option<Vec<String>>,
    coordinator_id: String,
    counter: u64,
    queries: BTreeMap<String, QueryRec>,
    order: Vec<String>,
    scripts: BTreeMap<String, StatementResult>,
    statements: BTreeMap<String, Statement>,
}

type Shared = Arc<Mutex<TrinoState>>;

fn lock(s: &Shared) -> MutexGuard<'_, TrinoState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake Trino coordinator. Derefs to its [`FakeHttp`] (address, request record, faults).
#[derive(Debug)]
pub struct FakeTrino {
    http: FakeHttp,
    state: Shared,
}

impl Deref for FakeTrino {
    type Target = FakeHttp;
    fn deref(&self) -> &FakeHttp {
        &self.http
    }
}

impl FakeTrino {
    /// Start a coordinator (version `446`, environment `production`, no queries).
    pub async fn start() -> std::io::Result<Self> {
        let clock = FakeClock::new();
        let coordinator_id: String = {
            use rand::Rng;
            let mut rng = rand::thread_rng();
            (0..5)
                .map(|_| (b'a' + rng.gen_range(0..26u8)) as char)
                .collect()
        };
        let state = Arc::new(Mutex::new(TrinoState {
            clock,
            version: "446".to_string(),
            environment: "production".to_string(),
            starting: false,
            shutting_down: false,
            admins: None,
            coordinator_id,
            counter: 0,
            queries: BTreeMap::new(),
            order: Vec::new(),
            scripts: BTreeMap::new(),
            statements: BTreeMap::new(),
        }));
        let http = FakeHttp::start(router(state.clone())).await?;
        Ok(Self { http, state })
    }

    /// The underlying HTTP fake.
    pub fn http(&self) -> &FakeHttp {
        &self.http
    }

    /// Add a query; returns its id.
    pub fn add_query(&self, spec: QuerySpec) -> String {
        let mut st = lock(&self.state);
        st.counter += 1;
        let now = st.clock.now_ms();
        let age_ms = i64::try_from(spec.age.as_millis()).unwrap_or(i64::MAX);
        let created = now.saturating_sub(age_ms);
        let stamp = time::OffsetDateTime::from_unix_timestamp(created / 1000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let id = format!(
            "{:04}{:02}{:02}_{:02}{:02}{:02}_{:05}_{}",
            stamp.year(),
            u8::from(stamp.month()),
            stamp.day(),
            stamp.hour(),
            stamp.minute(),
            stamp.second(),
            st.counter - 1,
            st.coordinator_id
        );
        let state = spec.state;
        let started = if matches!(state, QueryState::Queued | QueryState::WaitingForResources) {
            None
        } else {
            Some(created)
        };
        let ended = if state.is_done() { Some(now) } else { None };
        let rec = QueryRec {
            id: id.clone(),
            spec,
            state,
            created_ms: created,
            started_ms: started,
            ended_ms: ended,
            error: None,
            failure: None,
        };
        st.queries.insert(id.clone(), rec);
        st.order.push(id.clone());
        id
    }

    /// Shorthand: add a query of `user` running `sql` in `state` with this CPU time and memory.
    pub fn add_simple(
        &self,
        user: &str,
        sql: &str,
        state: QueryState,
        cpu: Duration,
        memory_bytes: u64,
    ) -> String {
        self.add_query(
            QuerySpec::new(user, sql)
                .state(state)
                .cpu(cpu)
                .memory_bytes(memory_bytes),
        )
    }

    /// Move a query to `state` (FAILED set this way carries no error code). `false` if unknown.
    pub fn set_state(&self, query_id: &str, state: QueryState) -> bool {
        let mut st = lock(&self.state);
        let now = st.clock.now_ms();
        match st.queries.get_mut(query_id) {
            Some(q) => {
                q.state = state;
                if q.started_ms.is_none()
                    && !matches!(state, QueryState::Queued | QueryState::WaitingForResources)
                {
                    q.started_ms = Some(now);
                }
                q.ended_ms = if state.is_done() {
                    q.ended_ms.or(Some(now))
                } else {
                    None
                };
                true
            }
            None => false,
        }
    }

    /// Fail a query with an error code and message (as the engine would). `false` if unknown.
    pub fn fail_query(&self, query_id: &str, code: TrinoErrorCode, message: &str) -> bool {
        let mut st = lock(&self.state);
        let now = st.clock.now_ms();
        match st.queries.get_mut(query_id) {
            Some(q) => {
                finish_failed(q, now, code, message.to_string());
                true
            }
            None => false,
        }
    }

    /// Update a query's CPU time and memory reservation. `false` if unknown.
    pub fn set_usage(&self, query_id: &str, cpu: Duration, memory_bytes: u64) -> bool {
        let mut st = lock(&self.state);
        match st.queries.get_mut(query_id) {
            Some(q) => {
                q.spec.cpu = cpu;
                q.spec.memory_bytes = memory_bytes;
                let peak = q.spec.peak_memory_bytes.unwrap_or(0).max(memory_bytes);
                q.spec.peak_memory_bytes = Some(peak);
                true
            }
            None => false,
        }
    }

    /// Number of queries in state QUEUED.
    pub fn queued_count(&self) -> usize {
        lock(&self.state)
            .queries
            .values()
            .filter(|q| q.state == QueryState::Queued)
            .count()
    }

    /// Number of queries in state RUNNING.
    pub fn running_count(&self) -> usize {
        lock(&self.state)
            .queries
            .values()
            .filter(|q| q.state == QueryState::Running)
            .count()
    }

    /// A closure giving the live QUEUED count, for [`FakePrometheus::gauge_fn`](super::prometheus::FakePrometheus::gauge_fn).
    pub fn queued_gauge(&self) -> impl Fn() -> f64 + Send + Sync + 'static {
        let state = self.state.clone();
        move || {
            lock(&state)
                .queries
                .values()
                .filter(|q| q.state == QueryState::Queued)
                .count() as f64
        }
    }

    /// One query, if known.
    pub fn query(&self, query_id: &str) -> Option<QuerySnapshot> {
        lock(&self.state).queries.get(query_id).map(snapshot)
    }

    /// Every query, in insertion order.
    pub fn queries(&self) -> Vec<QuerySnapshot> {
        let st = lock(&self.state);
        st.order
            .iter()
            .filter_map(|id| st.queries.get(id))
            .map(snapshot)
            .collect()
    }

    /// `"starting": true` in `/v1/info` (a coordinator still booting).
    pub fn set_starting(&self, starting: bool) {
        lock(&self.state).starting = starting;
    }

    /// Node version reported by `/v1/info` (default `446`).
    pub fn set_version(&self, version: &str) {
        lock(&self.state).version = version.to_string();
    }

    /// Environment reported by `/v1/info` (default `production`).
    pub fn set_environment(&self, env: &str) {
        lock(&self.state).environment = env.to_string();
    }

    /// `GET /v1/info/state` answers `"SHUTTING_DOWN"` (graceful shutdown in progress).
    pub fn set_shutting_down(&self, shutting_down: bool) {
        lock(&self.state).shutting_down = shutting_down;
    }

    /// Answer the statement `sql` (whitespace collapsed, trailing `;` dropped) with `result`.
    pub fn script_statement(&self, sql: &str, result: StatementResult) {
        lock(&self.state).scripts.insert(normalize_sql(sql), result);
    }

    /// Every statement submitted through `POST /v1/statement`, in order.
    pub fn statements(&self) -> Vec<StatementSnapshot> {
        let st = lock(&self.state);
        let mut v: Vec<&Statement> = st.statements.values().collect();
        v.sort_by_key(|s| s.seq);
        v.into_iter()
            .map(|s| StatementSnapshot {
                query_id: s.id.clone(),
                sql: s.sql.clone(),
                user: s.user.clone(),
                state: s.state,
                pages_served: s.pages_served,
            })
            .collect()
    }

    /// Owner-only access control: users view and kill only their own queries, except `admins`.
    pub fn restrict_to_owners(&self, admins: &[&str]) {
        lock(&self.state).admins = Some(admins.iter().map(|s| s.to_string()).collect());
    }
}

fn snapshot(q: &QueryRec) -> QuerySnapshot {
    QuerySnapshot {
        query_id: q.id.clone(),
        user: q.spec.user.clone(),
        sql: q.spec.sql.clone(),
        state: q.state,
        error_code: q.error.clone(),
        failure_message: q.failure.clone(),
        cpu: q.spec.cpu,
        memory_bytes: q.spec.memory_bytes,
    }
}

fn finish_failed(q: &mut QueryRec, now: i64, code: TrinoErrorCode, message: String) {
    q.state = QueryState::Failed;
    q.ended_ms = Some(now);
    q.error = Some(code);
    q.failure = Some(message);
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/v1/info", get(info))
        .route("/v1/info/state", get(info_state).put(put_info_state))
        .route("/v1/query", get(list_queries))
        .route("/v1/query/{id}", get(get_query).delete(cancel_query))
        .route("/v1/query/{id}/killed", put(kill_query))
        .route("/v1/query/{id}/preempted", put(preempt_query))
        .route("/v1/queryState", get(query_state_list))
        .route("/ui/api/stats", get(ui_stats))
        .route("/v1/statement", axum::routing::post(post_statement))
        .route(
            "/v1/statement/{phase}/{id}/{slug}/{token}",
            get(poll_statement).delete(cancel_statement),
        )
        .with_state(state)
}

/// Airlift `Duration.toString()`: the most succinct unit with two decimals (`12.31s`, `0.00ns`).
pub(crate) fn airlift_duration(d: Duration) -> String {
    let nanos = d.as_nanos() as f64;
    let units: [(&str, f64); 7] = [
        ("d", 86_400e9),
        ("h", 3_600e9),
        ("m", 60e9),
        ("s", 1e9),
        ("ms", 1e6),
        ("us", 1e3),
        ("ns", 1.0),
    ];
    for (name, size) in units {
        if nanos >= size {
            return format!("{:.2}{}", nanos / size, name);
        }
    }
    "0.00ns".to_string()
}

/// Airlift `DataSize` succinct form: `0B`, `12MB`, `1.21GB`.
pub(crate) fn airlift_data_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{}{}", value as u64, units[unit])
    } else {
        format!("{:.2}{}", value, units[unit])
    }
}

fn ms_duration(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn session_json(q: &QueryRec) -> Value {
    let mut s = json!({
        "queryId": q.id,
        "user": q.spec.user,
        "originalUser": q.spec.user,
        "groups": [],
        "timeZoneKey": 0,
        "locale": "en_US",
        "clientTags": [],
        "start": fmt_rfc3339_ms(q.created_ms),
        "systemProperties": {},
    });
    if let (Some(src), Some(obj)) = (&q.spec.source, s.as_object_mut()) {
        obj.insert("source".to_string(), json!(src));
    }
    s
}

fn query_stats(q: &QueryRec, now: i64) -> Value {
    let end = q.ended_ms.unwrap_or(now);
    let started = q.started_ms.unwrap_or(end);
    let elapsed = ms_duration(end - q.created_ms);
    let queued = ms_duration(started - q.created_ms);
    let execution = ms_duration(end - started);
    let peak = q
        .spec
        .peak_memory_bytes
        .unwrap_or(q.spec.memory_bytes)
        .max(q.spec.memory_bytes);
    let running = q.state == QueryState::Running;
    let mut stats = json!({
        "createTime": fmt_rfc3339_ms(q.created_ms),
        "queuedTime": airlift_duration(queued),
        "elapsedTime": airlift_duration(elapsed),
        "executionTime": airlift_duration(execution),
        "failedTasks": 0,
        "totalDrivers": if running { 16 } else { 0 },
        "queuedDrivers": 0,
        "runningDrivers": if running { 16 } else { 0 },
        "completedDrivers": 0,
        "blockedDrivers": 0,
        "rawInputDataSize": "0B",
        "rawInputPositions": 0,
        "spilledDataSize": "0B",
        "physicalInputDataSize": "0B",
        "physicalWrittenDataSize": "0B",
        "cumulativeUserMemory": 0.0,
        "failedCumulativeUserMemory": 0.0,
        "userMemoryReservation": airlift_data_size(q.spec.memory_bytes),
        "totalMemoryReservation": airlift_data_size(q.spec.memory_bytes),
        "peakUserMemoryReservation": airlift_data_size(peak),
        "peakTotalMemoryReservation": airlift_data_size(peak),
        "totalCpuTime": airlift_duration(q.spec.cpu),
        "failedCpuTime": "0.00ns",
        "totalScheduledTime": airlift_duration(q.spec.cpu),
        "failedScheduledTime": "0.00ns",
        "fullyBlocked": q.spec.blocked,
        "blockedReasons": if q.spec.blocked { json!(["WAITING_FOR_MEMORY"]) } else { json!([]) },
        "progressPercentage": if q.state == QueryState::Finished { 100.0 } else { 0.0 },
        "runningPercentage": if running { 100.0 } else { 0.0 },
    });
    if let (Some(e), Some(obj)) = (q.ended_ms, stats.as_object_mut()) {
        obj.insert("endTime".to_string(), json!(fmt_rfc3339_ms(e)));
    }
    stats
}

fn basic_info(q: &QueryRec, now: i64, base: &str) -> Value {
    json!({
        "queryId": q.id,
        "session": session_json(q),
        "resourceGroupId": q.spec.resource_group,
        "state": q.state.as_str(),
        "scheduled": !matches!(q.state, QueryState::Queued | QueryState::WaitingForResources | QueryState::Dispatching | QueryState::Planning),
        "self": format!("{base}/v1/query/{}", q.id),
        "query": q.spec.sql,
        "queryStats": query_stats(q, now),
        "errorType": q.error.as_ref().map(|e| json!(e.kind)).unwrap_or(Value::Null),
        "errorCode": q.error.as_ref().map(TrinoErrorCode::to_json).unwrap_or(Value::Null),
        "queryType": query_type(&q.spec.sql),
        "retryPolicy": "NONE",
    })
}

fn query_type(sql: &str) -> &'static str {
    let first = sql
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    match first.as_str() {
        "INSERT" => "INSERT",
        "DELETE" => "DELETE",
        "UPDATE" => "UPDATE",
        "MERGE" => "MERGE",
        "CREATE" | "DROP" | "ALTER" => "DATA_DEFINITION",
        "EXPLAIN" => "EXPLAIN",
        "DESCRIBE" | "SHOW" => "DESCRIBE",
        _ => "SELECT",
    }
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost:8080");
    format!("http://{host}")
}

/// The user Trino's insecure authenticator derives, or the 401 it answers.
fn authenticate(headers: &HeaderMap) -> Result<String, &'static str> {
    for name in ["x-trino-original-user", "x-trino-user", "x-presto-user"] {
        if let Some(user) = headers.get(name).and_then(|v| v.to_str().ok()) {
            if !user.is_empty() {
                return Ok(user.to_string());
            }
        }
    }
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(enc) = auth
            .strip_prefix("Basic ")
            .or_else(|| auth.strip_prefix("basic "))
        {
            if let Some(decoded) = base64_decode(enc.trim()) {
                let text = String::from_utf8_lossy(&decoded).into_owned();
                let (user, password) = match text.split_once(':') {
                    Some((u, p)) => (u.to_string(), p.to_string()),
                    None => (text.clone(), String::new()),
                };
                if !password.is_empty() {
                    return Err("Password not allowed for insecure authentication");
                }
                if !user.is_empty() {
                    return Ok(user);
                }
            }
        }
    }
    Err("Basic authentication or X-Trino-Original-User or X-Trino-User must be sent")
}

fn unauthorized(msg: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "Basic realm=\"Trino\""),
            (header::CONTENT_TYPE, "text/plain"),
        ],
        msg.to_string(),
    )
        .into_response()
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut buf = 0u32;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        buf = (buf << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((buf >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

fn may_access(st: &TrinoState, user: &str, q: &QueryRec) -> bool {
    match &st.admins {
        None => true,
        Some(admins) => q.spec.user == user || admins.iter().any(|a| a == user),
    }
}

async fn info(State(s): State<Shared>) -> Response {
    let st = lock(&s);
    let uptime = ms_duration(st.clock.now_ms() - st.clock.base_ms());
    json_response(
        StatusCode::OK,
        json!({
            "nodeVersion": {"version": st.version},
            "environment": st.environment,
            "coordinator": true,
            "starting": st.starting,
            "uptime": airlift_duration(uptime),
        }),
    )
}

async fn info_state(State(s): State<Shared>) -> Response {
    let st = lock(&s);
    let state = if st.shutting_down {
        "SHUTTING_DOWN"
    } else {
        "ACTIVE"
    };
    json_response(StatusCode::OK, json!(state))
}

async fn put_info_state(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(m) = authenticate(&headers) {
        return unauthorized(m);
    }
    let wanted: Option<String> = serde_json::from_slice(&body).ok();
    match wanted.as_deref() {
        Some("SHUTTING_DOWN") => {
            lock(&s).shutting_down = true;
            StatusCode::OK.into_response()
        }
        Some(other) => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain")],
            format!("Invalid state transition to {other}"),
        )
            .into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain")],
            "Request body must be a JSON string: \"SHUTTING_DOWN\"".to_string(),
        )
            .into_response(),
    }
}

async fn list_queries(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let user = match authenticate(&headers) {
        Ok(u) => u,
        Err(m) => return unauthorized(m),
    };
    let filter = match params.iter().find(|(k, _)| k == "state") {
        Some((_, v)) => match QueryState::parse(v) {
            Some(st) => Some(st),
            None => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(header::CONTENT_TYPE, "text/plain")],
                    format!(
                        "No enum constant io.trino.execution.QueryState.{}",
                        v.to_ascii_uppercase()
                    ),
                )
                    .into_response()
            }
        },
        None => None,
    };
    let base = base_url(&headers);
    let st = lock(&s);
    let now = st.clock.now_ms();
    let items: Vec<Value> = st
        .order
        .iter()
        .filter_map(|id| st.queries.get(id))
        .filter(|q| filter.is_none_or(|f| q.state == f))
        .filter(|q| may_access(&st, &user, q))
        .map(|q| basic_info(q, now, &base))
        .collect();
    json_response(StatusCode::OK, Value::Array(items))
}

async fn get_query(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let user = match authenticate(&headers) {
        Ok(u) => u,
        Err(m) => return unauthorized(m),
    };
    let base = base_url(&headers);
    let st = lock(&s);
    let now = st.clock.now_ms();
    match st.queries.get(&id) {
        None => StatusCode::GONE.into_response(),
        Some(q) if !may_access(&st, &user, q) => StatusCode::FORBIDDEN.into_response(),
        Some(q) => {
            let mut v = basic_info(q, now, &base);
            if let Some(obj) = v.as_object_mut() {
                let failure = match (&q.failure, &q.error) {
                    (Some(msg), Some(_)) => json!({
                        "type": "io.trino.spi.TrinoException",
                        "message": msg,
                        "suppressed": [],
                        "stack": [],
                    }),
                    _ => Value::Null,
                };
                obj.insert("failureInfo".to_string(), failure);
                obj.insert("finalQueryInfo".to_string(), json!(q.state.is_done()));
            }
            json_response(StatusCode::OK, v)
        }
    }
}

async fn cancel_query(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let user = match authenticate(&headers) {
        Ok(u) => u,
        Err(m) => return unauthorized(m),
    };
    let mut st = lock(&s);
    let now = st.clock.now_ms();
    let allowed = match st.queries.get(&id) {
        Some(q) => may_access(&st, &user, q),
        None => true,
    };
    if !allowed {
        return StatusCode::FORBIDDEN.into_response();
    }
    if let Some(q) = st.queries.get_mut(&id) {
        if !q.state.is_done() {
            finish_failed(
                q,
                now,
                TrinoErrorCode::user_canceled(),
                "Query was canceled".to_string(),
            );
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn kill_query(
    s: State<Shared>,
    headers: HeaderMap,
    id: Path<String>,
    body: Bytes,
) -> Response {
    kill_like(
        s,
        headers,
        id,
        body,
        TrinoErrorCode::administratively_killed(),
        "Query killed",
    )
}

async fn preempt_query(
    s: State<Shared>,
    headers: HeaderMap,
    id: Path<String>,
    body: Bytes,
) -> Response {
    kill_like(
        s,
        headers,
        id,
        body,
        TrinoErrorCode::administratively_preempted(),
        "Query preempted",
    )
}

fn kill_like(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
    code: TrinoErrorCode,
    what: &str,
) -> Response {
    let user = match authenticate(&headers) {
        Ok(u) => u,
        Err(m) => return unauthorized(m),
    };
    let mut st = lock(&s);
    let now = st.clock.now_ms();
    let allowed = match st.queries.get(&id) {
        None => return StatusCode::GONE.into_response(),
        Some(q) => may_access(&st, &user, q),
    };
    if !allowed {
        return StatusCode::FORBIDDEN.into_response();
    }
    let Some(q) = st.queries.get_mut(&id) else {
        return StatusCode::GONE.into_response();
    };
    if q.state.is_done() {
        return StatusCode::CONFLICT.into_response();
    }
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let message = if text.is_empty() {
        format!("{what}. No message provided.")
    } else {
        format!("{what}. Message: {text}")
    };
    finish_failed(q, now, code, message);
    StatusCode::ACCEPTED.into_response()
}

async fn query_state_list(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let user = match authenticate(&headers) {
        Ok(u) => u,
        Err(m) => return unauthorized(m),
    };
    let only_user = params
        .iter()
        .find(|(k, _)| k == "user")
        .map(|(_, v)| v.clone());
    let st = lock(&s);
    let items: Vec<Value> = st
        .order
        .iter()
        .filter_map(|id| st.queries.get(id))
        .filter(|q| !q.state.is_done())
        .filter(|q| only_user.as_deref().is_none_or(|u| q.spec.user == u))
        .filter(|q| may_access(&st, &user, q))
        .map(|q| {
            json!({
                "queryId": q.id,
                "queryState": q.state.as_str(),
                "resourceGroupId": q.spec.resource_group,
                "query": q.spec.sql,
                "createTime": fmt_rfc3339_ms(q.created_ms),
                "user": q.spec.user,
                "source": q.spec.source,
            })
        })
        .collect();
    json_response(StatusCode::OK, Value::Array(items))
}

async fn ui_stats() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "Trino-Form-Login"),
            (header::CONTENT_TYPE, "text/plain"),
        ],
        "Unauthorized",
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// The client protocol: POST /v1/statement and its nextUri pages
// ---------------------------------------------------------------------------------------------

/// What a scripted statement answers (see [`FakeTrino::script_statement`]).
#[derive(Debug, Clone)]
pub struct StatementResult {
    columns: Vec<(String, String)>,
    rows: Vec<Vec<Value>>,
    page_size: usize,
    error: Option<(TrinoErrorCode, String)>,
}

impl StatementResult {
    /// Columns `(name, type)` (`("cnt", "bigint")`) and rows of JSON values, 100 rows a page.
    pub fn rows(columns: &[(&str, &str)], rows: Vec<Vec<Value>>) -> Self {
        Self {
            columns: columns
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
            rows,
            page_size: 100,
            error: None,
        }
    }

    /// Rows per `nextUri` page (at least 1).
    pub fn page_size(mut self, rows: usize) -> Self {
        self.page_size = rows.max(1);
        self
    }

    /// The statement fails with this error code and message.
    pub fn error(code: TrinoErrorCode, message: &str) -> Self {
        Self {
            columns: Vec::new(),
            rows: Vec::new(),
            page_size: 100,
            error: Some((code, message.to_string())),
        }
    }

    /// `SYNTAX_ERROR` (1, USER_ERROR) with this message (`line 1:8: mismatched input …`).
    pub fn syntax_error(message: &str) -> Self {
        Self::error(
            TrinoErrorCode::new(1, "SYNTAX_ERROR", "USER_ERROR"),
            message,
        )
    }
}

/// A statement as the fake saw it (see [`FakeTrino::statements`]).
#[derive(Debug, Clone)]
pub struct StatementSnapshot {
    /// Its query id.
    pub query_id: String,
    /// The SQL as sent.
    pub sql: String,
    /// The user it ran as.
    pub user: String,
    /// `QUEUED`, `RUNNING`, `FINISHED` or `FAILED`.
    pub state: QueryState,
    /// How many data pages the client fetched.
    pub pages_served: usize,
}

#[derive(Debug)]
struct Statement {
    seq: u64,
    id: String,
    slug: String,
    sql: String,
    user: String,
    result: StatementResult,
    /// The token the next poll must carry.
    token: u64,
    /// Rows already sent.
    sent: usize,
    state: QueryState,
    pages_served: usize,
}

fn normalize_sql(sql: &str) -> String {
    let s = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    s.trim_end_matches(';').trim_end().to_string()
}

fn statement_stats(state: QueryState, sent: usize) -> Value {
    json!({
        "state": state.as_str(),
        "queued": state == QueryState::Queued,
        "scheduled": state != QueryState::Queued,
        "nodes": 1,
        "totalSplits": 1,
        "queuedSplits": 0,
        "runningSplits": 0,
        "completedSplits": if state.is_done() { 1 } else { 0 },
        "cpuTimeMillis": 0,
        "wallTimeMillis": 0,
        "queuedTimeMillis": 0,
        "elapsedTimeMillis": 0,
        "processedRows": sent,
        "processedBytes": 0,
        "physicalInputBytes": 0,
        "peakMemoryBytes": 0,
        "spilledBytes": 0,
    })
}

fn statement_results(st: &Statement, base: &str, extra: Value) -> Value {
    let mut v = json!({
        "id": st.id,
        "infoUri": format!("{base}/ui/query.html?{}", st.id),
        "stats": statement_stats(st.state, st.sent),
        "warnings": [],
    });
    if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    v
}

async fn post_statement(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let user = match authenticate(&headers) {
        Ok(u) => u,
        Err(m) => return unauthorized(m),
    };
    let sql = String::from_utf8_lossy(&body).into_owned();
    if sql.trim().is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain")],
            "SQL statement is empty",
        )
            .into_response();
    }
    let base = base_url(&headers);
    let mut st = lock(&s);
    st.counter += 1;
    let seq = st.counter;
    let now = st.clock.now_ms();
    let stamp = time::OffsetDateTime::from_unix_timestamp(now / 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let id = format!(
        "{:04}{:02}{:02}_{:02}{:02}{:02}_{:05}_{}",
        stamp.year(),
        u8::from(stamp.month()),
        stamp.day(),
        stamp.hour(),
        stamp.minute(),
        stamp.second(),
        seq - 1,
        st.coordinator_id
    );
    let result = st
        .scripts
        .get(&normalize_sql(&sql))
        .cloned()
        .unwrap_or_else(|| {
            StatementResult::error(
                TrinoErrorCode::new(13, "NOT_SUPPORTED", "USER_ERROR"),
                &format!(
                    "fake Trino: no result scripted for statement: {}",
                    normalize_sql(&sql)
                ),
            )
        });
    let stmt = Statement {
        seq,
        id: id.clone(),
        slug: format!("y{:x}", seq.wrapping_mul(0x9e37_79b9)),
        sql,
        user,
        result,
        token: 1,
        sent: 0,
        state: QueryState::Queued,
        pages_served: 0,
    };
    let next = format!("{base}/v1/statement/queued/{id}/{}/1", stmt.slug);
    let v = statement_results(&stmt, &base, json!({ "nextUri": next }));
    st.statements.insert(id, stmt);
    json_response(StatusCode::OK, v)
}

fn statement_not_found(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain")],
        format!("Query not found: {id}"),
    )
        .into_response()
}

async fn poll_statement(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((_phase, id, slug, token)): Path<(String, String, String, String)>,
) -> Response {
    let base = base_url(&headers);
    let mut st = lock(&s);
    let Some(stmt) = st.statements.get_mut(&id) else {
        return statement_not_found(&id);
    };
    if stmt.slug != slug || token.parse::<u64>().ok() != Some(stmt.token) || stmt.state.is_done() {
        return statement_not_found(&id);
    }
    stmt.token += 1;
    if let Some((code, message)) = stmt.result.error.clone() {
        stmt.state = QueryState::Failed;
        let error = json!({
            "message": message,
            "errorCode": code.code,
            "errorName": code.name,
            "errorType": code.kind,
            "failureInfo": {"type": "io.trino.spi.TrinoException", "message": message, "suppressed": [], "stack": []},
        });
        let v = statement_results(stmt, &base, json!({ "error": error }));
        return json_response(StatusCode::OK, v);
    }
    let columns: Vec<Value> = stmt
        .result
        .columns
        .iter()
        .map(|(n, t)| json!({"name": n, "type": t, "typeSignature": {"rawType": t, "arguments": []}}))
        .collect();
    let end = (stmt.sent + stmt.result.page_size).min(stmt.result.rows.len());
    let page: Vec<Value> = stmt
        .result
        .rows
        .get(stmt.sent..end)
        .unwrap_or(&[])
        .iter()
        .map(|r| Value::Array(r.clone()))
        .collect();
    stmt.sent = end;
    stmt.pages_served += 1;
    let mut extra = json!({ "columns": columns });
    if let Some(obj) = extra.as_object_mut() {
        if !page.is_empty() {
            obj.insert("data".into(), Value::Array(page));
        }
        if stmt.sent < stmt.result.rows.len() {
            stmt.state = QueryState::Running;
            obj.insert(
                "nextUri".into(),
                json!(format!(
                    "{base}/v1/statement/executing/{id}/{slug}/{}",
                    stmt.token
                )),
            );
            obj.insert(
                "partialCancelUri".into(),
                json!(format!("{base}/v1/statement/partialCancel/{id}/0/{slug}/1")),
            );
        } else {
            stmt.state = QueryState::Finished;
        }
    }
    let v = statement_results(stmt, &base, extra);
    json_response(StatusCode::OK, v)
}

async fn cancel_statement(
    State(s): State<Shared>,
    Path((_phase, id, slug, _token)): Path<(String, String, String, String)>,
) -> Response {
    let mut st = lock(&s);
    match st.statements.get_mut(&id) {
        Some(stmt) if stmt.slug == slug => {
            if !stmt.state.is_done() {
                stmt.state = QueryState::Failed;
            }
            StatusCode::NO_CONTENT.into_response()
        }
        _ => statement_not_found(&id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn airlift_formats() {
        assert_eq!(airlift_duration(Duration::ZERO), "0.00ns");
        assert_eq!(airlift_duration(Duration::from_millis(12_310)), "12.31s");
        assert_eq!(airlift_duration(Duration::from_micros(1_200)), "1.20ms");
        assert_eq!(airlift_duration(Duration::from_secs(9108)), "2.53h");
        assert_eq!(airlift_data_size(0), "0B");
        assert_eq!(airlift_data_size(12 * 1024 * 1024), "12MB");
        assert_eq!(airlift_data_size(1_300_000_000), "1.21GB");
    }

    #[test]
    fn base64_basic() {
        assert_eq!(base64_decode("YWxpY2U6").as_deref(), Some(&b"alice:"[..]));
        assert_eq!(
            base64_decode("YWxpY2U6c2VjcmV0").as_deref(),
            Some(&b"alice:secret"[..])
        );
    }
}
